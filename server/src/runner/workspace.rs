//! A fresh directory per job attempt holding the commit's tree, and the rules for paths in it.
//!
//! ```text
//! <work_dir>/<job_id>-<attempt>/       the checkout; the steps' working directory
//! <work_dir>/<job_id>-<attempt>.tmp/   the runner's scratch (packed artifacts), never seen by steps
//! ```
//!
//! The checkout is `git init`, `git fetch --depth 1 <repository> <commit>`, `git checkout
//! --detach FETCH_HEAD`: one commit, no history, and the same three commands whether the
//! repository is a URL or a path on this machine. Both directories are removed when the job ends,
//! whatever its outcome; the job's log says where they were.

use super::execute::{Exit, Process, RunError, Stop, Watch, run_process};
use super::logs::LogSink;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug)]
pub struct Workspace {
    /// Canonical, so paths resolved in it can be compared with it.
    root: PathBuf,
    scratch: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("`{0}` is not a full commit id")]
    BadCommit(String),
    #[error("`{0}` is not a repository URL or path")]
    BadRepository(String),
    #[error("`git {command}` {exit}")]
    Git { command: &'static str, exit: Exit },
    #[error("cannot run git: {0}")]
    Spawn(io::Error),
    #[error("the checkout was stopped")]
    Stopped(Stop),
}

/// Why a declared path cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("nothing is there")]
    NotFound,
    #[error("it is outside the workspace")]
    Outside,
    #[error("cannot read it: {0}")]
    Io(io::Error),
}

