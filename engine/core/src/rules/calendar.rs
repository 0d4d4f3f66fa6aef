//! `[calendar]`: the business calendar's zone, week, holidays and make-up days.

use super::load::*;
use super::*;

impl Loader {
    // ------------------------------------------------------------ calendar

    pub(super) fn calendar_section(&mut self, loc: &Loc, item: &Item) {
        let Some(t) = item.as_table_like() else {
            self.err(loc, "expected a table: `[calendar]`");
            return;
        };
        if self.calendar.is_some() {
            self.err(loc, "the calendar is defined in more than one file");
            return;
        }
        self.known_keys(
            loc,
            t,
            &["time_zone", "hours", "holidays", "makeup_workdays", "makeup_schedule", "covered_through"],
        );
        let mut cal = BusinessCalendar::standard_china();
        if let Some(tz) = self.str_of(loc, t, "time_zone") {
            match tz.parse::<chrono_tz::Tz>() {
                Ok(z) => cal.time_zone = z,
                Err(_) => {
                    let span = t.get("time_zone").and_then(Item::span);
                    self.err(
                        &loc.child("time_zone", span),
                        format!("`{tz}` is not an IANA time zone such as Asia/Shanghai"),
                    )
                }
            }
        }
        const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        if let Some(hours) = t.get("hours") {
            let hloc = loc.child("hours", hours.span());
            match hours.as_table_like() {
                None => self.err(&hloc, "expected a table of weekdays: `mon = [\"09:00-12:00\", \"13:30-18:00\"]`"),
                Some(h) => {
                    self.known_keys(&hloc, h, &DAYS);
                    for (i, day) in DAYS.iter().enumerate() {
                        if let Some(item) = h.get(day) {
                            let dloc = hloc.child(day, item.span());
                            cal.week[i] = self.periods(&dloc, item);
                        }
                    }
                }
            }
        }
        for (key, set) in [("holidays", &mut cal.holidays), ("makeup_workdays", &mut cal.makeup_workdays)] {
            let Some(item) = t.get(key) else { continue };
            let kloc = loc.child(key, item.span());
            let Some(list) = item.as_array() else {
                self.err(&kloc, "expected a list of dates: `[2026-10-01, 2026-10-02]`");
                continue;
            };
            for (i, v) in list.iter().enumerate() {
                let vloc = kloc.index(i, v.span());
                if let Some(d) = self.date_of(&vloc, &Item::Value(v.clone())) {
                    if !set.insert(d) {
                        self.err(&vloc, format!("{d} is listed twice"));
                    }
                }
            }
        }
        for d in cal.holidays.intersection(&cal.makeup_workdays) {
            self.err(loc, format!("{d} is both a holiday and a make-up working day"));
        }
        if let Some(s) = self.str_of(loc, t, "makeup_schedule") {
            match DAYS.iter().position(|d| *d == s) {
                Some(i) => cal.makeup_schedule = weekday(i),
                None => self.err(loc, format!("makeup_schedule `{s}` is not one of {}", DAYS.join(", "))),
            }
        }
        if cal.week.iter().all(Vec::is_empty) {
            self.err(loc, "the calendar has no working time on any weekday: `3 workdays` could never end");
        }
        // How far the official schedule is known: said, or the end of the last year it lists.
        cal.covered_through = match t.get("covered_through") {
            Some(item) => self.date_of(&loc.child("covered_through", item.span()), item),
            None => cal
                .holidays
                .iter()
                .chain(&cal.makeup_workdays)
                .map(chrono::Datelike::year)
                .max()
                .and_then(|y| chrono::NaiveDate::from_ymd_opt(y, 12, 31)),
        };
        if let Some(last) = cal.covered_through {
            if let Some(later) = cal.holidays.iter().chain(&cal.makeup_workdays).find(|d| **d > last) {
                self.err(
                    loc,
                    format!("{later} is listed, but `covered_through` is {last}: raise it, or remove the date"),
                );
            }
        }
        self.calendar = Some(cal);
    }

    pub(super) fn periods(&mut self, loc: &Loc, item: &Item) -> Vec<Period> {
        let Some(list) = item.as_array() else {
            self.err(
                loc,
                "expected a list of periods such as [\"09:00-12:00\", \"13:30-18:00\"] (or [] for a day off)",
            );
            return Vec::new();
        };
        let mut out: Vec<Period> = Vec::new();
        for (i, v) in list.iter().enumerate() {
            let vloc = loc.index(i, v.span());
            match v.as_str().and_then(parse_period) {
                Some(p) => out.push(p),
                None => self.err(&vloc, "expected a period \"HH:MM-HH:MM\" with the start before the end"),
            }
        }
        out.sort();
        for w in out.windows(2) {
            if w[1].start < w[0].end {
                self.err(loc, format!("periods {} and {} overlap", w[0], w[1]));
            }
        }
        out
    }
}
