//! Source text to AST: limits first, then pest, then a walk of pest's pairs.
//!
//! pest recurses on nesting, so `check_limits` rejects oversized or deeply nested input
//! before pest ever sees it (pest issue #1129: deep nesting overflows the stack).

use crate::ast::*;
use crate::diag::{Code, Diagnostic};
use pest::iterators::{Pair, Pairs};
use pest::pratt_parser::{Assoc, Op, PrattParser};
use pest::Parser as _;
use std::sync::OnceLock;

mod syntax_errors;

use syntax_errors::*;

/// Largest .flow file accepted. The biggest shipped process is a few KiB.
pub const SOURCE_BYTES_MAX: usize = 1024 * 1024;
/// Deepest bracket nesting accepted: `(`, `[` and `{` together.
pub const NESTING_DEPTH_MAX: usize = 64;
/// Most rule calls pest may make for one file, so that no input can make it backtrack for
/// long. A 2,000-step process needs about a tenth of this.
pub const PARSER_CALLS_MAX: usize = 100_000_000;
/// Most syntax nodes (operands, operators, brackets) in one expression. Bounds the depth of
/// the expression tree, which the Pratt parser and the checker walk recursively.
pub const EXPR_NODES_MAX: usize = 1_000;

#[derive(pest_derive::Parser)]
#[grammar = "flow.pest"]
struct FlowParser;

/// Parses a whole file. Returns the AST, or the diagnostics that prevented one.
pub fn parse(source: &str) -> Result<Process, Vec<Diagnostic>> {
    // A byte-order mark (as Windows editors save UTF-8) becomes blanks of the same length, so
    // that every byte offset, and so every diagnostic's position, stays where it was.
    let unmarked;
    let source = match source.strip_prefix('\u{feff}') {
        Some(rest) => {
            unmarked = format!("   {rest}");
            unmarked.as_str()
        }
        None => source,
    };
    check_limits(source)?;
    pest::set_call_limit(std::num::NonZeroUsize::new(PARSER_CALLS_MAX));
    let mut pairs = FlowParser::parse(Rule::file, source).map_err(|e| vec![syntax_diagnostic(source, e)])?;
    let file = pairs.next().expect("pest: `file` always yields one pair on success");
    let process = file.into_inner().next().expect("grammar: file = SOI ~ process ~ EOI");
    let mut builder = Builder { errors: Vec::new() };
    let ast = builder.process(process);
    if builder.errors.is_empty() {
        Ok(ast)
    } else {
        Err(builder.errors)
    }
}

