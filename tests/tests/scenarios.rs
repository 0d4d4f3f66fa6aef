//! Scenario runner: every `tests/scenarios/PROCESS/*.toml` walks a case of the shipped processes
//! through time with a manual clock, against the real engine (sled in temporary files) and the
//! shipped rules. A failing scenario prints each step it ran, what it expected and what it
//! found. The runner also measures step coverage: every step of every process that has
//! scenarios must be entered by at least one of them.
//!
//! `tests/patterns/PROCESS.flow` are small processes that show one workflow pattern each
//! (`docs/patterns.md`), walked by `tests/patterns/PROCESS/*.toml` the same way; their
//! coverage counts steps and decision arms.
//!
//! Times are local to the business calendar (Asia/Shanghai): `2026-11-23T10:00`.

use caseflow_core::case::{Actor, Command, Instance, InstanceId, Status};
use caseflow_core::value::Value;
use caseflow_engine::clock::{Clock, ManualClock};
use caseflow_engine::{Engine, MemoryStore, Storage, Store};
use caseflow_tests::*;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::sync::Arc;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    description: String,
    process: String,
    start_at: String,
    #[serde(default)]
    fields: toml::Table,
    /// Expect the start itself to be refused with an error containing this text.
    start_refused: Option<String>,
    /// Who starts the case (a user of the rules); by default the CRM's service account.
    started_by: Option<String>,
    /// Cases of the same process run to their end before this one (facts across cases).
    #[serde(default)]
    earlier: Vec<Earlier>,
    #[serde(default)]
    step: Vec<Step>,
}

/// A case run before the scenario's own, each of its steps as in a scenario.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Earlier {
    started_by: Option<String>,
    #[serde(default)]
    fields: toml::Table,
    #[serde(default)]
    step: Vec<Step>,
    expect_outcome: Option<String>,
}

/// One step: an action and/or expectations, checked after the action.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Step {
    // actions
    advance_to: Option<String>,
    complete: Option<String>,
    by: Option<String>,
    #[serde(default)]
    fields: toml::Table,
    message: Option<String>,
    cancel: Option<String>,
    reassign: Option<String>,
    /// The assignee (or `by`) passes this step's task to `to`.
    delegate: Option<String>,
    /// `by` claims this step's task.
    claim: Option<String>,
    /// An administrator updates the case's fields.
    #[serde(default)]
    set_fields: toml::Table,
    to: Option<String>,
    /// Expect the action to be refused with an error containing this text.
    refused: Option<String>,
    // expectations
    expect_tasks: Option<Vec<ExpectTask>>,
    #[serde(default)]
    expect_fields: toml::Table,
    expect_history: Option<Vec<String>>,
    expect_status: Option<String>,
    expect_outcome: Option<String>,
    expect_reminders: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectTask {
    step: String,
    /// The item of a task for each item.
    item: Option<String>,
    assignee: Option<String>,
    due: Option<String>,
    overdue: Option<bool>,
    priority: Option<u8>,
}

fn local(s: &str) -> DateTime<Utc> {
    let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .unwrap_or_else(|e| panic!("time `{s}`: {e} (write YYYY-MM-DDTHH:MM)"));
    chrono_tz::Asia::Shanghai.from_local_datetime(&naive).earliest().expect("exists").with_timezone(&Utc)
}

fn show(t: DateTime<Utc>) -> String {
    t.with_timezone(&chrono_tz::Asia::Shanghai).format("%Y-%m-%dT%H:%M").to_string()
}

fn value(v: &toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::Text(s.clone()),
        toml::Value::Integer(i) => Value::Int(*i),
        toml::Value::Float(f) => Value::Decimal(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Array(a) => Value::List(a.iter().map(value).collect()),
        toml::Value::Datetime(d) => Value::Text(d.to_string()),
        toml::Value::Table(_) => panic!("tables are not field values"),
    }
}

fn fields(t: &toml::Table) -> BTreeMap<String, Value> {
    t.iter().map(|(k, v)| (k.clone(), value(v))).collect()
}

/// An open task as scenarios see it: step, assignee, due, overdue, priority, item.
type OpenTask = (String, Option<String>, Option<DateTime<Utc>>, bool, u8, Option<String>);

/// Runs one scenario; returns the steps it entered (process, step) and a log, or the log
/// with the failure.
struct Run<S: Storage> {
    engine: Arc<Engine<S>>,
    clock: Arc<ManualClock>,
    log: String,
    root: InstanceId,
    reminders: usize,
}

