//! Environment databases: the app's migrations as a release carries them ([`migration`]), how
//! the app records which ones ran ([`tracking`]), the record of each backup taken before
//! migrating or rolling back ([`backup`]), and what a rollback does to the schema ([`rollback`]).
//! The work on the databases themselves (pg_dump, applying, undoing, restoring) runs in the
//! server (`server::envdb`), which calls these.

pub mod backup;
pub mod migration;
pub mod rollback;
pub mod tracking;

pub use backup::{
    BackupId, BackupPurpose, DatabaseBackup, NewBackup, TableChange, TableStats, changes_since,
};
pub use migration::{Migration, MigrationsError};
pub use rollback::{SchemaRollbackInputs, SchemaRollbackPlan, SchemaRollbackPreview};
pub use tracking::{Recorded, TrackingError};
