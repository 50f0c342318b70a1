//! What rolling an environment back to an earlier release does to its database, decided before
//! anything changes, so the confirm sheet can say it and the rollback does exactly that.
//!
//! The database must end with only migrations the target release has. The ones it has beyond
//! those (the newest recorded in the app's `schema_migration`, from the first the target lacks or
//! has with another checksum, up to the newest) are undone by their down scripts when the
//! current release ships one for each — newest first, in one transaction, which keeps every row
//! the older schema can hold. Otherwise the backup taken before the rolled-back deployment is
//! restored (the rows written since are then only in the rollback's safety dump). Neither:
//! nothing can be done safely, and the rollback says why before it starts.
//!
//! What was written since the deploy comes from PostgreSQL's row counters: those the backup
//! recorded against those read now ([`changes_since`]).

use super::backup::{DatabaseBackup, TableChange, TableStats, changes_since};
use super::migration::Migration;
use super::tracking::{self, Recorded};
use serde::{Deserialize, Serialize};

/// What `rollback.restore_database: false` means, as the plan says it.
pub const POLICY_OFF: &str = "restore_database: false leaves the schema as it is";

/// What a rollback does to the environment's database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum SchemaRollbackPlan {
    /// Nothing to undo, or the policy says to leave it.
    LeaveAlone { why: String },
    /// Run these versions' down scripts, in this order (newest first), in one transaction.
    DownScripts { versions: Vec<i32> },
    /// Replace the database with the backup taken before the rolled-back deployment.
    RestoreBackup { backup: DatabaseBackup },
    /// Some migration has no down script and there is no usable backup.
    Impossible { why: String },
}

impl SchemaRollbackPlan {
    /// What will happen, in words.
    pub fn describe(&self) -> String {
        match self {
            SchemaRollbackPlan::LeaveAlone { why } => {
                format!("the database is left as it is: {why}")
            }
            SchemaRollbackPlan::DownScripts { versions } => format!(
                "the down {} of {} {} run, newest first, in one transaction",
                if versions.len() == 1 {
                    "script"
                } else {
                    "scripts"
                },
                if versions.len() == 1 {
                    "migration"
                } else {
                    "migrations"
                },
                versions
                    .iter()
                    .map(|v| format!("{v:04}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            SchemaRollbackPlan::RestoreBackup { backup } => format!(
                "the database is replaced by backup {} taken before the deploy ({}, {})",
                backup.short_sha(),
                backup.created_at.format("%Y-%m-%d %H:%M UTC"),
                match backup.schema_version {
                    Some(v) => format!("schema version {v:04}"),
                    None => "no migrations applied".to_string(),
                }
            ),
            SchemaRollbackPlan::Impossible { why } => {
                format!("the database cannot be rolled back: {why}")
            }
        }
    }
}

/// What a plan is made from.
#[derive(Debug, Clone, Copy)]
pub struct SchemaRollbackInputs<'a> {
    /// The rows of the app's `schema_migration` now.
    pub recorded: &'a [Recorded],
    /// The migrations of the release rolled back to.
    pub target: &'a [Migration],
    /// The migrations of the release rolled back from, with their down scripts.
    pub current: &'a [Migration],
    /// The backup taken before the deployment being rolled back.
    pub backup: Option<&'a DatabaseBackup>,
    /// The definition's `rollback.restore_database`.
    pub restore_database: bool,
}

/// What undoing the migrations the target release lacks takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undo<'a> {
    /// The database has only migrations the target has.
    Nothing,
    /// These down scripts, in this order (newest first).
    Scripts(Vec<&'a Migration>),
    /// Some cannot be undone by a script; why, newest first.
    Lacking(Vec<String>),
}

/// The recorded migrations to undo (from the first the target lacks or has with another
/// checksum, up to the newest) and the current release's down script for each.
pub fn undo<'a>(recorded: &[Recorded], target: &[Migration], current: &'a [Migration]) -> Undo<'a> {
    let mut recorded = recorded.to_vec();
    recorded.sort_by_key(|r| r.version);
    let known = |r: &Recorded| {
        target
            .iter()
            .any(|m| m.version == r.version && m.sha256 == r.sha256)
    };
    let Some(first) = recorded.iter().position(|r| !known(r)) else {
        return Undo::Nothing;
    };
    let mut scripts = Vec::new();
    let mut lacking = Vec::new();
    for row in recorded[first..].iter().rev() {
        match current.iter().find(|m| m.version == row.version) {
            Some(m) if m.sha256 == row.sha256 && m.down.is_some() => scripts.push(m),
            Some(m) if m.sha256 == row.sha256 => {
                lacking.push(format!("{} has no down script ({})", m.file, m.down_file()))
            }
            Some(m) => lacking.push(format!(
                "the database's migration {:04} ({}) is not the current release's {} (another \
                 checksum), so that release's down script may not undo it",
                row.version, row.name, m.file
            )),
            None => lacking.push(format!(
                "the database has migration {:04} ({}), which the current release does not have",
                row.version, row.name
            )),
        }
    }
    if lacking.is_empty() {
        Undo::Scripts(scripts)
    } else {
        Undo::Lacking(lacking)
    }
}

