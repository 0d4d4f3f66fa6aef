//! The canonical layout of a .flow file (`caseflow fmt`), comments kept.
//!
//! Printing works from the AST, so layout is canonical by construction. Comments are not in
//! the AST: they are collected from the source with their offsets and written before the
//! first item that starts after them (or at the end of the line they trailed).

use crate::ast::*;

/// Formats a source text. Returns the diagnostics instead when it does not parse.
pub fn format_source(source: &str) -> Result<String, Vec<crate::diag::Diagnostic>> {
    let ast = crate::parse::parse(source)?;
    Ok(format_process(&ast, source))
}

/// Prints `p`, taking comments from `source` (the text `p` was parsed from).
pub fn format_process(p: &Process, source: &str) -> String {
    let mut w = Writer { out: String::new(), comments: collect_comments(source), next: 0, indent: 0 };
    w.process(p);
    w.flush_comments(usize::MAX);
    w.out
}

/// One step as the formatter writes it, without comments: its head line, then one line per
/// clause, indented (for the structural diff of two versions).
pub fn step_to_string(s: &Step) -> String {
    let mut w = Writer { out: String::new(), comments: Vec::new(), next: 0, indent: 0 };
    w.step(s);
    w.out
}

/// One field declaration as the formatter writes it.
pub fn field_to_string(f: &FieldDecl) -> String {
    field(f)
}

/// The process-level lines (header, `start`, interrupts, kept messages, tallies, indexes) as the
/// formatter writes them: everything but fields and steps.
pub fn process_header_lines(p: &Process) -> Vec<String> {
    let mut q = p.clone();
    q.fields.clear();
    q.steps.clear();
    let mut w = Writer { out: String::new(), comments: Vec::new(), next: 0, indent: 0 };
    w.process(&q);
    w.out.lines().map(str::trim).filter(|l| !l.is_empty() && *l != "}").map(str::to_string).collect()
}

/// One expression on one line, as the formatter writes it (also used for diagram labels).
pub fn expr_to_string(e: &Expr) -> String {
    let mut s = String::new();
    write_expr(&mut s, e);
    s
}

struct Comment {
    offset: usize,
    text: String,
    /// Code precedes it on its line.
    trailing: bool,
}

fn collect_comments(source: &str) -> Vec<Comment> {
    let mut out = Vec::new();
    let (mut in_string, mut escaped, mut code_on_line) = (false, false, false);
    let mut chars = source.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' | '\n' => in_string = false,
                _ => {}
            }
            if c == '\n' {
                code_on_line = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                code_on_line = true;
            }
            '#' => {
                let end = source[i..].find('\n').map_or(source.len(), |n| i + n);
                out.push(Comment { offset: i, text: source[i..end].trim_end().to_string(), trailing: code_on_line });
                while chars.peek().is_some_and(|(j, _)| *j < end) {
                    chars.next();
                }
            }
            '\n' => code_on_line = false,
            c if !c.is_whitespace() => code_on_line = true,
            _ => {}
        }
    }
    out
}

struct Writer {
    out: String,
    comments: Vec<Comment>,
    next: usize,
    indent: usize,
}

impl Writer {
    /// Writes the comments that come before `offset` in the source.
    fn flush_comments(&mut self, offset: usize) {
        while let Some(c) = self.comments.get(self.next).filter(|c| c.offset < offset) {
            if c.trailing && self.out.ends_with('\n') {
                // Back onto the line it trailed, past any blank lines written since.
                let kept = self.out.trim_end_matches('\n').len();
                let newlines = self.out.len() - kept;
                self.out.truncate(kept);
                self.out.push_str("  ");
                self.out.push_str(&c.text);
                self.out.push_str(&"\n".repeat(newlines));
            } else {
                for _ in 0..self.indent {
                    self.out.push_str("  ");
                }
                self.out.push_str(&c.text);
                self.out.push('\n');
            }
            self.next += 1;
        }
    }

    fn line(&mut self, anchor: usize, text: &str) {
        self.flush_comments(anchor);
        for _ in 0..self.indent {
            self.out.push_str("  ");
        }
        self.out.push_str(text);
        self.out.push('\n');
    }

    fn blank(&mut self) {
        if !self.out.ends_with("{\n") && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
    }

