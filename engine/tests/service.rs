//! The engine over sled: versions, business keys, idempotency, indexes, timers, sub-processes,
//! and state that survives reopening the store.

use caseflow_core::case::{Actor, Command, CommandError, Status};
use caseflow_core::value::Value;
use caseflow_engine::storage::StoreError;
use caseflow_engine::Storage;
use caseflow_engine::{Durability, Engine, EngineError, Store, StoreOptions};
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

use caseflow_tests::shipped_rules as rules;

mod common;
use common::{bj, complaint_source, crm, engine_at, fields, TempDir};

#[test]
fn deploying_versions_old_cases_stay_on_theirs() {
    let engine = Engine::open(Store::temporary().unwrap(), rules()).unwrap();
    let now = bj(2026, 11, 23, 9, 0);
    let v1 = engine.deploy(&complaint_source(), now).unwrap();
    assert_eq!((v1.version, v1.changed), (1, true));
    assert!(!engine.deploy(&complaint_source(), now).unwrap().changed, "same content, same version");
    let old = engine.start("complaint", fields("low"), &crm(), None, now).unwrap();
    let v2 = engine
        .deploy(
            &complaint_source().replace("due 1 workday\n    asks evidence", "due 2 workdays\n    asks evidence"),
            now,
        )
        .unwrap();
    assert_eq!((v2.version, v2.changed), (2, true));
    let new = engine.start("complaint", fields("low"), &crm(), None, now).unwrap();
    assert_eq!((old.version, new.version), (1, 2));
    assert!(engine.definition("complaint", Some(1)).is_some(), "old versions stay readable");
    // A broken source is refused with its diagnostics and changes nothing.
    let err = engine.deploy(&complaint_source().replace("-> route", "-> rout"), now).unwrap_err();
    assert!(matches!(&err, EngineError::Rejected(d) if d.iter().any(|d| d.code.as_str() == "FLOW011")), "{err}");
    assert_eq!(engine.definitions(), [("complaint".to_string(), vec![1, 2])]);
}

#[test]
fn business_keys_count_per_day_and_idempotency_keys_repeat_nothing() {
    let engine = Engine::open(Store::temporary().unwrap(), rules()).unwrap();
    engine.deploy(&complaint_source(), bj(2026, 11, 23, 9, 0)).unwrap();
    let a = engine.start("complaint", fields("low"), &crm(), None, bj(2026, 11, 23, 9, 0)).unwrap();
    let b = engine.start("complaint", fields("low"), &crm(), Some("crm-4711"), bj(2026, 11, 23, 9, 5)).unwrap();
    let b_again = engine.start("complaint", fields("low"), &crm(), Some("crm-4711"), bj(2026, 11, 23, 9, 6)).unwrap();
    // The same key with another request is refused, changing nothing.
    let other = engine.start("complaint", fields("high"), &crm(), Some("crm-4711"), bj(2026, 11, 23, 9, 6));
    assert!(matches!(other, Err(EngineError::IdempotencyKeyReused(ref k)) if k == "crm-4711"), "{other:?}");
    // Keys are the caller's: another caller's `crm-4711` is another case.
    let ticketing = Actor { id: "ticketing".into(), roles: vec![], admin: false };
    let theirs =
        engine.start("complaint", fields("high"), &ticketing, Some("crm-4711"), bj(2026, 11, 23, 9, 7)).unwrap();
    assert_ne!(theirs.id, b.id);
    let c = engine.start("complaint", fields("low"), &crm(), None, bj(2026, 11, 24, 9, 0)).unwrap();
    assert_eq!(a.business_key, "20261123-001");
    assert_eq!(b.business_key, "20261123-002");
    assert_eq!(b_again.id, b.id, "same idempotency key, same instance");
    assert_eq!(theirs.business_key, "20261123-003");
    assert_eq!(c.business_key, "20261124-001", "the sequence restarts each day");
    assert_eq!(engine.instance_by_key("20261123-002").unwrap().unwrap().id, b.id);
}

#[test]
fn a_case_runs_through_the_engine_and_survives_reopening() {
    let dir = TempDir::new("reopen");
    let id;
    {
        let engine = engine_at(&dir);
        engine.deploy(&complaint_source(), bj(2026, 11, 23, 9, 0)).unwrap();
        let inst = engine.start("complaint", fields("high"), &crm(), None, bj(2026, 11, 23, 10, 0)).unwrap();
        id = inst.id;
        let inbox = engine.tasks(Some("liu_yang"), None, 100).unwrap();
        assert_eq!(inbox.len(), 1);
        assert_eq!(inbox[0].task.name, "接收并登记");
        assert_eq!(engine.tasks(None, Some("cs_rep"), 100).unwrap().len(), 1);
        // Nothing is due before 10:10.
        assert_eq!(engine.fire_due(bj(2026, 11, 23, 10, 9), 100).unwrap(), 0);
        assert_eq!(engine.next_due().unwrap(), Some(bj(2026, 11, 23, 10, 10)));
    }
    // Reopened: the case, its task and its timer are all there.
    let engine = engine_at(&dir);
    let inst = engine.instance(id).unwrap().unwrap();
    assert_eq!(inst.tasks.len(), 1);
    // The deadline and the escalation to the manager (`+ 0min`) fire at once.
    assert_eq!(engine.fire_due(bj(2026, 11, 23, 10, 11), 100).unwrap(), 2, "overdue after restart: fires at once");
    let history = engine.history(id).unwrap();
    let overdue = history.iter().find(|h| h.event == "task_overdue").unwrap();
    assert_eq!(overdue.lateness_ms, Some(60_000), "lateness recorded");
    // Escalated to the manager: the indexes moved with it.
    assert!(engine.tasks(Some("liu_yang"), None, 10).unwrap().is_empty());
    let task = &engine.tasks(Some("li_na"), None, 10).unwrap()[0];
    let manager = Actor { id: "li_na".into(), roles: vec!["cs_manager".into()], admin: false };
    let cmd = Command::CompleteTask {
        task: task.task.seq,
        fields: [("cause".to_string(), Value::Text("quality".into()))].into(),
    };
    engine.command(id, &manager, cmd.clone(), bj(2026, 11, 23, 10, 20)).unwrap();
    // The lost race of a second completion is a conflict, not a double completion.
    let again = engine.command(id, &manager, cmd, bj(2026, 11, 23, 10, 21));
    assert!(matches!(again, Err(EngineError::Command(CommandError::TaskNotOpen(_)))));
    assert_eq!(engine.instances("complaint", "running", 10).unwrap(), [id]);
    let seqs: Vec<u64> = engine.history(id).unwrap().iter().map(|h| h.seq).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
}

