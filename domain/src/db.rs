//! The connection pool and Flightdeck's own schema migrations.

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use std::time::Duration;

/// The migrations in the workspace's `migrations/` directory, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Opens the pool every request and background service shares.
pub async fn connect(
    options: PgConnectOptions,
    max_connections: u32,
) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        // A request waits at most this long for a connection before failing with 503.
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
}

/// Brings the schema up to date. Several replicas may start at once: sqlx takes an advisory lock,
/// so exactly one applies each migration.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}
