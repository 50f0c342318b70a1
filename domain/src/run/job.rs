//! A job's record and the one pure function that moves it: [`JobRecord::apply`] takes the record
//! and an event and returns the whole new record (state, reason, attempt, runner, lease, times)
//! or a refusal; `store::save_job` is the one place that writes it. Claims, heartbeats, results,
//! the lease reaper, cancel and re-run all go through it, so what a transition does to the other
//! columns is decided here once, not in an UPDATE per caller. Deployments and rollbacks follow
//! the same pattern.
//!
//! The state table itself is [`super::transition::transition`]; this adds what each event does
//! to the rest of the record.
//!
//! A job lost with its runner (its lease ran out while running: a crash, `kill -9`, a machine
//! gone) is an infrastructure failure, not the job's: it goes back to the queue on its own up to
//! [`INFRASTRUCTURE_REQUEUES`] times, after a backoff, without using the job's own `retries`.

use super::protocol::Outcome;
use super::transition::{Event, InvalidTransition, transition};
use crate::state::RunState;
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// How many times a job lost with its runner is requeued on its own.
pub const INFRASTRUCTURE_REQUEUES: i32 = 2;

/// How long the n-th infrastructure requeue waits before it may be claimed (10 s, then 30 s): a
/// runner that vanished may have taken its machine's trouble with it, or not.
pub fn infrastructure_backoff(n: i32) -> Duration {
    Duration::seconds(10 * 3_i64.pow(n.clamp(1, 4) as u32 - 1))
}

/// Everything about a job that changes as it moves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    pub state: RunState,
    /// Why it is in that state, in words.
    pub reason: Option<String>,
    /// Claims so far: 1 while the first runs.
    pub attempt: i32,
    pub max_attempts: i32,
    /// Claims that ended with the runner lost (they do not count against `retries`).
    pub infrastructure_requeues: i32,
    pub runner_id: Option<Uuid>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub exit_code: Option<i32>,
    /// Not claimable before this (the backoff after an infrastructure requeue).
    pub not_before: Option<DateTime<Utc>>,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What happened to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobEvent {
    /// Everything it needs finished well: it may be claimed.
    Ready { reason: Option<String> },
    /// It waits (or stays queued) for the reason given.
    Explain { reason: Option<String> },
    /// Something it needs failed, or no runner has its labels and it is optional.
    Skip { reason: Option<String> },
    /// A runner claimed it.
    Claim { runner: Uuid, lease: Duration },
    /// Its runner renewed the lease.
    Renew { lease: Duration },
    /// Its runner reported how the attempt ended.
    Finish {
        outcome: Outcome,
        exit_code: Option<i32>,
        reason: Option<String>,
    },
    /// Its runner stopped renewing the lease.
    LeaseExpired { runner: String },
    /// A person canceled it (or its run).
    Cancel,
    /// A person asked for it to run again.
    Rerun,
}

impl JobEvent {
    /// The state-table event this is (for the refusal's words).
    fn table_event(&self) -> Event {
        match self {
            JobEvent::Ready { .. } => Event::Ready,
            JobEvent::Explain { .. } => Event::Ready,
            JobEvent::Skip { .. } => Event::Skip,
            JobEvent::Claim { .. } => Event::Start,
            JobEvent::Renew { .. } => Event::Start,
            JobEvent::Finish { .. } | JobEvent::LeaseExpired { .. } => Event::Fail,
            JobEvent::Cancel => Event::Cancel,
            JobEvent::Rerun => Event::Rerun,
        }
    }
}

impl JobRecord {
    /// Attempts the job's own `retries` have used: its claims, less those lost with a runner.
    pub fn own_attempts(&self) -> i32 {
        self.attempt - self.infrastructure_requeues
    }

