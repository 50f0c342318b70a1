//! Durations as written in a definition: `45s`, `10m`, `4h`, `1h30m`, `1d`.

use std::time::Duration;

/// A duration that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}` is not a duration; write numbers with units (d, h, m, s) from largest to smallest, \
     like `45s`, `10m` or `1h30m`"
)]
pub struct InvalidDuration(pub String);

/// Units from largest to smallest, with their length in seconds.
const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];

/// Reads a duration made of `<number><unit>` parts, units from largest to smallest, each at
/// most once. A bare number is refused: `timeout: 10` could mean seconds or minutes. Zero is
/// refused too, since every duration in a definition is a limit or a window.
pub fn parse_duration(text: &str) -> Result<Duration, InvalidDuration> {
    let invalid = || InvalidDuration(text.to_string());
    let mut rest = text.trim();
    let mut next_unit = 0;
    let mut seconds: u64 = 0;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(invalid)?;
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        let unit = rest[digits..].chars().next().ok_or_else(invalid)?;
        let position = UNITS[next_unit..]
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(invalid)?;
        let (_, scale) = UNITS[next_unit + position];
        seconds = number
            .checked_mul(scale)
            .and_then(|s| seconds.checked_add(s))
            .ok_or_else(invalid)?;
        next_unit += position + 1;
        rest = &rest[digits + unit.len_utf8()..];
    }
    if seconds == 0 {
        return Err(invalid());
    }
    Ok(Duration::from_secs(seconds))
}

/// Writes a duration the way a definition does: `1h30m`, `45s`; zero is `0s`.
pub fn format_duration(duration: Duration) -> String {
    let mut seconds = duration.as_secs();
    if seconds == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, scale) in UNITS {
        if seconds >= scale {
            out.push_str(&format!("{}{unit}", seconds / scale));
            seconds %= scale;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_combine_units_from_largest_to_smallest() {
        assert_eq!(parse_duration("45s"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("1d2h"), Ok(Duration::from_secs(93_600)));
        assert_eq!(format_duration(Duration::from_secs(5_400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(93_601)), "1d2h1s");
    }

    #[test]
    fn bare_numbers_zero_and_unordered_units_are_refused() {
        for bad in [
            "",
            "10",
            "0m",
            "m",
            "30m1h",
            "1h1h",
            "10 minutes",
            "1.5h",
            "-1m",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
