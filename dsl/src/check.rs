//! AST to `model::Process`: name resolution, type checking and graph checks.
//!
//! The checker never stops at the first problem: it records every diagnostic it can find in
//! one run and builds the model only when none of them is an error.

use crate::ast::{self, BinOp, Expr, ExprKind, Ident, Span};
use crate::catalog::RuleCatalog;
use crate::diag::{did_you_mean, Code, Diagnostic};
use crate::model::{self, EdgeKind, FieldType, Node, StepId, Transition};
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Bfs, EdgeRef, Reversed};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

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
            self.err(Diagnostic::new(Code::BadHandler, span.clone(), "`until 0 done` would never open a task"));
        }
        for h in handlers {
            if h.actions.iter().any(|a| matches!(a, ast::Action::Goto(_))) {
                self.err(
                    Diagnostic::new(
                        Code::BadHandler,
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

    // ------------------------------------------------------------ tallies

    /// `tally NAME by KEYS on end OUTCOME`: a unique name, keys that are values, an outcome
    /// that is an `end` of this process.
    fn tallies(&mut self) -> Vec<(String, Vec<Expr>, String)> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for t in &self.ast.tallies {
            if !seen.insert(t.name.name.clone()) {
                self.err(Diagnostic::new(
                    Code::BadFieldDecl,
                    t.name.span.clone(),
                    format!("tally `{}` is declared twice", t.name.name),
                ));
            }
            for k in &t.keys {
                let ty = self.ty(k);
                self.no_symbol(k, &ty);
            }
            let is_end = self
                .steps
                .get(t.outcome.name.as_str())
                .is_some_and(|i| matches!(self.ast.steps[*i].kind, ast::StepKind::End));
            if !is_end {
                let ends =
                    self.ast.steps.iter().filter(|s| matches!(s.kind, ast::StepKind::End)).map(|s| s.id.name.as_str());
                let hint = did_you_mean(&t.outcome.name, ends)
                    .unwrap_or_else(|| "name one of the process's `end` steps".into());
                self.err(
                    Diagnostic::new(
                        Code::UnknownStep,
                        t.outcome.span.clone(),
                        format!("`{}` is not an `end` of this process", t.outcome.name),
                    )
                    .hint(hint),
                );
            }
            out.push((t.name.name.clone(), t.keys.clone(), t.outcome.name.clone()));
        }
        out
    }

    // ------------------------------------------------------------ interrupts

    /// `keep message NAME for DURATION`: once per message, a duration, and some step that
    /// listens for it (or it could only expire).
    fn kept_messages(&mut self) -> Vec<(String, Expr)> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (message, ttl, _) in &self.ast.kept {
            if !seen.insert(message.name.clone()) {
                self.err(Diagnostic::new(
                    Code::BadHandler,
                    message.span.clone(),
                    format!("message `{}` is already kept", message.name),
                ));
            }
            let t = self.ty(ttl);
            self.expect_duration(ttl, &t, "how long a message is kept");
            let listened = self.ast.steps.iter().any(|s| match &s.kind {
                ast::StepKind::Task(t) => {
                    t.handlers.iter().any(|h| matches!(&h.trigger, ast::Trigger::Message(m) if m.name == message.name))
                }
                ast::StepKind::Wait(w) => w.on_message.iter().any(|(m, _)| m.name == message.name),
                _ => false,
            });
            if !listened {
                self.err(
                    Diagnostic::new(
                        Code::BadHandler,
                        message.span.clone(),
                        format!("no step listens for message `{}`, so a kept one could only expire", message.name),
                    )
                    .hint("keep a message that a `wait` (`on message`) or a task (`when message`) hears"),
                );
            }
            out.push((message.name.clone(), ttl.clone()));
        }
        out
    }

    fn interrupts(&mut self) -> Vec<(String, StepId)> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (message, target, _) in &self.ast.interrupts {
            if !seen.insert(message.name.clone()) {
                self.err(Diagnostic::new(
                    Code::BadHandler,
                    message.span.clone(),
                    format!("message `{}` already interrupts the case", message.name),
                ));
            }
            out.push((message.name.clone(), self.resolve(target)));
        }
        out
    }

    /// A message that interrupts the whole case is not also heard by one step.
    fn no_local_listener(&mut self, interrupts: &[(String, StepId)], steps: &[model::Step]) {
        let messages: BTreeSet<&String> = interrupts.iter().map(|(m, _)| m).collect();
        for message in messages {
            for s in steps {
                let listens = match &s.kind {
                    model::StepKind::Task(t) => {
                        t.handlers.iter().any(|h| h.trigger == model::Trigger::Message(message.clone()))
                    }
                    model::StepKind::Wait(w) => w.on_message.iter().any(|(m, _)| m == message),
                    _ => false,
                };
                if listens {
                    let span = self.ast.steps[s.id.index()].id.span.clone();
                    self.err(
                        Diagnostic::new(
                            Code::BadHandler,
                            span,
                            format!("step `{}` listens to message `{message}`, which interrupts the whole case", s.name),
                        )
                        .hint("the process-level `on message` always takes it: listen to another message here, or drop one of the two"),
                    );
                }
            }
        }
    }

    // ------------------------------------------------------------ declarations

    fn declare_fields(&mut self) {
        for f in &self.ast.fields {
            if let Some(first) = self.fields.get(f.name.name.as_str()) {
                let first_span = first.name.span.clone();
                self.err(
                    Diagnostic::new(
                        Code::DuplicateField,
                        f.name.span.clone(),
                        format!("field `{}` is declared twice", f.name.name),
                    )
                    .note(first_span, "first declared here")
                    .hint("rename one of them or remove the duplicate"),
                );
                continue;
            }
            self.fields.insert(&f.name.name, f);
        }
        for f in self.ast.fields.iter().filter(|f| f.own && f.ty != ast::TypeExpr::User) {
            self.err(
                Diagnostic::new(
                    Code::BadFieldDecl,
                    f.name.span.clone(),
                    format!("`own` is for user fields: `{}` is not one", f.name.name),
                )
                .hint(format!("declare it `{}: user ... own`", f.name.name)),
            );
        }
        for f in &self.ast.fields {
            match &f.ty {
                ast::TypeExpr::Int { range: Some((lo, hi)) } if lo > hi => self.err(
                    Diagnostic::new(Code::BadFieldDecl, f.span.clone(), format!("the range {lo}..{hi} is empty"))
                        .hint(format!("write the smaller bound first: int({hi}..{lo})")),
                ),
                ast::TypeExpr::Choice(values) => {
                    let mut seen = BTreeMap::new();
                    for v in values {
                        if let Some(first) = seen.insert(v.name.as_str(), v.span.clone()) {
                            self.err(
                                Diagnostic::new(
                                    Code::BadFieldDecl,
                                    v.span.clone(),
                                    format!("choice value `{}` is listed twice", v.name),
                                )
                                .note(first, "first listed here"),
                            );
                        }
                    }
                }
                _ => {}
            }
            if let Some(default) = &f.default {
                let target = field_type(&f.ty);
                let got = self.ty(default);
                self.check_assignable(&target, default, &got, &format!("the default of `{}`", f.name.name));
            }
            if f.required || f.own {
                // Demanded when the case starts: that is a use.
                self.used_fields.insert(f.name.name.clone());
            }
        }
    }

    fn declare_steps(&mut self) {
        for (i, s) in self.ast.steps.iter().enumerate() {
            if let Some(&first) = self.steps.get(s.id.name.as_str()) {
                let first_span = self.ast.steps[first].id.span.clone();
                self.err(
                    Diagnostic::new(
                        Code::DuplicateStep,
                        s.id.span.clone(),
                        format!("step `{}` is defined twice", s.id.name),
                    )
                    .note(first_span, "first defined here")
                    .hint("step names must be unique within a process; rename one"),
                );
                // Which of the two a `->` means is unknown: paths cannot be followed.
                self.unresolved = true;
                continue;
            }
            self.steps.insert(&s.id.name, i);
        }
        // An old name stands for one step, and no longer names a step of its own.
        let mut old_names: std::collections::BTreeMap<&str, &ast::Ident> = Default::default();
        for s in &self.ast.steps {
            let Some(old) = &s.renamed_from else { continue };
            if self.steps.contains_key(old.name.as_str()) {
                self.err(
                    Diagnostic::new(
                        Code::DuplicateStep,
                        old.span.clone(),
                        format!("step `{}` is renamed from `{}`, which is still a step here", s.id.name, old.name),
                    )
                    .hint("a migration would not know which of the two a case at the old name belongs to; remove one"),
                );
            } else if let Some(first) = old_names.insert(&old.name, &s.id) {
                self.err(
                    Diagnostic::new(
                        Code::DuplicateStep,
                        old.span.clone(),
                        format!("`{}` and `{}` are both renamed from `{}`", first.name, s.id.name, old.name),
                    )
                    .note(first.span.clone(), "renamed from it here too")
                    .hint("an old step moves to one new step; map the other in the migration instead"),
                );
            }
        }
    }

    fn check_key(&mut self, key: &str, span: &Span) {
        let mut rest = key;
        while let Some(open) = rest.find('{') {
            let Some(close) = rest[open..].find('}') else {
                self.err(Diagnostic::new(Code::BadKey, span.clone(), "a `{` in the key template is never closed"));
                return;
            };
            let inner = &rest[open + 1..open + close];
            let (name, format) = inner.split_once(':').unwrap_or((inner, ""));
            match name {
                "date" => {
                    if format.is_empty() || !format.contains('%') {
                        self.err(
                            Diagnostic::new(Code::BadKey, span.clone(), format!("`{{{inner}}}` has no date format"))
                                .hint("write a strftime format, e.g. `{date:%Y%m%d}`"),
                        );
                    } else if let Some(bad) = bad_date_code(format) {
                        self.err(
                            Diagnostic::new(
                                Code::BadKey,
                                span.clone(),
                                format!("`{{{inner}}}`: `{bad}` is not a date format code"),
                            )
                            .hint("use strftime codes such as %Y (year), %m (month), %d (day), %H%M (time)"),
                        );
                    }
                }
                "seq" => {
                    let zero_padded = format.starts_with('0') && format[1..].parse::<u8>().is_ok_and(|w| w <= 12);
                    if !(format.is_empty() || zero_padded) {
                        self.err(
                            Diagnostic::new(
                                Code::BadKey,
                                span.clone(),
                                format!("`{{{inner}}}`: bad sequence width `{format}`"),
                            )
                            .hint("zero-pad with a width up to 12, e.g. `{seq:03}`"),
                        );
                    }
                }
                field => match self.fields.get(field) {
                    Some(_) => {
                        self.used_fields.insert(field.to_string());
                    }
                    None => {
                        let hint = did_you_mean(field, ["date", "seq"].into_iter().chain(self.fields.keys().copied()))
                            .unwrap_or_else(|| "use `{date:%Y%m%d}`, `{seq:03}` or a field name".into());
                        self.err(
                            Diagnostic::new(
                                Code::BadKey,
                                span.clone(),
                                format!("`{{{inner}}}` is not a date, a sequence or a field"),
                            )
                            .hint(hint),
                        );
                    }
                },
            }
            rest = &rest[open + close + 1..];
        }
        if !key.contains("{seq") {
            self.err(
                Diagnostic::new(
                    Code::BadKey,
                    span.clone(),
                    "the key template has no `{seq}`, so two cases could get the same key",
                )
                .hint("add a sequence, e.g. `{date:%Y%m%d}-{seq:03}`"),
            );
        }
    }

    // ------------------------------------------------------------ steps

    fn resolve(&mut self, target: &Ident) -> StepId {
        match self.steps.get(target.name.as_str()) {
            Some(&i) => StepId(i as u32),
            None => {
                let meant = crate::diag::closest(&target.name, self.steps.keys().copied()).map(str::to_string);
                let hint = match &meant {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => format!("declare it, e.g. `task {} {{ ... }}` or `end {}`", target.name, target.name),
                };
                self.err(
                    Diagnostic::new(
                        Code::UnknownStep,
                        target.span.clone(),
                        format!("there is no step named `{}`", target.name),
                    )
                    .hint(hint),
                );
                // A misspelling is followed as the step it surely means, so that the checks
                // of paths still run and one run shows every problem; a name like no step
                // leaves a hole that those checks would only report again and again.
                match meant.and_then(|c| self.steps.get(c.as_str()).copied()) {
                    Some(i) => StepId(i as u32),
                    None => {
                        self.unresolved = true;
                        StepId(u32::MAX)
                    }
                }
            }
        }
    }

    fn transition(&mut self, next: &ast::Next, from: &str) -> Transition {
        match next {
            ast::Next::Goto(t) => Transition::To(self.resolve(t)),
            ast::Next::Decide { branches, otherwise, span } => {
                let mut out = Vec::new();
                for (cond, target) in branches {
                    let t = self.ty(cond);
                    self.expect_bool(cond, &t, "a `when` condition");
                    out.push((cond.clone(), self.resolve(target)));
                }
                let otherwise = otherwise.as_ref().map(|t| self.resolve(t));
                if otherwise.is_none() {
                    self.check_exhaustive(branches, span, from);
                }
                Transition::Decide { branches: out, otherwise }
            }
        }
    }

    fn need_next(&mut self, step: &ast::Step, next: &Option<ast::Next>) -> Transition {
        match next {
            Some(n) => self.transition(n, &step.id.name),
            None => {
                self.err(
                    Diagnostic::new(
                        Code::MissingNext,
                        step.id.span.clone(),
                        format!("step `{}` never says where to go next", step.id.name),
                    )
                    .hint("end the step's block with `-> next_step`, or with `-> decide { ... }`"),
                );
                self.unresolved = true;
                Transition::To(StepId(u32::MAX))
            }
        }
    }

    fn step(&mut self, index: usize, s: &ast::Step) -> model::Step {
        let kind = match &s.kind {
            ast::StepKind::Task(t) => model::StepKind::Task(self.task(s, t)),
            ast::StepKind::Auto(a) => {
                let actions = a.actions.iter().map(|act| self.auto_action(act)).collect();
                model::StepKind::Auto { actions, next: self.need_next(s, &a.next) }
            }
            ast::StepKind::Wait(w) => model::StepKind::Wait(self.wait(s, w)),
            ast::StepKind::Split { branches, guards } => {
                let guards = guards
                    .iter()
                    .map(|g| {
                        g.as_ref().map(|e| {
                            let t = self.ty(e);
                            self.expect_bool(e, &t, "a branch condition");
                            e.clone()
                        })
                    })
                    .collect();
                let mut ids = Vec::new();
                let mut seen = BTreeSet::new();
                for b in branches {
                    if !seen.insert(b.name.as_str()) {
                        self.err(Diagnostic::new(
                            Code::BadBranch,
                            b.span.clone(),
                            format!("branch `{}` is listed twice", b.name),
                        ));
                    }
                    ids.push(self.resolve(b));
                }
                // The join is found in the graph pass; placeholder until then.
                model::StepKind::Split { branches: ids, join: StepId(u32::MAX), guards, region: Vec::new() }
            }
            ast::StepKind::Join { split, quorum, next } => {
                let split_id = self.resolve(split);
                let branches = match self.ast.steps.get(split_id.index()).map(|s| &s.kind) {
                    Some(ast::StepKind::Split { branches, .. }) => branches.len(),
                    _ => usize::MAX,
                };
                if let Some((n, span)) = quorum {
                    if *n == 0 || *n as usize >= branches {
                        self.err(
                            Diagnostic::new(
                                Code::BadBranch,
                                span.clone(),
                                format!("`on {n}`: the split has {branches} branches"),
                            )
                            .hint(format!(
                                "`on N` fires at the N-th arrival, from 1 (`on first`) to {}; to wait for every branch, leave it out",
                                branches.saturating_sub(1)
                            )),
                        );
                    }
                }
                if split_id.0 != u32::MAX
                    && !matches!(self.ast.steps[split_id.index()].kind, ast::StepKind::Split { .. })
                {
                    let kw = self.ast.steps[split_id.index()].kind.keyword();
                    self.err(
                        Diagnostic::new(
                            Code::JoinWithoutSplit,
                            split.span.clone(),
                            format!("`{}` is a `{kw}` step, not a `split`", split.name),
                        )
                        .hint("a join waits for the branches of one `split`: name that split after `of`"),
                    );
                }
                model::StepKind::Join {
                    split: split_id,
                    quorum: quorum.as_ref().map(|q| q.0),
                    next: self.transition(next, &s.id.name),
                }
            }
            ast::StepKind::Call(c) => model::StepKind::Call(self.call(s, c)),
            ast::StepKind::End => model::StepKind::End,
        };
        model::Step {
            id: StepId(index as u32),
            name: s.id.name.clone(),
            label: s.label.clone(),
            renamed_from: s.renamed_from.as_ref().map(|r| r.name.clone()),
            kind,
            span: s.span.clone(),
        }
    }

    fn task(&mut self, s: &ast::Step, t: &ast::TaskStep) -> model::Task {
        let assign = t.assign.as_ref().map(|(a, _)| self.assignee(a));
        if let Some((ast::Assignee::ManagerOfAssignee, span)) = &t.assign {
            self.err(
                Diagnostic::new(
                    Code::BadAssignee,
                    span.clone(),
                    "a new task has no assignee yet, so no manager of one",
                )
                .hint("`manager of assignee` is for `escalate to` and `notify`; assign the task to a role or user"),
            );
        }
        if t.assign.is_none() && t.candidates.is_empty() {
            self.err(
                Diagnostic::new(
                    Code::BadAssignee,
                    s.id.span.clone(),
                    format!("task `{}` has no assignee and no candidate roles", s.id.name),
                )
                .hint("add `assign role cs_rep` (or `candidates cs_rep, cs_manager`)"),
            );
        }
        for role in &t.candidates {
            self.check_role(role);
        }
        if let Some(e) = &t.due {
            let ty = self.ty(e);
            self.expect_duration(e, &ty, "a due time");
        }
        if let Some(e) = &t.remind_every {
            let ty = self.ty(e);
            self.expect_duration(e, &ty, "a reminder interval");
        }
        if t.due.is_none() {
            self.err(
                Diagnostic::new(
                    Code::TaskWithoutDue,
                    s.id.span.clone(),
                    format!("task `{}` has no due time", s.id.name),
                )
                .hint("add `due 2 workdays` (or a value from the rules: `due rules.response_time[urgency]`)"),
            );
        }
        let mut form = Vec::new();
        let mut asked = BTreeSet::new();
        for a in &t.asks {
            if self.field_ref(&a.field).is_some() && !asked.insert(a.field.name.as_str()) {
                self.err(Diagnostic::new(
                    Code::UnknownField,
                    a.field.span.clone(),
                    format!("field `{}` is asked twice", a.field.name),
                ));
            }
            form.push(model::FormField { field: a.field.name.clone(), required: a.required });
        }
        let mut handlers = Vec::new();
        for h in &t.handlers {
            let trigger = match &h.trigger {
                ast::Trigger::Overdue { after } => {
                    if t.due.is_none() {
                        self.err(
                            Diagnostic::new(
                                Code::BadHandler,
                                h.span.clone(),
                                "`when overdue` on a task without a due time never fires",
                            )
                            .hint("add a `due` statement to the task"),
                        );
                    }
                    if let Some(e) = after {
                        let ty = self.ty(e);
                        self.expect_duration(e, &ty, "an escalation delay");
                    }
                    model::Trigger::Overdue { after: after.clone() }
                }
                ast::Trigger::Elapsed { percent, span } => {
                    if t.due.is_none() {
                        self.err(
                            Diagnostic::new(
                                Code::BadHandler,
                                h.span.clone(),
                                "a time threshold on a task without a due time never fires",
                            )
                            .hint("add a `due` statement to the task"),
                        );
                    }
                    if !(1..=99).contains(percent) {
                        self.err(
                            Diagnostic::new(
                                Code::BadHandler,
                                span.clone(),
                                format!("{percent}% is not a threshold between 1% and 99%"),
                            )
                            .hint("for 100% and later use `when overdue`"),
                        );
                    }
                    model::Trigger::Elapsed { percent: *percent }
                }
                ast::Trigger::Message(m) => model::Trigger::Message(m.name.clone()),
            };
            let actions = h
                .actions
                .iter()
                .map(|a| match a {
                    ast::Action::Escalate(who, _) => model::Action::Escalate(self.assignee(who)),
                    ast::Action::Notify(who, _) => model::Action::Notify(self.assignee(who)),
                    ast::Action::RaisePriority => model::Action::RaisePriority,
                    ast::Action::Remind => model::Action::Remind,
                    ast::Action::Goto(target) => model::Action::Goto(self.resolve(target)),
                })
                .collect();
            handlers.push(model::Handler { trigger, actions });
        }
        let next = self.need_next(s, &t.next);
        let each = t.each.as_ref().map(|e| Box::new(self.each(e, &t.handlers)));
        let collect = t
            .collect
            .iter()
            .map(|(field, list)| {
                if self.field_ref(field).is_some() && !t.asks.iter().any(|a| a.field.name == field.name) {
                    self.err(
                        Diagnostic::new(
                            Code::UnknownField,
                            field.span.clone(),
                            format!("`collect {}`: the task does not ask for it", field.name),
                        )
                        .hint(format!("add `asks {}`", field.name)),
                    );
                }
                if let Some(decl) = self.field_ref(list) {
                    if field_type(&decl.ty) != FieldType::ListOfText {
                        self.err(Diagnostic::new(
                            Code::TypeMismatch,
                            list.span.clone(),
                            format!("`collect ... into {}`: it must be a `list text` field", list.name),
                        ));
                    }
                }
                if t.each.is_none() {
                    self.err(Diagnostic::new(
                        Code::BadHandler,
                        field.span.clone(),
                        "`collect` gathers the answers of a task `for each` item: this task has no `for each`",
                    ));
                }
                (field.name.clone(), list.name.clone())
            })
            .collect();
        let not_same_as = t
            .not_same_as
            .iter()
            .map(|step| {
                let id = self.resolve(step);
                if id.0 != u32::MAX && !matches!(self.ast.steps[id.index()].kind, ast::StepKind::Task(_)) {
                    self.err(
                        Diagnostic::new(
                            Code::BadAssignee,
                            step.span.clone(),
                            format!("`{}` is not a task, so nobody \"did\" it", step.name),
                        )
                        .hint("`not same as` names human tasks whose assignees may not do this one"),
                    );
                }
                id
            })
            .collect();
        model::Task {
            each,
            collect,
            assign,
            not_same_as,
            candidates: t.candidates.iter().map(|r| r.name.clone()).collect(),
            due: t.due.clone(),
            remind_every: t.remind_every.clone(),
            form,
            handlers,
            next,
        }
    }

    /// `role from FIELD`: a text or choice field whose every possible value is a role of the
    /// rules: each choice, each text a decision table can write into it, each text literal set.
    fn check_role_field(&mut self, field: &Ident) {
        let Some(decl) = self.field_ref(field) else { return };
        let mut values: Vec<String> = match field_type(&decl.ty) {
            FieldType::Choice(v) => v,
            FieldType::Text => Vec::new(),
            other => {
                self.err(Diagnostic::new(
                    Code::BadAssignee,
                    field.span.clone(),
                    format!("`role from {}`: it must be a text or choice field naming a role, not {other}", field.name),
                ));
                return;
            }
        };
        if let Some(catalog) = self.ctx.catalog {
            for s in &self.ast.steps {
                let ast::StepKind::Auto(a) = &s.kind else { continue };
                for action in &a.actions {
                    match action {
                        ast::AutoAction::Lookup { table, outputs, .. } => {
                            for (_, column) in outputs.iter().filter(|(f, _)| f.name == field.name) {
                                if let Some(texts) =
                                    catalog.tables.get(&table.name).and_then(|t| t.output_texts.get(&column.name))
                                {
                                    values.extend(texts.iter().cloned());
                                }
                            }
                        }
                        ast::AutoAction::Set { field: f, value } if f.name == field.name => {
                            if let ExprKind::Text(t) = &value.kind {
                                values.push(t.clone());
                            }
                        }
                        _ => {}
                    }
                }
            }
            let mut unknown: Vec<String> = values.into_iter().filter(|v| !catalog.roles.contains(v)).collect();
            unknown.sort();
            unknown.dedup();
            if !unknown.is_empty() {
                let list = unknown.iter().map(|u| format!("`{u}`")).collect::<Vec<_>>().join(", ");
                self.err(
                    Diagnostic::new(
                        Code::UnknownRole,
                        field.span.clone(),
                        format!("`role from {}`: it can hold {list}, which the rules define no role for", field.name),
                    )
                    .hint("define the roles under `[roles]`, or correct the values that fill the field"),
                );
            }
        }
    }

    fn check_role(&mut self, role: &Ident) {
        if let Some(catalog) = self.ctx.catalog {
            if !catalog.roles.contains(&role.name) {
                let hint = did_you_mean(&role.name, catalog.roles.iter().map(String::as_str))
                    .unwrap_or_else(|| "define it under `[roles.NAME]` in the rules".into());
                self.err(
                    Diagnostic::new(
                        Code::UnknownRole,
                        role.span.clone(),
                        format!("the rules define no role `{}`", role.name),
                    )
                    .hint(hint),
                );
            }
        }
    }

    fn assignee(&mut self, a: &ast::Assignee) -> model::Assignee {
        match a {
            ast::Assignee::Role { role, strategy, familiar } => {
                self.check_role(role);
                if let Some(f) = familiar {
                    if let Some(decl) = self.field_ref(f) {
                        if !matches!(field_type(&decl.ty), FieldType::Text | FieldType::Choice(_)) {
                            self.err(Diagnostic::new(
                                Code::BadAssignee,
                                f.span.clone(),
                                format!(
                                    "`familiar by {}`: it must be a text or choice field (a customer, a school)",
                                    f.name
                                ),
                            ));
                        }
                    }
                }
                if let Some(s) = strategy {
                    if !crate::model::STRATEGIES.contains(&s.name.as_str()) {
                        let hint = did_you_mean(&s.name, crate::model::STRATEGIES)
                            .unwrap_or_else(|| format!("use one of: {}", crate::model::STRATEGIES.join(", ")));
                        self.err(
                            Diagnostic::new(
                                Code::BadAssignee,
                                s.span.clone(),
                                format!("unknown assignment strategy `{}`", s.name),
                            )
                            .hint(hint),
                        );
                    }
                }
                model::Assignee::Role {
                    role: role.name.clone(),
                    strategy: strategy.as_ref().map(|s| s.name.clone()),
                    familiar: familiar.as_ref().map(|f| f.name.clone()),
                }
            }
            ast::Assignee::User(u) => model::Assignee::User(u.clone()),
            ast::Assignee::Field(f) => {
                if let Some(decl) = self.field_ref(f) {
                    if !matches!(decl.ty, ast::TypeExpr::Text | ast::TypeExpr::User) {
                        self.err(
                            Diagnostic::new(
                                Code::BadAssignee,
                                f.span.clone(),
                                format!("field `{}` is not a text field holding a user name", f.name),
                            )
                            .hint("assign by a `text` field that holds the user's id"),
                        );
                    }
                }
                model::Assignee::Field(f.name.clone())
            }
            ast::Assignee::SameAs(step) => {
                let id = self.resolve(step);
                if id.0 != u32::MAX && !matches!(self.ast.steps[id.index()].kind, ast::StepKind::Task(_)) {
                    self.err(
                        Diagnostic::new(
                            Code::BadAssignee,
                            step.span.clone(),
                            format!("`{}` is not a task, so nobody \"did\" it", step.name),
                        )
                        .hint("`same as` names a human task whose assignee should do this one too"),
                    );
                }
                model::Assignee::SameAs(id)
            }
            ast::Assignee::ManagerOfAssignee => model::Assignee::ManagerOfAssignee,
            ast::Assignee::RoleFrom { field, strategy } => {
                self.check_role_field(field);
                model::Assignee::RoleFrom {
                    field: field.name.clone(),
                    strategy: strategy.as_ref().map(|s| s.name.clone()),
                }
            }
        }
    }

    fn auto_action(&mut self, a: &ast::AutoAction) -> model::AutoAction {
        match a {
            ast::AutoAction::Set { field, value } => {
                let got = self.ty(value);
                if let Some(decl) = self.field_ref(field) {
                    let target = field_type(&decl.ty);
                    self.check_assignable(&target, value, &got, &format!("field `{}`", field.name));
                }
                model::AutoAction::Set { field: field.name.clone(), value: value.clone() }
            }
            ast::AutoAction::Lookup { table, inputs, outputs } => {
                self.rules_used.insert(table.name.clone());
                let shape = self.ctx.catalog.map(|c| (c, c.tables.get(&table.name)));
                if let Some((catalog, None)) = shape {
                    let hint = did_you_mean(&table.name, catalog.tables.keys().map(String::as_str))
                        .unwrap_or_else(|| "define it under `[decision_tables.NAME]` in the rules".into());
                    self.err(
                        Diagnostic::new(
                            Code::UnknownRule,
                            table.span.clone(),
                            format!("the rules define no decision table `{}`", table.name),
                        )
                        .hint(hint),
                    );
                }
                let shape = shape.and_then(|(_, s)| s);
                for (name, value) in inputs {
                    // A bare name here must be a field: a misspelt one would reach the table as text.
                    let t = self.ty(value);
                    self.no_symbol(value, &t);
                    if let Some(shape) = shape {
                        if !shape.inputs.contains(&name.name) {
                            self.err(
                                Diagnostic::new(
                                    Code::UnknownRule,
                                    name.span.clone(),
                                    format!("table `{}` has no input `{}`", table.name, name.name),
                                )
                                .hint(format!("its inputs are: {}", shape.inputs.join(", "))),
                            );
                        }
                    }
                }
                if let Some(shape) = shape {
                    let missing: Vec<&str> = shape
                        .inputs
                        .iter()
                        .filter(|i| !inputs.iter().any(|(n, _)| n.name == **i))
                        .map(String::as_str)
                        .collect();
                    if !missing.is_empty() {
                        self.err(
                            Diagnostic::new(
                                Code::UnknownRule,
                                table.span.clone(),
                                format!("table `{}` also needs input(s): {}", table.name, missing.join(", ")),
                            )
                            .hint(format!("pass each, e.g. `{{ {} }}`", shape.inputs.join(", "))),
                        );
                    }
                }
                if let Some(shape) = shape {
                    self.table_covers(table, shape, inputs);
                }
                for (field, column) in outputs {
                    self.field_ref(field);
                    if let Some(shape) = shape {
                        if !shape.outputs.contains(&column.name) {
                            self.err(
                                Diagnostic::new(
                                    Code::UnknownRule,
                                    column.span.clone(),
                                    format!("table `{}` has no output `{}`", table.name, column.name),
                                )
                                .hint(format!("its outputs are: {}", shape.outputs.join(", "))),
                            );
                        }
                    }
                }
                model::AutoAction::Lookup {
                    table: table.name.clone(),
                    inputs: inputs.iter().map(|(n, e)| (n.name.clone(), e.clone())).collect(),
                    outputs: outputs.iter().map(|(f, c)| (f.name.clone(), c.name.clone())).collect(),
                }
            }
        }
    }

    /// FLOW038: every combination of the values the inputs can take matches some row. An
    /// input's values: a choice's, a bool's, a bounded int's range; for an unbounded int or
    /// free text, what the column's conditions name and a value beside each (which stands for
    /// every value between). Inputs of other kinds, or too many combinations, are not checked.
    fn table_covers(&mut self, table: &ast::Ident, shape: &crate::catalog::TableShape, inputs: &[(ast::Ident, Expr)]) {
        use crate::catalog::Atom;
        const COMBINATIONS_MAX: usize = 100_000;
        if shape.rows.is_empty() {
            return;
        }
        let mut domains: Vec<Vec<Atom>> = Vec::new();
        for (col, input) in shape.inputs.iter().enumerate() {
            let Some((_, expr)) = inputs.iter().find(|(n, _)| n.name == *input) else { return };
            let ExprKind::Name(field) = &expr.kind else { return };
            let Some(decl) = self.fields.get(field.as_str()) else { return };
            let column = shape.rows.iter().filter_map(|r| r.get(col));
            let domain = match &decl.ty {
                ast::TypeExpr::Choice(values) => values.iter().map(|v| Atom::Text(v.name.clone())).collect(),
                ast::TypeExpr::Bool => vec![Atom::Bool(false), Atom::Bool(true)],
                ast::TypeExpr::Int { range: Some((lo, hi)) } if hi.saturating_sub(*lo) <= 1_000 => {
                    (*lo..=*hi).map(Atom::Int).collect()
                }
                ast::TypeExpr::Int { range } => {
                    let mut points: BTreeSet<i64> = [i64::MIN / 2, i64::MAX / 2].into();
                    for c in column.flat_map(|c| c.ints()) {
                        points.extend([c.saturating_sub(1), c, c.saturating_add(1)]);
                    }
                    let (lo, hi) = range.unwrap_or((i64::MIN, i64::MAX));
                    points.extend([lo, hi].into_iter().filter(|b| b.unsigned_abs() < (i64::MAX / 2) as u64));
                    points.into_iter().filter(|p| lo <= *p && *p <= hi).map(Atom::Int).collect()
                }
                ast::TypeExpr::Text | ast::TypeExpr::User => {
                    let mut texts: BTreeSet<String> = column.flat_map(|c| c.texts()).collect();
                    // A text no condition names.
                    texts.insert("\u{0}any other text".into());
                    texts.into_iter().map(Atom::Text).collect()
                }
                _ => return,
            };
            domains.push(domain);
        }
        if domains.iter().map(Vec::len).try_fold(1usize, |n, d| n.checked_mul(d)).is_none_or(|n| n > COMBINATIONS_MAX) {
            return;
        }
        let mut at = vec![0usize; domains.len()];
        loop {
            let combination: Vec<&Atom> = at.iter().zip(&domains).map(|(i, d)| &d[*i]).collect();
            let covered =
                shape.rows.iter().any(|row| row.iter().zip(&combination).all(|(cell, value)| cell.matches(value)));
            if !covered {
                let shown: Vec<String> = shape
                    .inputs
                    .iter()
                    .zip(&combination)
                    .map(|(name, v)| match v {
                        Atom::Text(t) if t.starts_with('\0') => format!("{name} = (a text no row names)"),
                        Atom::Text(t) => format!("{name} = {t}"),
                        Atom::Int(i) if i.unsigned_abs() >= (i64::MAX / 2) as u64 => {
                            format!("{name} = {}", if *i < 0 { "(very low)" } else { "(very high)" })
                        }
                        Atom::Int(i) => format!("{name} = {i}"),
                        Atom::Bool(b) => format!("{name} = {b}"),
                    })
                    .collect();
                self.err(
                    Diagnostic::new(
                        Code::TableGap,
                        table.span.clone(),
                        format!(
                            "table `{}` has no row for {}: such a case would stop here",
                            table.name,
                            shown.join(", ")
                        ),
                    )
                    .hint("add a row for it to the rules (or a last row with no conditions), or narrow the field's values"),
                );
                return;
            }
            // The next combination, the last input fastest.
            let mut i = at.len();
            loop {
                if i == 0 {
                    return;
                }
                i -= 1;
                at[i] += 1;
                if at[i] < domains[i].len() {
                    break;
                }
                at[i] = 0;
            }
        }
    }

    fn wait(&mut self, s: &ast::Step, w: &ast::WaitStep) -> model::Wait {
        let condition = w.condition.as_ref().map(|c| match c {
            ast::WaitCondition::For(e) => {
                let ty = self.ty(e);
                self.expect_duration(e, &ty, "a wait duration");
                model::WaitCondition::For(e.clone())
            }
            ast::WaitCondition::Every(e) => {
                let ty = self.ty(e);
                self.expect_duration(e, &ty, "a cycle period");
                model::WaitCondition::Every(e.clone())
            }
            ast::WaitCondition::Until(e) => {
                let ty = self.ty(e);
                if !ty.is_moment() {
                    self.err(
                        Diagnostic::new(
                            Code::TypeMismatch,
                            e.span.clone(),
                            format!("`until` needs a date or datetime, found {ty}"),
                        )
                        .hint("write a date field, optionally with an offset: `until install_date - 1 workday`"),
                    );
                }
                model::WaitCondition::Until(e.clone())
            }
        });
        let mut seen = BTreeSet::new();
        let on_message = w
            .on_message
            .iter()
            .map(|(m, t)| {
                if !seen.insert(m.name.as_str()) {
                    self.err(Diagnostic::new(
                        Code::BadWait,
                        m.span.clone(),
                        format!("message `{}` is handled twice", m.name),
                    ));
                }
                (m.name.clone(), self.resolve(t))
            })
            .collect::<Vec<_>>();
        let on_timeout = w.on_timeout.as_ref().map(|(e, t)| {
            let ty = self.ty(e);
            self.expect_duration(e, &ty, "a timeout");
            (e.clone(), self.resolve(t))
        });
        if condition.is_none() && on_message.is_empty() {
            self.err(
                Diagnostic::new(Code::BadWait, s.id.span.clone(), format!("wait `{}` waits for nothing", s.id.name))
                    .hint("give it `for 3 workdays`, `until a_date`, `every 1w` or `on message name -> step`"),
            );
        }
        if condition.is_some() && on_timeout.is_some() {
            self.err(
                Diagnostic::new(
                    Code::BadWait,
                    w.on_timeout.as_ref().map_or(s.id.span.clone(), |(e, _)| e.span.clone()),
                    "`on timeout` in a wait that already ends on a timer",
                )
                .hint("`on timeout` belongs to message waits; drop it or the `for`/`until`/`every`"),
            );
        }
        if on_timeout.is_some() && on_message.is_empty() {
            self.err(
                Diagnostic::new(Code::BadWait, s.id.span.clone(), "`on timeout` without any `on message`")
                    .hint("a plain timer is written `for DURATION -> step`"),
            );
        }
        let next = match (&w.next, &condition) {
            (Some(n), _) => Some(self.transition(n, &s.id.name)),
            (None, Some(_)) => Some(self.need_next(s, &None)),
            (None, None) => None,
        };
        model::Wait { condition, on_message, on_timeout, next }
    }

    fn call(&mut self, s: &ast::Step, c: &ast::CallStep) -> model::Call {
        let callee = self.ctx.processes.map(|p| p.get(&c.process.name));
        if let Some(None) = callee {
            let names = self.ctx.processes.into_iter().flat_map(|p| p.keys().map(String::as_str));
            let hint = did_you_mean(&c.process.name, names)
                .unwrap_or_else(|| "check the process id after `process` in the called file".into());
            self.err(
                Diagnostic::new(
                    Code::UnknownStep,
                    c.process.span.clone(),
                    format!("there is no process `{}`", c.process.name),
                )
                .hint(hint),
            );
        }
        let callee = callee.flatten();
        if let Some(sig) = callee {
            let missing: Vec<&str> = sig
                .required
                .iter()
                .filter(|f| !c.inputs.iter().any(|(n, _)| n.name == **f))
                .map(String::as_str)
                .collect();
            if !missing.is_empty() {
                self.err(
                    Diagnostic::new(
                        Code::UnknownField,
                        c.process.span.clone(),
                        format!(
                            "`{}` cannot start without {}: pass it with `input`",
                            c.process.name,
                            missing.join(", ")
                        ),
                    )
                    .hint(format!("e.g. `input {} = ...`", missing[0])),
                );
            }
        }
        for (child_field, value) in &c.inputs {
            let got = self.ty(value);
            if let Some(sig) = callee {
                match sig.fields.get(&child_field.name) {
                    Some(t) => self.check_assignable(
                        t,
                        value,
                        &got,
                        &format!("field `{}` of `{}`", child_field.name, c.process.name),
                    ),
                    None => self.err(
                        Diagnostic::new(
                            Code::UnknownField,
                            child_field.span.clone(),
                            format!("process `{}` has no field `{}`", c.process.name, child_field.name),
                        )
                        .hint(
                            did_you_mean(&child_field.name, sig.fields.keys().map(String::as_str)).unwrap_or_default(),
                        ),
                    ),
                }
            }
        }
        for (parent_field, child_field) in &c.outputs {
            let target = self.field_ref(parent_field).map(|d| field_type(&d.ty));
            if let Some(sig) = callee {
                match sig.fields.get(&child_field.name) {
                    Some(t) => {
                        if let Some(target) = target {
                            if !types_compatible(&target, t) {
                                self.err(Diagnostic::new(
                                    Code::TypeMismatch,
                                    child_field.span.clone(),
                                    format!(
                                        "`{}` is {t} in `{}`, but `{}` here is {target}",
                                        child_field.name, c.process.name, parent_field.name
                                    ),
                                ));
                            }
                        }
                    }
                    None => self.err(Diagnostic::new(
                        Code::UnknownField,
                        child_field.span.clone(),
                        format!("process `{}` has no field `{}`", c.process.name, child_field.name),
                    )),
                }
            }
        }
        model::Call {
            process: c.process.name.clone(),
            inputs: c.inputs.iter().map(|(n, e)| (n.name.clone(), e.clone())).collect(),
            outputs: c.outputs.iter().map(|(p, ch)| (p.name.clone(), ch.name.clone())).collect(),
            next: self.need_next(s, &c.next),
        }
    }

    // ------------------------------------------------------------ decisions

    /// Without `else`, the branches must cover every value of one bool or choice field.
    fn check_exhaustive(&mut self, branches: &[(Expr, Ident)], span: &Span, from: &str) {
        let mut field: Option<String> = None;
        let mut covered = BTreeSet::new();
        for (cond, _) in branches {
            match self.covered_values(cond) {
                Some((f, values)) if field.as_ref().is_none_or(|g| *g == f) => {
                    field = Some(f);
                    covered.extend(values);
                }
                _ => {
                    field = None;
                    covered.clear();
                    break;
                }
            }
        }
        let all: Vec<String> = match field.as_deref().and_then(|f| self.fields.get(f)) {
            Some(decl) => match &decl.ty {
                ast::TypeExpr::Bool => vec!["true".into(), "false".into()],
                ast::TypeExpr::Choice(v) => v.iter().map(|i| i.name.clone()).collect(),
                _ => Vec::new(),
            },
            None => Vec::new(),
        };
        let missing: Vec<&String> = all.iter().filter(|v| !covered.contains(*v)).collect();
        if all.is_empty() {
            self.err(
                Diagnostic::new(
                    Code::DecisionNotExhaustive,
                    span.clone(),
                    format!("the decision after `{from}` has no `else`, and its conditions may all be false"),
                )
                .hint("add `else -> step`: without it, a case whose data matches no branch would be stuck"),
            );
        } else if !missing.is_empty() {
            let field = field.unwrap_or_default();
            let missing = missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ");
            self.err(
                Diagnostic::new(
                    Code::DecisionNotExhaustive,
                    span.clone(),
                    format!("the decision after `{from}` does not cover {missing} of `{field}`"),
                )
                .hint(format!("add a branch for {missing}, or `else -> step`")),
            );
        }
    }

    /// If `cond` tests one bool or choice field for a fixed set of values, that field and set.
    fn covered_values(&self, cond: &Expr) -> Option<(String, Vec<String>)> {
        let field_of = |e: &Expr| match &e.kind {
            ExprKind::Name(n) if self.fields.contains_key(n.as_str()) => Some(n.clone()),
            _ => None,
        };
        let value_of = |e: &Expr| match &e.kind {
            ExprKind::Name(n) if !self.fields.contains_key(n.as_str()) => Some(n.clone()),
            ExprKind::Text(t) => Some(t.clone()),
            ExprKind::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        match &cond.kind {
            ExprKind::Paren(inner) => self.covered_values(inner),
            ExprKind::Name(_) => field_of(cond).map(|f| (f, vec!["true".into()])),
            ExprKind::Not(inner) => match &inner.kind {
                ExprKind::Name(_) => field_of(inner).map(|f| (f, vec!["false".into()])),
                _ => None,
            },
            ExprKind::Binary { op: BinOp::Eq, lhs, rhs } => {
                let (f, v) = match (field_of(lhs), field_of(rhs)) {
                    (Some(f), None) => (f, value_of(rhs)?),
                    (None, Some(f)) => (f, value_of(lhs)?),
                    _ => return None,
                };
                Some((f, vec![v]))
            }
            // `x != v`: every value of the field but `v`.
            ExprKind::Binary { op: BinOp::Ne, lhs, rhs } => {
                let (f, v) = match (field_of(lhs), field_of(rhs)) {
                    (Some(f), None) => (f, value_of(rhs)?),
                    (None, Some(f)) => (f, value_of(lhs)?),
                    _ => return None,
                };
                let all: Vec<String> = match &self.fields.get(f.as_str())?.ty {
                    ast::TypeExpr::Bool => vec!["true".into(), "false".into()],
                    ast::TypeExpr::Choice(values) => values.iter().map(|i| i.name.clone()).collect(),
                    _ => return None,
                };
                Some((f, all.into_iter().filter(|x| *x != v).collect()))
            }
            ExprKind::Binary { op: BinOp::In, lhs, rhs } => {
                let f = field_of(lhs)?;
                let ExprKind::List(items) = &rhs.kind else { return None };
                Some((f, items.iter().map(value_of).collect::<Option<Vec<_>>>()?))
            }
            ExprKind::Binary { op: BinOp::Or, lhs, rhs } => {
                let (f1, mut v1) = self.covered_values(lhs)?;
                let (f2, v2) = self.covered_values(rhs)?;
                (f1 == f2).then(|| {
                    v1.extend(v2);
                    (f1, v1)
                })
            }
            _ => None,
        }
    }

    // ------------------------------------------------------------ expressions

    fn field_ref(&mut self, name: &Ident) -> Option<&'a ast::FieldDecl> {
        match self.fields.get(name.name.as_str()) {
            Some(decl) => {
                self.used_fields.insert(name.name.clone());
                Some(*decl)
            }
            None => {
                self.unknown_field(&name.name, &name.span);
                None
            }
        }
    }

    fn unknown_field(&mut self, name: &str, span: &Span) {
        let hint = did_you_mean(name, self.fields.keys().copied())
            .unwrap_or_else(|| format!("declare it in `fields {{ {name}: text }}`"));
        self.err(
            Diagnostic::new(Code::UnknownField, span.clone(), format!("there is no field named `{name}`")).hint(hint),
        );
    }

    /// `rules.NAME` or `rules.NAME[key]`: the value's type, and whether the key can name an entry.
    /// Apart from `ty` so that its frame stays small: `ty` recurses once per operator.
    #[inline(never)]
    fn rule_ty(&mut self, e: &Expr, name: &ast::Ident, key: &Option<Box<Expr>>) -> Ty {
        self.rules_used.insert(name.name.clone());
        let key_ty = key.as_ref().map(|k| {
            let t = self.ty(k);
            self.no_symbol(k, &t);
            t
        });
        if let Some(catalog) = self.ctx.catalog {
            match catalog.values.get(&name.name) {
                None => {
                    let hint = if catalog.tables.contains_key(&name.name) {
                        format!(
                            "`{}` is a decision table: use `lookup {} {{ ... }} => {{ ... }}` in an `auto` step",
                            name.name, name.name
                        )
                    } else {
                        did_you_mean(&name.name, catalog.values.keys().map(String::as_str))
                            .unwrap_or_else(|| "define it under `[values.NAME]` in the rules".into())
                    };
                    self.err(
                        Diagnostic::new(
                            Code::UnknownRule,
                            name.span.clone(),
                            format!("the rules define no value `{}`", name.name),
                        )
                        .hint(hint),
                    );
                }
                Some(shape) => {
                    if shape.keyed != key.is_some() {
                        let how = if shape.keyed {
                            format!("`{}` is a keyed table of values: write `rules.{}[key]`", name.name, name.name)
                        } else {
                            format!("`{}` is a single value: write `rules.{}` without a key", name.name, name.name)
                        };
                        self.err(Diagnostic::new(Code::UnknownRule, e.span.clone(), how));
                    }
                    // Every value the key can take must be a key of the table.
                    let literal = key.as_ref().and_then(|k| match &k.kind {
                        ExprKind::Text(t) => Some(t.clone()),
                        _ => None,
                    });
                    let missing: Vec<&String> = match (&key_ty, shape.keyed) {
                        (Some(Ty::Choice(values)), true) => values.iter().filter(|v| !shape.keys.contains(v)).collect(),
                        (Some(Ty::Text), true) if literal.is_some() => {
                            literal.iter().filter(|v| !shape.keys.contains(v)).collect()
                        }
                        (Some(Ty::Text | Ty::Int | Ty::Decimal | Ty::Date), true) => {
                            // Any value at all: one that names no entry stops the case.
                            self.err(
                                Diagnostic::new(
                                    Code::UnknownRule,
                                    e.span.clone(),
                                    format!(
                                        "`rules.{}[...]` is keyed by a value that can be anything, and one that names no entry would stop the case",
                                        name.name
                                    ),
                                )
                                .hint(format!(
                                    "key it by a choice field whose values are the entries ({}), or by one of them in quotes",
                                    shape.keys.join(", ")
                                )),
                            );
                            Vec::new()
                        }
                        _ => Vec::new(),
                    };
                    if !missing.is_empty() {
                        let missing = missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", ");
                        self.err(
                            Diagnostic::new(
                                Code::UnknownRule,
                                e.span.clone(),
                                format!("`rules.{}` has no entry for {missing}, which the key can be", name.name),
                            )
                            .hint(format!(
                                "add the entries under `[values.{}]` in the rules (it has: {})",
                                name.name,
                                shape.keys.join(", ")
                            )),
                        );
                    }
                    use crate::catalog::ValueKind;
                    return match shape.kind {
                        ValueKind::Text => Ty::Text,
                        ValueKind::Int => Ty::Int,
                        ValueKind::Decimal => Ty::Decimal,
                        ValueKind::Bool => Ty::Bool,
                        ValueKind::Date => Ty::Date,
                        ValueKind::Duration => Ty::Duration,
                        ValueKind::Mixed => Ty::Any,
                    };
                }
            }
        }
        Ty::Any
    }

    /// FLOW022 unless an argument `fits`: "`f` needs WANTS, found TYPE".
    fn want_arg(&mut self, function: &ast::Ident, arg: &Expr, ty: &Ty, fits: bool, wants: &str) {
        if !fits {
            self.err(Diagnostic::new(
                Code::TypeMismatch,
                arg.span.clone(),
                format!("`{}` needs {wants}, found {ty}", function.name),
            ));
        }
    }

    /// A function call's type, its arguments checked. Apart from `ty`, as `rule_ty` is.
    #[inline(never)]
    fn call_ty(&mut self, e: &Expr, function: &ast::Ident, args: &[Expr]) -> Ty {
        match () {
            // `completed_by(STEP)`: who completed a task step of this case (text, empty if nobody yet).
            _ if function.name == "completed_by" => {
                match args {
                    [Expr { kind: ExprKind::Name(step), span }] => match self.steps.get(step.as_str()) {
                        Some(i) if matches!(self.ast.steps[*i].kind, ast::StepKind::Task(_)) => {}
                        _ => self.err(Diagnostic::new(
                            Code::UnknownStep,
                            span.clone(),
                            format!("`completed_by` names a task step of this process; `{step}` is not one"),
                        )),
                    },
                    _ => self.err(Diagnostic::new(
                        Code::UnknownFunction,
                        e.span.clone(),
                        "`completed_by` takes one task step: `completed_by(review)`",
                    )),
                }
                Ty::Text
            }
            // `started_by()`: who started the case.
            _ if function.name == "started_by" => {
                if !args.is_empty() {
                    self.err(Diagnostic::new(Code::UnknownFunction, e.span.clone(), "`started_by` takes no argument"));
                }
                Ty::Text
            }
            // `tally(NAME, key, ...)`: a count this process keeps across cases.
            _ if function.name == "tally" => {
                let declared = match args.first().map(|a| &a.kind) {
                    Some(ExprKind::Name(n)) => self.ast.tallies.iter().find(|t| t.name.name == *n),
                    _ => None,
                };
                match declared {
                    None => {
                        let names: Vec<&str> = self.ast.tallies.iter().map(|t| t.name.name.as_str()).collect();
                        self.err(
                            Diagnostic::new(
                                Code::UnknownFunction,
                                e.span.clone(),
                                "`tally` reads a count this process declares: `tally(NAME, key, ...)`",
                            )
                            .hint(if names.is_empty() {
                                "declare one: `tally NAME by FIELD, ... on end OUTCOME`".to_string()
                            } else {
                                format!("its tallies: {}", names.join(", "))
                            }),
                        );
                    }
                    Some(t) if t.keys.len() + 1 != args.len() => {
                        self.err(Diagnostic::new(
                            Code::UnknownFunction,
                            e.span.clone(),
                            format!("tally `{}` has {} key(s): pass a value for each", t.name.name, t.keys.len()),
                        ));
                    }
                    Some(_) => {}
                }
                for a in args.iter().skip(1) {
                    let ty = self.ty(a);
                    self.no_symbol(a, &ty);
                }
                Ty::Int
            }
            _ => {
                let arg_types: Vec<Ty> = args.iter().map(|a| self.ty(a)).collect();
                match FUNCTIONS.iter().find(|(n, _, _)| *n == function.name) {
                    Some((_, arity, _)) if *arity != args.len() => {
                        self.err(Diagnostic::new(
                            Code::UnknownFunction,
                            e.span.clone(),
                            format!(
                                "`{}` takes {arity} argument{}, not {}",
                                function.name,
                                if *arity == 1 { "" } else { "s" },
                                args.len()
                            ),
                        ));
                        Ty::Any
                    }
                    Some(("is_holiday" | "is_workday" | "is_makeup_day", ..)) => {
                        self.want_arg(function, &args[0], &arg_types[0], is_date(&arg_types[0]), "a date");
                        Ty::Bool
                    }
                    Some(("month", ..)) => {
                        self.want_arg(function, &args[0], &arg_types[0], is_date(&arg_types[0]), "a date");
                        Ty::Text
                    }
                    Some(("on_duty" | "is_away", ..)) => {
                        let user = matches!(arg_types[0], Ty::Text | Ty::Any);
                        self.want_arg(function, &args[0], &arg_types[0], user, "a user first");
                        self.want_arg(function, &args[1], &arg_types[1], is_date(&arg_types[1]), "a date second");
                        Ty::Bool
                    }
                    Some(("local_date", ..)) => {
                        let date = is_date(&arg_types[0]);
                        self.want_arg(function, &args[0], &arg_types[0], date, "a date or a date and time");
                        Ty::Date
                    }
                    Some(("now", ..)) => Ty::DateTime,
                    Some(("today", ..)) => Ty::Date,
                    Some(("len", ..)) => {
                        let sized = matches!(arg_types[0], Ty::List(_) | Ty::Text | Ty::Any);
                        self.want_arg(function, &args[0], &arg_types[0], sized, "a list or text");
                        Ty::Int
                    }
                    _ => {
                        let hint = did_you_mean(&function.name, FUNCTIONS.iter().map(|f| f.0)).unwrap_or_else(|| {
                            format!(
                                "the functions are: {}",
                                FUNCTIONS.iter().map(|f| format!("{}()", f.0)).collect::<Vec<_>>().join(", ")
                            )
                        });
                        self.err(
                            Diagnostic::new(
                                Code::UnknownFunction,
                                function.span.clone(),
                                format!("there is no function `{}`", function.name),
                            )
                            .hint(hint),
                        );
                        Ty::Any
                    }
                }
            }
        }
    }

    fn ty(&mut self, e: &Expr) -> Ty {
        match &e.kind {
            ExprKind::Int(_) => Ty::Int,
            ExprKind::Decimal(_) => Ty::Decimal,
            ExprKind::Text(_) => Ty::Text,
            ExprKind::Bool(_) => Ty::Bool,
            ExprKind::Date(d) => {
                if !valid_date_literal(d) {
                    self.err(Diagnostic::new(
                        Code::TypeMismatch,
                        e.span.clone(),
                        format!("`{d}` is not a real date or time"),
                    ));
                }
                if d.contains('T') {
                    Ty::DateTime
                } else {
                    Ty::Date
                }
            }
            ExprKind::Duration { .. } => Ty::Duration,
            ExprKind::List(items) => {
                let mut elem = Ty::Any;
                for item in items {
                    let t = self.ty(item);
                    if elem == Ty::Any {
                        elem = t;
                    } else if !same_kind(&elem, &t) {
                        self.err(Diagnostic::new(
                            Code::TypeMismatch,
                            item.span.clone(),
                            format!("a list of {elem} cannot hold {t}"),
                        ));
                    }
                }
                Ty::List(Box::new(elem))
            }
            ExprKind::Name(n) => match self.fields.get(n.as_str()) {
                Some(decl) => {
                    self.used_fields.insert(n.clone());
                    Ty::of_field(&field_type(&decl.ty))
                }
                None => Ty::Symbol(n.clone()),
            },
            ExprKind::Rule { name, key } => self.rule_ty(e, name, key),
            ExprKind::Call { function, args } => self.call_ty(e, function, args),
            ExprKind::Paren(inner) => self.ty(inner),
            ExprKind::Not(inner) => {
                let t = self.ty(inner);
                self.expect_bool(inner, &t, "`not`");
                Ty::Bool
            }
            ExprKind::Neg(inner) => {
                let t = self.ty(inner);
                if !(t.is_numeric() || t == Ty::Duration) {
                    self.no_symbol(inner, &t);
                    self.mismatch(inner, format!("`-` needs a number, found {t}"));
                    return Ty::Any;
                }
                t
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(e, *op, lhs, rhs),
        }
    }

    fn binary(&mut self, e: &Expr, op: BinOp, lhs: &Expr, rhs: &Expr) -> Ty {
        let l = self.ty(lhs);
        let r = self.ty(rhs);
        match op {
            BinOp::And | BinOp::Or => {
                self.expect_bool(lhs, &l, &format!("`{}`", op.symbol()));
                self.expect_bool(rhs, &r, &format!("`{}`", op.symbol()));
                Ty::Bool
            }
            BinOp::Eq | BinOp::Ne => {
                self.comparable(e, op, lhs, &l, rhs, &r);
                Ty::Bool
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let ordered = |t: &Ty| t.is_numeric() || t.is_moment() || matches!(t, Ty::Duration | Ty::Text);
                self.no_symbol(lhs, &l);
                self.no_symbol(rhs, &r);
                let symbol = matches!((&l, &r), (Ty::Symbol(_), _) | (_, Ty::Symbol(_)));
                if !(symbol || ordered(&l) && ordered(&r) && same_kind(&l, &r)) {
                    self.mismatch(e, format!("cannot order {l} against {r} with `{}`", op.symbol()));
                }
                Ty::Bool
            }
            BinOp::In => {
                match &r {
                    Ty::List(elem) => {
                        if let (Ty::Choice(values), ExprKind::List(items)) = (&l, &rhs.kind) {
                            for item in items {
                                self.choice_member(values, lhs, item);
                            }
                        } else {
                            self.no_symbol(lhs, &l);
                            if !same_kind(&l, elem) {
                                self.mismatch(e, format!("cannot look for {l} in a list of {elem}"));
                            }
                        }
                    }
                    Ty::Any => {}
                    other => {
                        self.no_symbol(rhs, other);
                        self.mismatch(rhs, format!("`in` needs a list on its right, found {other}"));
                    }
                }
                Ty::Bool
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => {
                self.no_symbol(lhs, &l);
                self.no_symbol(rhs, &r);
                if matches!(l, Ty::Symbol(_)) || matches!(r, Ty::Symbol(_)) {
                    return Ty::Any;
                }
                match arithmetic(op, &l, &r) {
                    Some(t) => t,
                    None => {
                        self.mismatch(e, format!("cannot apply `{}` to {l} and {r}", op.symbol()));
                        Ty::Any
                    }
                }
            }
        }
    }

    fn comparable(&mut self, e: &Expr, op: BinOp, lhs: &Expr, l: &Ty, rhs: &Expr, r: &Ty) {
        match (l, r) {
            (Ty::Choice(values), _) => self.choice_member(values, lhs, rhs),
            (_, Ty::Choice(values)) => self.choice_member(values, rhs, lhs),
            _ => {
                self.no_symbol(lhs, l);
                // `priority == high` with no field `priority`: one error, not two.
                if !matches!(l, Ty::Symbol(_)) {
                    self.no_symbol(rhs, r);
                }
                if !matches!((l, r), (Ty::Symbol(_), _) | (_, Ty::Symbol(_))) && !same_kind(l, r) {
                    self.mismatch(e, format!("cannot compare {l} with {r} using `{}`", op.symbol()));
                }
            }
        }
    }

    /// `value` compared with a choice field `field` must name one of its values.
    fn choice_member(&mut self, values: &[String], field: &Expr, value: &Expr) {
        // `channel == phone` with a field named `phone`: the field would be read, not the value.
        if let ExprKind::Name(n) = &value.kind {
            if self.fields.contains_key(n.as_str()) && values.contains(n) {
                self.err(
                    Diagnostic::new(
                        Code::UnknownChoiceValue,
                        value.span.clone(),
                        format!("`{n}` is both a field and a value of this choice: it would read the field"),
                    )
                    .hint(format!("write the value as text, `\"{n}\"`, or rename the field")),
                );
                return;
            }
        }
        let name = match &value.kind {
            ExprKind::Name(n) if !self.fields.contains_key(n.as_str()) => n.clone(),
            ExprKind::Text(t) => t.clone(),
            _ => {
                let t = self.ty(value);
                if !matches!(t, Ty::Choice(_) | Ty::Any | Ty::Text) {
                    self.mismatch(value, format!("a choice field compares with one of its values, not {t}"));
                }
                return;
            }
        };
        if !values.contains(&name) {
            let field_name = match &field.kind {
                ExprKind::Name(n) => n.clone(),
                _ => "the field".into(),
            };
            let hint = did_you_mean(&name, values.iter().map(String::as_str))
                .unwrap_or_else(|| format!("the values are: {}", values.join(", ")));
            self.err(
                Diagnostic::new(
                    Code::UnknownChoiceValue,
                    value.span.clone(),
                    format!("`{name}` is not a value of `{field_name}` ({})", values.join(", ")),
                )
                .hint(hint),
            );
        }
    }

    /// A bare name that is not a field, used where no choice field gives it meaning.
    fn no_symbol(&mut self, e: &Expr, t: &Ty) {
        if let Ty::Symbol(name) = t {
            self.unknown_field(name, &e.span);
        }
    }

    fn mismatch(&mut self, e: &Expr, message: String) {
        self.err(Diagnostic::new(Code::TypeMismatch, e.span.clone(), message));
    }

    fn expect_bool(&mut self, e: &Expr, t: &Ty, what: &str) {
        self.no_symbol(e, t);
        if !matches!(t, Ty::Bool | Ty::Any | Ty::Symbol(_)) {
            let hint = match t {
                Ty::Choice(v) => {
                    format!("compare it with a value: `... == {}`", v.first().map_or("value", String::as_str))
                }
                _ => "write a comparison, e.g. `amount > 100`".into(),
            };
            self.err(
                Diagnostic::new(Code::TypeMismatch, e.span.clone(), format!("{what} needs a bool, found {t}"))
                    .hint(hint),
            );
        }
    }

    fn expect_duration(&mut self, e: &Expr, t: &Ty, what: &str) {
        self.no_symbol(e, t);
        if !matches!(t, Ty::Duration | Ty::Any | Ty::Symbol(_)) {
            self.err(
                Diagnostic::new(Code::TypeMismatch, e.span.clone(), format!("{what} needs a duration, found {t}"))
                    .hint("write a duration such as `10min`, `24h`, `3 workdays` or `4 workhours`"),
            );
        }
    }

    fn check_assignable(&mut self, target: &FieldType, value: &Expr, got: &Ty, what: &str) {
        if let (FieldType::Choice(values), ExprKind::Name(n)) = (target, &value.kind) {
            if self.fields.contains_key(n.as_str()) && values.contains(n) {
                let values = values.clone();
                let field = Expr { kind: ExprKind::Name(what.to_string()), span: value.span.clone() };
                return self.choice_member(&values, &field, value);
            }
        }
        let ok = match (target, got) {
            (_, Ty::Any) => true,
            (FieldType::Choice(values), Ty::Symbol(_) | Ty::Text) => {
                let values = values.clone();
                self.choice_member(
                    &values,
                    &Expr { kind: ExprKind::Name(what.to_string()), span: value.span.clone() },
                    value,
                );
                true
            }
            (FieldType::Choice(a), Ty::Choice(b)) => b.iter().all(|v| a.contains(v)),
            (_, Ty::Symbol(_)) => {
                self.no_symbol(value, got);
                true
            }
            (FieldType::Decimal, Ty::Int) | (FieldType::DateTime, Ty::Date) => true,
            (t, g) => same_kind(&Ty::of_field(t), g),
        };
        if !ok {
            self.err(Diagnostic::new(
                Code::TypeMismatch,
                value.span.clone(),
                format!("{what} is {target}, but this is {got}"),
            ));
        }
        // A literal out of an int field's range would fail on every case that gets here.
        if let (FieldType::Int { min, max }, Some(n)) = (target, int_literal(value)) {
            if min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m) {
                self.err(
                    Diagnostic::new(
                        Code::TypeMismatch,
                        value.span.clone(),
                        format!("{what} is {target}, but {n} is out of its range"),
                    )
                    .hint("use a value inside the range, or widen the field's range"),
                );
            }
        }
    }

    // ------------------------------------------------------------ graph

    fn check_graph(&mut self, graph: &DiGraph<Node, EdgeKind>, steps: &[model::Step]) {
        let step_span = |id: StepId| self.ast.steps[id.index()].id.span.clone();
        let node_step = |n: NodeIndex| match graph[n] {
            Node::Step(id) => Some(id),
            Node::Start => None,
        };
        // Reachable from start.
        let mut reached = vec![false; graph.node_count()];
        let mut bfs = Bfs::new(graph, NodeIndex::new(0));
        while let Some(n) = bfs.next(graph) {
            reached[n.index()] = true;
        }
        let mut problems = Vec::new();
        for n in graph.node_indices() {
            if let Some(id) = node_step(n) {
                if !reached[n.index()] && !self.unresolved {
                    problems.push(
                        Diagnostic::new(
                            Code::UnreachableStep,
                            step_span(id),
                            format!("no path from `start` leads to step `{}`", steps[id.index()].name),
                        )
                        .hint("point a `->` at it from an earlier step, or delete it"),
                    );
                }
            }
        }
        // Can reach an end (walking edges backwards from every end).
        let mut to_end = vec![false; graph.node_count()];
        let reversed = Reversed(graph);
        for s in steps.iter().filter(|s| matches!(s.kind, model::StepKind::End)) {
            let mut bfs = Bfs::new(&reversed, NodeIndex::new(s.id.index() + 1));
            while let Some(n) = bfs.next(&reversed) {
                to_end[n.index()] = true;
            }
        }
        // A branch of a split whose join goes on at the first (or N-th) arrival may run until
        // it is withdrawn (a cycle of progress reports while the work goes on): it ends when
        // its join can.
        for (split, join) in quorum_splits(steps) {
            if to_end[join.index() + 1] {
                for n in region_of(graph, split, join) {
                    to_end[n.index()] = true;
                }
                let mut bfs = Bfs::new(&reversed, NodeIndex::new(split.index() + 1));
                while let Some(n) = bfs.next(&reversed) {
                    to_end[n.index()] = true;
                }
            }
        }
        if !steps.iter().any(|s| matches!(s.kind, model::StepKind::End)) {
            problems.push(
                Diagnostic::new(
                    Code::NoPathToEnd,
                    self.ast.id.span.clone(),
                    "the process has no `end` step, so no case can finish",
                )
                .hint("add an outcome, e.g. `end closed \"已归档\"`"),
            );
        } else if !self.unresolved {
            for n in graph.node_indices() {
                if let Some(id) = node_step(n) {
                    if reached[n.index()] && !to_end[n.index()] {
                        problems.push(
                            Diagnostic::new(
                                Code::NoPathToEnd,
                                step_span(id),
                                format!("no path leads from step `{}` to an `end`", steps[id.index()].name),
                            )
                            .hint("a case that gets here could never finish: add a way out towards an `end`"),
                        );
                    }
                }
            }
        }
        // Automatic loops: a cycle through only automatic steps would spin forever.
        let automatic = |id: StepId| {
            matches!(
                steps[id.index()].kind,
                model::StepKind::Auto { .. } | model::StepKind::Split { .. } | model::StepKind::Join { .. }
            )
        };
        let auto_graph = graph.filter_map(
            |_, n| Some(*n),
            |e, w| {
                let (a, b) = graph.edge_endpoints(e)?;
                match (graph[a], graph[b]) {
                    (Node::Step(x), Node::Step(y)) if automatic(x) && automatic(y) => Some(w.clone()),
                    _ => None,
                }
            },
        );
        for scc in tarjan_scc(&auto_graph) {
            let looped = scc.len() > 1 || auto_graph.edges(scc[0]).any(|e| e.target() == scc[0]);
            if looped {
                let mut ids: Vec<StepId> = scc.iter().filter_map(|n| node_step(*n)).collect();
                ids.sort();
                let names =
                    ids.iter().map(|id| format!("`{}`", steps[id.index()].name)).collect::<Vec<_>>().join(" → ");
                let mut d = Diagnostic::new(
                    Code::AutomaticLoop,
                    step_span(ids[0]),
                    format!("the steps {names} form a loop with no wait and no human task"),
                )
                .hint("a case would spin forever: put a `wait` or a `task` inside the loop");
                for id in &ids[1..] {
                    d = d.note(step_span(*id), "part of the loop");
                }
                problems.push(d);
            }
        }
        // Splits and joins pair up one to one, and every branch reaches the join.
        let mut join_of: BTreeMap<StepId, StepId> = BTreeMap::new();
        for s in steps {
            // A join whose split did not resolve is reported already (FLOW011, FLOW018).
            if let model::StepKind::Join { split, .. } = &s.kind {
                if split.index() >= steps.len() || !matches!(steps[split.index()].kind, model::StepKind::Split { .. }) {
                    continue;
                }
                if let Some(first) = join_of.insert(*split, s.id) {
                    problems.push(
                        Diagnostic::new(
                            Code::JoinWithoutSplit,
                            step_span(s.id),
                            format!("split `{}` already has a join", steps[split.index()].name),
                        )
                        .note(step_span(first), "the first join of that split"),
                    );
                }
            }
        }
        for s in steps {
            if let model::StepKind::Split { branches, .. } = &s.kind {
                let Some(join) = join_of.get(&s.id) else {
                    problems.push(
                        Diagnostic::new(
                            Code::SplitWithoutJoin,
                            step_span(s.id),
                            format!("split `{}` has no join", s.name),
                        )
                        .hint(format!("add `join NAME of {} -> next` where the branches meet", s.name)),
                    );
                    continue;
                };
                // A join that goes on at the N-th arrival needs N branches that can arrive; the
                // others may run until they are withdrawn.
                let quorum = match &steps[join.index()].kind {
                    model::StepKind::Join { quorum: Some(q), .. } => Some(*q as usize),
                    _ => None,
                };
                if self.unresolved {
                    // Paths cannot be followed while a name is unresolved (see `unresolved`).
                    continue;
                }
                let arriving = branches
                    .iter()
                    .filter(|b| {
                        reaches_avoiding(graph, NodeIndex::new(b.index() + 1), NodeIndex::new(join.index() + 1))
                    })
                    .count();
                for b in branches.iter().filter(|_| !self.unresolved && quorum.is_none_or(|q| arriving < q)) {
                    if !reaches_avoiding(graph, NodeIndex::new(b.index() + 1), NodeIndex::new(join.index() + 1)) {
                        problems.push(
                            Diagnostic::new(
                                Code::BadBranch,
                                step_span(*b),
                                format!(
                                    "branch `{}` of split `{}` never reaches join `{}`",
                                    steps[b.index()].name,
                                    s.name,
                                    steps[join.index()].name
                                ),
                            )
                            .hint("the join waits for every branch: lead this branch to the join"),
                        );
                    }
                }
            }
        }
        // Each split's branches stay in their region until its join: no arrival at the join
        // comes from outside, and no token leaves the region without passing the join. Joins
        // count arrivals, so this is what makes "every branch arrived" mean what it says.
        for s in steps.iter().filter(|_| !self.unresolved) {
            if let (model::StepKind::Split { .. }, Some(join)) = (&s.kind, join_of.get(&s.id)) {
                problems.extend(self.region_problems(graph, steps, s.id, *join));
            }
        }
        self.diags.extend(problems);
    }

    /// What breaks the region of split `split` (the steps its branches reach before its join):
    /// a way back to the split, a step that the branches share with the rest of the graph
    /// (reached from outside, or after the join), the join reached without the split, and
    /// another split's join reached from inside without its split.
    fn region_problems(
        &self,
        graph: &DiGraph<Node, EdgeKind>,
        steps: &[model::Step],
        split: StepId,
        join: StepId,
    ) -> Vec<Diagnostic> {
        let node = |id: StepId| NodeIndex::new(id.index() + 1);
        let name = |n: NodeIndex| match graph[n] {
            Node::Start => "start".to_string(),
            Node::Step(id) => steps[id.index()].name.clone(),
        };
        let span = |n: NodeIndex| match graph[n] {
            Node::Start => self.ast.id.span.clone(),
            Node::Step(id) => self.ast.steps[id.index()].id.span.clone(),
        };
        let (split_n, join_n) = (node(split), node(join));
        // Everything reachable from `from` without entering `stop`.
        let closure = |from: Vec<NodeIndex>, stop: &[NodeIndex]| {
            let mut seen = vec![false; graph.node_count()];
            let mut todo: Vec<NodeIndex> = from.into_iter().filter(|n| !stop.contains(n)).collect();
            while let Some(n) = todo.pop() {
                if !std::mem::replace(&mut seen[n.index()], true) {
                    todo.extend(graph.neighbors(n).filter(|m| !stop.contains(m) && !seen[m.index()]));
                }
            }
            seen
        };
        let inside = closure(graph.neighbors(split_n).collect(), &[join_n]);
        let from_start = closure(vec![NodeIndex::new(0)], &[split_n]);
        let after_join = closure(graph.neighbors(join_n).collect(), &[split_n]);
        let outside = |n: NodeIndex| from_start[n.index()] || after_join[n.index()];
        let (split_name, join_name) = (&steps[split.index()].name, &steps[join.index()].name);
        // The inside step (or the split) a way out of the region starts from.
        let entered_from = |n: NodeIndex| {
            graph
                .neighbors_directed(n, petgraph::Direction::Incoming)
                .find(|p| *p == split_n || (inside[p.index()] && !outside(*p)))
        };
        let mut problems = Vec::new();
        // (A way back through a step outside is reported below, at that step.)
        if let Some(via) = entered_from(split_n).filter(|_| inside[split_n.index()]).map(name) {
            problems.push(
                Diagnostic::new(
                    Code::BranchLeavesSplit,
                    span(split_n),
                    format!("a branch of split `{split_name}` leads back to it (from `{via}`) before reaching join `{join_name}`"),
                )
                .hint("the join counts one arrival per branch: lead each branch to the join, and go round from after it"),
            );
        }
        // The join counts arrivals from its branches only.
        for p in graph.neighbors_directed(join_n, petgraph::Direction::Incoming) {
            if p != split_n && !inside[p.index()] {
                let whence = if p == join_n || after_join[p.index()] { "after the join" } else { "from outside them" };
                problems.push(
                    Diagnostic::new(
                        Code::BranchLeavesSplit,
                        span(p),
                        format!(
                            "step `{}` leads to join `{join_name}` {whence}, not from a branch of split `{split_name}`",
                            name(p)
                        ),
                    )
                    .note(span(join_n), "the join")
                    .hint("the join would count it as a branch: to wait again, go back to the split"),
                );
            }
        }
        // An `end` may be shared: reaching it from a branch ends the case (no arrival to count).
        let is_end =
            |n: NodeIndex| matches!(graph[n], Node::Step(id) if matches!(steps[id.index()].kind, model::StepKind::End));
        for n in graph.node_indices().filter(|n| *n != split_n && inside[n.index()] && outside(*n) && !is_end(*n)) {
            let Some(via) = entered_from(n) else { continue };
            let elsewhere = if from_start[n.index()] {
                "from `start` without passing the split".to_string()
            } else {
                format!("after join `{join_name}`")
            };
            problems.push(
                Diagnostic::new(
                    Code::BranchLeavesSplit,
                    span(via),
                    format!(
                        "step `{}` leads from the branches of split `{split_name}` to `{}`, which is also reached {elsewhere}",
                        name(via),
                        name(n)
                    ),
                )
                .note(span(n), "reached from inside and outside the branches")
                .hint(format!("the join counts one arrival per branch: lead this branch to `{join_name}` and go on from there")),
            );
        }
        // A split inside reached from two branches could run twice at once, and its join
        // could not tell the two runs' arrivals apart.
        let branches = match &steps[split.index()].kind {
            model::StepKind::Split { branches, .. } => branches.clone(),
            _ => Vec::new(),
        };
        let branch_reach: Vec<(NodeIndex, Vec<bool>)> =
            branches.iter().map(|b| (node(*b), closure(vec![node(*b)], &[join_n]))).collect();
        for n in graph.node_indices().filter(|n| *n != split_n && inside[n.index()]) {
            let Node::Step(id) = graph[n] else { continue };
            if !matches!(steps[id.index()].kind, model::StepKind::Split { .. }) {
                continue;
            }
            let from: Vec<String> = branch_reach.iter().filter(|(_, r)| r[n.index()]).map(|(b, _)| name(*b)).collect();
            if from.len() > 1 {
                problems.push(
                    Diagnostic::new(
                        Code::BranchLeavesSplit,
                        span(n),
                        format!(
                            "split `{}` can be reached from {} branches of split `{split_name}` ({}), so it could run twice at once",
                            name(n),
                            from.len(),
                            from.join(", ")
                        ),
                    )
                    .note(span(split_n), "the outer split")
                    .hint("its join could not tell the two runs apart: reach the inner split from one branch only"),
                );
            }
        }
        // Another split's join reached from inside without its split (and not already above).
        for n in graph.node_indices().filter(|n| inside[n.index()] && !outside(*n)) {
            let Node::Step(id) = graph[n] else { continue };
            if let model::StepKind::Join { split: other, .. } = &steps[id.index()].kind {
                if *other != split && !inside[node(*other).index()] {
                    problems.push(Diagnostic::new(
                        Code::BranchLeavesSplit,
                        span(n),
                        format!(
                            "join `{}` of split `{}` is reached from the branches of split `{split_name}` without passing join `{join_name}`",
                            name(n),
                            steps[other.index()].name
                        ),
                    ).hint(format!("lead the inner branches to `{join_name}` first")));
                }
            }
        }
        problems
    }

    fn warn_unused_fields(&mut self) {
        for f in &self.ast.fields {
            if !self.used_fields.contains(&f.name.name) {
                self.err(
                    Diagnostic::new(
                        Code::UnusedField,
                        f.name.span.clone(),
                        format!("field `{}` is never used", f.name.name),
                    )
                    .hint("ask for it in a task (`asks`), use it in a condition, mark it `required`, or remove it"),
                );
            }
        }
    }
}

