//! Business-calendar arithmetic, driven by `tests/calendar/cases.toml`.

use caseflow_core::calendar::{BusinessCalendar, Period};
use caseflow_core::duration;
use caseflow_tests::*;
use chrono::{DateTime, NaiveDateTime, NaiveTime, TimeZone, Utc};
use serde::Deserialize;

#[derive(Deserialize)]
struct Cases {
    case: Vec<Case>,
    elapsed: Vec<Elapsed>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    calendar: String,
    start: String,
    add: Option<String>,
    subtract: Option<String>,
    expect: String,
}

#[derive(Deserialize)]
struct Elapsed {
    name: String,
    calendar: String,
    from: String,
    to: String,
    minutes: i64,
}

fn calendar(name: &str) -> BusinessCalendar {
    let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).expect("valid time");
    match name {
        "shipped" => shipped_rules().calendar,
        "berlin_office" => {
            let day = vec![Period { start: t(9, 0), end: t(17, 0) }];
            BusinessCalendar {
                time_zone: chrono_tz::Europe::Berlin,
                week: [day.clone(), day.clone(), day.clone(), day.clone(), day, Vec::new(), Vec::new()],
                ..BusinessCalendar::standard_china()
            }
        }
        "berlin_night" => {
            let night = vec![Period { start: t(1, 0), end: t(4, 0) }];
            BusinessCalendar {
                time_zone: chrono_tz::Europe::Berlin,
                week: std::array::from_fn(|_| night.clone()),
                ..BusinessCalendar::standard_china()
            }
        }
        other => panic!("unknown calendar `{other}` in cases.toml"),
    }
}

fn local(cal: &BusinessCalendar, s: &str) -> DateTime<Utc> {
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").unwrap_or_else(|e| panic!("`{s}`: {e}"));
    cal.time_zone.from_local_datetime(&naive).earliest().expect("test times exist locally").with_timezone(&Utc)
}

fn show(cal: &BusinessCalendar, t: DateTime<Utc>) -> String {
    t.with_timezone(&cal.time_zone).format("%Y-%m-%dT%H:%M").to_string()
}

#[test]
fn calendar_cases() {
    let cases: Cases = toml::from_str(&read(&root().join("tests/calendar/cases.toml"))).expect("cases parse");
    assert!(cases.case.len() >= 20);
    let mut failures = Vec::new();
    for c in &cases.case {
        let cal = calendar(&c.calendar);
        let start = local(&cal, &c.start);
        let got = match (&c.add, &c.subtract) {
            (Some(a), None) => cal.add(start, duration::parse(a).expect("duration")),
            (None, Some(s)) => cal.subtract(start, duration::parse(s).expect("duration")),
            _ => panic!("case `{}` needs exactly one of add/subtract", c.name),
        }
        .expect("the calendar has working time");
        let got = show(&cal, got);
        if got != c.expect {
            let op = c
                .add
                .as_ref()
                .map_or_else(|| format!("- {}", c.subtract.as_deref().unwrap_or("")), |a| format!("+ {a}"));
            failures.push(format!("{}: {} {op} = {got}, expected {}", c.name, c.start, c.expect));
        }
    }
    for e in &cases.elapsed {
        let cal = calendar(&e.calendar);
        let got = cal.working_time_between(local(&cal, &e.from), local(&cal, &e.to)).num_minutes();
        if got != e.minutes {
            failures.push(format!("{}: {got} working minutes, expected {}", e.name, e.minutes));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
