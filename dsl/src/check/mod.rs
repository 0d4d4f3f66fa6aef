//! AST to `model::Process`: name resolution, type checking and graph checks.
//!
//! The checker never stops at the first problem: it records every diagnostic it can find in
//! one run and builds the model only when none of them is an error. `Checker::run` here walks
//! the process in order; the checks live by what they look at: `declarations` (fields, step
//! names, tallies, interrupts, the key), `steps` (each step's clauses), `types` (decisions and
//! expressions), `paths` (the graph: reachability, ends, automatic loops, splits and joins).

use crate::ast::{self, BinOp, Expr, ExprKind, Ident, Span};
use crate::catalog::RuleCatalog;
use crate::diag::{closest_or, Code, Diagnostic};
use crate::model::{self, EdgeKind, FieldType, Node, StepId, Transition};
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Bfs, EdgeRef, Reversed};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

mod declarations;
mod paths;
mod steps;
mod types;

use paths::*;
use types::*;

/// Most steps in one process. Generated 2,000-step processes check in milliseconds; past
/// this, split the procedure with `call`.
pub const STEPS_MAX: usize = 10_000;

/// What other processes look like from outside, for checking `call` steps.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signature {
    pub fields: BTreeMap<String, FieldType>,
    /// Fields a case cannot start without (required, no default): a `call` must pass them.
    pub required: BTreeSet<String>,
}

impl Signature {
    pub fn of(ast: &ast::Process) -> Signature {
        Signature {
            fields: ast.fields.iter().map(|f| (f.name.name.clone(), field_type(&f.ty))).collect(),
            required: ast
                .fields
                .iter()
                .filter(|f| f.required && f.default.is_none())
                .map(|f| f.name.name.clone())
                .collect(),
        }
    }
}

/// What the checker may consult beyond the file itself. Both parts are optional: without
/// rules, role and table names are not checked; without signatures, `call` targets aren't.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckContext<'a> {
    pub catalog: Option<&'a RuleCatalog>,
    pub processes: Option<&'a BTreeMap<String, Signature>>,
}

/// The outcome of checking one file: the model when there is no error, and every diagnostic.
#[derive(Debug)]
pub struct Checked {
    pub process: Option<model::Process>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Parses and checks one source text.
pub fn compile(source: &str, ctx: &CheckContext) -> Checked {
    match crate::parse::parse(source) {
        Ok(ast) => check(&ast, ctx),
        Err(diagnostics) => Checked { process: None, diagnostics },
    }
}

/// Checks a parsed file.
pub fn check(ast: &ast::Process, ctx: &CheckContext) -> Checked {
    let mut c = Checker::new(ast, *ctx);
    let process = c.run();
    let mut diagnostics = c.diags;
    diagnostics.sort_by_key(|d| (d.span.start, d.code));
    let has_error = diagnostics.iter().any(Diagnostic::is_error);
    Checked { process: if has_error { None } else { process }, diagnostics }
}

fn field_type(t: &ast::TypeExpr) -> FieldType {
    match t {
        ast::TypeExpr::Text => FieldType::Text,
        ast::TypeExpr::Int { range } => FieldType::Int { min: range.map(|r| r.0), max: range.map(|r| r.1) },
        ast::TypeExpr::Decimal => FieldType::Decimal,
        ast::TypeExpr::Bool => FieldType::Bool,
        ast::TypeExpr::Date => FieldType::Date,
        ast::TypeExpr::DateTime => FieldType::DateTime,
        ast::TypeExpr::Choice(v) => FieldType::Choice(v.iter().map(|i| i.name.clone()).collect()),
        ast::TypeExpr::ListOfText => FieldType::ListOfText,
        ast::TypeExpr::User => FieldType::User,
    }
}

/// The type of an expression.
#[derive(Debug, Clone, PartialEq)]
enum Ty {
    Text,
    Int,
    Decimal,
    Bool,
    Date,
    DateTime,
    Duration,
    Choice(Vec<String>),
    List(Box<Ty>),
    /// A bare name that is not a field: valid only as a choice value.
    Symbol(String),
    /// A value from the rules, or the result of an error already reported.
    Any,
}

impl Ty {
    fn of_field(t: &FieldType) -> Ty {
        match t {
            FieldType::Text => Ty::Text,
            FieldType::Int { .. } => Ty::Int,
            FieldType::Decimal => Ty::Decimal,
            FieldType::Bool => Ty::Bool,
            FieldType::Date => Ty::Date,
            FieldType::DateTime => Ty::DateTime,
            FieldType::Choice(v) => Ty::Choice(v.clone()),
            FieldType::ListOfText => Ty::List(Box::new(Ty::Text)),
            FieldType::User => Ty::Text,
        }
    }

