//! Durations as the rules and processes write them: calendar time (`10min`, `24h`), business
//! time measured on the calendar (`3 workdays`, `4 workhours`) and calendar months.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Span {
    /// Wall-clock milliseconds.
    Millis(u64),
    /// Working time, in minutes, consumed only inside working hours.
    WorkMinutes(u64),
    /// Whole working days: due at close of business on the Nth working day after the start day.
    WorkDays(u32),
    /// Calendar months (same day of month, clamped to the month's end).
    Months(u32),
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Span::Millis(ms) if ms % 86_400_000 == 0 => write!(f, "{}d", ms / 86_400_000),
            Span::Millis(ms) if ms % 3_600_000 == 0 => write!(f, "{}h", ms / 3_600_000),
            Span::Millis(ms) if ms % 60_000 == 0 => write!(f, "{}min", ms / 60_000),
            Span::Millis(ms) if ms % 1_000 == 0 => write!(f, "{}s", ms / 1_000),
            Span::Millis(ms) => write!(f, "{ms}ms"),
            Span::WorkMinutes(m) if m % 60 == 0 => write!(f, "{} workhours", m / 60),
            Span::WorkMinutes(m) => write!(f, "{m} workminutes"),
            Span::WorkDays(d) => write!(f, "{d} workdays"),
            Span::Months(m) => write!(f, "{m} months"),
        }
    }
}

/// Parses `10min`, `24h`, `3 workdays`, `4 workhours`, `1 month`, `6 months`.
pub fn parse(text: &str) -> Result<Span, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    if digits == 0 {
        return Err(format!("`{text}` is not a duration: it must start with a number, e.g. `10min`"));
    }
    let n: u64 = t[..digits].parse().map_err(|_| format!("`{text}`: the number is too large"))?;
    let unit = t[digits..].trim();
    let ms = |factor: u64| n.checked_mul(factor).map(Span::Millis).ok_or(format!("`{text}` is too long"));
    let small = |n: u64| u32::try_from(n).map_err(|_| format!("`{text}` is too long"));
    match unit {
        "ms" => Ok(Span::Millis(n)),
        "s" | "second" | "seconds" => ms(1_000),
        "m" | "min" | "minute" | "minutes" => ms(60_000),
        "h" | "hour" | "hours" => ms(3_600_000),
        "d" | "day" | "days" => ms(86_400_000),
        "w" | "week" | "weeks" => ms(7 * 86_400_000),
        "workhour" | "workhours" => n.checked_mul(60).map(Span::WorkMinutes).ok_or(format!("`{text}` is too long")),
        "workday" | "workdays" => Ok(Span::WorkDays(small(n)?)),
        "month" | "months" => Ok(Span::Months(small(n)?)),
        "" => Err(format!("`{text}` has no unit: write e.g. `{n}min`, `{n}h`, `{n} workdays`")),
        other => Err(format!("`{other}` is not a duration unit (ms, s, min, h, d, w, workhours, workdays, months)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse("10min"), Ok(Span::Millis(600_000)));
        assert_eq!(parse("24h"), Ok(Span::Millis(86_400_000)));
        assert_eq!(parse(" 3 workdays "), Ok(Span::WorkDays(3)));
        assert_eq!(parse("4 workhours"), Ok(Span::WorkMinutes(240)));
        assert_eq!(parse("1 month"), Ok(Span::Months(1)));
        assert_eq!(parse("2w"), Ok(Span::Millis(14 * 86_400_000)));
        assert!(parse("soon").is_err());
        assert!(parse("10").unwrap_err().contains("no unit"));
        assert!(parse("10 fortnights").unwrap_err().contains("not a duration unit"));
        assert!(parse("99999999999999999999d").is_err());
        assert!(parse("9999999999999999d").is_err());
    }

    #[test]
    fn displays_canonically() {
        for s in ["10min", "1d", "3 workdays", "4 workhours", "6 months", "2d", "1500ms"] {
            assert_eq!(parse(s).unwrap().to_string(), s);
        }
    }
}
