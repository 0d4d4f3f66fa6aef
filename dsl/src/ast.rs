//! The syntax tree of a .flow file, as written, with a byte span on every node.
//!
//! The AST is what the formatter prints and what the checker reads; it may still be
//! invalid (unknown steps, wrong types). Only `check` turns it into a `model::Process`.

use serde::Serialize;
use std::ops::Range;

/// A byte range into the source file.
pub type Span = Range<usize>;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Process {
    pub id: Ident,
    pub label: Option<String>,
    pub doc: Option<String>,
    pub source: Option<String>,
    pub key: Option<(String, Span)>,
    pub fields: Vec<FieldDecl>,
    pub start: Option<Next>,
    pub start_span: Span,
    /// `on message NAME -> step` at process level, with its span.
    pub interrupts: Vec<(Ident, Ident, Span)>,
    /// `keep message NAME for DURATION`, with its span.
    pub kept: Vec<(Ident, Expr, Span)>,
    /// `tally NAME by KEYS on end OUTCOME`.
    pub tallies: Vec<Tally>,
    /// `index FIELD, ...`, each with its span.
    pub indexes: Vec<(Vec<Ident>, Span)>,
    pub steps: Vec<Step>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldDecl {
    pub name: Ident,
    pub ty: TypeExpr,
    pub label: Option<String>,
    pub required: bool,
    pub sensitive: bool,
    /// `own`: the caller, unless they may act for others.
    pub own: bool,
    pub default: Option<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum TypeExpr {
    Text,
    Int {
        range: Option<(i64, i64)>,
    },
    Decimal,
    Bool,
    Date,
    DateTime,
    Choice(Vec<Ident>),
    ListOfText,
    /// A user of the rules' people.
    User,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub id: Ident,
    pub label: Option<String>,
    /// `renamed from OLD`: the step's name in earlier versions, for migrating running cases.
    pub renamed_from: Option<Ident>,
    pub kind: StepKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum StepKind {
    Task(TaskStep),
    Auto(AutoStep),
    Wait(WaitStep),
    /// `split s -> a, b when cond`: a branch with a condition starts only when it holds.
    Split {
        branches: Vec<Ident>,
        guards: Vec<Option<Expr>>,
    },
    /// `join j of s on first` / `on N`: fires at the first / N-th arrival and withdraws the
    /// branches still running (`quorum`); without it, waits for every branch started.
    Join {
        split: Ident,
        quorum: Option<(u32, Span)>,
        next: Next,
    },
    Call(CallStep),
    End,
}

impl StepKind {
    pub fn keyword(&self) -> &'static str {
        match self {
            StepKind::Task(_) => "task",
            StepKind::Auto(_) => "auto",
            StepKind::Wait(_) => "wait",
            StepKind::Split { .. } => "split",
            StepKind::Join { .. } => "join",
            StepKind::Call(_) => "call",
            StepKind::End => "end",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskStep {
    /// `for each ITEM in LIST`: one task per item.
    pub each: Option<Box<Each>>,
    /// `collect FIELD into LIST_FIELD`.
    pub collect: Vec<(Ident, Ident)>,
    pub assign: Option<(Assignee, Span)>,
    /// `not same as a, b`: whoever did those steps may not do this one (four eyes).
    pub not_same_as: Vec<Ident>,
    pub candidates: Vec<Ident>,
    pub due: Option<Expr>,
    pub remind_every: Option<Expr>,
    pub asks: Vec<AskedField>,
    pub handlers: Vec<Handler>,
    pub next: Option<Next>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tally {
    pub name: Ident,
    pub keys: Vec<Expr>,
    pub outcome: Ident,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Each {
    pub item: Ident,
    pub list: Expr,
    /// `one at a time`: in list order, each after the one before.
    pub in_turn: bool,
    /// `until N done`: the rest are withdrawn once N are done.
    pub enough: Option<(u32, Span)>,
    /// `until CONDITION`: checked after each one is done; once it holds, the rest are withdrawn.
    pub until: Option<Expr>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AskedField {
    pub field: Ident,
    pub required: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Assignee {
    /// A role, with an optional strategy name (`by round_robin`) overriding the rules'.
    Role {
        role: Ident,
        strategy: Option<Ident>,
        /// `familiar by FIELD`: prefer who did this step in the last case with the same value.
        familiar: Option<Ident>,
    },
    User(String),
    /// The user named in a text field.
    Field(Ident),
    /// Whoever completed an earlier task.
    SameAs(Ident),
    /// The current assignee's manager (`reports_to` in the people rules); for escalations.
    ManagerOfAssignee,
    /// `role from FIELD`: the role named in a field, picked by its strategy.
    RoleFrom {
        field: Ident,
        strategy: Option<Ident>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Handler {
    pub trigger: Trigger,
    pub actions: Vec<Action>,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Trigger {
    /// When the due time passes, optionally plus a delay (escalation chains).
    Overdue {
        after: Option<Expr>,
    },
    /// When this percentage of the allowed time has elapsed (SLA thresholds).
    Elapsed {
        percent: u32,
        span: Span,
    },
    Message(Ident),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Action {
    Escalate(Assignee, Span),
    Notify(Assignee, Span),
    RaisePriority,
    Remind,
    Goto(Ident),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AutoStep {
    pub actions: Vec<AutoAction>,
    pub next: Option<Next>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum AutoAction {
    Set { field: Ident, value: Expr },
    Lookup { table: Ident, inputs: Vec<(Ident, Expr)>, outputs: Vec<(Ident, Ident)> },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitStep {
    pub condition: Option<WaitCondition>,
    pub on_message: Vec<(Ident, Ident)>,
    pub on_timeout: Option<(Expr, Ident)>,
    pub next: Option<Next>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum WaitCondition {
    For(Expr),
    Until(Expr),
    Every(Expr),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallStep {
    pub process: Ident,
    pub inputs: Vec<(Ident, Expr)>,
    pub outputs: Vec<(Ident, Ident)>,
    pub next: Option<Next>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Next {
    Goto(Ident),
    Decide { branches: Vec<(Expr, Ident)>, otherwise: Option<Ident>, span: Span },
}

impl Next {
    /// Every step this way out can lead to, in source order.
    pub fn targets(&self) -> Vec<&Ident> {
        match self {
            Next::Goto(t) => vec![t],
            Next::Decide { branches, otherwise, .. } => {
                branches.iter().map(|(_, t)| t).chain(otherwise.iter()).collect()
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DurationUnit {
    Millis,
    Seconds,
    Minutes,
    Hours,
    Days,
    Weeks,
    WorkHours,
    WorkDays,
}

impl DurationUnit {
    /// The canonical spelling the formatter writes.
    pub fn canonical(self, amount: u64) -> String {
        match self {
            DurationUnit::Millis => format!("{amount}ms"),
            DurationUnit::Seconds => format!("{amount}s"),
            DurationUnit::Minutes => format!("{amount}min"),
            DurationUnit::Hours => format!("{amount}h"),
            DurationUnit::Days => format!("{amount}d"),
            DurationUnit::Weeks => format!("{amount}w"),
            DurationUnit::WorkHours if amount == 1 => "1 workhour".into(),
            DurationUnit::WorkHours => format!("{amount} workhours"),
            DurationUnit::WorkDays if amount == 1 => "1 workday".into(),
            DurationUnit::WorkDays => format!("{amount} workdays"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Add,
    Sub,
    Mul,
    Div,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::In => "in",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ExprKind {
    Int(i64),
    /// Kept as written so that no precision is lost (`12.50`).
    Decimal(String),
    Text(String),
    Bool(bool),
    /// `2026-11-23` or `2026-11-23T09:00`, as written.
    Date(String),
    Duration {
        amount: u64,
        unit: DurationUnit,
    },
    List(Vec<Expr>),
    /// A field, or a choice value when compared with a choice field.
    Name(String),
    /// `rules.name` or `rules.name[key]`.
    Rule {
        name: Ident,
        key: Option<Box<Expr>>,
    },
    Call {
        function: Ident,
        args: Vec<Expr>,
    },
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary {
        op: BinOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Paren(Box<Expr>),
}
