//! Evaluating the expressions of a compiled process against a case's fields, the rules in
//! force and the current instant (passed in: nothing here reads a clock).
//!
//! The checker has already typed every expression, so errors here come from data: a field with
//! no value yet, a rules value that is missing or of the wrong kind, a division by zero. The
//! engine turns them into an incident on the step, never a crash.

use crate::calendar::{BusinessCalendar, NoWorkingTime};
use crate::duration::Span;
use crate::rules::RuleSet;
use crate::value::Value;
use caseflow_dsl::ast::{BinOp, DurationUnit, Expr, ExprKind};
use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use std::cmp::Ordering;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    #[error("field `{0}` has no value yet")]
    MissingField(String),
    #[error("the rules define no value `rules.{name}{}`", key.as_ref().map(|k| format!("[{k}]")).unwrap_or_default())]
    MissingRule { name: String, key: Option<String> },
    #[error("{0}")]
    Type(String),
    #[error("division by zero")]
    DivisionByZero,
    #[error("arithmetic overflow")]
    Overflow,
    #[error(transparent)]
    Calendar(#[from] NoWorkingTime),
}

/// What an expression can see.
pub struct Scope<'a> {
    pub fields: &'a BTreeMap<String, Value>,
    /// Field names declared by the process: a bare name that is not one is a choice value.
    pub declared: &'a dyn Fn(&str) -> bool,
    pub rules: &'a RuleSet,
    pub now: DateTime<Utc>,
    /// Counts kept across cases (`tally(NAME, key, ...)`), by name and keys.
    pub tally: &'a dyn Fn(&str, &[String]) -> u64,
    /// Who did what in this case: `started_by()` (None) and `completed_by(STEP)`.
    pub actor_of: &'a dyn Fn(Option<&str>) -> Option<String>,
}

/// A value as a tally key: text as it is, dates as `2026-12-02`, numbers and bools as written.
pub fn key_text(v: &Value) -> String {
    match v {
        Value::Text(t) => t.clone(),
        other => other.to_string(),
    }
}

impl Scope<'_> {
    fn calendar(&self) -> &BusinessCalendar {
        &self.rules.calendar
    }

    /// Midnight at the start of a local date, as an instant.
    pub fn date_start(&self, d: NaiveDate) -> DateTime<Utc> {
        self.calendar().date_start(d)
    }
}

