//! Schedules firing: each tick of a schedule of a project's current definition, exactly once
//! across every server process, with what it did recorded.
//!
//! ## Which ticks are due
//! Every replica's scheduler looks every second (on the portal's clock) at each schedule of
//! each project's current definition. A schedule's ticks are the instants its cron expression
//! names in its time zone (croner on `DateTime<Tz>`, see [`crate::definition::CronExpr`]), after
//! the schedule's latest recorded tick, or — for a schedule no tick was recorded for yet — after
//! the moment a scheduler first saw it (`schedule_since`), so a new schedule never fires its past.
//!
//! Daylight saving time: a wall-clock time that does not exist (02:00–02:59 on the spring-forward
//! day in Europe/Berlin) fires at the first instant after the gap, 03:00 in the new offset, once;
//! a wall-clock time that happens twice (02:00–02:59 on the autumn-back day) fires once, at its
//! first occurrence (the summer-time one). Both are croner's behaviour, pinned by the tests below.
//!
//! ## Exactly once
//! A replica claims a due tick by inserting its row (`on conflict do nothing returning`): only
//! the replica whose insert returns the row acts. `promote` and `Runs::start` open their own
//! transactions, so the claim commits first, then the action runs, then its outcome is written.
//! A replica that dies between the claim and the outcome leaves the tick `claimed`: the page
//! shows it, and it is never fired again. The action also carries the idempotency key
//! `schedule:<name>:<due instant, RFC 3339>`, so a deployment or run is never made twice for one
//! tick.
//!
//! ## Missed ticks (every server was down)
//! When the scheduler finds more than one tick due for a schedule — every server was down across
//! them — it fires once, for the most recent one, late (its lateness recorded and shown), and
//! records the older ones as `missed` without firing them. Deploying last Tuesday's release on
//! Thursday morning because Tuesday's tick was missed would only be undone by Wednesday's.
//!
//! ## Alerts
//! A tick fired more than [`LATE_AFTER`] after its instant, or one whose action failed, raises an
//! alert: `alerted` on its row, an audit entry (`schedule.late` or `schedule.failed`), and the
//! overview's schedule card shows it. A promotion that finds nothing to do (the newest eligible
//! release already runs there, none is eligible, or a deployment is still under way in the
//! environment — say, waiting at a gate) is `nothing-to-do` with the reason: it is the pipeline
//! working as configured, not a failure.

pub mod store;

use crate::definition::Schedule;
use chrono::{DateTime, Duration, Utc};

/// A tick fired later than this after its instant raises an alert.
pub const LATE_AFTER: Duration = Duration::seconds(60);

/// How many missed ticks are recorded one by one at most (a schedule every minute with the
/// servers down for a month would otherwise write 43 200 rows); older ones are not listed.
const MAX_MISSED: usize = 1000;

/// What became of a tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickOutcome {
    /// A replica claimed it and is acting, or stopped between the claim and the outcome.
    Claimed,
    /// It started a deployment or a run.
    Started,
    /// It had nothing to do, and says why.
    NothingToDo,
    /// The schedule is paused.
    SkippedPaused,
    /// Its action failed (the error is the detail).
    Failed,
    /// Every server was down at its instant, and a later tick fired instead.
    Missed,
}

impl TickOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            TickOutcome::Claimed => "claimed",
            TickOutcome::Started => "started",
            TickOutcome::NothingToDo => "nothing-to-do",
            TickOutcome::SkippedPaused => "skipped-paused",
            TickOutcome::Failed => "failed",
            TickOutcome::Missed => "missed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "claimed" => TickOutcome::Claimed,
            "started" => TickOutcome::Started,
            "nothing-to-do" => TickOutcome::NothingToDo,
            "skipped-paused" => TickOutcome::SkippedPaused,
            "failed" => TickOutcome::Failed,
            "missed" => TickOutcome::Missed,
            _ => return None,
        })
    }
}

/// The ticks of one schedule due now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Due {
    /// The tick to fire: the most recent one due.
    pub fire: Option<DateTime<Utc>>,
    /// Older ticks due too, which are recorded as missed without firing.
    pub missed: Vec<DateTime<Utc>>,
}