/// The splits whose join goes on at the first or N-th arrival, with that join.
fn quorum_splits(steps: &[model::Step]) -> Vec<(StepId, StepId)> {
    steps
        .iter()
        .filter_map(|s| match &s.kind {
            model::StepKind::Join { split, quorum: Some(_), .. } if split.index() < steps.len() => Some((*split, s.id)),
            _ => None,
        })
        .collect()
}

/// The nodes a split's branches reach before its join.
fn region_of(graph: &DiGraph<Node, EdgeKind>, split: StepId, join: StepId) -> Vec<NodeIndex> {
    let (split_n, join_n) = (NodeIndex::new(split.index() + 1), NodeIndex::new(join.index() + 1));
    let mut seen = vec![false; graph.node_count()];
    let mut todo: Vec<NodeIndex> = graph.neighbors(split_n).collect();
    let mut out = Vec::new();
    while let Some(n) = todo.pop() {
        if n == join_n || std::mem::replace(&mut seen[n.index()], true) {
            continue;
        }
        out.push(n);
        todo.extend(graph.neighbors(n));
    }
    out
}

/// Whether `from` reaches `to` (following any edge).
fn reaches_avoiding(graph: &DiGraph<Node, EdgeKind>, from: NodeIndex, to: NodeIndex) -> bool {
    let mut bfs = Bfs::new(graph, from);
    while let Some(n) = bfs.next(graph) {
        if n == to {
            return true;
        }
    }
    false
}