    fn process(&mut self, p: &Process) {
        self.line(p.span.start, &format!("process {}{} {{", p.id.name, label(&p.label)));
        self.indent += 1;
        if let Some(d) = &p.doc {
            self.line(p.id.span.end, &format!("doc {}", quote(d)));
        }
        if let Some(s) = &p.source {
            self.line(p.id.span.end, &format!("source {}", quote(s)));
        }
        if let Some((k, span)) = &p.key {
            self.line(span.start, &format!("key {}", quote(k)));
        }
        if !p.fields.is_empty() {
            self.blank();
            self.line(p.fields[0].span.start, "fields {");
            self.indent += 1;
            for f in &p.fields {
                self.line(f.span.start, &field(f));
            }
            self.indent -= 1;
            let end = p.fields.last().map_or(0, |f| f.span.end);
            self.close(end);
        }
        if let Some(start) = &p.start {
            self.blank();
            self.next_line(p.start_span.start, "start", start);
        }
        for (message, target, span) in &p.interrupts {
            self.line(span.start, &format!("on message {} -> {}", message.name, target.name));
        }
        for (message, ttl, span) in &p.kept {
            self.line(span.start, &format!("keep message {} for {}", message.name, expr_to_string(ttl)));
        }
        for t in &p.tallies {
            let keys: Vec<String> = t.keys.iter().map(expr_to_string).collect();
            self.line(t.span.start, &format!("tally {} by {} on end {}", t.name.name, keys.join(", "), t.outcome.name));
        }
        for (names, span) in &p.indexes {
            let names: Vec<&str> = names.iter().map(|n| n.name.as_str()).collect();
            self.line(span.start, &format!("index {}", names.join(", ")));
        }
        for s in &p.steps {
            self.blank();
            self.step(s);
        }
        self.indent -= 1;
        self.close(p.span.end.saturating_sub(1));
    }

    /// Closes a block, first writing comments that sit inside it before `before`.
    fn close(&mut self, before: usize) {
        self.indent += 1;
        self.flush_comments(before);
        self.indent -= 1;
        self.line(before, "}");
    }

