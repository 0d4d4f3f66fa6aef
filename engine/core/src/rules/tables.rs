//! `[decision_tables]`: inputs, outputs, rows and hit policies, checked for gaps and overlaps.

use super::load::*;
use super::*;

impl Loader {
    // ------------------------------------------------------------ decision tables

    // One piece (over 100 lines): a decision table's keys are validated together (inputs, outputs and rows refer to each other).
    pub(super) fn table(&mut self, loc: &Loc, name: &str, t: &dyn TableLike) {
        self.known_keys(loc, t, &["hit_policy", "inputs", "outputs", "rows", "output_order", "description"]);
        if !self.define(loc, "decision table", name) {
            return;
        }
        let hit_policy = match self.str_of(loc, t, "hit_policy") {
            None | Some("first") => HitPolicy::First,
            Some("unique") => HitPolicy::Unique,
            Some("collect") => HitPolicy::Collect,
            Some("priority") => HitPolicy::Priority,
            Some(other) => {
                let span = t.get("hit_policy").and_then(Item::span);
                self.err(
                    &loc.child("hit_policy", span),
                    format!("`{other}` is not a hit policy: first, unique, collect or priority"),
                );
                HitPolicy::First
            }
        };
        let inputs = self.str_list(loc, t, "inputs");
        let outputs = self.str_list(loc, t, "outputs");
        if outputs.is_empty() {
            self.err(loc, "a decision table needs at least one output: `outputs = [\"department\"]`");
        }
        for col in inputs.iter().chain(&outputs) {
            if !valid_name(col) {
                self.err(loc, format!("column `{col}` is not a valid name: use lower-case snake_case"));
            }
        }
        let mut seen = BTreeSet::new();
        for col in inputs.iter().chain(&outputs) {
            if !seen.insert(col) {
                self.err(loc, format!("column `{col}` appears twice among the inputs and outputs"));
            }
        }
        let mut rows = Vec::new();
        let rows_item = t.get("rows");
        let rloc = loc.child("rows", rows_item.and_then(Item::span));
        let row_tables: Vec<(&dyn TableLike, Option<Range<usize>>)> = match rows_item {
            Some(Item::ArrayOfTables(a)) => a.iter().map(|r| (r as &dyn TableLike, r.span())).collect(),
            Some(Item::Value(toml_edit::Value::Array(a))) => a
                .iter()
                .filter_map(|v| match v.as_inline_table() {
                    Some(r) => Some((r as &dyn TableLike, v.span())),
                    None => {
                        self.err(&rloc, "each row is a table: `{ cause = \"quality\", department = \"qa\" }`");
                        None
                    }
                })
                .collect(),
            Some(_) => {
                self.err(&rloc, "expected a list of rows");
                Vec::new()
            }
            None => {
                self.err(loc, "a decision table needs `rows`");
                Vec::new()
            }
        };
        if row_tables.len() > TABLE_ROWS_MAX {
            self.err(&rloc, format!("{} rows; the limit is {TABLE_ROWS_MAX}", row_tables.len()));
            return;
        }
        for (i, (r, span)) in row_tables.into_iter().enumerate() {
            let row_loc = rloc.index(i, span);
            let known: Vec<&str> = inputs.iter().chain(&outputs).map(String::as_str).collect();
            self.known_keys(&row_loc, r, &known);
            let conditions = inputs
                .iter()
                .map(|input| match r.get(input) {
                    None => Condition::Any,
                    Some(cell) => self.condition(&row_loc.child(input, cell.span()), cell),
                })
                .collect();
            let outs = outputs
                .iter()
                .filter_map(|o| match r.get(o) {
                    Some(cell) => self.scalar(&row_loc.child(o, cell.span()), cell),
                    None => {
                        self.err(&row_loc, format!("the row gives no value for output `{o}`"));
                        None
                    }
                })
                .collect::<Vec<_>>();
            if outs.len() == outputs.len() {
                rows.push(Row { conditions, outputs: outs, line: row_loc.line() });
            }
        }
        let mut output_order = Vec::new();
        if let Some(order) = t.get("output_order") {
            let oloc = loc.child("output_order", order.span());
            match order.as_array() {
                Some(a) => {
                    for (i, v) in a.iter().enumerate() {
                        if let Some(x) = self.scalar(&oloc.index(i, v.span()), &Item::Value(v.clone())) {
                            output_order.push(x);
                        }
                    }
                }
                None => self.err(&oloc, "expected a list of output values, highest priority first"),
            }
        }
        if hit_policy == HitPolicy::Priority && output_order.is_empty() {
            self.err(
                loc,
                "hit policy `priority` needs `output_order`: the first output's values, highest priority first",
            );
        }
        let table = DecisionTable { name: name.to_string(), hit_policy, inputs, outputs, rows, output_order };
        if hit_policy == HitPolicy::Unique {
            for (a, b) in table.overlapping_rows() {
                let at = Loc { file: loc.file, key: format!("{}[{b}]", rloc.key), span: None };
                let mut e_loc = at.clone();
                e_loc.span = Some(offset_of_line(&loc.file.text, table.rows[b].line));
                self.err(
                    &e_loc,
                    format!(
                        "rows {a} (line {}) and {b} (line {}) can both match the same input, but the hit policy is `unique`",
                        table.rows[a].line, table.rows[b].line
                    ),
                );
            }
        }
        self.tables.insert(name.to_string(), table);
    }