/// What the rollback will do to the database (pure: the caller read the inputs).
pub fn plan(inputs: &SchemaRollbackInputs<'_>) -> SchemaRollbackPlan {
    if !inputs.restore_database {
        return SchemaRollbackPlan::LeaveAlone {
            why: POLICY_OFF.to_string(),
        };
    }
    match undo(inputs.recorded, inputs.target, inputs.current) {
        Undo::Nothing => SchemaRollbackPlan::LeaveAlone {
            why: match inputs.recorded.iter().map(|r| r.version).max() {
                Some(newest) => format!(
                    "its migrations (up to {newest:04}) are all the target release's; nothing to undo"
                ),
                None => "it has no migrations recorded; nothing to undo".to_string(),
            },
        },
        Undo::Scripts(scripts) => SchemaRollbackPlan::DownScripts {
            versions: scripts.iter().map(|m| m.version).collect(),
        },
        Undo::Lacking(problems) => {
            let problems = problems.join("; ");
            match inputs.backup {
                None => SchemaRollbackPlan::Impossible {
                    why: format!("{problems}; and no backup was taken before the deployment"),
                },
                Some(backup) => match backup.schema_version {
                    Some(v) if !inputs.target.iter().any(|m| m.version == v) => {
                        SchemaRollbackPlan::Impossible {
                            why: format!(
                                "{problems}; and the backup taken before the deployment is at \
                                 version {v:04}, which the target release does not have either"
                            ),
                        }
                    }
                    _ => SchemaRollbackPlan::RestoreBackup {
                        backup: backup.clone(),
                    },
                },
            }
        }
    }
}

/// What was written to the app's tables since `backup` was taken, per table; the app's record
/// of its migrations is left out (the deploy's own rows there are not the users' data).
pub fn changes_since_backup(backup: &DatabaseBackup, now: &[TableStats]) -> Vec<TableChange> {
    changes_since(&backup.tables, now)
        .into_iter()
        .filter(|c| c.table.rsplit('.').next() != Some(tracking::TABLE))
        .collect()
}

/// What the confirm sheet shows: the plan, and what was written since the deploy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SchemaRollbackPreview {
    pub plan: SchemaRollbackPlan,
    /// Per table, since the backup taken before the deploy; None: there is no such backup to
    /// compare with.
    pub changes: Option<Vec<TableChange>>,
}

impl SchemaRollbackPreview {
    /// `plan` with the changes since `backup` (the pre-deploy one) up to the counters `now`.
    pub fn new(
        plan: SchemaRollbackPlan,
        backup: Option<&DatabaseBackup>,
        now: &[TableStats],
    ) -> SchemaRollbackPreview {
        SchemaRollbackPreview {
            plan,
            changes: backup.map(|b| changes_since_backup(b, now)),
        }
    }

    /// "since the deploy: 42 rows inserted, 3 rows updated in study_session"
    pub fn written_since_deploy(&self) -> String {
        written_since_deploy(self.changes.as_deref())
    }

    /// The whole of it, as the confirm sheet says it: what will happen, what was written since
    /// the deploy, and, when the schema changes, where that data is kept.
    pub fn describe(&self) -> String {
        let kept = match self.plan {
            SchemaRollbackPlan::DownScripts { .. } | SchemaRollbackPlan::RestoreBackup { .. } => {
                format!(
                    "; first a safety dump keeps the database as it is ({} days, downloadable from the rollback's page)",
                    crate::envdb::backup::SAFETY_DUMP_KEPT_DAYS
                )
            }
            SchemaRollbackPlan::LeaveAlone { .. } | SchemaRollbackPlan::Impossible { .. } => {
                String::new()
            }
        };
        format!(
            "{}; {}{kept}",
            self.plan.describe(),
            self.written_since_deploy()
        )
    }
}

