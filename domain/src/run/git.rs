//! Reading a project's git repository: which commit a branch points at, who wrote it, and the
//! flightdeck.yml at a commit. Uses the `git` program, as the runners do.

use super::store::Commit;
use std::path::Path;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git is not installed (install the `git` package)")]
    Missing,
    #[error("`{rev}` is not a branch or commit of {repository}: {message}")]
    UnknownRevision {
        repository: String,
        rev: String,
        message: String,
    },
    #[error("git failed: {0}")]
    Failed(String),
}

async fn git(repository: &str, args: &[&str]) -> Result<std::process::Output, GitError> {
    Command::new("git")
        .arg("-C")
        .arg(repository)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                GitError::Missing
            } else {
                GitError::Failed(e.to_string())
            }
        })
}

/// The commit `rev` (a branch or a sha) names, with its author and subject.
pub async fn commit(repository: &str, rev: &str, branch: &str) -> Result<Commit, GitError> {
    if rev.starts_with('-') {
        return Err(GitError::UnknownRevision {
            repository: repository.into(),
            rev: rev.into(),
            message: "not a revision".into(),
        });
    }
    let out = git(
        repository,
        &["log", "-1", "--format=%H%x00%an <%ae>%x00%s", rev, "--"],
    )
    .await?;
    if !out.status.success() {
        return Err(GitError::UnknownRevision {
            repository: repository.into(),
            rev: rev.into(),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.trim_end().splitn(3, '\0');
    let sha = parts.next().unwrap_or_default().to_string();
    let author = parts.next().unwrap_or_default().to_string();
    let message = parts.next().unwrap_or_default().to_string();
    Ok(Commit {
        sha,
        branch: branch.to_string(),
        author,
        message,
    })
}

/// The text of `path` at `sha`, or None when the commit has no such file.
pub async fn file_at(repository: &str, sha: &str, path: &str) -> Result<Option<String>, GitError> {
    let out = git(repository, &["show", &format!("{sha}:{path}")]).await?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Whether `repository` is a path to a git repository on this machine.
pub fn is_local(repository: &str) -> bool {
    Path::new(repository).is_absolute() && Path::new(repository).exists()
}

/// The commits reachable from `to` and not from `from` (all of `to`'s history when `from` is
/// None), newest first, at most `limit`: (sha, author "Name <email>", message, committed at).
pub async fn commits_between(
    repository: &str,
    from: Option<&str>,
    to: &str,
    limit: usize,
) -> Result<
    Vec<(
        String,
        String,
        String,
        Option<chrono::DateTime<chrono::Utc>>,
    )>,
    GitError,
> {
    let range = match from {
        Some(from) => format!("{from}..{to}"),
        None => to.to_string(),
    };
    let max = format!("--max-count={limit}");
    let out = git(
        repository,
        &[
            "log",
            &max,
            "--format=%H%x00%an <%ae>%x00%cI%x00%B%x1e",
            &range,
        ],
    )
    .await?;
    if !out.status.success() {
        return Err(GitError::UnknownRevision {
            repository: repository.to_string(),
            rev: range,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .split('\x1e')
        .filter_map(|record| {
            let mut parts = record.trim_start_matches('\n').splitn(4, '\0');
            let sha = parts.next()?.trim().to_string();
            if sha.is_empty() {
                return None;
            }
            let author = parts.next()?.to_string();
            let at = chrono::DateTime::parse_from_rfc3339(parts.next()?.trim())
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc));
            let message = parts.next().unwrap_or_default().trim().to_string();
            Some((sha, author, message, at))
        })
        .collect())
}
