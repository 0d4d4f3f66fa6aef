//! Each step's clauses: tasks (assignment, deadlines, handlers, forms), automatic steps, waits,
//! splits and joins, calls.

use super::*;

impl<'a> Checker<'a> {
    // ------------------------------------------------------------ steps

    pub(super) fn resolve(&mut self, target: &Ident) -> StepId {
        match self.steps.get(target.name.as_str()) {
            Some(&i) => StepId(i as u32),
            None => {
                let advice = closest_or(&target.name, self.steps.keys().copied(), || {
                    format!("declare it, e.g. `task {} {{ ... }}` or `end {}`", target.name, target.name)
                });
                let meant = advice.replacement.clone();
                self.err(
                    Diagnostic::new(
                        Code::UnknownStep,
                        target.span.clone(),
                        format!("there is no step named `{}`", target.name),
                    )
                    .advice(advice),
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

    pub(super) fn transition(&mut self, next: &ast::Next, from: &str) -> Transition {
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

    pub(super) fn need_next(&mut self, step: &ast::Step, next: &Option<ast::Next>) -> Transition {
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

    pub(super) fn step(&mut self, index: usize, s: &ast::Step) -> model::Step {
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

    // One piece (over 100 lines): a task's clauses are checked against each other (a handler needs `due`, `collect` needs `for each`, `asks` needs its fields), all from the one AST node.
    pub(super) fn task(&mut self, s: &ast::Step, t: &ast::TaskStep) -> model::Task {
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
                        Code::BadEach,
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
    pub(super) fn check_role_field(&mut self, field: &Ident) {
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

    pub(super) fn check_role(&mut self, role: &Ident) {
        if let Some(catalog) = self.ctx.catalog {
            if !catalog.roles.contains(&role.name) {
                let hint = closest_or(&role.name, catalog.roles.iter().map(String::as_str), || {
                    "define it under `[roles.NAME]` in the rules".into()
                });
                self.err(
                    Diagnostic::new(
                        Code::UnknownRole,
                        role.span.clone(),
                        format!("the rules define no role `{}`", role.name),
                    )
                    .advice(hint),
                );
            }
        }
    }

    pub(super) fn assignee(&mut self, a: &ast::Assignee) -> model::Assignee {
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
                        let hint = closest_or(&s.name, crate::model::STRATEGIES, || {
                            format!("use one of: {}", crate::model::STRATEGIES.join(", "))
                        });
                        self.err(
                            Diagnostic::new(
                                Code::BadAssignee,
                                s.span.clone(),
                                format!("unknown assignment strategy `{}`", s.name),
                            )
                            .advice(hint),
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

    pub(super) fn auto_action(&mut self, a: &ast::AutoAction) -> model::AutoAction {
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
                    let hint = closest_or(&table.name, catalog.tables.keys().map(String::as_str), || {
                        "define it under `[decision_tables.NAME]` in the rules".into()
                    });
                    self.err(
                        Diagnostic::new(
                            Code::UnknownRule,
                            table.span.clone(),
                            format!("the rules define no decision table `{}`", table.name),
                        )
                        .advice(hint),
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
    pub(super) fn table_covers(
        &mut self,
        table: &ast::Ident,
        shape: &crate::catalog::TableShape,
        inputs: &[(ast::Ident, Expr)],
    ) {
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

    pub(super) fn wait(&mut self, s: &ast::Step, w: &ast::WaitStep) -> model::Wait {
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

    pub(super) fn call(&mut self, s: &ast::Step, c: &ast::CallStep) -> model::Call {
        let callee = self.ctx.processes.map(|p| p.get(&c.process.name));
        if let Some(None) = callee {
            let names = self.ctx.processes.into_iter().flat_map(|p| p.keys().map(String::as_str));
            let hint =
                closest_or(&c.process.name, names, || "check the process id after `process` in the called file".into());
            self.err(
                Diagnostic::new(
                    Code::UnknownStep,
                    c.process.span.clone(),
                    format!("there is no process `{}`", c.process.name),
                )
                .advice(hint),
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
                        .advice(closest_or(
                            &child_field.name,
                            sig.fields.keys().map(String::as_str),
                            String::new,
                        )),
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
}
