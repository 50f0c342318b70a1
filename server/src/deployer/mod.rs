//! The deployer: the background service that drives deployments, on every replica.
//!
//! Each tick it claims unfinished deployments with a lease (`deployment.driver`, like a runner's
//! claim on a job; a replica that dies loses its lease and another takes over), and moves each
//! one as far as it can go now: one stage at a time, in a transaction that holds the
//! deployment's row lock (the domain's lock order). Work that touches the world — a database
//! backup and migrations, publishing the site — is recorded as a step before it starts and after
//! it ends (`deployment_step`), outside the lock, so a restarted deployer sees what was done and
//! redoes only an unfinished step (each is idempotent). Jobs (the deploy job, tests) are runs of
//! the CI engine; the deployer starts them and waits for their outcome.
//!
//! It also describes new releases: the commits since the previous release, read from the
//! project's repository ([`describe`]).

mod describe;
mod rollback;
pub use rollback::RollbackDatabasePreview;
mod stages;
pub mod world;

use domain::deployment::DeploymentId;
use domain::deployment::store;
use domain::portal::Portal;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How often deployments are looked at when nothing wakes the deployer sooner.
const TICK: Duration = Duration::from_secs(1);
/// How long a claim lasts without renewal (renewed every tick while the replica lives, and every
/// tick of a step that touches the world while it works).
const LEASE_SECS: i64 = 30;
/// Deployments one replica drives at once.
const BATCH: i64 = 16;

/// The variable that makes a server stop dead (`abort`, as kill -9 would) right after the
/// deployment step it names has done its work and before that is recorded: how the crash tests
/// stop a process at step k. Unset in every real deployment.
pub const CRASH_AFTER_STEP: &str = "FLIGHTDECK_TEST_CRASH_AFTER_STEP";

fn crash_point(step: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if AT
        .get_or_init(|| std::env::var(CRASH_AFTER_STEP).ok())
        .as_deref()
        == Some(step)
    {
        eprintln!("{CRASH_AFTER_STEP}={step}: stopping dead after step {step}");
        std::process::abort();
    }
}

/// What the deployer needs besides the domain services.
#[derive(Clone)]
pub struct Deployer {
    pub portal: Portal,
    /// This replica, as the driver that holds leases.
    pub driver: Uuid,
    /// The portal's address: environments' sites are under it (`BASE_URL` of post-deploy jobs).
    pub public_url: String,
    pub world: world::World,
}

/// What one look at a deployment ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Next {
    /// It moved; look again now.
    Again,
    /// It waits for something (people, a job, a window); look at the next tick.
    Wait,
}

/// Changes that may let a deployment move: a run's state, a decision, a new deployment.
fn wakes(change: &crate::live::Change) -> bool {
    matches!(
        (change.topic.as_str(), change.table.as_deref()),
        ("run", Some("run")) | ("release", Some("deployment_decision" | "deployment"))
    )
}

impl Deployer {
    /// Starts the service; it ends when `shutdown` is cancelled.
    pub fn start(self, live: &crate::live::LiveHub, shutdown: CancellationToken) -> JoinHandle<()> {
        let mut changes = live.subscribe();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut hearing = true;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                    change = changes.recv(), if hearing => match change {
                        // A run finished or someone decided: look now, not at the next tick.
                        Ok(change) if wakes(&change) => {}
                        Ok(_) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => hearing = false,
                    },
                }
                self.tick().await;
            }
        })
    }

    /// One pass: claims what this replica may drive and moves each as far as it goes.
    pub async fn tick(&self) {
        if let Err(error) = describe::describe_new_releases(&self.portal).await {
            tracing::warn!(%error, "could not describe new releases");
        }
        let now = self.portal.clock.now();
        let claimed = match store::claim(
            &self.portal.pool,
            self.driver,
            chrono::Duration::seconds(LEASE_SECS),
            now,
            BATCH,
        )
        .await
        {
            Ok(claimed) => claimed,
            Err(error) => {
                tracing::warn!(%error, "could not claim deployments");
                return;
            }
        };
        for id in claimed {
            if let Err(error) = self.drive(id).await {
                tracing::warn!(deployment = %id, error = format!("{error:#}"), "a deployment step failed");
            }
        }
    }

    /// Moves one deployment as far as it goes now.
    pub async fn drive(&self, id: DeploymentId) -> anyhow::Result<()> {
        for _ in 0..64 {
            if stages::step(self, id).await? == Next::Wait {
                break;
            }
        }
        Ok(())
    }
}