    pub(super) fn condition(&mut self, loc: &Loc, cell: &Item) -> Condition {
        if let Some(list) = cell.as_array() {
            let mut values = Vec::new();
            for (i, v) in list.iter().enumerate() {
                if let Some(x) = self.scalar(&loc.index(i, v.span()), &Item::Value(v.clone())) {
                    values.push(x);
                }
            }
            return Condition::OneOf(values);
        }
        if let Some(s) = cell.as_str() {
            let s = s.trim();
            if s == "*" || s == "-" || s.is_empty() {
                return Condition::Any;
            }
            for (op, make) in [(">=", (true, true)), ("<=", (false, true)), (">", (true, false)), ("<", (false, false))]
            {
                if let Some(rest) = s.strip_prefix(op) {
                    let v = Value::parse_loose(rest.trim());
                    let (lower, inclusive) = make;
                    return if lower {
                        Condition::Range { min: Some(v), max: None, min_inclusive: inclusive, max_inclusive: true }
                    } else {
                        Condition::Range { min: None, max: Some(v), min_inclusive: true, max_inclusive: inclusive }
                    };
                }
            }
            if let Some(rest) = s.strip_prefix("!=") {
                return Condition::NotEquals(Value::parse_loose(rest.trim()));
            }
            if let Some((a, b)) = s.split_once("..") {
                let (lo, hi) = (Value::parse_loose(a.trim()), Value::parse_loose(b.trim()));
                if matches!(lo, Value::Int(_) | Value::Decimal(_) | Value::Date(_)) && lo.compare(&hi).is_some() {
                    if lo.compare(&hi) == Some(std::cmp::Ordering::Greater) {
                        self.err(loc, format!("the range `{s}` is empty: write the smaller bound first"));
                    }
                    return Condition::Range { min: Some(lo), max: Some(hi), min_inclusive: true, max_inclusive: true };
                }
                self.err(loc, format!("`{s}` is not a range of numbers or dates such as `1..5`"));
                return Condition::Any;
            }
        }
        match self.scalar(loc, cell) {
            Some(v) => Condition::Equals(v),
            None => Condition::Any,
        }
    }

    pub(super) fn finish(mut self) -> Result<RuleSet, Vec<RulesError>> {
        for user in self.users.values() {
            for role in &user.roles {
                if !self.roles.contains_key(role) {
                    let hint = closest(role, &self.roles.keys().map(String::as_str).collect::<Vec<_>>())
                        .map(|c| format!(" (did you mean `{c}`?)"))
                        .unwrap_or_default();
                    let at = self.defined_at.get(&format!("user {}", user.id)).cloned().unwrap_or_default();
                    let (file, line) =
                        at.rsplit_once(':').map_or((at.as_str(), 0), |(f, l)| (f, l.parse().unwrap_or(0)));
                    self.errors.push(RulesError {
                        file: file.to_string(),
                        line,
                        column: 1,
                        key: format!("users.{}.roles", user.id),
                        message: format!(
                            "user `{}` holds role `{role}`, which is not defined under [roles]{hint}",
                            user.id
                        ),
                    });
                }
            }
        }
        for (role, mut e) in std::mem::take(&mut self.permission_refs) {
            if !self.roles.contains_key(&role) {
                e.message = format!("role `{role}` is not defined under [roles]");
                self.errors.push(e);
            }
        }
        for (what, user, mut e) in std::mem::take(&mut self.user_refs) {
            if !self.users.contains_key(&user) {
                e.message = format!("{what} `{user}` is not defined under [users]");
                self.errors.push(e);
            }
        }
        // A chain of managers ends: no one is their own manager's manager.
        for start in self.users.keys() {
            // Reporting to oneself is refused where it is read.
            if self.users.get(start).and_then(|u| u.reports_to.as_deref()) == Some(start.as_str()) {
                continue;
            }
            let mut seen = BTreeSet::new();
            let mut at = start.as_str();
            while let Some(next) = self.users.get(at).and_then(|u| u.reports_to.as_deref()) {
                if !seen.insert(at) {
                    break;
                }
                if next == start {
                    // Reported once, at the circle's first user by name.
                    if seen.iter().all(|u| *u >= start.as_str()) {
                        let chain = seen.iter().copied().collect::<Vec<_>>().join(", ");
                        let mut e = self.manager_at.get(start).cloned().unwrap_or(RulesError {
                            file: String::new(),
                            line: 0,
                            column: 0,
                            key: format!("users.{start}"),
                            message: String::new(),
                        });
                        e.message = format!("`reports_to` goes round in a circle through {chain}");
                        self.errors.push(e);
                    }
                    break;
                }
                at = next;
            }
        }
        if !self.errors.is_empty() {
            self.errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
            return Err(self.errors);
        }
        Ok(RuleSet {
            calendar: self.calendar.unwrap_or_else(BusinessCalendar::standard_china),
            roles: self.roles,
            users: self.users,
            away: self.away.into_iter().map(|(a, _, _)| a).collect(),
            roster: self.roster.into_iter().map(|(s, _, _)| s).collect(),
            values: self.values,
            tables: self.tables,
            key_formats: self.key_formats,
            permissions: self.permissions,
        })
    }
}