#[test]
fn sub_processes_start_and_return() {
    let engine = Engine::open(Store::temporary().unwrap(), rules()).unwrap();
    let now = bj(2026, 11, 23, 10, 0);
    let child = r#"
process survey {
  source "t"
  fields {
    school: text required
    score: int(1..5)
  }
  start -> ask
  task ask { assign role cs_rep due 1 workday asks score required -> done }
  end done
}
"#;
    let parent = r#"
process onboarding_part {
  source "t"
  fields {
    school: text required
    satisfaction: int(1..5)
  }
  start -> survey_call
  call survey_call process survey {
    input school = school
    output satisfaction = score
    -> done
  }
  end done
}
"#;
    engine.deploy(child, now).unwrap();
    engine.deploy(parent, now).unwrap();
    let p = engine
        .start("onboarding_part", [("school".to_string(), Value::Text("二中".into()))].into(), &crm(), None, now)
        .unwrap();
    let child_id = engine.instances("survey", "running", 10).unwrap()[0];
    let c = engine.instance(child_id).unwrap().unwrap();
    assert_eq!(c.fields["school"], Value::Text("二中".into()));
    let task = *c.tasks.keys().next().unwrap();
    let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
    engine
        .command(
            child_id,
            &admin,
            Command::CompleteTask { task, fields: [("score".to_string(), Value::Int(4))].into() },
            now,
        )
        .unwrap();
    let p = engine.instance(p.id).unwrap().unwrap();
    assert_eq!(p.status, Status::Completed { outcome: "done".into() });
    assert_eq!(p.fields["satisfaction"], Value::Int(4));
}

#[test]
fn the_rules_key_format_overrides_the_process_key() {
    let mut r = rules();
    r.key_formats.insert("complaint".into(), "TS-{date:%y}-{seq:05}".into());
    let engine = Engine::open(Store::temporary().unwrap(), r).unwrap();
    engine.deploy(&complaint_source(), bj(2026, 11, 23, 9, 0)).unwrap();
    let a = engine.start("complaint", fields("low"), &crm(), None, bj(2026, 11, 23, 9, 0)).unwrap();
    assert_eq!(a.business_key, "TS-26-00001");
}

#[test]
fn processes_that_call_others_load_again_after_a_restart() {
    let dir = TempDir::new("reopen-calls");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../processes");
    {
        let engine = engine_at(&dir);
        for name in ["callback", "installation", "repair", "onboarding"] {
            engine
                .deploy(&std::fs::read_to_string(format!("{root}/{name}.flow")).unwrap(), bj(2026, 11, 23, 9, 0))
                .unwrap();
        }
    }
    let engine = engine_at(&dir);
    assert_eq!(engine.definitions().len(), 4, "every stored definition loads, callers included");
}

#[test]
fn the_kpi_report_counts_cases_times_deadlines_and_satisfaction() {
    let engine = Engine::open(Store::temporary().unwrap(), rules()).unwrap();
    engine.deploy(&complaint_source(), bj(2026, 11, 23, 9, 0)).unwrap();
    let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
    let run = |urgency: &str, resolved: bool, late: bool, satisfaction: i64| {
        let t0 = bj(2026, 11, 23, 10, 0);
        let inst = engine.start("complaint", fields(urgency), &crm(), None, t0).unwrap();
        let mut now = t0 + chrono::Duration::minutes(if late { 20 } else { 5 });
        if late {
            engine.fire_due(now, 10).unwrap();
        }
        let steps: Vec<(&str, Vec<(&str, Value)>)> = vec![
            ("receive", vec![("cause", Value::Text("quality".into()))]),
            ("verify", vec![]),
            ("phone_resolution", vec![("resolved", Value::Bool(resolved))]),
        ];
        for (_, f) in steps {
            let i = engine.instance(inst.id).unwrap().unwrap();
            let task = *i.tasks.keys().next().unwrap();
            let fields = f.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            engine.command(inst.id, &admin, Command::CompleteTask { task, fields }, now).unwrap();
            now += chrono::Duration::minutes(30);
        }
        if !resolved {
            return;
        }
        for f in [vec![("satisfaction", Value::Int(satisfaction))], vec![]] {
            let i = engine.instance(inst.id).unwrap().unwrap();
            let task = *i.tasks.keys().next().unwrap();
            let fields = f.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            engine.command(inst.id, &admin, Command::CompleteTask { task, fields }, now).unwrap();
        }
    };
    run("high", true, false, 5);
    run("high", true, true, 3);
    run("low", false, false, 0);
    let r = engine.report("complaint", None, None).unwrap();
    assert_eq!(r.cases, 3);
    assert_eq!(r.by_status["completed"], 2);
    assert_eq!(r.by_status["running"], 1);
    assert_eq!(r.by_field["urgency"]["high"], 2);
    assert_eq!(r.by_field["cause"]["quality"], 3);
    let receive = &r.steps["receive"];
    assert_eq!(receive.completed, 3);
    assert_eq!(receive.handling_minutes_median, Some(5.0));
    assert_eq!(receive.deadlines_met_share, Some(2.0 / 3.0), "one of three was late");
    assert_eq!(r.first_contact_resolution_share, Some(1.0), "both completed cases were resolved on the phone");
    assert_eq!(r.satisfaction_average, Some(4.0));
    let future = engine.report("complaint", Some(bj(2026, 11, 24, 0, 0)), None).unwrap();
    assert_eq!(future.cases, 0, "the period filters by start time");
}

#[test]
fn inbox_pages_follow_deadlines_and_cursors() {
    let engine = Engine::open(Store::temporary().unwrap(), rules()).unwrap();
    engine.deploy(&complaint_source(), bj(2026, 11, 23, 9, 0)).unwrap();
    // Three high-urgency cases opened an hour apart: deadlines in that order.
    for h in [11, 9, 10] {
        engine.start("complaint", fields("high"), &crm(), None, bj(2026, 11, 23, h, 0)).unwrap();
    }
    let role = Some("cs_rep");
    let all = engine.tasks(None, role, 100).unwrap();
    assert_eq!(all.len(), 3);
    let dues: Vec<_> = all.iter().map(|t| t.task.due_at.unwrap()).collect();
    assert!(dues.windows(2).all(|w| w[0] <= w[1]), "soonest due first: {dues:?}");
    let first = engine.tasks_page(None, role, None, 2).unwrap();
    assert_eq!(first.tasks, all[..2]);
    let second = engine.tasks_page(None, role, first.next_cursor.as_deref(), 2).unwrap();
    assert_eq!(second.tasks, all[2..]);
    assert_eq!(second.next_cursor, None);
    assert!(matches!(engine.tasks_page(None, role, Some("zz"), 2), Err(EngineError::BadCursor(_))));
}