    /// The record after `event` at `now`, or why the event does not apply.
    pub fn apply(
        &self,
        event: &JobEvent,
        now: DateTime<Utc>,
    ) -> Result<JobRecord, InvalidTransition> {
        let refuse = || InvalidTransition {
            from: self.state,
            event: event.table_event(),
        };
        let to = |event: Event| transition(self.state, event);
        Ok(match event {
            JobEvent::Ready { reason } => JobRecord {
                reason: reason.clone(),
                ..self.moved(to(Event::Ready)?, now)
            },
            JobEvent::Explain { reason } => match self.state {
                RunState::Waiting | RunState::Queued => JobRecord {
                    reason: reason.clone(),
                    ..self.clone()
                },
                _ => return Err(refuse()),
            },
            JobEvent::Skip { reason } => JobRecord {
                reason: reason.clone(),
                ..self.moved(to(Event::Skip)?, now)
            },
            JobEvent::Claim { runner, lease } => JobRecord {
                attempt: self.attempt + 1,
                runner_id: Some(*runner),
                lease_expires_at: Some(now + *lease),
                reason: None,
                exit_code: None,
                not_before: None,
                started_at: Some(now),
                finished_at: None,
                ..self.moved(to(Event::Start)?, now)
            },
            JobEvent::Renew { lease } if self.state == RunState::Running => JobRecord {
                lease_expires_at: Some(now + *lease),
                ..self.clone()
            },
            JobEvent::Renew { .. } => return Err(refuse()),
            JobEvent::Finish {
                outcome,
                exit_code,
                reason,
            } => {
                let (state, reason) = match outcome {
                    Outcome::Succeeded => (to(Event::Succeed)?, None),
                    Outcome::Canceled => (to(Event::Cancel)?, Some("canceled".to_string())),
                    Outcome::Failed if self.cancel_requested => {
                        (to(Event::Cancel)?, Some("canceled".to_string()))
                    }
                    Outcome::Failed if self.own_attempts() < self.max_attempts => (
                        to(Event::Requeue)?,
                        Some(format!(
                            "retrying (attempt {} of {}): {}",
                            self.own_attempts() + 1,
                            self.max_attempts,
                            reason.as_deref().unwrap_or("failed")
                        )),
                    ),
                    Outcome::Failed => (to(Event::Fail)?, reason.clone()),
                };
                JobRecord {
                    reason,
                    exit_code: *exit_code,
                    ..self.moved(state, now)
                }
            }
            JobEvent::LeaseExpired { runner } => {
                if self.cancel_requested {
                    JobRecord {
                        reason: Some(format!("canceled ({runner} stopped answering)")),
                        ..self.moved(to(Event::Cancel)?, now)
                    }
                } else if self.infrastructure_requeues < INFRASTRUCTURE_REQUEUES {
                    let n = self.infrastructure_requeues + 1;
                    JobRecord {
                        infrastructure_requeues: n,
                        not_before: Some(now + infrastructure_backoff(n)),
                        reason: Some(format!(
                            "attempt {}: the runner of attempt {} ({runner}) stopped answering, so it runs again on its own (infrastructure retry {n} of {INFRASTRUCTURE_REQUEUES})",
                            self.attempt + 1,
                            self.attempt
                        )),
                        ..self.moved(to(Event::Requeue)?, now)
                    }
                } else if self.own_attempts() < self.max_attempts {
                    JobRecord {
                        reason: Some(format!(
                            "retrying: {runner} stopped answering (attempt {} of {})",
                            self.own_attempts() + 1,
                            self.max_attempts
                        )),
                        ..self.moved(to(Event::Requeue)?, now)
                    }
                } else {
                    JobRecord {
                        reason: Some(format!(
                            "{runner} stopped answering, as the runners of its {} earlier attempts did, and no attempts remain",
                            self.attempt - 1
                        )),
                        ..self.moved(to(Event::Fail)?, now)
                    }
                }
            }
            JobEvent::Cancel if self.state == RunState::Running => JobRecord {
                cancel_requested: true,
                reason: Some("canceling: waiting for the runner to stop it".into()),
                ..self.clone()
            },
            JobEvent::Cancel => JobRecord {
                reason: Some("canceled".into()),
                ..self.moved(to(Event::Cancel)?, now)
            },
            JobEvent::Rerun => JobRecord {
                state: to(Event::Rerun)?,
                reason: None,
                attempt: 0,
                infrastructure_requeues: 0,
                runner_id: None,
                lease_expires_at: None,
                cancel_requested: false,
                exit_code: None,
                not_before: None,
                queued_at: None,
                started_at: None,
                finished_at: None,
                max_attempts: self.max_attempts,
            },
        })
    }

