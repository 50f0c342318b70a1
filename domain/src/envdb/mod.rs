//! Environment databases: the app's migrations as a release carries them ([`migration`]), how
//! the app records which ones ran ([`tracking`]), and the record of each backup taken before
//! migrating ([`backup`]). The work on the databases themselves (pg_dump, applying, restoring)
//! runs in the server (`server::envdb`), which calls these.

pub mod backup;
pub mod migration;
pub mod tracking;

pub use backup::{BackupId, DatabaseBackup, NewBackup, TableChange, TableStats, changes_since};
pub use migration::{Migration, MigrationsError};
pub use tracking::{Recorded, TrackingError};
