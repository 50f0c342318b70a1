//! The database half of a rollback: what it would do ([`EnvironmentDatabases::plan_schema_rollback`],
//! for the confirm sheet; changes nothing) and doing it ([`EnvironmentDatabases::roll_back_schema`]).
//! The decision is `domain::envdb::rollback::plan`'s; this reads its inputs and carries it out.
//!
//! Doing it, safe through a crash and a retry:
//! 1. a **safety dump** of the database as it is now, recorded (committed) in `database_backup`
//!    as the rollback deployment's `safety` backup before anything changes, so the rows written
//!    since the deploy are kept whatever follows;
//! 2. the down scripts, newest first, in **one transaction** under the app's migration lock,
//!    each deleting its row from the app's `schema_migration` in that same transaction — or the
//!    pre-deploy backup restored (`dump::restore`: rebuilt beside the live database, swapped in).
//!
//! Both leave nothing to undo, so a retry's plan is then "leave alone" and it reports the safety
//! dump recorded by the attempt before; the database is never dumped again after it changed. A
//! retry that finds the schema still unchanged (the attempt before died between its dump and
//! the change) dumps again into the same record, so rows written meanwhile are kept too.
//! The caller holds the rollback's lease: two callers at once could each restore the backup.

use super::dump::{self, DumpError};
use super::migrate::{self, MigrationFailed};
use super::target::EnvDatabase;
use super::{EnvironmentDatabases, run};
use domain::envdb::backup::{self as backups, BackupPurpose};
use domain::envdb::rollback::{self, SchemaRollbackInputs, Undo};
use domain::envdb::tracking::{self, Recorded};
use domain::envdb::{
    DatabaseBackup, Migration, SchemaRollbackPlan, SchemaRollbackPreview, TableChange, TableStats,
};
use domain::environment::EnvironmentId;
use domain::run::artifacts::ArtifactStorage;
use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgPool};
use std::time::Instant;
use uuid::Uuid;

/// What a plan is made from.
#[derive(Debug, Clone, Copy)]
pub struct PlanSchemaRollback<'a> {
    pub db: &'a EnvDatabase,
    /// The migrations of the release rolled back to.
    pub target: &'a [Migration],
    /// The migrations of the release rolled back from, with their down scripts.
    pub current: &'a [Migration],
    /// The backup the rolled-back deployment took before migrating
    /// (`domain::envdb::backup::pre_deploy`).
    pub backup: Option<&'a DatabaseBackup>,
    /// The definition's `rollback.restore_database`.
    pub restore_database: bool,
}

/// One rollback's database step.
#[derive(Debug, Clone, Copy)]
pub struct RollBackSchema<'a> {
    pub environment: EnvironmentId,
    /// The rollback (a deployment of kind rollback): its safety dump is recorded under it.
    pub rollback_deployment: Uuid,
    pub db: &'a EnvDatabase,
    pub target: &'a [Migration],
    pub current: &'a [Migration],
    pub backup: Option<&'a DatabaseBackup>,
    pub restore_database: bool,
}

impl<'a> RollBackSchema<'a> {
    /// The inputs of its plan.
    pub fn plan_inputs(&self) -> PlanSchemaRollback<'a> {
        PlanSchemaRollback {
            db: self.db,
            target: self.target,
            current: self.current,
            backup: self.backup,
            restore_database: self.restore_database,
        }
    }
}

/// A down script that ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Undone {
    pub version: i32,
    /// `0004_add_goal.down.sql`
    pub file: String,
    pub ms: u64,
}

