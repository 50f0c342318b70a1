//! The cluster on disk, and the PostgreSQL programs run on it: initdb and pg_ctl.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tracing::info;

use super::binaries::Binaries;
use super::run_as::RunAs;
use super::{EmbeddedPgError, ROLE, command};

/// Settings that differ from PostgreSQL's defaults, or that we rely on staying as they are.
/// Tests make a database per test, each with its own pool, which is more than the default 100
/// connections; 128MB of shared buffers is the default and fits a small server.
const SERVER_SETTINGS: [(&str, &str); 2] =
    [("shared_buffers", "128MB"), ("max_connections", "200")];

/// What `pg_ctl -t` waits for the server to start or stop. Crash recovery after a kill takes
/// seconds on a small cluster; a minute leaves room for a slow disk.
const PG_CTL_WAIT_SECS: u64 = 60;

/// pg_ctl's own wait, plus time for it to report.
pub(super) const PG_CTL_TIMEOUT: Duration = Duration::from_secs(PG_CTL_WAIT_SECS + 15);

/// initdb writes and syncs about 40 MB, which takes tens of seconds on a slow disk.
const INITDB_TIMEOUT: Duration = Duration::from_secs(120);

/// How much of the server log a start error quotes.
const LOG_TAIL_LINES: usize = 20;

/// The paths under `<data_dir>/postgres/`.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub base: PathBuf,
    pub data: PathBuf,
    pub run: PathBuf,
    pub log: PathBuf,
    pub password: PathBuf,
    pub start_lock: PathBuf,
    pub users_lock: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Layout {
        let base = data_dir.join("postgres");
        Layout {
            data: base.join("data"),
            run: base.join("run"),
            log: base.join("postgres.log"),
            password: base.join("password"),
            start_lock: base.join("start.lock"),
            users_lock: base.join("users.lock"),
            base,
        }
    }
}

/// A cluster's paths, with the programs and the user that run it.
#[derive(Debug)]
pub(super) struct Cluster {
    pub layout: Layout,
    pub binaries: Binaries,
    pub run_as: RunAs,
}

