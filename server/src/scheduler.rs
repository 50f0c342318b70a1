//! The scheduler: on every replica, fires the schedules' due ticks (see `domain::schedule` for
//! what is due, the exactly-once claim and the missed-ticks policy).
//!
//! It looks every [`POLL`], on the portal's clock, and sooner when the next tick is nearer than
//! that, so a tick on the system clock fires within milliseconds of its instant. With a test's
//! manual clock, moving the clock makes ticks due at the next look.

use domain::portal::Portal;
use domain::schedule::TickOutcome;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The longest the scheduler waits between looks.
const POLL: Duration = Duration::from_secs(1);
/// The shortest: a clock a few milliseconds behind the instant does not spin.
const MIN_WAIT: Duration = Duration::from_millis(5);

/// Runs until `shutdown`. `replica` names this server process in the ticks it fires.
pub async fn run(portal: Portal, replica: Uuid, shutdown: CancellationToken) {
    loop {
        let wait = match domain::schedule::store::fire_due(&portal, replica).await {
            Ok(pass) => {
                for fired in &pass.fired {
                    let detail = fired.detail.as_deref().unwrap_or("");
                    match fired.outcome {
                        TickOutcome::Failed => {
                            tracing::warn!(project = %fired.project, schedule = %fired.schedule, due = %fired.due_at, "schedule tick failed: {detail}")
                        }
                        TickOutcome::Missed => {
                            tracing::warn!(project = %fired.project, schedule = %fired.schedule, due = %fired.due_at, "schedule tick missed while every server was down")
                        }
                        outcome => {
                            tracing::info!(project = %fired.project, schedule = %fired.schedule, due = %fired.due_at, outcome = outcome.as_str(), "schedule tick: {detail}")
                        }
                    }
                }
                pass.next
                    .and_then(|next| (next - portal.clock.now()).to_std().ok())
                    .map_or(POLL, |until| until.clamp(MIN_WAIT, POLL))
            }
            Err(error) => {
                tracing::warn!(%error, "could not fire due schedule ticks");
                POLL
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