fn build_graph(start: &Transition, interrupts: &[(String, StepId)], steps: &[model::Step]) -> DiGraph<Node, EdgeKind> {
    let mut g = DiGraph::with_capacity(steps.len() + 1, steps.len() * 2);
    g.add_node(Node::Start);
    for s in steps {
        g.add_node(Node::Step(s.id));
    }
    let node = |id: StepId| NodeIndex::new(id.index() + 1);
    let valid = |id: StepId| id.index() < steps.len();
    let add_transition = |g: &mut DiGraph<Node, EdgeKind>, from: NodeIndex, t: &Transition| match t {
        Transition::To(to) if valid(*to) => {
            g.add_edge(from, node(*to), EdgeKind::Next);
        }
        Transition::To(_) => {}
        Transition::Decide { branches, otherwise } => {
            for (cond, to) in branches.iter().filter(|b| valid(b.1)) {
                g.add_edge(from, node(*to), EdgeKind::Branch(crate::fmt::expr_to_string(cond)));
            }
            if let Some(o) = otherwise.filter(|o| valid(*o)) {
                g.add_edge(from, node(o), EdgeKind::Else);
            }
        }
    };
    add_transition(&mut g, NodeIndex::new(0), start);
    // An interrupt can happen at any time: it is drawn, and reached, from the start.
    for (message, to) in interrupts.iter().filter(|(_, to)| valid(*to)) {
        g.add_edge(NodeIndex::new(0), node(*to), EdgeKind::Message(message.clone()));
    }
    for s in steps {
        let from = node(s.id);
        match &s.kind {
            model::StepKind::Task(t) => {
                add_transition(&mut g, from, &t.next);
                for h in &t.handlers {
                    for a in &h.actions {
                        if let model::Action::Goto(to) = a {
                            if valid(*to) {
                                let kind = match &h.trigger {
                                    model::Trigger::Message(m) => EdgeKind::Message(m.clone()),
                                    _ => EdgeKind::Overdue,
                                };
                                g.add_edge(from, node(*to), kind);
                            }
                        }
                    }
                }
            }
            model::StepKind::Auto { next, .. } => add_transition(&mut g, from, next),
            model::StepKind::Wait(w) => {
                if let Some(next) = &w.next {
                    add_transition(&mut g, from, next);
                }
                for (m, to) in w.on_message.iter().filter(|m| valid(m.1)) {
                    g.add_edge(from, node(*to), EdgeKind::Message(m.clone()));
                }
                if let Some((_, to)) = w.on_timeout.as_ref().filter(|t| valid(t.1)) {
                    g.add_edge(from, node(*to), EdgeKind::Timeout);
                }
            }
            model::StepKind::Split { branches, guards, .. } => {
                for (b, guard) in branches.iter().zip(guards).filter(|(b, _)| valid(**b)) {
                    // A branch's condition labels its edge in diagrams.
                    let kind =
                        guard.as_ref().map_or(EdgeKind::Parallel, |g| EdgeKind::Branch(crate::fmt::expr_to_string(g)));
                    g.add_edge(from, node(*b), kind);
                }
            }
            model::StepKind::Join { next, .. } => add_transition(&mut g, from, next),
            model::StepKind::Call(c) => add_transition(&mut g, from, &c.next),
            model::StepKind::End => {}
        }
    }
    g
}

