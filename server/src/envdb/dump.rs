//! Backups with `pg_dump --format=custom` and restores with `pg_restore`.
//!
//! A backup streams pg_dump's output into the artifact storage while hashing and counting it
//! (never whole in memory or on local disk), under its content key. Alongside it go each
//! table's row counters (pg_stat_user_tables) and the newest applied migration.
//!
//! A restore first reads the stored bytes into a private file while hashing them and refuses
//! them unless they are the recorded sha256. It then rebuilds the database beside the live one
//! and swaps them, so the result is exactly what was dumped (tables a later migration added are
//! gone, not left behind as `pg_restore --clean` would leave them) and a failed restore changes
//! nothing:
//! 1. `create database fd_restore_…` with the live one's owner, encoding and locale, from
//!    template0; `pg_restore --exit-on-error` into it (dropped again on failure);
//! 2. the live database refuses new connections (`allow_connections false`), then
//!    `drop database … with (force)` ends the open ones (the app's pool reconnects);
//! 3. the restored database takes the live one's name.
//!
//! Database-level settings (`alter database … set`, grants on the database) are not in a dump
//! of the database's contents and are not carried over.

use super::target::{DatabaseUrl, EnvDatabase};
use domain::envdb::{BackupPurpose, DatabaseBackup, NewBackup, TableStats};
use domain::run::artifacts::{ArtifactStorage, key_for};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use sqlx::Connection;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where Debian and Ubuntu install each major version's programs.
const DEBIAN_VERSIONS_DIR: &str = "/usr/lib/postgresql";

/// What a failing program said: enough to explain it, bounded.
const MAX_STDERR_BYTES: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(
        "no pg_dump and pg_restore for PostgreSQL {server_major} or newer (looked on PATH and in {DEBIAN_VERSIONS_DIR}/<version>/bin; found {found})"
    )]
    ToolsNotFound { server_major: u32, found: String },
    #[error("database `{database}`: {source}")]
    Database {
        database: String,
        source: sqlx::Error,
    },
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: &'static str,
        source: io::Error,
    },
    #[error("{program} failed for database `{database}`: {output}")]
    Failed {
        program: &'static str,
        database: String,
        output: String,
    },
    #[error("cannot store the backup of `{database}`: {source}")]
    Storage { database: String, source: io::Error },
    #[error(
        "backup {short} of `{database}` was changed after it was taken (stored bytes have sha256 {actual}, size {actual_size}; the record says {expected}, size {expected_size}); refusing to restore it"
    )]
    Tampered {
        database: String,
        short: String,
        expected: String,
        actual: String,
        expected_size: i64,
        actual_size: u64,
    },
    #[error("cannot replace database `{database}` with its restored copy: {source}")]
    Swap {
        database: String,
        source: sqlx::Error,
    },
}

/// pg_dump and pg_restore from one directory, of one version.
#[derive(Debug, Clone)]
pub struct PgTools {
    pub pg_dump: PathBuf,
    pub pg_restore: PathBuf,
    /// `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`
    pub version: String,
    pub major: u32,
}

impl PgTools {
    /// The tools for a server of `server_major`: the first candidate (PATH, then Debian's
    /// versioned directories, newest first) of exactly that major, else the oldest newer one
    /// (pg_dump reads older servers; pg_restore reads older dumps).
    pub async fn locate(server_major: u32) -> Result<PgTools, DumpError> {
        let mut found = Vec::new();
        for dir in candidates() {
            if let Some(tools) = Self::in_dir(&dir).await {
                found.push(tools);
            }
        }
        if let Some(exact) = found.iter().find(|t| t.major == server_major) {
            return Ok(exact.clone());
        }
        let newer = found
            .iter()
            .filter(|t| t.major > server_major)
            .min_by_key(|t| t.major);
        newer.cloned().ok_or_else(|| DumpError::ToolsNotFound {
            server_major,
            found: if found.is_empty() {
                "none".into()
            } else {
                found
                    .iter()
                    .map(|t| format!("{} in {}", t.major, t.pg_dump.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
    }

    async fn in_dir(dir: &Path) -> Option<PgTools> {
        let (pg_dump, pg_restore) = (dir.join("pg_dump"), dir.join("pg_restore"));
        if !executable(&pg_dump) || !executable(&pg_restore) {
            return None;
        }
        let output = tokio::process::Command::new(&pg_dump)
            .arg("--version")
            .kill_on_drop(true)
            .output()
            .await
            .ok()?;
        let version = String::from_utf8_lossy(&output.stdout).trim().to_string();
        let major = version
            .split_whitespace()
            .nth(2)?
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()?;
        Some(PgTools {
            pg_dump,
            pg_restore,
            version,
            major,
        })
    }
}

fn candidates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect())
        .unwrap_or_default();
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_VERSIONS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versioned.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    dirs.extend(versioned.into_iter().map(|(_, dir)| dir));
    dirs
}

fn executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What the backup needs to know from the database before dumping it.
struct Before {
    server_major: u32,
    tables: Vec<TableStats>,
    schema_version: Option<i32>,
}

async fn look(db: &EnvDatabase) -> Result<Before, sqlx::Error> {
    let mut conn = db.url.connect().await?;
    let num: String = sqlx::query_scalar("select current_setting('server_version_num')")
        .fetch_one(&mut conn)
        .await?;
    let tables = table_stats(&mut conn).await?;
    let schema_version = if super::migrate::recorded(&mut conn).await?.is_empty() {
        None
    } else {
        sqlx::query_scalar("select max(version) from schema_migration")
            .fetch_one(&mut conn)
            .await?
    };
    let _ = conn.close().await;
    Ok(Before {
        server_major: num.parse::<u32>().unwrap_or(0) / 10_000,
        tables,
        schema_version,
    })
}

/// Each table's row counters now (pg_stat_user_tables): what a backup records, and what a
/// rollback compares with them.
pub async fn table_stats(conn: &mut sqlx::PgConnection) -> Result<Vec<TableStats>, sqlx::Error> {
    let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "select schemaname || '.' || relname, n_tup_ins, n_tup_upd, n_tup_del, n_live_tup
         from pg_stat_user_tables order by schemaname, relname",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(table, inserted, updated, deleted, live)| TableStats {
            table,
            inserted,
            updated,
            deleted,
            live,
        })
        .collect())
}