    // One piece (over 100 lines): one match over the step kinds, each arm writing its clauses in the canonical order.
    fn step(&mut self, s: &Step) {
        let head = format!("{} {}{}{}", s.kind.keyword(), s.id.name, label(&s.label), renamed(&s.renamed_from));
        let end = s.span.end.saturating_sub(1);
        match &s.kind {
            StepKind::End => self.line(s.span.start, &head),
            StepKind::Split { branches, guards } => {
                let names: Vec<String> = branches
                    .iter()
                    .zip(guards)
                    .map(|(b, g)| match g {
                        Some(g) => format!("{} when {}", b.name, expr_to_string(g)),
                        None => b.name.clone(),
                    })
                    .collect();
                self.line(s.span.start, &format!("{head} -> {}", names.join(", ")));
            }
            StepKind::Join { split, quorum, next } => {
                let on = match quorum {
                    Some((1, _)) => " on first".to_string(),
                    Some((n, _)) => format!(" on {n}"),
                    None => String::new(),
                };
                self.next_line(s.span.start, &format!("{head} of {}{on}", split.name), next);
            }
            StepKind::Task(t) => {
                self.line(s.span.start, &format!("{head} {{"));
                self.indent += 1;
                if let Some(e) = &t.each {
                    let mut line = format!("for each {} in {}", e.item.name, expr_to_string(&e.list));
                    if e.in_turn {
                        line.push_str(" one at a time");
                    }
                    if let Some((n, _)) = e.enough {
                        line.push_str(&format!(" until {n} done"));
                    }
                    if let Some(u) = &e.until {
                        line.push_str(&format!(" until {}", expr_to_string(u)));
                    }
                    self.line(e.span.start, &line);
                }
                if let Some((a, span)) = &t.assign {
                    self.line(span.start, &format!("assign {}", assignee(a)));
                }
                if let Some(first) = t.not_same_as.first() {
                    let names: Vec<&str> = t.not_same_as.iter().map(|c| c.name.as_str()).collect();
                    self.line(first.span.start, &format!("not same as {}", names.join(", ")));
                }
                if let Some(first) = t.candidates.first() {
                    let names: Vec<&str> = t.candidates.iter().map(|c| c.name.as_str()).collect();
                    self.line(first.span.start, &format!("candidates {}", names.join(", ")));
                }
                if let Some(d) = &t.due {
                    self.line(d.span.start, &format!("due {}", expr_to_string(d)));
                }
                if let Some(r) = &t.remind_every {
                    self.line(r.span.start, &format!("remind every {}", expr_to_string(r)));
                }
                if let Some(first) = t.asks.first() {
                    let asks: Vec<String> = t
                        .asks
                        .iter()
                        .map(|a| if a.required { format!("{} required", a.field.name) } else { a.field.name.clone() })
                        .collect();
                    self.line(first.field.span.start, &format!("asks {}", asks.join(", ")));
                }
                for (field, list) in &t.collect {
                    self.line(field.span.start, &format!("collect {} into {}", field.name, list.name));
                }
                for h in &t.handlers {
                    self.line(h.span.start, &handler(h));
                }
                if let Some(n) = &t.next {
                    self.next_line(next_anchor(n), "", n);
                }
                self.indent -= 1;
                self.close(end);
            }
            StepKind::Auto(a) => {
                self.line(s.span.start, &format!("{head} {{"));
                self.indent += 1;
                for act in &a.actions {
                    match act {
                        AutoAction::Set { field, value } => {
                            self.line(field.span.start, &format!("set {} = {}", field.name, expr_to_string(value)))
                        }
                        AutoAction::Lookup { table, inputs, outputs } => {
                            let ins: Vec<String> = inputs
                                .iter()
                                .map(|(n, e)| match &e.kind {
                                    ExprKind::Name(v) if *v == n.name => n.name.clone(),
                                    _ => format!("{}: {}", n.name, expr_to_string(e)),
                                })
                                .collect();
                            let outs: Vec<String> =
                                outputs
                                    .iter()
                                    .map(|(f, c)| {
                                        if f.name == c.name {
                                            f.name.clone()
                                        } else {
                                            format!("{} = {}", f.name, c.name)
                                        }
                                    })
                                    .collect();
                            self.line(
                                table.span.start,
                                &format!("lookup {} {{ {} }} => {{ {} }}", table.name, ins.join(", "), outs.join(", ")),
                            );
                        }
                    }
                }
                if let Some(n) = &a.next {
                    self.next_line(next_anchor(n), "", n);
                }
                self.indent -= 1;
                self.close(end);
            }
            StepKind::Wait(w) => {
                self.line(s.span.start, &format!("{head} {{"));
                self.indent += 1;
                match &w.condition {
                    Some(WaitCondition::For(e)) => self.line(e.span.start, &format!("for {}", expr_to_string(e))),
                    Some(WaitCondition::Until(e)) => self.line(e.span.start, &format!("until {}", expr_to_string(e))),
                    Some(WaitCondition::Every(e)) => self.line(e.span.start, &format!("every {}", expr_to_string(e))),
                    None => {}
                }
                for (m, t) in &w.on_message {
                    self.line(m.span.start, &format!("on message {} -> {}", m.name, t.name));
                }
                if let Some((e, t)) = &w.on_timeout {
                    self.line(e.span.start, &format!("on timeout {} -> {}", expr_to_string(e), t.name));
                }
                if let Some(n) = &w.next {
                    self.next_line(next_anchor(n), "", n);
                }
                self.indent -= 1;
                self.close(end);
            }
            StepKind::Call(c) => {
                self.line(s.span.start, &format!("{head} process {} {{", c.process.name));
                self.indent += 1;
                for (n, e) in &c.inputs {
                    self.line(n.span.start, &format!("input {} = {}", n.name, expr_to_string(e)));
                }
                for (p, ch) in &c.outputs {
                    self.line(p.span.start, &format!("output {} = {}", p.name, ch.name));
                }
                if let Some(n) = &c.next {
                    self.next_line(next_anchor(n), "", n);
                }
                self.indent -= 1;
                self.close(end);
            }
        }
    }

    /// `prefix -> target`, or `prefix -> decide { ... }` over several lines.
    fn next_line(&mut self, anchor: usize, prefix: &str, n: &Next) {
        let lead = if prefix.is_empty() { String::new() } else { format!("{prefix} ") };
        match n {
            Next::Goto(t) => self.line(anchor, &format!("{lead}-> {}", t.name)),
            Next::Decide { branches, otherwise, span } => {
                self.line(anchor, &format!("{lead}-> decide {{"));
                self.indent += 1;
                for (cond, t) in branches {
                    self.line(cond.span.start, &format!("when {} -> {}", expr_to_string(cond), t.name));
                }
                if let Some(o) = otherwise {
                    self.line(o.span.start, &format!("else -> {}", o.name));
                }
                self.indent -= 1;
                self.close(span.end.saturating_sub(1));
            }
        }
    }
}

fn next_anchor(n: &Next) -> usize {
    match n {
        Next::Goto(t) => t.span.start,
        Next::Decide { span, .. } => span.start,
    }
}

fn renamed(old: &Option<crate::ast::Ident>) -> String {
    old.as_ref().map(|o| format!(" renamed from {}", o.name)).unwrap_or_default()
}

