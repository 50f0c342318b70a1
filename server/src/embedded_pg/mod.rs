//! A private PostgreSQL cluster, for running Flightdeck without `DATABASE_URL`.
//!
//! [`EmbeddedPostgres::start`] runs the system's PostgreSQL programs on a cluster kept under the
//! data directory, and [`EmbeddedPostgres::stop`] shuts it down:
//!
//! ```text
//! <data_dir>/postgres/     mode 0700, owned by the cluster user
//!   data/                  PGDATA, made by initdb on the first start
//!   run/                   the socket .s.PGSQL.5432 and its lock file, mode 0700
//!   postgres.log           the server log (pg_ctl -l appends to it)
//!   password               the `flightdeck` role's password, for TCP mode only (0600)
//!   start.lock users.lock  see the `lock` module
//! ```
//!
//! Decisions, and why:
//! - **Who runs it.** As root, the cluster runs as the `postgres` system user (PostgreSQL refuses
//!   root), which gets the `postgres/` directory. Otherwise it runs as the current user.
//! - **Who can connect.** The server listens only on a Unix socket in `run/`, mode 0700, so only
//!   the cluster user and root can reach it, and local connections use `trust`. The port is
//!   always 5432: it only names the socket file in a private directory, so it cannot clash.
//!   [`Options::tcp`] also opens a free loopback port with SCRAM password authentication.
//! - **A server already running for the data directory** (another Flightdeck on the same data
//!   directory, or one left by a Flightdeck that crashed) is reused when it answers, not started
//!   twice. Each `EmbeddedPostgres` registers as a user of the server, and the last one to stop,
//!   in whichever process, stops it; one that crashed stops nothing, and the next reuses.
//! - **A stale `postmaster.pid`** (the server was killed, or the machine rebooted, and its pid
//!   may now belong to any process) is removed once its pid is shown not to be a postgres
//!   working in this data directory; see the `postmaster` module.
//! - **Durability.** Settings are PostgreSQL's defaults apart from `SERVER_SETTINGS` in the `cluster`
//!   module:
//!   never `fsync=off`, the data must survive a crash.

mod binaries;
mod cluster;
mod command;
mod error;
mod lock;
mod postmaster;
mod run_as;

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::{Connection, PgConnection};
use tracing::{info, warn};

use binaries::Binaries;
use cluster::{Cluster, Layout};
pub use error::EmbeddedPgError;
use postmaster::State;
use run_as::RunAs;

/// The superuser initdb creates, and the role Flightdeck connects as.
const ROLE: &str = "flightdeck";

/// The database Flightdeck keeps its data in.
const DATABASE: &str = "flightdeck";

/// The port of the socket-only server. It only names the socket file (`.s.PGSQL.5432`).
const SOCKET_PORT: u16 = 5432;

/// How long to wait for another process to finish starting or stopping the server: its initdb
/// and `pg_ctl start` together.
const START_LOCK_WAIT: Duration = Duration::from_secs(200);

/// How long `Drop` blocks a thread waiting for another process to finish starting or stopping.
const DROP_LOCK_WAIT: Duration = Duration::from_secs(10);

/// A Unix socket address holds a path of at most 107 bytes plus its terminating NUL.
const MAX_SOCKET_PATH: usize = 107;

/// What to start, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Flightdeck's data directory; the cluster lives in its `postgres/` subdirectory.
    pub data_dir: PathBuf,
    /// The directory holding `initdb`, `pg_ctl` and `postgres`. `None` searches PATH, then
    /// `/usr/lib/postgresql/<major>/bin`.
    pub bin_dir: Option<PathBuf>,
    /// Also listen on a free port of 127.0.0.1, with password authentication, and give that
    /// address in [`EmbeddedPostgres::url`].
    pub tcp: bool,
}

impl Options {
    pub fn new(data_dir: impl Into<PathBuf>) -> Options {
        Options {
            data_dir: data_dir.into(),
            bin_dir: None,
            tcp: false,
        }
    }
}

/// A running embedded PostgreSQL server. Call [`EmbeddedPostgres::stop`] on shutdown; dropping
/// it stops the server too, but abruptly (`pg_ctl stop -m immediate`) and blocking the thread.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    cluster: Cluster,
    endpoint: Endpoint,
    /// This value's registration as a user of the server; `None` once stopped.
    user_registration: Option<File>,
}

