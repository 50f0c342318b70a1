//! The record of an environment database's backup (`database_backup`): where its bytes are, their
//! checksum, and each table's row counters when it was taken — so a restore can check it has the
//! right bytes, and a rollback can say what would be lost ("42 rows inserted in study_session
//! since the deploy").

use crate::environment::EnvironmentId;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use std::fmt;
use uuid::Uuid;

/// A backup's id (the `database_backup` row).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[sqlx(transparent)]
pub struct BackupId(pub Uuid);

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
        write!(f, "{} in {}{new}", counts.join(", "), self.table)
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
    pub database_name: String,
    pub storage_key: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub schema_version: Option<i32>,
    pub tables: Vec<TableStats>,
    pub pg_dump_version: String,
}

/// A recorded backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseBackup {
    pub id: BackupId,
    pub environment_id: EnvironmentId,
    pub deployment_id: Option<Uuid>,
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
}

struct Row {
    database_backup_id: Uuid,
    environment_id: Uuid,
    deployment_id: Option<Uuid>,
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

/// Records a backup of `environment`'s database, taken for `deployment` (None: by hand).
pub async fn insert(
    conn: &mut PgConnection,
    environment: EnvironmentId,
    deployment: Option<Uuid>,
    backup: &NewBackup,
) -> Result<DatabaseBackup, sqlx::Error> {
    let tables = serde_json::to_value(&backup.tables).expect("table stats serialize");
    let row = sqlx::query_as!(
        Row,
        r#"insert into database_backup (environment_id, deployment_id, database_name, storage_key,
               sha256, size_bytes, schema_version, tables, pg_dump_version)
           values ($1, $2, $3, $4, $5, $6, $7, $8, $9)
           returning database_backup_id, environment_id, deployment_id, database_name, storage_key,
               sha256, size_bytes, schema_version, tables, pg_dump_version, created_at"#,
        environment.0,
        deployment,
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
        r#"select database_backup_id, environment_id, deployment_id, database_name, storage_key,
               sha256, size_bytes, schema_version, tables, pg_dump_version, created_at
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
        r#"select database_backup_id, environment_id, deployment_id, database_name, storage_key,
               sha256, size_bytes, schema_version, tables, pg_dump_version, created_at
           from database_backup where deployment_id = $1 order by created_at, database_backup_id"#,
        deployment
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(Row::into_backup).collect())
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
            "42 rows inserted, 1 row updated, 1 row deleted in public.study_session"
        );
        assert_eq!(
            changes[1].to_string(),
            "4 rows inserted in public.reminder (a new table)"
        );
    }

    #[test]
    fn a_reset_counter_counts_from_zero() {
        let changes = changes_since(&[stats("t", 100, 0, 0)], &[stats("t", 3, 0, 0)]);
        assert_eq!(changes[0].inserted, 3);
    }
}