#[test]
fn inbox_counts_from_the_index_match_the_tasks_themselves() {
    let engine = Engine::open(Store::temporary().unwrap(), rules()).unwrap();
    engine.deploy(&complaint_source(), bj(2026, 11, 23, 9, 0)).unwrap();
    // Cases over three days at varied hours and urgencies: deadlines spread over a week.
    let urgencies = ["high", "medium", "low"];
    for i in 0..40u32 {
        let at = bj(2026, 11, 23 + i % 3, 9 + (i * 7) % 9, (i * 13) % 60);
        engine.start("complaint", fields(urgencies[(i % 3) as usize]), &crm(), None, at).unwrap();
    }
    let users: std::collections::BTreeSet<String> =
        engine.tasks(None, Some("cs_rep"), 1000).unwrap().iter().filter_map(|t| t.task.assignee.clone()).collect();
    assert!(users.len() >= 2);
    for now in [bj(2026, 11, 23, 12, 0), bj(2026, 11, 24, 17, 30), bj(2026, 11, 26, 9, 0), bj(2026, 12, 10, 9, 0)] {
        let day = (bj(2026, 11, 24, 0, 0), bj(2026, 11, 25, 0, 0));
        for user in &users {
            let tasks = engine.tasks(Some(user), None, 1000).unwrap();
            let due = |t: &caseflow_engine::service::TaskView| t.task.due_at.unwrap();
            let expected = caseflow_engine::service::InboxCounts {
                open: tasks.len(),
                overdue: tasks.iter().filter(|t| due(t) < now).count(),
                due: tasks.iter().filter(|t| due(t) >= day.0 && due(t) < day.1).count(),
            };
            assert_eq!(engine.inbox_counts(user, now, day.0, day.1).unwrap(), expected, "{user} at {now}");
        }
    }
}

#[test]
fn a_role_inbox_reads_assigned_tasks_from_the_assignees_inbox() {
    let engine = Engine::open(Store::temporary().unwrap(), rules()).unwrap();
    let now = bj(2026, 11, 23, 9, 0);
    engine.deploy(&complaint_source(), now).unwrap();
    let inst = engine.start("complaint", fields("high"), &crm(), None, now).unwrap();
    let task = inst.tasks.values().next().unwrap().clone();
    let who = task.assignee.clone().expect("assigned by the rule");
    let mine = engine.tasks(Some(&who), None, 10).unwrap();
    assert_eq!(engine.tasks(None, Some("cs_rep"), 10).unwrap(), mine, "the same view through the role");
    // The role entry holds a pointer, not a second copy of the view.
    let (_, pointer) = engine.store().scan_prefix(b"r/cs_rep\0").next().unwrap().unwrap();
    assert_eq!(pointer.as_ref(), [&[5u8][..], who.as_bytes()].concat());
    // Released, the task has no assignee: the role entry holds the view.
    let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
    engine.command(inst.id, &admin, Command::Release { task: task.seq }, now).unwrap();
    let pool = engine.tasks(None, Some("cs_rep"), 10).unwrap();
    assert_eq!(pool.len(), 1);
    assert_eq!(pool[0].task.assignee, None);
    assert!(engine.tasks(Some(&who), None, 10).unwrap().is_empty());
    // Role entries written before the pointer form (a copy of the view) still read.
    let (k, _) = engine.store().scan_prefix(b"r/cs_rep\0").next().unwrap().unwrap();
    let mut batch = caseflow_engine::store::Batch::default();
    batch.insert(k.to_vec(), serde_json::to_vec(&mine[0]).unwrap());
    engine.store().write_now(batch).unwrap();
    assert_eq!(engine.tasks(None, Some("cs_rep"), 10).unwrap(), mine);
}

#[test]
fn instance_ids_are_reserved_in_blocks_and_never_reused_after_a_restart() {
    let dir = TempDir::new("ids");
    let now = bj(2026, 11, 23, 9, 0);
    let next_stored = |e: &Engine<Store>| {
        u64::from_be_bytes(e.store().get(b"m/next_instance").unwrap().unwrap()[..].try_into().unwrap())
    };
    let last = {
        let engine = engine_at(&dir);
        engine.deploy(&complaint_source(), now).unwrap();
        // A refused start gives its id back (the block it reserved is stored and stays).
        let mut bad = fields("high");
        bad.insert("urgency".into(), Value::Text("urgent".into()));
        assert!(engine.start("complaint", bad, &crm(), None, now).is_err());
        let ids: Vec<u64> =
            (0..3).map(|_| engine.start("complaint", fields("high"), &crm(), None, now).unwrap().id.0).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert!(next_stored(&engine) > 3, "the block is stored before any id of it is used");
        next_stored(&engine)
    };
    let engine = engine_at(&dir);
    let after_restart = engine.start("complaint", fields("high"), &crm(), None, now).unwrap();
    assert_eq!(after_restart.id.0, last, "a restart continues after the reserved block");
    assert!(engine.instance(caseflow_core::case::InstanceId(3)).unwrap().is_some());
}

#[test]
fn an_idempotency_key_left_by_a_crashed_start_is_taken_again() {
    // A start that took its numbers and died before writing its case leaves this behind.
    let store = Store::temporary().unwrap();
    let mut batch = caseflow_engine::store::Batch::default();
    batch.insert(&b"x/crm\0crm-1"[..], &7u64.to_be_bytes()[..]);
    batch.insert(&b"m/next_instance"[..], &8u64.to_be_bytes()[..]);
    store.write_now(batch).unwrap();
    let engine = Engine::open(store, rules()).unwrap();
    let now = bj(2026, 11, 23, 9, 0);
    engine.deploy(&complaint_source(), now).unwrap();
    let first = engine.start("complaint", fields("high"), &crm(), Some("crm-1"), now).unwrap();
    assert_eq!(first.id.0, 8, "numbers only grow: 7 stays unused");
    let again = engine.start("complaint", fields("high"), &crm(), Some("crm-1"), now).unwrap();
    assert_eq!(again.id, first.id);
    assert_eq!(engine.count_instances("complaint", "running").unwrap(), 1);
    // Refused input takes no number: the register has no gap.
    let mut bad = fields("high");
    bad.insert("urgency".into(), Value::Text("urgent".into()));
    assert!(engine.start("complaint", bad, &crm(), None, now).is_err());
    let next = engine.start("complaint", fields("high"), &crm(), None, now).unwrap();
    assert_eq!(next.id.0, 9);
    assert_eq!(next.business_key, "20261123-002");
}

