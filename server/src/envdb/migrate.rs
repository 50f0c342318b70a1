//! Applying a release's pending migrations to an environment database the way the app's own
//! tool does (see `domain::envdb::tracking`): one transaction, the app's advisory lock, the
//! app's `schema_migration` rows. What is pending is decided again under the lock, so a
//! migration another deploy or the app's tool applied meanwhile is not applied twice.
//!
//! Each migration's file is sent as one simple-protocol query, so PostgreSQL's error position
//! counts from the file's first character: it becomes the line reported.

use super::target::EnvDatabase;
use domain::envdb::Migration;
use domain::envdb::migration::line_of;
use domain::envdb::tracking::{self, Recorded, TrackingError};
use sqlx::{Connection, PgConnection};
use std::fmt;
use std::time::{Duration, Instant};

/// A migration that ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: i32,
    pub file: String,
    pub elapsed: Duration,
}

/// A migration (or a down script) PostgreSQL refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationFailed {
    pub file: String,
    pub version: i32,
    /// PostgreSQL's message.
    pub message: String,
    /// The line in the file, when PostgreSQL gave a position.
    pub line: Option<usize>,
    /// The SQLSTATE.
    pub code: Option<String>,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl fmt::Display for MigrationFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}, line {line}: {}", self.file, self.message)?,
            None => write!(f, "{}: {}", self.file, self.message)?,
        }
        if let Some(detail) = &self.detail {
            write!(f, " ({detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for MigrationFailed {}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("migration {0}; nothing was applied")]
    Failed(MigrationFailed),
    #[error("database `{database}`: {source}")]
    Tracking {
        database: String,
        source: TrackingError,
    },
    #[error("database `{database}`: {source}")]
    Database {
        database: String,
        source: sqlx::Error,
    },
}

/// The rows of `schema_migration`; none when the table does not exist yet.
pub async fn recorded(conn: &mut PgConnection) -> Result<Vec<Recorded>, sqlx::Error> {
    let exists: bool = sqlx::query_scalar("select to_regclass('schema_migration') is not null")
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows: Vec<(i32, String, String)> =
        sqlx::query_as("select version, name, sha256 from schema_migration order by version")
            .fetch_all(&mut *conn)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(version, name, sha256)| Recorded {
            version,
            name,
            sha256,
        })
        .collect())
}

/// The release's migrations this database has not recorded, refusing an edited applied
/// migration or a database ahead of the release. Changes nothing.
pub async fn pending(
    db: &EnvDatabase,
    migrations: &[Migration],
) -> Result<Vec<Migration>, ApplyError> {
    let database_error = |source| ApplyError::Database {
        database: db.name.clone(),
        source,
    };
    let mut conn = db.url.connect().await.map_err(database_error)?;
    let rows = recorded(&mut conn).await.map_err(database_error)?;
    let _ = conn.close().await;
    let pending = tracking::pending(&rows, migrations).map_err(|source| ApplyError::Tracking {
        database: db.name.clone(),
        source,
    })?;
    Ok(pending.into_iter().cloned().collect())
}

/// Applies the pending migrations in one transaction under the app's lock and records each in
/// `schema_migration`. On a failure nothing is applied (the transaction rolls back).
pub async fn apply(db: &EnvDatabase, migrations: &[Migration]) -> Result<Vec<Applied>, ApplyError> {
    let database_error = |source| ApplyError::Database {
        database: db.name.clone(),
        source,
    };
    let mut conn = db.url.connect().await.map_err(database_error)?;
    let mut tx = conn.begin().await.map_err(database_error)?;
    super::run(&mut tx, tracking::LOCK)
        .await
        .map_err(database_error)?;
    super::run(&mut tx, tracking::CREATE_TABLE)
        .await
        .map_err(database_error)?;
    let rows = recorded(&mut tx).await.map_err(database_error)?;
    let pending = tracking::pending(&rows, migrations).map_err(|source| ApplyError::Tracking {
        database: db.name.clone(),
        source,
    })?;
    let mut applied = Vec::new();
    for migration in pending {
        let started = Instant::now();
        if let Err(error) = super::run(&mut tx, &migration.sql).await {
            return Err(match error {
                sqlx::Error::Database(e) => ApplyError::Failed(failure(
                    &migration.file,
                    migration.version,
                    &migration.sql,
                    e.as_ref(),
                )),
                other => database_error(other),
            });
        }
        sqlx::query("insert into schema_migration (version, name, sha256) values ($1, $2, $3)")
            .bind(migration.version)
            .bind(&migration.name)
            .bind(&migration.sha256)
            .execute(&mut *tx)
            .await
            .map_err(database_error)?;
        applied.push(Applied {
            version: migration.version,
            file: migration.file.clone(),
            elapsed: started.elapsed(),
        });
    }
    tx.commit().await.map_err(database_error)?;
    let _ = conn.close().await;
    Ok(applied)
}

/// What PostgreSQL said about a script (`file`, holding `sql`), with the line its position
/// points at. A position inside a function body ("internal") points into that body, not the
/// file: no line then.
pub(super) fn failure(
    file: &str,
    version: i32,
    sql: &str,
    error: &dyn sqlx::error::DatabaseError,
) -> MigrationFailed {
    let pg = error.try_downcast_ref::<sqlx::postgres::PgDatabaseError>();
    let line = pg.and_then(|e| match e.position() {
        Some(sqlx::postgres::PgErrorPosition::Original(at)) => Some(line_of(sql, at)),
        _ => None,
    });
    MigrationFailed {
        file: file.to_string(),
        version,
        message: error.message().to_string(),
        line,
        code: error.code().map(|c| c.into_owned()),
        detail: pg.and_then(|e| e.detail()).map(str::to_string),
        hint: pg.and_then(|e| e.hint()).map(str::to_string),
    }
}