/// What the database step did: what the stage records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaRolledBack {
    /// What this call found to do. A retry after the schema changed finds nothing left
    /// (`LeaveAlone`); `schema_version_before` still says where it started.
    pub plan: SchemaRollbackPlan,
    /// The database as the rollback found it; None when it was left alone from the start.
    pub safety_dump: Option<DatabaseBackup>,
    /// The safety dump was taken by an earlier attempt of this rollback.
    pub safety_dump_reused: bool,
    /// The down scripts run by this call, in the order they ran.
    pub undone: Vec<Undone>,
    /// The newest migration recorded when the rollback found the database (its safety dump's)
    /// and now.
    pub schema_version_before: Option<i32>,
    pub schema_version_after: Option<i32>,
    /// Rows written since the deploy, per table, up to the safety dump (what only it holds once
    /// a restore replaced the database); None: no pre-deploy backup recorded counters.
    pub changes: Option<Vec<TableChange>>,
}

impl SchemaRolledBack {
    /// The stage outcome's JSON.
    pub fn outcome(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("the outcome serializes")
    }

    /// "since the deploy: 5 rows inserted in study_session"
    pub fn written_since_deploy(&self) -> String {
        rollback::written_since_deploy(self.changes.as_deref())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SchemaRollbackError {
    #[error("database `{database}`: {source}")]
    Database {
        database: String,
        source: sqlx::Error,
    },
    #[error("database `{database}` cannot be rolled back: {why}")]
    Impossible { database: String, why: String },
    #[error(
        "cannot take a safety dump of `{database}` before rolling it back: {source}; nothing was changed"
    )]
    SafetyDump { database: String, source: DumpError },
    #[error(
        "cannot read or record the safety dump of `{database}` in Flightdeck's database: {source}; nothing was changed"
    )]
    Record {
        database: String,
        source: sqlx::Error,
    },
    /// A down script failed: the transaction rolled back, the schema is as it was.
    #[error(
        "down script {failure}; nothing was undone (the transaction rolled back); safety dump {} holds the database as it is", .safety_dump.short_sha()
    )]
    DownScript {
        failure: MigrationFailed,
        safety_dump: DatabaseBackup,
    },
    #[error(
        "database `{database}` changed while it was being rolled back: {why}; nothing was undone"
    )]
    Changed { database: String, why: String },
    #[error(
        "restoring backup {} into `{database}` failed: {source}; safety dump {} holds the database as it was before", .backup.short_sha(), .safety_dump.short_sha()
    )]
    Restore {
        database: String,
        backup: DatabaseBackup,
        safety_dump: DatabaseBackup,
        source: DumpError,
    },
}

/// What the database holds now: its recorded migrations and row counters.
struct Found {
    recorded: Vec<Recorded>,
    tables: Vec<TableStats>,
}

impl Found {
    fn newest(&self) -> Option<i32> {
        self.recorded.iter().map(|r| r.version).max()
    }
}

async fn look(db: &EnvDatabase) -> Result<Found, SchemaRollbackError> {
    let database_error = |source| SchemaRollbackError::Database {
        database: db.name.clone(),
        source,
    };
    // Never created here: a missing database is an error, not an empty one to leave alone.
    let mut conn = db.url.connect().await.map_err(database_error)?;
    let recorded = migrate::recorded(&mut conn).await.map_err(database_error)?;
    let tables = dump::table_stats(&mut conn).await.map_err(database_error)?;
    let _ = conn.close().await;
    Ok(Found { recorded, tables })
}

fn decide(step: &PlanSchemaRollback<'_>, recorded: &[Recorded]) -> SchemaRollbackPlan {
    let plan = rollback::plan(&SchemaRollbackInputs {
        recorded,
        target: step.target,
        current: step.current,
        backup: step.backup,
        restore_database: step.restore_database,
    });
    match (&plan, step.backup) {
        (SchemaRollbackPlan::RestoreBackup { .. }, Some(b)) if b.database_name != step.db.name => {
            SchemaRollbackPlan::Impossible {
                why: format!(
                    "the backup taken before the deployment is of database `{}`, not `{}`",
                    b.database_name, step.db.name
                ),
            }
        }
        _ => plan,
    }
}