#[test]
fn concurrent_starts_number_the_register_without_gaps_and_an_idempotency_key_starts_once() {
    let engine = std::sync::Arc::new(Engine::open(Store::temporary().unwrap(), rules()).unwrap());
    let now = bj(2026, 11, 23, 9, 0);
    engine.deploy(&complaint_source(), now).unwrap();
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let mut keys = Vec::new();
                for i in 0..25 {
                    // Every third start is refused: it must take no number.
                    let urgency = if (w + i) % 3 == 0 { "urgent" } else { "high" };
                    if let Ok(inst) = engine.start("complaint", fields(urgency), &crm(), None, now) {
                        let history = engine.history(inst.id).unwrap();
                        assert_eq!(history[0].detail, format!("business key {}", inst.business_key));
                        keys.push(inst.business_key);
                    }
                }
                // All eight start the same idempotent request at once.
                let same = engine.start("complaint", fields("high"), &crm(), Some("crm-42"), now);
                (keys, same.map(|i| (i.id, i.business_key)))
            })
        })
        .collect();
    let mut keys = Vec::new();
    let mut same = Vec::new();
    for w in workers {
        let (k, s) = w.join().unwrap();
        keys.extend(k);
        same.push(s);
    }
    let ids: std::collections::BTreeSet<_> = same.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ids.len(), 1, "one case for one idempotency key: {same:?}");
    keys.extend(ids.iter().map(|(_, key)| key.clone()));
    let started = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), started, "no number given twice");
    let expected: Vec<String> = (1..=started).map(|n| format!("20261123-{n:03}")).collect();
    assert_eq!(keys, expected, "the register has no gaps");
    assert!(
        same.iter().all(|r| matches!(r, Ok(_) | Err(caseflow_engine::EngineError::StartInProgress(_)))),
        "{same:?}"
    );
    assert_eq!(engine.count_instances("complaint", "running").unwrap(), started);
}

#[test]
fn pending_writes_are_published_only_when_confirmed_and_survive_a_restart() {
    let dir = TempDir::new("pending");
    let now = bj(2026, 11, 23, 9, 0);
    let (id, task) = {
        let engine = engine_at(&dir);
        engine.deploy(&complaint_source(), now).unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        engine.observe(move |e| log.lock().unwrap().push(e.event));
        let started = engine.start_pending("complaint", fields("high"), &crm(), None, now).unwrap();
        let id = started.instance().id;
        let task = *started.instance().tasks.keys().next().unwrap();
        // The case can be worked on before its start is acknowledged: the log keeps the order.
        let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
        let claimed = engine.command_pending(id, &admin, caseflow_core::case::Command::Claim { task }, now).unwrap();
        assert!(seen.lock().unwrap().is_empty(), "nothing is published before it is durable");
        assert_eq!(engine.confirm(started).unwrap().id, id);
        assert_eq!(seen.lock().unwrap().first(), Some(&caseflow_core::case::HistoryEvent::Started));
        let after = engine.confirm(claimed).unwrap();
        assert!(after.tasks[&task].claimed);
        assert!(
            seen.lock().unwrap().contains(&caseflow_core::case::HistoryEvent::TaskClaimed),
            "{:?}",
            seen.lock().unwrap()
        );
        (id, task)
    };
    let engine = engine_at(&dir);
    assert!(engine.instance(id).unwrap().unwrap().tasks[&task].claimed);
}

