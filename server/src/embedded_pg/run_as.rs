//! Which user the cluster runs as.
//!
//! `initdb` and `postgres` refuse to run as root. A root Flightdeck runs them as the `postgres`
//! system user that Debian's `postgresql` package creates, and gives that user the cluster's
//! directories. Anyone else runs them as themselves.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::unistd::{Gid, Uid, User};

use super::EmbeddedPgError;

/// The system user a root Flightdeck runs PostgreSQL as.
const SYSTEM_USER: &str = "postgres";

#[derive(Debug, Clone)]
pub(super) enum RunAs {
    /// Not root: the cluster runs as the current user.
    CurrentUser,
    /// Root: the cluster runs as this system user.
    SystemUser {
        name: String,
        uid: Uid,
        gid: Gid,
        home: PathBuf,
    },
}

impl RunAs {
    pub fn detect() -> Result<RunAs, EmbeddedPgError> {
        if !Uid::effective().is_root() {
            return Ok(RunAs::CurrentUser);
        }
        let user = User::from_name(SYSTEM_USER)
            .map_err(EmbeddedPgError::UserLookup)?
            .ok_or(EmbeddedPgError::NoPostgresUser)?;
        Ok(RunAs::SystemUser {
            name: user.name,
            uid: user.uid,
            gid: user.gid,
            home: user.dir,
        })
    }

    /// A command that runs `program` as the cluster user, in `cwd`, with no standard input and
    /// without the caller's `PG*` variables (`PGPORT`, `PGDATA`, … would change what the programs
    /// do).
    ///
    /// With a uid set, std drops the supplementary groups (`setgroups(0)`) before `setuid`, so
    /// the child keeps only the user's primary group.
    pub fn command(&self, program: &Path, cwd: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(cwd).stdin(Stdio::null());
        for (key, _) in std::env::vars_os() {
            if key.as_bytes().starts_with(b"PG") {
                cmd.env_remove(key);
            }
        }
        if let RunAs::SystemUser {
            name,
            uid,
            gid,
            home,
        } = self
        {
            cmd.uid(uid.as_raw())
                .gid(gid.as_raw())
                .env("HOME", home)
                .env("USER", name)
                .env("LOGNAME", name);
        }
        cmd
    }

    /// Gives `path` to the cluster user, so the server can write it.
    pub fn chown(&self, path: &Path) -> Result<(), EmbeddedPgError> {
        match self {
            RunAs::CurrentUser => Ok(()),
            RunAs::SystemUser { uid, gid, .. } => {
                std::os::unix::fs::chown(path, Some(uid.as_raw()), Some(gid.as_raw()))
                    .map_err(EmbeddedPgError::io("change the owner of", path))
            }
        }
    }

    /// Checks that the cluster user may enter `dir` and every directory above it, judged by the
    /// mode bits (and only its primary group, see [`RunAs::command`]). Without this, initdb fails
    /// later with a message that names neither the directory nor the fix.
    pub fn check_can_reach(&self, dir: &Path) -> Result<(), EmbeddedPgError> {
        let RunAs::SystemUser { name, uid, gid, .. } = self else {
            return Ok(());
        };
        for ancestor in dir.ancestors() {
            let meta =
                std::fs::metadata(ancestor).map_err(EmbeddedPgError::io("inspect", ancestor))?;
            let mode = meta.permissions().mode();
            let search_bit = if meta.uid() == uid.as_raw() {
                0o100
            } else if meta.gid() == gid.as_raw() {
                0o010
            } else {
                0o001
            };
            if mode & search_bit == 0 {
                return Err(EmbeddedPgError::DirNotReachable {
                    user: name.clone(),
                    dir: ancestor.to_path_buf(),
                    owner: meta.uid(),
                    mode: mode & 0o7777,
                });
            }
        }
        Ok(())
    }
}