// One piece (over 100 lines): one match over the expression kinds.
pub fn eval(e: &Expr, scope: &Scope) -> Result<Value, EvalError> {
    Ok(match &e.kind {
        ExprKind::Int(i) => Value::Int(*i),
        ExprKind::Decimal(d) => {
            Value::Decimal(d.parse().map_err(|_| EvalError::Type(format!("`{d}` is not a number")))?)
        }
        ExprKind::Text(t) => Value::Text(t.clone()),
        ExprKind::Bool(b) => Value::Bool(*b),
        ExprKind::Date(d) => {
            if d.contains('T') {
                let naive = NaiveDateTime::parse_from_str(d, "%Y-%m-%dT%H:%M")
                    .map_err(|_| EvalError::Type(format!("`{d}` is not a date and time")))?;
                let local = scope.calendar().time_zone.from_local_datetime(&naive).earliest();
                Value::DateTime(
                    local
                        .map(|t| t.with_timezone(&Utc))
                        .ok_or(EvalError::Type(format!("`{d}` does not exist locally")))?,
                )
            } else {
                Value::Date(
                    NaiveDate::parse_from_str(d, "%Y-%m-%d")
                        .map_err(|_| EvalError::Type(format!("`{d}` is not a date")))?,
                )
            }
        }
        ExprKind::Duration { amount, unit } => Value::Duration(span_of(*amount, *unit)?),
        ExprKind::List(items) => Value::List(items.iter().map(|i| eval(i, scope)).collect::<Result<_, _>>()?),
        ExprKind::Name(n) => {
            if (scope.declared)(n) {
                scope.fields.get(n).cloned().ok_or_else(|| EvalError::MissingField(n.clone()))?
            } else {
                Value::Text(n.clone())
            }
        }
        ExprKind::Rule { name, key } => {
            let key = key.as_ref().map(|k| eval(k, scope)).transpose()?.map(|k| k.to_string());
            scope
                .rules
                .value(&name.name, key.as_deref())
                .cloned()
                .ok_or(EvalError::MissingRule { name: name.name.clone(), key })?
        }
        ExprKind::Call { function, args } => match (function.name.as_str(), args.as_slice()) {
            ("now", []) => Value::DateTime(scope.now),
            ("today", []) => Value::Date(scope.now.with_timezone(&scope.calendar().time_zone).date_naive()),
            ("len", [a]) => match eval(a, scope)? {
                Value::List(l) => Value::Int(l.len() as i64),
                Value::Text(t) => Value::Int(t.chars().count() as i64),
                other => return Err(EvalError::Type(format!("`len` of a {}", other.type_name()))),
            },
            (f @ ("is_holiday" | "is_workday" | "is_makeup_day"), [a]) => {
                let cal = scope.calendar();
                let date = match eval(a, scope)? {
                    Value::Date(d) => d,
                    Value::DateTime(t) => t.with_timezone(&cal.time_zone).date_naive(),
                    other => return Err(EvalError::Type(format!("`{f}` of a {}", other.type_name()))),
                };
                Value::Bool(match f {
                    "is_holiday" => cal.holidays.contains(&date),
                    "is_makeup_day" => cal.makeup_workdays.contains(&date),
                    _ => cal.is_working_day(date),
                })
            }
            ("started_by", []) => Value::Text((scope.actor_of)(None).unwrap_or_default()),
            ("completed_by", [step]) => {
                let ExprKind::Name(step) = &step.kind else {
                    return Err(EvalError::Type("`completed_by` needs a step".into()));
                };
                Value::Text((scope.actor_of)(Some(step)).unwrap_or_default())
            }
            (f @ ("on_duty" | "is_away"), [user, date]) => {
                let user = match eval(user, scope)? {
                    Value::Text(u) => u,
                    other => return Err(EvalError::Type(format!("`{f}` of a {}", other.type_name()))),
                };
                let date = local_date(f, eval(date, scope)?, scope)?;
                Value::Bool(match f {
                    "on_duty" => scope.rules.on_duty(&user, date),
                    _ => scope.rules.is_away(&user, date),
                })
            }
            ("local_date", [a]) => Value::Date(local_date("local_date", eval(a, scope)?, scope)?),
            ("month", [a]) => {
                let cal = scope.calendar();
                match eval(a, scope)? {
                    Value::Date(d) => Value::Text(d.format("%Y-%m").to_string()),
                    Value::DateTime(t) => Value::Text(t.with_timezone(&cal.time_zone).format("%Y-%m").to_string()),
                    other => return Err(EvalError::Type(format!("`month` of a {}", other.type_name()))),
                }
            }
            ("tally", [name, keys @ ..]) => {
                let ExprKind::Name(name) = &name.kind else {
                    return Err(EvalError::Type("`tally` needs the name of a tally".into()));
                };
                let keys = keys.iter().map(|k| eval(k, scope).map(|v| key_text(&v))).collect::<Result<Vec<_>, _>>()?;
                Value::Int(i64::try_from((scope.tally)(name, &keys)).unwrap_or(i64::MAX))
            }
            (f, _) => return Err(EvalError::Type(format!("no function `{f}`"))),
        },
        ExprKind::Paren(inner) => eval(inner, scope)?,
        ExprKind::Not(inner) => Value::Bool(!truth(&eval(inner, scope)?)?),
        ExprKind::Neg(inner) => match eval(inner, scope)? {
            Value::Int(i) => Value::Int(i.checked_neg().ok_or(EvalError::Overflow)?),
            Value::Decimal(d) => Value::Decimal(-d),
            other => return Err(EvalError::Type(format!("cannot negate a {}", other.type_name()))),
        },
        ExprKind::Binary { op, lhs, rhs } => binary(*op, lhs, rhs, scope)?,
    })
}

/// The local date of a date or a date and time, on the calendar's time zone.
fn local_date(f: &str, v: Value, scope: &Scope) -> Result<NaiveDate, EvalError> {
    match v {
        Value::Date(d) => Ok(d),
        Value::DateTime(t) => Ok(t.with_timezone(&scope.calendar().time_zone).date_naive()),
        other => Err(EvalError::Type(format!("`{f}` of a {}", other.type_name()))),
    }
}

