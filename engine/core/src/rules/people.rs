//! `[roles]`, `[users]`, `[[away]]`, `[[roster]]`, `[permissions]` and `[key_formats]`.

use super::load::*;
use super::*;

impl Loader {
    // ------------------------------------------------------------ people

    pub(super) fn role(&mut self, loc: &Loc, name: &str, t: &dyn TableLike) {
        self.known_keys(loc, t, &["name", "strategy", "fallback"]);
        if !self.define(loc, "role", name) {
            return;
        }
        let strategy = match self.str_of(loc, t, "strategy") {
            None => Strategy::RoundRobin,
            Some(name) => Strategy::parse(name).unwrap_or_else(|| {
                self.err(
                    &loc.child("strategy", None),
                    format!("`{name}` is not a strategy: {}", one_of(&caseflow_dsl::model::STRATEGIES)),
                );
                Strategy::RoundRobin
            }),
        };
        let fallback = self.str_of(loc, t, "fallback").map(str::to_string);
        if let Some(f) = &fallback {
            self.refer_user("fallback of role", f, loc);
        }
        let label = self.str_of(loc, t, "name").map(str::to_string);
        self.roles.insert(name.to_string(), Role { name: name.to_string(), label, strategy, fallback });
    }

    pub(super) fn user(&mut self, loc: &Loc, id: &str, t: &dyn TableLike) {
        self.known_keys(loc, t, &["name", "roles", "skills", "reports_to"]);
        if !self.define(loc, "user", id) {
            return;
        }
        let reports_to = self.str_of(loc, t, "reports_to").map(str::to_string);
        if let Some(m) = &reports_to {
            if m == id {
                self.err(loc, "a user cannot report to themselves");
            }
            self.refer_user("manager (reports_to)", m, loc);
            let (line, column) = line_col(&loc.file.text, loc.span.as_ref().map_or(0, |s| s.start));
            let at =
                RulesError { file: loc.file.name.clone(), line, column, key: loc.key.clone(), message: String::new() };
            self.manager_at.insert(id.to_string(), at);
        }
        let user = User {
            id: id.to_string(),
            name: self.str_of(loc, t, "name").map(str::to_string),
            roles: self.str_list(loc, t, "roles"),
            skills: {
                let skills = self.str_list(loc, t, "skills");
                for s in &skills {
                    if let Some((_, level)) = s.split_once(':') {
                        if !matches!(level.parse::<u8>(), Ok(1..=5)) {
                            self.err(
                                &loc.child("skills", t.get("skills").and_then(|i| i.span())),
                                format!("skill `{s}`: the level after `:` is 1 to 5"),
                            );
                        }
                    }
                }
                skills
            },
            reports_to,
        };
        self.users.insert(id.to_string(), user);
    }

    pub(super) fn refer_user(&mut self, what: &str, user: &str, loc: &Loc) {
        let (line, column) = line_col(&loc.file.text, loc.span.as_ref().map_or(0, |s| s.start));
        let e = RulesError { file: loc.file.name.clone(), line, column, key: loc.key.clone(), message: String::new() };
        self.user_refs.push((what.to_string(), user.to_string(), e));
    }

    pub(super) fn absence(&mut self, loc: &Loc, t: &dyn TableLike) {
        self.known_keys(loc, t, &["user", "from", "to", "stand_in"]);
        let user = self.str_of(loc, t, "user").map(str::to_string);
        let from = t.get("from").and_then(|i| self.date_of(&loc.child("from", i.span()), i));
        let to = t.get("to").and_then(|i| self.date_of(&loc.child("to", i.span()), i));
        let stand_in = self.str_of(loc, t, "stand_in").map(str::to_string);
        let (Some(user), Some(from), Some(to)) = (user, from, to) else {
            self.err(loc, "an absence needs `user`, `from` and `to`");
            return;
        };
        if from > to {
            self.err(loc, format!("the absence ends ({to}) before it starts ({from})"));
        }
        self.refer_user("absent user", &user, loc);
        if let Some(s) = &stand_in {
            self.refer_user("stand-in", s, loc);
            if *s == user {
                self.err(loc, "a user cannot stand in for themselves");
            }
        }
        let line = loc.line();
        self.away.push((Absence { user, from, to, stand_in }, loc.file.name.clone(), line));
    }

    pub(super) fn shift(&mut self, loc: &Loc, t: &dyn TableLike) {
        self.known_keys(loc, t, &["user", "days", "hours"]);
        let user = self.str_of(loc, t, "user").map(str::to_string);
        let days: Vec<Weekday> = self
            .str_list(loc, t, "days")
            .iter()
            .filter_map(|d| {
                let i = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"].iter().position(|x| x == d);
                if i.is_none() {
                    self.err(&loc.child("days", None), format!("`{d}` is not a weekday (mon … sun)"));
                }
                i.map(weekday)
            })
            .collect();
        let hours = self.str_of(loc, t, "hours").and_then(|h| {
            let p = parse_period(h);
            if p.is_none() {
                self.err(&loc.child("hours", None), "expected \"HH:MM-HH:MM\"");
            }
            p
        });
        let (Some(user), Some(hours)) = (user, hours) else {
            self.err(loc, "a shift needs `user`, `days` and `hours`");
            return;
        };
        self.refer_user("user on the roster", &user, loc);
        let line = loc.line();
        self.roster.push((Shift { user, days, hours }, loc.file.name.clone(), line));
    }

    // ------------------------------------------------------------ permissions

    pub(super) fn permissions_section(&mut self, loc: &Loc, item: &Item) {
        let Some(t) = item.as_table_like() else {
            self.err(loc, "expected a table: `[permissions]` with `reassign = [\"cs_manager\"]`");
            return;
        };
        self.known_keys(loc, t, &PERMISSIONS);
        for action in PERMISSIONS {
            if t.get(action).is_none() {
                continue;
            }
            let span = t.get(action).and_then(Item::span);
            let aloc = loc.child(action, span);
            if !self.define(&aloc, "permission", action) {
                continue;
            }
            let roles = self.str_list(loc, t, action);
            for r in &roles {
                let (line, column) = line_col(&aloc.file.text, aloc.span.as_ref().map_or(0, |s| s.start));
                let e = RulesError {
                    file: aloc.file.name.clone(),
                    line,
                    column,
                    key: aloc.key.clone(),
                    message: String::new(),
                };
                self.permission_refs.push((r.clone(), e));
            }
            self.permissions.insert(action.to_string(), roles);
        }
    }

    // ------------------------------------------------------------ key formats

    pub(super) fn key_formats_section(&mut self, loc: &Loc, item: &Item) {
        let Some(t) = item.as_table_like() else {
            self.err(loc, "expected a table: `[key_formats]` with `process = \"{date:%Y%m%d}-{seq:03}\"`");
            return;
        };
        for (process, v) in t.iter() {
            let span = t.get_key_value(process).and_then(|(k, _)| k.span()).or(v.span());
            let kloc = loc.child(process, span);
            if !self.define(&kloc, "key format", process) {
                continue;
            }
            let Some(template) = v.as_str() else {
                self.err(&kloc, "expected a template string such as \"{date:%Y%m%d}-{seq:03}\"");
                continue;
            };
            match check_key_template(template) {
                Ok(()) => {
                    self.key_formats.insert(process.to_string(), template.to_string());
                }
                Err(problem) => self.err(&kloc, problem),
            }
        }
    }
}
