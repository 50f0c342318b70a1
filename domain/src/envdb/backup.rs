//! The record of an environment database's backup (`database_backup`): where its bytes are, their
//! checksum, and each table's row counters when it was taken — so a restore can check it has the
//! right bytes, and a rollback can say what would be lost ("42 rows inserted in study_session
//! since the deploy").
//!
//! A backup is taken for one of two reasons ([`BackupPurpose`]): before a deployment's
//! migrations, or as a rollback's safety dump (the database as the rollback found it). Nothing
//! deletes either; a future pruning must keep safety dumps [`SAFETY_DUMP_KEPT_DAYS`].

use crate::environment::EnvironmentId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use std::fmt;
use uuid::Uuid;

/// How long a rollback's safety dump is kept at least, in days: the data written between a
/// deploy and its rollback lives only there.
pub const SAFETY_DUMP_KEPT_DAYS: i64 = 30;

/// A backup's id (the `database_backup` row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(transparent)]
pub struct BackupId(pub Uuid);

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a backup was taken (`database_backup.purpose`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupPurpose {
    /// Before a deployment applied its migrations: what a failure or a rollback restores.
    PreDeploy,
    /// By a rollback, before it changed the schema: the rows written since the deploy.
    Safety,
}

impl BackupPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            BackupPurpose::PreDeploy => "pre-deploy",
            BackupPurpose::Safety => "safety",
        }
    }

    fn parse(text: &str) -> BackupPurpose {
        match text {
            "safety" => BackupPurpose::Safety,
            // The column's check allows only these two.
            _ => BackupPurpose::PreDeploy,
        }
    }
}

/// One table's row counters (pg_stat_user_tables) at a moment. The counters are cumulative since
/// the server's statistics were last reset, so only differences between two readings mean
/// anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableStats {
    /// `schema.table`.
    pub table: String,
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
    /// Rows in the table (an estimate the server keeps).
    pub live: i64,
}

/// What was written to one table between two readings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableChange {
    pub table: String,
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
    /// The table did not exist at the earlier reading.
    pub new_table: bool,
}

impl fmt::Display for TableChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts: Vec<String> = [
            (self.inserted, "inserted"),
            (self.updated, "updated"),
            (self.deleted, "deleted"),
        ]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {} {what}", if n == 1 { "row" } else { "rows" }))
        .collect();
        let new = if self.new_table { " (a new table)" } else { "" };
        // Most apps keep their tables in `public`: name those as the app's SQL does.
        let table = self.table.strip_prefix("public.").unwrap_or(&self.table);
        write!(f, "{} in {table}{new}", counts.join(", "))
    }
}

/// The tables written to between `before` and `after`, in `after`'s order. A counter that went
/// down means the statistics were reset (or the table recreated): the later reading is counted
/// from zero.
pub fn changes_since(before: &[TableStats], after: &[TableStats]) -> Vec<TableChange> {
    after
        .iter()
        .filter_map(|now| {
            let then = before.iter().find(|t| t.table == now.table);
            let diff = |now: i64, then: Option<i64>| match then {
                Some(then) if then <= now => now - then,
                _ => now,
            };
            let change = TableChange {
                table: now.table.clone(),
                inserted: diff(now.inserted, then.map(|t| t.inserted)),
                updated: diff(now.updated, then.map(|t| t.updated)),
                deleted: diff(now.deleted, then.map(|t| t.deleted)),
                new_table: then.is_none(),
            };
            (change.inserted + change.updated + change.deleted > 0).then_some(change)
        })
        .collect()
}

/// A backup taken, before it is recorded: what [`insert`] stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBackup {
    pub purpose: BackupPurpose,
    pub database_name: String,
    pub storage_key: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub schema_version: Option<i32>,
    pub tables: Vec<TableStats>,
    pub pg_dump_version: String,
}

/// A recorded backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseBackup {
    pub id: BackupId,
    pub environment_id: EnvironmentId,
    /// The deployment that took it (a safety dump: the rollback); None: by hand.
    pub deployment_id: Option<Uuid>,
    pub purpose: BackupPurpose,
    pub database_name: String,
    pub storage_key: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub schema_version: Option<i32>,
    pub tables: Vec<TableStats>,
    pub pg_dump_version: String,
    pub created_at: DateTime<Utc>,
}

impl DatabaseBackup {
    /// The first 12 hex digits of its checksum: how messages name it.
    pub fn short_sha(&self) -> &str {
        &self.sha256[..12.min(self.sha256.len())]
    }

    /// Until when it must be kept at least (a safety dump); None: no minimum.
    pub fn kept_until(&self) -> Option<DateTime<Utc>> {
        (self.purpose == BackupPurpose::Safety)
            .then(|| self.created_at + chrono::Duration::days(SAFETY_DUMP_KEPT_DAYS))
    }
}