/// A condition's value as a bool.
pub fn truth(v: &Value) -> Result<bool, EvalError> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => Err(EvalError::Type(format!("expected a bool, found a {}", other.type_name()))),
    }
}

fn span_of(amount: u64, unit: DurationUnit) -> Result<Span, EvalError> {
    let ms = |f: u64| amount.checked_mul(f).map(Span::Millis).ok_or(EvalError::Overflow);
    match unit {
        DurationUnit::Millis => Ok(Span::Millis(amount)),
        DurationUnit::Seconds => ms(1_000),
        DurationUnit::Minutes => ms(60_000),
        DurationUnit::Hours => ms(3_600_000),
        DurationUnit::Days => ms(86_400_000),
        DurationUnit::Weeks => ms(7 * 86_400_000),
        DurationUnit::WorkHours => amount.checked_mul(60).map(Span::WorkMinutes).ok_or(EvalError::Overflow),
        DurationUnit::WorkDays => u32::try_from(amount).map(Span::WorkDays).map_err(|_| EvalError::Overflow),
    }
}

fn binary(op: BinOp, lhs: &Expr, rhs: &Expr, scope: &Scope) -> Result<Value, EvalError> {
    // `and` / `or` short-circuit: `x != 0 and y / x > 1` must not divide by zero.
    if matches!(op, BinOp::And | BinOp::Or) {
        let l = truth(&eval(lhs, scope)?)?;
        if (op == BinOp::And && !l) || (op == BinOp::Or && l) {
            return Ok(Value::Bool(l));
        }
        return Ok(Value::Bool(truth(&eval(rhs, scope)?)?));
    }
    let l = eval(lhs, scope)?;
    let r = eval(rhs, scope)?;
    let instant = |v: &Value| match v {
        Value::Date(d) => Some(scope.date_start(*d)),
        Value::DateTime(t) => Some(*t),
        _ => None,
    };
    let cmp = |l: &Value, r: &Value| match (instant(l), instant(r)) {
        (Some(a), Some(b)) => Some(a.cmp(&b)),
        _ => l.compare(r),
    };
    let ord = |want: fn(Ordering) -> bool| match cmp(&l, &r) {
        Some(o) => Ok(Value::Bool(want(o))),
        None => Err(EvalError::Type(format!("cannot compare a {} with a {}", l.type_name(), r.type_name()))),
    };
    match op {
        BinOp::Eq => Ok(Value::Bool(cmp(&l, &r) == Some(Ordering::Equal))),
        BinOp::Ne => Ok(Value::Bool(cmp(&l, &r) != Some(Ordering::Equal))),
        BinOp::Lt => ord(|o| o == Ordering::Less),
        BinOp::Le => ord(|o| o != Ordering::Greater),
        BinOp::Gt => ord(|o| o == Ordering::Greater),
        BinOp::Ge => ord(|o| o != Ordering::Less),
        BinOp::In => match &r {
            Value::List(items) => Ok(Value::Bool(items.iter().any(|i| cmp(&l, i) == Some(Ordering::Equal)))),
            other => Err(EvalError::Type(format!("`in` needs a list, found a {}", other.type_name()))),
        },
        BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => arithmetic(op, l, r, scope),
        BinOp::And | BinOp::Or => unreachable!("handled above"),
    }
}