/// Runs a libpq program against `url` (password in the environment, never on the command line).
fn command(program: &Path, url: &DatabaseUrl) -> tokio::process::Command {
    let (uri, password) = url.for_libpq();
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("--no-password")
        .arg(format!("--dbname={uri}"))
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(password) = password {
        cmd.env("PGPASSWORD", password);
    }
    cmd
}

/// Collects the end of a program's stderr while it runs.
fn drain_stderr(stderr: Option<tokio::process::ChildStderr>) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let Some(mut stderr) = stderr else {
            return String::new();
        };
        let mut kept = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf).await {
            if n == 0 {
                break;
            }
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > MAX_STDERR_BYTES {
                kept.drain(..kept.len() - MAX_STDERR_BYTES);
            }
        }
        String::from_utf8_lossy(&kept).trim().to_string()
    })
}

/// Dumps `db` into `storage`; returns what to record (as a pre-deploy backup: set `purpose` for
/// another).
pub async fn backup<S: ArtifactStorage>(
    db: &EnvDatabase,
    storage: &S,
) -> Result<NewBackup, DumpError> {
    let before = look(db).await.map_err(|source| DumpError::Database {
        database: db.name.clone(),
        source,
    })?;
    let tools = PgTools::locate(before.server_major).await?;
    let mut child = command(&tools.pg_dump, &db.url)
        .arg("--format=custom")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| DumpError::Spawn {
            program: "pg_dump",
            source,
        })?;
    let stderr = drain_stderr(child.stderr.take());
    let stdout = child.stdout.take().expect("piped");
    let meter = Arc::new(Mutex::new((Sha256::new(), 0u64)));
    let body = {
        let meter = meter.clone();
        tokio_util::io::ReaderStream::with_capacity(stdout, 256 * 1024)
            .map(move |chunk| {
                let chunk = chunk?;
                let mut m = meter.lock().unwrap_or_else(|p| p.into_inner());
                m.0.update(&chunk);
                m.1 += chunk.len() as u64;
                Ok(chunk)
            })
            .boxed()
    };
    let staged = storage.stage(body).await;
    let status = child.wait().await.map_err(|source| DumpError::Spawn {
        program: "pg_dump",
        source,
    })?;
    let said = stderr.await.unwrap_or_default();
    let storage_error = |source| DumpError::Storage {
        database: db.name.clone(),
        source,
    };
    if !status.success() {
        if let Ok(staged) = staged {
            let _ = storage.discard(staged).await;
        }
        return Err(DumpError::Failed {
            program: "pg_dump",
            database: db.name.clone(),
            output: format!("{status}: {said}"),
        });
    }
    let staged = staged.map_err(storage_error)?;
    let (hasher, size) = std::mem::take(&mut *meter.lock().unwrap_or_else(|p| p.into_inner()));
    let sha256 = hex::encode(hasher.finalize());
    let storage_key = key_for(&sha256);
    storage
        .promote(staged, &storage_key)
        .await
        .map_err(storage_error)?;
    Ok(NewBackup {
        purpose: BackupPurpose::PreDeploy,
        database_name: db.name.clone(),
        storage_key,
        sha256,
        size_bytes: size as i64,
        schema_version: before.schema_version,
        tables: before.tables,
        pg_dump_version: tools.version,
    })
}

