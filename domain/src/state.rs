//! The states runs, stages and jobs move through. The transition rules arrive with the engine;
//! the overview already shows a stage's state.

use serde::{Deserialize, Serialize};

/// Where a run, stage or job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Canceled | RunState::Skipped
        )
    }
}