fn check_limits(source: &str) -> Result<(), Vec<Diagnostic>> {
    if source.len() > SOURCE_BYTES_MAX {
        return Err(vec![Diagnostic::new(
            Code::FileTooLarge,
            0..0,
            format!("the file is {} bytes; the limit is {SOURCE_BYTES_MAX} bytes", source.len()),
        )
        .hint("split the procedure into sub-processes with `call`")]);
    }
    // Bracket depth outside strings and comments; a cheap scan that bounds pest's recursion.
    let (mut depth, mut in_string, mut in_comment, mut escaped) = (0usize, false, false, false);
    for (i, c) in source.char_indices() {
        if in_comment {
            in_comment = c != '\n';
            continue;
        }
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' | '\n' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '#' => in_comment = true,
            '"' => in_string = true,
            '(' | '[' | '{' => {
                depth += 1;
                if depth > NESTING_DEPTH_MAX {
                    return Err(vec![Diagnostic::new(
                        Code::NestingTooDeep,
                        i..i + 1,
                        format!("brackets are nested more than {NESTING_DEPTH_MAX} deep"),
                    )
                    .hint("simplify the expression, or compute parts of it in an `auto` step")]);
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn pratt() -> &'static PrattParser<Rule> {
    static PRATT: OnceLock<PrattParser<Rule>> = OnceLock::new();
    PRATT.get_or_init(|| {
        PrattParser::new()
            .op(Op::infix(Rule::op_or, Assoc::Left))
            .op(Op::infix(Rule::op_and, Assoc::Left))
            .op(Op::prefix(Rule::op_not))
            .op(Op::infix(Rule::op_eq, Assoc::Left)
                | Op::infix(Rule::op_ne, Assoc::Left)
                | Op::infix(Rule::op_lt, Assoc::Left)
                | Op::infix(Rule::op_le, Assoc::Left)
                | Op::infix(Rule::op_gt, Assoc::Left)
                | Op::infix(Rule::op_ge, Assoc::Left)
                | Op::infix(Rule::op_in, Assoc::Left))
            .op(Op::infix(Rule::op_add, Assoc::Left) | Op::infix(Rule::op_sub, Assoc::Left))
            .op(Op::infix(Rule::op_mul, Assoc::Left) | Op::infix(Rule::op_div, Assoc::Left))
            .op(Op::prefix(Rule::op_neg))
    })
}

/// A pair's span without the whitespace pest skipped at its end.
fn span(p: &Pair<Rule>) -> Span {
    let start = p.as_span().start();
    start..start + p.as_str().trim_end().len()
}

fn ident(p: Pair<Rule>) -> Ident {
    debug_assert_eq!(p.as_rule(), Rule::ident);
    Ident { name: p.as_str().to_string(), span: span(&p) }
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `string` or `label` pair to its text.
fn string(p: Pair<Rule>) -> String {
    let p = if p.as_rule() == Rule::label { p.into_inner().next().expect("label = { string }") } else { p };
    let inner = p.into_inner().next().expect("string = ${ \"\\\"\" ~ str_inner ~ \"\\\"\" }");
    unescape(inner.as_str())
}

struct Builder {
    /// Problems the grammar accepts but the AST cannot hold (an integer too large).
    errors: Vec<Diagnostic>,
}

impl Builder {
    fn process(&mut self, p: Pair<Rule>) -> Process {
        let whole = span(&p);
        let mut inner = p.into_inner().peekable();
        let id = ident(inner.next().expect("process id"));
        let label = inner.next_if(|p| p.as_rule() == Rule::label).map(string);
        let mut process = Process {
            id,
            label,
            doc: None,
            source: None,
            key: None,
            fields: Vec::new(),
            start: None,
            start_span: whole.start..whole.start,
            interrupts: Vec::new(),
            kept: Vec::new(),
            tallies: Vec::new(),
            indexes: Vec::new(),
            steps: Vec::new(),
            span: whole,
        };
        for item in inner {
            match item.as_rule() {
                Rule::doc_stmt => process.doc = Some(string(first(item))),
                Rule::source_stmt => process.source = Some(string(first(item))),
                Rule::key_stmt => {
                    let s = first(item);
                    let sp = span(&s);
                    process.key = Some((string(s), sp));
                }
                Rule::fields_block => {
                    for f in item.into_inner() {
                        let decl = self.field(f);
                        process.fields.push(decl);
                    }
                }
                Rule::tally_stmt => {
                    let sp = span(&item);
                    let parts: Vec<Pair<Rule>> = item.into_inner().collect();
                    let name = ident(parts[0].clone());
                    let outcome = ident(parts[parts.len() - 1].clone());
                    let keys = parts[1..parts.len() - 1].iter().map(|p| self.expr(p.clone())).collect();
                    process.tallies.push(Tally { name, keys, outcome, span: sp });
                }
                Rule::index_stmt => {
                    let sp = span(&item);
                    process.indexes.push((item.into_inner().map(ident).collect(), sp));
                }
                Rule::keep_stmt => {
                    let sp = span(&item);
                    let mut it = item.into_inner();
                    let message = ident(it.next().expect("message"));
                    let ttl = self.expr(it.next().expect("duration"));
                    process.kept.push((message, ttl, sp));
                }
                Rule::interrupt_stmt => {
                    let sp = span(&item);
                    let mut it = item.into_inner();
                    let message = ident(it.next().expect("message"));
                    let target = ident(it.next().expect("target"));
                    process.interrupts.push((message, target, sp));
                }
                Rule::start_stmt => {
                    if process.start.is_some() {
                        self.errors.push(
                            Diagnostic::new(Code::MissingStart, span(&item), "a second `start`")
                                .note(process.start_span.clone(), "the first `start` is here")
                                .hint("a process has one `start`; use `split` to begin parallel branches"),
                        );
                    }
                    process.start_span = span(&item);
                    process.start = Some(self.next(first(item)));
                }
                _ => {
                    let step = self.step(item);
                    process.steps.push(step);
                }
            }
        }
        process
    }

    fn field(&mut self, p: Pair<Rule>) -> FieldDecl {
        let sp = span(&p);
        let mut inner = p.into_inner();
        let name = ident(inner.next().expect("field name"));
        let ty = self.field_type(inner.next().expect("field type"));
        let mut decl =
            FieldDecl { name, ty, label: None, required: false, sensitive: false, own: false, default: None, span: sp };
        for rest in inner {
            match rest.as_rule() {
                Rule::label => decl.label = Some(string(rest)),
                Rule::field_opt => {
                    let opt = first(rest);
                    match opt.as_rule() {
                        Rule::opt_required => decl.required = true,
                        Rule::opt_sensitive => decl.sensitive = true,
                        Rule::opt_own => decl.own = true,
                        Rule::opt_default => decl.default = Some(self.expr(first(opt))),
                        r => unreachable!("grammar: field_opt has no {r:?}"),
                    }
                }
                r => unreachable!("grammar: field_decl has no {r:?}"),
            }
        }
        decl
    }

    fn field_type(&mut self, p: Pair<Rule>) -> TypeExpr {
        let t = first(p);
        match t.as_rule() {
            Rule::type_simple => match first(t).as_rule() {
                Rule::kw_text => TypeExpr::Text,
                Rule::kw_decimal => TypeExpr::Decimal,
                Rule::kw_bool => TypeExpr::Bool,
                Rule::kw_date => TypeExpr::Date,
                Rule::kw_datetime => TypeExpr::DateTime,
                Rule::kw_user => TypeExpr::User,
                r => unreachable!("grammar: type_simple has no {r:?}"),
            },
            Rule::type_int => {
                let bounds: Vec<i64> = t.into_inner().skip(1).map(|b| self.int(b)).collect();
                TypeExpr::Int { range: (bounds.len() == 2).then(|| (bounds[0], bounds[1])) }
            }
            Rule::type_choice => TypeExpr::Choice(t.into_inner().map(ident).collect()),
            Rule::type_list => TypeExpr::ListOfText,
            r => unreachable!("grammar: field_type has no {r:?}"),
        }
    }

    fn int(&mut self, p: Pair<Rule>) -> i64 {
        p.as_str().parse().unwrap_or_else(|_| {
            self.errors.push(
                Diagnostic::new(Code::Syntax, span(&p), "this number is too large")
                    .hint(format!("integers range up to {}", i64::MAX)),
            );
            0
        })
    }

    // One piece (over 100 lines): one match over pest's step rules, each arm building its AST node.
    fn step(&mut self, p: Pair<Rule>) -> Step {
        let sp = span(&p);
        let rule = p.as_rule();
        let mut inner = p.into_inner().peekable();
        let id = ident(inner.next().expect("step id"));
        let label = inner.next_if(|p| p.as_rule() == Rule::label).map(string);
        let renamed_from = inner.next_if(|p| p.as_rule() == Rule::renamed).map(|p| ident(first(p)));
        let kind = match rule {
            Rule::task_step => StepKind::Task(self.task(inner)),
            Rule::auto_step => {
                let mut auto = AutoStep { actions: Vec::new(), next: None };
                for item in inner {
                    match item.as_rule() {
                        Rule::set_stmt => {
                            let mut it = item.into_inner();
                            let field = ident(it.next().expect("set field"));
                            let value = self.expr(it.next().expect("set value"));
                            auto.actions.push(AutoAction::Set { field, value });
                        }
                        Rule::lookup_stmt => {
                            let mut it = item.into_inner();
                            let table = ident(it.next().expect("lookup table"));
                            let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
                            for part in it {
                                let rule = part.as_rule();
                                let mut kv = part.into_inner();
                                let name = ident(kv.next().expect("lookup name"));
                                match rule {
                                    Rule::lookup_in => {
                                        // `{ cause }` is short for `{ cause: cause }`.
                                        let value = match kv.next() {
                                            Some(e) => self.expr(e),
                                            None => Expr {
                                                kind: ExprKind::Name(name.name.clone()),
                                                span: name.span.clone(),
                                            },
                                        };
                                        inputs.push((name, value));
                                    }
                                    _ => {
                                        let column = kv.next().map(ident).unwrap_or_else(|| name.clone());
                                        outputs.push((name, column));
                                    }
                                }
                            }
                            auto.actions.push(AutoAction::Lookup { table, inputs, outputs });
                        }
                        Rule::next => auto.next = Some(self.next(item)),
                        r => unreachable!("grammar: auto_step has no {r:?}"),
                    }
                }
                StepKind::Auto(auto)
            }
            Rule::wait_step => {
                let mut wait = WaitStep { condition: None, on_message: Vec::new(), on_timeout: None, next: None };
                for item in inner {
                    match item.as_rule() {
                        Rule::wait_cond => {
                            let c = first(item);
                            let rule = c.as_rule();
                            let e = self.expr(first(c));
                            wait.condition = Some(match rule {
                                Rule::wait_for => WaitCondition::For(e),
                                Rule::wait_until => WaitCondition::Until(e),
                                _ => WaitCondition::Every(e),
                            });
                        }
                        Rule::wait_event => {
                            let ev = first(item);
                            let rule = ev.as_rule();
                            let mut it = ev.into_inner();
                            if rule == Rule::on_message {
                                let msg = ident(it.next().expect("message name"));
                                let to = ident(it.next().expect("message target"));
                                wait.on_message.push((msg, to));
                            } else {
                                let after = self.expr(it.next().expect("timeout"));
                                let to = ident(it.next().expect("timeout target"));
                                wait.on_timeout = Some((after, to));
                            }
                        }
                        Rule::next => wait.next = Some(self.next(item)),
                        r => unreachable!("grammar: wait_step has no {r:?}"),
                    }
                }
                StepKind::Wait(wait)
            }
            Rule::split_step => {
                let (mut branches, mut guards) = (Vec::new(), Vec::new());
                for b in inner {
                    let mut parts = b.into_inner();
                    branches.push(ident(parts.next().expect("split branch")));
                    guards.push(parts.next().map(|e| self.expr(e)));
                }
                StepKind::Split { branches, guards }
            }
            Rule::join_step => {
                let split = ident(inner.next().expect("join of"));
                let mut item = inner.next().expect("join next");
                let mut quorum = None;
                if item.as_rule() == Rule::join_quorum {
                    let q = item.into_inner().next().expect("quorum");
                    let span = span(&q);
                    // `first` is 1; a number too large for u32 is refused by the checker as 0.
                    let n = if q.as_rule() == Rule::kw_first { 1 } else { q.as_str().parse().unwrap_or(0) };
                    quorum = Some((n, span));
                    item = inner.next().expect("join next");
                }
                let next = self.next(item);
                StepKind::Join { split, quorum, next }
            }
            Rule::call_step => {
                let process = ident(inner.next().expect("called process"));
                let mut call = CallStep { process, inputs: Vec::new(), outputs: Vec::new(), next: None };
                for item in inner {
                    match item.as_rule() {
                        Rule::call_in => {
                            let mut it = item.into_inner();
                            let name = ident(it.next().expect("in name"));
                            call.inputs.push((name, self.expr(it.next().expect("in value"))));
                        }
                        Rule::call_out => {
                            let mut it = item.into_inner();
                            let name = ident(it.next().expect("out field"));
                            call.outputs.push((name, ident(it.next().expect("out source"))));
                        }
                        Rule::next => call.next = Some(self.next(item)),
                        r => unreachable!("grammar: call_step has no {r:?}"),
                    }
                }
                StepKind::Call(call)
            }
            Rule::end_step => StepKind::End,
            r => unreachable!("grammar: step has no {r:?}"),
        };
        Step { id, label, renamed_from, kind, span: sp }
    }

    fn task<'i>(&mut self, items: impl Iterator<Item = Pair<'i, Rule>>) -> TaskStep {
        let mut task = TaskStep {
            each: None,
            collect: Vec::new(),
            assign: None,
            not_same_as: Vec::new(),
            candidates: Vec::new(),
            due: None,
            remind_every: None,
            asks: Vec::new(),
            handlers: Vec::new(),
            next: None,
        };
        for item in items {
            match item.as_rule() {
                Rule::assign_stmt => {
                    let sp = span(&item);
                    task.assign = Some((self.assignee(first(item)), sp));
                }
                Rule::candidates_stmt => task.candidates.extend(item.into_inner().map(ident)),
                Rule::not_same_stmt => task.not_same_as.extend(item.into_inner().map(ident)),
                Rule::each_stmt => {
                    let sp = span(&item);
                    let mut it = item.into_inner();
                    let name = ident(it.next().expect("item name"));
                    let list = self.expr(it.next().expect("list"));
                    let (mut in_turn, mut enough, mut until) = (false, None, None);
                    for opt in it {
                        match opt.as_rule() {
                            Rule::each_in_turn => in_turn = true,
                            Rule::each_until => until = Some(self.expr(first(opt))),
                            _ => {
                                let n = first(opt);
                                let nsp = span(&n);
                                enough = Some((n.as_str().parse().unwrap_or(0), nsp));
                            }
                        }
                    }
                    task.each = Some(Box::new(Each { item: name, list, in_turn, enough, until, span: sp }));
                }
                Rule::collect_stmt => {
                    let mut it = item.into_inner();
                    let field = ident(it.next().expect("collected field"));
                    task.collect.push((field, ident(it.next().expect("list field"))));
                }
                Rule::due_stmt => task.due = Some(self.expr(first(item))),
                Rule::remind_stmt => task.remind_every = Some(self.expr(first(item))),
                Rule::asks_stmt => {
                    for a in item.into_inner() {
                        let mut it = a.into_inner();
                        let field = ident(it.next().expect("asked field"));
                        task.asks.push(AskedField { field, required: it.next().is_some() });
                    }
                }
                Rule::handler => {
                    let sp = span(&item);
                    let mut it = item.into_inner();
                    let trig = first(it.next().expect("trigger"));
                    let trigger = match trig.as_rule() {
                        Rule::trig_overdue => {
                            Trigger::Overdue { after: trig.into_inner().next().map(|e| self.expr(e)) }
                        }
                        Rule::trig_elapsed => {
                            let tsp = span(&trig);
                            let n = self.int(first(trig));
                            Trigger::Elapsed { percent: u32::try_from(n).unwrap_or(u32::MAX), span: tsp }
                        }
                        _ => Trigger::Message(ident(first(trig))),
                    };
                    let actions = it.map(|a| self.action(first(a))).collect();
                    task.handlers.push(Handler { trigger, actions, span: sp });
                }
                Rule::next => task.next = Some(self.next(item)),
                r => unreachable!("grammar: task_step has no {r:?}"),
            }
        }
        task
    }

    fn assignee(&mut self, p: Pair<Rule>) -> Assignee {
        let a = first(p);
        match a.as_rule() {
            Rule::assignee_role => {
                let mut it = a.into_inner();
                let role = ident(it.next().expect("role"));
                let (mut strategy, mut familiar) = (None, None);
                for part in it {
                    match part.as_rule() {
                        Rule::strategy => strategy = Some(ident(first(part))),
                        _ => familiar = Some(ident(first(part))),
                    }
                }
                Assignee::Role { role, strategy, familiar }
            }
            Rule::assignee_user => Assignee::User(string(first(a))),
            Rule::assignee_field => Assignee::Field(ident(first(a))),
            Rule::assignee_manager => Assignee::ManagerOfAssignee,
            Rule::assignee_role_from => {
                let mut it = a.into_inner();
                let field = ident(it.next().expect("field"));
                let strategy = it.next().map(|s| ident(first(s)));
                Assignee::RoleFrom { field, strategy }
            }
            _ => Assignee::SameAs(ident(first(a))),
        }
    }

    fn action(&mut self, a: Pair<Rule>) -> Action {
        let sp = span(&a);
        match a.as_rule() {
            Rule::act_escalate => Action::Escalate(self.assignee(first(a)), sp),
            Rule::act_notify => Action::Notify(self.assignee(first(a)), sp),
            Rule::act_priority => Action::RaisePriority,
            Rule::act_remind => Action::Remind,
            _ => Action::Goto(ident(first(a))),
        }
    }

    fn next(&mut self, p: Pair<Rule>) -> Next {
        let target = first(p);
        match target.as_rule() {
            Rule::ident => Next::Goto(ident(target)),
            _ => {
                let sp = span(&target);
                let mut branches = Vec::new();
                let mut otherwise = None;
                for arm in target.into_inner() {
                    let rule = arm.as_rule();
                    let mut it = arm.into_inner();
                    if rule == Rule::branch {
                        let cond = self.expr(it.next().expect("branch condition"));
                        branches.push((cond, ident(it.next().expect("branch target"))));
                    } else {
                        otherwise = Some(ident(it.next().expect("else target")));
                    }
                }
                Next::Decide { branches, otherwise, span: sp }
            }
        }
    }

    fn expr(&mut self, p: Pair<Rule>) -> Expr {
        debug_assert_eq!(p.as_rule(), Rule::expr);
        // `flatten` walks iteratively, so counting is safe however deep the tree would be.
        let nodes = p.clone().into_inner().flatten().count();
        if nodes > EXPR_NODES_MAX {
            let sp = span(&p);
            self.errors.push(
                Diagnostic::new(
                    Code::NestingTooDeep,
                    sp.start..sp.start + 1,
                    format!("this expression has {nodes} parts; the limit is {EXPR_NODES_MAX}"),
                )
                .hint("split it over several `set` statements in an `auto` step"),
            );
            return Expr { kind: ExprKind::Bool(false), span: sp };
        }
        self.expr_pairs(p.into_inner())
    }

    fn expr_pairs(&mut self, pairs: Pairs<Rule>) -> Expr {
        // The Pratt closures each need `self`; a RefCell-free way is to collect errors after.
        let errors = std::cell::RefCell::new(Vec::new());
        let e = pratt()
            .map_primary(|p| {
                let mut b = Builder { errors: Vec::new() };
                let e = b.primary(p);
                errors.borrow_mut().extend(b.errors);
                e
            })
            .map_prefix(|op, rhs| {
                let sp = op.as_span().start()..rhs.span.end;
                let kind = match op.as_rule() {
                    Rule::op_not => ExprKind::Not(Box::new(rhs)),
                    _ => ExprKind::Neg(Box::new(rhs)),
                };
                Expr { kind, span: sp }
            })
            .map_infix(|lhs, op, rhs| {
                let op = match op.as_rule() {
                    Rule::op_or => BinOp::Or,
                    Rule::op_and => BinOp::And,
                    Rule::op_eq => BinOp::Eq,
                    Rule::op_ne => BinOp::Ne,
                    Rule::op_lt => BinOp::Lt,
                    Rule::op_le => BinOp::Le,
                    Rule::op_gt => BinOp::Gt,
                    Rule::op_ge => BinOp::Ge,
                    Rule::op_in => BinOp::In,
                    Rule::op_add => BinOp::Add,
                    Rule::op_sub => BinOp::Sub,
                    Rule::op_mul => BinOp::Mul,
                    Rule::op_div => BinOp::Div,
                    r => unreachable!("grammar: infix has no {r:?}"),
                };
                let sp = lhs.span.start..rhs.span.end;
                Expr { kind: ExprKind::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) }, span: sp }
            })
            .parse(pairs);
        self.errors.extend(errors.into_inner());
        e
    }

    fn primary(&mut self, p: Pair<Rule>) -> Expr {
        let sp = span(&p);
        let kind = match p.as_rule() {
            Rule::paren => ExprKind::Paren(Box::new(self.expr(first(p)))),
            Rule::list_lit => ExprKind::List(p.into_inner().map(|e| self.expr(e)).collect()),
            Rule::duration => {
                let mut it = p.into_inner();
                let amount = self.int(it.next().expect("duration amount"));
                let unit = match it.next().expect("duration unit").as_str() {
                    "ms" => DurationUnit::Millis,
                    "s" | "second" | "seconds" => DurationUnit::Seconds,
                    "m" | "min" | "minute" | "minutes" => DurationUnit::Minutes,
                    "h" | "hour" | "hours" => DurationUnit::Hours,
                    "d" | "day" | "days" => DurationUnit::Days,
                    "w" | "week" | "weeks" => DurationUnit::Weeks,
                    "workhour" | "workhours" => DurationUnit::WorkHours,
                    _ => DurationUnit::WorkDays,
                };
                ExprKind::Duration { amount: amount.unsigned_abs(), unit }
            }
            Rule::date_lit => ExprKind::Date(p.as_str().to_string()),
            Rule::decimal_lit => ExprKind::Decimal(p.as_str().to_string()),
            Rule::int_lit => ExprKind::Int(self.int(p)),
            Rule::string => ExprKind::Text(string(p)),
            Rule::bool_lit => ExprKind::Bool(p.as_str() == "true"),
            Rule::rule_ref => {
                let mut it = p.into_inner();
                let name = ident(it.next().expect("rule name"));
                let key = it.next().map(|k| Box::new(self.expr(k)));
                ExprKind::Rule { name, key }
            }
            Rule::call_fn => {
                let mut it = p.into_inner();
                let function = ident(it.next().expect("function name"));
                ExprKind::Call { function, args: it.map(|a| self.expr(a)).collect() }
            }
            Rule::ident => ExprKind::Name(p.as_str().to_string()),
            r => unreachable!("grammar: primary has no {r:?}"),
        };
        Expr { kind, span: sp }
    }
}

fn first(p: Pair<Rule>) -> Pair<Rule> {
    let rule = p.as_rule();
    p.into_inner().next().unwrap_or_else(|| unreachable!("grammar: {rule:?} always has an inner pair"))
}
