//! Walking one scenario: a fresh engine on the given storage, the setup's processes deployed,
//! a manual clock that only the scenario moves, and a perfect timer driver (each timer fires
//! exactly when due, in order).

use super::coverage::{Fact, Reach};
use super::file::{line_of, parse, Scenario, ScenarioFile, Step};
use crate::clock::{Clock, ManualClock};
use crate::{Engine, MemoryStore, RuleSet, Storage};
use caseflow_core::case::{Act, Actor, HistoryEvent, Instance, InstanceId, Status, Task};
use caseflow_core::value::Value;
use caseflow_dsl::model::Process;
use caseflow_dsl::SourceFile;
use chrono::{DateTime, NaiveDateTime, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use toml::Spanned;

/// More timers than this falling due in one scenario stop it: a reminder every minute for a
/// year is a mistake in the scenario, not something to wait for.
const TIMERS_MAX: usize = 20_000;

/// What a scenario runs against: the processes (deployed together, as a folder is checked) and
/// the rules.
pub struct Setup {
    processes: Vec<SourceFile>,
    rules: RuleSet,
    models: BTreeMap<String, Process>,
}

impl Setup {
    /// Checks that the processes deploy together under the rules; otherwise every refusal.
    pub fn new(processes: Vec<SourceFile>, rules: RuleSet) -> Result<Setup, Vec<String>> {
        let engine = Engine::open(MemoryStore::new(), rules.clone()).map_err(|e| vec![e.to_string()])?;
        let now = DateTime::<Utc>::UNIX_EPOCH; // only to check that they deploy
        let results = engine.deploy_together(&processes, now).map_err(|e| vec![e.to_string()])?;
        let refused: Vec<String> = results
            .iter()
            .zip(&processes)
            .filter_map(|(r, f)| r.as_ref().err().map(|e| format!("{} does not deploy: {e}", f.name)))
            .collect();
        if !refused.is_empty() {
            return Err(refused);
        }
        let models = engine
            .definitions()
            .into_iter()
            .filter_map(|(process, _)| Some((process.clone(), engine.definition(&process, None)?.model.clone())))
            .collect();
        Ok(Setup { processes, rules, models })
    }

    /// The deployed processes by id.
    pub fn models(&self) -> &BTreeMap<String, Process> {
        &self.models
    }

    pub fn time_zone(&self) -> Tz {
        self.rules.calendar.time_zone
    }
}

/// Why a scenario failed: where (step number and the line it starts on), doing what, and
/// what was expected against what was found.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ScenarioFailure))]
pub struct Failure {
    /// The step (1-based) of the scenario's own case; null for the start or the file itself.
    pub step: Option<usize>,
    /// The line of the step (or of the problem) in the scenario's text.
    pub line: Option<usize>,
    pub action: String,
    pub expected: String,
    pub found: String,
}

/// One scenario's result.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ScenarioOutcome))]
pub struct ScenarioResult {
    pub name: String,
    pub description: String,
    /// The process the scenario starts; empty when the file could not be read.
    pub process: String,
    /// Absent when the scenario passed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// What was done, one line per action, up to the failure.
    pub log: Vec<String>,
    /// Steps, decision arms, reminders, missed deadlines, escalations and cancellations reached.
    #[serde(skip)]
    pub reached: BTreeSet<Fact>,
}

impl ScenarioResult {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

impl ScenarioResult {
    /// A scenario file that cannot be read as text (not UTF-8): it fails alone, saying so, and
    /// the other files still run.
    pub fn unreadable(name: &str, bytes: &[u8]) -> ScenarioResult {
        let (line, found) = match std::str::from_utf8(bytes) {
            Ok(_) => (None, "text".to_string()),
            Err(e) => {
                let at = e.valid_up_to();
                let line = bytes[..at].iter().filter(|b| **b == b'\n').count() + 1;
                let bad: Vec<String> =
                    bytes[at..bytes.len().min(at + 2)].iter().map(|b| format!("0x{b:02X}")).collect();
                (
                    Some(line),
                    format!(
                        "bytes {} that are not UTF-8 (GBK, a Chinese Windows editor's default, looks like this): \
                         save the file as UTF-8",
                        bad.join(" ")
                    ),
                )
            }
        };
        ScenarioResult {
            name: name.to_string(),
            description: String::new(),
            process: String::new(),
            failure: Some(Failure {
                step: None,
                line,
                action: "read the file".into(),
                expected: "UTF-8 text".into(),
                found,
            }),
            log: Vec::new(),
            reached: BTreeSet::new(),
        }
    }
}

/// Runs one scenario on `store` (empty): parses it, deploys the setup's processes, walks it.
pub fn run<S: Storage>(setup: &Setup, file: &ScenarioFile, store: S) -> ScenarioResult {
    run_keeping(setup, file, store).0
}

/// The engine a scenario ran on, and its case.
pub type RanCase<S> = (Arc<Engine<S>>, InstanceId);

/// As `run`, and hands back the engine it ran on with the scenario's case (once started), to
/// look at or record the case afterwards.
pub fn run_keeping<S: Storage>(setup: &Setup, file: &ScenarioFile, store: S) -> (ScenarioResult, Option<RanCase<S>>) {
    let mut outcome = ScenarioResult {
        name: file.name.clone(),
        description: String::new(),
        process: String::new(),
        failure: None,
        log: Vec::new(),
        reached: BTreeSet::new(),
    };
    let scenario = match parse(file) {
        Ok(s) => s,
        Err(failure) => {
            outcome.failure = Some(failure);
            return (outcome, None);
        }
    };
    outcome.description = scenario.description.clone();
    outcome.process = scenario.process.clone();
    let mut walk = match Walk::new(setup, &scenario, store) {
        Ok(w) => w,
        Err(problem) => {
            outcome.failure = Some(problem.at(None, Some(line_of(&file.text, scenario.start_at.span().start))));
            return (outcome, None);
        }
    };
    walk.dir = file.dir.clone();
    let result = walk.scenario(&scenario, &file.text);
    outcome.log = std::mem::take(&mut walk.log);
    match result {
        Ok(()) => outcome.reached = walk.reached(),
        Err(failure) => outcome.failure = Some(failure),
    }
    let case = (walk.root != InstanceId(0)).then(|| (walk.engine.clone(), walk.root));
    (outcome, case)
}

/// A failed expectation or refused action, before it is placed at a step.
struct Problem {
    action: String,
    expected: String,
    found: String,
}

impl Problem {
    fn new(action: impl Into<String>, expected: impl Into<String>, found: impl Into<String>) -> Problem {
        Problem { action: action.into(), expected: expected.into(), found: found.into() }
    }

    fn at(self, step: Option<usize>, line: Option<usize>) -> Failure {
        Failure { step, line, action: self.action, expected: self.expected, found: self.found }
    }
}

/// An open task as scenarios see it.
struct OpenTask {
    step: String,
    assignee: Option<String>,
    due: Option<DateTime<Utc>>,
    overdue: bool,
    priority: u8,
    item: Option<String>,
}

struct Walk<S: Storage> {
    engine: Arc<Engine<S>>,
    clock: Arc<ManualClock>,
    zone: Tz,
    log: Vec<String>,
    /// The case the steps act on; sub-process cases it started are found from it.
    root: InstanceId,
    reminders: usize,
    timers_fired: usize,
    /// Where `.flow` files to deploy are read from.
    dir: Option<std::path::PathBuf>,
    /// Where the last migration put the case's places.
    landing: Vec<String>,
}

impl<S: Storage> Walk<S> {
    fn new(setup: &Setup, scenario: &Scenario, store: S) -> Result<Walk<S>, Problem> {
        let zone = setup.time_zone();
        let start = local(zone, scenario.start_at.get_ref()).map_err(|e| Problem::new("start", "a time", e))?;
        let clock = Arc::new(ManualClock::new(start));
        let engine = Engine::open(store, setup.rules.clone())
            .map_err(|e| Problem::new("open the engine", "an empty store", e.to_string()))?;
        let results = engine
            .deploy_together(&setup.processes, clock.now())
            .map_err(|e| Problem::new("deploy", "the processes deployed", e.to_string()))?;
        if let Some((file, Err(e))) = setup.processes.iter().zip(results).find(|(_, r)| r.is_err()) {
            return Err(Problem::new("deploy", format!("{} deployed", file.name), e.to_string()));
        }
        Ok(Walk {
            engine: Arc::new(engine),
            clock,
            zone,
            log: Vec::new(),
            root: InstanceId(0),
            reminders: 0,
            timers_fired: 0,
            dir: None,
            landing: Vec::new(),
        })
    }

    fn scenario(&mut self, scenario: &Scenario, text: &str) -> Result<(), Failure> {
        let start_line = Some(line_of(text, scenario.start_at.span().start));
        for (n, earlier) in scenario.earlier.iter().enumerate() {
            let fields = fields(&earlier.fields).map_err(|e| e.at(None, start_line))?;
            self.log.push(format!("earlier case {}: start {}", n + 1, scenario.process));
            let actor = self.actor_of(earlier.started_by.as_deref());
            let inst = self
                .engine
                .start(&scenario.process, fields, &actor, None, self.clock.now())
                .map_err(|e| Problem::new("start an earlier case", "the start accepted", e.to_string()))
                .map_err(|p| p.at(None, start_line))?;
            self.root = inst.id;
            self.reminders = 0;
            self.steps(&earlier.step, text, &format!("earlier case {}, ", n + 1))?;
            if let Some(o) = &earlier.expect_outcome {
                let status = self.root_instance().map_err(|p| p.at(None, start_line))?.status;
                if status != (Status::Completed { outcome: o.clone() }) {
                    return Err(Problem::new("end the earlier case", format!("outcome {o}"), format!("{status:?}"))
                        .at(None, start_line));
                }
            }
        }
        let fields = fields(&scenario.fields).map_err(|e| e.at(None, start_line))?;
        let actor = self.actor_of(scenario.started_by.as_deref());
        self.log.push(format!("start {} at {}", scenario.process, scenario.start_at.get_ref()));
        let started = self.engine.start(&scenario.process, fields, &actor, None, self.clock.now());
        let action = format!("start {}", scenario.process);
        match (started, &scenario.start_refused) {
            (Err(e), Some(want)) if e.to_string().contains(want.as_str()) => {
                let left = self.engine.count_instances(&scenario.process, "running").unwrap_or(0);
                if left > scenario.earlier.len() {
                    return Err(Problem::new(action, "no case left by the refused start", format!("{left} running"))
                        .at(None, start_line));
                }
                Ok(())
            }
            (Err(e), Some(want)) => {
                Err(Problem::new(action, format!("refused with `{want}`"), e.to_string()).at(None, start_line))
            }
            (Err(e), None) => {
                Err(Problem::new(action, "the start accepted", format!("refused: {e}")).at(None, start_line))
            }
            (Ok(_), Some(want)) => {
                Err(Problem::new(action, format!("refused with `{want}`"), "it started").at(None, start_line))
            }
            (Ok(inst), None) => {
                self.root = inst.id;
                self.reminders = 0;
                self.steps(&scenario.step, text, "")
            }
        }
    }

    fn steps(&mut self, steps: &[Spanned<Step>], text: &str, prefix: &str) -> Result<(), Failure> {
        for (i, s) in steps.iter().enumerate() {
            let line = Some(line_of(text, s.span().start));
            self.step(s.get_ref()).map_err(|mut p| {
                if !prefix.is_empty() {
                    p.action = format!("{prefix}{}", p.action);
                }
                p.at(prefix.is_empty().then_some(i + 1), line)
            })?;
        }
        Ok(())
    }

    fn root_instance(&self) -> Result<Instance, Problem> {
        self.engine
            .instance(self.root)
            .map_err(|e| Problem::new("read the case", "the case", e.to_string()))?
            .ok_or_else(|| Problem::new("read the case", "the case", "nothing"))
    }

    /// The case and every sub-process case under it, in id order.
    fn family(&self) -> Vec<Instance> {
        let mut out: Vec<Instance> = Vec::new();
        let mut id = self.root.0;
        while let Ok(Some(inst)) = self.engine.instance(InstanceId(id)) {
            let ours = inst.id == self.root || inst.parent.is_some_and(|(p, _)| out.iter().any(|o| o.id == p));
            if ours {
                out.push(inst);
            }
            id += 1;
        }
        out
    }

    /// A user as the rules know them; `admin` is an administrator; any other name is an
    /// integrated system (a CRM's service token), with the rules' `integration` role, so that a
    /// recording of what the CRM did replays under the same rules.
    fn staff(&self, user: &str) -> Actor {
        let roles = match self.engine.rules().users.get(user) {
            Some(u) => u.roles.clone(),
            None if user == "admin" => Vec::new(),
            None => vec!["integration".to_string()],
        };
        Actor { admin: user == "admin", id: user.to_string(), roles }
    }

    /// Who starts a case: a user of the rules, or the CRM's service account.
    fn actor_of(&self, user: Option<&str>) -> Actor {
        match user {
            Some(u) => Actor { admin: false, ..self.staff(u) },
            None => Actor { id: "crm".into(), roles: vec![], admin: false },
        }
    }

    fn advance(&mut self, to: DateTime<Utc>) -> Result<(), String> {
        while let Some(next) = self.engine.next_due().map_err(|e| e.to_string())?.filter(|n| *n <= to) {
            self.clock.set(next.max(self.clock.now()));
            let before = self.engine.history(self.root).map_err(|e| e.to_string())?.len();
            let fired = self.engine.fire_due(self.clock.now(), 1).map_err(|e| e.to_string())?;
            let history = self.engine.history(self.root).map_err(|e| e.to_string())?;
            self.reminders +=
                history[before.min(history.len())..].iter().filter(|h| h.event == HistoryEvent::ReminderSent).count();
            if fired == 0 {
                break; // a suspended case's timer: it waits for resume
            }
            self.timers_fired += fired;
            if self.timers_fired > TIMERS_MAX {
                return Err(format!("more than {TIMERS_MAX} timers fell due; is a reminder or cycle too frequent?"));
            }
        }
        self.clock.set(to.max(self.clock.now()));
        Ok(())
    }

    fn find_task(&self, step: &str) -> Option<(InstanceId, Task)> {
        for inst in self.family() {
            let def = self.engine.definition(&inst.process, Some(inst.version))?;
            if let Some(t) = inst.tasks.values().find(|t| def.model.step(t.step).name == step) {
                return Some((inst.id, t.clone()));
            }
        }
        None
    }

    fn open_tasks(&self) -> Vec<OpenTask> {
        let mut out = Vec::new();
        for inst in self.family() {
            let Some(def) = self.engine.definition(&inst.process, Some(inst.version)) else { continue };
            for t in inst.tasks.values() {
                out.push(OpenTask {
                    step: def.model.step(t.step).name.clone(),
                    assignee: t.assignee.clone(),
                    due: t.due_at,
                    overdue: t.overdue,
                    priority: t.priority,
                    item: t.item.clone(),
                });
            }
        }
        out
    }

    fn show_open(&self, open: &[OpenTask]) -> String {
        if open.is_empty() {
            return "no open task".into();
        }
        open.iter()
            .map(|t| {
                format!(
                    "{}{} for {} due {} overdue={} priority={}",
                    t.step,
                    t.item.as_ref().map(|i| format!(" ({i})")).unwrap_or_default(),
                    t.assignee.as_deref().unwrap_or("-"),
                    t.due.map(|d| self.show(d)).unwrap_or("-".into()),
                    t.overdue,
                    t.priority
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn show(&self, t: DateTime<Utc>) -> String {
        show_local(self.zone, t)
    }

    /// The open task at `step`, or what is open instead.
    fn task_at(&self, action: &str, step: &str) -> Result<(InstanceId, Task), Problem> {
        self.find_task(step).ok_or_else(|| {
            Problem::new(action, format!("an open task at `{step}`"), self.show_open(&self.open_tasks()))
        })
    }

    fn step(&mut self, s: &Step) -> Result<(), Problem> {
        let mut action = String::new();
        let mut result: Result<(), String> = Ok(());
        let clock = self.clock.clone();
        let now = || clock.now();
        if let Some(t) = &s.advance_to {
            action = format!("advance to {t}");
            let to = local(self.zone, t).map_err(|e| Problem::new(&action, "a time", e))?;
            // Time does not run backwards: an earlier time is a mistake in the file (a step
            // moved, a date mistyped), and what follows would pass for the wrong reason.
            if to < self.clock.now() {
                return Err(Problem::new(
                    &action,
                    format!("a time no earlier than the clock ({})", self.show(self.clock.now())),
                    format!("{t}, which is before it"),
                ));
            }
            self.log.push(action.clone());
            self.advance(to).map_err(|e| Problem::new(&action, "the timers fired", e))?;
        }
        for act in Self::acts_of(s)? {
            self.earlier_accepted(&result, &action)?;
            let (label, values, by) = self.prepare(s, &act)?;
            action = label;
            self.log.push(if matches!(act, Act::Complete { .. }) {
                format!("{action} with {}", show_fields(&values))
            } else {
                action.clone()
            });
            result = self.perform(&act, &values, &by, now());
        }
        if let Some(file) = &s.deploy {
            self.earlier_accepted(&result, &action)?;
            action = format!("deploy {file}");
            self.log.push(action.clone());
            result = self.deploy(file);
        }
        if let Some(m) = &s.migrate {
            self.earlier_accepted(&result, &action)?;
            action = format!("migrate to version {}", m.to);
            self.log.push(action.clone());
            result = self.migrate(m);
        }
        if action.is_empty() {
            action = "check".into();
        }
        match (&s.refused, result) {
            (None, Err(e)) => return Err(Problem::new(&action, "accepted", format!("refused: {e}"))),
            (Some(want), Ok(())) => return Err(Problem::new(&action, format!("refused with `{want}`"), "accepted")),
            (Some(want), Err(e)) if !e.contains(want.as_str()) => {
                return Err(Problem::new(&action, format!("refused with `{want}`"), format!("refused: {e}")))
            }
            _ => {}
        }
        self.expectations(&action, s)
    }

    /// Several actions in a step run in order: an earlier one refused stops the step (only the
    /// last may be the one `refused` expects).
    /// The acts a step asks for, in the order of the table in docs/testing.md.
    fn acts_of(s: &Step) -> Result<Vec<Act>, Problem> {
        let mut out = Vec::new();
        let to = |what: &str| s.to.clone().ok_or_else(|| Problem::new(what, "`to`", "no `to` in the step"));
        if let Some(step) = &s.complete {
            out.push(Act::Complete { step: step.clone() });
        }
        if let Some(name) = &s.message {
            out.push(Act::Message { name: name.clone() });
        }
        if let Some(reason) = &s.cancel {
            out.push(Act::Cancel { reason: reason.clone() });
        }
        if let Some(step) = &s.reassign {
            out.push(Act::Reassign { step: step.clone(), to: to("reassign")?, reason: "scenario".into() });
        }
        if let Some(step) = &s.delegate {
            out.push(Act::Delegate { step: step.clone(), to: to("delegate")?, reason: "scenario".into() });
        }
        if let Some(step) = &s.claim {
            out.push(Act::Claim { step: step.clone() });
        }
        if let Some(step) = &s.release {
            out.push(Act::Release { step: step.clone() });
        }
        for (asked, act) in [(s.suspend, Act::Suspend), (s.resume, Act::Resume), (s.retry, Act::Retry)] {
            if asked {
                out.push(act);
            }
        }
        if !s.set_fields.is_empty() {
            out.push(Act::SetFields);
        }
        Ok(out)
    }

    /// An act of a step made ready when its turn comes (a task it names must be open then):
    /// what the log calls it, its values, and who does it (the task's assignee by default for
    /// the work on it, an administrator for the case, the engine for a message).
    fn prepare(&self, s: &Step, act: &Act) -> Result<(String, BTreeMap<String, Value>, Actor), Problem> {
        let assignee = |what: &str| -> Result<Option<String>, Problem> {
            let step = act.step().unwrap_or_default();
            Ok(self.task_at(&format!("{what} `{step}`"), step)?.1.assignee)
        };
        let admin_or = || s.by.clone().unwrap_or_else(|| "admin".into());
        let (label, values, by) = match act {
            Act::Complete { step } => {
                let by = s.by.clone().or(assignee("complete")?).unwrap_or_else(|| "admin".into());
                (format!("{by} completes `{step}`"), fields(&s.fields)?, by)
            }
            Act::Message { name } => {
                return Ok((format!("message `{name}`"), BTreeMap::new(), Actor::system().clone()))
            }
            Act::Cancel { reason } => (format!("{} cancels ({reason})", admin_or()), BTreeMap::new(), admin_or()),
            Act::Reassign { step, to, .. } => {
                assignee("reassign")?;
                (format!("{} reassigns `{step}` to {to}", admin_or()), BTreeMap::new(), admin_or())
            }
            Act::Delegate { step, to, .. } => {
                let by = s.by.clone().or(assignee("delegate")?).unwrap_or_default();
                (format!("{by} delegates `{step}` to {to}"), BTreeMap::new(), by)
            }
            Act::Claim { step } => {
                assignee("claim")?;
                let by = s.by.clone().ok_or_else(|| Problem::new("claim", "`by`", "no `by` in the step"))?;
                (format!("{by} claims `{step}`"), BTreeMap::new(), by)
            }
            Act::Release { step } => {
                let by = s.by.clone().or(assignee("release")?).unwrap_or_else(|| "admin".into());
                (format!("{by} releases `{step}`"), BTreeMap::new(), by)
            }
            Act::Suspend => (format!("{} suspends the case", admin_or()), BTreeMap::new(), admin_or()),
            Act::Resume => (format!("{} resumes the case", admin_or()), BTreeMap::new(), admin_or()),
            Act::Retry => (format!("{} retries the case", admin_or()), BTreeMap::new(), admin_or()),
            Act::SetFields => {
                let values = fields(&s.set_fields)?;
                (format!("{} sets {}", admin_or(), show_fields(&values)), values, admin_or())
            }
        };
        Ok((label, values, self.staff(&by)))
    }

    /// Does an act through the one translation of acts into commands (`Act::command`).
    fn perform(
        &self,
        act: &Act,
        values: &BTreeMap<String, Value>,
        by: &Actor,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let (id, command) = act.command(values, self.root, |step| self.find_task(step).map(|(id, t)| (id, t.seq)))?;
        self.engine.command(id, by, command, now).map(|_| ()).map_err(|e| e.to_string())
    }

    fn earlier_accepted(&self, result: &Result<(), String>, action: &str) -> Result<(), Problem> {
        match result {
            Err(e) => Err(Problem::new(action, "accepted", format!("refused: {e}"))),
            Ok(()) => Ok(()),
        }
    }

    /// A new version of a process, from a file beside the scenario.
    fn deploy(&self, file: &str) -> Result<(), String> {
        let dir = self.dir.as_ref().ok_or("a scenario not read from a folder cannot deploy files")?;
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
        match self.engine.deploy(&text, self.clock.now()) {
            Ok(_) => Ok(()),
            Err(crate::EngineError::Rejected(d)) => Err(format!(
                "{file} does not check: {}",
                d.iter().filter(|d| d.is_error()).map(|d| d.message.clone()).collect::<Vec<_>>().join("; ")
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The case's version's running cases moved to `m.to`; the scenario's case must move.
    fn migrate(&mut self, m: &super::file::MigrateStep) -> Result<(), String> {
        let inst = self.root_instance().map_err(|p| p.found)?;
        let order = crate::MigrationOrder {
            process: inst.process.clone(),
            from: inst.version,
            to: m.to,
            mapping: m.mapping.clone(),
            dry_run: m.dry_run,
            by: Actor { admin: true, ..self.staff(m.by.as_deref().unwrap_or("admin")) },
        };
        let report = self.engine.migrate(&order, self.clock.now()).map_err(|e| e.to_string())?;
        let mine = report.results.iter().find(|r| r.id == self.root).ok_or("the case was not among those migrated")?;
        if !mine.moved {
            return Err(mine.reasons.join("; "));
        }
        self.landing =
            mine.plan.iter().flat_map(|p| &p.moves).map(|m| format!("{} -> {} ({})", m.from, m.to, m.how)).collect();
        // Where the case ends up when that is not simply running: an incident, with its reason.
        if let Some(incident) = mine.plan.as_ref().and_then(|p| p.landing.incident.as_ref()) {
            self.landing.push(format!("incident at {incident}"));
        }
        self.landing.sort();
        Ok(())
    }

    fn expectations(&self, action: &str, s: &Step) -> Result<(), Problem> {
        if let Some(expected) = &s.expect_tasks {
            let open = self.open_tasks();
            if open.len() != expected.len() {
                let steps: Vec<&str> = expected.iter().map(|e| e.step.as_str()).collect();
                return Err(Problem::new(
                    action,
                    format!("{} open task(s): {}", expected.len(), steps.join(", ")),
                    self.show_open(&open),
                ));
            }
            for e in expected {
                let found = open.iter().any(|t| {
                    t.step == e.step
                        && e.item.as_ref().is_none_or(|x| t.item.as_ref() == Some(x))
                        && e.assignee.as_ref().is_none_or(|x| t.assignee.as_ref() == Some(x))
                        && e.due.as_ref().is_none_or(|x| t.due.is_some() && local(self.zone, x).ok() == t.due)
                        && e.overdue.is_none_or(|x| x == t.overdue)
                        && e.priority.is_none_or(|x| x == t.priority)
                });
                if !found {
                    let mut want = format!("task `{}`", e.step);
                    if let Some(i) = &e.item {
                        want.push_str(&format!(" ({i})"));
                    }
                    want.push_str(&format!(" for {}", e.assignee.as_deref().unwrap_or("anyone")));
                    if let Some(d) = &e.due {
                        want.push_str(&format!(" due {d}"));
                    }
                    if let Some(o) = e.overdue {
                        want.push_str(&format!(" overdue={o}"));
                    }
                    if let Some(p) = e.priority {
                        want.push_str(&format!(" priority={p}"));
                    }
                    return Err(Problem::new(action, want, self.show_open(&open)));
                }
            }
        }
        let root = self.root_instance()?;
        for (k, v) in &s.expect_fields {
            let want = value(v)?;
            // Dates are written as text in scenarios; compare what they display.
            let same = root.fields.get(k).is_some_and(|v| *v == want || v.to_string() == want.to_string());
            if !same {
                let found = root.fields.get(k).map(|v| v.to_string()).unwrap_or("no value".into());
                return Err(Problem::new(action, format!("field `{k}` = {want}"), format!("`{k}` = {found}")));
            }
        }
        if let Some(events) = &s.expect_history {
            let mut history = Vec::new();
            for inst in self.family() {
                let entries =
                    self.engine.history(inst.id).map_err(|e| Problem::new(action, "the history", e.to_string()))?;
                history.extend(
                    entries.iter().map(|h| {
                        format!("{}{}", h.event, h.step.as_ref().map(|s| format!("@{s}")).unwrap_or_default())
                    }),
                );
            }
            if let Some(missing) = events.iter().find(|e| !history.contains(e)) {
                return Err(Problem::new(action, format!("`{missing}` in the history"), history.join(", ")));
            }
        }
        if let Some(st) = &s.expect_status {
            if root.status.name() != st {
                return Err(Problem::new(action, format!("status {st}"), format!("{:?}", root.status)));
            }
        }
        if let Some(o) = &s.expect_outcome {
            if root.status != (Status::Completed { outcome: o.clone() }) {
                return Err(Problem::new(action, format!("outcome {o}"), format!("{:?}", root.status)));
            }
        }
        if let Some(v) = s.expect_version {
            if root.version != v {
                return Err(Problem::new(action, format!("version {v}"), format!("version {}", root.version)));
            }
        }
        if let Some(want) = &s.expect_landing {
            let mut want = want.clone();
            want.sort();
            if want != self.landing {
                return Err(Problem::new(action, format!("landing {}", want.join(", ")), self.landing.join(", ")));
            }
        }
        if let Some(n) = s.expect_reminders {
            if self.reminders != n {
                return Err(Problem::new(action, format!("{n} reminder(s) so far"), format!("{}", self.reminders)));
            }
        }
        Ok(())
    }

    /// Everything the case and its sub-process cases reached, from their history.
    fn reached(&self) -> BTreeSet<Fact> {
        let mut facts = BTreeSet::new();
        for inst in self.family() {
            let fact = |what| Fact { process: inst.process.clone(), what };
            if matches!(inst.status, Status::Cancelled { .. }) {
                facts.insert(fact(Reach::Cancelled));
            }
            for h in self.engine.history(inst.id).unwrap_or_default() {
                let Some(step) = h.step else { continue };
                match h.event {
                    HistoryEvent::Decided => {
                        let arm = h.detail.split(" -> ").next().unwrap_or_default().to_string();
                        facts.insert(fact(Reach::Arm { step: step.clone(), arm }));
                    }
                    HistoryEvent::ReminderSent => {
                        facts.insert(fact(Reach::Reminder(step.clone())));
                    }
                    HistoryEvent::TaskOverdue => {
                        facts.insert(fact(Reach::Overdue(step.clone())));
                    }
                    HistoryEvent::Escalated => {
                        facts.insert(fact(Reach::Escalation(step.clone())));
                    }
                    _ => {}
                }
                facts.insert(fact(Reach::Step(step)));
            }
        }
        facts
    }
}

/// An instant as scenarios write it, local to the calendar: to the minute when it falls on
/// one, else with its seconds (and their fraction): what is written reads back exactly.
pub(crate) fn show_local(zone: Tz, t: DateTime<Utc>) -> String {
    let local = t.with_timezone(&zone);
    let format = match (local.second(), local.nanosecond()) {
        (0, 0) => "%Y-%m-%dT%H:%M",
        (_, 0) => "%Y-%m-%dT%H:%M:%S",
        _ => "%Y-%m-%dT%H:%M:%S%.f",
    };
    local.format(format).to_string()
}

/// A local time of the business calendar, `YYYY-MM-DDTHH:MM`, with seconds if need be
/// (`HH:MM:SS`, `HH:MM:SS.fff`).
pub(crate) fn local(zone: Tz, s: &str) -> Result<DateTime<Utc>, String> {
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M"))
        .map_err(|e| {
            format!("`{s}` is not a time ({e}); write YYYY-MM-DDTHH:MM (or HH:MM:SS), local to the calendar")
        })?;
    zone.from_local_datetime(&naive)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| format!("`{s}` does not exist in {zone} (a clock change skips it)"))
}

fn value(v: &toml::Value) -> Result<Value, Problem> {
    Ok(match v {
        toml::Value::String(s) => Value::Text(s.clone()),
        toml::Value::Integer(i) => Value::Int(*i),
        toml::Value::Float(f) => Value::Decimal(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Array(a) => Value::List(a.iter().map(value).collect::<Result<_, _>>()?),
        toml::Value::Datetime(d) => Value::Text(d.to_string()),
        toml::Value::Table(_) => {
            return Err(Problem::new("read a field value", "text, a number, a flag or a list", "a table"))
        }
    })
}

fn fields(t: &toml::Table) -> Result<BTreeMap<String, Value>, Problem> {
    t.iter().map(|(k, v)| Ok((k.clone(), value(v)?))).collect()
}

fn show_fields(fields: &BTreeMap<String, Value>) -> String {
    if fields.is_empty() {
        return "no fields".into();
    }
    fields.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(", ")
}
