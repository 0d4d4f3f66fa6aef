//! Runtime values: what fields hold, what rules define and decision tables compare.

use crate::duration::Span;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use std::cmp::Ordering;
use std::fmt;

/// Stored tagged (`{"Text": "..."}`) so that a text that looks like a date stays text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Text(String),
    Int(i64),
    Decimal(f64),
    Bool(bool),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    Duration(Span),
    List(Vec<Value>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Text(_) => "text",
            Value::Int(_) => "int",
            Value::Decimal(_) => "decimal",
            Value::Bool(_) => "bool",
            Value::Date(_) => "date",
            Value::DateTime(_) => "datetime",
            Value::Duration(_) => "duration",
            Value::List(_) => "list",
        }
    }

    /// Order between values of comparable kinds (numbers with numbers, and so on).
    pub fn compare(&self, other: &Value) -> Option<Ordering> {
        use Value::*;
        match (self, other) {
            (Int(a), Int(b)) => Some(a.cmp(b)),
            (Int(a), Decimal(b)) => (*a as f64).partial_cmp(b),
            (Decimal(a), Int(b)) => a.partial_cmp(&(*b as f64)),
            (Decimal(a), Decimal(b)) => a.partial_cmp(b),
            (Text(a), Text(b)) => Some(a.cmp(b)),
            (Bool(a), Bool(b)) => Some(a.cmp(b)),
            (Date(a), Date(b)) => Some(a.cmp(b)),
            (DateTime(a), DateTime(b)) => Some(a.cmp(b)),
            (List(a), List(b)) if a.len() == b.len() => {
                let all_equal = a.iter().zip(b).all(|(x, y)| x.compare(y) == Some(Ordering::Equal));
                all_equal.then_some(Ordering::Equal)
            }
            (Duration(a), Duration(b)) if std::mem::discriminant(a) == std::mem::discriminant(b) => Some(a.cmp(b)),
            _ => None,
        }
    }

    /// Parses a command-line or API argument: a number, a bool, a date, a duration, else text.
    pub fn parse_loose(text: &str) -> Value {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Int(i);
        }
        if let Ok(f) = text.parse::<f64>() {
            if f.is_finite() {
                return Value::Decimal(f);
            }
        }
        match text {
            "true" => return Value::Bool(true),
            "false" => return Value::Bool(false),
            _ => {}
        }
        if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
            return Value::Date(d);
        }
        Value::Text(text.to_string())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Text(t) => f.write_str(t),
            Value::Int(i) => write!(f, "{i}"),
            Value::Decimal(d) => write!(f, "{d}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Date(d) => write!(f, "{d}"),
            Value::DateTime(t) => write!(f, "{}", t.to_rfc3339()),
            Value::Duration(s) => write!(f, "{s}"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}