#[test]
fn fewest_open_assignment_keeps_exact_counts_under_concurrent_starts_and_completions() {
    let engine = std::sync::Arc::new(Engine::open(Store::temporary().unwrap(), rules()).unwrap());
    let now = bj(2026, 11, 23, 9, 0);
    engine.deploy(&complaint_source(), now).unwrap();
    let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
    let workers: Vec<_> = (0..6)
        .map(|w| {
            let (engine, admin) = (engine.clone(), admin.clone());
            std::thread::spawn(move || {
                for i in 0..20 {
                    let inst = engine.start("complaint", fields("high"), &crm(), None, now).unwrap();
                    // Half the cases get their first task done, which opens the next one.
                    if (w + i) % 2 == 0 {
                        let task = *inst.tasks.keys().next().unwrap();
                        let cmd = caseflow_core::case::Command::CompleteTask {
                            task,
                            fields: [("cause".to_string(), Value::Text("quality".into()))].into(),
                        };
                        engine.command(inst.id, &admin, cmd, now).unwrap();
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    // The next complaint goes to the cs_rep with the fewest open tasks by a full count of the
    // inboxes: the kept counts did not drift.
    let open = |u: &str| engine.tasks(Some(u), None, usize::MAX).unwrap().len();
    // The cs_reps on duty (wang_fang is away that week, rules/people.toml).
    let reps = ["liu_yang", "zhang_wei"];
    for _ in 0..6 {
        let before: Vec<usize> = reps.iter().map(|u| open(u)).collect();
        let fewest = before.iter().min().unwrap();
        let inst = engine.start("complaint", fields("high"), &crm(), None, now).unwrap();
        let to = inst.tasks.values().next().unwrap().assignee.clone().unwrap();
        let expected: Vec<&str> = reps.iter().zip(&before).filter(|(_, n)| *n == fewest).map(|(u, _)| *u).collect();
        assert!(expected.contains(&to.as_str()), "went to {to}; open tasks {before:?} of {reps:?}");
        assert!(before.iter().sum::<usize>() > 0);
    }
}

/// Starts that run at the same instant each see the tasks the others gave but have not yet
/// written: the cs_reps on duty stay within one task of each other after every round, on
/// the embedded store and in memory. Without the in-flight count, most of a round's starts
/// read the same counts and give their task to the same rep.
#[test]
fn fewest_open_counts_the_tasks_of_starts_in_flight() {
    fn check<S: Storage + 'static>(store: S) {
        let engine = std::sync::Arc::new(Engine::open(store, rules()).unwrap());
        let now = bj(2026, 11, 23, 9, 0);
        engine.deploy(&complaint_source(), now).unwrap();
        // The cs_reps on duty (wang_fang is away that week, rules/people.toml).
        let reps = ["liu_yang", "zhang_wei"];
        let open = |u: &str| engine.tasks(Some(u), None, usize::MAX).unwrap().len();
        const AT_ONCE: usize = 8;
        for round in 0..12 {
            let barrier = std::sync::Barrier::new(AT_ONCE);
            std::thread::scope(|s| {
                for _ in 0..AT_ONCE {
                    s.spawn(|| {
                        barrier.wait();
                        engine.start("complaint", fields("high"), &crm(), None, now).unwrap();
                    });
                }
            });
            let held: Vec<usize> = reps.iter().map(|u| open(u)).collect();
            assert_eq!(held.iter().sum::<usize>(), AT_ONCE * (round + 1));
            let (most, fewest) = (held.iter().max().unwrap(), held.iter().min().unwrap());
            assert!(most - fewest <= 1, "after round {round}: {reps:?} hold {held:?}");
        }
    }
    check(Store::temporary().unwrap());
    check(caseflow_engine::MemoryStore::new());
}

/// On a store other nodes share, an assignment by load reads the stored counts and the tasks
/// given here whose writes have not returned: two reads. A start written and returned between
/// them was in neither, so the next start gave its task to the same person. The tasks in flight
/// are read first now: a start that began meanwhile makes the assignment read again.
#[test]
fn fewest_open_on_a_shared_store_misses_no_start_written_between_its_two_reads() {
    let engine = Engine::open(Faulty::new(true), rules()).unwrap();
    let now = bj(2026, 11, 23, 9, 0);
    engine.deploy(&complaint_source(), now).unwrap();
    let (read_tx, read_rx) = std::sync::mpsc::channel();
    let (resume_tx, resume_rx) = std::sync::mpsc::channel();
    *engine.store().pause_after_read.lock().unwrap() = Some((read_tx, resume_rx));
    std::thread::scope(|s| {
        let second = s.spawn(|| engine.start("complaint", fields("high"), &crm(), None, now));
        read_rx.recv().unwrap();
        // Written and returned while the second start holds the counts it read.
        engine.start("complaint", fields("high"), &crm(), None, now).unwrap();
        resume_tx.send(()).unwrap();
        second.join().unwrap().unwrap();
    });
    // The cs_reps on duty (wang_fang is away that week).
    let held: Vec<usize> =
        ["liu_yang", "zhang_wei"].iter().map(|u| engine.tasks(Some(u), None, usize::MAX).unwrap().len()).collect();
    assert_eq!(held, [1, 1], "one task each");
}

#[test]
fn timers_added_below_where_the_driver_last_looked_still_fire() {
    // The driver starts each scan where the previous one found its first entry; entries
    // added below that (sooner, or already overdue) must lower the start.
    const WAIT: &str = r#"
process waits {
  source "test"
  fields { at: datetime required }
  start -> pause
  wait pause { until at -> closed }
  end closed
}
"#;
    let engine = Engine::open(Store::temporary().unwrap(), rules()).unwrap();
    let t = bj(2026, 11, 23, 10, 0);
    engine.deploy(WAIT, t).unwrap();
    let start = |at: DateTime<Utc>| {
        let fields = [("at".to_string(), Value::DateTime(at))].into();
        engine.start("waits", fields, &crm(), None, t).unwrap().id
    };
    let later = start(bj(2026, 11, 23, 10, 10));
    assert_eq!(engine.next_due().unwrap(), Some(bj(2026, 11, 23, 10, 10)));
    assert_eq!(engine.fire_due(bj(2026, 11, 23, 10, 5), 100).unwrap(), 0);
    let sooner = start(bj(2026, 11, 23, 10, 1));
    assert_eq!(engine.next_due().unwrap(), Some(bj(2026, 11, 23, 10, 1)), "a sooner timer is seen");
    let overdue = start(bj(2026, 11, 23, 9, 0));
    assert_eq!(engine.fire_due(bj(2026, 11, 23, 10, 6), 100).unwrap(), 2, "the sooner and the overdue one");
    assert_eq!(engine.next_due().unwrap(), Some(bj(2026, 11, 23, 10, 10)));
    assert_eq!(engine.fire_due(bj(2026, 11, 23, 10, 10), 100).unwrap(), 1);
    for id in [later, sooner, overdue] {
        let status = engine.instance(id).unwrap().unwrap().status;
        assert!(matches!(status, Status::Completed { .. }), "{status:?}");
    }
    assert_eq!(engine.next_due().unwrap(), None);
}

fn admin() -> Actor {
    Actor { id: "admin".into(), roles: vec![], admin: true }
}

const SURVEY: &str = r#"
process survey {
  source "t"
  fields {
    school: text required
    score: int(1..5)
  }
  start -> ask
  task ask { assign role cs_rep due 1 workday asks score required -> done }
  end done
}
"#;

const CALLS_SURVEY: &str = r#"
process visit {
  source "t"
  fields {
    school: text required
    satisfaction: int(1..5)
  }
  start -> survey_call
  call survey_call process survey {
    input school = school
    output satisfaction = score
    -> done
  }
  end done
}
"#;

fn school() -> BTreeMap<String, Value> {
    [("school".to_string(), Value::Text("二中".into()))].into()
}

#[test]
fn a_start_refused_in_a_sub_process_leaves_no_case_behind() {
    let engine = Engine::open(Store::temporary().unwrap(), rules()).unwrap();
    let now = bj(2026, 11, 23, 10, 0);
    // A chain of escalations: each level is a case of the same process, started when the
    // level below is handled without a solution. 16 levels nest; the 17th is refused whole.
    let chain = r#"
process chain {
  source "t"
  fields {
    level: int = 0
  }
  start -> handle
  task handle {
    assign role cs_rep
    due 1h
    -> decide {
      when level < 100 -> up
      else -> done
    }
  }
  call up process chain {
    input level = level + 1
    -> done
  }
  end done
}
"#;
    engine.deploy(chain, now).unwrap();
    let mut case = engine.start("chain", BTreeMap::new(), &crm(), None, now).unwrap();
    for level in 0..=caseflow_engine::service::CALL_DEPTH_MAX {
        let task = *case.tasks.keys().next().unwrap();
        let done = engine.command(case.id, &admin(), Command::CompleteTask { task, fields: BTreeMap::new() }, now);
        if level == caseflow_engine::service::CALL_DEPTH_MAX {
            assert!(matches!(done, Err(EngineError::TooDeep)), "{done:?}");
            assert_eq!(engine.instance(case.id).unwrap().unwrap(), case, "the refused command changed nothing");
        } else {
            let parent = done.unwrap();
            case = engine.instance(parent.children.values().copied().next().unwrap()).unwrap().unwrap();
            assert_eq!(case.fields["level"], Value::Int(level as i64 + 1));
        }
    }
    assert_eq!(engine.count_instances("chain", "running").unwrap(), caseflow_engine::service::CALL_DEPTH_MAX + 1);
    // A child refused for its fields (a value out of range, known only at run time) refuses
    // the parent's start too.
    engine.deploy(SURVEY, now).unwrap();
    let bad = "process bad_call {\n  source \"t\"\n  fields {\n    bonus: int = 10\n  }\n  start -> c\n  call c process survey {\n    input school = \"二中\"\n    input score = bonus\n    -> done\n  }\n  end done\n}\n";
    engine.deploy(bad, now).unwrap();
    let refused = engine.start("bad_call", BTreeMap::new(), &crm(), None, now);
    assert!(matches!(refused, Err(EngineError::Command(CommandError::InvalidField { .. }))), "{refused:?}");
    assert_eq!(engine.count_instances("bad_call", "running").unwrap(), 0);
    assert_eq!(engine.count_instances("survey", "running").unwrap(), 0);
    // Ids given back: the next case gets the next id, as if nothing had been tried.
    engine.deploy(CALLS_SURVEY, now).unwrap();
    let first = engine.start("visit", school(), &crm(), None, now).unwrap();
    let child = engine.instances("survey", "running", 10).unwrap()[0];
    assert_eq!(child.0, first.id.0 + 1, "the parent and its child took consecutive ids");
    assert_eq!(first.children.values().copied().collect::<Vec<_>>(), [child]);
    assert_eq!(
        engine.instance(child).unwrap().unwrap().parent,
        Some((first.id, *first.children.keys().next().unwrap()))
    );
}

#[test]
fn cancelling_a_parent_cancels_its_sub_process_and_a_cancelled_child_is_an_incident() {
    let engine = Engine::open(Store::temporary().unwrap(), rules()).unwrap();
    let now = bj(2026, 11, 23, 10, 0);
    engine.deploy(SURVEY, now).unwrap();
    engine.deploy(CALLS_SURVEY, now).unwrap();
    let parent = engine.start("visit", school(), &crm(), None, now).unwrap();
    let child = *parent.children.values().next().unwrap();
    let cancelled = engine.command(parent.id, &admin(), Command::Cancel { reason: "withdrawn".into() }, now).unwrap();
    assert!(cancelled.children.is_empty());
    let c = engine.instance(child).unwrap().unwrap();
    assert!(matches!(c.status, Status::Cancelled { .. }), "{:?}", c.status);
    assert!(c.tasks.is_empty());
    assert!(engine.tasks(None, Some("cs_rep"), 10).unwrap().is_empty(), "the child's task left the inbox");

    // The child cancelled on its own: the parent's call step is an incident; retry starts a new one.
    let parent = engine.start("visit", school(), &crm(), None, now).unwrap();
    let child = *parent.children.values().next().unwrap();
    engine.command(child, &admin(), Command::Cancel { reason: "duplicate".into() }, now).unwrap();
    let p = engine.instance(parent.id).unwrap().unwrap();
    assert!(matches!(&p.status, Status::Incident { reason, .. } if reason.contains("cancelled")), "{:?}", p.status);
    let p = engine.command(parent.id, &admin(), Command::Retry, now).unwrap();
    assert_eq!(p.status, Status::Running);
    let again = *p.children.values().next().unwrap();
    assert_ne!(again, child);
    let task = *engine.instance(again).unwrap().unwrap().tasks.keys().next().unwrap();
    let score = [("score".to_string(), Value::Int(5))].into();
    engine.command(again, &admin(), Command::CompleteTask { task, fields: score }, now).unwrap();
    let p = engine.instance(parent.id).unwrap().unwrap();
    assert_eq!(p.status, Status::Completed { outcome: "done".into() });
    assert_eq!(p.fields["satisfaction"], Value::Int(5));
}

#[test]
fn suspended_cases_timers_do_not_hold_up_the_timer_driver() {
    let engine = Engine::open(Store::temporary().unwrap(), rules()).unwrap();
    let start = bj(2026, 11, 23, 10, 0);
    engine.deploy(&complaint_source(), start).unwrap();
    // More suspended cases with due timers than one scan of the driver takes.
    const BATCH: usize = 16;
    let mut suspended = Vec::new();
    for _ in 0..BATCH * 3 {
        let c = engine.start("complaint", fields("high"), &crm(), None, start).unwrap();
        engine.command(c.id, &admin(), Command::Suspend, start).unwrap();
        suspended.push(c.id);
    }
    // A later case, still running, whose deadline falls after theirs.
    let later = start + chrono::Duration::minutes(1);
    let running = engine.start("complaint", fields("high"), &crm(), None, later).unwrap();
    let pending_before = running.timers.len();
    let when = later + chrono::Duration::hours(2);
    for _ in 0..3 {
        engine.fire_due(when, BATCH).unwrap();
    }
    let after = engine.instance(running.id).unwrap().unwrap();
    assert!(
        after.timers.len() < pending_before || after.tasks.values().any(|t| t.overdue),
        "the running case's timers fired"
    );
    // Resuming brings the suspended cases' timers back, and they fire.
    let id = suspended[0];
    let before = engine.instance(id).unwrap().unwrap();
    engine.command(id, &admin(), Command::Resume, when).unwrap();
    engine.fire_due(when, BATCH).unwrap();
    let resumed = engine.instance(id).unwrap().unwrap();
    assert!(resumed.history_len > before.history_len + 1, "its due timers fired after resume");
    assert!(resumed.tasks.values().any(|t| t.overdue));
}

#[test]
fn familiar_by_a_field_gives_the_step_to_whoever_did_it_for_the_same_customer_last_time() {
    let engine = Engine::open(Store::temporary().unwrap(), rules()).unwrap();
    let now = bj(2026, 11, 23, 10, 0);
    let source = r#"
process support {
  source "t"
  fields {
    customer: text "客户" required
  }
  start -> handle
  task handle { assign role cs_rep familiar by customer due 1 workday -> done }
  end done
}
"#;
    engine.deploy(source, now).unwrap();
    let start = |customer: &str| {
        let f: BTreeMap<String, Value> = [("customer".to_string(), Value::Text(customer.into()))].into();
        engine.start("support", f, &crm(), None, now).unwrap()
    };
    let first = start("第一中学");
    let task = first.tasks.values().next().unwrap().clone();
    let usual = task.assignee.clone().unwrap();
    // Someone else handles it this time.
    let other = if usual == "zhang_wei" { "liu_yang" } else { "zhang_wei" };
    engine
        .command(first.id, &admin(), Command::Reassign { task: task.seq, to: other.into(), reason: "t".into() }, now)
        .unwrap();
    let rep = Actor { id: other.into(), roles: vec!["cs_rep".into()], admin: false };
    engine.command(first.id, &rep, Command::CompleteTask { task: task.seq, fields: BTreeMap::new() }, now).unwrap();
    // The same school calls again: the one who handled it gets it, whatever the strategy says.
    let again = start("第一中学");
    assert_eq!(again.tasks.values().next().unwrap().assignee.as_deref(), Some(other));
    // Another school: the role's strategy as usual.
    let new = start("第二中学");
    assert_eq!(new.tasks.values().next().unwrap().assignee.as_deref(), Some(usual.as_str()));
}

#[test]
fn first_contact_resolution_counts_only_cases_resolved_at_the_phone_step() {
    let engine = Engine::open(Store::temporary().unwrap(), rules()).unwrap();
    let t0 = bj(2026, 11, 23, 10, 0);
    engine.deploy(&complaint_source(), t0).unwrap();
    // Each case: the answers given at each task in turn, until it closes.
    let run = |answers: &[&[(&str, Value)]]| {
        let inst = engine.start("complaint", fields("medium"), &crm(), None, t0).unwrap();
        for answer in answers {
            let i = engine.instance(inst.id).unwrap().unwrap();
            let task = *i.tasks.keys().next().unwrap();
            let f = answer.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
            engine.command(inst.id, &admin(), Command::CompleteTask { task, fields: f }, t0).unwrap();
        }
        assert_eq!(engine.instance(inst.id).unwrap().unwrap().status, Status::Completed { outcome: "closed".into() });
    };
    let cause: &[(&str, Value)] = &[("cause", Value::Text("quality".into()))];
    let yes: &[(&str, Value)] = &[("resolved", Value::Bool(true))];
    let no: &[(&str, Value)] = &[("resolved", Value::Bool(false))];
    let satisfied: &[(&str, Value)] = &[("satisfaction", Value::Int(5))];
    // Resolved on the phone.
    run(&[cause, &[], yes, satisfied, &[]]);
    // Not on the phone (resolved stays false: no change of the field), then by the engineer.
    run(&[cause, &[], no, yes, satisfied, &[]]);
    let r = engine.report("complaint", None, None).unwrap();
    assert_eq!(r.by_status["completed"], 2);
    assert_eq!(r.first_contact_resolution_share, Some(0.5), "only the first was resolved at first contact");
}

#[test]
fn sub_cases_are_indexed_and_a_store_of_another_format_is_refused() {
    let dir = TempDir::new("sub-cases");
    let now = bj(2026, 11, 23, 10, 0);
    let child = "process survey {\n  fields {\n    school: text required\n  }\n  start -> ask\n  task ask { assign role cs_rep -> done }\n  end done\n}\n";
    let parent = "process asks_twice {\n  fields {\n    school: text required\n  }\n  start -> both\n  split both -> one, two\n  call one process survey {\n    input school = school\n    -> joined\n  }\n  call two process survey {\n    input school = school\n    -> joined\n  }\n  join joined of both -> done\n  end done\n}\n";
    let id = {
        let engine = engine_at(&dir);
        engine.deploy(child, now).unwrap();
        engine.deploy(parent, now).unwrap();
        let p = engine
            .start("asks_twice", [("school".to_string(), Value::Text("二中".into()))].into(), &crm(), None, now)
            .unwrap();
        let subs = engine.sub_cases(p.id).unwrap();
        assert_eq!(subs.len(), 2);
        assert!(subs.iter().all(|c| c.process == "survey" && c.status == "running"), "{subs:?}");
        p.id
    };
    assert_eq!(engine_at(&dir).sub_cases(id).unwrap().len(), 2, "the index is stored");
    // A store of another layout (or cases and no layout at all) is refused with what it holds:
    // caseflow has never shipped a layout that needs upgrading.
    for format in [Some(3u64), Some(99), None] {
        {
            let engine = engine_at(&dir);
            let mut batch = caseflow_engine::store::Batch::default();
            match format {
                Some(f) => batch.insert(b"m/format".to_vec(), f.to_be_bytes().to_vec()),
                None => batch.remove(b"m/format".to_vec()),
            }
            engine.store().write_now(batch).unwrap();
        }
        let options = StoreOptions { durability: Durability::Flush, ..StoreOptions::default() };
        let refused = Engine::open(Store::open(&dir.0, &options).unwrap(), rules()).err().expect("refused");
        let found = format.unwrap_or(0);
        assert!(matches!(refused, EngineError::UnknownFormat { found: f, .. } if f == found), "{refused}");
        assert!(refused.to_string().contains(&format!("format {found}")), "{refused}");
        let mut batch = caseflow_engine::store::Batch::default();
        batch.insert(b"m/format".to_vec(), 4u64.to_be_bytes().to_vec());
        Store::open(&dir.0, &options).unwrap().write_now(batch).unwrap();
    }
}

/// Round robin is a rotation the engine keeps, not the core: a start the core refuses moves it
/// on for no one, and a restart carries it on where it was.
#[test]
fn round_robin_rotation_skips_no_one_and_survives_a_restart() {
    const ROTATION: &str = r#"process rotation "轮转" {
  fields { note: text "备注" required }
  start -> handle
  task handle "处理" {
    assign role cs_rep by round_robin
    -> done
  }
  end done
}"#;
    let dir = TempDir::new("round-robin");
    let now = bj(2026, 11, 23, 10, 0);
    let note = |n: &str| BTreeMap::from([("note".to_string(), Value::Text(n.into()))]);
    let assignee = |engine: &Engine<Store>, fields| {
        let inst = engine.start("rotation", fields, &crm(), None, now).unwrap();
        inst.tasks.values().next().and_then(|t| t.assignee.clone()).expect("a member is on duty")
    };
    let (first, second, refused_then) = {
        let engine = engine_at(&dir);
        engine.deploy(ROTATION, now).unwrap();
        let first = assignee(&engine, note("1"));
        let second = assignee(&engine, note("2"));
        let refused = engine.start("rotation", BTreeMap::new(), &crm(), None, now).unwrap_err();
        assert!(matches!(refused, EngineError::Command(CommandError::InvalidField { .. })), "{refused}");
        (first, second, assignee(&engine, note("3")))
    };
    assert_ne!(first, second, "the rotation moves on");
    let mut order = vec![first.clone(), second.clone(), refused_then.clone()];
    // After a restart the rotation continues: the members come round in the same order.
    let engine = engine_at(&dir);
    for i in 3..7 {
        order.push(assignee(&engine, note(&i.to_string())));
    }
    // Members on duty at 10:00 (one of the three is away).
    let members = order.iter().collect::<std::collections::BTreeSet<_>>().len();
    assert_eq!(members, 2, "{order:?}");
    for i in members..order.len() {
        assert_eq!(order[i], order[i - members], "position {i} of {order:?}: the rotation went on as it was");
    }
    assert_ne!(refused_then, second, "the refused start took no one's turn");
}

/// A recording reads what people did from the acts stored on the history's entries, not from
/// the entries' text: with every entry's detail blanked it finds the same actions, answers
/// included.
#[test]
fn recordings_read_acts_from_the_entries_not_their_text() {
    use caseflow_core::case::{Act, HistoryEntry, InstanceId};
    let engine = Engine::open(caseflow_engine::MemoryStore::new(), rules()).unwrap();
    let now = bj(2026, 11, 23, 10, 0);
    engine.deploy(&complaint_source(), now).unwrap();
    let inst = engine.start("complaint", fields("medium"), &crm(), None, now).unwrap();
    let receive = inst.tasks.values().next().unwrap().seq;
    let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
    let answers: BTreeMap<String, Value> = [("cause".to_string(), Value::Text("quality".into()))].into();
    engine.command(inst.id, &admin, Command::CompleteTask { task: receive, fields: answers.clone() }, now).unwrap();
    let verify = engine.instance(inst.id).unwrap().unwrap().tasks.values().next().unwrap().seq;
    let to = Command::Reassign { task: verify, to: "zhang_wei".into(), reason: "on leave".into() };
    engine.command(inst.id, &admin, to, now).unwrap();
    let entries: Vec<(usize, HistoryEntry)> =
        engine.history(InstanceId(inst.id.0)).unwrap().into_iter().map(|e| (0, e)).collect();
    let blanked: Vec<(usize, HistoryEntry)> =
        entries.iter().cloned().map(|(n, e)| (n, HistoryEntry { detail: "…".into(), ..e })).collect();
    let read = |entries: &[(usize, HistoryEntry)]| -> Vec<(Act, String, BTreeMap<String, Value>)> {
        caseflow_engine::scenario::actions_of(entries).actions.into_iter().map(|a| (a.act, a.by, a.values)).collect()
    };
    assert_eq!(read(&blanked), read(&entries));
    assert_eq!(
        read(&entries),
        [
            (Act::Complete { step: "receive".into() }, "admin".to_string(), answers),
            (
                Act::Reassign { step: "verify".into(), to: "zhang_wei".into(), reason: "on leave".into() },
                "admin".to_string(),
                BTreeMap::new()
            ),
        ]
    );
}

/// A store in memory with a fault armed in its writes, for what a database can answer.
struct Faulty {
    inner: caseflow_engine::MemoryStore,
    /// Says it is shared (claims matter, timers fire in groups), as PostgreSQL does.
    shared: bool,
    /// The next write is applied, then answered "outcome unknown" (a connection that broke
    /// with the COMMIT sent).
    unknown_next: std::sync::atomic::AtomicBool,
    /// The next this-many batches carrying several claimed timers are refused as if a case in
    /// them had changed; `groups` counts every such batch.
    refuse_groups: std::sync::atomic::AtomicUsize,
    groups: std::sync::atomic::AtomicUsize,
    /// The next `get_many`, once it has read, says so on the first channel and waits on the
    /// second before it answers.
    pause_after_read: std::sync::Mutex<Option<(std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>)>>,
}

impl Faulty {
    fn new(shared: bool) -> Faulty {
        Faulty {
            inner: caseflow_engine::MemoryStore::new(),
            shared,
            unknown_next: false.into(),
            refuse_groups: 0.into(),
            groups: 0.into(),
            pause_after_read: std::sync::Mutex::new(None),
        }
    }
}

impl Storage for Faulty {
    type Scan<'a> = <caseflow_engine::MemoryStore as Storage>::Scan<'a>;

    fn write(&self, batch: caseflow_engine::storage::Batch) -> Result<caseflow_engine::storage::Ticket, StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        if batch.claims().len() > 1 {
            self.groups.fetch_add(1, SeqCst);
            if self.refuse_groups.fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Err(StoreError::Conflict("a case of the group changed meanwhile".into()));
            }
        }
        let ticket = self.inner.write(batch)?;
        match self.unknown_next.swap(false, SeqCst) {
            true => Err(StoreError::OutcomeUnknown("the connection broke with the commit sent".into())),
            false => Ok(ticket),
        }
    }
    fn wait_durable(&self, ticket: caseflow_engine::storage::Ticket) -> Result<(), StoreError> {
        self.inner.wait_durable(ticket)
    }
    fn when_durable(
        &self,
        ticket: caseflow_engine::storage::Ticket,
        done: Box<dyn FnOnce(Result<(), StoreError>) + Send>,
    ) {
        self.inner.when_durable(ticket, done)
    }
    fn get(&self, key: &[u8]) -> Result<Option<caseflow_engine::storage::Bytes>, StoreError> {
        self.inner.get(key)
    }
    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<caseflow_engine::storage::Bytes>>, StoreError> {
        let values = self.inner.get_many(keys)?;
        let pause = self.pause_after_read.lock().unwrap().take();
        if let Some((read, resume)) = pause {
            read.send(()).unwrap();
            resume.recv().unwrap();
        }
        Ok(values)
    }
    fn scan_prefix(&self, prefix: &[u8]) -> Self::Scan<'_> {
        self.inner.scan_prefix(prefix)
    }
    fn range(&self, from: &[u8], to: &[u8]) -> Self::Scan<'_> {
        self.inner.range(from, to)
    }
    fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush()
    }
    fn check_health(&self) -> Option<String> {
        self.inner.check_health()
    }
    // Register numbers are not the write that fails.
    fn take_number(&self, key: &[u8]) -> Result<u64, StoreError> {
        self.inner.take_number(key)
    }
    fn shared(&self) -> bool {
        self.shared
    }
    fn claim(
        &self,
        from: &[u8],
        to: &[u8],
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<caseflow_engine::storage::Claim, StoreError> {
        self.inner.claim(from, to, limit, lease)
    }
    fn renew(&self, claim: &caseflow_engine::storage::Claim, lease: std::time::Duration) -> Result<usize, StoreError> {
        self.inner.renew(claim, lease)
    }
    fn release(&self, claim: &caseflow_engine::storage::Claim) -> Result<(), StoreError> {
        self.inner.release(claim)
    }
}

