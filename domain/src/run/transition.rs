//! The one place job states change: a pure function from a state and an event to the next
//! state, or a refusal. The store saves what it returns, stamped with the server's clock (never a
//! runner's). Runs and stages have no events of their own: their state is derived from their
//! jobs by [`aggregate`].

use crate::state::RunState;

/// What happened to a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Everything it needs has finished well: it may be claimed.
    Ready,
    /// A runner claimed it.
    Start,
    /// Its steps all exited 0.
    Succeed,
    /// A step failed, it timed out, or its runner vanished with no attempts left.
    Fail,
    /// Its attempt ended without success but attempts remain (a failure with retries left, or a
    /// runner whose lease ran out): back in the queue.
    Requeue,
    /// Something it needs failed, or it is optional and no runner has its labels.
    Skip,
    /// A person canceled it or its run.
    Cancel,
    /// A person asked for it to run again.
    Rerun,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {} job cannot {}", from.as_str(), event_verb(*event))]
pub struct InvalidTransition {
    pub from: RunState,
    pub event: Event,
}

fn event_verb(event: Event) -> &'static str {
    match event {
        Event::Ready => "become ready",
        Event::Start => "start",
        Event::Succeed => "succeed",
        Event::Fail => "fail",
        Event::Requeue => "go back to the queue",
        Event::Skip => "be skipped",
        Event::Cancel => "be canceled",
        Event::Rerun => "run again",
    }
}

/// The next state of a job, or why the event does not apply.
pub fn transition(from: RunState, event: Event) -> Result<RunState, InvalidTransition> {
    use Event::*;
    use RunState::*;
    let to = match (from, event) {
        (Waiting, Ready) => Queued,
        (Queued, Start) => Running,
        (Running, Succeed) => Succeeded,
        (Running, Fail) => Failed,
        (Running, Requeue) => Queued,
        (Waiting | Queued, Skip) => Skipped,
        (Waiting | Queued | Running, Cancel) => Canceled,
        (Failed | Canceled | Skipped, Rerun) => Waiting,
        _ => return Err(InvalidTransition { from, event }),
    };
    Ok(to)
}

/// A job's state as a stage or run sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    pub state: RunState,
    /// A failure that does not fail the stage (`allow_failure`).
    pub allow_failure: bool,
}

/// The state of a stage or run from its jobs: running while anything runs or has finished with
/// more to come; finished when all are, failed if any job failed that may not, canceled if any
/// was canceled, skipped if all were, succeeded otherwise.
pub fn aggregate(members: &[Member]) -> RunState {
    use RunState::*;
    if members.is_empty() {
        return Skipped;
    }
    let all_finished = members.iter().all(|m| m.state.is_finished());
    if all_finished {
        return if members
            .iter()
            .any(|m| m.state == Failed && !m.allow_failure)
        {
            Failed
        } else if members.iter().any(|m| m.state == Canceled) {
            Canceled
        } else if members.iter().all(|m| m.state == Skipped) {
            Skipped
        } else {
            Succeeded
        };
    }
    let started = members
        .iter()
        .any(|m| m.state == Running || m.state.is_finished());
    if started {
        Running
    } else if members.iter().any(|m| m.state == Queued) {
        Queued
    } else {
        Waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunState::*;

    const STATES: [RunState; 7] = [
        Queued, Running, Waiting, Succeeded, Failed, Canceled, Skipped,
    ];
    const EVENTS: [Event; 8] = [
        Event::Ready,
        Event::Start,
        Event::Succeed,
        Event::Fail,
        Event::Requeue,
        Event::Skip,
        Event::Cancel,
        Event::Rerun,
    ];

    /// Every allowed transition; everything else must be refused.
    const ALLOWED: [(RunState, Event, RunState); 13] = [
        (Waiting, Event::Ready, Queued),
        (Queued, Event::Start, Running),
        (Running, Event::Succeed, Succeeded),
        (Running, Event::Fail, Failed),
        (Running, Event::Requeue, Queued),
        (Waiting, Event::Skip, Skipped),
        (Queued, Event::Skip, Skipped),
        (Waiting, Event::Cancel, Canceled),
        (Queued, Event::Cancel, Canceled),
        (Running, Event::Cancel, Canceled),
        (Failed, Event::Rerun, Waiting),
        (Canceled, Event::Rerun, Waiting),
        (Skipped, Event::Rerun, Waiting),
    ];

    #[test]
    fn every_allowed_transition_goes_where_it_should_and_every_other_is_refused() {
        let mut refused = 0;
        for from in STATES {
            for event in EVENTS {
                let expected = ALLOWED
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                match (transition(from, event), expected) {
                    (Ok(to), Some(want)) => assert_eq!(to, want, "{from:?} + {event:?}"),
                    (Err(error), None) => {
                        assert_eq!(error, InvalidTransition { from, event });
                        refused += 1;
                    }
                    (got, want) => panic!("{from:?} + {event:?}: got {got:?}, expected {want:?}"),
                }
            }
        }
        assert_eq!(refused, STATES.len() * EVENTS.len() - ALLOWED.len());
    }

    #[test]
    fn a_refusal_reads_as_a_sentence() {
        let error = transition(Succeeded, Event::Start).unwrap_err();
        assert_eq!(error.to_string(), "a succeeded job cannot start");
    }

    fn m(state: RunState) -> Member {
        Member {
            state,
            allow_failure: false,
        }
    }

    #[test]
    fn a_stage_is_running_once_anything_started_and_finished_when_all_are() {
        assert_eq!(aggregate(&[m(Waiting), m(Waiting)]), Waiting);
        assert_eq!(aggregate(&[m(Queued), m(Waiting)]), Queued);
        assert_eq!(aggregate(&[m(Succeeded), m(Waiting)]), Running);
        assert_eq!(aggregate(&[m(Running), m(Queued)]), Running);
        assert_eq!(aggregate(&[m(Succeeded), m(Succeeded)]), Succeeded);
        assert_eq!(aggregate(&[m(Succeeded), m(Skipped)]), Succeeded);
        assert_eq!(aggregate(&[m(Skipped), m(Skipped)]), Skipped);
        assert_eq!(aggregate(&[]), Skipped);
    }

    #[test]
    fn failures_fail_the_stage_unless_allowed_and_cancellation_shows() {
        assert_eq!(aggregate(&[m(Succeeded), m(Failed)]), Failed);
        let allowed = Member {
            state: Failed,
            allow_failure: true,
        };
        assert_eq!(aggregate(&[m(Succeeded), allowed]), Succeeded);
        assert_eq!(aggregate(&[m(Succeeded), m(Canceled)]), Canceled);
        assert_eq!(aggregate(&[m(Failed), m(Canceled)]), Failed);
    }
}
