//! Is a server already running for the data directory, and clearing up after one that died.
//!
//! A running postmaster keeps `postmaster.pid` in its data directory:
//!
//! ```text
//! 12345                      pid
//! /srv/flightdeck/postgres/data
//! 1716200000                 start time
//! 5432                       port
//! /srv/flightdeck/postgres/run   first socket directory
//!                            first listen address (empty: none)
//!   5432001     65538        shared memory key and id
//! ready                      status: starting, stopping, ready or standby
//! ```
//!
//! After a crash or a reboot the file stays behind. PostgreSQL ignores it when its pid is dead,
//! but not when the pid has been reused by another process, and the same goes for the socket
//! lock file `run/.s.PGSQL.<port>.lock`. So the launcher decides itself: the pid is our postmaster
//! only if it is a `postgres` process whose working directory is this data directory (the
//! postmaster and its children `chdir` there).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use tracing::{info, warn};

use super::EmbeddedPgError;

/// The name of the lock file in the data directory.
pub(super) const PID_FILE: &str = "postmaster.pid";

/// Crash recovery of a small cluster takes seconds; a server reading a long WAL tail may need
/// more. Past this, a start that found a postmaster still `starting` gives up.
const READY_WAIT: Duration = Duration::from_secs(60);

/// After their postmaster dies, server processes notice within moments and exit. While any is
/// left, a new postmaster refuses the shared memory they still hold.
const LEFTOVER_WAIT: Duration = Duration::from_secs(15);

const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// What `postmaster.pid` says about the postmaster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PidFile {
    pub pid: i32,
    pub port: Option<u16>,
    pub socket_dir: Option<PathBuf>,
    pub listen_address: Option<String>,
    /// Absent before PostgreSQL 10, which did not write it.
    pub status: Option<String>,
}

impl PidFile {
    pub fn parse(contents: &str) -> Option<PidFile> {
        let lines: Vec<&str> = contents.lines().collect();
        let non_empty = |index: usize| {
            lines
                .get(index)
                .map(|line| line.trim())
                .filter(|line| !line.is_empty())
        };
        Some(PidFile {
            pid: non_empty(0)?.parse().ok()?,
            port: non_empty(3).and_then(|port| port.parse().ok()),
            socket_dir: non_empty(4).map(PathBuf::from),
            listen_address: non_empty(5).map(str::to_owned),
            status: non_empty(7).map(str::to_owned),
        })
    }

    fn is_ready(&self) -> bool {
        matches!(self.status.as_deref(), None | Some("ready"))
    }
}

/// The state of the cluster as far as processes go.
#[derive(Debug)]
pub(super) enum State {
    /// No `postmaster.pid`: shut down cleanly, or never started.
    Stopped,
    /// `postmaster.pid` names a live postmaster for this data directory.
    Running(PidFile),
    /// `postmaster.pid` is left from a postmaster that is gone.
    Stale { pid: Option<i32> },
}

pub(super) fn inspect(data: &Path) -> Result<State, EmbeddedPgError> {
    let path = data.join(PID_FILE);
    let contents = match std::fs::read_to_string(&path) {
        Ok(contents) => contents,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::Stopped),
        Err(e) => return Err(EmbeddedPgError::io("read", path)(e)),
    };
    Ok(match PidFile::parse(&contents) {
        Some(pid_file) if is_our_postgres(pid_file.pid, data) => State::Running(pid_file),
        Some(pid_file) => State::Stale {
            pid: Some(pid_file.pid),
        },
        None => State::Stale { pid: None },
    })
}