/// Fills in each split's join once the graph checks have passed.
fn link_joins(process: &mut model::Process) {
    let joins: Vec<(StepId, StepId)> = process
        .steps
        .iter()
        .filter_map(|s| match s.kind {
            model::StepKind::Join { split, .. } => Some((split, s.id)),
            _ => None,
        })
        .collect();
    for (split, join) in joins {
        let mut inside = BTreeSet::new();
        if let model::StepKind::Split { branches, .. } = &process.steps[split.index()].kind {
            let mut todo = branches.clone();
            while let Some(s) = todo.pop() {
                if s != join && inside.insert(s) {
                    todo.extend(process.graph.neighbors(process.node(s)).filter_map(|n| match process.graph[n] {
                        Node::Step(id) => Some(id),
                        Node::Start => None,
                    }));
                }
            }
        }
        if let model::StepKind::Split { join: j, region, .. } = &mut process.steps[split.index()].kind {
            *j = join;
            *region = inside.into_iter().collect();
        }
    }
}

/// The value of an int literal, negated or not.
fn int_literal(e: &Expr) -> Option<i64> {
    match &e.kind {
        ExprKind::Int(n) => Some(*n),
        ExprKind::Neg(inner) => int_literal(inner).map(|n| -n),
        _ => None,
    }
}