impl<S: ArtifactStorage> EnvironmentDatabases<S> {
    /// What rolling back would do to the database and what was written since the deploy: the
    /// confirm sheet. Changes nothing.
    pub async fn plan_schema_rollback(
        &self,
        step: PlanSchemaRollback<'_>,
    ) -> Result<SchemaRollbackPreview, SchemaRollbackError> {
        let found = look(step.db).await?;
        let plan = decide(&step, &found.recorded);
        Ok(SchemaRollbackPreview::new(plan, step.backup, &found.tables))
    }

    /// The rollback's database step (see the module doc): a safety dump, then the down scripts
    /// or the pre-deploy backup restored. Idempotent; an impossible plan changes nothing.
    pub async fn roll_back_schema(
        &self,
        pool: &PgPool,
        step: RollBackSchema<'_>,
    ) -> Result<SchemaRolledBack, SchemaRollbackError> {
        let db = step.db;
        let record_error = |source| SchemaRollbackError::Record {
            database: db.name.clone(),
            source,
        };
        let found = look(db).await?;
        let plan = decide(&step.plan_inputs(), &found.recorded);
        let mut conn = pool.acquire().await.map_err(record_error)?;
        let earlier = backups::safety_dump(&mut conn, step.rollback_deployment)
            .await
            .map_err(record_error)?;
        drop(conn);
        let changes_up_to = |tables: &[TableStats]| {
            step.backup
                .map(|b| rollback::changes_since_backup(b, tables))
        };
        let restore_from = match &plan {
            SchemaRollbackPlan::Impossible { why } => {
                return Err(SchemaRollbackError::Impossible {
                    database: db.name.clone(),
                    why: why.clone(),
                });
            }
            SchemaRollbackPlan::LeaveAlone { .. } => {
                let changes = changes_up_to(
                    earlier
                        .as_ref()
                        .map_or(&found.tables[..], |d| &d.tables[..]),
                );
                return Ok(SchemaRolledBack {
                    schema_version_before: earlier
                        .as_ref()
                        .map_or(found.newest(), |d| d.schema_version),
                    schema_version_after: found.newest(),
                    safety_dump_reused: earlier.is_some(),
                    safety_dump: earlier,
                    plan,
                    undone: Vec::new(),
                    changes,
                });
            }
            SchemaRollbackPlan::DownScripts { .. } => None,
            SchemaRollbackPlan::RestoreBackup { backup } => Some(backup),
        };
        // The schema is unchanged: dump it as it is now (again, when an earlier attempt died
        // before changing it), recorded before anything changes.
        let safety = self.safety_dump(pool, &step, earlier).await?;
        let undone = match restore_from {
            None => undo(db, step.target, step.current)
                .await
                .map_err(|e| e.with_safety_dump(&safety))?,
            Some(backup) => {
                self.restore(db, backup)
                    .await
                    .map_err(|source| SchemaRollbackError::Restore {
                        database: db.name.clone(),
                        backup: backup.clone(),
                        safety_dump: safety.clone(),
                        source,
                    })?;
                Vec::new()
            }
        };
        let after = look(db).await?;
        tracing::info!(database = %db.name, rollback = %step.rollback_deployment,
            safety_dump = %safety.short_sha(), plan = %plan.describe(), "rolled a database back");
        Ok(SchemaRolledBack {
            schema_version_before: safety.schema_version,
            schema_version_after: after.newest(),
            changes: changes_up_to(&safety.tables),
            safety_dump: Some(safety),
            safety_dump_reused: false,
            plan,
            undone,
        })
    }