/// Inspects the cluster, waiting while a live postmaster is starting up or shutting down, so
/// the answer is `Running` only for a server that takes connections.
pub(super) async fn settled_state(data: &Path, log: &Path) -> Result<State, EmbeddedPgError> {
    let deadline = Instant::now() + READY_WAIT;
    loop {
        let state = inspect(data)?;
        let State::Running(pid_file) = &state else {
            return Ok(state);
        };
        if pid_file.is_ready() {
            return Ok(state);
        }
        if Instant::now() >= deadline {
            return Err(EmbeddedPgError::NotReady {
                pid: pid_file.pid,
                data_dir: data.to_path_buf(),
                status: pid_file.status.clone().unwrap_or_default(),
                seconds: READY_WAIT.as_secs(),
                log: log.to_path_buf(),
            });
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Clears what a dead postmaster left, before a new one starts: a stale `postmaster.pid`, its
/// server processes (waited for, not killed), and the socket and socket lock files in the
/// private socket directory.
pub(super) async fn clear_leftovers(
    state: &State,
    data: &Path,
    socket_dir: &Path,
) -> Result<(), EmbeddedPgError> {
    if let State::Stale { pid } = state {
        let path = data.join(PID_FILE);
        match pid {
            Some(pid) => warn!(
                "removing stale {}: pid {pid} is not a PostgreSQL server for this data directory",
                path.display()
            ),
            None => warn!("removing unreadable {}", path.display()),
        }
        remove_if_present(&path)?;
    }

    let deadline = Instant::now() + LEFTOVER_WAIT;
    let mut reported = false;
    loop {
        let pids = postgres_processes_in(data);
        if pids.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            return Err(EmbeddedPgError::LeftoverProcesses {
                data_dir: data.to_path_buf(),
                pids,
            });
        }
        if !reported {
            info!("waiting for old PostgreSQL processes {pids:?} to exit");
            reported = true;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }

    let entries = std::fs::read_dir(socket_dir).map_err(EmbeddedPgError::io("list", socket_dir))?;
    for entry in entries.flatten() {
        if entry
            .file_name()
            .as_encoded_bytes()
            .starts_with(b".s.PGSQL.")
        {
            remove_if_present(&entry.path())?;
        }
    }
    Ok(())
}

fn remove_if_present(path: &Path) -> Result<(), EmbeddedPgError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(EmbeddedPgError::io("remove", path)(e))
        }
        _ => Ok(()),
    }
}

/// Whether `pid` is a live (not zombie) `postgres` process working in `data`.
///
/// Without `/proc`, only liveness can be checked, and a live pid is taken to be the postmaster;
/// PostgreSQL then refuses to start if it is not, which is the safe side.
fn is_our_postgres(pid: i32, data: &Path) -> bool {
    if pid <= 0 {
        return false;
    }
    if !Path::new("/proc/self/cwd").exists() {
        return matches!(kill(Pid::from_raw(pid), None), Ok(()) | Err(Errno::EPERM));
    }
    is_postgres_in(pid, data)
}

/// `/proc/<pid>/cwd` is unreadable for zombies and for other users' processes (unless root); a
/// postmaster of ours is neither.
fn is_postgres_in(pid: i32, data: &Path) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let in_data = std::fs::read_link(proc_dir.join("cwd")).is_ok_and(|cwd| cwd == data);
    in_data
        && std::fs::read_to_string(proc_dir.join("comm"))
            .is_ok_and(|comm| matches!(comm.trim(), "postgres" | "postmaster"))
}

/// Every `postgres` process whose working directory is `data`.
fn postgres_processes_in(data: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| is_postgres_in(pid, data))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_of_a_ready_server_is_parsed() {
        let contents = "4242\n/srv/fd/postgres/data\n1716200000\n5432\n/srv/fd/postgres/run\n\n  5432001    65538\nready   \n";
        assert_eq!(
            PidFile::parse(contents),
            Some(PidFile {
                pid: 4242,
                port: Some(5432),
                socket_dir: Some(PathBuf::from("/srv/fd/postgres/run")),
                listen_address: None,
                status: Some("ready".to_owned()),
            })
        );
    }

    #[test]
    fn truncated_pid_file_is_not_ready_and_garbage_is_rejected() {
        let starting =
            PidFile::parse("4242\n/data\n1716200000\n5432\n/run\n127.0.0.1\n\nstarting\n").unwrap();
        assert!(!starting.is_ready());
        assert_eq!(starting.listen_address.as_deref(), Some("127.0.0.1"));
        assert_eq!(PidFile::parse(""), None);
        assert_eq!(PidFile::parse("not a pid\n"), None);
    }

    #[test]
    fn a_live_process_elsewhere_is_not_our_postmaster() {
        let pid = i32::try_from(std::process::id()).unwrap();
        assert!(!is_our_postgres(pid, Path::new("/nonexistent/data")));
        assert!(!is_our_postgres(0, Path::new("/")));
    }
}
