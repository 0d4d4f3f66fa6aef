//! The deterministic core driven by command sequences and a manual clock: no sleeping, time
//! only moves when a test moves it. The shipped processes' paths, every command in every
//! status, timers, incidents, and random command sequences that must keep the invariants.

use caseflow_core::case::*;
use caseflow_core::value::Value;
use chrono::Duration;
use proptest::prelude::*;

mod common;
use common::*;

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
            if let Err(broken) = history_invariants(&c.inst, &c.history) {
                prop_assert!(false, "{broken}\nevents: {:?}", c.events());
            }
        }
    }
}

// ------------------------------------------------------------ acts on the history

/// The act a person did is stored on the entry it produced (a recording reads it from there:
/// `engine/tests/service.rs`), and what the engine did carries none.
#[test]
fn acts_are_stored_on_the_entries_they_produced() {
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
}