/// The words for what was written since the deploy.
pub fn written_since_deploy(changes: Option<&[TableChange]>) -> String {
    match changes {
        None => "since the deploy: not known (no backup recorded the row counts then)".to_string(),
        Some([]) => "since the deploy: nothing written".to_string(),
        Some(changes) => format!(
            "since the deploy: {}",
            changes
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envdb::backup::{BackupId, BackupPurpose};
    use crate::envdb::migration::check;
    use crate::environment::EnvironmentId;
    use uuid::Uuid;

    /// Migrations 1..=n of a release; `downs` lists the versions that ship a down script.
    fn release(n: i32, downs: &[i32]) -> Vec<Migration> {
        let mut files = Vec::new();
        for v in 1..=n {
            files.push((
                format!("{v:04}_step_{v}.sql"),
                format!("create table t{v} (id int);").into_bytes(),
            ));
            if downs.contains(&v) {
                files.push((
                    format!("{v:04}_step_{v}.down.sql"),
                    format!("drop table t{v};").into_bytes(),
                ));
            }
        }
        check(files).unwrap()
    }

    fn recorded(migrations: &[Migration]) -> Vec<Recorded> {
        migrations
            .iter()
            .map(|m| Recorded {
                version: m.version,
                name: m.name.clone(),
                sha256: m.sha256.clone(),
            })
            .collect()
    }

    fn stats(table: &str, inserted: i64, updated: i64) -> TableStats {
        TableStats {
            table: table.into(),
            inserted,
            updated,
            deleted: 0,
            live: inserted,
        }
    }

    fn backup(schema_version: Option<i32>) -> DatabaseBackup {
        DatabaseBackup {
            id: BackupId(Uuid::nil()),
            environment_id: EnvironmentId(Uuid::nil()),
            deployment_id: None,
            purpose: BackupPurpose::PreDeploy,
            database_name: "app".into(),
            storage_key: "sha256/ab/abc".into(),
            sha256: "ab".repeat(32),
            size_bytes: 10,
            schema_version,
            tables: vec![
                stats("public.study_session", 10, 2),
                stats("public.schema_migration", 3, 0),
            ],
            pg_dump_version: "pg_dump (PostgreSQL) 15".into(),
            created_at: chrono::DateTime::from_timestamp(1_765_000_000, 0).unwrap(),
        }
    }

    fn inputs<'a>(
        recorded: &'a [Recorded],
        target: &'a [Migration],
        current: &'a [Migration],
        backup: Option<&'a DatabaseBackup>,
    ) -> SchemaRollbackInputs<'a> {
        SchemaRollbackInputs {
            recorded,
            target,
            current,
            backup,
            restore_database: true,
        }
    }

    #[test]
    fn migrations_the_target_lacks_are_undone_newest_first_by_their_down_scripts() {
        let current = release(5, &[3, 4, 5]);
        let target = release(2, &[]);
        let rows = recorded(&current);
        let plan = plan(&inputs(&rows, &target, &current, None));
        assert_eq!(
            plan,
            SchemaRollbackPlan::DownScripts {
                versions: vec![5, 4, 3]
            }
        );
        assert_eq!(
            plan.describe(),
            "the down scripts of migrations 0005, 0004, 0003 run, newest first, in one transaction"
        );
        let Undo::Scripts(scripts) = undo(&rows, &target, &current) else {
            panic!("scripts expected");
        };
        assert_eq!(scripts[0].down.as_deref(), Some("drop table t5;"));
    }

    #[test]
    fn nothing_to_undo_or_the_policy_off_leaves_the_database_alone() {
        let current = release(3, &[3]);
        let target = release(3, &[]);
        let rows = recorded(&current);
        assert_eq!(
            plan(&inputs(&rows, &target, &current, None)),
            SchemaRollbackPlan::LeaveAlone {
                why: "its migrations (up to 0003) are all the target release's; nothing to undo"
                    .into()
            }
        );
        // The rolled-back deployment applied nothing (the database is behind both releases).
        let older = recorded(&current[..1]);
        assert!(matches!(
            plan(&inputs(&older, &release(2, &[]), &current, None)),
            SchemaRollbackPlan::LeaveAlone { .. }
        ));
        assert!(matches!(
            plan(&inputs(&[], &target, &current, None)),
            SchemaRollbackPlan::LeaveAlone { why } if why.contains("no migrations recorded")
        ));
        let first = release(1, &[]);
        let mut off = inputs(&rows, &first, &current, None);
        off.restore_database = false;
        let plan = plan(&off);
        assert_eq!(
            plan,
            SchemaRollbackPlan::LeaveAlone {
                why: POLICY_OFF.into()
            }
        );
        assert_eq!(
            plan.describe(),
            "the database is left as it is: restore_database: false leaves the schema as it is"
        );
    }

    #[test]
    fn a_missing_down_script_restores_the_backup_or_says_why_it_cannot() {
        let current = release(4, &[4]);
        let target = release(2, &[]);
        let rows = recorded(&current);
        let before = backup(Some(2));
        assert_eq!(
            plan(&inputs(&rows, &target, &current, Some(&before))),
            SchemaRollbackPlan::RestoreBackup {
                backup: before.clone()
            }
        );
        let SchemaRollbackPlan::Impossible { why } = plan(&inputs(&rows, &target, &current, None))
        else {
            panic!("impossible expected");
        };
        assert_eq!(
            why,
            "0003_step_3.sql has no down script (0003_step_3.down.sql); and no backup was taken \
             before the deployment"
        );
        // A backup at a version the target does not have would not bring the target's schema.
        let ahead = backup(Some(3));
        let SchemaRollbackPlan::Impossible { why } =
            plan(&inputs(&rows, &target, &current, Some(&ahead)))
        else {
            panic!("impossible expected");
        };
        assert!(
            why.ends_with("is at version 0003, which the target release does not have either"),
            "{why}"
        );
    }

    #[test]
    fn a_migration_the_current_release_does_not_know_cannot_be_undone_by_script() {
        let current = release(3, &[3]);
        let target = release(2, &[]);
        // The database got 0004 from elsewhere (the app's own tool, a newer release).
        let rows = recorded(&release(4, &[]));
        let Undo::Lacking(problems) = undo(&rows, &target, &current) else {
            panic!("lacking expected");
        };
        assert_eq!(
            problems,
            ["the database has migration 0004 (step_4), which the current release does not have"]
        );
        // A recorded migration the target has with another checksum is undone too, with the rest.
        let mut edited = release(3, &[2, 3]);
        edited[1].sha256 = "0".repeat(64);
        let current = release(3, &[2, 3]);
        assert_eq!(
            plan(&inputs(&recorded(&current), &edited, &current, None)),
            SchemaRollbackPlan::DownScripts {
                versions: vec![3, 2]
            }
        );
    }

    #[test]
    fn what_was_written_since_the_deploy_leaves_out_the_migration_record() {
        let before = backup(Some(2));
        let now = [
            stats("public.schema_migration", 4, 0),
            stats("public.study_session", 52, 5),
            stats("public.t3", 7, 0),
        ];
        let preview = SchemaRollbackPreview::new(
            SchemaRollbackPlan::DownScripts { versions: vec![3] },
            Some(&before),
            &now,
        );
        assert_eq!(
            preview.written_since_deploy(),
            "since the deploy: 42 rows inserted, 3 rows updated in study_session; \
             7 rows inserted in t3 (a new table)"
        );
        let unchanged =
            SchemaRollbackPreview::new(preview.plan.clone(), Some(&before), &before.tables);
        assert_eq!(
            unchanged.written_since_deploy(),
            "since the deploy: nothing written"
        );
        let unknown = SchemaRollbackPreview::new(preview.plan.clone(), None, &now);
        assert!(unknown.written_since_deploy().contains("not known"));
        // What the stage record and the confirm sheet carry.
        let json = serde_json::to_value(&preview).unwrap();
        assert_eq!(json["plan"]["action"], "down_scripts");
        assert_eq!(json["changes"][0]["inserted"], 42);
        let back: SchemaRollbackPreview = serde_json::from_value(json).unwrap();
        assert_eq!(back, preview);
    }
}
