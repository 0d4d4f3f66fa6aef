//! Who gets a task: a named user, a role's member by strategy (round robin, fewest open,
//! skill), a stand-in for someone away, a fallback; and the four-eyes rule.

use crate::case::run::Run;
use crate::case::{CommandError, Task};
use crate::rules::Strategy;
use crate::value::Value;
use caseflow_dsl::model::{Assignee, StepId, StepKind};
use chrono::Datelike;

impl Run<'_> {
    /// Chooses a user for an assignee rule; `None` leaves the task to its candidate roles.
    /// `step`'s assignee rule applied; a person its `not same as` excludes is never chosen
    /// (the task then waits for a candidate).
    pub(crate) fn assign(&self, who: &Assignee, step: StepId, current: Option<&str>) -> Option<String> {
        let excluded = self.excluded(step);
        let chosen = match who {
            Assignee::User(u) => Some(u.clone()),
            Assignee::Field(f) => match self.inst.fields.get(f) {
                Some(Value::Text(u)) if !u.is_empty() => Some(u.clone()),
                _ => None,
            },
            Assignee::SameAs(step) => self.inst.done_by.get(step).cloned(),
            Assignee::Role { role, strategy, familiar } => {
                // History-based: the one who did this step for the same customer last time,
                // if they can take it now.
                let known = familiar.as_ref().and_then(|f| match self.inst.fields.get(f) {
                    Some(Value::Text(v)) => self.ctx.workload.familiar(&self.inst.process, f, v, &self.step(step).name),
                    _ => None,
                });
                match known.filter(|u| self.can_take(role, u, &excluded)) {
                    Some(u) => Some(u),
                    None => self.pick_member(role, strategy.as_deref(), &excluded),
                }
            }
            Assignee::RoleFrom { strategy, .. } => {
                let role = self.role_from(who)?;
                self.pick_member(&role, strategy.as_deref(), &excluded)
            }
            // One level up the organisation from whoever holds the task now.
            Assignee::ManagerOfAssignee => {
                current.and_then(|u| self.ctx.rules.users.get(u)).and_then(|u| u.reports_to.clone())
            }
        };
        chosen.filter(|u| !excluded.contains(u))
    }

    /// The role a `role from FIELD` names now, if the rules define it.
    pub(crate) fn role_from(&self, who: &Assignee) -> Option<String> {
        let Assignee::RoleFrom { field, .. } = who else { return None };
        match self.inst.fields.get(field) {
            Some(Value::Text(r)) if self.ctx.rules.roles.contains_key(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// Who may not work on a task of `step`: those who did the steps it names in `not same as`.
    pub(crate) fn excluded(&self, step: StepId) -> Vec<String> {
        match &self.step(step).kind {
            StepKind::Task(def) => def.not_same_as.iter().filter_map(|s| self.inst.done_by.get(s).cloned()).collect(),
            _ => Vec::new(),
        }
    }

    /// Refuses a person whom the task's separation of duties excludes.
    pub(crate) fn four_eyes(&self, t: &Task, action: &str) -> Result<(), CommandError> {
        if self.excluded(t.step).contains(&self.actor.id) {
            return Err(self
                .forbidden(&format!("{action}: they did an earlier step this one must be done by someone else than")));
        }
        Ok(())
    }

    /// Whether `user` is a member of `role` who is here (not away, on shift) and not excluded.
    pub(crate) fn can_take(&self, role: &str, user: &str, excluded: &[String]) -> bool {
        !excluded.iter().any(|x| x == user) && self.available(role).contains(&user)
    }

    /// The members of a role who are here now: not away, and on shift if they have shifts.
    pub(crate) fn available<'r>(&'r self, role: &'r str) -> Vec<&'r str> {
        let rules = self.ctx.rules;
        let today = self.now().with_timezone(&rules.calendar.time_zone);
        let date = today.date_naive();
        let time = today.time();
        let away = |user: &str| rules.away.iter().any(|a| a.user == user && a.from <= date && date <= a.to);
        let on_shift = |user: &str| {
            let shifts: Vec<_> = rules.roster.iter().filter(|s| s.user == user).collect();
            shifts.is_empty()
                || shifts
                    .iter()
                    .any(|s| s.days.contains(&today.weekday()) && s.hours.start <= time && time < s.hours.end)
        };
        rules.members(role).map(|u| u.id.as_str()).filter(|u| !away(u) && on_shift(u)).collect()
    }

    /// The user of `users` with the fewest open tasks; of several, the first by name.
    fn fewest_open<'u>(&self, users: &[&'u str]) -> Option<&'u str> {
        let open = self.ctx.workload.open_tasks_of(users);
        users.iter().zip(open).min_by_key(|(u, n)| (*n, **u)).map(|(u, _)| *u)
    }

    pub(crate) fn pick_member(&self, role: &str, strategy: Option<&str>, excluded: &[String]) -> Option<String> {
        let rules = self.ctx.rules;
        let date = self.now().with_timezone(&rules.calendar.time_zone).date_naive();
        let away = |user: &str| rules.away.iter().any(|a| a.user == user && a.from <= date && date <= a.to);
        let available: Vec<&str> =
            self.available(role).into_iter().filter(|u| !excluded.iter().any(|x| x == u)).collect();
        let role_def = rules.roles.get(role);
        let strategy = strategy
            .and_then(Strategy::parse)
            .unwrap_or_else(|| role_def.map_or(Strategy::RoundRobin, |r| r.strategy.clone()));
        let chosen = match strategy {
            Strategy::RoundRobin if !available.is_empty() => {
                let mut taken = self.round_robin.borrow_mut();
                let taken = taken.entry(role.to_string()).or_insert(0);
                let position = self.ctx.workload.round_robin_position(role) + *taken;
                *taken += 1;
                Some(available[(position % available.len() as u64) as usize])
            }
            Strategy::FewestOpen => self.fewest_open(&available),
            Strategy::Skill => {
                // Members whose skills name a value of the case (a product line, a language).
                let wanted: Vec<String> = self
                    .inst
                    .fields
                    .values()
                    .filter_map(|v| match v {
                        Value::Text(t) => Some(t.clone()),
                        _ => None,
                    })
                    .collect();
                // The highest level in the case's skills first, then the fewest open tasks.
                let level = |u: &str| {
                    rules.users.get(u).map_or(0, |x| wanted.iter().map(|w| x.skill_level(w)).max().unwrap_or(0))
                };
                let best = available.iter().map(|u| level(u)).max().unwrap_or(0);
                let pool: Vec<&str> = available.iter().copied().filter(|u| level(u) == best).collect();
                self.fewest_open(&pool)
            }
            Strategy::RoundRobin => None,
        };
        // Someone away may have a stand-in who is not.
        let stand_in = || {
            rules
                .members(role)
                .filter(|u| away(&u.id))
                .find_map(|u| {
                    rules.away.iter().find(|a| a.user == u.id && a.from <= date && date <= a.to)?.stand_in.clone()
                })
                .filter(|s| !away(s) && !excluded.contains(s))
        };
        chosen
            .map(str::to_string)
            .or_else(stand_in)
            .or_else(|| role_def.and_then(|r| r.fallback.clone()).filter(|f| !excluded.contains(f)))
    }
}