    /// Dumps the database and records it as the rollback's safety dump (replacing the record
    /// of an earlier attempt's dump, whose schema is then known unchanged).
    async fn safety_dump(
        &self,
        pool: &PgPool,
        step: &RollBackSchema<'_>,
        earlier: Option<DatabaseBackup>,
    ) -> Result<DatabaseBackup, SchemaRollbackError> {
        let db = step.db;
        let record_error = |source| SchemaRollbackError::Record {
            database: db.name.clone(),
            source,
        };
        let mut taken =
            self.backup(db)
                .await
                .map_err(|source| SchemaRollbackError::SafetyDump {
                    database: db.name.clone(),
                    source,
                })?;
        taken.purpose = BackupPurpose::Safety;
        let mut tx = pool.begin().await.map_err(record_error)?;
        let (recorded, unused_key) = match earlier {
            Some(earlier) => {
                let (recorded, old_key) = backups::retake_safety_dump(&mut tx, earlier.id, &taken)
                    .await
                    .map_err(record_error)?;
                (recorded, Some(old_key))
            }
            None => {
                let (recorded, ours) = backups::insert_safety_dump(
                    &mut tx,
                    step.environment,
                    step.rollback_deployment,
                    &taken,
                )
                .await
                .map_err(record_error)?;
                (recorded, (!ours).then(|| taken.storage_key.clone()))
            }
        };
        let unused_key = match unused_key {
            Some(key)
                if !backups::bytes_in_use(&mut tx, &key)
                    .await
                    .map_err(record_error)? =>
            {
                Some(key)
            }
            _ => None,
        };
        tx.commit().await.map_err(record_error)?;
        if let Some(key) = unused_key
            && let Err(error) = self.storage.delete(&key).await
        {
            tracing::warn!(%error, %key, "could not delete a replaced safety dump's bytes");
        }
        Ok(recorded)
    }
}

/// Why undoing failed, before the safety dump is named.
enum UndoError {
    Failed(MigrationFailed),
    Changed(String),
    Database(sqlx::Error),
}

impl UndoError {
    fn with_safety_dump(self, safety: &DatabaseBackup) -> SchemaRollbackError {
        let database = safety.database_name.clone();
        match self {
            UndoError::Failed(failure) => SchemaRollbackError::DownScript {
                failure,
                safety_dump: safety.clone(),
            },
            UndoError::Changed(why) => SchemaRollbackError::Changed { database, why },
            UndoError::Database(source) => SchemaRollbackError::Database { database, source },
        }
    }
}

/// Runs the down scripts of what the database has and the target lacks, newest first, in one
/// transaction under the app's migration lock, deleting each one's `schema_migration` row in
/// it. What to undo is decided again under the lock; nothing left: nothing runs.
async fn undo(
    db: &EnvDatabase,
    target: &[Migration],
    current: &[Migration],
) -> Result<Vec<Undone>, UndoError> {
    let mut conn = db.url.connect().await.map_err(UndoError::Database)?;
    let mut tx = conn.begin().await.map_err(UndoError::Database)?;
    run(&mut tx, tracking::LOCK)
        .await
        .map_err(UndoError::Database)?;
    let rows = migrate::recorded(&mut tx)
        .await
        .map_err(UndoError::Database)?;
    let scripts = match rollback::undo(&rows, target, current) {
        Undo::Nothing => Vec::new(),
        Undo::Scripts(scripts) => scripts,
        Undo::Lacking(problems) => return Err(UndoError::Changed(problems.join("; "))),
    };
    let mut undone = Vec::new();
    for migration in scripts {
        let started = Instant::now();
        let file = migration.down_file();
        let sql = migration
            .down
            .as_deref()
            .expect("undo returns scripts with a down");
        if let Err(error) = run(&mut tx, sql).await {
            return Err(match error {
                sqlx::Error::Database(e) => {
                    UndoError::Failed(migrate::failure(&file, migration.version, sql, e.as_ref()))
                }
                other => UndoError::Database(other),
            });
        }
        sqlx::query("delete from schema_migration where version = $1")
            .bind(migration.version)
            .execute(&mut *tx)
            .await
            .map_err(UndoError::Database)?;
        undone.push(Undone {
            version: migration.version,
            file,
            ms: started.elapsed().as_millis() as u64,
        });
    }
    tx.commit().await.map_err(UndoError::Database)?;
    let _ = conn.close().await;
    Ok(undone)
}
