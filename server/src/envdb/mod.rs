//! Environment databases: what the deployer's `migrate` step calls. For an environment's
//! database (its `database` in the definition) it resolves the URL, creates the database when
//! it lives on Flightdeck's server, reads the release's migrations from its `db-schema`
//! artifact, backs the database up with pg_dump into the artifact storage (recorded in
//! `database_backup`), applies the pending migrations as the app's own tool would, and restores
//! the backup when a migration fails. A rollback's database step ([`rollback`]) undoes a
//! release's migrations with their down scripts or restores the pre-deploy backup, after a
//! safety dump.
//!
//! ```text
//! let dbs = EnvironmentDatabases::new(admin_url, storage)?;
//! let db = dbs.resolve(&target)?;                       // DatabaseTarget → URL (never logged)
//! let migrations = dbs.read_release_migrations(key).await?;
//! let outcome = dbs.migrate_with_backup(&pool, Migrate { environment, deployment, db: &db,
//!                                       migrations: &migrations, backup: true }).await?;
//! ```
//!
//! The backup row is committed before the migrations run, so a deployer that crashes mid-way
//! finds it on restart. Applying is idempotent through the app's `schema_migration` table:
//! after a crash, calling again applies what is still pending (with a new backup) or nothing.

pub mod archive;
pub mod dump;
pub mod migrate;
pub mod rollback;
pub mod target;

pub use archive::{ReadMigrationsError, read_migrations};
pub use dump::{DumpError, PgTools};
pub use migrate::{Applied, ApplyError, MigrationFailed};
pub use rollback::{
    PlanSchemaRollback, RollBackSchema, SchemaRollbackError, SchemaRolledBack, Undone,
};
pub use target::{DatabaseUrl, EnvDatabase, Placement, TargetError};

use domain::definition::DatabaseTarget;
use domain::envdb::{DatabaseBackup, Migration, backup as backups};
use domain::environment::EnvironmentId;
use domain::run::artifacts::ArtifactStorage;
use sqlx::PgPool;
use std::path::PathBuf;
use uuid::Uuid;

/// Runs `sql` as one simple-protocol query (several statements, no parameters). Through
/// `Executor::execute`, whose boxed future stays `Send` for any lifetime, so the deployer can
/// spawn what calls it (`RawSql::execute` is an `async fn` generic over the executor, which is not).
async fn run(
    conn: &mut sqlx::PgConnection,
    sql: &str,
) -> Result<sqlx::postgres::PgQueryResult, sqlx::Error> {
    sqlx::Executor::execute(conn, sqlx::raw_sql(sql)).await
}

/// The environment databases reachable from one Flightdeck server.
#[derive(Debug, Clone)]
pub struct EnvironmentDatabases<S> {
    /// Flightdeck's own database: the embedded cluster's URL or DATABASE_URL.
    admin: DatabaseUrl,
    storage: S,
    /// Where a restore keeps the dump while pg_restore reads it.
    scratch_dir: PathBuf,
}

/// One `migrate` step.
#[derive(Debug, Clone, Copy)]
pub struct Migrate<'a> {
    pub environment: EnvironmentId,
    /// The deployment the backup belongs to (None: by hand).
    pub deployment: Option<Uuid>,
    pub db: &'a EnvDatabase,
    /// The release's migrations, all of them (what is pending is decided here).
    pub migrations: &'a [Migration],
    /// The definition's `backup` (default true).
    pub backup: bool,
}

/// What a `migrate` step did.
#[derive(Debug, Clone)]
pub struct Migrated {
    /// The backup taken first; None when nothing was pending or backups are off.
    pub backup: Option<DatabaseBackup>,
    pub applied: Vec<Applied>,
}

impl Migrated {
    /// What a deployment stage's outcome records: the backup (by id and checksum) and each
    /// migration applied with its time.
    pub fn outcome(&self) -> serde_json::Value {
        serde_json::json!({
            "backup": self.backup.as_ref().map(|b| serde_json::json!({
                "id": b.id, "sha256": b.sha256, "size_bytes": b.size_bytes,
                "database": b.database_name,
            })),
            "applied": self.applied.iter().map(|a| serde_json::json!({
                "version": a.version, "file": a.file, "ms": a.elapsed.as_millis() as u64,
            })).collect::<Vec<_>>(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Apply(ApplyError),
    #[error("cannot back up database `{database}` before migrating it: {source}")]
    Backup { database: String, source: DumpError },
    #[error("cannot record the backup of `{database}`: {source}")]
    Record {
        database: String,
        source: sqlx::Error,
    },
    /// A migration failed, and the backup taken before was restored (or there was none).
    #[error("migration {failure}; {}", match .backup {
        Some(backup) => format!("restored from backup {}", backup.short_sha()),
        None => "nothing was applied (no backup was taken)".to_string(),
    })]
    Failed {
        failure: MigrationFailed,
        backup: Option<DatabaseBackup>,
    },
    /// A migration failed and restoring the backup failed too.
    #[error("migration {failure}; restoring backup {} failed: {restore}", .backup.short_sha())]
    RestoreFailed {
        failure: MigrationFailed,
        backup: DatabaseBackup,
        restore: DumpError,
    },
}

impl<S: ArtifactStorage> EnvironmentDatabases<S> {
    /// `admin_url`: Flightdeck's own database URL.
    pub fn new(admin_url: &str, storage: S) -> Result<Self, TargetError> {
        Ok(EnvironmentDatabases {
            admin: DatabaseUrl::parse(admin_url, "Flightdeck's database URL")?,
            storage,
            scratch_dir: std::env::temp_dir(),
        })
    }

