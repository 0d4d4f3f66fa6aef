//! Decisions (exhaustiveness) and expressions (their types, `Ty`).

use super::*;

impl<'a> Checker<'a> {
    // ------------------------------------------------------------ decisions

    /// Without `else`, the branches must cover every value of one bool or choice field.
    pub(super) fn check_exhaustive(&mut self, branches: &[(Expr, Ident)], span: &Span, from: &str) {
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
    pub(super) fn covered_values(&self, cond: &Expr) -> Option<(String, Vec<String>)> {
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

    pub(super) fn field_ref(&mut self, name: &Ident) -> Option<&'a ast::FieldDecl> {
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

    pub(super) fn unknown_field(&mut self, name: &str, span: &Span) {
        let hint =
            closest_or(name, self.fields.keys().copied(), || format!("declare it in `fields {{ {name}: text }}`"));
        self.err(
            Diagnostic::new(Code::UnknownField, span.clone(), format!("there is no field named `{name}`")).advice(hint),
        );
    }

    /// `rules.NAME` or `rules.NAME[key]`: the value's type, and whether the key can name an entry.
    /// Apart from `ty` so that its frame stays small: `ty` recurses once per operator.
    #[inline(never)]
    // One piece (over 100 lines): a `rules.NAME[key]` reference checked against the rules' value, its key and its entries together.
    pub(super) fn rule_ty(&mut self, e: &Expr, name: &ast::Ident, key: &Option<Box<Expr>>) -> Ty {
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
                        crate::diag::Advice {
                            hint: format!(
                                "`{}` is a decision table: use `lookup {} {{ ... }} => {{ ... }}` in an `auto` step",
                                name.name, name.name
                            ),
                            replacement: None,
                        }
                    } else {
                        closest_or(&name.name, catalog.values.keys().map(String::as_str), || {
                            "define it under `[values.NAME]` in the rules".into()
                        })
                    };
                    self.err(
                        Diagnostic::new(
                            Code::UnknownRule,
                            name.span.clone(),
                            format!("the rules define no value `{}`", name.name),
                        )
                        .advice(hint),
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
    pub(super) fn want_arg(&mut self, function: &ast::Ident, arg: &Expr, ty: &Ty, fits: bool, wants: &str) {
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
    // One piece (over 100 lines): one match over the functions of the language, each arm its arity and types.
    pub(super) fn call_ty(&mut self, e: &Expr, function: &ast::Ident, args: &[Expr]) -> Ty {
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
                        let hint = closest_or(&function.name, FUNCTIONS.iter().map(|f| f.0), || {
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
                            .advice(hint),
                        );
                        Ty::Any
                    }
                }
            }
        }
    }

    pub(super) fn ty(&mut self, e: &Expr) -> Ty {
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

    pub(super) fn binary(&mut self, e: &Expr, op: BinOp, lhs: &Expr, rhs: &Expr) -> Ty {
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

    pub(super) fn comparable(&mut self, e: &Expr, op: BinOp, lhs: &Expr, l: &Ty, rhs: &Expr, r: &Ty) {
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
    pub(super) fn choice_member(&mut self, values: &[String], field: &Expr, value: &Expr) {
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
            let hint = closest_or(&name, values.iter().map(String::as_str), || {
                format!("the values are: {}", values.join(", "))
            });
            self.err(
                Diagnostic::new(
                    Code::UnknownChoiceValue,
                    value.span.clone(),
                    format!("`{name}` is not a value of `{field_name}` ({})", values.join(", ")),
                )
                .advice(hint),
            );
        }
    }

    /// A bare name that is not a field, used where no choice field gives it meaning.
    pub(super) fn no_symbol(&mut self, e: &Expr, t: &Ty) {
        if let Ty::Symbol(name) = t {
            self.unknown_field(name, &e.span);
        }
    }

    pub(super) fn mismatch(&mut self, e: &Expr, message: String) {
        self.err(Diagnostic::new(Code::TypeMismatch, e.span.clone(), message));
    }

    pub(super) fn expect_bool(&mut self, e: &Expr, t: &Ty, what: &str) {
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

    pub(super) fn expect_duration(&mut self, e: &Expr, t: &Ty, what: &str) {
        self.no_symbol(e, t);
        if !matches!(t, Ty::Duration | Ty::Any | Ty::Symbol(_)) {
            self.err(
                Diagnostic::new(Code::TypeMismatch, e.span.clone(), format!("{what} needs a duration, found {t}"))
                    .hint("write a duration such as `10min`, `24h`, `3 workdays` or `4 workhours`"),
            );
        }
    }

    pub(super) fn check_assignable(&mut self, target: &FieldType, value: &Expr, got: &Ty, what: &str) {
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
}

/// The value of an int literal, negated or not.
pub(super) fn int_literal(e: &Expr) -> Option<i64> {
    match &e.kind {
        ExprKind::Int(n) => Some(*n),
        ExprKind::Neg(inner) => int_literal(inner).map(|n| -n),
        _ => None,
    }
}

/// The first strftime code of `format` that chrono cannot format (`%Q`), if any: the engine
/// renders keys with the same parser, so what passes here formats.
pub(super) fn bad_date_code(format: &str) -> Option<String> {
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

pub(super) fn same_kind(a: &Ty, b: &Ty) -> bool {
    match (a, b) {
        (Ty::Any, _) | (_, Ty::Any) => true,
        (x, y) if x.is_numeric() && y.is_numeric() => true,
        (Ty::Date | Ty::DateTime, Ty::Date | Ty::DateTime) => true,
        (Ty::Choice(_), Ty::Choice(_) | Ty::Text) | (Ty::Text, Ty::Choice(_)) => true,
        (Ty::List(x), Ty::List(y)) => same_kind(x, y),
        (x, y) => std::mem::discriminant(x) == std::mem::discriminant(y),
    }
}

pub(super) fn types_compatible(target: &FieldType, source: &FieldType) -> bool {
    match (target, source) {
        (FieldType::Choice(a), FieldType::Choice(b)) => b.iter().all(|v| a.contains(v)),
        (FieldType::Decimal, FieldType::Int { .. }) => true,
        (t, s) => same_kind(&Ty::of_field(t), &Ty::of_field(s)),
    }
}

pub(super) fn arithmetic(op: BinOp, l: &Ty, r: &Ty) -> Option<Ty> {
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

pub(super) fn valid_date_literal(s: &str) -> bool {
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
