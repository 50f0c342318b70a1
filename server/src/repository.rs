//! Projects' git repositories: pointing a project at one, and making one (for the sample, or a
//! team starting from a directory) with a hook that starts a run on every push.

use anyhow::{Context, bail};
use domain::audit::{Actor, AuditRecord, Origin};
use domain::auth::{Scope, Tokens};
use sqlx::PgPool;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Records where a project's code is. A path must be a git repository on this machine.
pub async fn set(pool: &PgPool, project: &str, location: &str, actor: Actor) -> anyhow::Result<()> {
    let is_url = location.contains("://") || location.starts_with("git@");
    if !is_url {
        let path = Path::new(location);
        if !path.is_absolute() {
            bail!("give an absolute path or a git URL, not `{location}`");
        }
        let ok = Command::new("git")
            .arg("-C")
            .arg(path)
            .args(["rev-parse", "--git-dir"])
            .output()?
            .status
            .success();
        if !ok {
            bail!("{location} is not a git repository");
        }
    }
    let mut tx = pool.begin().await?;
    let before = sqlx::query_scalar!(
        "select repository from project where project_key = $1 for update",
        project
    )
    .fetch_optional(&mut *tx)
    .await?
    .with_context(|| format!("there is no project `{project}`; load its flightdeck.yml first"))?;
    sqlx::query!(
        "update project set repository = $2 where project_key = $1",
        project,
        location
    )
    .execute(&mut *tx)
    .await?;
    AuditRecord::new(actor, "project.repository_set", &Origin::default())
        .target(project)
        .details(serde_json::json!({ "before": before, "after": location }))
        .write(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Creates `<data dir>/repos/<project>.git` from `from` (first time only), installs the push hook
/// with a fresh `runs:write` token, and points the project at it. Returns the repository path.
pub async fn create(
    pool: &PgPool,
    data_dir: &Path,
    project: &str,
    from: &Path,
    server_url: &str,
    actor: Actor,
) -> anyhow::Result<PathBuf> {
    // The directory's own flightdeck.yml makes (or updates) the project.
    let definition = from.join("flightdeck.yml");
    if definition.exists() {
        crate::serve::load_project_file(pool, &definition).await?;
    }
    let repo = data_dir.join("repos").join(format!("{project}.git"));
    if !repo.join("HEAD").exists() {
        std::fs::create_dir_all(&repo)?;
        git(
            &repo,
            &["init", "--quiet", "--bare", "--initial-branch=main"],
        )?;
        let work = tempdir(data_dir)?;
        copy_dir(from, &work).with_context(|| format!("cannot copy {}", from.display()))?;
        git(&work, &["init", "--quiet", "--initial-branch=main"])?;
        git(&work, &["add", "--all"])?;
        git(
            &work,
            &[
                "-c",
                "user.name=Flightdeck",
                "-c",
                "user.email=flightdeck@localhost",
                "commit",
                "--quiet",
                "-m",
                "Start the project",
            ],
        )?;
        git(
            &work,
            &[
                "push",
                "--quiet",
                repo.to_str().context("a UTF-8 path")?,
                "main",
            ],
        )?;
        std::fs::remove_dir_all(&work)?;
    }
    let token_name = format!("push hook of {project}");
    let tokens = Tokens::new(pool.clone());
    for old in tokens.list().await? {
        if old.name == token_name && old.revoked_at.is_none() {
            tokens.revoke(uuid::Uuid::parse_str(&old.id)?).await?;
        }
    }
    let token = tokens
        .create(&token_name, &[Scope::RunsWrite], None, None)
        .await?;
    install_hook(&repo, project, server_url, &token.secret)?;
    set(pool, project, repo.to_str().context("a UTF-8 path")?, actor).await?;
    Ok(repo)
}

/// The post-receive hook: one API call per pushed branch. The token is kept beside it, readable
/// only by the repository's owner.
fn install_hook(repo: &Path, project: &str, server_url: &str, token: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let token_file = repo.join("flightdeck-token");
    std::fs::write(&token_file, token)?;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600))?;
    let hook = repo.join("hooks").join("post-receive");
    std::fs::write(
        &hook,
        format!(
            r#"#!/bin/sh
# Installed by `flightdeck project create-repository`: starts a Flightdeck run for each pushed branch.
token=$(cat "$(git rev-parse --git-dir)/flightdeck-token")
while read old new ref; do
  case "$ref" in refs/heads/*) branch=${{ref#refs/heads/}} ;; *) continue ;; esac
  [ "$new" = 0000000000000000000000000000000000000000 ] && continue
  if answer=$(curl -fsS -X POST -H "Authorization: Bearer $token" -H "Content-Type: application/json" \
       -H "Idempotency-Key: push-$new-$branch" \
       -d "{{\"branch\":\"$branch\",\"commit\":\"$new\",\"trigger\":\"push\"}}" \
       "{server_url}/api/v1/projects/{project}/runs"); then
    number=$(printf '%s' "$answer" | sed -n 's/.*"number":\([0-9][0-9]*\).*/\1/p')
    if [ -n "$number" ]; then
      echo "Flightdeck: run #$number of $branch: {server_url}/projects/{project}/runs/$number"
    else
      echo "Flightdeck: $(printf '%s' "$answer" | sed -n 's/.*"reason":"\([^"]*\)".*/\1/p')"
    fi
  else
    echo "Flightdeck: could not start a run of $branch (is the portal at {server_url} running?)" >&2
  fi
done
"#
        ),
    )?;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .context("git is not installed")?;
    if !out.status.success() {
        bail!(
            "git {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn tempdir(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let dir = data_dir
        .join("repos")
        .join(format!(".import-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Copies a directory's files, leaving out what a checkout never holds (installed packages,
/// build output, another repository's metadata).
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if matches!(
            name.to_str(),
            Some(".git" | "node_modules" | "dist" | "reports")
        ) {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