    fn is_numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::Decimal | Ty::Any)
    }

    fn is_moment(&self) -> bool {
        matches!(self, Ty::Date | Ty::DateTime | Ty::Any)
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Text => f.write_str("text"),
            Ty::Int => f.write_str("int"),
            Ty::Decimal => f.write_str("decimal"),
            Ty::Bool => f.write_str("bool"),
            Ty::Date => f.write_str("date"),
            Ty::DateTime => f.write_str("datetime"),
            Ty::Duration => f.write_str("duration"),
            Ty::Choice(v) => write!(f, "choice({})", v.join(", ")),
            Ty::List(t) => write!(f, "list of {t}"),
            Ty::Symbol(s) => write!(f, "the bare name `{s}`"),
            Ty::Any => f.write_str("any"),
        }
    }
}

/// A date, a date and time, or a type not known (an error already reported).
fn is_date(t: &Ty) -> bool {
    matches!(t, Ty::Date | Ty::DateTime | Ty::Any)
}

const FUNCTIONS: &[(&str, usize, &str)] = &[
    ("now", 0, "datetime"),
    ("today", 0, "date"),
    ("len", 1, "int"),
    // The business calendar: official holidays, working days, make-up working days (调休).
    ("is_holiday", 1, "bool"),
    ("is_workday", 1, "bool"),
    ("is_makeup_day", 1, "bool"),
    ("month", 1, "text"),
    // The duty roster and leave of the rules' people: `on_duty(user, date)`, `is_away(user, date)`.
    ("on_duty", 2, "bool"),
    ("is_away", 2, "bool"),
    // The local date of a date and time (`shift_date + 1 day` is one).
    ("local_date", 1, "date"),
];

struct Checker<'a> {
    ast: &'a ast::Process,
    ctx: CheckContext<'a>,
    diags: Vec<Diagnostic>,
    fields: BTreeMap<&'a str, &'a ast::FieldDecl>,
    steps: BTreeMap<&'a str, usize>,
    used_fields: BTreeSet<String>,
    /// Some `->` named no step: the checks that follow paths would only echo it.
    unresolved: bool,
    /// The rules' values and decision tables this process refers to.
    rules_used: BTreeSet<String>,
}

impl<'a> Checker<'a> {
    fn new(ast: &'a ast::Process, ctx: CheckContext<'a>) -> Self {
        Checker {
            ast,
            ctx,
            diags: Vec::new(),
            fields: BTreeMap::new(),
            steps: BTreeMap::new(),
            used_fields: BTreeSet::new(),
            unresolved: false,
            rules_used: BTreeSet::new(),
        }
    }

