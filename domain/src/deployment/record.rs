//! A deployment stage's record and the one pure function that moves it, and the deployment's
//! state as a summary of its stages. `store::save_stage` is the one place that writes them.
//!
//! | from                       | event     | to        |
//! |----------------------------|-----------|-----------|
//! | queued                     | start     | running   |
//! | queued, running            | wait      | waiting   |
//! | waiting                    | resume    | running   |
//! | queued, running, waiting   | succeed   | succeeded |
//! | queued, running, waiting   | fail      | failed    |
//! | queued, running, waiting   | cancel    | canceled  |
//! | queued                     | skip      | skipped   |
//! | any unfinished             | explain   | the same, with new words |

use crate::state::RunState;
use chrono::{DateTime, Utc};

/// What a stage's record holds that changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRecord {
    pub state: RunState,
    pub reason: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StageEvent {
    Start,
    Wait(String),
    Resume,
    Succeed(Option<String>),
    Fail(String),
    Cancel(String),
    Skip(String),
    Explain(Option<String>),
}

impl StageEvent {
    fn name(&self) -> &'static str {
        match self {
            StageEvent::Start => "start",
            StageEvent::Wait(_) => "wait",
            StageEvent::Resume => "resume",
            StageEvent::Succeed(_) => "succeed",
            StageEvent::Fail(_) => "fail",
            StageEvent::Cancel(_) => "cancel",
            StageEvent::Skip(_) => "skip",
            StageEvent::Explain(_) => "explain",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {from} stage cannot {event}")]
pub struct InvalidStageTransition {
    pub from: &'static str,
    pub event: &'static str,
}

impl StageRecord {
    pub fn queued() -> Self {
        StageRecord {
            state: RunState::Queued,
            reason: None,
            started_at: None,
            finished_at: None,
        }
    }

    /// The record after `event` at `now`, or a refusal. Pure.
    pub fn apply(
        &self,
        event: &StageEvent,
        now: DateTime<Utc>,
    ) -> Result<StageRecord, InvalidStageTransition> {
        use RunState::*;
        let refuse = || InvalidStageTransition {
            from: self.state.as_str(),
            event: event.name(),
        };
        let started = self.started_at.or(Some(now));
        let next = match (self.state, event) {
            (Queued, StageEvent::Start) => StageRecord {
                state: Running,
                reason: None,
                started_at: started,
                finished_at: None,
            },
            (Queued | Running, StageEvent::Wait(reason)) => StageRecord {
                state: Waiting,
                reason: Some(reason.clone()),
                started_at: started,
                finished_at: None,
            },
            (Waiting, StageEvent::Resume) => StageRecord {
                state: Running,
                reason: None,
                ..self.clone()
            },
            (Queued | Running | Waiting, StageEvent::Succeed(reason)) => StageRecord {
                state: Succeeded,
                reason: reason.clone(),
                started_at: started,
                finished_at: Some(now),
            },
            (Queued | Running | Waiting, StageEvent::Fail(reason)) => StageRecord {
                state: Failed,
                reason: Some(reason.clone()),
                started_at: started,
                finished_at: Some(now),
            },
            (Queued | Running | Waiting, StageEvent::Cancel(reason)) => StageRecord {
                state: Canceled,
                reason: Some(reason.clone()),
                finished_at: Some(now),
                ..self.clone()
            },
            (Queued, StageEvent::Skip(reason)) => StageRecord {
                state: Skipped,
                reason: Some(reason.clone()),
                started_at: None,
                finished_at: Some(now),
            },
            (Queued | Running | Waiting, StageEvent::Explain(reason)) => StageRecord {
                reason: reason.clone(),
                ..self.clone()
            },
            _ => return Err(refuse()),
        };
        Ok(next)
    }
}

/// A deployment's state and words, from its stages in order: the first failed or canceled stage
/// decides; else the first unfinished one (running, waiting with its reason, or queued); else
/// it succeeded.
pub fn summarize(stages: &[(String, StageRecord)]) -> (RunState, Option<String>) {
    for (name, stage) in stages {
        match stage.state {
            RunState::Failed => {
                return (
                    RunState::Failed,
                    Some(format!(
                        "{name} failed: {}",
                        stage.reason.as_deref().unwrap_or("no reason given")
                    )),
                );
            }
            RunState::Canceled => {
                return (
                    RunState::Canceled,
                    Some(format!(
                        "canceled at {name}: {}",
                        stage.reason.as_deref().unwrap_or("no reason given")
                    )),
                );
            }
            _ => {}
        }
    }
    for (name, stage) in stages {
        match stage.state {
            RunState::Running => return (RunState::Running, Some(format!("{name} is running"))),
            RunState::Waiting => {
                return (
                    RunState::Waiting,
                    Some(format!(
                        "{name}: {}",
                        stage.reason.as_deref().unwrap_or("waiting")
                    )),
                );
            }
            RunState::Queued => {
                let any_started = stages.iter().any(|(_, s)| s.state.is_finished());
                return if any_started {
                    (RunState::Running, Some(format!("{name} is next")))
                } else {
                    (RunState::Queued, None)
                };
            }
            _ => {}
        }
    }
    (RunState::Succeeded, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(n: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + n, 0).unwrap()
    }

    #[test]
    fn a_gate_waits_then_succeeds_keeping_its_start() {
        let waiting = StageRecord::queued()
            .apply(&StageEvent::Wait("waiting for QA".into()), at(1))
            .unwrap();
        assert_eq!(waiting.state, RunState::Waiting);
        assert_eq!(waiting.started_at, Some(at(1)));
        let done = waiting
            .apply(&StageEvent::Succeed(Some("approved by qa1".into())), at(9))
            .unwrap();
        assert_eq!(done.state, RunState::Succeeded);
        assert_eq!(done.started_at, Some(at(1)));
        assert_eq!(done.finished_at, Some(at(9)));
    }

    #[test]
    fn finished_stages_do_not_move() {
        let failed = StageRecord::queued()
            .apply(&StageEvent::Fail("rejected".into()), at(1))
            .unwrap();
        for event in [
            StageEvent::Start,
            StageEvent::Resume,
            StageEvent::Succeed(None),
            StageEvent::Fail("again".into()),
            StageEvent::Skip("x".into()),
        ] {
            assert!(failed.apply(&event, at(2)).is_err(), "{event:?}");
        }
        let running = StageRecord::queued()
            .apply(&StageEvent::Start, at(1))
            .unwrap();
        assert!(running.apply(&StageEvent::Skip("x".into()), at(2)).is_err());
    }

    #[test]
    fn the_deployment_is_its_first_failed_or_unfinished_stage() {
        let q = StageRecord::queued();
        let ok = q.apply(&StageEvent::Succeed(None), at(1)).unwrap();
        let wait = q
            .apply(&StageEvent::Wait("waiting for ana".into()), at(1))
            .unwrap();
        let failed = q
            .apply(&StageEvent::Fail("rejected by ana: typo".into()), at(1))
            .unwrap();
        assert_eq!(
            summarize(&[("a".into(), q.clone())]),
            (RunState::Queued, None)
        );
        assert_eq!(
            summarize(&[("a".into(), ok.clone()), ("gate".into(), wait)]),
            (RunState::Waiting, Some("gate: waiting for ana".into()))
        );
        assert_eq!(
            summarize(&[("a".into(), ok.clone()), ("b".into(), q.clone())]).0,
            RunState::Running
        );
        assert_eq!(
            summarize(&[
                ("a".into(), ok.clone()),
                ("gate".into(), failed),
                ("c".into(), q)
            ]),
            (
                RunState::Failed,
                Some("gate failed: rejected by ana: typo".into())
            )
        );
        assert_eq!(summarize(&[("a".into(), ok)]).0, RunState::Succeeded);
    }
}