/// The first strftime code of `format` that chrono cannot format (`%Q`), if any: the engine
/// renders keys with the same parser, so what passes here formats.
fn bad_date_code(format: &str) -> Option<String> {
    use chrono::format::{Item, StrftimeItems};
    if !StrftimeItems::new(format).any(|i| matches!(i, Item::Error)) {
        return None;
    }
    let mut chars = format.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c != '%' {
            continue;
        }
        // A code with its optional padding or width: `%Y`, `%-d`, `%3f`, `%:z`.
        let mut end = i + 1;
        while let Some(&(j, d)) = chars.peek() {
            end = j + d.len_utf8();
            chars.next();
            if !matches!(d, '-' | '_' | '0'..='9' | ':' | '.' | '#') {
                break;
            }
        }
        let code = &format[i..end];
        if StrftimeItems::new(code).any(|i| matches!(i, Item::Error)) {
            return Some(code.to_string());
        }
    }
    Some(format.to_string())
}

fn same_kind(a: &Ty, b: &Ty) -> bool {
    match (a, b) {
        (Ty::Any, _) | (_, Ty::Any) => true,
        (x, y) if x.is_numeric() && y.is_numeric() => true,
        (Ty::Date | Ty::DateTime, Ty::Date | Ty::DateTime) => true,
        (Ty::Choice(_), Ty::Choice(_) | Ty::Text) | (Ty::Text, Ty::Choice(_)) => true,
        (Ty::List(x), Ty::List(y)) => same_kind(x, y),
        (x, y) => std::mem::discriminant(x) == std::mem::discriminant(y),
    }
}

