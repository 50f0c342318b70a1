//! Finding the system's PostgreSQL server programs.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::EmbeddedPgError;
use super::command;

/// The programs the launcher runs. `pg_ctl` and `initdb` find `postgres` next to their own
/// resolved path, so all three must sit in one directory.
const PROGRAMS: [&str; 3] = ["initdb", "pg_ctl", "postgres"];

/// Where Debian and Ubuntu install each major version side by side.
const DEBIAN_VERSIONS_DIR: &str = "/usr/lib/postgresql";

/// `postgres --version` only prints a line.
const VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// One directory's set of server programs, with their version.
#[derive(Debug, Clone)]
pub(super) struct Binaries {
    pub initdb: PathBuf,
    pub pg_ctl: PathBuf,
    /// The full version, `15.18`.
    pub version: String,
}

impl Binaries {
    /// Picks the programs to run: `bin_dir` if given, else the first directory on PATH that has
    /// all three, else the highest `/usr/lib/postgresql/<major>/bin`.
    ///
    /// An existing cluster can only be run by its own major version (`PG_VERSION` in the data
    /// directory), so when `cluster_major` is known the first candidate of that version wins;
    /// after an upgrade of the system packages, Debian keeps the older version installed.
    pub async fn locate(
        bin_dir: Option<&Path>,
        cluster_major: Option<&str>,
        data_dir: &Path,
    ) -> Result<Binaries, EmbeddedPgError> {
        let candidates = match bin_dir {
            Some(dir) if has_programs(dir) => vec![dir.to_path_buf()],
            Some(_) => Vec::new(),
            None => search_candidates(),
        };
        if candidates.is_empty() {
            let looked_in = match bin_dir {
                Some(dir) => dir.display().to_string(),
                None => format!("PATH or {DEBIAN_VERSIONS_DIR}/<version>/bin"),
            };
            return Err(EmbeddedPgError::BinariesNotFound { looked_in });
        }

        let mut found = Vec::new();
        for dir in candidates {
            let version = server_version(&dir.join("postgres")).await?;
            if cluster_major.is_none_or(|major| major_version(&version) == major) {
                return Ok(Binaries {
                    initdb: dir.join("initdb"),
                    pg_ctl: dir.join("pg_ctl"),
                    version,
                });
            }
            found.push(format!("{version} in {}", dir.display()));
        }
        Err(EmbeddedPgError::VersionMismatch {
            data_dir: data_dir.to_path_buf(),
            cluster_major: cluster_major.unwrap_or_default().to_owned(),
            found: found.join(", "),
        })
    }
}

/// PATH directories with all three programs, then Debian's versioned directories, newest first.
fn search_candidates() -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    candidates.retain(|dir| has_programs(dir));

    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_VERSIONS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_programs(dir))
        .collect();
    versioned.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    candidates.extend(versioned.into_iter().map(|(_, dir)| dir));
    candidates
}

fn has_programs(dir: &Path) -> bool {
    PROGRAMS.iter().all(|name| {
        std::fs::metadata(dir.join(name))
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

/// Runs `postgres --version`, which prints `postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`.
async fn server_version(postgres: &Path) -> Result<String, EmbeddedPgError> {
    let mut cmd = std::process::Command::new(postgres);
    cmd.arg("--version");
    let output = command::output(cmd, "postgres --version", VERSION_TIMEOUT).await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    match stdout.split_whitespace().nth(2) {
        Some(version) if output.status.success() => Ok(version.to_owned()),
        _ => Err(EmbeddedPgError::CommandFailed {
            program: "postgres --version",
            output: command::describe(&output),
        }),
    }
}

/// The major version as `PG_VERSION` spells it: `15` for 15.18, `9.6` for 9.6.24, `17` for
/// 17beta1.
pub(super) fn major_version(version: &str) -> String {
    let mut parts = version.split('.');
    let first: String = parts
        .next()
        .unwrap_or_default()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    match (first.parse::<u32>(), parts.next()) {
        (Ok(major), Some(minor)) if major < 10 => format!("{major}.{minor}"),
        _ => first,
    }
}

#[cfg(test)]
mod tests {
    use super::major_version;

    #[test]
    fn major_version_matches_pg_version_spelling() {
        assert_eq!(major_version("15.18"), "15");
        assert_eq!(major_version("17beta1"), "17");
        assert_eq!(major_version("9.6.24"), "9.6");
    }
}
