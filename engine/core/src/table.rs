//! Decision tables in the style of DMN: inputs, rows of conditions, outputs, a hit policy.
//!
//! A table is validated when the rules load (`rules.rs` builds it); evaluation is a linear
//! scan over pre-parsed conditions with no allocation until a row matches.

use crate::value::Value;
use serde::Serialize;
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HitPolicy {
    /// The first matching row, in order.
    First,
    /// At most one row may match any input; overlapping rows are refused when the rules load.
    Unique,
    /// Every matching row, in order.
    Collect,
    /// The matching row whose first output ranks highest in `output_order`.
    Priority,
}

/// One cell of a row: a test on one input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Condition {
    Any,
    Equals(Value),
    NotEquals(Value),
    OneOf(Vec<Value>),
    /// Inclusive bounds; either may be open.
    Range {
        min: Option<Value>,
        max: Option<Value>,
        min_inclusive: bool,
        max_inclusive: bool,
    },
}

impl Condition {
    pub fn matches(&self, v: &Value) -> bool {
        match self {
            Condition::Any => true,
            Condition::Equals(x) => x.compare(v) == Some(Ordering::Equal),
            Condition::NotEquals(x) => x.compare(v) != Some(Ordering::Equal),
            Condition::OneOf(xs) => xs.iter().any(|x| x.compare(v) == Some(Ordering::Equal)),
            Condition::Range { min, max, min_inclusive, max_inclusive } => {
                let above = match min {
                    None => true,
                    Some(m) => match v.compare(m) {
                        Some(Ordering::Greater) => true,
                        Some(Ordering::Equal) => *min_inclusive,
                        _ => false,
                    },
                };
                let below = match max {
                    None => true,
                    Some(m) => match v.compare(m) {
                        Some(Ordering::Less) => true,
                        Some(Ordering::Equal) => *max_inclusive,
                        _ => false,
                    },
                };
                above && below
            }
        }
    }

    /// Whether some value could satisfy both conditions. Conservative: says `true` when unsure,
    /// so `unique` tables may be refused but never accepted wrongly.
    pub fn may_overlap(&self, other: &Condition) -> bool {
        use Condition::*;
        match (self, other) {
            (Any, _) | (_, Any) | (NotEquals(_), _) | (_, NotEquals(_)) => true,
            (Equals(a), b) | (b, Equals(a)) => b.matches(a),
            (OneOf(xs), b) | (b, OneOf(xs)) => xs.iter().any(|x| b.matches(x)),
            (Range { .. }, Range { .. }) => {
                let (lo_a, hi_a) = self.bounds();
                let (lo_b, hi_b) = other.bounds();
                // Overlap unless one ends before the other starts.
                let before = |hi: Option<Bound>, lo: Option<Bound>| match (hi, lo) {
                    (Some((h, hi_inc)), Some((l, lo_inc))) => match h.compare(l) {
                        Some(Ordering::Less) => true,
                        Some(Ordering::Equal) => !(hi_inc && lo_inc),
                        _ => false,
                    },
                    _ => false,
                };
                !(before(hi_a, lo_b) || before(hi_b, lo_a))
            }
        }
    }

    /// Lower and upper bound, each with whether it is inclusive.
    fn bounds(&self) -> (Option<Bound<'_>>, Option<Bound<'_>>) {
        match self {
            Condition::Range { min, max, min_inclusive, max_inclusive } => {
                (min.as_ref().map(|m| (m, *min_inclusive)), max.as_ref().map(|m| (m, *max_inclusive)))
            }
            _ => (None, None),
        }
    }
}

/// A range bound and whether it is inclusive.
type Bound<'a> = (&'a Value, bool);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// One condition per input, in the table's input order.
    pub conditions: Vec<Condition>,
    /// One value per output, in the table's output order.
    pub outputs: Vec<Value>,
    /// 1-based line in the rules file, for explanations.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionTable {
    pub name: String,
    pub hit_policy: HitPolicy,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub rows: Vec<Row>,
    /// For `priority`: values of the first output, highest priority first.
    pub output_order: Vec<Value>,
}

/// The rows a table's evaluation selected, by index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hits(pub Vec<usize>);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
/// Why a decision table gave no answer for these inputs (`eval::EvalError` is an expression's).
pub enum TableError {
    #[error("table `{table}` takes {expected} inputs ({names}), got {got}")]
    Arity { table: String, expected: usize, names: String, got: usize },
    #[error("table `{table}` has `unique` hit policy but rows {rows:?} all match")]
    NotUnique { table: String, rows: Vec<usize> },
}

impl DecisionTable {
    /// Evaluates the table on inputs given in its input order.
    pub fn evaluate(&self, inputs: &[Value]) -> Result<Hits, TableError> {
        if inputs.len() != self.inputs.len() {
            return Err(TableError::Arity {
                table: self.name.clone(),
                expected: self.inputs.len(),
                names: self.inputs.join(", "),
                got: inputs.len(),
            });
        }
        let matches = |row: &Row| row.conditions.iter().zip(inputs).all(|(c, v)| c.matches(v));
        match self.hit_policy {
            HitPolicy::First => Ok(Hits(self.rows.iter().position(matches).into_iter().collect())),
            HitPolicy::Collect => {
                Ok(Hits(self.rows.iter().enumerate().filter(|(_, r)| matches(r)).map(|(i, _)| i).collect()))
            }
            HitPolicy::Unique => {
                let hits: Vec<usize> =
                    self.rows.iter().enumerate().filter(|(_, r)| matches(r)).map(|(i, _)| i).collect();
                if hits.len() > 1 {
                    return Err(TableError::NotUnique { table: self.name.clone(), rows: hits });
                }
                Ok(Hits(hits))
            }
            HitPolicy::Priority => {
                let rank = |row: &Row| {
                    let first = row.outputs.first();
                    self.output_order
                        .iter()
                        .position(|o| first.is_some_and(|f| o.compare(f) == Some(Ordering::Equal)))
                        .unwrap_or(usize::MAX)
                };
                let best = self.rows.iter().enumerate().filter(|(_, r)| matches(r)).min_by_key(|(i, r)| (rank(r), *i));
                Ok(Hits(best.map(|(i, _)| i).into_iter().collect()))
            }
        }
    }

    /// The outputs of the selected rows, as (name, value) pairs.
    pub fn outputs_of(&self, hits: &Hits) -> Vec<Vec<(&str, &Value)>> {
        hits.0
            .iter()
            .map(|&i| self.outputs.iter().map(String::as_str).zip(self.rows[i].outputs.iter()).collect())
            .collect()
    }

    /// Pairs of rows (0-based) that some input could match together.
    pub fn overlapping_rows(&self) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        for (i, a) in self.rows.iter().enumerate() {
            for (j, b) in self.rows.iter().enumerate().skip(i + 1) {
                if a.conditions.iter().zip(&b.conditions).all(|(x, y)| x.may_overlap(y)) {
                    out.push((i, j));
                }
            }
        }
        out
    }
}
