//! The deterministic core driven by command sequences and a manual clock: no sleeping, time
//! only moves when a test moves it. A perfect timer driver fires each timer exactly at its due
//! time; the property test at the end fires them late and in random interleavings.

use caseflow_core::case::*;
use caseflow_core::value::Value;
use caseflow_dsl::model::Process;
use caseflow_dsl::{compile, CheckContext};
use caseflow_engine::RuleSet;
use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

mod support;
use std::collections::BTreeMap;
use support::{branches_conserved, FlowGen};

use caseflow_tests::shipped_rules;

fn model(source: &str) -> Process {
    let checked = compile(source, &CheckContext::default());
    checked.process.unwrap_or_else(|| panic!("{:?}", checked.diagnostics))
}

fn shipped(name: &str) -> Process {
    model(&std::fs::read_to_string(format!("{}/../processes/{name}.flow", env!("CARGO_MANIFEST_DIR"))).unwrap())
}

/// Beijing local time.
fn bj(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Shanghai.with_ymd_and_hms(y, m, d, h, min, 0).unwrap().with_timezone(&Utc)
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn fields(pairs: &[(&str, Value)]) -> BTreeMap<String, Value> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect()
}

struct Case {
    model: Process,
    rules: RuleSet,
    inst: Instance,
    now: DateTime<Utc>,
    history: Vec<HistoryEntry>,
    effects: Vec<Effect>,
    /// The last refusal, for tests that drive commands without looking at each answer.
    last_error: Option<CommandError>,
}

impl Case {
    fn start(model: Process, at: DateTime<Utc>, start_fields: BTreeMap<String, Value>) -> Case {
        let inst = Instance::new(InstanceId(1), &model, 1, "20261123-001".into(), at);
        let mut case = Case {
            model,
            rules: shipped_rules(),
            inst,
            now: at,
            history: Vec::new(),
            effects: Vec::new(),
            last_error: None,
        };
        case.run(&Actor { id: "crm".into(), roles: vec![], admin: false }, Command::Start { fields: start_fields })
            .expect("starts");
        case
    }