impl<S: Storage> Run<S> {
    /// A member of staff as the rules know them.
    fn staff(&self, user: &str) -> Actor {
        let rules = self.engine.rules();
        let roles = rules.users.get(user).map(|u| u.roles.clone()).unwrap_or_default();
        Actor { admin: user == "admin", id: user.to_string(), roles }
    }

    fn all_instances(&self) -> Vec<Instance> {
        // The case and any sub-process cases it started, in id order.
        let mut out = Vec::new();
        let mut id = 1;
        while let Some(i) = self.engine.instance(InstanceId(id)).unwrap() {
            out.push(i);
            id += 1;
        }
        out
    }

    fn advance(&mut self, to: DateTime<Utc>) -> Result<(), String> {
        // A perfect timer driver: each timer fires exactly when due, in order.
        while let Some(next) = self.engine.next_due().unwrap().filter(|n| *n <= to) {
            self.clock.set(next.max(self.clock.now()));
            let before = self.engine.history(self.root).unwrap().len();
            let fired = self.engine.fire_due(self.clock.now(), 1).map_err(|e| e.to_string())?;
            let history = self.engine.history(self.root).unwrap();
            self.reminders += history[before..].iter().filter(|h| h.event == "reminder_sent").count();
            if fired == 0 {
                break; // a suspended case's timer: it waits for resume
            }
        }
        self.clock.set(to.max(self.clock.now()));
        Ok(())
    }

    fn find_task(&self, step: &str) -> Option<(InstanceId, caseflow_core::case::Task)> {
        for inst in self.all_instances() {
            let def = self.engine.definition(&inst.process, Some(inst.version)).unwrap();
            if let Some(t) = inst.tasks.values().find(|t| def.model.step(t.step).name == step) {
                return Some((inst.id, t.clone()));
            }
        }
        None
    }

    fn open_tasks(&self) -> Vec<OpenTask> {
        let mut out = Vec::new();
        for inst in self.all_instances() {
            let def = self.engine.definition(&inst.process, Some(inst.version)).unwrap();
            for t in inst.tasks.values() {
                out.push((
                    def.model.step(t.step).name.clone(),
                    t.assignee.clone(),
                    t.due_at,
                    t.overdue,
                    t.priority,
                    t.item.clone(),
                ));
            }
        }
        out
    }

