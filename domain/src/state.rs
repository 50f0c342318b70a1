//! The states runs, stages and jobs move through. The transition rules arrive with the engine;
//! the overview already shows a stage's state.

use serde::{Deserialize, Serialize};

/// Where a run, stage or job is in its life.
///
/// Stored as text; decoding is strict: a text that is none of these is an error, never a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(
    feature = "server",
    derive(sqlx::Type),
    sqlx(type_name = "text", rename_all = "kebab-case")
)]
pub enum RunState {
    /// Accepted, waiting for its turn or for a runner.
    Queued,
    /// A runner is executing it.
    Running,
    /// Paused on something outside it: an approval, a deploy window, a runner with its labels.
    Waiting,
    /// Finished and everything passed.
    Succeeded,
    /// Finished and something failed.
    Failed,
    /// Stopped by a person or by a newer run.
    Canceled,
    /// Not run, because a condition said so or an earlier stage failed.
    Skipped,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Waiting => "waiting",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Canceled => "canceled",
            RunState::Skipped => "skipped",
        }
    }

    pub const ALL: [RunState; 7] = [
        RunState::Queued,
        RunState::Running,
        RunState::Waiting,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Canceled,
        RunState::Skipped,
    ];

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Canceled | RunState::Skipped
        )
    }
}

/// A state name that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a run state (queued, running, waiting, succeeded, failed, canceled, skipped)"
)]
pub struct UnknownState(pub String);

impl std::str::FromStr for RunState {
    type Err = UnknownState;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        RunState::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| UnknownState(text.to_string()))
    }
}