    /// Keeps restore files in `dir` (default: the system's temporary directory).
    pub fn with_scratch_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.scratch_dir = dir.into();
        self
    }

    /// The database `target` names; `url_env` reads this process's environment.
    pub fn resolve(&self, target: &DatabaseTarget) -> Result<EnvDatabase, TargetError> {
        target::resolve(&self.admin, target, |var| std::env::var(var).ok())
    }

    /// Creates the database when it is on Flightdeck's server and missing.
    pub async fn ensure_exists(&self, db: &EnvDatabase) -> Result<(), TargetError> {
        target::ensure_exists(&self.admin, db).await
    }

    /// The migrations in a release's `db-schema` artifact, by its storage key.
    pub async fn read_release_migrations(
        &self,
        storage_key: &str,
    ) -> Result<Vec<Migration>, ReadMigrationsError> {
        archive::read_stored_migrations(&self.storage, storage_key).await
    }

    /// The release's migrations the database has not applied (changes nothing).
    pub async fn pending(
        &self,
        db: &EnvDatabase,
        migrations: &[Migration],
    ) -> Result<Vec<Migration>, ApplyError> {
        migrate::pending(db, migrations).await
    }

    /// A pg_dump of the database in the artifact storage; record it with
    /// `domain::envdb::backup::insert`.
    pub async fn backup(&self, db: &EnvDatabase) -> Result<domain::envdb::NewBackup, DumpError> {
        dump::backup(db, &self.storage).await
    }

    /// Applies the pending migrations, in one transaction, as the app's tool would.
    pub async fn apply(
        &self,
        db: &EnvDatabase,
        migrations: &[Migration],
    ) -> Result<Vec<Applied>, ApplyError> {
        migrate::apply(db, migrations).await
    }

    /// Replaces the database with the backup's contents, once its bytes check out.
    pub async fn restore(
        &self,
        db: &EnvDatabase,
        backup: &DatabaseBackup,
    ) -> Result<(), DumpError> {
        dump::restore(
            db,
            &db.maintenance_url(&self.admin),
            backup,
            &self.storage,
            &self.scratch_dir,
        )
        .await
    }

    /// The deployer's `migrate` step: ensure the database exists; when migrations are pending,
    /// back it up (recorded and committed), apply them, and on a failing migration restore the
    /// backup and return the failure.
    pub async fn migrate_with_backup(
        &self,
        pool: &PgPool,
        step: Migrate<'_>,
    ) -> Result<Migrated, MigrateError> {
        let db = step.db;
        self.ensure_exists(db).await?;
        let pending = self
            .pending(db, step.migrations)
            .await
            .map_err(MigrateError::Apply)?;
        if pending.is_empty() {
            return Ok(Migrated {
                backup: None,
                applied: Vec::new(),
            });
        }
        let backup = if step.backup {
            let taken = self
                .backup(db)
                .await
                .map_err(|source| MigrateError::Backup {
                    database: db.name.clone(),
                    source,
                })?;
            let record_error = |source| MigrateError::Record {
                database: db.name.clone(),
                source,
            };
            let mut tx = pool.begin().await.map_err(record_error)?;
            let recorded = backups::insert(&mut tx, step.environment, step.deployment, &taken)
                .await
                .map_err(record_error)?;
            tx.commit().await.map_err(record_error)?;
            Some(recorded)
        } else {
            None
        };
        match self.apply(db, step.migrations).await {
            Ok(applied) => Ok(Migrated { backup, applied }),
            Err(ApplyError::Failed(failure)) => match backup {
                None => Err(MigrateError::Failed {
                    failure,
                    backup: None,
                }),
                Some(backup) => match self.restore(db, &backup).await {
                    Ok(()) => Err(MigrateError::Failed {
                        failure,
                        backup: Some(backup),
                    }),
                    Err(restore) => Err(MigrateError::RestoreFailed {
                        failure,
                        backup,
                        restore,
                    }),
                },
            },
            Err(other) => Err(MigrateError::Apply(other)),
        }
    }
}