impl Cluster {
    /// Creates `postgres/` and `postgres/run/` if needed, mode 0700, owned by the cluster user.
    pub fn create_dirs(&self) -> Result<(), EmbeddedPgError> {
        for dir in [&self.layout.base, &self.layout.run] {
            match std::fs::create_dir(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(EmbeddedPgError::io("create", dir)(e));
                }
                _ => {}
            }
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(EmbeddedPgError::io("set the permissions of", dir))?;
            self.run_as.chown(dir)?;
        }
        Ok(())
    }

    /// Makes the cluster in `data.initdb/`, then renames it to `data/`, so a start interrupted
    /// half-way through initdb leaves no half-made cluster behind.
    ///
    /// Local (socket) connections are trusted; TCP ones need the password, which initdb
    /// requires up front for `scram-sha-256`, so it is written even when TCP is not used.
    pub async fn init(&self) -> Result<(), EmbeddedPgError> {
        let layout = &self.layout;
        let staging = layout.base.join("data.initdb");
        if staging.exists() {
            std::fs::remove_dir_all(&staging).map_err(EmbeddedPgError::io("remove", &staging))?;
        }
        self.write_new_password()?;
        info!(
            "creating a PostgreSQL {} cluster in {}",
            self.binaries.version,
            layout.data.display()
        );
        let mut cmd = self.run_as.command(&self.binaries.initdb, &layout.base);
        cmd.arg("-D")
            .arg(&staging)
            .args(["-U", ROLE, "-E", "UTF8", "--no-locale"])
            .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
            .arg(format!("--pwfile={}", layout.password.display()));
        let output = command::output(cmd, "initdb", INITDB_TIMEOUT).await?;
        if !output.status.success() {
            return Err(EmbeddedPgError::CommandFailed {
                program: "initdb",
                output: command::describe(&output),
            });
        }
        std::fs::rename(&staging, &layout.data)
            .map_err(EmbeddedPgError::io("move the new cluster to", &layout.data))
    }

    /// `pg_ctl start`, waiting until the server takes connections. It listens on the socket in
    /// `run/` at `port`, and with `tcp` also on 127.0.0.1 at the same port.
    pub async fn start(&self, port: u16, tcp: bool) -> Result<(), EmbeddedPgError> {
        let layout = &self.layout;
        info!(
            "starting embedded PostgreSQL {} at {}",
            self.binaries.version,
            layout.data.display()
        );
        let mut server_args = vec![
            "-p".to_owned(),
            port.to_string(),
            "-c".to_owned(),
            format!("listen_addresses={}", if tcp { "127.0.0.1" } else { "" }),
            "-c".to_owned(),
            format!(
                "unix_socket_directories={}",
                list_element(&layout.run.to_string_lossy())
            ),
            "-c".to_owned(),
            "unix_socket_permissions=0700".to_owned(),
        ];
        for (name, value) in SERVER_SETTINGS {
            server_args.extend(["-c".to_owned(), format!("{name}={value}")]);
        }
        // pg_ctl hands `-o` to /bin/sh, so each argument is quoted for the shell.
        let server_options: Vec<String> = server_args.iter().map(|arg| shell_quote(arg)).collect();

        let mut cmd = self.run_as.command(&self.binaries.pg_ctl, &layout.base);
        cmd.arg("start")
            .arg("-D")
            .arg(&layout.data)
            .arg("-l")
            .arg(&layout.log)
            .args(["-w", "-t", &PG_CTL_WAIT_SECS.to_string(), "-s"])
            .arg("-o")
            .arg(server_options.join(" "));
        let output = command::output(cmd, "pg_ctl start", PG_CTL_TIMEOUT).await?;
        if !output.status.success() {
            return Err(EmbeddedPgError::StartFailed {
                output: command::describe(&output),
                log: layout.log.clone(),
                log_tail: log_tail(&layout.log),
            });
        }
        Ok(())
    }

    /// `pg_ctl stop` in `mode` (`fast` or `immediate`), waiting until the server has exited.
    pub fn stop_command(&self, mode: &str) -> std::process::Command {
        let mut cmd = self
            .run_as
            .command(&self.binaries.pg_ctl, &self.layout.base);
        cmd.arg("stop").arg("-D").arg(&self.layout.data).args([
            "-m",
            mode,
            "-w",
            "-t",
            &PG_CTL_WAIT_SECS.to_string(),
            "-s",
        ]);
        cmd
    }

    /// Writes a new random password to the password file (mode 0600, owned by the cluster
    /// user, as initdb reads it) and returns it. Hex digits only, so it needs no quoting in a
    /// URL or an SQL literal.
    pub fn write_new_password(&self) -> Result<String, EmbeddedPgError> {
        let path = &self.layout.password;
        let mut bytes = [0u8; 24];
        File::open("/dev/urandom")
            .and_then(|mut random| random.read_exact(&mut bytes))
            .map_err(EmbeddedPgError::io("read", "/dev/urandom"))?;
        let password: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(EmbeddedPgError::io("replace", path)(e));
            }
            _ => {}
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut file| file.write_all(format!("{password}\n").as_bytes()))
            .map_err(EmbeddedPgError::io("write", path))?;
        self.run_as.chown(path)?;
        Ok(password)
    }
}

/// Binding port 0 lets the kernel pick a free port. Another process could take it before the
/// server binds it; the start then fails and says so.
pub(super) fn free_loopback_port() -> Result<u16, EmbeddedPgError> {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(EmbeddedPgError::io("find a free port on", "127.0.0.1"))
}

/// The last lines of the server log, where a failed start explains itself.
fn log_tail(path: &Path) -> String {
    const MAX_BYTES: u64 = 8 * 1024;
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(MAX_BYTES)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
        }
        Err(e) => format!("(could not read the log: {e})"),
    }
}

/// Quotes `arg` for /bin/sh.
fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Quotes a path as one element of a PostgreSQL list setting such as `unix_socket_directories`,
/// where commas separate elements and `""` is a quote inside quotes.
fn list_element(path: &str) -> String {
    format!("\"{}\"", path.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("listen_addresses="), "'listen_addresses='");
        assert_eq!(shell_quote("it's a dir"), r"'it'\''s a dir'");
    }

    #[test]
    fn list_element_quotes_commas_and_quotes() {
        assert_eq!(list_element("/srv/a,b"), "\"/srv/a,b\"");
        assert_eq!(list_element("/srv/\"x\""), "\"/srv/\"\"x\"\"\"");
    }
}