    fn run(&mut self, actor: &Actor, command: Command) -> Result<(), CommandError> {
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
    fn advance_to(&mut self, t: DateTime<Utc>) {
        while let Some(timer) =
            self.inst.timers.values().filter(|x| x.due_at <= t).min_by_key(|x| (x.due_at, x.seq)).cloned()
        {
            self.now = timer.due_at.max(self.now);
            self.run(Actor::system(), Command::FireTimer { timer: timer.seq }).expect("due timers fire");
        }
        self.now = t;
    }

    fn task(&self, step: &str) -> Task {
        let id = self.model.step_named(step).unwrap().id;
        self.inst
            .tasks
            .values()
            .find(|t| t.step == id)
            .cloned()
            .unwrap_or_else(|| panic!("no open task at `{step}`: {:?}", self.open()))
    }

    fn open(&self) -> Vec<(String, Option<String>)> {
        self.inst.tasks.values().map(|t| (self.model.step(t.step).name.clone(), t.assignee.clone())).collect()
    }

    fn complete(&mut self, step: &str, fields: BTreeMap<String, Value>) {
        let t = self.task(step);
        let actor = Actor {
            id: t.assignee.clone().unwrap_or_else(|| "admin".into()),
            roles: vec![],
            admin: t.assignee.is_none(),
        };
        self.run(&actor, Command::CompleteTask { task: t.seq, fields })
            .unwrap_or_else(|e| panic!("completing `{step}`: {e}"));
    }

    fn events(&self) -> Vec<String> {
        self.history
            .iter()
            .map(|h| format!("{}{}", h.event, h.step.as_ref().map(|s| format!("@{s}")).unwrap_or_default()))
            .collect()
    }
}

fn complaint_fields(urgency: &str) -> BTreeMap<String, Value> {
    fields(&[
        ("customer", text("第一中学")),
        ("contact", text("138-0000-0000")),
        ("content", text("投影仪无法开机")),
        ("urgency", text(urgency)),
    ])
}

#[test]
fn complaint_happy_path_resolved_on_the_phone() {
    let mut c = Case::start(shipped("complaint"), bj(2026, 11, 23, 10, 0), complaint_fields("medium"));
    assert_eq!(c.open(), [("receive".to_string(), Some("liu_yang".to_string()))]);
    // Due in 4 working hours: 10:00 + 2h to lunch, then 13:30 + 2h.
    assert_eq!(c.task("receive").due_at, Some(bj(2026, 11, 23, 15, 30)));
    c.complete("receive", fields(&[("cause", text("quality"))]));
    // The routing table sends quality problems to R&D.
    assert_eq!(c.inst.fields["department"], text("rnd"));
    c.complete("verify", fields(&[]));
    assert_eq!(c.task("phone_resolution").assignee.as_deref(), Some("liu_yang"), "same as receive");
    c.complete("phone_resolution", fields(&[("resolved", Value::Bool(true))]));
    c.complete("feedback", fields(&[("satisfaction", Value::Int(5))]));
    c.complete("file", fields(&[]));
    assert_eq!(c.inst.status, Status::Completed { outcome: "closed".into() });
    assert!(c.inst.tasks.is_empty() && c.inst.timers.is_empty() && c.inst.tokens.is_empty());
    let seqs: Vec<u64> = c.history.iter().map(|h| h.seq).collect();
    assert_eq!(seqs, (0..c.history.len() as u64).collect::<Vec<_>>(), "history is gapless");
}

#[test]
fn high_urgency_escalates_to_the_manager_after_ten_minutes() {
    let mut c = Case::start(shipped("complaint"), bj(2026, 11, 23, 10, 0), complaint_fields("high"));
    let receive = c.task("receive");
    assert_eq!(receive.due_at, Some(bj(2026, 11, 23, 10, 10)));
    c.advance_to(bj(2026, 11, 23, 10, 9));
    assert!(!c.task("receive").overdue, "a timer never fires early");
    c.advance_to(bj(2026, 11, 23, 10, 10));
    let t = c.task("receive");
    assert!(t.overdue);
    assert_eq!(t.assignee.as_deref(), Some("li_na"), "escalated to the manager");
    assert_eq!(t.priority, 1);
    assert!(c.events().contains(&"escalated@receive".to_string()));
}

#[test]
fn unresolved_goes_to_the_engineer_then_remote_assistance_with_reminders() {
    let mut c = Case::start(shipped("complaint"), bj(2026, 11, 23, 10, 0), complaint_fields("low"));
    c.complete("receive", fields(&[("cause", text("communication"))]));
    c.complete("verify", fields(&[("evidence", Value::List(vec![text("call-0012.mp3")]))]));
    c.complete("phone_resolution", fields(&[("resolved", Value::Bool(false))]));
    let eng = c.task("engineer_callback");
    assert!(eng.assignee.is_some());
    // Reminders every 4 working hours: the first at 14:00 + ... counted on the calendar.
    c.advance_to(bj(2026, 11, 24, 9, 0));
    assert!(c.effects.iter().any(|e| matches!(e, Effect::Reminder { .. })));
    c.complete("engineer_callback", fields(&[("resolved", Value::Bool(false))]));
    assert_eq!(c.task("remote_assistance").assignee, eng.assignee, "same engineer");
    // Reminder timers of the finished task are gone.
    assert!(c.inst.timers.values().all(|t| !matches!(t.kind, TimerKind::Reminder { task, .. } if task == eng.seq)));
}

#[test]
fn a_wrong_person_cannot_complete_and_nothing_changes() {
    let mut c = Case::start(shipped("complaint"), bj(2026, 11, 23, 10, 0), complaint_fields("medium"));
    let t = c.task("receive");
    let stranger = Actor { id: "chen_jie".into(), roles: vec!["engineer".into()], admin: false };
    let err = c.run(&stranger, Command::CompleteTask { task: t.seq, fields: fields(&[("cause", text("quality"))]) });
    assert!(matches!(err, Err(CommandError::Forbidden { .. })), "{err:?}");
    // A member of the candidate role may.
    let rep = Actor { id: "zhang_wei".into(), roles: vec!["cs_rep".into()], admin: false };
    c.run(&rep, Command::CompleteTask { task: t.seq, fields: fields(&[("cause", text("quality"))]) }).unwrap();
    // A second completion of the same task is refused: the race's loser gets an error.
    let again = c.run(&rep, Command::CompleteTask { task: t.seq, fields: fields(&[("cause", text("quality"))]) });
    assert_eq!(again.map_err(|e| e.to_string()), Err(format!("task {}-{} is not open", c.inst.id, t.seq)));
}

#[test]
fn bad_fields_are_refused_with_the_field_named() {
    let model = shipped("complaint");
    let inst = Instance::new(InstanceId(9), &model, 1, "k".into(), bj(2026, 11, 23, 10, 0));
    let rules = shipped_rules();
    let ctx = Context { model: &model, rules: &rules, workload: &NoWorkload, now: bj(2026, 11, 23, 10, 0) };
    let crm = Actor { id: "crm".into(), roles: vec![], admin: false };
    let mut f = complaint_fields("urgent");
    let err = apply(&ctx, &mut inst.clone(), &crm, Command::Start { fields: f.clone() }).unwrap_err();
    assert!(
        matches!(&err, CommandError::InvalidField { field, problem } if field == "urgency" && problem.contains("high, medium, low")),
        "{err}"
    );
    f.remove("urgency");
    f.remove("customer");
    let err = apply(&ctx, &mut inst.clone(), &crm, Command::Start { fields: f.clone() }).unwrap_err();
    assert_eq!(err, CommandError::InvalidField { field: "customer".into(), problem: "required".into() });
    f.insert("customer".into(), Value::Int(3));
    assert!(matches!(
        apply(&ctx, &mut inst.clone(), &crm, Command::Start { fields: f }),
        Err(CommandError::InvalidField { .. })
    ));
}

#[test]
fn cancel_closes_everything() {
    let mut c = Case::start(shipped("complaint"), bj(2026, 11, 23, 10, 0), complaint_fields("high"));
    let manager = Actor { id: "li_na".into(), roles: vec!["cs_manager".into()], admin: false };
    c.run(&manager, Command::Cancel { reason: "duplicate of 20261123-002".into() }).unwrap();
    assert!(matches!(c.inst.status, Status::Cancelled { .. }));
    assert!(c.inst.tasks.is_empty() && c.inst.timers.is_empty());
    let rep = Actor { id: "zhang_wei".into(), roles: vec!["cs_rep".into()], admin: false };
    assert!(matches!(c.run(&rep, Command::Message { name: "x".into() }), Err(CommandError::WrongStatus("cancelled"))));
}

const PARALLEL: &str = r#"
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

#[test]
fn split_join_until_and_message_waits() {
    let start = bj(2026, 9, 28, 10, 0);
    let f = fields(&[
        ("install_date", Value::Date(chrono::NaiveDate::from_ymd_opt(2026, 10, 9).unwrap())),
        ("school", text("第一中学")),
    ]);
    let mut c = Case::start(model(PARALLEL), start, f);
    let mut open: Vec<String> = c.open().into_iter().map(|(s, _)| s).collect();
    open.sort();
    assert_eq!(open, ["schedule", "ship"]);
    c.complete("ship", fields(&[]));
    assert_eq!(c.inst.tokens.len(), 1, "the join holds until both branches arrive");
    c.complete("schedule", fields(&[]));
    // Wait until one working day before 9 October: 8 October opens at 09:00 (after National Day).
    let wait = c.inst.timers.values().find(|t| matches!(t.kind, TimerKind::Wait { .. })).unwrap().due_at;
    assert_eq!(wait, bj(2026, 10, 8, 9, 0));
    c.advance_to(bj(2026, 10, 8, 9, 0));
    c.complete("call_school", fields(&[]));
    // The school calls: the message moves the case at once.
    c.run(Actor::system(), Command::Message { name: "chased".into() }).unwrap();
    c.complete("chase", fields(&[("chased", Value::Bool(true))]));
    // No message for 3 working days: timeout.
    c.advance_to(bj(2026, 10, 20, 18, 0));
    assert!(c.events().contains(&"wait_timed_out@contact".to_string()));
    c.complete("chase", fields(&[]));
    c.run(Actor::system(), Command::Message { name: "installed".into() }).unwrap();
    assert_eq!(c.inst.status, Status::Completed { outcome: "done".into() });
    assert_eq!(
        c.run(Actor::system(), Command::Message { name: "installed".into() }),
        Err(CommandError::WrongStatus("completed"))
    );
}

#[test]
fn a_failing_expression_is_an_incident_that_retry_resumes() {
    let src = r#"
process p {
  source "t"
  fields {
    a: int required
    b: int required
    r: int
  }
  start -> calc
  auto calc {
    set r = a / b
    -> look
  }
  task look { assign role cs_rep due 1h asks r -> done }
  end done
}
"#;
    let mut c = Case::start(model(src), bj(2026, 11, 23, 10, 0), fields(&[("a", Value::Int(1)), ("b", Value::Int(0))]));
    assert!(
        matches!(&c.inst.status, Status::Incident { step, reason } if step == "calc" && reason.contains("division by zero"))
    );
    c.run(
        &Actor { id: "admin".into(), roles: vec![], admin: true },
        Command::UpdateFields { fields: fields(&[("b", Value::Int(2))]) },
    )
    .unwrap();
    c.run(&Actor { id: "admin".into(), roles: vec![], admin: true }, Command::Retry).unwrap();
    assert_eq!(c.inst.status, Status::Running);
    assert_eq!(c.inst.fields["r"], Value::Int(0));
    assert_eq!(c.open().len(), 1);
}

#[test]
fn timers_refuse_to_fire_early() {
    let mut c = Case::start(shipped("complaint"), bj(2026, 11, 23, 10, 0), complaint_fields("high"));
    let due = c.inst.timers.values().next().unwrap().clone();
    c.now = due.due_at - Duration::milliseconds(1);
    assert_eq!(
        c.run(Actor::system(), Command::FireTimer { timer: due.seq }),
        Err(CommandError::TimerNotDue { timer: due.seq, due_at: due.due_at })
    );
    // Late is fine, and the lateness is recorded.
    c.now = due.due_at + Duration::seconds(3);
    c.run(Actor::system(), Command::FireTimer { timer: due.seq }).unwrap();
    assert!(c.history.iter().any(|h| h.lateness_ms == Some(3_000)));
    // Firing twice is refused, harmlessly (at-least-once delivery).
    assert_eq!(
        c.run(Actor::system(), Command::FireTimer { timer: due.seq }),
        Err(CommandError::TimerNotPending(due.seq))
    );
}

/// Checks the instance's invariants; returns a description of the first one broken.
fn invariants(inst: &Instance, history: &[HistoryEntry]) -> Result<(), String> {
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
enum Step {
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

fn step() -> impl Strategy<Value = Step> {
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
fn form_values(model: &Process, task: &Task, valid: bool) -> BTreeMap<String, Value> {
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(128)))]

    #[test]
    fn random_command_sequences_keep_the_invariants(which in 0usize..2, steps in proptest::collection::vec(step(), 1..60)) {
        let mut c = if which == 0 {
            Case::start(shipped("complaint"), bj(2026, 11, 27, 17, 30), complaint_fields("high"))
        } else {
            let f = fields(&[("install_date", Value::Date(chrono::NaiveDate::from_ymd_opt(2026, 12, 4).unwrap())), ("school", text("s"))]);
            Case::start(model(PARALLEL), bj(2026, 11, 27, 17, 30), f)
        };
        let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
        for s in steps {
            match s {
                Step::CompleteAny(i, valid) => {
                    let tasks: Vec<Task> = c.inst.tasks.values().cloned().collect();
                    if let Some(t) = tasks.get(i % tasks.len().max(1)) {
                        let f = form_values(&c.model, t, valid);
                        let _ = c.run(&admin, Command::CompleteTask { task: t.seq, fields: f });
                    }
                }
                Step::Advance(minutes) => {
                    let t = c.now + Duration::minutes(minutes.into());
                    // Suspended cases hold their timers: only move the clock.
                    if c.inst.status == Status::Running { c.advance_to(t) } else { c.now = t }
                }
                Step::FireAny(i) => {
                    let timers: Vec<Timer> = c.inst.timers.values().cloned().collect();
                    if let Some(t) = timers.get(i % timers.len().max(1)) {
                        let r = c.run(Actor::system(), Command::FireTimer { timer: t.seq });
                        if c.now < t.due_at {
                            // Refused as early, or (status first, `allowed`) as given to a case on hold.
                            prop_assert!(
                                matches!(r, Err(CommandError::TimerNotDue { .. } | CommandError::WrongStatus(_))),
                                "a timer fired early"
                            );
                        }
                    }
                }
                Step::Message(i) => {
                    let names = ["installed", "chased", "nobody_listens"];
                    let _ = c.run(Actor::system(), Command::Message { name: names[i % 3].into() });
                }
                Step::Suspend => { let _ = c.run(&admin, Command::Suspend); }
                Step::Resume => { let _ = c.run(&admin, Command::Resume); }
                Step::Cancel => { let _ = c.run(&admin, Command::Cancel { reason: "test".into() }); }
                Step::Claim(i) | Step::Release(i) => {
                    let tasks: Vec<u32> = c.inst.tasks.keys().copied().collect();
                    if let Some(t) = tasks.get(i % tasks.len().max(1)) {
                        let rep = Actor { id: "zhang_wei".into(), roles: vec!["cs_rep".into()], admin: false };
                        let cmd = if matches!(s, Step::Claim(_)) { Command::Claim { task: *t } } else { Command::Release { task: *t } };
                        let _ = c.run(&rep, cmd);
                    }
                }
            }
            if let Some(e) = c.last_error.take().filter(|e| matches!(e, CommandError::Invariant(_))) {
                prop_assert!(false, "{e}\nevents: {:?}", c.events());
            }
            if let Err(broken) = invariants(&c.inst, &c.history) {
                prop_assert!(false, "{broken}\nevents: {:?}", c.events());
            }
        }
    }
}

// ------------------------------------------------------------ control flow of any accepted graph

const END_IN_BRANCH: &str = r#"
process p {
  source "t"
  fields {
    solved: bool "已解决" = false
  }
  start -> fork
  split fork -> phone, visit
  task phone {
    assign role cs_rep
    due 1h
    asks solved
    -> decide {
      when solved -> solved_on_phone
      else -> both
    }
  }
  task visit { assign role engineer due 1 workday -> both }
  join both of fork -> done
  end done
  end solved_on_phone
}
"#;

#[test]
fn an_end_inside_a_split_ends_the_case_and_cancels_the_other_branches() {
    let mut c = Case::start(model(END_IN_BRANCH), bj(2026, 11, 23, 10, 0), fields(&[]));
    assert_eq!(c.inst.tasks.len(), 2);
    c.complete("phone", fields(&[("solved", Value::Bool(true))]));
    assert_eq!(c.inst.status, Status::Completed { outcome: "solved_on_phone".into() });
    assert!(c.inst.tasks.is_empty() && c.inst.timers.is_empty() && c.inst.tokens.is_empty());
    assert!(c.events().contains(&"branches_cancelled@solved_on_phone".to_string()), "{:?}", c.events());
    // Not solved: the join waits for the visit as before.
    let mut c = Case::start(model(END_IN_BRANCH), bj(2026, 11, 23, 10, 0), fields(&[]));
    c.complete("phone", fields(&[("solved", Value::Bool(false))]));
    assert_eq!(c.inst.status, Status::Running);
    c.complete("visit", fields(&[]));
    assert_eq!(c.inst.status, Status::Completed { outcome: "done".into() });
}

#[test]
fn every_accepted_graph_runs_soundly_under_random_commands() {
    let graphs: u64 = std::env::var("GRAPH_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let (mut accepted, mut joined, mut ended_in_branch, mut withdrew, mut chose, mut interrupted, mut each_done) =
        (0, 0, 0, 0, 0, 0, 0);
    let mut kept_heard = 0;
    for seed in 0..graphs {
        let source = FlowGen::source(seed, false);
        let checked = compile(&source, &CheckContext::default());
        let Some(model) = checked.process else { continue };
        accepted += 1;
        let mut rng = FlowGen::choices(seed);
        let at = bj(2026, 11, 23, 10, 0);
        let inst = Instance::new(InstanceId(1), &model, 1, "g-1".into(), at);
        let mut c = Case {
            model,
            rules: shipped_rules(),
            inst,
            now: at,
            history: Vec::new(),
            effects: Vec::new(),
            last_error: None,
        };
        let crm = Actor { id: "crm".into(), roles: vec![], admin: false };
        if let Err(e) = c.run(&crm, Command::Start { fields: fields(&[]) }) {
            panic!("seed {seed}: the start was refused: {e}\n{source}");
        }
        let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
        for _ in 0..80 {
            let before = c.history.len();
            match rng.pick(8) {
                0..=3 => {
                    let tasks: Vec<u32> = c.inst.tasks.keys().copied().collect();
                    if let Some(t) = tasks.get(rng.pick(tasks.len().max(1))) {
                        let x = fields(&[("x", Value::Bool(rng.pick(2) == 0))]);
                        let _ = c.run(&admin, Command::CompleteTask { task: *t, fields: x });
                    }
                }
                4 | 5 => {
                    let t = c.now + Duration::minutes(rng.pick(240) as i64);
                    if c.inst.status == Status::Running {
                        c.advance_to(t)
                    } else {
                        c.now = t
                    }
                }
                6 => {
                    let name = if rng.pick(4) == 0 { "stop" } else { "ping" };
                    let _ = c.run(Actor::system(), Command::Message { name: name.into() });
                }
                _ => {
                    let cmd = [Command::Suspend, Command::Resume][rng.pick(2)].clone();
                    let _ = c.run(&admin, cmd);
                }
            }
            if let Some(e) =
                c.last_error.take().filter(|e| matches!(e, CommandError::Invariant(_) | CommandError::Runaway))
            {
                panic!("seed {seed}: {e}\nevents: {:?}\n{source}", c.events());
            }
            if let Err(broken) = invariants(&c.inst, &c.history)
                .and_then(|()| caseflow_core::case::invariants(&c.model, &c.inst))
                .and_then(|()| branches_conserved(&c.model, &c.inst))
            {
                panic!("seed {seed}: {broken}\nevents: {:?}\n{source}", c.events());
            }
            joined += c.history[before..].iter().filter(|h| h.event == "joined").count();
            ended_in_branch += c.history[before..].iter().filter(|h| h.event == "branches_cancelled").count();
            interrupted += c.history[before..].iter().filter(|h| h.event == "interrupted").count();
            each_done += c.history[before..].iter().filter(|h| h.event == "instances_done").count();
            kept_heard += c.history[before..].iter().filter(|h| h.detail.contains("kept since")).count();
            withdrew +=
                c.history[before..].iter().filter(|h| h.event == "joined" && h.detail.contains("withdrew")).count();
            chose += c.history[before..]
                .iter()
                .filter(|h| (h.event == "split" && !h.detail.is_empty()) || h.detail == "no branch started")
                .count();
            if c.inst.status.is_ended() {
                break;
            }
        }
    }
    eprintln!(
        "{accepted} of {graphs} graphs accepted; joins fired {joined} times ({withdrew} withdrawing branches), \
         ends inside splits {ended_in_branch}, multi-choice splits {chose}, interrupts {interrupted}, tasks for each item done {each_done}, kept messages heard {kept_heard}"
    );
    // The generator must keep producing graphs that exercise what this test is about.
    assert!(accepted * 4 >= graphs as usize, "only {accepted} of {graphs} generated graphs were accepted");
    assert!(joined > 50 && ended_in_branch >= 5, "joins fired {joined} times, ends inside splits {ended_in_branch}");
    assert!(withdrew >= 5 && chose >= 5, "withdrawing joins {withdrew}, multi-choice splits {chose}");
    assert!(interrupted >= 20 && each_done >= 20, "interrupts {interrupted}, tasks for each item done {each_done}");
    assert!(kept_heard >= 5, "kept messages heard {kept_heard}");
}

const MULTI_CHOICE: &str = r#"
process notify_customer {
  source "t"
  fields {
    by_phone: bool "电话" = false
    by_mail: bool "邮件" = false
  }
  start -> notify
  split notify -> phone_call when by_phone, write when by_mail
  task phone_call { assign role cs_rep due 1h -> notified }
  task write { assign role cs_rep due 1 workday -> notified }
  join notified of notify -> done
  end done
}
"#;

#[test]
fn a_multi_choice_split_starts_the_branches_whose_condition_holds_and_its_join_waits_for_those() {
    let at = bj(2026, 11, 23, 10, 0);
    let phone_only = fields(&[("by_phone", Value::Bool(true))]);
    let mut c = Case::start(model(MULTI_CHOICE), at, phone_only);
    assert_eq!(c.open().len(), 1);
    c.complete("phone_call", fields(&[]));
    assert_eq!(c.inst.status, Status::Completed { outcome: "done".into() });

    let both = fields(&[("by_phone", Value::Bool(true)), ("by_mail", Value::Bool(true))]);
    let mut c = Case::start(model(MULTI_CHOICE), at, both);
    assert_eq!(c.open().len(), 2);
    c.complete("write", fields(&[]));
    assert_eq!(c.inst.status, Status::Running, "the join waits for the call too");
    c.complete("phone_call", fields(&[]));
    assert_eq!(c.inst.status, Status::Completed { outcome: "done".into() });

    // No condition holds: nothing to wait for.
    let c = Case::start(model(MULTI_CHOICE), at, fields(&[]));
    assert_eq!(c.inst.status, Status::Completed { outcome: "done".into() });
    assert!(c.history.iter().any(|h| h.event == "joined" && h.detail == "no branch started"));
}

const FIRST_WINS: &str = r#"
process fix_fast {
  source "t"
  start -> race
  split race -> remote_fix, visit
  task remote_fix { assign role cs_rep due 1h -> fixed }
  task visit { assign role engineer due 1 workday remind every 2h -> fixed }
  join fixed of race on first -> confirm
  task confirm { assign role cs_rep due 1h -> done }
  end done
}
"#;

#[test]
fn a_join_on_first_goes_on_at_the_first_arrival_and_withdraws_the_other_branches() {
    let mut c = Case::start(model(FIRST_WINS), bj(2026, 11, 23, 10, 0), fields(&[]));
    assert_eq!(c.open().len(), 2);
    c.complete("remote_fix", fields(&[]));
    let open: Vec<String> = c.open().into_iter().map(|(s, _)| s).collect();
    assert_eq!(open, ["confirm"], "the visit was withdrawn");
    assert!(c.inst.timers.values().all(|t| !matches!(t.kind, TimerKind::Reminder { .. })), "its reminder too");
    let joined = c.history.iter().find(|h| h.event == "joined").unwrap();
    assert_eq!(joined.detail, "1 arrived; withdrew visit");
    assert!(c.effects.iter().any(|e| matches!(e, Effect::TaskClosed { reason, .. } if reason == "branch withdrawn")));
    c.complete("confirm", fields(&[]));
    assert_eq!(c.inst.status, Status::Completed { outcome: "done".into() });
}

const FOUR_EYES: &str = r#"
process refund {
  source "t"
  fields {
    amount: decimal "金额" required
  }
  start -> prepare
  on message customer_withdrew -> withdrawn
  task prepare { assign role cs_manager due 1 workday -> approve }
  task approve {
    assign role cs_manager
    not same as prepare
    due 1 workday
    -> done
  }
  end done
  end withdrawn
}
"#;

#[test]
fn four_eyes_a_step_done_by_one_person_is_approved_by_another() {
    let f = fields(&[("amount", Value::Decimal("500".parse().unwrap()))]);
    let mut c = Case::start(model(FOUR_EYES), bj(2026, 11, 23, 10, 0), f);
    let preparer = c.task("prepare").assignee.expect("a manager prepares");
    c.complete("prepare", fields(&[]));
    let approve = c.task("approve");
    assert!(approve.assignee.as_ref().is_some_and(|a| *a != preparer), "{:?} after {preparer}", approve.assignee);
    // The preparer may neither complete nor claim the approval, nor be given it.
    let them = Actor { id: preparer.clone(), roles: vec!["cs_manager".into()], admin: false };
    let refused = c.run(&them, Command::CompleteTask { task: approve.seq, fields: fields(&[]) });
    assert!(matches!(refused, Err(CommandError::Forbidden { .. })), "{refused:?}");
    let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
    let refused = c.run(&admin, Command::Reassign { task: approve.seq, to: preparer, reason: "x".into() });
    assert!(matches!(refused, Err(CommandError::InvalidField { .. })), "{refused:?}");
    c.complete("approve", fields(&[]));
    assert_eq!(c.inst.status, Status::Completed { outcome: "done".into() });
}

#[test]
fn a_process_level_message_interrupts_whatever_the_case_is_doing() {
    let f = fields(&[("amount", Value::Decimal("500".parse().unwrap()))]);
    let mut c = Case::start(model(FOUR_EYES), bj(2026, 11, 23, 10, 0), f);
    c.run(Actor::system(), Command::Message { name: "customer_withdrew".into() }).unwrap();
    assert_eq!(c.inst.status, Status::Completed { outcome: "withdrawn".into() });
    let interrupted = c.history.iter().find(|h| h.event == "interrupted").unwrap();
    assert_eq!(interrupted.detail, "customer_withdrew; withdrew prepare");
    assert!(c.effects.iter().any(|e| matches!(e, Effect::TaskClosed { reason, .. } if reason == "branch withdrawn")));
}

const CALL_EACH_SCHOOL: &str = r#"
process follow_up_schools {
  source "t"
  fields {
    schools: list text "学校" required
    answers: list text "回访结果"
    satisfied: bool "满意" = false
  }
  start -> call_back
  task call_back {
    for each school in schools
    assign role cs_rep
    due 1 workday
    asks satisfied
    collect satisfied into answers
    -> done
  }
  end done
}
"#;

fn schools(names: &[&str]) -> BTreeMap<String, Value> {
    fields(&[("schools", Value::List(names.iter().map(|n| text(n)).collect()))])
}

#[test]
fn a_task_for_each_item_opens_one_task_per_item_and_goes_on_when_all_are_done() {
    let mut c = Case::start(model(CALL_EACH_SCHOOL), bj(2026, 11, 23, 10, 0), schools(&["一中", "二中", "三中"]));
    let mut items: Vec<String> = c.inst.tasks.values().filter_map(|t| t.item.clone()).collect();
    items.sort();
    assert_eq!(items, ["一中", "三中", "二中"]);
    let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
    for (i, t) in c.inst.tasks.clone().values().enumerate() {
        assert_eq!(c.inst.status, Status::Running);
        let answer = fields(&[("satisfied", Value::Bool(i != 1))]);
        c.run(&admin, Command::CompleteTask { task: t.seq, fields: answer }).unwrap();
    }
    assert_eq!(c.inst.status, Status::Completed { outcome: "done".into() });
    let Value::List(answers) = &c.inst.fields["answers"] else { panic!() };
    assert_eq!(answers.len(), 3);
    assert!(answers.contains(&text("二中: false")), "{answers:?}");
    // No item: the step is done at once.
    let c = Case::start(model(CALL_EACH_SCHOOL), bj(2026, 11, 23, 10, 0), schools(&[]));
    assert_eq!(c.inst.status, Status::Completed { outcome: "done".into() });
}

#[test]
fn one_at_a_time_and_until_n_done() {
    let in_turn =
        CALL_EACH_SCHOOL.replace("for each school in schools", "for each school in schools one at a time until 2 done");
    let mut c = Case::start(model(&in_turn), bj(2026, 11, 23, 10, 0), schools(&["一中", "二中", "三中"]));
    let open = |c: &Case| c.inst.tasks.values().map(|t| t.item.clone().unwrap()).collect::<Vec<_>>();
    assert_eq!(open(&c), ["一中"]);
    c.complete("call_back", fields(&[]));
    assert_eq!(open(&c), ["二中"], "in list order, one after the other");
    c.complete("call_back", fields(&[]));
    assert_eq!(c.inst.status, Status::Completed { outcome: "done".into() }, "two were enough");
    // In parallel, until 2 done: the third is withdrawn.
    let parallel = CALL_EACH_SCHOOL.replace("for each school in schools", "for each school in schools until 2 done");
    let mut c = Case::start(model(&parallel), bj(2026, 11, 23, 10, 0), schools(&["一中", "二中", "三中"]));
    assert_eq!(c.inst.tasks.len(), 3);
    c.complete("call_back", fields(&[]));
    c.complete("call_back", fields(&[]));
    assert_eq!(c.inst.status, Status::Completed { outcome: "done".into() });
    let done = c.history.iter().find(|h| h.event == "instances_done").unwrap();
    assert_eq!(done.detail, "2 of 3 done; withdrew 1");
}

#[test]
fn items_added_to_the_list_while_its_tasks_run_get_tasks_of_their_own() {
    let mut c = Case::start(model(CALL_EACH_SCHOOL), bj(2026, 11, 23, 10, 0), schools(&["一中", "二中"]));
    c.complete("call_back", fields(&[]));
    let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
    let more = schools(&["一中", "二中", "三中"]);
    c.run(&admin, Command::UpdateFields { fields: more }).unwrap();
    let mut open: Vec<String> = c.inst.tasks.values().filter_map(|t| t.item.clone()).collect();
    open.sort();
    assert_eq!(open, ["三中", "二中"]);
    c.complete("call_back", fields(&[]));
    assert_eq!(c.inst.status, Status::Running, "the added school is still to call");
    c.complete("call_back", fields(&[]));
    assert_eq!(c.inst.status, Status::Completed { outcome: "done".into() });
    assert!(c.events().contains(&"instances_added@call_back".to_string()));
}

#[test]
fn a_message_nobody_listens_for_is_refused_and_not_kept() {
    let mut c = Case::start(model(PARALLEL), bj(2026, 11, 23, 10, 0), {
        let d = Value::Date(chrono::NaiveDate::from_ymd_opt(2026, 12, 4).unwrap());
        fields(&[("install_date", d), ("school", text("s"))])
    });
    let before = c.inst.clone();
    let refused = c.run(Actor::system(), Command::Message { name: "installed".into() });
    assert_eq!(refused, Err(CommandError::NoListener("installed".into())));
    assert_eq!(c.inst, before);
}

const KEPT: &str = r#"
process install_after_documents {
  source "t"
  start -> prepare
  keep message documents_received for 3d
  task prepare { assign role cs_rep due 1 workday -> wait_documents }
  wait wait_documents {
    on message documents_received -> install
    on timeout 5 workdays -> chase
  }
  task chase { assign role cs_rep due 1 workday -> wait_documents }
  task install { assign role engineer due 2 workdays -> done }
  end done
}
"#;

#[test]
fn a_kept_message_waits_for_the_step_that_listens_and_expires_unheard() {
    let mut c = Case::start(model(KEPT), bj(2026, 11, 23, 10, 0), fields(&[]));
    // The documents arrive while the case is still preparing: kept, not refused.
    c.run(Actor::system(), Command::Message { name: "documents_received".into() }).unwrap();
    assert_eq!(c.inst.mailbox.len(), 1);
    c.complete("prepare", fields(&[]));
    assert!(c.inst.mailbox.is_empty(), "consumed when the wait began");
    assert_eq!(c.open().into_iter().map(|(s, _)| s).collect::<Vec<_>>(), ["install"]);
    assert!(c.history.iter().any(|h| h.event == "message_received" && h.detail.contains("kept since")));
    // Kept too long: dropped, and the wait waits.
    let mut c = Case::start(model(KEPT), bj(2026, 11, 23, 10, 0), fields(&[]));
    c.run(Actor::system(), Command::Message { name: "documents_received".into() }).unwrap();
    c.advance_to(bj(2026, 11, 27, 10, 0));
    c.complete("prepare", fields(&[]));
    assert!(c.inst.mailbox.is_empty());
    assert!(c.history.iter().any(|h| h.event == "message_expired"));
    assert_eq!(
        c.inst.tokens.values().next().map(|t| c.model.step(t.step).name.clone()).as_deref(),
        Some("wait_documents")
    );
    // A message the process does not keep is still refused.
    let refused = c.run(Actor::system(), Command::Message { name: "unknown".into() });
    assert_eq!(refused, Err(CommandError::NoListener("unknown".into())));
}

const UP_THE_CHAIN: &str = r#"
process unresolved {
  source "t"
  start -> handle
  task handle {
    assign user "zhang_wei"
    due 4 workhours
    when overdue: escalate to manager of assignee
    when overdue + 1 workday: escalate to manager of assignee
    -> done
  }
  end done
}
"#;

#[test]
fn escalation_goes_on_up_the_chain_of_managers() {
    let mut c = Case::start(model(UP_THE_CHAIN), bj(2026, 11, 23, 10, 0), fields(&[]));
    assert_eq!(c.task("handle").assignee.as_deref(), Some("zhang_wei"));
    let due = c.task("handle").due_at.unwrap();
    c.advance_to(due);
    assert_eq!(c.task("handle").assignee.as_deref(), Some("li_na"), "the representative's manager");
    let next = c.inst.timers.values().find(|t| matches!(t.kind, TimerKind::Escalation { .. })).map(|t| t.due_at);
    assert!(next.is_some_and(|n| n > due), "a second escalation is pending: {:?}", c.inst.timers);
    c.advance_to(next.unwrap());
    assert_eq!(c.task("handle").assignee.as_deref(), Some("zhao_min"), "and then hers");
    let escalations: Vec<&str> =
        c.history.iter().filter(|h| h.event == "escalated").map(|h| h.detail.as_str()).collect();
    assert_eq!(escalations.len(), 2, "{escalations:?}");
}

#[test]
fn by_skill_prefers_the_highest_level_in_the_case_skills() {
    let src = r#"
process repair_visit {
  source "t"
  fields {
    product: text "产品" required
  }
  start -> visit
  task visit { assign role engineer by skill due 1 workday -> done }
  end done
}
"#;
    let at = bj(2026, 11, 23, 10, 0);
    let run = |sun_hao_skill: &str| {
        let mut rules = shipped_rules();
        rules.users.get_mut("sun_hao").unwrap().skills.push(sun_hao_skill.to_string());
        let model = model(src);
        let inst = Instance::new(InstanceId(1), &model, 1, "k".into(), at);
        let mut c = Case { model, rules, inst, now: at, history: Vec::new(), effects: Vec::new(), last_error: None };
        let crm = Actor { id: "crm".into(), roles: vec![], admin: false };
        c.run(&crm, Command::Start { fields: fields(&[("product", text("classroom_display"))]) }).unwrap();
        c.task("visit").assignee.unwrap()
    };
    // chen_jie has classroom_display at level 4 in the shipped rules.
    assert_eq!(run("software"), "chen_jie", "only chen_jie has the skill");
    assert_eq!(run("classroom_display:5"), "sun_hao", "a higher level wins");
    assert_eq!(run("classroom_display:4"), "chen_jie", "equal levels: fewest open tasks, then name");
    assert_eq!(run("classroom_display"), "chen_jie", "no level written is level 1");
}

#[test]
fn for_each_until_a_condition_stops_at_the_first_answer_that_meets_it() {
    let until = CALL_EACH_SCHOOL
        .replace("for each school in schools", "for each school in schools one at a time until satisfied");
    let mut c = Case::start(model(&until), bj(2026, 11, 23, 10, 0), schools(&["一中", "二中", "三中"]));
    c.complete("call_back", fields(&[("satisfied", Value::Bool(false))]));
    assert_eq!(c.inst.status, Status::Running);
    c.complete("call_back", fields(&[("satisfied", Value::Bool(true))]));
    assert_eq!(c.inst.status, Status::Completed { outcome: "done".into() }, "the second answer met the condition");
    let done = c.history.iter().find(|h| h.event == "instances_done").unwrap();
    assert_eq!(done.detail, "2 of 3 done");
}

#[test]
fn a_deadline_past_the_calendars_known_holidays_is_flagged() {
    let src = r#"
process p {
  source "t"
  start -> a
  task a { assign role cs_rep due 3 workdays -> done }
  end done
}
"#;
    // The shipped calendar knows holidays through 2026-12-31.
    let c = Case::start(model(src), bj(2026, 12, 21, 10, 0), fields(&[]));
    assert!(!c.task("a").beyond_calendar);
    let c = Case::start(model(src), bj(2026, 12, 30, 10, 0), fields(&[]));
    assert!(c.task("a").beyond_calendar, "due in January 2027");
    assert!(c.events().contains(&"deadline_beyond_calendar@a".to_string()));
}

#[test]
fn a_deadline_computed_from_a_field_moves_when_the_field_changes() {
    let mut c = Case::start(shipped("complaint"), bj(2026, 11, 23, 10, 0), complaint_fields("low"));
    let before = c.task("receive").due_at.unwrap();
    let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
    c.run(&admin, Command::UpdateFields { fields: fields(&[("urgency", text("high"))]) }).unwrap();
    let after = c.task("receive").due_at.unwrap();
    assert_eq!(after, bj(2026, 11, 23, 10, 10), "high: 10 minutes from when it opened (was {before})");
    assert!(c.history.iter().any(|h| h.event == "deadline_recomputed"));
    let due = c.inst.timers.values().find(|t| matches!(t.kind, TimerKind::Due { .. })).unwrap();
    assert_eq!(due.due_at, after, "the timer moved with it");
}

#[test]
fn who_started_the_case_and_who_completed_a_step_are_known_to_expressions() {
    let src = r#"
process p {
  source "t"
  fields {
    filed_by: text "申请人"
    prepared_by: text "准备人"
  }
  start -> note_filer
  auto note_filer {
    set filed_by = started_by()
    -> prepare
  }
  task prepare { assign role cs_manager due 1 workday -> note_preparer }
  auto note_preparer {
    set prepared_by = completed_by(prepare)
    -> done
  }
  end done
}
"#;
    let mut c = Case::start(model(src), bj(2026, 11, 23, 10, 0), fields(&[]));
    assert_eq!(c.inst.fields["filed_by"], text("crm"), "Case::start starts as the CRM");
    let preparer = c.task("prepare").assignee.unwrap();
    c.complete("prepare", fields(&[]));
    assert_eq!(c.inst.fields["prepared_by"], text(&preparer));
}

/// Every command in every status: refused with `WrongStatus` exactly where the one table
/// (`allowed`) says so, and nowhere else, whatever the handler does after.
#[test]
fn every_command_in_every_status_follows_the_table() {
    let model = model(
        r#"process table "表" {
  fields { note: text "备注" }
  start -> work
  task work "办理" { assign role cs_rep due 1 workday -> done }
  end done
}"#,
    );
    let rules = shipped_rules();
    let now = bj(2026, 11, 23, 10, 0);
    let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
    let ctx = Context { model: &model, rules: &rules, workload: &NoWorkload, now };
    let fresh = Instance::new(InstanceId(1), &model, 1, "k".into(), now);
    let mut started = fresh.clone();
    apply(&ctx, &mut started, &admin, Command::Start { fields: BTreeMap::new() }).unwrap();
    let task = *started.tasks.keys().next().expect("a task is open");
    let timer = *started.timers.keys().next().expect("its deadline is set");
    let example = |kind: CommandKind| match kind {
        CommandKind::Start => Command::Start { fields: BTreeMap::new() },
        CommandKind::CompleteTask => Command::CompleteTask { task, fields: BTreeMap::new() },
        CommandKind::Claim => Command::Claim { task },
        CommandKind::Release => Command::Release { task },
        CommandKind::Reassign => Command::Reassign { task, to: "li_na".into(), reason: "r".into() },
        CommandKind::Delegate => Command::Delegate { task, to: "li_na".into(), reason: "r".into() },
        CommandKind::FireTimer => Command::FireTimer { timer },
        CommandKind::Message => Command::Message { name: "m".into() },
        CommandKind::UpdateFields => Command::UpdateFields { fields: fields(&[("note", text("n"))]) },
        CommandKind::ChildStarted => Command::ChildStarted { token: 0, child: InstanceId(2) },
        CommandKind::ChildEnded => Command::ChildEnded { token: 0, fields: BTreeMap::new() },
        CommandKind::ChildCancelled => Command::ChildCancelled { token: 0, reason: "r".into() },
        CommandKind::Cancel => Command::Cancel { reason: "r".into() },
        CommandKind::Suspend => Command::Suspend,
        CommandKind::Resume => Command::Resume,
        CommandKind::Retry => Command::Retry,
        CommandKind::RecomputeDeadlines => Command::RecomputeDeadlines,
    };
    let status = |kind: StatusKind| match kind {
        StatusKind::Running => Status::Running,
        StatusKind::Suspended => Status::Suspended,
        StatusKind::Incident => Status::Incident { step: "work".into(), reason: "r".into() },
        StatusKind::Completed => Status::Completed { outcome: "done".into() },
        StatusKind::Cancelled => Status::Cancelled { reason: "r".into() },
    };
    let mut allowed_somewhere = 0;
    for s in StatusKind::ALL {
        for c in CommandKind::ALL {
            assert_eq!(example(c).kind(), c);
            let mut inst = if c == CommandKind::Start { fresh.clone() } else { started.clone() };
            inst.status = status(s);
            let later = Context { now: now + Duration::days(30), ..ctx };
            let got = apply(&later, &mut inst, &admin, example(c));
            let refused = matches!(got, Err(CommandError::WrongStatus(_)));
            assert_eq!(refused, !allowed(c, s), "{c:?} in a {} case: {got:?}", s.as_str());
            allowed_somewhere += usize::from(allowed(c, s));
        }
    }
    assert!(CommandKind::ALL.iter().all(|c| StatusKind::ALL.iter().any(|s| allowed(*c, *s))));
    assert_eq!(allowed_somewhere, 9 + 6 * 3 + 1 + 1, "the table's shape");
}

// ------------------------------------------------------------ migration between versions

/// The complaint process with `verify` renamed (`renamed from verify`) and nothing else changed.
fn complaint_with_verify_renamed() -> Process {
    let source =
        std::fs::read_to_string(format!("{}/../processes/complaint.flow", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let renamed = source
        .replace("task verify \"核实\" {", "task check_evidence \"核实\" renamed from verify {")
        .replace("-> verify", "-> check_evidence");
    assert_ne!(renamed, source);
    model(&renamed)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(96)))]

