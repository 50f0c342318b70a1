use std::path::PathBuf;

/// Why the embedded PostgreSQL could not be started or stopped.
///
/// Every message says what to do about it, because it is shown to whoever runs the server.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    /// No directory holds `initdb`, `pg_ctl` and `postgres`.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in {looked_in}: install the \
         `postgresql` package (Debian: apt-get install postgresql) or set DATABASE_URL"
    )]
    BinariesNotFound { looked_in: String },

    /// The cluster was made by another major version than any binaries found.
    #[error(
        "the PostgreSQL cluster in {data_dir} was created by PostgreSQL {cluster_major}, but the \
         binaries found are version {found}: install PostgreSQL {cluster_major} (Debian: apt-get \
         install postgresql-{cluster_major}) or upgrade the cluster with pg_upgrade"
    )]
    VersionMismatch {
        data_dir: PathBuf,
        cluster_major: String,
        found: String,
    },

    /// Running as root, where PostgreSQL must run as `postgres`, and that user does not exist.
    #[error(
        "running as root, but there is no `postgres` system user to run PostgreSQL as (PostgreSQL \
         refuses to run as root): install the `postgresql` package, which creates it, run \
         Flightdeck as an unprivileged user, or set DATABASE_URL"
    )]
    NoPostgresUser,

    /// The user database could not be read.
    #[error("could not look up the `postgres` system user")]
    UserLookup(#[source] nix::Error),

    /// The cluster user cannot enter a directory on the way to the data directory.
    #[error(
        "the `{user}` user cannot enter {dir} (owner uid {owner}, mode {mode:04o}), so PostgreSQL \
         cannot reach its data: choose a data directory it can reach, or set DATABASE_URL"
    )]
    DirNotReachable {
        user: String,
        dir: PathBuf,
        owner: u32,
        mode: u32,
    },

    /// The data directory's path cannot be handed to pg_ctl or put in a URL.
    #[error("the data directory {} {reason}: choose another path or set DATABASE_URL", path.display())]
    UnsupportedPath { path: PathBuf, reason: &'static str },

    /// The socket path would exceed what a Unix socket address holds.
    #[error(
        "the PostgreSQL socket path {path} is {len} bytes long, but Unix sockets allow at most \
         {max}: choose a shorter data directory or set DATABASE_URL"
    )]
    SocketPathTooLong {
        path: String,
        len: usize,
        max: usize,
    },

    /// A file system operation failed.
    #[error("could not {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A PostgreSQL program exited with an error.
    #[error("{program} failed: {output}")]
    CommandFailed {
        program: &'static str,
        output: String,
    },

    /// A PostgreSQL program ran past its time limit and was killed.
    #[error("{program} did not finish within {seconds} s")]
    CommandTimedOut { program: &'static str, seconds: u64 },

    /// `pg_ctl start` failed; the server log usually says why.
    #[error("PostgreSQL did not start: {output}\n--- last lines of {} ---\n{log_tail}", log.display())]
    StartFailed {
        output: String,
        log: PathBuf,
        log_tail: String,
    },

    /// `pg_ctl stop` failed.
    #[error("PostgreSQL did not stop: {output}")]
    StopFailed { output: String },

    /// A postmaster for this data directory runs but did not become ready.
    #[error(
        "PostgreSQL (pid {pid}) is running for {data_dir} but was still `{status}` after {seconds} s: \
         see {}",
        log.display()
    )]
    NotReady {
        pid: i32,
        data_dir: PathBuf,
        status: String,
        seconds: u64,
        log: PathBuf,
    },

    /// Server processes of a dead postmaster are still alive and would block a new one.
    #[error(
        "old PostgreSQL processes for {data_dir} are still running (pids {pids:?}) although their \
         postmaster is gone: stop them and start again"
    )]
    LeftoverProcesses { data_dir: PathBuf, pids: Vec<i32> },

    /// Another process held the start lock for too long.
    #[error(
        "waited {seconds} s for another Flightdeck process to finish starting or stopping \
         PostgreSQL (lock {})",
        lock.display()
    )]
    LockTimeout { lock: PathBuf, seconds: u64 },

    /// TCP was asked for, but the server already running for this data directory has no TCP.
    #[error(
        "PostgreSQL is already running for {data_dir} without TCP, but TCP was asked for: stop the \
         other Flightdeck process using this data directory first"
    )]
    TcpNotEnabled { data_dir: PathBuf },

    /// The server runs but refused or dropped the connection.
    #[error("could not connect to the embedded PostgreSQL at {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: sqlx::Error,
    },

    /// Creating the `flightdeck` database or setting the password failed.
    #[error("could not prepare the `flightdeck` database")]
    PrepareDatabase(#[source] sqlx::Error),
}

impl EmbeddedPgError {
    pub(super) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}
