//! Projects' git repositories on this machine: making one (for the sample, or a team starting
//! from a directory) with a hook that starts a run on every push, and checking that a path is
//! one. Pointing the project at it and issuing the hook's token are the domain's use cases
//! (`domain::project::repository`).

use anyhow::{Context, bail};
use domain::audit::{Actor, Origin};
use domain::project::repository::{self, Location};
use sqlx::PgPool;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Records where a project's code is. A path must be a git repository on this machine.
pub async fn set(pool: &PgPool, project: &str, location: &str, actor: Actor) -> anyhow::Result<()> {
    let location = Location::parse(location)?;
    if location.is_path() {
        let ok = Command::new("git")
            .arg("-C")
            .arg(location.as_ref())
            .args(["rev-parse", "--git-dir"])
            .output()?
            .status
            .success();
        if !ok {
            bail!("{} is not a git repository", location.as_ref());
        }
    }
    let mut tx = pool.begin().await?;
    repository::set(&mut tx, project, &location, actor, &Origin::default()).await?;
    tx.commit().await?;
    Ok(())
}

/// Creates `<data dir>/repos/<project>.git` from `from` (first time only), points the project at
/// it with a fresh push-hook token, and installs the hook. Returns the repository path.
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
        make_repository(data_dir, &repo, from)?;
    }
    let location = Location::parse(repo.to_str().context("a UTF-8 path")?)?;
    let token = repository::host(pool, project, &location, actor, &Origin::default()).await?;
    install_hook(&repo, project, server_url, &token)?;
    Ok(repo)
}

/// A bare repository at `repo` whose first commit holds `from`'s files.
fn make_repository(data_dir: &Path, repo: &Path, from: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(repo)?;
    git(
        repo,
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
    let target = repo.to_str().context("a UTF-8 path")?;
    git(&work, &["push", "--quiet", target, "main"])?;
    std::fs::remove_dir_all(&work)?;
    Ok(())
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
