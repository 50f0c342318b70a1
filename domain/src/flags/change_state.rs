//! A waiting flag change's state machine, in the pattern every state machine here follows: one
//! pure function ([`ChangeRecord::apply`]) takes the record and an event and returns the whole
//! new record or a refusal; `change::save` is the one place that writes it.
//!
//! ```text
//!  ┌approve (not the Nth)┐
//! pending ──Nth approval──▶ approved ──applied──▶ applied
//!    │  └──admin override──▶  │ └──no longer applies──▶ failed
//!    ├──reject──▶ rejected    │
//!    └──cancel──▶ canceled◀───┘ cancel (before it is applied)
//! ```
//! A change that needs no approval starts `approved` (it waits for its time only). A change
//! that needs N approvals needs N people other than the one who asked; a second approval by the
//! same person changes nothing. An override lets a pending change through without them; who
//! may override (admins) is the environment rule's question, not this machine's, and its reason
//! is never empty ([`OverrideReason`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a waiting flag change is. Stored as text, decoded strictly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "kebab-case")]
#[sqlx(type_name = "text", rename_all = "kebab-case")]
pub enum ChangeState {
    /// Waiting for approvals by other people.
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

/// Why an admin let a change through without its approvals: never empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct OverrideReason(String);

/// The longest override reason.
pub const MAX_OVERRIDE_REASON: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OverrideReasonError {
    #[error("an override needs a reason: say why this change cannot wait for its approvals")]
    Empty,
    #[error("a reason has at most {MAX_OVERRIDE_REASON} characters, not {0}")]
    TooLong(usize),
}

impl OverrideReason {
    pub fn parse(text: &str) -> Result<Self, OverrideReasonError> {
        let text = text.trim();
        let length = text.chars().count();
        if length == 0 {
            return Err(OverrideReasonError::Empty);
        }
        if length > MAX_OVERRIDE_REASON {
            return Err(OverrideReasonError::TooLong(length));
        }
        Ok(OverrideReason(text.to_string()))
    }
}

impl AsRef<str> for OverrideReason {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// What happened to a waiting change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeEvent {
    /// A person decided.
    Decided { decision: Decision, by: String },
    /// An admin let it through without (all) its approvals.
    Overridden { by: String, reason: OverrideReason },
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
    /// How many other people must approve (the environment's rule when it was asked for).
    pub required_approvals: i16,
    /// Who approved so far, each once, in order.
    pub approved_by: Vec<String>,
    /// Who made the decision that moved it last (the Nth approval, a rejection, an override).
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub applied_at: Option<DateTime<Utc>>,
    pub applied_version: Option<i64>,
    pub problem: Option<String>,
    pub overridden_by: Option<String>,
    pub override_reason: Option<String>,
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
            ChangeEvent::Decided {
                decision: Decision::Approve,
                by,
            } if self.state == Pending => {
                if *by == self.requested_by {
                    return Err(ChangeRefusal::OwnChange);
                }
                if self.approved_by.contains(by) {
                    return Ok(self.clone());
                }
                let mut approved_by = self.approved_by.clone();
                approved_by.push(by.clone());
                if approved_by.len() < usize::try_from(self.required_approvals).unwrap_or(0) {
                    return Ok(ChangeRecord {
                        approved_by,
                        ..self.clone()
                    });
                }
                ChangeRecord {
                    state: Approved,
                    approved_by,
                    decided_by: Some(by.clone()),
                    decided_at: Some(now),
                    ..self.clone()
                }
            }
            ChangeEvent::Overridden { by, reason } if self.state == Pending => ChangeRecord {
                state: Approved,
                decided_by: Some(by.clone()),
                decided_at: Some(now),
                overridden_by: Some(by.clone()),
                override_reason: Some(reason.as_ref().to_string()),
                ..self.clone()
            },
            ChangeEvent::Overridden { .. } => {
                return Err(ChangeRefusal::NotOpen(self.state, "overridden"));
            }
            ChangeEvent::Decided { decision, by } => {
                let state = match (self.state, decision) {
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
            required_approvals: 1,
            approved_by: Vec::new(),
            decided_by: None,
            decided_at: None,
            applied_at: None,
            applied_version: None,
            problem: None,
            overridden_by: None,
            override_reason: None,
        }
    }

    fn needing(approvals: i16) -> ChangeRecord {
        ChangeRecord {
            required_approvals: approvals,
            ..record(ChangeState::Pending)
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

    #[test]
    fn two_required_approvals_need_two_people_and_the_second_approves_it() {
        let at = now();
        let once = needing(2)
            .apply(&decided(Decision::Approve, "bob"), at)
            .unwrap();
        assert_eq!(once.state, ChangeState::Pending);
        assert_eq!(once.approved_by, ["bob"]);
        assert_eq!(once.decided_by, None);
        let twice = once
            .apply(&decided(Decision::Approve, "carol"), at)
            .unwrap();
        assert_eq!(twice.state, ChangeState::Approved);
        assert_eq!(twice.approved_by, ["bob", "carol"]);
        assert_eq!(twice.decided_by.as_deref(), Some("carol"));
    }

    #[test]
    fn the_same_person_approving_twice_counts_once() {
        let once = needing(2)
            .apply(&decided(Decision::Approve, "bob"), now())
            .unwrap();
        let again = once
            .apply(&decided(Decision::Approve, "bob"), now())
            .unwrap();
        assert_eq!(again, once, "nothing changes");
        assert_eq!(
            again.apply(&decided(Decision::Approve, "alice"), now()),
            Err(ChangeRefusal::OwnChange),
            "the person who asked never counts"
        );
    }

    #[test]
    fn an_override_lets_a_pending_change_through_with_its_reason() {
        let reason = OverrideReason::parse("  payment outage, nobody else on call ").unwrap();
        assert_eq!(reason.as_ref(), "payment outage, nobody else on call");
        let overridden = needing(2)
            .apply(
                &ChangeEvent::Overridden {
                    by: "alice".into(),
                    reason: reason.clone(),
                },
                now(),
            )
            .unwrap();
        assert_eq!(overridden.state, ChangeState::Approved);
        assert_eq!(overridden.overridden_by.as_deref(), Some("alice"));
        assert_eq!(
            overridden.override_reason.as_deref(),
            Some("payment outage, nobody else on call")
        );
        assert!(
            overridden.approved_by.is_empty(),
            "an override is no approval"
        );
        let again = ChangeEvent::Overridden {
            by: "alice".into(),
            reason,
        };
        assert!(
            overridden.apply(&again, now()).is_err(),
            "only pending changes"
        );
    }

    #[test]
    fn an_override_reason_is_never_empty() {
        assert_eq!(
            OverrideReason::parse(" \n "),
            Err(OverrideReasonError::Empty)
        );
        let long = "x".repeat(MAX_OVERRIDE_REASON + 1);
        assert!(matches!(
            OverrideReason::parse(&long),
            Err(OverrideReasonError::TooLong(_))
        ));
    }
}
