//! Random accepted graphs, sub-processes included, run through the whole engine (sled in
//! temporary files): after every command, every case keeps the core's invariants and token
//! conservation, a sub-process case runs exactly while its parent waits for it, a refused
//! command changes no case, and in the end no due timer is left unfired however small the
//! driver's batch.

#[path = "../core/tests/support/mod.rs"]
mod support;

use caseflow_core::case::{self, Actor, Command, Instance, InstanceId, Status, Waiting};
use caseflow_core::value::Value;
use caseflow_engine::{Engine, EngineError, MemoryStore};
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::collections::BTreeMap;
use support::{branches_conserved, FlowGen, CALLEES};

use caseflow_tests::shipped_rules as rules;

fn all_cases(engine: &Engine<MemoryStore>) -> Vec<Instance> {
    (1..).map_while(|id| engine.instance(InstanceId(id)).unwrap()).collect()
}

/// Every case's invariants, and the links between parents and children.
fn check_cases(engine: &Engine<MemoryStore>) -> Result<(), String> {
    let cases = all_cases(engine);
    for inst in &cases {
        let def = engine.definition(&inst.process, Some(inst.version)).ok_or("no definition")?;
        case::invariants(&def.model, inst).map_err(|e| format!("case {}: {e}", inst.id))?;
        branches_conserved(&def.model, inst).map_err(|e| format!("case {}: {e}", inst.id))?;
        for (token, child) in &inst.children {
            let c =
                cases.iter().find(|c| c.id == *child).ok_or(format!("case {} waits for a missing child", inst.id))?;
            if c.status.is_ended() {
                return Err(format!("case {} waits (token {token}) for child {child}, which ended", inst.id));
            }
            if c.parent.map(|p| p.0) != Some(inst.id) {
                return Err(format!("child {child} does not name {} as its parent", inst.id));
            }
        }
        if let Some((parent, token)) = inst.parent {
            let p = cases.iter().find(|c| c.id == parent).ok_or("a missing parent")?;
            let waits = p.tokens.get(&token).is_some_and(|t| t.waiting == Waiting::Child)
                && p.children.get(&token) == Some(&inst.id);
            if !inst.status.is_ended() && !waits {
                return Err(format!(
                    "case {} runs for parent {parent}, which no longer waits for it ({:?})",
                    inst.id, p.status
                ));
            }
        }
    }
    Ok(())
}

#[test]
fn every_accepted_graph_with_sub_processes_runs_soundly_through_the_engine() {
    let graphs: u64 = std::env::var("GRAPH_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
    let (mut accepted, mut children, mut refused) = (0, 0, 0);
    for seed in 0..graphs {
        let source = FlowGen::source(seed, true);
        let mut files: Vec<caseflow_dsl::SourceFile> = CALLEES
            .iter()
            .enumerate()
            .map(|(i, t)| caseflow_dsl::SourceFile { name: format!("{i}.flow"), text: t.to_string() })
            .collect();
        files.push(caseflow_dsl::SourceFile { name: "g.flow".into(), text: source.clone() });
        if caseflow_dsl::check_files(&files, Some(&rules().catalog()))[2].checked.process.is_none() {
            continue;
        }
        accepted += 1;
        let engine = Engine::open(MemoryStore::new(), rules()).unwrap();
        let mut now: DateTime<Utc> =
            chrono_tz::Asia::Shanghai.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap().with_timezone(&Utc);
        for r in engine.deploy_together(&files, now).unwrap() {
            r.unwrap_or_else(|e| panic!("seed {seed}: {e:?}\n{source}"));
        }
        let root = engine
            .start("g", BTreeMap::new(), &admin, None, now)
            .unwrap_or_else(|e| panic!("seed {seed}: {e}\n{source}"))
            .id;
        let mut rng = FlowGen::choices(seed);
        for _ in 0..60 {
            let before = all_cases(&engine);
            let result = match rng.pick(9) {
                0..=3 => {
                    let open: Vec<(InstanceId, u32)> =
                        before.iter().flat_map(|c| c.tasks.keys().map(move |t| (c.id, *t))).collect();
                    match open.get(rng.pick(open.len().max(1))) {
                        Some((id, task)) => {
                            let x = [("x".to_string(), Value::Bool(rng.pick(2) == 0))].into();
                            engine.command(*id, &admin, Command::CompleteTask { task: *task, fields: x }, now).map(drop)
                        }
                        None => Ok(()),
                    }
                }
                4 | 5 => {
                    now += Duration::minutes(rng.pick(240) as i64);
                    // A small batch: every due timer must still be reached.
                    engine.fire_due(now, 2).map(drop)
                }
                6 => {
                    let name = if rng.pick(4) == 0 { "stop" } else { "ping" };
                    engine.command(root, &admin, Command::Message { name: name.into() }, now).map(drop)
                }
                7 => {
                    let cmd = [Command::Suspend, Command::Resume, Command::Retry][rng.pick(3)].clone();
                    engine.command(root, &admin, cmd, now).map(drop)
                }
                _ => {
                    // A child case cancelled on its own, now and then.
                    match before.iter().filter(|c| c.parent.is_some() && !c.status.is_ended()).nth(rng.pick(3)) {
                        Some(c) => engine.command(c.id, &admin, Command::Cancel { reason: "t".into() }, now).map(drop),
                        None => Ok(()),
                    }
                }
            };
            if let Err(e) = &result {
                if matches!(e, EngineError::Command(case::CommandError::Invariant(_))) {
                    panic!("seed {seed}: {e}\n{source}");
                }
                refused += 1;
                assert_eq!(all_cases(&engine), before, "seed {seed}: a refused command ({e}) changed a case\n{source}");
            }
            if let Err(broken) = check_cases(&engine) {
                panic!("seed {seed}: {broken}\n{source}");
            }
        }
        children += all_cases(&engine).iter().filter(|c| c.parent.is_some()).count();
        // No timer starves: far ahead, small batches, until nothing is due.
        now += Duration::days(60);
        for _ in 0..10_000 {
            if engine.fire_due(now, 2).unwrap() == 0 {
                break;
            }
        }
        for c in all_cases(&engine).iter().filter(|c| c.status == Status::Running) {
            let late: Vec<_> = c.timers.values().filter(|t| t.due_at <= now).collect();
            assert!(late.is_empty(), "seed {seed}: case {} has due timers left unfired: {late:?}\n{source}", c.id);
        }
    }
    eprintln!("{accepted} of {graphs} graphs accepted; {children} sub-process cases; {refused} commands refused");
    assert!(accepted * 4 >= graphs as usize && children >= 50 && refused >= 50, "the generator lost its reach");
}