/// The ticks of `schedule` after `after` and at or before `now`. Pure.
pub fn due(schedule: &Schedule, after: DateTime<Utc>, now: DateTime<Utc>) -> Due {
    let mut ticks: Vec<DateTime<Utc>> = Vec::new();
    let mut cursor = after;
    while let Some(next) = schedule.next_fire_times(cursor, 1).pop() {
        let next = next.with_timezone(&Utc);
        if next > now {
            break;
        }
        ticks.push(next);
        cursor = next;
        if ticks.len() > MAX_MISSED {
            ticks.remove(0);
        }
    }
    let fire = ticks.pop();
    Due {
        fire,
        missed: ticks,
    }
}

/// The next instant any of `schedules` fires after `now` (the scheduler sleeps until then when
/// it is less than its polling interval away).
pub fn next_instant<'a>(
    schedules: impl IntoIterator<Item = &'a Schedule>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    schedules
        .into_iter()
        .filter_map(|s| s.next_fire_times(now, 1).pop())
        .map(|t| t.with_timezone(&Utc))
        .min()
}

/// The idempotency key a tick's action carries.
pub fn idempotency_key(schedule: &str, due_at: DateTime<Utc>) -> String {
    format!(
        "schedule:{schedule}:{}",
        due_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::{CronExpr, ScheduleAction};
    use chrono::TimeZone;
    use chrono_tz::Europe::Berlin;

    fn schedule(cron: &str) -> Schedule {
        Schedule {
            name: "s".parse().unwrap(),
            cron: CronExpr::parse(cron).unwrap(),
            timezone: Berlin,
            action: ScheduleAction::Run {
                branch: "main".into(),
            },
            description: None,
        }
    }

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, 0).unwrap()
    }

    #[test]
    fn a_time_in_the_spring_forward_gap_fires_once_at_the_first_instant_after_it() {
        // 2027-03-28: Berlin's clocks go from 02:00 CET to 03:00 CEST.
        let sunday = schedule("0 2 * * SUN");
        let fires: Vec<_> = sunday
            .next_fire_times(utc(2027, 3, 27, 0, 0), 2)
            .into_iter()
            .map(|t| t.with_timezone(&Utc))
            .collect();
        assert_eq!(fires, vec![utc(2027, 3, 28, 1, 0), utc(2027, 4, 4, 0, 0)]);
        let half_past = schedule("30 2 * * *");
        let fires: Vec<_> = half_past
            .next_fire_times(utc(2027, 3, 27, 12, 0), 2)
            .into_iter()
            .map(|t| t.with_timezone(&Utc))
            .collect();
        // 02:30 CEST does not exist on the 28th: 03:00 CEST (01:00 UTC); then 02:30 CEST.
        assert_eq!(fires, vec![utc(2027, 3, 28, 1, 0), utc(2027, 3, 29, 0, 30)]);
    }

    #[test]
    fn a_time_in_the_repeated_autumn_hour_fires_once() {
        // 2027-10-31: Berlin's clocks go from 03:00 CEST back to 02:00 CET.
        let fires: Vec<_> = schedule("30 2 * * *")
            .next_fire_times(utc(2027, 10, 30, 12, 0), 2)
            .into_iter()
            .map(|t| t.with_timezone(&Utc))
            .collect();
        assert_eq!(
            fires,
            vec![utc(2027, 10, 31, 0, 30), utc(2027, 11, 1, 1, 30)]
        );
    }

    #[test]
    fn when_several_ticks_are_due_the_newest_fires_and_the_older_are_missed() {
        let daily = schedule("0 18 * * *");
        let due = due(&daily, utc(2027, 3, 22, 0, 0), utc(2027, 3, 25, 9, 0));
        assert_eq!(due.fire, Some(utc(2027, 3, 24, 17, 0)));
        assert_eq!(
            due.missed,
            vec![utc(2027, 3, 22, 17, 0), utc(2027, 3, 23, 17, 0)]
        );
    }

    #[test]
    fn a_tick_at_the_instant_now_is_due_and_one_after_it_is_not() {
        let daily = schedule("0 18 * * *");
        let at = utc(2027, 3, 22, 17, 0);
        assert_eq!(due(&daily, at - Duration::minutes(1), at).fire, Some(at));
        assert_eq!(due(&daily, at, at), Due::default());
        assert_eq!(
            due(&daily, at - Duration::minutes(1), at - Duration::seconds(1)),
            Due::default()
        );
    }

    #[test]
    fn idempotency_keys_name_the_schedule_and_the_instant_in_utc() {
        assert_eq!(
            idempotency_key("staging", utc(2027, 3, 22, 17, 0)),
            "schedule:staging:2027-03-22T17:00:00Z"
        );
    }
}
