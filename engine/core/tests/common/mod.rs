//! What the core's tests share: processes compiled from text or the shipped files, the shipped
//! rules read from `rules/`, and `Case`, a case driven by commands on a manual clock (a perfect
//! timer driver fires each timer at its due time). No storage: the core is tested alone, and
//! these tests do not build the shell.
#![allow(dead_code)]

use caseflow_core::case::*;
use caseflow_core::value::Value;
use caseflow_core::{RuleSet, RulesFile};
use caseflow_dsl::model::Process;
use caseflow_dsl::{compile, CheckContext};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// The shipped rules of `rules/`, as the server loads them (read once per test binary).
pub fn shipped_rules() -> RuleSet {
    static RULES: std::sync::OnceLock<RuleSet> = std::sync::OnceLock::new();
    RULES.get_or_init(read_shipped_rules).clone()
}

fn read_shipped_rules() -> RuleSet {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../rules");
    let mut paths: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.retain(|p| p.extension().is_some_and(|x| x == "toml"));
    paths.sort();
    let files: Vec<RulesFile> = paths
        .iter()
        .map(|p| RulesFile { name: p.display().to_string(), text: std::fs::read_to_string(p).unwrap() })
        .collect();
    RuleSet::load(&files).unwrap_or_else(|e| panic!("the shipped rules load: {e:?}"))
}

pub fn model(source: &str) -> Process {
    let checked = compile(source, &CheckContext::default());
    checked.process.unwrap_or_else(|| panic!("{:?}", checked.diagnostics))
}

pub fn shipped(name: &str) -> Process {
    model(&std::fs::read_to_string(format!("{}/../../processes/{name}.flow", env!("CARGO_MANIFEST_DIR"))).unwrap())
}

/// Beijing local time.
pub fn bj(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Shanghai.with_ymd_and_hms(y, m, d, h, min, 0).unwrap().with_timezone(&Utc)
}

pub fn text(s: &str) -> Value {
    Value::Text(s.into())
}

