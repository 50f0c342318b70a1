//! Live updates across replicas: one Postgres `LISTEN` connection per server process, fanned out
//! to every open page's SSE stream.
//!
//! Database triggers `NOTIFY flightdeck_change` whenever something a page shows changes, whichever
//! process (or person at psql) made the change, so every replica hears every change.

use domain::flags::store::EnvironmentId;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// The notification channel the triggers in `migrations/` use.
pub const CHANNEL: &str = "flightdeck_change";
/// The channel new log lines are announced on (one notification per batch).
pub const LOG_CHANNEL: &str = "flightdeck_log";
/// The channel site versions and site switches are announced on (see `crate::sites`).
pub const SITE_CHANNEL: &str = "flightdeck_site";

/// Events buffered per subscriber. A page that falls further behind gets a `resync` instead of
/// the missed events, which makes it reload anyway.
const BUFFER: usize = 256;

/// Waiting before reconnecting after the listener connection broke: doubles from the first to
/// the last value, so a database restart is noticed quickly without hammering it.
const RECONNECT_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(200), Duration::from_secs(10));

/// One change, as the triggers describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub topic: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// For `flags` and `sdk_tokens`: the environment that changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment_id: Option<String>,
    /// For `flags`: the environment's new snapshot version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// For `site`: the site version prepared or switched to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_version_id: Option<String>,
}

impl Change {
    /// Sent when notifications may have been missed (reconnection, slow consumer).
    pub fn resync() -> Self {
        Change {
            topic: "resync".into(),
            project_id: None,
            table: None,
            run_id: None,
            job_id: None,
            environment_id: None,
            version: None,
            site_version_id: None,
        }
    }

    /// The environment a `flags` or `sdk_tokens` change is about.
    pub fn environment_id(&self) -> Option<EnvironmentId> {
        self.environment_id.as_deref()?.parse().ok()
    }
}

#[derive(Clone)]
pub struct LiveHub {
    sender: broadcast::Sender<Change>,
    listening: Arc<AtomicBool>,
}

impl LiveHub {
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }

    /// Whether the listener connection is up (part of readiness).
    pub fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Relaxed)
    }

    /// Starts the listener task; it runs until `stop` is cancelled.
    pub fn start(pool: PgPool, stop: CancellationToken) -> Self {
        let (sender, _) = broadcast::channel(BUFFER);
        let hub = LiveHub {
            sender,
            listening: Arc::new(AtomicBool::new(false)),
        };
        tokio::spawn(hub.clone().run(pool, stop));
        hub
    }

    async fn run(self, pool: PgPool, stop: CancellationToken) {
        let mut backoff = RECONNECT_BACKOFF.0;
        loop {
            let result = tokio::select! {
                _ = stop.cancelled() => break,
                result = self.listen(&pool) => result,
            };
            self.listening.store(false, Ordering::Relaxed);
            if let Err(error) = result {
                tracing::warn!(%error, retry_in = ?backoff, "live update listener lost its connection");
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RECONNECT_BACKOFF.1);
        }
    }

    async fn listen(&self, pool: &PgPool) -> Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(pool).await?;
        // Reconnection is ours (with backoff and a resync), not sqlx's silent one.
        listener.ignore_pool_close_event(true);
        listener
            .listen_all([CHANNEL, LOG_CHANNEL, SITE_CHANNEL])
            .await?;
        self.listening.store(true, Ordering::Relaxed);
        tracing::debug!("listening for live updates");
        let _ = self.sender.send(Change::resync());
        loop {
            let notification = listener.try_recv().await?;
            let Some(notification) = notification else {
                return Err(sqlx::Error::Protocol("listener connection closed".into()));
            };
            let change =
                serde_json::from_str(notification.payload()).unwrap_or_else(|_| Change::resync());
            // No subscribers is fine: nobody has a page open.
            let _ = self.sender.send(change);
        }
    }
}