struct Row {
    database_backup_id: Uuid,
    environment_id: Uuid,
    deployment_id: Option<Uuid>,
    purpose: String,
    database_name: String,
    storage_key: String,
    sha256: String,
    size_bytes: i64,
    schema_version: Option<i32>,
    tables: serde_json::Value,
    pg_dump_version: String,
    created_at: DateTime<Utc>,
}

impl Row {
    fn into_backup(self) -> DatabaseBackup {
        DatabaseBackup {
            id: BackupId(self.database_backup_id),
            environment_id: EnvironmentId(self.environment_id),
            deployment_id: self.deployment_id,
            purpose: BackupPurpose::parse(&self.purpose),
            database_name: self.database_name,
            storage_key: self.storage_key,
            sha256: self.sha256,
            size_bytes: self.size_bytes,
            schema_version: self.schema_version,
            // Written by `insert` from the same type; an unreadable value reads as no tables.
            tables: serde_json::from_value(self.tables).unwrap_or_default(),
            pg_dump_version: self.pg_dump_version,
            created_at: self.created_at,
        }
    }
}

/// Records a backup of `environment`'s database, taken for `deployment` (None: by hand). A
/// second safety dump for one rollback is refused by the database (a unique index); record
/// those with [`insert_safety_dump`].
pub async fn insert(
    conn: &mut PgConnection,
    environment: EnvironmentId,
    deployment: Option<Uuid>,
    backup: &NewBackup,
) -> Result<DatabaseBackup, sqlx::Error> {
    let tables = serde_json::to_value(&backup.tables).expect("table stats serialize");
    let row = sqlx::query_as!(
        Row,
        r#"insert into database_backup (environment_id, deployment_id, purpose, database_name,
               storage_key, sha256, size_bytes, schema_version, tables, pg_dump_version)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           returning database_backup_id, environment_id, deployment_id, purpose, database_name,
               storage_key, sha256, size_bytes, schema_version, tables, pg_dump_version, created_at"#,
        environment.0,
        deployment,
        backup.purpose.as_str(),
        backup.database_name,
        backup.storage_key,
        backup.sha256,
        backup.size_bytes,
        backup.schema_version,
        tables,
        backup.pg_dump_version,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.into_backup())
}

pub async fn find(
    conn: &mut PgConnection,
    id: BackupId,
) -> Result<Option<DatabaseBackup>, sqlx::Error> {
    let row = sqlx::query_as!(
        Row,
        r#"select database_backup_id, environment_id, deployment_id, purpose, database_name,
               storage_key, sha256, size_bytes, schema_version, tables, pg_dump_version, created_at
           from database_backup where database_backup_id = $1"#,
        id.0
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(Row::into_backup))
}

/// The backups a deployment took, oldest first.
pub async fn for_deployment(
    conn: &mut PgConnection,
    deployment: Uuid,
) -> Result<Vec<DatabaseBackup>, sqlx::Error> {
    let rows = sqlx::query_as!(
        Row,
        r#"select database_backup_id, environment_id, deployment_id, purpose, database_name,
               storage_key, sha256, size_bytes, schema_version, tables, pg_dump_version, created_at
           from database_backup where deployment_id = $1 order by created_at, database_backup_id"#,
        deployment
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(Row::into_backup).collect())
}

/// Records a rollback's safety dump unless that rollback has one already. Returns the recorded
/// dump and whether it is `backup` (false: another was recorded first, and `backup`'s bytes are
/// not referenced by this record).
pub async fn insert_safety_dump(
    conn: &mut PgConnection,
    environment: EnvironmentId,
    rollback: Uuid,
    backup: &NewBackup,
) -> Result<(DatabaseBackup, bool), sqlx::Error> {
    let tables = serde_json::to_value(&backup.tables).expect("table stats serialize");
    let inserted = sqlx::query_as!(
        Row,
        r#"insert into database_backup (environment_id, deployment_id, purpose, database_name,
               storage_key, sha256, size_bytes, schema_version, tables, pg_dump_version)
           values ($1, $2, 'safety', $3, $4, $5, $6, $7, $8, $9)
           on conflict (deployment_id) where purpose = 'safety' do nothing
           returning database_backup_id, environment_id, deployment_id, purpose, database_name,
               storage_key, sha256, size_bytes, schema_version, tables, pg_dump_version, created_at"#,
        environment.0,
        rollback,
        backup.database_name,
        backup.storage_key,
        backup.sha256,
        backup.size_bytes,
        backup.schema_version,
        tables,
        backup.pg_dump_version,
    )
    .fetch_optional(&mut *conn)
    .await?;
    match inserted {
        Some(row) => Ok((row.into_backup(), true)),
        None => {
            let first = safety_dump(conn, rollback)
                .await?
                .ok_or(sqlx::Error::RowNotFound)?;
            Ok((first, false))
        }
    }
}

