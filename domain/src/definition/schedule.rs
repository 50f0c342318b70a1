//! Cron expressions in a time zone: schedules and deploy windows.
//!
//! Times are computed by croner on `DateTime<Tz>`, so they follow the zone's daylight saving
//! rules: a time that falls in the spring-forward gap fires at the first minute after it
//! (02:30 becomes 03:00), and a time in the repeated autumn hour fires once.

use std::fmt;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use super::model::{DeployWindow, Schedule};

/// A five-field cron expression (`minute hour day-of-month month day-of-week`) or a nickname
/// such as `@daily`, kept with the text it was written as.
#[derive(Debug, Clone, PartialEq)]
pub struct CronExpr {
    source: String,
    cron: Cron,
}

/// A cron expression that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{source_text}` is not a valid cron expression: {reason}")]
pub struct InvalidCron {
    pub source_text: String,
    pub reason: String,
}

impl CronExpr {
    /// Fields of a cron expression, in order.
    const FIELDS: &'static str = "minute, hour, day of month, month and day of week";

    pub fn parse(text: &str) -> Result<Self, InvalidCron> {
        let invalid = |reason: String| InvalidCron {
            source_text: text.to_string(),
            reason,
        };
        let fields = text.split_whitespace().count();
        if !text.trim_start().starts_with('@') && fields != 5 {
            return Err(invalid(format!(
                "it has {fields} field{}, but a cron expression has 5 ({}), like `0 18 * * *`",
                if fields == 1 { "" } else { "s" },
                Self::FIELDS
            )));
        }
        if let Some(reason) = out_of_range(text) {
            return Err(invalid(reason));
        }
        // Minute precision: the scheduler ticks once a minute, so a seconds field is refused.
        let parser = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(text).map_err(|e| invalid(croner_reason(&e)))?;
        Ok(CronExpr {
            source: text.to_string(),
            cron,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn cron(&self) -> &Cron {
        &self.cron
    }

    /// An English description, such as "At 02:00, on Sunday.".
    pub fn describe(&self) -> String {
        self.cron.describe()
    }

    /// The first `n` firings strictly after `after`, in `zone`.
    pub fn next_in(&self, zone: Tz, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        let mut times = Vec::with_capacity(n);
        let mut cursor = after.with_timezone(&zone);
        while times.len() < n {
            // An error means no further match before the year 5000.
            let Ok(next) = self.cron.find_next_occurrence(&cursor, false) else {
                break;
            };
            times.push(next);
            cursor = next;
        }
        times
    }

    /// The last firing at or before `at`, in `zone`.
    pub fn previous_in(&self, zone: Tz, at: DateTime<Utc>) -> Option<DateTime<Tz>> {
        self.cron
            .find_previous_occurrence(&at.with_timezone(&zone), true)
            .ok()
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// The first number outside its field's range, named by field ("hour 25 is out of range
/// 0–23"), where croner would only say "number out of bounds". Steps (`*/90`) are croner's.
fn out_of_range(text: &str) -> Option<String> {
    const RANGES: [(&str, u32, u32); 5] = [
        ("minute", 0, 59),
        ("hour", 0, 23),
        ("day of month", 1, 31),
        ("month", 1, 12),
        ("day of week", 0, 7),
    ];
    if text.trim_start().starts_with('@') {
        return None;
    }
    for (field, (name, low, high)) in text.split_whitespace().zip(RANGES) {
        for part in field.split(',') {
            let range = part.split('/').next().unwrap_or(part);
            for number in range.split('-') {
                if let Ok(n) = number.parse::<u32>()
                    && !(low..=high).contains(&n)
                {
                    return Some(format!("{name} {n} is out of range {low}–{high}"));
                }
            }
        }
    }
    None
}

/// croner's message, as the end of our sentence.
fn croner_reason(error: &croner::errors::CronError) -> String {
    use croner::errors::CronError;
    let text = match error {
        CronError::InvalidPattern(m) | CronError::ComponentError(m) => m.clone(),
        CronError::IllegalCharacters(m) => m.replace("CronPattern contains", "it contains"),
        other => other.to_string(),
    };
    let text = text.trim_end_matches('.');
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => "it cannot be read".to_string(),
    }
}

impl Schedule {
    /// The next `n` times this schedule fires after `after`, in the schedule's time zone.
    pub fn next_fire_times(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Tz>> {
        self.cron.next_in(self.timezone, after, n)
    }
}

impl DeployWindow {
    /// The window that contains `at`, as its opening and closing times.
    pub fn open_at(&self, at: DateTime<Utc>) -> Option<(DateTime<Tz>, DateTime<Tz>)> {
        let opened = self.opens.previous_in(self.timezone, at)?;
        let closes = opened + chrono::Duration::from_std(self.duration).ok()?;
        (at < closes).then_some((opened, closes))
    }

    pub fn is_open(&self, at: DateTime<Utc>) -> bool {
        self.open_at(at).is_some()
    }

    /// When the window next opens after `after`.
    pub fn next_opening(&self, after: DateTime<Utc>) -> Option<DateTime<Tz>> {
        self.opens.next_in(self.timezone, after, 1).pop()
    }
}

#[cfg(test)]
mod tests {
    use super::CronExpr;

    #[test]
    fn a_number_out_of_its_fields_range_is_named_with_the_field_and_the_range() {
        let reason = |text: &str| CronExpr::parse(text).unwrap_err().reason;
        assert_eq!(reason("0 25 * * *"), "hour 25 is out of range 0–23");
        assert_eq!(reason("61 2 * * *"), "minute 61 is out of range 0–59");
        assert_eq!(reason("0 2 0 * *"), "day of month 0 is out of range 1–31");
        assert_eq!(reason("0 2 * 1-13 *"), "month 13 is out of range 1–12");
        assert_eq!(reason("0 2 * * 1,8"), "day of week 8 is out of range 0–7");
        assert!(CronExpr::parse("*/15 0-23 1 1-12 0,7").is_ok());
        assert!(CronExpr::parse("0 2 * * SUN").is_ok());
    }
}
