//! The compiled process: what the engine executes.
//!
//! A `Process` is only made by `check::compile`, after every check passed, so holding one
//! means the graph is sound: every step reference resolves, every expression is well-typed,
//! splits have joins, and every step is reachable and can reach an end.

use crate::ast::{Expr, Span};
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Serialize;
use std::collections::BTreeMap;

/// Index of a step within its process version. Stable for a given source text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
pub struct StepId(pub u32);

impl StepId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum FieldType {
    Text,
    Int {
        min: Option<i64>,
        max: Option<i64>,
    },
    Decimal,
    Bool,
    Date,
    DateTime,
    Choice(Vec<String>),
    ListOfText,
    /// A user of the rules' people (text in expressions).
    User,
}

impl std::fmt::Display for FieldType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FieldType::Text => f.write_str("text"),
            FieldType::Int { min: Some(a), max: Some(b) } => write!(f, "int({a}..{b})"),
            FieldType::Int { .. } => f.write_str("int"),
            FieldType::Decimal => f.write_str("decimal"),
            FieldType::Bool => f.write_str("bool"),
            FieldType::Date => f.write_str("date"),
            FieldType::DateTime => f.write_str("datetime"),
            FieldType::Choice(v) => write!(f, "choice({})", v.join(", ")),
            FieldType::ListOfText => f.write_str("list text"),
            FieldType::User => f.write_str("user"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Field {
    pub name: String,
    pub ty: FieldType,
    pub label: Option<String>,
    pub required: bool,
    /// Personal data: encrypted at rest, masked in logs and for users without the right role.
    pub sensitive: bool,
    /// A user field filled with the caller, who may name someone else only with the
    /// `act_for_others` permission.
    pub own: bool,
    pub default: Option<Expr>,
}

impl Field {
    /// Whether cases can be found by this field's value: not sensitive (a search index keeps
    /// values unsealed) and not a list (the checker refuses `index` on either).
    pub fn searchable(&self) -> bool {
        !self.sensitive && !matches!(self.ty, FieldType::ListOfText)
    }
}

/// The assignment strategies a `by` clause and the rules' `strategy` may name (the engine's
/// `Strategy::parse` reads these names).
pub const STRATEGIES: [&str; 3] = ["round_robin", "fewest_open", "skill"];

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Assignee {
    /// `familiar`: prefer the member who did this step in the latest other case of the
    /// process with the same value of this field (history-based allocation).
    Role {
        role: String,
        strategy: Option<String>,
        familiar: Option<String>,
    },
    User(String),
    Field(String),
    SameAs(StepId),
    /// The task's current assignee's `reports_to`: each escalation goes one level up.
    ManagerOfAssignee,
    /// The role named in a field, picked by its strategy (`by`, or the role's own).
    RoleFrom {
        field: String,
        strategy: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Trigger {
    Overdue { after: Option<Expr> },
    Elapsed { percent: u32 },
    Message(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Action {
    Escalate(Assignee),
    Notify(Assignee),
    RaisePriority,
    Remind,
    Goto(StepId),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Handler {
    pub trigger: Trigger,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FormField {
    pub field: String,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Task {
    /// One task per item of a list (multiple instances).
    pub each: Option<Box<Each>>,
    /// After each instance: append `item: value` of the asked field to the list field.
    pub collect: Vec<(String, String)>,
    pub assign: Option<Assignee>,
    /// Whoever completed these task steps may not do this one (separation of duties).
    pub not_same_as: Vec<StepId>,
    pub candidates: Vec<String>,
    pub due: Option<Expr>,
    pub remind_every: Option<Expr>,
    pub form: Vec<FormField>,
    pub handlers: Vec<Handler>,
    pub next: Transition,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Each {
    /// What an item is called (shown with each task).
    pub item: String,
    pub list: Expr,
    pub in_turn: bool,
    pub enough: Option<u32>,
    /// Done once this holds (checked after each instance).
    pub until: Option<Expr>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum AutoAction {
    Set { field: String, value: Expr },
    Lookup { table: String, inputs: Vec<(String, Expr)>, outputs: Vec<(String, String)> },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum WaitCondition {
    /// A duration from when the wait is entered (calendar or business time).
    For(Expr),
    /// A date or datetime, usually a field plus or minus an offset.
    Until(Expr),
    /// A fixed-rate cycle: fires at entry + k × period, anchored at the first entry.
    Every(Expr),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Wait {
    pub condition: Option<WaitCondition>,
    pub on_message: Vec<(String, StepId)>,
    pub on_timeout: Option<(Expr, StepId)>,
    /// Where to go when the condition is met. `None` only for message-only waits.
    pub next: Option<Transition>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Call {
    pub process: String,
    /// Child field ← expression in the parent.
    pub inputs: Vec<(String, Expr)>,
    /// Parent field ← child field, copied when the child ends.
    pub outputs: Vec<(String, String)>,
    pub next: Transition,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum StepKind {
    Task(Task),
    Auto {
        actions: Vec<AutoAction>,
        next: Transition,
    },
    Wait(Wait),
    Split {
        branches: Vec<StepId>,
        join: StepId,
        /// Per branch: the condition that starts it (`None`: always started).
        guards: Vec<Option<Expr>>,
        /// The steps between the split and its join, sorted: what a join that fires early
        /// withdraws.
        region: Vec<StepId>,
    },
    Join {
        split: StepId,
        /// Fire at this many arrivals and withdraw the rest (`on first` is 1); `None`: every
        /// branch started.
        quorum: Option<u32>,
        next: Transition,
    },
    Call(Call),
    /// A named outcome that reports count.
    End,
}

impl StepKind {
    /// The keyword that declares a step of this kind.
    pub fn keyword_name(&self) -> &'static str {
        match self {
            StepKind::Task(_) => "task",
            StepKind::Auto { .. } => "auto",
            StepKind::Wait(_) => "wait",
            StepKind::Split { .. } => "split",
            StepKind::Join { .. } => "join",
            StepKind::Call(_) => "call",
            StepKind::End => "end",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Transition {
    To(StepId),
    /// Branches are tried in order; the first whose condition holds wins.
    Decide {
        branches: Vec<(Expr, StepId)>,
        otherwise: Option<StepId>,
    },
}

impl Transition {
    pub fn targets(&self) -> Vec<StepId> {
        match self {
            Transition::To(s) => vec![*s],
            Transition::Decide { branches, otherwise } => {
                branches.iter().map(|(_, s)| *s).chain(otherwise.iter().copied()).collect()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub id: StepId,
    pub name: String,
    pub label: Option<String>,
    /// The step's name in earlier versions (`renamed from`): running cases there move here
    /// when migrated.
    pub renamed_from: Option<String>,
    pub kind: StepKind,
    /// Where the step is declared, for runtime errors that point at the source.
    pub span: Span,
}

impl Step {
    pub fn display_name(&self) -> &str {
        self.label.as_deref().unwrap_or(&self.name)
    }
}

/// What an edge of the process graph stands for; drawn in diagrams.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum EdgeKind {
    Next,
    Branch(String),
    Else,
    Parallel,
    Message(String),
    Timeout,
    Overdue,
}

/// A node of the process graph: a step, or the start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Node {
    Start,
    Step(StepId),
}

#[derive(Debug, Clone, Serialize)]
pub struct Process {
    pub id: String,
    pub label: Option<String>,
    pub doc: Option<String>,
    pub source: Option<String>,
    pub key: Option<String>,
    pub fields: Vec<Field>,
    pub start: Transition,
    /// `on message NAME -> step` at process level: the message withdraws all the case's work
    /// and the case goes on at the step.
    pub interrupts: Vec<(String, StepId)>,
    /// `keep message NAME for DURATION`: kept until a step listens, for at most the duration.
    pub kept_messages: Vec<(String, Expr)>,
    /// Counts kept across cases: name, the key expressions, the outcome counted.
    pub tallies: Vec<(String, Vec<Expr>, String)>,
    /// Fields the cases are findable by (`index FIELD, ...`), in declaration order.
    pub indexes: Vec<String>,
    /// The rules' values and decision tables the process refers to (`rules.NAME`, `lookup`).
    #[serde(skip)]
    pub rules_used: std::collections::BTreeSet<String>,
    pub steps: Vec<Step>,
    #[serde(skip)]
    pub graph: DiGraph<Node, EdgeKind>,
    #[serde(skip)]
    pub(crate) step_by_name: BTreeMap<String, StepId>,
    #[serde(skip)]
    pub(crate) field_by_name: BTreeMap<String, usize>,
}

impl Process {
    pub fn step(&self, id: StepId) -> &Step {
        &self.steps[id.index()]
    }

    pub fn step_named(&self, name: &str) -> Option<&Step> {
        self.step_by_name.get(name).map(|id| self.step(*id))
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.field_by_name.get(name).map(|i| &self.fields[*i])
    }

    /// The graph node of a step: node 0 is the start, step `i` is node `i + 1`.
    pub fn node(&self, id: StepId) -> NodeIndex {
        NodeIndex::new(id.index() + 1)
    }

    /// The `call` steps a case can reach from its start with no task or wait on the way
    /// (through decisions either way, and past calls whose case might end at once). A cycle
    /// of such calls between processes would nest cases without end.
    pub fn calls_without_waiting(&self) -> Vec<StepId> {
        let mut seen = vec![false; self.graph.node_count()];
        let mut todo = vec![NodeIndex::new(0)];
        let mut calls = Vec::new();
        while let Some(n) = todo.pop() {
            if std::mem::replace(&mut seen[n.index()], true) {
                continue;
            }
            if let Node::Step(id) = self.graph[n] {
                match &self.step(id).kind {
                    StepKind::Task(_) | StepKind::Wait(_) | StepKind::End => continue,
                    StepKind::Call(_) => calls.push(id),
                    _ => {}
                }
            }
            todo.extend(self.graph.neighbors(n).filter(|m| !seen[m.index()]));
        }
        calls.sort();
        calls
    }

    /// Named outcomes, in source order.
    pub fn outcomes(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| matches!(s.kind, StepKind::End))
    }
}