/// Replaces a safety dump's record with a newer dump of the same, still unchanged, database (a
/// rollback resumed before it changed anything dumps again, so rows written meanwhile are kept
/// too). Returns the record and the storage key it no longer uses.
pub async fn retake_safety_dump(
    conn: &mut PgConnection,
    id: BackupId,
    backup: &NewBackup,
) -> Result<(DatabaseBackup, String), sqlx::Error> {
    let tables = serde_json::to_value(&backup.tables).expect("table stats serialize");
    let old_key = sqlx::query_scalar!(
        "select storage_key from database_backup where database_backup_id = $1 and purpose = 'safety' for update",
        id.0
    )
    .fetch_one(&mut *conn)
    .await?;
    let row = sqlx::query_as!(
        Row,
        r#"update database_backup set storage_key = $2, sha256 = $3, size_bytes = $4,
               schema_version = $5, tables = $6, pg_dump_version = $7, created_at = now()
           where database_backup_id = $1
           returning database_backup_id, environment_id, deployment_id, purpose, database_name,
               storage_key, sha256, size_bytes, schema_version, tables, pg_dump_version, created_at"#,
        id.0,
        backup.storage_key,
        backup.sha256,
        backup.size_bytes,
        backup.schema_version,
        tables,
        backup.pg_dump_version,
    )
    .fetch_one(&mut *conn)
    .await?;
    Ok((row.into_backup(), old_key))
}

/// Whether any backup or artifact still uses the bytes under `key`.
pub async fn bytes_in_use(conn: &mut PgConnection, key: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"select (exists(select 1 from artifact where storage_key = $1)
               or exists(select 1 from database_backup where storage_key = $1)) as "used!""#,
        key
    )
    .fetch_one(&mut *conn)
    .await
}

/// The safety dump a rollback took, if it took one.
pub async fn safety_dump(
    conn: &mut PgConnection,
    rollback: Uuid,
) -> Result<Option<DatabaseBackup>, sqlx::Error> {
    let row = sqlx::query_as!(
        Row,
        r#"select database_backup_id, environment_id, deployment_id, purpose, database_name,
               storage_key, sha256, size_bytes, schema_version, tables, pg_dump_version, created_at
           from database_backup where deployment_id = $1 and purpose = 'safety'"#,
        rollback
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(Row::into_backup))
}

/// The backup a deployment took right before applying its migrations (the newest, when a
/// resumed migrate step took another): what rolling that deployment back restores.
pub async fn pre_deploy(
    conn: &mut PgConnection,
    deployment: Uuid,
) -> Result<Option<DatabaseBackup>, sqlx::Error> {
    let row = sqlx::query_as!(
        Row,
        r#"select database_backup_id, environment_id, deployment_id, purpose, database_name,
               storage_key, sha256, size_bytes, schema_version, tables, pg_dump_version, created_at
           from database_backup where deployment_id = $1 and purpose = 'pre-deploy'
           order by created_at desc, database_backup_id desc limit 1"#,
        deployment
    )
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(Row::into_backup))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(table: &str, inserted: i64, updated: i64, deleted: i64) -> TableStats {
        TableStats {
            table: table.into(),
            inserted,
            updated,
            deleted,
            live: inserted - deleted,
        }
    }

    #[test]
    fn changes_since_a_backup_name_each_table_written() {
        let before = [
            stats("public.study_session", 10, 2, 0),
            stats("public.quiet", 5, 0, 0),
        ];
        let after = [
            stats("public.study_session", 52, 3, 1),
            stats("public.quiet", 5, 0, 0),
            stats("public.reminder", 4, 0, 0),
        ];
        let changes = changes_since(&before, &after);
        assert_eq!(changes.len(), 2);
        assert_eq!(
            changes[0].to_string(),
            "42 rows inserted, 1 row updated, 1 row deleted in study_session"
        );
        assert_eq!(
            changes[1].to_string(),
            "4 rows inserted in reminder (a new table)"
        );
        let elsewhere = changes_since(&[], &[stats("audit.event", 1, 0, 0)]);
        assert_eq!(
            elsewhere[0].to_string(),
            "1 row inserted in audit.event (a new table)",
            "only `public` goes unnamed"
        );
    }

    #[test]
    fn a_reset_counter_counts_from_zero() {
        let changes = changes_since(&[stats("t", 100, 0, 0)], &[stats("t", 3, 0, 0)]);
        assert_eq!(changes[0].inserted, 3);
    }
}
