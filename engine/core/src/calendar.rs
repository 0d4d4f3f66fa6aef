//! The business calendar: working hours per weekday, public holidays, make-up working days
//! (China moves weekend days around its holidays), in one time zone.
//!
//! Pure arithmetic on instants: no clock is read here. Definitions (documented in
//! `docs/rules.md`):
//! - `N workhours` from `t`: `t` plus N hours of working time, counted only inside working
//!   periods. A start outside working hours starts counting at the next opening.
//! - `N workdays` from `t`: close of business on the Nth working day after `t`'s local date
//!   ("within 3 working days" / 3个工作日内: the day of receipt does not count).
//! - Months: the same local date and time N months later (clamped to the month's end).

use crate::duration::Span;
use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use std::collections::BTreeSet;

/// How far ahead the calendar looks for working time before giving up (a calendar that is
/// all holidays for ten years is a configuration error the rules check reports).
pub const SEARCH_DAYS_MAX: u32 = 3_660;

/// A working period within one local day, `start < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Period {
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl std::fmt::Display for Period {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start.format("%H:%M"), self.end.format("%H:%M"))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BusinessCalendar {
    pub time_zone: Tz,
    /// Working periods per weekday, Monday first; sorted and non-overlapping.
    pub week: [Vec<Period>; 7],
    pub holidays: BTreeSet<NaiveDate>,
    /// Days worked although they fall on a weekend; they follow `makeup_schedule`.
    pub makeup_workdays: BTreeSet<NaiveDate>,
    pub makeup_schedule: Weekday,
    /// The last day the holidays and make-up days are known for (the official schedule is
    /// published a year at a time). Past it, every weekday counts as a working day, which may
    /// be wrong: deadlines that fall there are flagged. `None`: not said (no holidays at all).
    pub covered_through: Option<NaiveDate>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no working time in the {SEARCH_DAYS_MAX} days after {from}: check the calendar's hours and holidays")]
pub struct NoWorkingTime {
    pub from: DateTime<Utc>,
}

impl BusinessCalendar {
    /// Midnight at the start of a local date, as an instant.
    pub fn date_start(&self, d: NaiveDate) -> DateTime<Utc> {
        let midnight: NaiveDateTime = d.and_hms_opt(0, 0, 0).expect("midnight exists");
        self.time_zone
            .from_local_datetime(&midnight)
            .earliest()
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_else(|| Utc.from_utc_datetime(&midnight))
    }

    /// How the calendar's known holidays stand at `now`: the last day covered, the days left
    /// (negative once past), and a word for it (`ok`, `ending` within 60 days, `ended`).
    pub fn coverage(&self, now: DateTime<Utc>) -> Option<(NaiveDate, i64, &'static str)> {
        let last = self.covered_through?;
        let days = (last - now.with_timezone(&self.time_zone).date_naive()).num_days();
        Some((
            last,
            days,
            if days < 0 {
                "ended"
            } else if days <= 60 {
                "ending"
            } else {
                "ok"
            },
        ))
    }

    /// Whether the local date of `t` lies past the days the calendar knows the holidays of.
    pub fn beyond_coverage(&self, t: DateTime<Utc>) -> bool {
        self.covered_through.is_some_and(|last| t.with_timezone(&self.time_zone).date_naive() > last)
    }

    /// Mon–Fri 09:00–12:00 and 13:30–18:00 in Asia/Shanghai, no holidays: the default until
    /// rules say otherwise.
    pub fn standard_china() -> Self {
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).expect("valid constant time");
        let day = vec![Period { start: t(9, 0), end: t(12, 0) }, Period { start: t(13, 30), end: t(18, 0) }];
        BusinessCalendar {
            time_zone: chrono_tz::Asia::Shanghai,
            week: [day.clone(), day.clone(), day.clone(), day.clone(), day, Vec::new(), Vec::new()],
            holidays: BTreeSet::new(),
            makeup_workdays: BTreeSet::new(),
            makeup_schedule: Weekday::Mon,
            covered_through: None,
        }
    }

    /// The working periods of a local date.
    pub fn periods(&self, date: NaiveDate) -> &[Period] {
        if self.holidays.contains(&date) {
            &[]
        } else if self.makeup_workdays.contains(&date) {
            &self.week[self.makeup_schedule.num_days_from_monday() as usize]
        } else {
            &self.week[date.weekday().num_days_from_monday() as usize]
        }
    }

    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        !self.periods(date).is_empty()
    }

    fn local_date(&self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.time_zone).date_naive()
    }

    /// A local wall-clock time as an instant. In a DST gap the time does not exist: take the
    /// first instant after the gap. In an overlap take the earlier instant.
    fn instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
        match self.time_zone.from_local_datetime(&local) {
            LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
            LocalResult::None => {
                // Gaps are at most a few hours; walk forward a minute at a time.
                let mut probe = local;
                for _ in 0..(24 * 60) {
                    probe += Duration::minutes(1);
                    if let Some(t) = self.time_zone.from_local_datetime(&probe).earliest() {
                        return t.with_timezone(&Utc);
                    }
                }
                Utc.from_utc_datetime(&local)
            }
        }
    }

    /// Working periods of a local date as instants.
    fn periods_utc(&self, date: NaiveDate) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> + '_ {
        self.periods(date)
            .iter()
            .map(move |p| (self.instant(date.and_time(p.start)), self.instant(date.and_time(p.end))))
    }

    /// `t` plus a span, on this calendar.
    pub fn add(&self, t: DateTime<Utc>, span: Span) -> Result<DateTime<Utc>, NoWorkingTime> {
        match span {
            Span::Millis(ms) => Ok(t + Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX / 2))),
            Span::WorkMinutes(minutes) => self.add_working_time(t, Duration::minutes(minutes as i64)),
            Span::WorkDays(days) => self.add_workdays(t, days),
            Span::Months(months) => {
                let local = t.with_timezone(&self.time_zone).naive_local();
                let later = local.checked_add_months(chrono::Months::new(months)).unwrap_or(NaiveDateTime::MAX);
                Ok(self.instant(later))
            }
        }
    }

    /// Subtracts a span (for `until install_date - 1 workday`): the mirror of `add`.
    pub fn subtract(&self, t: DateTime<Utc>, span: Span) -> Result<DateTime<Utc>, NoWorkingTime> {
        match span {
            Span::Millis(ms) => Ok(t - Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX / 2))),
            Span::WorkMinutes(minutes) => self.subtract_working_time(t, Duration::minutes(minutes as i64)),
            Span::WorkDays(days) => {
                // Opening of the Nth working day before t's date.
                let mut date = self.local_date(t);
                let mut left = days;
                for _ in 0..SEARCH_DAYS_MAX {
                    if left == 0 {
                        break;
                    }
                    date = date.pred_opt().ok_or(NoWorkingTime { from: t })?;
                    if self.is_working_day(date) {
                        left -= 1;
                    }
                }
                if left > 0 {
                    return Err(NoWorkingTime { from: t });
                }
                if days == 0 {
                    return Ok(t);
                }
                Ok(self.periods_utc(date).next().map(|(start, _)| start).expect("a working day has a period"))
            }
            Span::Months(months) => {
                let local = t.with_timezone(&self.time_zone).naive_local();
                let earlier = local.checked_sub_months(chrono::Months::new(months)).unwrap_or(NaiveDateTime::MIN);
                Ok(self.instant(earlier))
            }
        }
    }

    fn add_working_time(&self, t: DateTime<Utc>, amount: Duration) -> Result<DateTime<Utc>, NoWorkingTime> {
        let mut left = amount;
        let mut date = self.local_date(t) - Duration::days(1); // a period may start the previous local day in UTC terms
        for _ in 0..SEARCH_DAYS_MAX {
            for (start, end) in self.periods_utc(date) {
                if end <= t {
                    continue;
                }
                let from = start.max(t);
                let available = end - from;
                if left <= available {
                    return Ok(from + left);
                }
                left -= available;
            }
            date = date.succ_opt().ok_or(NoWorkingTime { from: t })?;
        }
        Err(NoWorkingTime { from: t })
    }

    fn subtract_working_time(&self, t: DateTime<Utc>, amount: Duration) -> Result<DateTime<Utc>, NoWorkingTime> {
        let mut left = amount;
        let mut date = self.local_date(t) + Duration::days(1);
        for _ in 0..SEARCH_DAYS_MAX {
            let periods: Vec<_> = self.periods_utc(date).collect();
            for (start, end) in periods.into_iter().rev() {
                if start >= t {
                    continue;
                }
                let to = end.min(t);
                let available = to - start;
                if left <= available {
                    return Ok(to - left);
                }
                left -= available;
            }
            date = date.pred_opt().ok_or(NoWorkingTime { from: t })?;
        }
        Err(NoWorkingTime { from: t })
    }

    fn add_workdays(&self, t: DateTime<Utc>, days: u32) -> Result<DateTime<Utc>, NoWorkingTime> {
        if days == 0 {
            return Ok(t);
        }
        let mut date = self.local_date(t);
        let mut left = days;
        for _ in 0..SEARCH_DAYS_MAX {
            date = date.succ_opt().ok_or(NoWorkingTime { from: t })?;
            if self.is_working_day(date) {
                left -= 1;
                if left == 0 {
                    let close = self.periods_utc(date).last().map(|(_, end)| end);
                    return Ok(close.expect("a working day has a period"));
                }
            }
        }
        Err(NoWorkingTime { from: t })
    }

    /// Working time between two instants (zero if `to <= from`): what an SLA clock that pauses
    /// outside working hours has consumed.
    pub fn working_time_between(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> Duration {
        let mut total = Duration::zero();
        if to <= from {
            return total;
        }
        let mut date = self.local_date(from) - Duration::days(1);
        let last = self.local_date(to) + Duration::days(1);
        while date <= last {
            for (start, end) in self.periods_utc(date) {
                let (a, b) = (start.max(from), end.min(to));
                if b > a {
                    total += b - a;
                }
            }
            match date.succ_opt() {
                Some(d) => date = d,
                None => break,
            }
        }
        total
    }

    /// Whether `t` falls inside a working period.
    pub fn is_working_time(&self, t: DateTime<Utc>) -> bool {
        let date = self.local_date(t);
        [date.pred_opt(), Some(date)].into_iter().flatten().any(|d| self.periods_utc(d).any(|(s, e)| s <= t && t < e))
    }
}