/// A start whose write was applied but answered "outcome unknown" keeps its id: the next start
/// takes another, and the first case is not replaced (the id was once given back and the next
/// case written over it, so that a client retrying with its key got someone else's case).
#[test]
fn a_start_whose_outcome_is_unknown_keeps_its_id_and_its_case() {
    let engine = Engine::open(Faulty::new(false), rules()).unwrap();
    engine.deploy(&complaint_source(), bj(2026, 11, 23, 9, 0)).unwrap();
    let start = |customer: &str| {
        let mut f = fields("low");
        f.insert("customer".into(), Value::Text(customer.into()));
        engine.start("complaint", f, &crm(), None, bj(2026, 11, 23, 10, 0))
    };
    let first = start("第一中学").unwrap();
    engine.store().unknown_next.store(true, std::sync::atomic::Ordering::SeqCst);
    let unknown = start("第二中学").expect_err("answered outcome unknown");
    assert!(matches!(unknown, EngineError::Store(StoreError::OutcomeUnknown(_))), "{unknown}");
    let third = start("第三中学").unwrap();
    let applied = caseflow_core::case::InstanceId(first.id.0 + 1);
    assert_ne!(third.id, applied, "the id of a start that may have been applied is not given again");
    let kept = engine.instance(applied).unwrap().expect("the start was applied");
    assert_eq!(kept.fields["customer"], Value::Text("第二中学".into()), "and its case is its own");
}