/// Where the server takes connections.
#[derive(Clone)]
struct Endpoint {
    socket_dir: PathBuf,
    port: u16,
    /// Set in TCP mode: the server also listens on 127.0.0.1 at `port`.
    tcp_password: Option<String>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("socket_dir", &self.socket_dir)
            .field("port", &self.port)
            .field(
                "tcp",
                &self.tcp_password.as_ref().map(|_| "[password hidden]"),
            )
            .finish()
    }
}

impl Endpoint {
    fn url(&self) -> String {
        let port = self.port;
        match &self.tcp_password {
            Some(password) => format!("postgres://{ROLE}:{password}@127.0.0.1:{port}/{DATABASE}"),
            None => format!(
                "postgres:///{DATABASE}?host={}&port={port}&user={ROLE}",
                percent_encode(&self.socket_dir.to_string_lossy())
            ),
        }
    }
}

impl EmbeddedPostgres {
    /// Starts (or reuses) the cluster under `data_dir`, listening on its Unix socket only.
    pub async fn start(data_dir: &Path) -> Result<EmbeddedPostgres, EmbeddedPgError> {
        Self::start_with(Options::new(data_dir)).await
    }

    /// Starts (or reuses) the cluster as `options` say, creating it on the first start and the
    /// `flightdeck` database if it is missing.
    pub async fn start_with(options: Options) -> Result<EmbeddedPostgres, EmbeddedPgError> {
        let run_as = RunAs::detect()?;
        std::fs::create_dir_all(&options.data_dir)
            .map_err(EmbeddedPgError::io("create", &options.data_dir))?;
        let data_dir = options
            .data_dir
            .canonicalize()
            .map_err(EmbeddedPgError::io("resolve", &options.data_dir))?;
        check_data_dir_path(&data_dir)?;
        let layout = Layout::new(&data_dir);
        check_socket_path(&layout.run)?;

        let cluster_major = std::fs::read_to_string(layout.data.join("PG_VERSION"))
            .ok()
            .map(|version| version.trim().to_owned());
        let binaries = Binaries::locate(
            options.bin_dir.as_deref(),
            cluster_major.as_deref(),
            &layout.data,
        )
        .await?;

        run_as.check_can_reach(&data_dir)?;
        let cluster = Cluster {
            layout,
            binaries,
            run_as,
        };
        cluster.create_dirs()?;
        let layout = &cluster.layout;

        let (start_lock, user_registration) = {
            let (start, users) = (layout.start_lock.clone(), layout.users_lock.clone());
            off_runtime(move || lock::register(&start, &users, START_LOCK_WAIT)).await?
        };

        let state = postmaster::settled_state(&layout.data, &layout.log).await?;
        let endpoint = if let State::Running(pid_file) = state {
            info!(
                "reusing the PostgreSQL server already running for {} (pid {})",
                layout.data.display(),
                pid_file.pid
            );
            if options.tcp && pid_file.listen_address.is_none() {
                return Err(EmbeddedPgError::TcpNotEnabled {
                    data_dir: layout.data.clone(),
                });
            }
            Endpoint {
                socket_dir: pid_file.socket_dir.unwrap_or_else(|| layout.run.clone()),
                port: pid_file.port.unwrap_or(SOCKET_PORT),
                tcp_password: None,
            }
        } else {
            postmaster::clear_leftovers(&state, &layout.data, &layout.run).await?;
            if cluster_major.is_none() {
                cluster.init().await?;
            }
            let port = if options.tcp {
                cluster::free_loopback_port()?
            } else {
                SOCKET_PORT
            };
            cluster.start(port, options.tcp).await?;
            Endpoint {
                socket_dir: layout.run.clone(),
                port,
                tcp_password: None,
            }
        };

        let mut server = EmbeddedPostgres {
            cluster,
            endpoint,
            user_registration: Some(user_registration),
        };
        let prepared = server.prepare_database(options.tcp).await;
        drop(start_lock);
        // On failure `server` drops here, once the start lock is free, and its `Drop` stops the
        // server if no one else uses it.
        prepared?;
        Ok(server)
    }