    /// Wherever a case is (tasks open, overdue, escalated, suspended, waiting on timers), it
    /// moves to an identical version, or to one that only renames a step with `renamed from`,
    /// keeping every task as it is: same number, assignee, deadline and timers, nothing closed
    /// or opened. An ended case does not move.
    #[test]
    fn a_case_moves_to_an_equal_or_renamed_version_keeping_its_work(
        renamed in any::<bool>(),
        steps in proptest::collection::vec(step(), 0..40),
    ) {
        let mut c = Case::start(shipped("complaint"), bj(2026, 11, 27, 17, 30), complaint_fields("high"));
        let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
        for s in steps {
            match s {
                Step::CompleteAny(i, _) => {
                    let tasks: Vec<Task> = c.inst.tasks.values().cloned().collect();
                    if let Some(t) = tasks.get(i % tasks.len().max(1)) {
                        let f = form_values(&c.model, t, true);
                        let _ = c.run(&admin, Command::CompleteTask { task: t.seq, fields: f });
                    }
                }
                Step::Advance(minutes) => {
                    let t = c.now + Duration::minutes(minutes.into());
                    if c.inst.status == Status::Running { c.advance_to(t) } else { c.now = t }
                }
                Step::Suspend => { let _ = c.run(&admin, Command::Suspend); }
                Step::Resume => { let _ = c.run(&admin, Command::Resume); }
                Step::Cancel => { let _ = c.run(&admin, Command::Cancel { reason: "test".into() }); }
                _ => {}
            }
        }
        let target = if renamed { complaint_with_verify_renamed() } else { shipped("complaint") };
        let ctx = Context { model: &target, rules: &c.rules, workload: &NoWorkload, now: c.now };
        match migrate::migrate(&ctx, &c.model, &c.inst, 2, &BTreeMap::new(), &admin) {
            Err(reasons) => prop_assert!(c.inst.status.is_ended(), "refused: {reasons:?}"),
            Ok(m) => {
                prop_assert!(!c.inst.status.is_ended(), "an ended case moved");
                prop_assert_eq!(m.instance.version, 2);
                prop_assert!(m.plan.tasks_closed.is_empty() && m.plan.tasks_opened.is_empty(), "{:?}", m.plan);
                prop_assert_eq!(m.instance.timers, c.inst.timers.clone(), "timers kept");
                prop_assert_eq!(m.instance.tokens.keys().collect::<Vec<_>>(), c.inst.tokens.keys().collect::<Vec<_>>());
                for (seq, before) in &c.inst.tasks {
                    let after = &m.instance.tasks[seq];
                    prop_assert_eq!((&after.assignee, after.due_at, after.overdue), (&before.assignee, before.due_at, before.overdue));
                    let name = &c.model.step(before.step).name;
                    let expected = if renamed && name == "verify" { "check_evidence" } else { name.as_str() };
                    prop_assert_eq!(after.step_name.as_str(), expected);
                    prop_assert_eq!(&target.step(after.step).name, &after.step_name);
                }
                prop_assert_eq!(&m.instance.fields, &c.inst.fields);
                prop_assert_eq!(&m.instance.status, &c.inst.status);
                prop_assert!(m.history.iter().any(|h| h.event == HistoryEvent::Migrated));
            }
        }
    }
}