/// On a shared store, due timers fire in groups, one write each; a group refused (a case in it
/// changed meanwhile) is fired again one timer at a time, and every timer fires exactly once.
#[test]
fn a_refused_group_of_timers_is_fired_one_by_one_and_each_timer_once() {
    let store = Faulty::new(true);
    store.refuse_groups.store(3, std::sync::atomic::Ordering::SeqCst);
    let engine = Engine::open(store, rules()).unwrap();
    engine.deploy(&complaint_source(), bj(2026, 11, 23, 9, 0)).unwrap();
    let ids: Vec<_> = (0..40)
        .map(|_| engine.start("complaint", fields("high"), &crm(), None, bj(2026, 11, 23, 10, 0)).unwrap().id)
        .collect();
    let mut fired = 0;
    loop {
        let n = engine.fire_due(bj(2026, 11, 23, 12, 0), 10_000).unwrap();
        if n == 0 {
            break;
        }
        fired += n;
    }
    // Each case's deadline and its escalation: two timers, due by noon.
    assert_eq!(fired, 80);
    let store = engine.store();
    assert_eq!(store.refuse_groups.load(std::sync::atomic::Ordering::SeqCst), 0, "groups were refused");
    assert!(store.groups.load(std::sync::atomic::Ordering::SeqCst) > 3, "and others written whole");
    for id in ids {
        let overdue = engine.history(id).unwrap().iter().filter(|h| h.event == "task_overdue").count();
        assert_eq!(overdue, 1, "case {id}");
    }
}