    /// Options for connecting to the `flightdeck` database, always over the Unix socket.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.connect_options_for(DATABASE)
    }

    /// A URL for the `flightdeck` database that psql and other programs on this machine accept.
    ///
    /// Without TCP it names the socket directory, which only the cluster user and root can
    /// enter: `postgres:///flightdeck?host=/data/postgres/run&port=5432&user=flightdeck` (sqlx
    /// rejects a user name before an empty host, so the user goes in the query). In TCP mode
    /// it holds the password: `postgres://flightdeck:<password>@127.0.0.1:<port>/flightdeck`.
    pub fn url(&self) -> String {
        self.endpoint.url()
    }

    /// Stops the server (`pg_ctl stop -m fast`: connections are closed, work in progress rolled
    /// back) and waits until it has exited, unless another `EmbeddedPostgres` still uses it.
    pub async fn stop(mut self) -> Result<(), EmbeddedPgError> {
        let Some(registration) = self.user_registration.take() else {
            return Ok(());
        };
        let layout = &self.cluster.layout;
        let (start, users) = (layout.start_lock.clone(), layout.users_lock.clone());
        let last_user =
            off_runtime(move || lock::unregister(registration, &start, &users, START_LOCK_WAIT))
                .await?;
        let Some(_start_lock) = last_user else {
            info!("leaving the embedded PostgreSQL running: another Flightdeck still uses it");
            return Ok(());
        };
        if !matches!(postmaster::inspect(&layout.data)?, State::Running(_)) {
            info!("the embedded PostgreSQL has already stopped");
            return Ok(());
        }
        info!(
            "stopping the embedded PostgreSQL at {}",
            layout.data.display()
        );
        let stop = self.cluster.stop_command("fast");
        let output = command::output(stop, "pg_ctl stop", cluster::PG_CTL_TIMEOUT).await?;
        if !output.status.success() {
            return Err(EmbeddedPgError::StopFailed {
                output: command::describe(&output),
            });
        }
        Ok(())
    }

    fn connect_options_for(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new_without_pgpass()
            .socket(&self.endpoint.socket_dir)
            .port(self.endpoint.port)
            .username(ROLE)
            .database(database)
            .ssl_mode(PgSslMode::Disable)
    }

    /// Creates the `flightdeck` database if it is missing and, in TCP mode, makes sure the role
    /// has the password in the password file.
    async fn prepare_database(&mut self, tcp: bool) -> Result<(), EmbeddedPgError> {
        let mut conn = PgConnection::connect_with(&self.connect_options_for("postgres"))
            .await
            .map_err(|source| EmbeddedPgError::Connect {
                endpoint: format!(
                    "{}/.s.PGSQL.{}",
                    self.endpoint.socket_dir.display(),
                    self.endpoint.port
                ),
                source,
            })?;
        let exists: bool =
            sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
                .bind(DATABASE)
                .fetch_one(&mut conn)
                .await
                .map_err(EmbeddedPgError::PrepareDatabase)?;
        if !exists {
            info!("creating the database `{DATABASE}`");
            sqlx::raw_sql(&format!("create database {DATABASE}"))
                .execute(&mut conn)
                .await
                .map_err(EmbeddedPgError::PrepareDatabase)?;
        }
        if tcp {
            let password_file = &self.cluster.layout.password;
            let password = match std::fs::read_to_string(password_file) {
                Ok(password) if !password.trim().is_empty() => password.trim().to_owned(),
                _ => {
                    warn!(
                        "{} is missing: setting a new password",
                        password_file.display()
                    );
                    let password = self.cluster.write_new_password()?;
                    sqlx::raw_sql(&format!("alter role {ROLE} password '{password}'"))
                        .execute(&mut conn)
                        .await
                        .map_err(EmbeddedPgError::PrepareDatabase)?;
                    password
                }
            };
            self.endpoint.tcp_password = Some(password);
        }
        // The server closes its end when this connection drops; a failed goodbye changes nothing.
        let _ = conn.close().await;
        Ok(())
    }
}