/// Copies the stored bytes to `into`, returning their sha256 and size.
async fn fetch<S: ArtifactStorage>(
    storage: &S,
    key: &str,
    into: &Path,
) -> io::Result<(String, u64)> {
    let mut body = storage.get(key).await?;
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(into)
        .await?;
    let (mut hasher, mut size) = (Sha256::new(), 0u64);
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    Ok((hex::encode(hasher.finalize()), size))
}

/// Restores `backup` into `db` after checking its bytes (see the module doc). `maintenance` is
/// a database on the same server to run `create`/`drop`/`rename` from; `scratch_dir` holds the
/// dump while pg_restore reads it.
pub async fn restore<S: ArtifactStorage>(
    db: &EnvDatabase,
    maintenance: &DatabaseUrl,
    backup: &DatabaseBackup,
    storage: &S,
    scratch_dir: &Path,
) -> Result<(), DumpError> {
    let file = scratch_dir.join(format!(
        "flightdeck-restore-{}.dump",
        uuid::Uuid::new_v4().simple()
    ));
    let result = restore_from(db, maintenance, backup, storage, &file).await;
    let _ = tokio::fs::remove_file(&file).await;
    result
}

async fn restore_from<S: ArtifactStorage>(
    db: &EnvDatabase,
    maintenance: &DatabaseUrl,
    backup: &DatabaseBackup,
    storage: &S,
    file: &Path,
) -> Result<(), DumpError> {
    let storage_error = |source| DumpError::Storage {
        database: db.name.clone(),
        source,
    };
    let (sha256, size) = fetch(storage, &backup.storage_key, file)
        .await
        .map_err(storage_error)?;
    if sha256 != backup.sha256 || size as i64 != backup.size_bytes {
        return Err(DumpError::Tampered {
            database: db.name.clone(),
            short: backup.short_sha().to_string(),
            expected: backup.sha256.clone(),
            actual: sha256,
            expected_size: backup.size_bytes,
            actual_size: size,
        });
    }
    let database_error = |source| DumpError::Database {
        database: db.name.clone(),
        source,
    };
    let mut admin = maintenance.connect().await.map_err(database_error)?;
    let server_num: String = sqlx::query_scalar("select current_setting('server_version_num')")
        .fetch_one(&mut admin)
        .await
        .map_err(database_error)?;
    let tools = PgTools::locate(server_num.parse::<u32>().unwrap_or(0) / 10_000).await?;
    let (owner, encoding, collate, ctype): (String, String, String, String) = sqlx::query_as(
        "select pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype
         from pg_database where datname = $1",
    )
    .bind(&db.name)
    .fetch_one(&mut admin)
    .await
    .map_err(database_error)?;
    let scratch = format!(
        "fd_restore_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    super::run(&mut admin, &format!(
        "create database {} with template template0 owner {} encoding {} lc_collate {} lc_ctype {}",
        ident(&scratch),
        ident(&owner),
        literal(&encoding),
        literal(&collate),
        literal(&ctype)
    ))
    .await
    .map_err(database_error)?;
    let restored = run_restore(&tools, &db.url.with_database(&scratch), file, &db.name).await;
    if let Err(error) = restored {
        let _ = super::run(
            &mut admin,
            &format!("drop database if exists {} with (force)", ident(&scratch)),
        )
        .await;
        return Err(error);
    }
    let swap_error = |source| DumpError::Swap {
        database: db.name.clone(),
        source,
    };
    super::run(
        &mut admin,
        &format!("alter database {} allow_connections false", ident(&db.name)),
    )
    .await
    .map_err(swap_error)?;
    let swapped = async {
        super::run(
            &mut admin,
            &format!("drop database {} with (force)", ident(&db.name)),
        )
        .await?;
        super::run(
            &mut admin,
            &format!(
                "alter database {} rename to {}",
                ident(&scratch),
                ident(&db.name)
            ),
        )
        .await
    }
    .await;
    if let Err(source) = swapped {
        let _ = super::run(
            &mut admin,
            &format!("alter database {} allow_connections true", ident(&db.name)),
        )
        .await;
        return Err(swap_error(source));
    }
    let _ = admin.close().await;
    tracing::info!(database = %db.name, backup = %backup.short_sha(), "restored a database from its backup");
    Ok(())
}

async fn run_restore(
    tools: &PgTools,
    into: &DatabaseUrl,
    file: &Path,
    database: &str,
) -> Result<(), DumpError> {
    let output = command(&tools.pg_restore, into)
        .arg("--exit-on-error")
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|source| DumpError::Spawn {
            program: "pg_restore",
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    let tail = &output.stderr[output.stderr.len().saturating_sub(MAX_STDERR_BYTES)..];
    Err(DumpError::Failed {
        program: "pg_restore",
        database: database.to_string(),
        output: format!(
            "{}: {}",
            output.status,
            String::from_utf8_lossy(tail).trim()
        ),
    })
}

/// A double-quoted identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A single-quoted literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
