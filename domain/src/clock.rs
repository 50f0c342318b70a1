//! The time everything time-driven reads: job leases and their reaper, waiting flag changes, and
//! (next) schedules, deploy windows and health windows. Passed in rather than read from the
//! system, so tests move time forward instead of sleeping through it, and so "is the lease
//! over?" and "is the change due?" are asked of the same clock that set them.
//!
//! Times stored for people to read (when a run started, when an entry was audited) keep the
//! database's `now()`: they decide nothing.

use chrono::{DateTime, Duration, Utc};
use std::fmt;
use std::sync::{Arc, Mutex};

/// A source of the current time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// What every service holds.
pub type SharedClock = Arc<dyn Clock>;

/// The system's clock: what servers run with.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that moves only when told: for tests, which advance it past a lease or a scheduled
/// time and then check the outcome.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    /// Starts at the system's time now.
    pub fn new() -> Arc<ManualClock> {
        Arc::new(ManualClock(Mutex::new(Utc::now())))
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *now += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new();
        let start = clock.now();
        assert_eq!(clock.now(), start);
        clock.advance(Duration::seconds(31));
        assert_eq!(clock.now() - start, Duration::seconds(31));
    }
}