fn arithmetic(op: BinOp, l: Value, r: Value, scope: &Scope) -> Result<Value, EvalError> {
    use Value::*;
    let checked = |v: Option<i64>| v.map(Int).ok_or(EvalError::Overflow);
    Ok(match (op, l, r) {
        (BinOp::Add, Int(a), Int(b)) => checked(a.checked_add(b))?,
        (BinOp::Sub, Int(a), Int(b)) => checked(a.checked_sub(b))?,
        (BinOp::Mul, Int(a), Int(b)) => checked(a.checked_mul(b))?,
        (BinOp::Div, Int(_), Int(0)) => return Err(EvalError::DivisionByZero),
        (BinOp::Div, Int(a), Int(b)) => checked(a.checked_div(b))?,
        (op, a @ (Int(_) | Decimal(_)), b @ (Int(_) | Decimal(_))) => {
            let (x, y) = (as_f64(&a), as_f64(&b));
            let v = match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                _ if y == 0.0 => return Err(EvalError::DivisionByZero),
                _ => x / y,
            };
            if !v.is_finite() {
                return Err(EvalError::Overflow);
            }
            Decimal(v)
        }
        (BinOp::Add, t @ (Date(_) | DateTime(_)), Duration(d))
        | (BinOp::Add, Duration(d), t @ (Date(_) | DateTime(_))) => {
            DateTime(scope.calendar().add(moment(&t, scope), d)?)
        }
        (BinOp::Sub, t @ (Date(_) | DateTime(_)), Duration(d)) => {
            DateTime(scope.calendar().subtract(moment(&t, scope), d)?)
        }
        (BinOp::Sub, a @ (Date(_) | DateTime(_)), b @ (Date(_) | DateTime(_))) => {
            let ms = (moment(&a, scope) - moment(&b, scope)).num_milliseconds();
            Duration(crate::duration::Span::Millis(
                u64::try_from(ms).map_err(|_| EvalError::Type("a negative duration".into()))?,
            ))
        }
        (op @ (BinOp::Add | BinOp::Sub), Duration(a), Duration(b)) => Duration(combine(op, a, b)?),
        (BinOp::Mul, Duration(d), Int(n)) | (BinOp::Mul, Int(n), Duration(d)) => Duration(scale(d, n, false)?),
        (BinOp::Div, Duration(d), Int(n)) => Duration(scale(d, n, true)?),
        (BinOp::Add, Text(a), Text(b)) => Text(a + &b),
        (op, a, b) => {
            return Err(EvalError::Type(format!(
                "cannot apply `{}` to a {} and a {}",
                op.symbol(),
                a.type_name(),
                b.type_name()
            )))
        }
    })
}

fn as_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Decimal(d) => *d,
        _ => f64::NAN,
    }
}

fn moment(v: &Value, scope: &Scope) -> DateTime<Utc> {
    match v {
        Value::Date(d) => scope.date_start(*d),
        Value::DateTime(t) => *t,
        _ => scope.now,
    }
}

fn combine(op: BinOp, a: Span, b: Span) -> Result<Span, EvalError> {
    let f = |x: u64, y: u64| if op == BinOp::Add { x.checked_add(y) } else { x.checked_sub(y) };
    match (a, b) {
        (Span::Millis(x), Span::Millis(y)) => f(x, y).map(Span::Millis),
        (Span::WorkMinutes(x), Span::WorkMinutes(y)) => f(x, y).map(Span::WorkMinutes),
        (Span::WorkDays(x), Span::WorkDays(y)) => {
            f(x.into(), y.into()).and_then(|v| u32::try_from(v).ok()).map(Span::WorkDays)
        }
        (Span::Months(x), Span::Months(y)) => {
            f(x.into(), y.into()).and_then(|v| u32::try_from(v).ok()).map(Span::Months)
        }
        _ => {
            return Err(EvalError::Type(format!("cannot combine {a} and {b}: one is business time, the other is not")))
        }
    }
    .ok_or(EvalError::Overflow)
}

fn scale(d: Span, n: i64, divide: bool) -> Result<Span, EvalError> {
    let n = u64::try_from(n).map_err(|_| EvalError::Type("a duration times a negative number".into()))?;
    if divide && n == 0 {
        return Err(EvalError::DivisionByZero);
    }
    let f = |x: u64| if divide { Some(x / n) } else { x.checked_mul(n) };
    match d {
        Span::Millis(x) => f(x).map(Span::Millis),
        Span::WorkMinutes(x) => f(x).map(Span::WorkMinutes),
        Span::WorkDays(x) => f(x.into()).and_then(|v| u32::try_from(v).ok()).map(Span::WorkDays),
        Span::Months(x) => f(x.into()).and_then(|v| u32::try_from(v).ok()).map(Span::Months),
    }
    .ok_or(EvalError::Overflow)
}
