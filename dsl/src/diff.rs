//! The structural diff of two versions of a process (`caseflow diff OLD NEW`): fields and steps
//! added, removed, renamed and changed, and for a changed step which of its clauses changed
//! (assignment, deadline, what it asks, handlers, transitions). Not a text diff: layout and
//! comments do not count, and a step moved within the file is not a change.
//!
//! Both versions are compared as the formatter writes them, clause by clause, so a change is
//! shown as the process owner would write it.

use crate::ast::{Process, Step};
use crate::fmt::{field_to_string, process_header_lines, step_to_string};
use serde::Serialize;
use std::collections::BTreeMap;

/// What changed between two versions of one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProcessDiff {
    /// Process-level lines (key template, start, interrupts, kept messages, tallies) that went
    /// and that came.
    pub process: Vec<ClauseChange>,
    /// Field declarations as written.
    pub fields_added: Vec<String>,
    pub fields_removed: Vec<String>,
    pub fields_changed: Vec<FieldChange>,
    pub steps_added: Vec<StepSummary>,
    pub steps_removed: Vec<StepSummary>,
    /// A step whose name changed and nothing else (same kind, same clauses).
    pub steps_renamed: Vec<Renamed>,
    pub steps_changed: Vec<StepChange>,
}

/// A field declaration as it was and as it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = FieldDeclChange))]
pub struct FieldChange {
    pub name: String,
    pub old: String,
    pub new: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = DiffStep))]
pub struct StepSummary {
    pub name: String,
    /// `task`, `auto`, `wait`, `decision`, `split`, `join`, `call` or `end`.
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = RenamedStep))]
pub struct Renamed {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StepChange {
    pub name: String,
    pub clauses: Vec<ClauseChange>,
}

/// One clause as it was and as it is: `old` only when it went, `new` only when it came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClauseChange {
    /// What the clause is about: `assignment`, `deadline`, `asks`, `handler`, `transition`,
    /// `reminder`, `head` (kind and label), or the clause's first word.
    pub what: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
}

impl ProcessDiff {
    pub fn is_empty(&self) -> bool {
        *self == ProcessDiff::default()
    }

    /// The diff as a person reads it, one line per change.
    pub fn render(&self) -> String {
        if self.is_empty() {
            return "no structural change\n".to_string();
        }
        let mut out = String::new();
        let clause = |out: &mut String, indent: &str, c: &ClauseChange| {
            let line = match (&c.old, &c.new) {
                (Some(o), Some(n)) => format!("{indent}~ {}: `{o}` → `{n}`\n", c.what),
                (Some(o), None) => format!("{indent}- {}: `{o}`\n", c.what),
                (None, Some(n)) => format!("{indent}+ {}: `{n}`\n", c.what),
                (None, None) => String::new(),
            };
            out.push_str(&line);
        };
        for c in &self.process {
            clause(&mut out, "", c);
        }
        for f in &self.fields_added {
            out.push_str(&format!("+ field `{f}`\n"));
        }
        for f in &self.fields_removed {
            out.push_str(&format!("- field `{f}`\n"));
        }
        for f in &self.fields_changed {
            out.push_str(&format!("~ field {}: `{}` → `{}`\n", f.name, f.old, f.new));
        }
        for s in &self.steps_added {
            out.push_str(&format!("+ {} {}\n", s.kind, s.name));
        }
        for s in &self.steps_removed {
            out.push_str(&format!("- {} {}\n", s.kind, s.name));
        }
        for r in &self.steps_renamed {
            out.push_str(&format!("~ step {} renamed to {}\n", r.from, r.to));
        }
        for s in &self.steps_changed {
            out.push_str(&format!("~ step {}\n", s.name));
            for c in &s.clauses {
                clause(&mut out, "    ", c);
            }
        }
        out
    }
}

/// The step as clauses: its head (kind, name, label) and each line inside it.
struct Clauses {
    kind: String,
    head: String,
    lines: Vec<String>,
}

fn clauses(s: &Step) -> Clauses {
    let text = step_to_string(s);
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty() && *l != "}");
    let first = lines.next().unwrap_or_default();
    // The head without the name, so that a rename alone does not change it.
    let mut head = first.trim_end_matches('{').trim_end().replacen(&format!(" {}", s.id.name), "", 1);
    // Nor the note of a rename (`renamed from OLD`), which is about the name.
    if let Some(old) = &s.renamed_from {
        head = head.replacen(&format!(" renamed from {}", old.name), "", 1);
    }
    Clauses { kind: s.kind.keyword().to_string(), head, lines: lines.map(str::to_string).collect() }
}

/// What a clause is about, from its first word.
fn clause_kind(line: &str) -> String {
    let first = line.split_whitespace().next().unwrap_or_default();
    match first {
        "assign" => "assignment",
        "due" => "deadline",
        "asks" | "collect" => "asks",
        "when" | "on" => "handler",
        "remind" => "reminder",
        "->" | "if" | "else" | "otherwise" => "transition",
        other => other,
    }
    .to_string()
}