    fn err(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn run(&mut self) -> Option<model::Process> {
        let ast = self.ast;
        if ast.steps.len() > STEPS_MAX {
            self.err(
                Diagnostic::new(
                    Code::TooManySteps,
                    ast.id.span.clone(),
                    format!("the process has {} steps; the limit is {STEPS_MAX}", ast.steps.len()),
                )
                .hint("split the procedure into sub-processes with `call`"),
            );
            return None;
        }
        self.declare_fields();
        self.declare_steps();
        if ast.source.is_none() {
            self.err(
                Diagnostic::new(
                    Code::MissingSource,
                    ast.id.span.clone(),
                    "the process does not say which manual section it follows",
                )
                .hint("add `source \"002 §三(一)\"` so that reviewers can check the flow against the manual"),
            );
        }
        if let Some((key, span)) = &ast.key {
            self.check_key(key, span);
        }
        let start = match &ast.start {
            Some(next) => Some(self.transition(next, "start")),
            None => {
                self.err(
                    Diagnostic::new(Code::MissingStart, ast.id.span.clone(), "the process has no `start`")
                        .hint("add `start -> first_step` inside the process"),
                );
                None
            }
        };
        let interrupts = self.interrupts();
        let kept_messages = self.kept_messages();
        let tallies = self.tallies();
        let indexes = self.indexes();
        let steps: Vec<model::Step> = ast.steps.iter().enumerate().map(|(i, s)| self.step(i, s)).collect();
        self.no_local_listener(&interrupts, &steps);
        let graph = start.as_ref().map(|start| build_graph(start, &interrupts, &steps));
        if let Some(graph) = &graph {
            // Whatever else is wrong, so that one run shows every problem; but with a dangling
            // `->` the checks that follow paths (reachable, reaches an end, reaches the join)
            // would report its missing edge again and again, so those wait for it.
            self.check_graph(graph, &steps);
        }
        self.warn_unused_fields();
        if self.diags.iter().any(|d| d.is_error()) {
            return None;
        }
        let (start, graph) = (start?, graph?);
        let fields = ast
            .fields
            .iter()
            .map(|f| model::Field {
                name: f.name.name.clone(),
                ty: field_type(&f.ty),
                label: f.label.clone(),
                required: f.required,
                sensitive: f.sensitive,
                own: f.own,
                default: f.default.clone(),
            })
            .collect::<Vec<_>>();
        let mut process = model::Process {
            id: ast.id.name.clone(),
            label: ast.label.clone(),
            doc: ast.doc.clone(),
            source: ast.source.clone(),
            key: ast.key.as_ref().map(|k| k.0.clone()),
            field_by_name: fields.iter().enumerate().map(|(i, f)| (f.name.clone(), i)).collect(),
            step_by_name: steps.iter().map(|s| (s.name.clone(), s.id)).collect(),
            fields,
            start,
            interrupts,
            kept_messages,
            tallies,
            indexes,
            rules_used: std::mem::take(&mut self.rules_used),
            steps,
            graph,
        };
        link_joins(&mut process);
        Some(process)
    }

    /// `for each ITEM in LIST`: a list, a count that fits, and no handler that would take one
    /// instance out of the step on its own.
    fn each(&mut self, e: &ast::Each, handlers: &[ast::Handler]) -> model::Each {
        let t = self.ty(&e.list);
        if !matches!(t, Ty::List(_) | Ty::Any) {
            self.err(Diagnostic::new(
                Code::TypeMismatch,
                e.list.span.clone(),
                format!("`for each` needs a list, found {t}"),
            ));
        }
        if let Some(u) = &e.until {
            let t = self.ty(u);
            self.expect_bool(u, &t, "the condition of `until`");
        }
        if let Some((0, span)) = &e.enough {
            self.err(Diagnostic::new(Code::BadEach, span.clone(), "`until 0 done` would never open a task"));
        }
        for h in handlers {
            if h.actions.iter().any(|a| matches!(a, ast::Action::Goto(_))) {
                self.err(
                    Diagnostic::new(
                        Code::BadEach,
                        h.span.clone(),
                        "a task `for each` item cannot leave by a handler's `->`: its instances go on together",
                    )
                    .hint("escalate, notify or remind here; leave the step after it, by a decision"),
                );
            }
        }
        model::Each {
            item: e.item.name.clone(),
            list: e.list.clone(),
            in_turn: e.in_turn,
            enough: e.enough.as_ref().map(|(n, _)| *n),
            until: e.until.clone(),
        }
    }
}
