//! Background services every server process runs: taking back jobs from runners that died,
//! applying flag changes whose time has come, firing schedules (`crate::scheduler`), deleting
//! expired sessions and old artifacts. Each is safe to run on every replica at once:
//! the work is claimed in the database.

use domain::portal::Portal;
use domain::run::artifacts::{Retention, sweep};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often expired leases are looked for (a lease is 30 s, so a dead runner's job is back in
/// the queue within 35 s).
const REAP_INTERVAL: Duration = Duration::from_secs(5);
/// How often flag changes whose time has come (approved, or scheduled) are looked for.
const FLAG_CHANGE_INTERVAL: Duration = Duration::from_secs(1);
/// How often expired sessions and old artifacts are deleted.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(3600);

/// Starts every service; each ends when `shutdown` is cancelled.
pub fn start(portal: Portal, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(reap_leases(portal.clone(), shutdown.clone())),
        tokio::spawn(apply_flag_changes(portal.clone(), shutdown.clone())),
        tokio::spawn(crate::scheduler::run(
            portal.clone(),
            uuid::Uuid::new_v4(),
            shutdown.clone(),
        )),
        tokio::spawn(housekeeping(portal, shutdown)),
    ]
}

async fn reap_leases(portal: Portal, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(REAP_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => match portal.work.reap_expired_leases().await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(jobs = n, "took back jobs whose runner stopped answering"),
                Err(error) => tracing::warn!(%error, "could not check runner leases"),
            },
        }
    }
}

async fn apply_flag_changes(portal: Portal, shutdown: CancellationToken) {
    let changes = portal.flag_changes(&portal.flags);
    let mut tick = tokio::time::interval(FLAG_CHANGE_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => match changes.apply_due().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(changes = n, "applied flag changes whose time had come"),
                Err(error) => tracing::warn!(%error, "could not apply waiting flag changes"),
            },
        }
    }
}

async fn housekeeping(portal: Portal, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                match portal.sessions.purge_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(sessions = n, "deleted expired sessions"),
                    Err(error) => tracing::warn!(%error, "could not delete expired sessions"),
                }
                match sweep(&portal.pool, &portal.artifacts, Retention::default()).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(artifacts = n, "deleted artifacts past their retention"),
                    Err(error) => tracing::warn!(%error, "could not apply artifact retention"),
                }
            }
        }
    }
}