fn types_compatible(target: &FieldType, source: &FieldType) -> bool {
    match (target, source) {
        (FieldType::Choice(a), FieldType::Choice(b)) => b.iter().all(|v| a.contains(v)),
        (FieldType::Decimal, FieldType::Int { .. }) => true,
        (t, s) => same_kind(&Ty::of_field(t), &Ty::of_field(s)),
    }
}

fn arithmetic(op: BinOp, l: &Ty, r: &Ty) -> Option<Ty> {
    use Ty::*;
    Some(match (op, l, r) {
        (_, Any, _) | (_, _, Any) => Any,
        (_, Int, Int) => Int,
        (_, Int | Decimal, Int | Decimal) => Decimal,
        (BinOp::Add | BinOp::Sub, Date | DateTime, Duration) => DateTime,
        (BinOp::Add, Duration, Date | DateTime) => DateTime,
        (BinOp::Sub, Date | DateTime, Date | DateTime) => Duration,
        (BinOp::Add | BinOp::Sub, Duration, Duration) => Duration,
        (BinOp::Mul, Duration, Int) | (BinOp::Mul, Int, Duration) | (BinOp::Div, Duration, Int) => Duration,
        (BinOp::Add, Text, Text) => Text,
        _ => return None,
    })
}

fn valid_date_literal(s: &str) -> bool {
    let num = |a: usize, b: usize| s.get(a..b).and_then(|x| x.parse::<u32>().ok());
    let (Some(y), Some(m), Some(d)) = (num(0, 4), num(5, 7), num(8, 10)) else { return false };
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    if d == 0 || d > days {
        return false;
    }
    if s.len() > 10 {
        let (Some(h), Some(min)) = (num(11, 13), num(14, 16)) else { return false };
        return h < 24 && min < 60;
    }
    true
}