// ------------------------------------------------------------ acts on the history

/// The act a person did is stored on the entry it produced, and read back from there, not from
/// the entry's text: blank every entry's detail and a recording still finds the same actions.
#[test]
fn acts_are_stored_on_their_entries_and_read_back_from_them() {
    let mut c = Case::start(shipped("complaint"), bj(2026, 11, 23, 10, 0), complaint_fields("medium"));
    c.complete("receive", fields(&[("cause", text("quality"))]));
    let verify = c.task("verify");
    let manager = Actor { id: "li_na".into(), roles: vec!["cs_manager".into()], admin: false };
    c.run(&manager, Command::Reassign { task: verify.seq, to: "zhang_wei".into(), reason: "on leave".into() }).unwrap();
    c.run(&manager, Command::UpdateFields { fields: fields(&[("urgency", text("high"))]) }).unwrap();
    let acts: Vec<&Act> = c.history.iter().filter_map(|h| h.act.as_deref()).collect();
    assert_eq!(
        acts,
        [
            &Act::Complete { step: "receive".into() },
            &Act::Reassign { step: "verify".into(), to: "zhang_wei".into(), reason: "on leave".into() },
            &Act::SetFields,
        ]
    );
    // What the engine did (the start, the tasks it opened, the decision table) carries none.
    assert!(c
        .history
        .iter()
        .filter(|h| h.event != HistoryEvent::TaskCompleted)
        .all(|h| { h.act.is_none() || matches!(h.event, HistoryEvent::TaskReassigned | HistoryEvent::FieldsUpdated) }));
    let entries: Vec<(usize, HistoryEntry)> = c.history.iter().cloned().map(|e| (0, e)).collect();
    let blanked: Vec<(usize, HistoryEntry)> =
        entries.iter().cloned().map(|(n, e)| (n, HistoryEntry { detail: "…".into(), ..e })).collect();
    let read = |entries: &[(usize, HistoryEntry)]| {
        caseflow_engine::scenario::actions_of(entries)
            .actions
            .into_iter()
            .map(|a| (a.act, a.by, a.values))
            .collect::<Vec<_>>()
    };
    assert_eq!(read(&blanked), read(&entries));
    assert_eq!(read(&entries).len(), 3);
    assert_eq!(read(&entries)[0].2, fields(&[("cause", text("quality"))]), "a task's answers are its entry's changes");
}
