//! A waiting flag change's state machine, in the pattern every state machine here follows: one
//! pure function ([`ChangeRecord::apply`]) takes the record and an event and returns the whole
//! new record or a refusal; `change::save` is the one place that writes it.
//!
//! ```text
//! pending ──approve──▶ approved ──applied──▶ applied
//!    │                    │ └──no longer applies──▶ failed
//!    ├──reject──▶ rejected│
//!    └──cancel──▶ canceled◀──cancel (before it is applied)
//! ```
//! A change that needs no approval starts `approved` (it waits for its time only).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a waiting flag change is. Stored as text, decoded strictly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "kebab-case")]
#[sqlx(type_name = "text", rename_all = "kebab-case")]
pub enum ChangeState {
    /// Waiting for another person's approval.
    Pending,
    /// Approved (or needing none): waiting for its time.
    Approved,
    Applied,
    Rejected,
    Canceled,
    /// Its edit no longer applied when its time came (the flag was archived, say).
    Failed,
}

impl ChangeState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeState::Pending => "pending",
            ChangeState::Approved => "approved",
            ChangeState::Applied => "applied",
            ChangeState::Rejected => "rejected",
            ChangeState::Canceled => "canceled",
            ChangeState::Failed => "failed",
        }
    }

    /// Still waiting for something.
    pub fn is_open(self) -> bool {
        matches!(self, ChangeState::Pending | ChangeState::Approved)
    }
}

/// A decision on a waiting change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
    /// Withdrawn by the person who asked (or anyone allowed to decide).
    Cancel,
}

/// What happened to a waiting change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    /// A person decided.
    Decided { decision: Decision, by: String },
    /// It was applied; the snapshot it made, when it changed anything.
    Applied { version: Option<i64> },
    /// Its edit no longer applies.
    NoLongerApplies { problem: String },
}

/// Everything about a waiting change that moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRecord {
    pub state: ChangeState,
    pub requested_by: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub applied_at: Option<DateTime<Utc>>,
    pub applied_version: Option<i64>,
    pub problem: Option<String>,
}

/// Why an event does not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeRefusal {
    #[error("this change is {}, so it cannot be {}", .0.as_str(), .1)]
    NotOpen(ChangeState, &'static str),
    #[error("you asked for this change; another person approves it")]
    OwnChange,
}

impl ChangeRecord {
    /// The record after `event` at `now`, or why not.
    pub fn apply(
        &self,
        event: &ChangeEvent,
        now: DateTime<Utc>,
    ) -> Result<ChangeRecord, ChangeRefusal> {
        use ChangeState::*;
        Ok(match event {
            ChangeEvent::Decided { decision, by } => {
                let state = match (self.state, decision) {
                    (Pending, Decision::Approve) if *by == self.requested_by => {
                        return Err(ChangeRefusal::OwnChange);
                    }
                    (Pending, Decision::Approve) => Approved,
                    (Pending | Approved, Decision::Reject) => Rejected,
                    (Pending | Approved, Decision::Cancel) => Canceled,
                    (state, decision) => {
                        return Err(ChangeRefusal::NotOpen(
                            state,
                            match decision {
                                Decision::Approve => "approved",
                                Decision::Reject => "rejected",
                                Decision::Cancel => "canceled",
                            },
                        ));
                    }
                };
                ChangeRecord {
                    state,
                    decided_by: Some(by.clone()),
                    decided_at: Some(now),
                    ..self.clone()
                }
            }
            ChangeEvent::Applied { version } if self.state == Approved => ChangeRecord {
                state: Applied,
                applied_at: Some(now),
                applied_version: *version,
                ..self.clone()
            },
            ChangeEvent::NoLongerApplies { problem } if self.state == Approved => ChangeRecord {
                state: Failed,
                problem: Some(problem.clone()),
                ..self.clone()
            },
            ChangeEvent::Applied { .. } | ChangeEvent::NoLongerApplies { .. } => {
                return Err(ChangeRefusal::NotOpen(self.state, "applied"));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        Utc::now()
    }

    fn record(state: ChangeState) -> ChangeRecord {
        ChangeRecord {
            state,
            requested_by: "alice".into(),
            decided_by: None,
            decided_at: None,
            applied_at: None,
            applied_version: None,
            problem: None,
        }
    }

    fn decided(decision: Decision, by: &str) -> ChangeEvent {
        ChangeEvent::Decided {
            decision,
            by: by.into(),
        }
    }

    #[test]
    fn another_person_approves_and_then_it_is_applied_once() {
        let at = now();
        let approved = record(ChangeState::Pending)
            .apply(&decided(Decision::Approve, "bob"), at)
            .unwrap();
        assert_eq!(approved.state, ChangeState::Approved);
        assert_eq!(approved.decided_by.as_deref(), Some("bob"));
        let applied = approved
            .apply(&ChangeEvent::Applied { version: Some(7) }, at)
            .unwrap();
        assert_eq!(applied.state, ChangeState::Applied);
        assert_eq!(applied.applied_version, Some(7));
        assert!(
            applied
                .apply(&ChangeEvent::Applied { version: Some(8) }, at)
                .is_err(),
            "applied once"
        );
    }

    #[test]
    fn the_person_who_asked_does_not_approve_but_may_cancel() {
        let pending = record(ChangeState::Pending);
        assert_eq!(
            pending.apply(&decided(Decision::Approve, "alice"), now()),
            Err(ChangeRefusal::OwnChange)
        );
        let canceled = pending
            .apply(&decided(Decision::Cancel, "alice"), now())
            .unwrap();
        assert_eq!(canceled.state, ChangeState::Canceled);
    }

    #[test]
    fn finished_changes_take_no_decisions_and_pending_ones_are_not_applied() {
        for state in [
            ChangeState::Applied,
            ChangeState::Rejected,
            ChangeState::Canceled,
            ChangeState::Failed,
        ] {
            for decision in [Decision::Approve, Decision::Reject, Decision::Cancel] {
                assert!(
                    record(state)
                        .apply(&decided(decision, "bob"), now())
                        .is_err()
                );
            }
        }
        assert!(
            record(ChangeState::Approved)
                .apply(&decided(Decision::Approve, "bob"), now())
                .is_err(),
            "approved already"
        );
        assert!(
            record(ChangeState::Pending)
                .apply(&ChangeEvent::Applied { version: None }, now())
                .is_err()
        );
        let failed = record(ChangeState::Approved)
            .apply(
                &ChangeEvent::NoLongerApplies {
                    problem: "archived".into(),
                },
                now(),
            )
            .unwrap();
        assert_eq!(failed.state, ChangeState::Failed);
        assert_eq!(failed.problem.as_deref(), Some("archived"));
    }
}
