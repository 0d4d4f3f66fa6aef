//! Control flow of any accepted graph: ends inside splits, multi-choice and first-wins joins,
//! four eyes, interrupts, tasks for each item, kept messages, escalation chains, and random
//! generated graphs run soundly under random commands.

use caseflow_core::case::*;
use caseflow_core::value::Value;
use caseflow_dsl::{compile, CheckContext};
use chrono::Duration;
use std::collections::BTreeMap;

mod common;
use common::*;
mod support;
use support::{branches_conserved, FlowGen};

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
        let mut c = Case::new(model, at, "g-1");
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
            if let Err(broken) = history_invariants(&c.inst, &c.history)
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
        CommandKind::StartWork => Command::StartWork { task },
        CommandKind::SaveDraft => Command::SaveDraft { task, fields: BTreeMap::new() },
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
    assert_eq!(allowed_somewhere, 11 + 6 * 3 + 1 + 1, "the table's shape");
}
