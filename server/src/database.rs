//! Opening the database: the server at DATABASE_URL, or the embedded cluster under the data
//! directory, migrated to the current schema either way.

use crate::config::DatabaseSetting;
use crate::embedded_pg::{EmbeddedPgError, EmbeddedPostgres};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("DATABASE_URL is not a valid PostgreSQL URL: {0}")]
    BadUrl(sqlx::Error),
    #[error(transparent)]
    Embedded(#[from] EmbeddedPgError),
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(sqlx::Error),
    #[error("cannot bring the database schema up to date: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// An open, migrated database, and the embedded cluster behind it if this process started one.
pub struct Database {
    pub pool: PgPool,
    embedded: Option<EmbeddedPostgres>,
    /// The URL given (DATABASE_URL), when not embedded.
    url: Option<String>,
}

impl Database {
    pub async fn open(
        setting: &DatabaseSetting,
        max_connections: u32,
    ) -> Result<Self, DatabaseError> {
        let (options, embedded) = match setting {
            DatabaseSetting::Url(url) => (
                PgConnectOptions::from_str(url).map_err(DatabaseError::BadUrl)?,
                None,
            ),
            DatabaseSetting::Embedded { data_dir } => {
                let cluster = EmbeddedPostgres::start(data_dir).await?;
                (cluster.connect_options(), Some(cluster))
            }
        };
        let pool = domain::db::connect(options.application_name("flightdeck"), max_connections)
            .await
            .map_err(DatabaseError::Connect)?;
        domain::db::migrate(&pool).await?;
        let url = match setting {
            DatabaseSetting::Url(url) => Some(url.clone()),
            DatabaseSetting::Embedded { .. } => None,
        };
        Ok(Database {
            pool,
            embedded,
            url,
        })
    }

    /// A URL other processes on this machine can use (for `psql`, a second replica, tests).
    pub fn embedded_url(&self) -> Option<String> {
        self.embedded.as_ref().map(|e| e.url())
    }

    /// Flightdeck's database URL: DATABASE_URL, or the embedded cluster's. Environments'
    /// databases (`database.name`) live on the same server.
    pub fn url(&self) -> String {
        self.url
            .clone()
            .or_else(|| self.embedded_url())
            .unwrap_or_default()
    }

    /// Closes the pool, then stops the embedded cluster unless another Flightdeck process on
    /// this data directory still uses it (the last one out stops it).
    pub async fn close(self) {
        self.pool.close().await;
        if let Some(cluster) = self.embedded
            && let Err(error) = cluster.stop().await
        {
            tracing::warn!(%error, "could not stop the embedded PostgreSQL cleanly");
        }
    }
}
