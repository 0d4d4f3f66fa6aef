//! The scenario files, run by the same code as `caseflow test` (`caseflow_engine::scenario`):
//! - `processes/tests/PROCESS/*.toml` walk cases of the shipped processes under the shipped
//!   rules; coverage must be 100%: every step, decision arm, reminder, missed deadline and
//!   escalation of each process, and a cancellation;
//! - `tests/patterns/PROCESS/*.toml` walk the small processes of `tests/patterns/*.flow` that
//!   show one workflow pattern each (`docs/patterns.md`); coverage counts steps and arms.
//!
//! - `tests/migrations/PROCESS/*.toml` start cases on version 1 and migrate them to later
//!   versions kept beside the scenarios.
//!
//! Every scenario runs on the in-memory storage and on sled: the same walk must give the same
//! result on both (a differential test of the `Storage` contract).

use caseflow_engine::scenario::{self, ScenarioFile, Setup};
use caseflow_engine::storage::postgres::{PgOptions, PgStore};
use caseflow_engine::{MemoryStore, Store};
use caseflow_tests::*;
use std::collections::BTreeSet;

fn pattern_processes() -> Vec<caseflow_dsl::SourceFile> {
    files("tests/patterns", "flow").into_iter().map(|p| source_file(&p)).collect()
}

#[test]
fn scenarios() {
    run_folder("processes/tests", shipped_processes(), true);
}

#[test]
fn pattern_scenarios() {
    run_folder("tests/patterns", pattern_processes(), false);
}

/// `tests/migrations/PROCESS/*.toml`: cases started on version 1 of `tests/migrations/PROCESS.flow`
/// deploy a later version from their folder and migrate (a renamed step, a removed step with a
/// mapping, a case inside a parallel split, a case waiting on a timer, a new required field).
#[test]
fn migration_scenarios() {
    let processes = files("tests/migrations", "flow").into_iter().map(|p| source_file(&p)).collect();
    run_folder("tests/migrations", processes, false);
}

/// Runs every scenario under `folder/PROCESS/`, then checks the coverage of those processes.
fn run_folder(folder: &str, processes: Vec<caseflow_dsl::SourceFile>, full: bool) {
    let setup = Setup::new(processes, shipped_rules()).unwrap_or_else(|e| panic!("{}", e.join("\n")));
    let dir = root().join(folder);
    let mut folders: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    folders.sort();
    assert!(!folders.is_empty(), "no scenario folders in {folder}");
    let mut failures = Vec::new();
    let mut reached = BTreeSet::new();
    let mut count = 0;
    // Every scenario runs on PostgreSQL too, each on an emptied database.
    let postgres = caseflow_tests::postgres_database(&format!("scenarios_{}", folder.replace('/', "_")));
    let on_postgres = |file: &ScenarioFile| {
        postgres.as_ref().map(|url| {
            let store = PgStore::connect(&PgOptions::new(url.as_str())).unwrap();
            store.clear().unwrap();
            scenario::run(&setup, file, store)
        })
    };
    for p in &folders {
        let rel = p.strip_prefix(root()).unwrap().display().to_string();
        for path in files(&rel, "toml") {
            count += 1;
            let name = path.strip_prefix(root()).unwrap().display().to_string();
            let file =
                ScenarioFile { name: name.clone(), text: read(&path), dir: path.parent().map(|d| d.to_path_buf()) };
            let on_memory = scenario::run(&setup, &file, MemoryStore::new());
            let on_sled = scenario::run(&setup, &file, Store::temporary().unwrap());
            if let Some(on_postgres) = on_postgres(&file) {
                match &on_postgres.failure {
                    None if on_postgres.reached == on_memory.reached => {}
                    None => failures.push(format!("{name}: memory and PostgreSQL storage reached different steps")),
                    Some(f) => failures.push(format!("{name} (PostgreSQL): {f:?}\n{}", on_postgres.log.join("\n"))),
                }
            }
            match (&on_memory.failure, &on_sled.failure) {
                (None, None) if on_memory.reached == on_sled.reached => reached.extend(on_memory.reached),
                (None, None) => failures.push(format!("{name}: memory and sled storage reached different steps")),
                (Some(f), _) => failures.push(format!("{name} (memory storage): {f:?}\n{}", on_memory.log.join("\n"))),
                (_, Some(f)) => failures.push(format!("{name} (sled storage): {f:?}\n{}", on_sled.log.join("\n"))),
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
    let names: Vec<String> = folders.iter().map(|p| p.file_name().unwrap().to_string_lossy().to_string()).collect();
    for n in &names {
        assert!(setup.models().contains_key(n), "{folder}/{n} names no process");
    }
    let report = scenario::coverage(names.iter().map(String::as_str), setup.models(), &reached, full);
    let missing: Vec<String> =
        report.iter().flat_map(|c| c.missing.iter().map(move |m| format!("{}: {m}", c.process))).collect();
    eprintln!("{count} scenarios passed");
    assert!(missing.is_empty(), "not reached by any scenario (coverage must be 100%):\n{}", missing.join("\n"));
}

/// `caseflow test --record`: every shipped scenario's case, recorded from its history and
/// replayed under the same processes and rules, passes, and reaches the same steps. (Not the
/// scenarios with earlier cases: a recording carries one case and its sub-process cases.)
#[test]
fn recorded_cases_replay_to_the_same_history() {
    let setup = Setup::new(shipped_processes(), shipped_rules()).unwrap();
    let mut failures = Vec::new();
    let mut recorded = 0;
    for folder in std::fs::read_dir(root().join("processes/tests")).unwrap() {
        let folder = folder.unwrap().path();
        let rel = folder.strip_prefix(root()).unwrap().display().to_string();
        for path in files(&rel, "toml") {
            let name = path.strip_prefix(root()).unwrap().display().to_string();
            let file =
                ScenarioFile { name: name.clone(), text: read(&path), dir: path.parent().map(|d| d.to_path_buf()) };
            if file.text.contains("[[earlier]]") {
                continue; // its path depends on other cases, which a recording does not carry
            }
            let (outcome, case) = scenario::run_keeping(&setup, &file, MemoryStore::new());
            assert!(outcome.passed(), "{name}: {:?}", outcome.failure);
            let Some((engine, id)) = case else { continue }; // a refused start leaves no case
            let text = scenario::record(&engine, id).unwrap();
            recorded += 1;
            let replay = ScenarioFile { name: format!("{name} (recorded)"), text: text.clone(), dir: None };
            let again = scenario::run(&setup, &replay, MemoryStore::new());
            match &again.failure {
                Some(f) => failures.push(format!("{name}: {f:?}\n--- recorded\n{text}")),
                None if again.reached != outcome.reached => {
                    failures.push(format!("{name}: the replay reached other steps\n--- recorded\n{text}"))
                }
                None => {}
            }
        }
    }
    assert!(recorded > 50, "only {recorded} cases recorded");
    assert!(
        failures.is_empty(),
        "{} of {recorded} recordings do not replay:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