impl Drop for EmbeddedPostgres {
    /// The safety net for a missed [`EmbeddedPostgres::stop`]: stops the server in immediate
    /// mode (it recovers from its WAL on the next start), if no one else uses it.
    fn drop(&mut self) {
        let Some(registration) = self.user_registration.take() else {
            return;
        };
        let layout = &self.cluster.layout;
        let _start_lock = match lock::unregister(
            registration,
            &layout.start_lock,
            &layout.users_lock,
            DROP_LOCK_WAIT,
        ) {
            Ok(Some(start_lock)) => start_lock,
            Ok(None) => return,
            Err(e) => {
                warn!("not stopping the embedded PostgreSQL on drop: {e}");
                return;
            }
        };
        if !matches!(postmaster::inspect(&layout.data), Ok(State::Running(_))) {
            return;
        }
        warn!("EmbeddedPostgres dropped without stop(): stopping PostgreSQL in immediate mode");
        match self.cluster.stop_command("immediate").output() {
            Ok(output) if output.status.success() => {}
            Ok(output) => warn!("pg_ctl stop failed: {}", command::describe(&output)),
            Err(e) => warn!("could not run pg_ctl stop: {e}"),
        }
    }
}

/// Runs a blocking lock operation on tokio's blocking threads.
async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EmbeddedPgError> + Send + 'static,
) -> Result<T, EmbeddedPgError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        // A blocking task is only cancelled when the runtime shuts down, and then nothing
        // awaits this; a panic carries on in the caller.
        Err(join_error) => std::panic::resume_unwind(join_error.into_panic()),
    }
}

/// pg_ctl puts the data directory and log paths in double quotes in a /bin/sh command line,
/// where these characters keep a meaning; the URL needs UTF-8.
fn check_data_dir_path(path: &Path) -> Result<(), EmbeddedPgError> {
    let reason = match path.to_str() {
        None => "is not valid UTF-8",
        Some(text) if text.contains(['"', '$', '`', '\\', '\n', '\r']) => {
            "contains a character that pg_ctl cannot pass to the shell (\", $, `, \\ or a line break)"
        }
        Some(_) => return Ok(()),
    };
    Err(EmbeddedPgError::UnsupportedPath {
        path: path.to_path_buf(),
        reason,
    })
}

fn check_socket_path(socket_dir: &Path) -> Result<(), EmbeddedPgError> {
    // The longest socket name, with a five-digit TCP port.
    let path = format!("{}/.s.PGSQL.65535", socket_dir.display());
    if path.len() > MAX_SOCKET_PATH {
        return Err(EmbeddedPgError::SocketPathTooLong {
            len: path.len(),
            path,
            max: MAX_SOCKET_PATH,
        });
    }
    Ok(())
}

/// Percent-encodes a URL query value, keeping `/` for readability.
fn percent_encode(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_url_parses_to_the_socket() {
        let endpoint = Endpoint {
            socket_dir: PathBuf::from("/srv/flight deck/postgres/run"),
            port: SOCKET_PORT,
            tcp_password: None,
        };
        let url = endpoint.url();
        assert_eq!(
            url,
            "postgres:///flightdeck?host=/srv/flight%20deck/postgres/run&port=5432&user=flightdeck"
        );
        let options: PgConnectOptions = url.parse().expect("sqlx parses the URL");
        assert_eq!(
            options.get_socket(),
            Some(&PathBuf::from("/srv/flight deck/postgres/run"))
        );
        assert_eq!(options.get_port(), 5432);
        assert_eq!(options.get_username(), ROLE);
        assert_eq!(options.get_database(), Some(DATABASE));
    }

    #[test]
    fn paths_pg_ctl_cannot_quote_are_refused() {
        assert!(check_data_dir_path(Path::new("/srv/flight deck's data")).is_ok());
        for path in ["/srv/\"data\"", "/srv/$HOME", "/srv/a\\b"] {
            assert!(
                matches!(
                    check_data_dir_path(Path::new(path)),
                    Err(EmbeddedPgError::UnsupportedPath { .. })
                ),
                "{path}"
            );
        }
    }

    #[test]
    fn long_socket_paths_are_refused() {
        assert!(check_socket_path(Path::new("/srv/flightdeck/postgres/run")).is_ok());
        let long = PathBuf::from(format!("/{}", "x".repeat(100)));
        assert!(matches!(
            check_socket_path(&long),
            Err(EmbeddedPgError::SocketPathTooLong { .. })
        ));
    }
}