    /// What entering `state` does to the times and the lease, whatever the event.
    fn moved(&self, state: RunState, now: DateTime<Utc>) -> JobRecord {
        JobRecord {
            state,
            queued_at: if state == RunState::Queued {
                Some(now)
            } else {
                self.queued_at
            },
            finished_at: if state.is_finished() {
                Some(now)
            } else {
                self.finished_at
            },
            lease_expires_at: if state == RunState::Running {
                self.lease_expires_at
            } else {
                None
            },
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-03T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn job(state: RunState) -> JobRecord {
        JobRecord {
            state,
            reason: None,
            attempt: 0,
            max_attempts: 1,
            infrastructure_requeues: 0,
            runner_id: None,
            lease_expires_at: None,
            cancel_requested: false,
            exit_code: None,
            not_before: None,
            queued_at: None,
            started_at: None,
            finished_at: None,
        }
    }

    fn claimed(max_attempts: i32) -> JobRecord {
        JobRecord {
            max_attempts,
            ..job(RunState::Queued)
        }
        .apply(
            &JobEvent::Claim {
                runner: Uuid::nil(),
                lease: Duration::seconds(30),
            },
            now(),
        )
        .unwrap()
    }

    fn lost(record: &JobRecord) -> JobRecord {
        record
            .apply(
                &JobEvent::LeaseExpired {
                    runner: "box-1".into(),
                },
                now(),
            )
            .unwrap()
    }

    #[test]
    fn a_claim_starts_an_attempt_with_a_lease_and_a_finish_ends_it() {
        let running = claimed(1);
        assert_eq!(running.state, RunState::Running);
        assert_eq!(running.attempt, 1);
        assert_eq!(running.runner_id, Some(Uuid::nil()));
        assert_eq!(
            running.lease_expires_at,
            Some(now() + Duration::seconds(30))
        );
        assert_eq!(running.started_at, Some(now()));
        let done = running
            .apply(
                &JobEvent::Finish {
                    outcome: Outcome::Succeeded,
                    exit_code: Some(0),
                    reason: None,
                },
                now(),
            )
            .unwrap();
        assert_eq!(done.state, RunState::Succeeded);
        assert_eq!(done.lease_expires_at, None, "a finished job holds no lease");
        assert_eq!(done.finished_at, Some(now()));
        assert_eq!(done.exit_code, Some(0));
    }

    #[test]
    fn a_failure_with_retries_left_goes_back_to_the_queue_and_says_which_attempt() {
        let failed = claimed(2)
            .apply(
                &JobEvent::Finish {
                    outcome: Outcome::Failed,
                    exit_code: Some(3),
                    reason: Some("step `test` exited with 3".into()),
                },
                now(),
            )
            .unwrap();
        assert_eq!(failed.state, RunState::Queued);
        assert_eq!(
            failed.reason.as_deref(),
            Some("retrying (attempt 2 of 2): step `test` exited with 3")
        );
        assert_eq!(failed.queued_at, Some(now()));
    }

    #[test]
    fn a_job_lost_with_its_runner_is_requeued_twice_on_its_own_then_uses_its_retries() {
        let first = lost(&claimed(1));
        assert_eq!(first.state, RunState::Queued);
        assert_eq!(first.infrastructure_requeues, 1);
        assert_eq!(first.not_before, Some(now() + Duration::seconds(10)));
        assert!(
            first
                .reason
                .as_deref()
                .unwrap()
                .starts_with("attempt 2: the runner of attempt 1 (box-1) stopped answering"),
            "{:?}",
            first.reason
        );
        let claim = JobEvent::Claim {
            runner: Uuid::nil(),
            lease: Duration::seconds(30),
        };
        let second = lost(&first.apply(&claim, now()).unwrap());
        assert_eq!(second.infrastructure_requeues, 2);
        assert_eq!(second.not_before, Some(now() + Duration::seconds(30)));
        assert_eq!(second.own_attempts(), 0, "no retry of its own used");
        let third = lost(&second.apply(&claim, now()).unwrap());
        assert_eq!(third.state, RunState::Failed, "no retries of its own");
        assert!(third.reason.unwrap().contains("no attempts remain"));
    }

    #[test]
    fn with_retries_of_its_own_a_lost_job_uses_them_after_the_infrastructure_requeues() {
        let claim = JobEvent::Claim {
            runner: Uuid::nil(),
            lease: Duration::seconds(30),
        };
        let mut record = claimed(2);
        for _ in 0..INFRASTRUCTURE_REQUEUES {
            record = lost(&record).apply(&claim, now()).unwrap();
        }
        let retried = lost(&record);
        assert_eq!(retried.state, RunState::Queued);
        assert_eq!(
            retried.reason.as_deref(),
            Some("retrying: box-1 stopped answering (attempt 2 of 2)")
        );
    }

    #[test]
    fn canceling_a_running_job_asks_its_runner_and_canceling_a_queued_one_ends_it() {
        let asked = claimed(1).apply(&JobEvent::Cancel, now()).unwrap();
        assert_eq!(asked.state, RunState::Running);
        assert!(asked.cancel_requested);
        let ended = lost(&asked);
        assert_eq!(ended.state, RunState::Canceled);
        let queued = job(RunState::Queued)
            .apply(&JobEvent::Cancel, now())
            .unwrap();
        assert_eq!(queued.state, RunState::Canceled);
        assert_eq!(queued.finished_at, Some(now()));
        assert!(
            job(RunState::Succeeded)
                .apply(&JobEvent::Cancel, now())
                .is_err()
        );
    }

    #[test]
    fn a_rerun_starts_the_job_afresh() {
        let failed = JobRecord {
            attempt: 3,
            infrastructure_requeues: 2,
            exit_code: Some(1),
            finished_at: Some(now()),
            ..job(RunState::Failed)
        };
        let again = failed.apply(&JobEvent::Rerun, now()).unwrap();
        assert_eq!(
            again,
            JobRecord {
                max_attempts: 1,
                ..job(RunState::Waiting)
            }
        );
        assert!(
            job(RunState::Running)
                .apply(&JobEvent::Rerun, now())
                .is_err()
        );
    }

    #[test]
    fn a_lease_is_renewed_only_while_running() {
        let running = claimed(1);
        let later = now() + Duration::seconds(10);
        let renewed = running
            .apply(
                &JobEvent::Renew {
                    lease: Duration::seconds(30),
                },
                later,
            )
            .unwrap();
        assert_eq!(
            renewed.lease_expires_at,
            Some(later + Duration::seconds(30))
        );
        assert!(
            job(RunState::Queued)
                .apply(
                    &JobEvent::Renew {
                        lease: Duration::seconds(30)
                    },
                    later
                )
                .is_err()
        );
    }
}
