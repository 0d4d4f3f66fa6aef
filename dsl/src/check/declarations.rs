//! Declarations: tallies, interrupts, fields, steps' names, the business key.

use super::*;

impl<'a> Checker<'a> {
    // ------------------------------------------------------------ indexes

    /// `index FIELD, ...`: declared fields of a single value, each once, none sensitive (an
    /// index keeps values in the clear, in key order).
    pub(super) fn indexes(&mut self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (names, _) in &self.ast.indexes {
            for n in names {
                // Searched by: a use, whatever else comes of it.
                self.used_fields.insert(n.name.clone());
                let Some(field) = self.ast.fields.iter().find(|f| f.name.name == n.name) else {
                    let hint = closest_or(&n.name, self.ast.fields.iter().map(|f| f.name.name.as_str()), || {
                        "name a field of the process's `fields` block".into()
                    });
                    self.err(
                        Diagnostic::new(
                            Code::UnknownField,
                            n.span.clone(),
                            format!("`{}` is not a field of this process", n.name),
                        )
                        .advice(hint),
                    );
                    continue;
                };
                if field.sensitive {
                    self.err(
                        Diagnostic::new(
                            Code::BadFieldDecl,
                            n.span.clone(),
                            format!("`{}` is sensitive and cannot be indexed", n.name),
                        )
                        .hint("an index keeps values unsealed and in order: search by another field, or drop `index` for this one"),
                    );
                    continue;
                }
                if matches!(field.ty, ast::TypeExpr::ListOfText) {
                    self.err(
                        Diagnostic::new(
                            Code::BadFieldDecl,
                            n.span.clone(),
                            format!("`{}` is a list and cannot be indexed", n.name),
                        )
                        .hint("index fields of one value (text, number, date, choice, yes/no)"),
                    );
                    continue;
                }
                if out.contains(&n.name) {
                    self.err(Diagnostic::new(
                        Code::BadFieldDecl,
                        n.span.clone(),
                        format!("`{}` is indexed twice", n.name),
                    ));
                    continue;
                }
                out.push(n.name.clone());
            }
        }
        out
    }

    // ------------------------------------------------------------ tallies

    /// `tally NAME by KEYS on end OUTCOME`: a unique name, keys that are values, an outcome
    /// that is an `end` of this process.
    pub(super) fn tallies(&mut self) -> Vec<(String, Vec<Expr>, String)> {
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
                let hint = closest_or(&t.outcome.name, ends, || "name one of the process's `end` steps".into());
                self.err(
                    Diagnostic::new(
                        Code::UnknownStep,
                        t.outcome.span.clone(),
                        format!("`{}` is not an `end` of this process", t.outcome.name),
                    )
                    .advice(hint),
                );
            }
            out.push((t.name.name.clone(), t.keys.clone(), t.outcome.name.clone()));
        }
        out
    }

    // ------------------------------------------------------------ interrupts

    /// `keep message NAME for DURATION`: once per message, a duration, and some step that
    /// listens for it (or it could only expire).
    pub(super) fn kept_messages(&mut self) -> Vec<(String, Expr)> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (message, ttl, _) in &self.ast.kept {
            if !seen.insert(message.name.clone()) {
                self.err(Diagnostic::new(
                    Code::MessageConflict,
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
                        Code::MessageConflict,
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

    pub(super) fn interrupts(&mut self) -> Vec<(String, StepId)> {
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for (message, target, _) in &self.ast.interrupts {
            if !seen.insert(message.name.clone()) {
                self.err(Diagnostic::new(
                    Code::MessageConflict,
                    message.span.clone(),
                    format!("message `{}` already interrupts the case", message.name),
                ));
            }
            out.push((message.name.clone(), self.resolve(target)));
        }
        out
    }

    /// A message that interrupts the whole case is not also heard by one step.
    pub(super) fn no_local_listener(&mut self, interrupts: &[(String, StepId)], steps: &[model::Step]) {
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
                            Code::MessageConflict,
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

    pub(super) fn declare_fields(&mut self) {
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

    pub(super) fn declare_steps(&mut self) {
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

    pub(super) fn check_key(&mut self, key: &str, span: &Span) {
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
                        let hint =
                            closest_or(field, ["date", "seq"].into_iter().chain(self.fields.keys().copied()), || {
                                "use `{date:%Y%m%d}`, `{seq:03}` or a field name".into()
                            });
                        self.err(
                            Diagnostic::new(
                                Code::BadKey,
                                span.clone(),
                                format!("`{{{inner}}}` is not a date, a sequence or a field"),
                            )
                            .advice(hint),
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
}