impl Workspace {
    /// Makes an empty `<work_dir>/<job_id>-<attempt>`, first removing whatever an earlier runner
    /// process left there.
    pub async fn create(work_dir: &Path, job_id: Uuid, attempt: i32) -> io::Result<Workspace> {
        let root = work_dir.join(format!("{job_id}-{attempt}"));
        let scratch = work_dir.join(format!("{job_id}-{attempt}.tmp"));
        for dir in [&root, &scratch] {
            remove_dir(dir).await?;
            tokio::fs::create_dir_all(dir).await?;
        }
        Ok(Workspace {
            root: tokio::fs::canonicalize(&root).await?,
            scratch: tokio::fs::canonicalize(&scratch).await?,
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// A directory for the runner's own files: outside the checkout, removed with it.
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// Fills the workspace with the tree of `commit` from `repository`. git's output goes to the
    /// log; `env` should hold no secrets.
    pub async fn checkout(
        &self,
        repository: &str,
        commit: &str,
        env: &[(String, String)],
        sink: &LogSink,
        watch: &Watch,
        kill_grace: Duration,
    ) -> Result<(), CheckoutError> {
        if !matches!(commit.len(), 40 | 64) || !commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(CheckoutError::BadCommit(commit.to_string()));
        }
        // A leading dash would make git read the repository as an option.
        if repository.is_empty() || repository.starts_with('-') {
            return Err(CheckoutError::BadRepository(repository.to_string()));
        }
        let mut env = env.to_vec();
        env.push(("GIT_TERMINAL_PROMPT".into(), "0".into()));
        let commands: [(&'static str, Vec<&str>); 3] = [
            (
                "init",
                vec!["-c", "init.defaultBranch=main", "init", "--quiet"],
            ),
            (
                "fetch",
                vec![
                    "fetch",
                    "--no-tags",
                    "--depth",
                    "1",
                    "--",
                    repository,
                    commit,
                ],
            ),
            (
                "checkout",
                vec![
                    "-c",
                    "advice.detachedHead=false",
                    "checkout",
                    "--quiet",
                    "--detach",
                    "FETCH_HEAD",
                ],
            ),
        ];
        for (command, args) in commands {
            let process = Process {
                program: "git",
                args: args.iter().map(|a| a.to_string()).collect(),
                cwd: &self.root,
                env: &env,
            };
            match run_process(process, sink, watch, kill_grace).await {
                Ok(Exit::Code(0)) => {}
                Ok(exit) => return Err(CheckoutError::Git { command, exit }),
                Err(RunError::Stopped(stop)) => return Err(CheckoutError::Stopped(stop)),
                Err(RunError::Io(error)) => return Err(CheckoutError::Spawn(error)),
            }
        }
        Ok(())
    }

    /// The real path of `relative` (as a definition declares it), which must exist and, once
    /// symbolic links and `..` are followed, lie inside the workspace.
    pub fn resolve(&self, relative: &str) -> Result<PathBuf, ResolveError> {
        let path = Path::new(relative);
        if path
            .components()
            .any(|c| matches!(c, Component::RootDir | Component::Prefix(_)))
        {
            return Err(ResolveError::Outside);
        }
        let real = match self.root.join(path).canonicalize() {
            Ok(real) => real,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(ResolveError::NotFound);
            }
            Err(error) => return Err(ResolveError::Io(error)),
        };
        if real.starts_with(&self.root) {
            Ok(real)
        } else {
            Err(ResolveError::Outside)
        }
    }

    /// Deletes the checkout and the scratch directory.
    pub async fn remove(self) -> io::Result<()> {
        remove_dir(&self.root).await?;
        remove_dir(&self.scratch).await
    }
}

/// Removes `dir` and everything in it, also what a step made read-only (Go's module cache does).
async fn remove_dir(dir: &Path) -> io::Result<()> {
    match tokio::fs::remove_dir_all(dir).await {
        Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
            let owned = dir.to_owned();
            tokio::task::spawn_blocking(move || make_writable(&owned))
                .await
                .map_err(io::Error::other)?;
            tokio::fs::remove_dir_all(dir).await
        }
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(error),
        _ => Ok(()),
    }
}

/// Gives the owner full rights on every directory under `dir`, so their entries can be removed.
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !metadata.is_dir() {
        return;
    }
    let mut permissions = metadata.permissions();
    permissions.set_mode(permissions.mode() | 0o700);
    let _ = std::fs::set_permissions(dir, permissions);
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

/// The repository as it may be shown in a log: without a password in its URL.
pub fn display_repository(repository: &str) -> String {
    match reqwest::Url::parse(repository) {
        Ok(mut url) if url.password().is_some() || !url.username().is_empty() => {
            let _ = url.set_password(None);
            let _ = url.set_username("***");
            url.to_string()
        }
        _ => repository.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn workspace() -> (tempfile::TempDir, Workspace) {
        let dir = tempfile::tempdir().unwrap();
        let ws = Workspace::create(dir.path(), Uuid::nil(), 2).await.unwrap();
        (dir, ws)
    }

    #[tokio::test]
    async fn a_workspace_is_named_for_the_job_and_attempt_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(format!("{}-2", Uuid::nil()));
        std::fs::create_dir_all(stale.join("left-over")).unwrap();
        let ws = Workspace::create(dir.path(), Uuid::nil(), 2).await.unwrap();
        assert_eq!(ws.path(), stale.canonicalize().unwrap());
        assert_eq!(std::fs::read_dir(ws.path()).unwrap().count(), 0);
        assert!(!ws.scratch().starts_with(ws.path()));
        let (root, scratch) = (ws.path().to_owned(), ws.scratch().to_owned());
        ws.remove().await.unwrap();
        assert!(!root.exists() && !scratch.exists());
    }

    #[tokio::test]
    async fn paths_resolve_inside_the_workspace_only() {
        let (_dir, ws) = workspace().await;
        std::fs::create_dir_all(ws.path().join("dist/web")).unwrap();
        std::fs::write(ws.path().join("report.txt"), "ok").unwrap();
        std::os::unix::fs::symlink("/etc", ws.path().join("escape")).unwrap();
        std::os::unix::fs::symlink("dist", ws.path().join("inside")).unwrap();

        assert_eq!(ws.resolve("dist/web").unwrap(), ws.path().join("dist/web"));
        assert_eq!(
            ws.resolve("dist/../report.txt").unwrap(),
            ws.path().join("report.txt")
        );
        assert_eq!(
            ws.resolve("inside/web").unwrap(),
            ws.path().join("dist/web")
        );
        assert!(matches!(ws.resolve("missing"), Err(ResolveError::NotFound)));
        assert!(matches!(ws.resolve("../.."), Err(ResolveError::Outside)));
        assert!(matches!(
            ws.resolve("/etc/passwd"),
            Err(ResolveError::Outside)
        ));
        assert!(matches!(
            ws.resolve("escape/passwd"),
            Err(ResolveError::Outside)
        ));
    }

    #[tokio::test]
    async fn read_only_directories_are_removed_too() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, ws) = workspace().await;
        let locked = ws.path().join("pkg/mod/locked");
        std::fs::create_dir_all(&locked).unwrap();
        std::fs::write(locked.join("go.mod"), "module x").unwrap();
        for dir in [&locked, &ws.path().join("pkg/mod")] {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o500)).unwrap();
        }
        let root = ws.path().to_owned();
        ws.remove().await.unwrap();
        assert!(!root.exists());
    }

    #[test]
    fn a_password_in_a_repository_url_is_not_shown() {
        assert_eq!(
            display_repository("https://bot:ghp_secret@github.com/acme/app.git"),
            "https://***@github.com/acme/app.git"
        );
        assert_eq!(display_repository("/srv/git/app"), "/srv/git/app");
        assert_eq!(
            display_repository("https://github.com/acme/app.git"),
            "https://github.com/acme/app.git"
        );
    }
}
