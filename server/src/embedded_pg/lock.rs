//! File locks shared by every [`EmbeddedPostgres`](super::EmbeddedPostgres) on one data
//! directory, in this process or another.
//!
//! - `start.lock`, held exclusively while one of them starts or stops the server, so two never
//!   race to run initdb or pg_ctl.
//! - `users.lock`, held shared by each of them for its whole life (its registration). The one
//!   that unregisters last finds it can lock it exclusively, and only that one stops the server.
//!
//! These are `flock` locks: the kernel drops them when a process dies, so a crash leaves no
//! stale lock. std opens files close-on-exec, so the server never inherits one. The functions
//! block the thread; async callers run them with `spawn_blocking`.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::Path;
use std::time::{Duration, Instant};

use super::EmbeddedPgError;

const START_POLL: Duration = Duration::from_millis(100);

/// A child forked by any thread of this process holds copies of every open file, and so of
/// their locks, until it execs. A registration dropped a moment ago can still be held that way,
/// so a refused exclusive lock is retried for this long before it counts as another user.
const USERS_SETTLE: Duration = Duration::from_millis(500);

const USERS_POLL: Duration = Duration::from_millis(10);

/// Takes `start.lock` (waiting up to `wait` while another process starts or stops the server),
/// then registers one more user. The caller starts or reuses the server, then drops the first
/// file and keeps the second, its registration.
pub(super) fn register(
    start_lock: &Path,
    users_lock: &Path,
    wait: Duration,
) -> Result<(File, File), EmbeddedPgError> {
    let start = lock_start(start_lock, wait)?;
    let registration = open(users_lock)?;
    // An exclusive holder also holds `start.lock`, or is a forked child about to exec: at most
    // a moment's wait.
    registration
        .lock_shared()
        .map_err(EmbeddedPgError::io("lock", users_lock))?;
    Ok((start, registration))
}

/// Ends `registration`. If it was the last, returns `start.lock`, held, and the caller stops
/// the server before dropping it.
pub(super) fn unregister(
    registration: File,
    start_lock: &Path,
    users_lock: &Path,
    wait: Duration,
) -> Result<Option<File>, EmbeddedPgError> {
    let start = lock_start(start_lock, wait)?;
    drop(registration);
    let probe = open(users_lock)?;
    let deadline = Instant::now() + USERS_SETTLE;
    loop {
        match probe.try_lock() {
            Ok(()) => return Ok(Some(start)),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(USERS_POLL);
            }
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(EmbeddedPgError::io("lock", users_lock)(e)),
        }
    }
}

fn lock_start(path: &Path, wait: Duration) -> Result<File, EmbeddedPgError> {
    let file = open(path)?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(START_POLL);
            }
            Err(TryLockError::WouldBlock) => {
                return Err(EmbeddedPgError::LockTimeout {
                    lock: path.to_path_buf(),
                    seconds: wait.as_secs(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(EmbeddedPgError::io("lock", path)(e)),
        }
    }
}

fn open(path: &Path) -> Result<File, EmbeddedPgError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(EmbeddedPgError::io("open lock file", path))
}
