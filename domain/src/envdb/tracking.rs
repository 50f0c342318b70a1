//! How the app records applied migrations, and therefore how Flightdeck must: the table
//! `schema_migration` (version, name, sha256 of the file, applied_at), created if missing, read
//! and written inside the one transaction that applies the pending migrations, under the
//! transaction-scoped advisory lock `pg_advisory_xact_lock(hashtext('<LOCK_KEY>'))`. The same
//! DDL, the same lock and the same checksum as StudyBuddy's `src/migrations.mjs`, so the app's
//! own tool and Flightdeck wait for each other and each sees the other's work as done.

use super::migration::Migration;

/// The app's table of applied migrations.
pub const TABLE: &str = "schema_migration";

/// The table as the app's tool creates it (`create table if not exists`, identical columns).
pub const CREATE_TABLE: &str = "create table if not exists schema_migration (
      version integer primary key,
      name text not null,
      sha256 text not null,
      applied_at timestamptz not null default now()
    )";

/// The text whose `hashtext` is the advisory lock key the app's tool takes.
pub const LOCK_KEY: &str = "studybuddy.schema_migration";

/// Takes the lock, until the transaction ends.
pub const LOCK: &str = "select pg_advisory_xact_lock(hashtext('studybuddy.schema_migration'))";

/// One row of `schema_migration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub version: i32,
    pub name: String,
    pub sha256: String,
}

/// Why the release's migrations cannot be applied to this database (the app's tool refuses the
/// same cases).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackingError {
    #[error(
        "{file} was changed after it was applied (the database has sha256 {recorded}, the release {release}); add a new migration instead"
    )]
    Changed {
        file: String,
        recorded: String,
        release: String,
    },
    #[error("the database has migration {version} ({name}), which this release does not have")]
    Ahead { version: i32, name: String },
}

/// The release's migrations not yet recorded, in order; refuses an edited applied migration or
/// a database ahead of the release (the first problem found, in version order).
pub fn pending<'a>(
    recorded: &[Recorded],
    migrations: &'a [Migration],
) -> Result<Vec<&'a Migration>, TrackingError> {
    let mut recorded = recorded.to_vec();
    recorded.sort_by_key(|r| r.version);
    for row in &recorded {
        match migrations.iter().find(|m| m.version == row.version) {
            None => {
                return Err(TrackingError::Ahead {
                    version: row.version,
                    name: row.name.clone(),
                });
            }
            Some(known) if known.sha256 != row.sha256 => {
                return Err(TrackingError::Changed {
                    file: known.file.clone(),
                    recorded: row.sha256.clone(),
                    release: known.sha256.clone(),
                });
            }
            Some(_) => {}
        }
    }
    Ok(migrations
        .iter()
        .filter(|m| !recorded.iter().any(|r| r.version == m.version))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envdb::migration::check;

    fn release() -> Vec<Migration> {
        check(vec![
            ("0001_a.sql".into(), b"create table a (id int);".to_vec()),
            ("0002_b.sql".into(), b"create table b (id int);".to_vec()),
        ])
        .unwrap()
    }

    fn row(m: &Migration) -> Recorded {
        Recorded {
            version: m.version,
            name: m.name.clone(),
            sha256: m.sha256.clone(),
        }
    }

    #[test]
    fn only_unrecorded_migrations_are_pending() {
        let migrations = release();
        let none = pending(&[], &migrations).unwrap();
        assert_eq!(none.len(), 2);
        let one = pending(&[row(&migrations[0])], &migrations).unwrap();
        assert_eq!(one, vec![&migrations[1]]);
        let all = pending(&[row(&migrations[1]), row(&migrations[0])], &migrations).unwrap();
        assert!(all.is_empty());
    }

    #[test]
    fn an_edited_migration_or_a_database_ahead_is_refused() {
        let migrations = release();
        let mut edited = row(&migrations[0]);
        edited.sha256 = "0".repeat(64);
        let error = pending(&[edited], &migrations).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("0001_a.sql was changed after it was applied")
        );
        let ahead = Recorded {
            version: 3,
            name: "c".into(),
            sha256: "x".into(),
        };
        let error = pending(&[row(&migrations[0]), ahead], &migrations).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the database has migration 3 (c), which this release does not have"
        );
    }
}