    fn step(&mut self, i: usize, s: &Step) -> Result<(), String> {
        let mut result: Result<(), String> = Ok(());
        if let Some(t) = &s.advance_to {
            let _ = writeln!(self.log, "  step {i}: advance to {t}");
            self.advance(local(t))?;
        }
        if let Some(step) = &s.complete {
            let (id, task) = self
                .find_task(step)
                .ok_or_else(|| format!("no open task at `{step}`; open: {:?}", self.open_tasks()))?;
            let by = s.by.clone().or(task.assignee.clone()).unwrap_or_else(|| "admin".into());
            let actor = self.staff(&by);
            let _ = writeln!(self.log, "  step {i}: {by} completes `{step}` with {:?}", s.fields);
            result = self
                .engine
                .command(
                    id,
                    &actor,
                    Command::CompleteTask { task: task.seq, fields: fields(&s.fields) },
                    self.clock.now(),
                )
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        if let Some(m) = &s.message {
            let _ = writeln!(self.log, "  step {i}: message `{m}`");
            result = self
                .engine
                .command(self.root, Actor::system(), Command::Message { name: m.clone() }, self.clock.now())
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        if let Some(reason) = &s.cancel {
            let _ = writeln!(self.log, "  step {i}: cancel ({reason})");
            let manager = Actor { id: "li_na".into(), roles: vec!["cs_manager".into()], admin: false };
            result = self
                .engine
                .command(self.root, &manager, Command::Cancel { reason: reason.clone() }, self.clock.now())
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        if let Some(step) = &s.reassign {
            let (id, task) = self.find_task(step).ok_or_else(|| format!("no open task at `{step}`"))?;
            let to = s.to.clone().ok_or("`reassign` needs `to`")?;
            let _ = writeln!(self.log, "  step {i}: reassign `{step}` to {to}");
            let manager = Actor { id: "li_na".into(), roles: vec!["cs_manager".into()], admin: false };
            result = self
                .engine
                .command(
                    id,
                    &manager,
                    Command::Reassign { task: task.seq, to, reason: "scenario".into() },
                    self.clock.now(),
                )
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        if let Some(step) = &s.delegate {
            let (id, task) = self.find_task(step).ok_or_else(|| format!("no open task at `{step}`"))?;
            let to = s.to.clone().ok_or("`delegate` needs `to`")?;
            let by = s.by.clone().or(task.assignee.clone()).unwrap_or_default();
            let _ = writeln!(self.log, "  step {i}: {by} delegates `{step}` to {to}");
            result = self
                .engine
                .command(
                    id,
                    &self.staff(&by),
                    Command::Delegate { task: task.seq, to, reason: "scenario".into() },
                    self.clock.now(),
                )
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        if let Some(step) = &s.claim {
            let (id, task) = self.find_task(step).ok_or_else(|| format!("no open task at `{step}`"))?;
            let by = s.by.clone().ok_or("`claim` needs `by`")?;
            let _ = writeln!(self.log, "  step {i}: {by} claims `{step}`");
            result = self
                .engine
                .command(id, &self.staff(&by), Command::Claim { task: task.seq }, self.clock.now())
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        if !s.set_fields.is_empty() {
            let _ = writeln!(self.log, "  step {i}: set fields {:?}", s.set_fields);
            let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
            result = self
                .engine
                .command(self.root, &admin, Command::UpdateFields { fields: fields(&s.set_fields) }, self.clock.now())
                .map(|_| ())
                .map_err(|e| e.to_string());
        }
        match (&s.refused, result) {
            (None, Err(e)) => return Err(format!("refused: {e}")),
            (Some(want), Ok(())) => return Err(format!("expected a refusal containing `{want}`, but it was accepted")),
            (Some(want), Err(e)) if !e.contains(want.as_str()) => {
                return Err(format!("refused with `{e}`, expected `{want}`"))
            }
            _ => {}
        }
        if let Some(expected) = &s.expect_tasks {
            let open = self.open_tasks();
            let fmt_open = || {
                open.iter()
                    .map(|(s, a, d, o, p, item)| {
                        format!(
                            "{s}{} for {} due {} overdue={o} priority={p}",
                            item.as_ref().map(|i| format!(" ({i})")).unwrap_or_default(),
                            a.as_deref().unwrap_or("-"),
                            d.map(show).unwrap_or("-".into())
                        )
                    })
                    .collect::<Vec<_>>()
            };
            if open.len() != expected.len() {
                return Err(format!(
                    "expected {} open task(s) {:?}, found {:?}",
                    expected.len(),
                    expected.iter().map(|e| &e.step).collect::<Vec<_>>(),
                    fmt_open()
                ));
            }
            for e in expected {
                let found = open.iter().find(|(s, a, d, o, p, item)| {
                    *s == e.step
                        && e.item.as_ref().is_none_or(|x| item.as_ref() == Some(x))
                        && e.assignee.as_ref().is_none_or(|x| a.as_ref() == Some(x))
                        && e.due.as_ref().is_none_or(|x| d.map(show).as_ref() == Some(x))
                        && e.overdue.is_none_or(|x| x == *o)
                        && e.priority.is_none_or(|x| x == *p)
                });
                if found.is_none() {
                    return Err(format!(
                        "expected task `{}` for {} due {} overdue={:?} priority={:?}; found {:?}",
                        e.step,
                        e.assignee.as_deref().unwrap_or("anyone"),
                        e.due.as_deref().unwrap_or("any time"),
                        e.overdue,
                        e.priority,
                        fmt_open()
                    ));
                }
            }
        }
        let root = self.engine.instance(self.root).unwrap().unwrap();
        for (k, v) in &s.expect_fields {
            let want = value(v);
            // Dates are written as text in scenarios; compare what they display.
            let same = root.fields.get(k).is_some_and(|v| *v == want || v.to_string() == want.to_string());
            if !same {
                return Err(format!(
                    "expected field `{k}` = {want}, found {:?}",
                    root.fields.get(k).map(|v| v.to_string())
                ));
            }
        }
        if let Some(events) = &s.expect_history {
            let history: Vec<String> = self
                .all_instances()
                .iter()
                .flat_map(|i| self.engine.history(i.id).unwrap())
                .map(|h| format!("{}{}", h.event, h.step.map(|s| format!("@{s}")).unwrap_or_default()))
                .collect();
            for e in events {
                if !history.contains(e) {
                    return Err(format!("expected `{e}` in the history; it has {history:?}"));
                }
            }
        }
        if let Some(st) = &s.expect_status {
            if root.status.name() != st {
                return Err(format!("expected status {st}, found {:?}", root.status));
            }
        }
        if let Some(o) = &s.expect_outcome {
            if root.status != (Status::Completed { outcome: o.clone() }) {
                return Err(format!("expected outcome {o}, found {:?}", root.status));
            }
        }
        if let Some(n) = s.expect_reminders {
            if self.reminders != n {
                return Err(format!("expected {n} reminder(s) so far, found {}", self.reminders));
            }
        }
        Ok(())
    }
}

/// What a scenario touched, for coverage: `(process, fact)` where a fact is `step:NAME`,
/// `arm:STEP:DETAIL` (a decision arm taken), `reminder:STEP` or `cancelled`.
fn run_scenario<S: Storage>(path: &std::path::Path, store: S) -> Result<BTreeSet<(String, String)>, String> {
    let scenario: Scenario = toml::from_str(&read(path)).map_err(|e| format!("bad scenario file: {e}"))?;
    let clock = Arc::new(ManualClock::new(local(&scenario.start_at)));
    let engine = Arc::new(Engine::open(store, shipped_rules()).unwrap());
    // The shipped processes and the pattern examples, checked together as a folder is.
    let mut all = shipped_processes();
    all.extend(pattern_processes());
    for (result, file) in engine.deploy_together(&all, clock.now()).unwrap().into_iter().zip(&all) {
        if let Err(e) = result {
            panic!("{} does not deploy: {e:?}", file.name);
        }
    }
    let actor_of = |who: &Option<String>| match who {
        Some(user) => {
            let roles = engine.rules().users.get(user).map(|u| u.roles.clone()).unwrap_or_default();
            Actor { id: user.clone(), roles, admin: false }
        }
        None => Actor { id: "crm".into(), roles: vec![], admin: false },
    };
    for (n, e) in scenario.earlier.iter().enumerate() {
        let inst = engine
            .start(&scenario.process, fields(&e.fields), &actor_of(&e.started_by), None, clock.now())
            .map_err(|err| format!("earlier case {}: start refused: {err}", n + 1))?;
        let mut run =
            Run { engine: engine.clone(), clock: clock.clone(), log: String::new(), root: inst.id, reminders: 0 };
        for (i, s) in e.step.iter().enumerate() {
            run.step(i + 1, s)
                .map_err(|err| format!("earlier case {}: {}  ✗ step {}: {err}", n + 1, run.log, i + 1))?;
        }
        let status = engine.instance(inst.id).unwrap().unwrap().status;
        if let Some(o) = &e.expect_outcome {
            if status != (Status::Completed { outcome: o.clone() }) {
                return Err(format!("earlier case {}: expected outcome {o}, found {status:?}", n + 1));
            }
        }
    }
    let actor = actor_of(&scenario.started_by);
    let started = engine.start(&scenario.process, fields(&scenario.fields), &actor, None, clock.now());
    let inst = match (started, &scenario.start_refused) {
        (Err(e), Some(want)) if e.to_string().contains(want.as_str()) => {
            assert_eq!(engine.count_instances(&scenario.process, "running").unwrap(), 0, "a refused start left a case");
            return Ok(BTreeSet::new());
        }
        (Err(e), _) => return Err(format!("start refused: {e}")),
        (Ok(_), Some(want)) => return Err(format!("expected the start refused with `{want}`, but it started")),
        (Ok(inst), None) => inst,
    };
    let mut run = Run {
        engine,
        clock,
        log: format!("{}\n  start {} at {}\n", scenario.description, scenario.process, scenario.start_at),
        root: inst.id,
        reminders: 0,
    };
    for (i, s) in scenario.step.iter().enumerate() {
        if let Err(e) = run.step(i + 1, s) {
            return Err(format!("{}  ✗ step {}: {e}", run.log, i + 1));
        }
    }
    let mut facts = BTreeSet::new();
    for inst in run.all_instances() {
        if matches!(inst.status, Status::Cancelled { .. }) {
            facts.insert((inst.process.clone(), "cancelled".to_string()));
        }
        for h in run.engine.history(inst.id).unwrap() {
            let Some(step) = h.step else { continue };
            match h.event.as_str() {
                "decided" => {
                    let arm = h.detail.split(" -> ").next().unwrap_or_default().to_string();
                    facts.insert((inst.process.clone(), format!("arm:{step}:{arm}")));
                }
                "reminder_sent" => {
                    facts.insert((inst.process.clone(), format!("reminder:{step}")));
                }
                "task_overdue" => {
                    facts.insert((inst.process.clone(), format!("overdue:{step}")));
                }
                _ => {}
            }
            facts.insert((inst.process.clone(), format!("step:{step}")));
        }
    }
    Ok(facts)
}

fn pattern_processes() -> Vec<caseflow_dsl::SourceFile> {
    files("tests/patterns", "flow").into_iter().map(|p| source_file(&p)).collect()
}

#[test]
fn scenarios() {
    run_folder("tests/scenarios", &shipped_processes(), true);
}

#[test]
fn pattern_scenarios() {
    run_folder("tests/patterns", &pattern_processes(), false);
}

/// Runs every scenario under `folder/PROCESS/`, then checks coverage of those processes:
/// steps and decision arms, and, with `full`, reminders, missed deadlines and a cancellation.
fn run_folder(folder: &str, sources: &[caseflow_dsl::SourceFile], full: bool) {
    let dir = root().join(folder);
    let mut processes: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    processes.sort();
    assert!(!processes.is_empty(), "no scenario folders in {folder}");
    let mut failures = Vec::new();
    let mut entered: BTreeSet<(String, String)> = BTreeSet::new();
    let mut count = 0;
    for p in &processes {
        let rel = p.strip_prefix(root()).unwrap().display().to_string();
        for file in files(&rel, "toml") {
            count += 1;
            // Each scenario runs on the in-memory storage and on sled: the same walk must give
            // the same result on both (a differential test of the `Storage` contract).
            let on_memory = run_scenario(&file, MemoryStore::new());
            let on_sled = run_scenario(&file, Store::temporary().unwrap());
            let name = file.strip_prefix(root()).unwrap().display().to_string();
            match (on_memory, on_sled) {
                (Ok(steps), Ok(same)) if steps == same => entered.extend(steps),
                (Ok(_), Ok(_)) => failures.push(format!("{name}: memory and sled storage covered different steps")),
                (Err(log), _) => failures.push(format!("{name} (memory storage):\n{log}")),
                (_, Err(log)) => failures.push(format!("{name} (sled storage):\n{log}")),
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
    // Coverage of the processes that have scenario folders: every step entered, every decision
    // arm taken, every reminder sent, and a cancellation.
    let mut report = String::new();
    let mut missing = Vec::new();
    for p in &processes {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let source = sources
            .iter()
            .find(|f| f.name.ends_with(&format!("/{name}.flow")))
            .unwrap_or_else(|| panic!("{folder}/{name} names no process"));
        let model = caseflow_dsl::compile(&source.text, &Default::default()).process.unwrap();
        let mut required: Vec<String> = model.steps.iter().map(|s| format!("step:{}", s.name)).collect();
        for s in &model.steps {
            use caseflow_dsl::model::{StepKind, Transition};
            let next = match &s.kind {
                StepKind::Task(t) => {
                    if t.remind_every.is_some() && full {
                        required.push(format!("reminder:{}", s.name));
                    }
                    if t.due.is_some() && full {
                        required.push(format!("overdue:{}", s.name));
                    }
                    Some(&t.next)
                }
                StepKind::Auto { next, .. } | StepKind::Join { next, .. } => Some(next),
                StepKind::Wait(w) => w.next.as_ref(),
                StepKind::Call(c) => Some(&c.next),
                StepKind::Split { .. } | StepKind::End => None,
            };
            if let Some(Transition::Decide { branches, otherwise }) = next {
                required.extend((1..=branches.len()).map(|i| format!("arm:{}:branch {i}", s.name)));
                if otherwise.is_some() {
                    required.push(format!("arm:{}:else", s.name));
                }
            }
        }
        if full {
            required.push("cancelled".into());
        }
        let hit = required.iter().filter(|r| entered.contains(&(name.clone(), (*r).clone()))).count();
        let _ = writeln!(
            report,
            "{name}: {hit}/{} (steps, decision arms, reminders, missed deadlines, a cancellation)",
            required.len()
        );
        missing.extend(
            required.iter().filter(|r| !entered.contains(&(name.clone(), (*r).clone()))).map(|r| format!("{name} {r}")),
        );
    }
    eprintln!("{count} scenarios passed; coverage:\n{report}");
    assert!(
        missing.is_empty(),
        "not covered by any scenario (coverage must be 100%):\n{}\n{report}",
        missing.join("\n")
    );
}