/// The clauses that went and came, a removed and an added clause of the same kind paired as
/// one change.
fn clause_changes(old: &[String], new: &[String]) -> Vec<ClauseChange> {
    let gone: Vec<&String> = old.iter().filter(|l| !new.contains(l)).collect();
    let came: Vec<&String> = new.iter().filter(|l| !old.contains(l)).collect();
    let mut by_kind: BTreeMap<String, (Vec<&String>, Vec<&String>)> = BTreeMap::new();
    for l in &gone {
        by_kind.entry(clause_kind(l)).or_default().0.push(l);
    }
    for l in &came {
        by_kind.entry(clause_kind(l)).or_default().1.push(l);
    }
    let mut changes = Vec::new();
    for (what, (gone, came)) in by_kind {
        let n = gone.len().max(came.len());
        for i in 0..n {
            changes.push(ClauseChange {
                what: what.clone(),
                old: gone.get(i).map(|s| s.to_string()),
                new: came.get(i).map(|s| s.to_string()),
            });
        }
    }
    changes
}

/// Compares two versions of a process.
pub fn diff(old: &Process, new: &Process) -> ProcessDiff {
    let mut d = ProcessDiff {
        process: clause_changes(&process_header_lines(old), &process_header_lines(new)),
        ..ProcessDiff::default()
    };
    // Fields by name.
    let old_fields: BTreeMap<&str, String> =
        old.fields.iter().map(|f| (f.name.name.as_str(), field_to_string(f))).collect();
    let new_fields: BTreeMap<&str, String> =
        new.fields.iter().map(|f| (f.name.name.as_str(), field_to_string(f))).collect();
    for (name, text) in &new_fields {
        match old_fields.get(name) {
            None => d.fields_added.push(text.clone()),
            Some(o) if o != text => {
                d.fields_changed.push(FieldChange { name: name.to_string(), old: o.clone(), new: text.clone() })
            }
            Some(_) => {}
        }
    }
    d.fields_removed =
        old_fields.iter().filter(|(n, _)| !new_fields.contains_key(*n)).map(|(_, t)| t.clone()).collect();
    // Steps by name; a removed and an added step with the same kind and clauses is a rename.
    let old_steps: BTreeMap<&str, Clauses> = old.steps.iter().map(|s| (s.id.name.as_str(), clauses(s))).collect();
    let new_steps: BTreeMap<&str, Clauses> = new.steps.iter().map(|s| (s.id.name.as_str(), clauses(s))).collect();
    let mut added: Vec<&str> = new_steps.keys().filter(|n| !old_steps.contains_key(*n)).copied().collect();
    let removed: Vec<&str> = old_steps.keys().filter(|n| !new_steps.contains_key(*n)).copied().collect();
    let mut renamed_and_changed = Vec::new();
    for gone in removed {
        let o = &old_steps[gone];
        // Declared (`renamed from`): a rename, whatever else changed.
        let declared = new.steps.iter().find(|s| s.renamed_from.as_ref().is_some_and(|r| r.name == gone));
        if let Some(i) = declared.and_then(|s| added.iter().position(|n| *n == s.id.name)) {
            let to = added.remove(i);
            d.steps_renamed.push(Renamed { from: gone.to_string(), to: to.to_string() });
            renamed_and_changed.push((gone, to));
            continue;
        }
        let twin = added.iter().position(|n| {
            let c = &new_steps[n];
            c.kind == o.kind && c.head == o.head && c.lines == o.lines
        });
        match twin {
            Some(i) => d.steps_renamed.push(Renamed { from: gone.to_string(), to: added.remove(i).to_string() }),
            None => d.steps_removed.push(StepSummary { name: gone.to_string(), kind: o.kind.clone() }),
        }
    }
    d.steps_added =
        added.iter().map(|n| StepSummary { name: n.to_string(), kind: new_steps[n].kind.clone() }).collect();
    let pairs = old_steps.keys().map(|n| (*n, *n)).chain(renamed_and_changed);
    for (name, to) in pairs {
        let (o, Some(n)) = (&old_steps[name], new_steps.get(to)) else { continue };
        let name = &to;
        let mut changes = Vec::new();
        if o.head != n.head {
            changes.push(ClauseChange { what: "head".into(), old: Some(o.head.clone()), new: Some(n.head.clone()) });
        }
        changes.extend(clause_changes(&o.lines, &n.lines));
        if !changes.is_empty() {
            d.steps_changed.push(StepChange { name: name.to_string(), clauses: changes });
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Process {
        crate::parse::parse(text).expect("parses")
    }

    #[test]
    fn a_declared_rename_is_a_rename_even_with_other_changes() {
        let old = parse("process p {\n  start -> a\n  task a { due 1h -> done }\n  end done\n}\n");
        let new = parse("process p {\n  start -> b\n  task b renamed from a { due 2h -> done }\n  end done\n}\n");
        let d = diff(&old, &new);
        assert_eq!(d.steps_renamed, vec![Renamed { from: "a".into(), to: "b".into() }]);
        assert!(d.steps_added.is_empty() && d.steps_removed.is_empty(), "{d:?}");
        assert_eq!(d.steps_changed.len(), 1, "{d:?}");
        assert_eq!(d.steps_changed[0].name, "b");
        assert_eq!(d.steps_changed[0].clauses[0].what, "deadline", "{d:?}");
    }
}