fn label(l: &Option<String>) -> String {
    l.as_ref().map(|l| format!(" {}", quote(l))).unwrap_or_default()
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn field(f: &FieldDecl) -> String {
    let ty = match &f.ty {
        TypeExpr::Text => "text".to_string(),
        TypeExpr::Int { range: Some((a, b)) } => format!("int({a}..{b})"),
        TypeExpr::Int { range: None } => "int".into(),
        TypeExpr::Decimal => "decimal".into(),
        TypeExpr::Bool => "bool".into(),
        TypeExpr::Date => "date".into(),
        TypeExpr::DateTime => "datetime".into(),
        TypeExpr::Choice(v) => format!("choice({})", v.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")),
        TypeExpr::ListOfText => "list text".into(),
        TypeExpr::User => "user".into(),
    };
    let mut s = format!("{}: {ty}{}", f.name.name, label(&f.label));
    if f.required {
        s.push_str(" required");
    }
    if f.sensitive {
        s.push_str(" sensitive");
    }
    if f.own {
        s.push_str(" own");
    }
    if let Some(d) = &f.default {
        s.push_str(" = ");
        s.push_str(&expr_to_string(d));
    }
    s
}

fn assignee(a: &Assignee) -> String {
    match a {
        Assignee::Role { role, strategy, familiar } => {
            let mut s = format!("role {}", role.name);
            if let Some(by) = strategy {
                s.push_str(&format!(" by {}", by.name));
            }
            if let Some(f) = familiar {
                s.push_str(&format!(" familiar by {}", f.name));
            }
            s
        }
        Assignee::User(u) => format!("user {}", quote(u)),
        Assignee::Field(f) => format!("field {}", f.name),
        Assignee::SameAs(s) => format!("same as {}", s.name),
        Assignee::ManagerOfAssignee => "manager of assignee".to_string(),
        Assignee::RoleFrom { field, strategy } => match strategy {
            Some(s) => format!("role from {} by {}", field.name, s.name),
            None => format!("role from {}", field.name),
        },
    }
}

fn handler(h: &Handler) -> String {
    let trigger = match &h.trigger {
        Trigger::Overdue { after: None } => "overdue".to_string(),
        Trigger::Overdue { after: Some(e) } => format!("overdue + {}", expr_to_string(e)),
        Trigger::Elapsed { percent, .. } => format!("{percent}%"),
        Trigger::Message(m) => format!("message {}", m.name),
    };
    let actions: Vec<String> = h
        .actions
        .iter()
        .map(|a| match a {
            Action::Escalate(who, _) => format!("escalate to {}", assignee(who)),
            Action::Notify(who, _) => format!("notify {}", assignee(who)),
            Action::RaisePriority => "raise priority".into(),
            Action::Remind => "remind".into(),
            Action::Goto(t) => format!("-> {}", t.name),
        })
        .collect();
    format!("when {trigger}: {}", actions.join(", "))
}

fn write_expr(s: &mut String, e: &Expr) {
    match &e.kind {
        ExprKind::Int(i) => s.push_str(&i.to_string()),
        ExprKind::Decimal(d) => s.push_str(d),
        ExprKind::Text(t) => s.push_str(&quote(t)),
        ExprKind::Bool(b) => s.push_str(if *b { "true" } else { "false" }),
        ExprKind::Date(d) => s.push_str(d),
        ExprKind::Duration { amount, unit } => s.push_str(&unit.canonical(*amount)),
        ExprKind::List(items) => {
            s.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                write_expr(s, item);
            }
            s.push(']');
        }
        ExprKind::Name(n) => s.push_str(n),
        ExprKind::Rule { name, key } => {
            s.push_str("rules.");
            s.push_str(&name.name);
            if let Some(k) = key {
                s.push('[');
                write_expr(s, k);
                s.push(']');
            }
        }
        ExprKind::Call { function, args } => {
            s.push_str(&function.name);
            s.push('(');
            for (i, a) in args.iter().enumerate() {
                if i > 0 {
                    s.push_str(", ");
                }
                write_expr(s, a);
            }
            s.push(')');
        }
        ExprKind::Not(inner) => {
            s.push_str("not ");
            write_expr(s, inner);
        }
        ExprKind::Neg(inner) => {
            s.push('-');
            write_expr(s, inner);
        }
        ExprKind::Binary { op, lhs, rhs } => {
            write_expr(s, lhs);
            s.push(' ');
            s.push_str(op.symbol());
            s.push(' ');
            write_expr(s, rhs);
        }
        ExprKind::Paren(inner) => {
            s.push('(');
            write_expr(s, inner);
            s.push(')');
        }
    }
}