pub fn fields(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

pub struct Case {
    pub model: Process,
    pub rules: RuleSet,
    pub inst: Instance,
    pub now: DateTime<Utc>,
    pub history: Vec<HistoryEntry>,
    pub effects: Vec<Effect>,
    /// The last refusal, for tests that drive commands without looking at each answer.
    pub last_error: Option<CommandError>,
}

impl Case {
    /// A case of `model` not started yet, under the shipped rules.
    pub fn new(model: Process, at: DateTime<Utc>, key: &str) -> Case {
        let inst = Instance::new(InstanceId(1), &model, 1, key.into(), at);
        Case {
            model,
            rules: shipped_rules(),
            inst,
            now: at,
            history: Vec::new(),
            effects: Vec::new(),
            last_error: None,
        }
    }

    pub fn start(model: Process, at: DateTime<Utc>, start_fields: BTreeMap<String, Value>) -> Case {
        let mut case = Case::new(model, at, "20261123-001");
        case.run(&Actor { id: "crm".into(), roles: vec![], admin: false }, Command::Start { fields: start_fields })
            .expect("starts");
        case
    }

    pub fn run(&mut self, actor: &Actor, command: Command) -> Result<(), CommandError> {
        let ctx = Context { model: &self.model, rules: &self.rules, workload: &NoWorkload, now: self.now };
        let before = self.inst.clone();
        match apply(&ctx, &mut self.inst, actor, command) {
            Ok(out) => {
                self.history.extend(out.history);
                self.effects.extend(out.effects);
                Ok(())
            }
            Err(e) => {
                assert_eq!(self.inst, before, "a refused command changed the instance");
                self.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Moves the clock to `t`, firing every timer due on the way at its due time.
    pub fn advance_to(&mut self, t: DateTime<Utc>) {
        while let Some(timer) =
            self.inst.timers.values().filter(|x| x.due_at <= t).min_by_key(|x| (x.due_at, x.seq)).cloned()
        {
            self.now = timer.due_at.max(self.now);
            self.run(Actor::system(), Command::FireTimer { timer: timer.seq }).expect("due timers fire");
        }
        self.now = t;
    }

    pub fn task(&self, step: &str) -> Task {
        let id = self.model.step_named(step).unwrap().id;
        self.inst
            .tasks
            .values()
            .find(|t| t.step == id)
            .cloned()
            .unwrap_or_else(|| panic!("no open task at `{step}`: {:?}", self.open()))
    }

    pub fn open(&self) -> Vec<(String, Option<String>)> {
        self.inst.tasks.values().map(|t| (self.model.step(t.step).name.clone(), t.assignee.clone())).collect()
    }

    pub fn complete(&mut self, step: &str, fields: BTreeMap<String, Value>) {
        let t = self.task(step);
        let actor = Actor {
            id: t.assignee.clone().unwrap_or_else(|| "admin".into()),
            roles: vec![],
            admin: t.assignee.is_none(),
        };
        self.run(&actor, Command::CompleteTask { task: t.seq, fields })
            .unwrap_or_else(|e| panic!("completing `{step}`: {e}"));
    }

    pub fn events(&self) -> Vec<String> {
        self.history
            .iter()
            .map(|h| format!("{}{}", h.event, h.step.as_ref().map(|s| format!("@{s}")).unwrap_or_default()))
            .collect()
    }
}

pub fn complaint_fields(urgency: &str) -> BTreeMap<String, Value> {
    fields(&[
        ("customer", text("第一中学")),
        ("contact", text("138-0000-0000")),
        ("content", text("投影仪无法开机")),
        ("urgency", text(urgency)),
    ])
}

/// Checks the instance's invariants; returns a description of the first one broken.
pub fn history_invariants(inst: &Instance, history: &[HistoryEntry]) -> Result<(), String> {
    for t in inst.tasks.values() {
        match inst.tokens.get(&t.token) {
            Some(tok) if tok.waiting == Waiting::Task(t.seq) && tok.step == t.step => {}
            other => return Err(format!("open task {} belongs to no live step: {other:?}", t.seq)),
        }
    }
    for (id, tok) in &inst.tokens {
        if let Waiting::Task(seq) = tok.waiting {
            if !inst.tasks.contains_key(&seq) {
                return Err(format!("token {id} waits on closed task {seq}"));
            }
        }
    }
    for h in history.iter().filter(|h| h.event == "task_completed") {
        let seq: u32 = h.detail.rsplit('-').next().unwrap().parse().unwrap();
        if inst.tasks.contains_key(&seq) {
            return Err(format!("task {seq} is both completed and open"));
        }
    }
    if history.iter().enumerate().any(|(i, h)| h.seq != i as u64) || inst.history_len != history.len() as u64 {
        return Err("history sequence numbers have a gap".into());
    }
    if inst.status.is_ended() && !(inst.tasks.is_empty() && inst.timers.is_empty() && inst.tokens.is_empty()) {
        return Err("an ended case still has work".into());
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub enum Step {
    CompleteAny(usize, bool),
    Advance(u32),
    FireAny(usize),
    Message(usize),
    Suspend,
    Resume,
    Cancel,
    Claim(usize),
    Release(usize),
}

pub fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (any::<usize>(), any::<bool>()).prop_map(|(i, b)| Step::CompleteAny(i, b)),
        3 => (1u32..72 * 60).prop_map(Step::Advance),
        2 => any::<usize>().prop_map(Step::FireAny),
        1 => any::<usize>().prop_map(Step::Message),
        1 => Just(Step::Suspend),
        1 => Just(Step::Resume),
        1 => Just(Step::Cancel),
        1 => any::<usize>().prop_map(Step::Claim),
        1 => any::<usize>().prop_map(Step::Release),
    ]
}

/// A plausible value for each form field, possibly wrong on purpose.
pub fn form_values(model: &Process, task: &Task, valid: bool) -> BTreeMap<String, Value> {
    let caseflow_dsl::model::StepKind::Task(def) = &model.step(task.step).kind else { return BTreeMap::new() };
    let mut out = BTreeMap::new();
    for f in &def.form {
        let ty = &model.field(&f.field).unwrap().ty;
        let v = match ty {
            _ if !valid => Value::Text("???".into()),
            caseflow_dsl::model::FieldType::Bool => Value::Bool(task.seq.is_multiple_of(2)),
            caseflow_dsl::model::FieldType::Int { min, .. } => Value::Int(min.unwrap_or(0)),
            caseflow_dsl::model::FieldType::Choice(v) => Value::Text(v[task.seq as usize % v.len()].clone()),
            caseflow_dsl::model::FieldType::ListOfText => Value::List(vec![text("x")]),
            caseflow_dsl::model::FieldType::Date => Value::Date(chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()),
            _ => text("x"),
        };
        out.insert(f.field.clone(), v);
    }
    out
}

/// Two branches, a wait until a date, and a message (used by several suites).
pub const PARALLEL: &str = r#"
process install "安装" {
  source "002 §三(三)"
  fields {
    install_date: date required
    school: text required
    chased: bool = false
  }
  start -> prepare
  split prepare -> ship, schedule
  task ship { assign role logistics due 2 workdays -> ready }
  task schedule { assign role operations due 1 workday -> ready }
  join ready of prepare -> before
  wait before {
    until install_date - 1 workday
    -> call_school
  }
  task call_school { assign role cs_rep due 2 workhours -> contact }
  wait contact {
    on message installed -> done
    on message chased -> chase
    on timeout 3 workdays -> chase
  }
  task chase { assign role cs_rep due 4 workhours asks chased -> contact }
  end done
}
"#;
