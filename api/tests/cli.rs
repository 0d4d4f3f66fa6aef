//! The `caseflow` binary as a process owner uses it: exit codes, outputs, files touched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use chrono::TimeZone;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("api/ sits in the root").to_path_buf()
}

fn caseflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caseflow")).args(args).current_dir(root()).output().expect("runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn check_of_shipped_processes_is_clean() {
    let out = caseflow(&["check", "processes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("0 errors, 0 warnings"), "{}", text(&out.stderr));
}

#[test]
fn check_reports_errors_with_location_and_exit_1() {
    let out = caseflow(&["check", "tests/diagnostics/unknown_step.flow"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("error[FLOW011]: there is no step named `recieve`"), "{err}");
    assert!(err.contains("tests/diagnostics/unknown_step.flow:3:12"), "{err}");
    assert!(err.contains("did you mean `receive`?"), "{err}");
}

#[test]
fn warnings_do_not_fail_a_check() {
    let out = caseflow(&["check", "tests/diagnostics/warnings.flow"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("0 errors, 3 warnings"));
}

#[test]
fn check_json_is_machine_readable() {
    let out = caseflow(&["check", "--format", "json", "tests/diagnostics/unknown_step.flow"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let first = &v[0];
    assert_eq!(first["code"], "FLOW011");
    assert_eq!(first["severity"], "error");
    assert_eq!(first["start"]["line"], 3);
    assert_eq!(first["start"]["column"], 12);
}

#[test]
fn missing_path_is_a_usage_error() {
    let out = caseflow(&["check", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no/such/dir does not exist"));
}

#[test]
fn graph_prints_dot_and_mermaid() {
    let dot = caseflow(&["graph", "processes/complaint.flow"]);
    assert!(dot.status.success());
    let dot = text(&dot.stdout);
    assert!(dot.starts_with("digraph {"), "{dot}");
    assert!(dot.contains("接收并登记") && dot.contains("label=\"else\""), "{dot}");
    assert!(dot.contains("⚠ overdue: escalate to role cs_manager"), "{dot}");
    assert!(dot.contains("escalate to manager of assignee"), "{dot}");
    let mermaid = caseflow(&["graph", "--format", "mermaid", "processes/complaint.flow"]);
    let mermaid = text(&mermaid.stdout);
    assert!(mermaid.starts_with("flowchart TD"), "{mermaid}");
    assert!(mermaid.contains("s_phone_resolution -->|\"resolved\"| s_feedback"), "{mermaid}");
    // A broken file gets diagnostics, not a diagram.
    let broken = caseflow(&["graph", "tests/diagnostics/unknown_step.flow"]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(broken.stdout.is_empty());
    // A process with a `call`, alone in its folder: drawn, its call unchecked, with a warning.
    let dir = std::env::temp_dir().join(format!("caseflow-graph-alone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(root().join("processes/repair.flow"), dir.join("repair.flow")).unwrap();
    let alone = caseflow(&["graph", "--format", "mermaid", dir.join("repair.flow").to_str().unwrap()]);
    assert!(alone.status.success(), "{}", text(&alone.stderr));
    assert!(text(&alone.stdout).contains("post_repair_callback"), "{}", text(&alone.stdout));
    assert!(text(&alone.stderr).contains("warning: drawn without checking its calls"), "{}", text(&alone.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fmt_rewrites_in_place_and_check_mode_reports() {
    let dir = std::env::temp_dir().join(format!("caseflow-fmt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("messy.flow");
    std::fs::write(&file, "process p{source \"t\" # why\nstart->done end done}").expect("write");
    let path = file.to_str().expect("utf-8 path");
    assert_eq!(caseflow(&["fmt", "--check", path]).status.code(), Some(1));
    assert!(caseflow(&["fmt", path]).status.success());
    let formatted = std::fs::read_to_string(&file).expect("read");
    assert_eq!(formatted, "process p {\n  source \"t\"  # why\n\n  start -> done\n\n  end done\n}\n");
    assert!(caseflow(&["fmt", "--check", path]).status.success());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn rules_check_warns_of_values_and_tables_no_process_uses() {
    let dir = std::env::temp_dir().join(format!("caseflow-unused-rules-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for e in std::fs::read_dir(root().join("rules")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    let values = dir.join("values.toml");
    let mut text = std::fs::read_to_string(&values).unwrap();
    text = text.replace("[values]\n", "[values]\nforgotten_window = \"2 workdays\"\n");
    std::fs::write(&values, text).unwrap();
    let out = caseflow(&["rules", "check", dir.to_str().unwrap()]);
    let err = text_of(&out);
    assert!(out.status.success(), "a warning, not a failure: {err}");
    assert!(err.contains("warning: value `forgotten_window` is used by no process"), "{err}");
    assert!(!err.contains("`escalation_delay` is used by no process"), "the complaint process reads it: {err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn text_of(out: &Output) -> String {
    text(&out.stderr)
}

#[test]
fn diff_shows_what_changed_between_two_versions_as_written() {
    let out = caseflow(&["diff", "processes/complaint.flow", "tests/diff/complaint_v2.new.flow"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for line in [
        "+ field `region: text \"地区\"`",
        "+ task onsite_visit",
        "- task remote_assistance",
        "~ step file renamed to archive",
        "    ~ deadline: `due 1 workday` → `due 2 workdays`",
    ] {
        assert!(shown.lines().any(|l| l == line), "no `{line}` in:\n{shown}");
    }
    let json = caseflow(&["diff", "processes/complaint.flow", "tests/diff/complaint_v2.new.flow", "--format", "json"]);
    let d: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(d["steps_renamed"][0], serde_json::json!({"from": "file", "to": "archive"}));
    let same = caseflow(&["diff", "processes/complaint.flow", "processes/complaint.flow"]);
    assert_eq!(text(&same.stdout), "no structural change\n");
    // Two different processes are not two versions of one.
    let other = caseflow(&["diff", "processes/complaint.flow", "processes/repair.flow"]);
    assert_eq!(other.status.code(), Some(1));
    assert!(text(&other.stderr).contains("compare two versions of one process"), "{}", text(&other.stderr));
    // A version that does not parse is reported where it breaks.
    let broken = caseflow(&["diff", "processes/complaint.flow", "tests/diagnostics/syntax_bad_escape.flow"]);
    assert_eq!(broken.status.code(), Some(1));
    assert!(text(&broken.stderr).contains("tests/diagnostics/syntax_bad_escape.flow:"), "{}", text(&broken.stderr));
}

/// `caseflow rules check DIR --against DATA_DIR`: what candidate rules would do to the open
/// work of a stopped server's data directory, compared with the rules in force there (those it
/// recorded), nothing applied; with `--format json` the very report the HTTP dry run gives for
/// the same candidate (`Engine::rules_impact` under the rules in force).
#[test]
fn rules_check_against_a_data_directory_reports_the_impact_and_applies_nothing() {
    use caseflow_core::case::Actor;
    use caseflow_core::value::Value;
    use caseflow_engine::clock::{Clock, SystemClock};
    use caseflow_engine::{Durability, Engine, Store, StoreOptions};
    let tmp = std::env::temp_dir().join(format!("caseflow-cli-against-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (data, rules) = (tmp.join("data"), tmp.join("rules"));
    std::fs::create_dir_all(&rules).unwrap();
    let today = SystemClock.now().with_timezone(&chrono_tz::Asia::Shanghai).date_naive();
    for entry in std::fs::read_dir(root().join("rules")).unwrap() {
        let path = entry.unwrap().path();
        let mut text = std::fs::read_to_string(&path).unwrap();
        // The high-urgency response time from 10 to 5 minutes; the manager away today.
        text = text.replace("high = \"10min\"", "high = \"5min\"");
        if path.ends_with("people.toml") {
            text.push_str(&format!(
                "\n[[away]]\nuser = \"li_na\"\nfrom = {today}\nto = {today}\nstand_in = \"zhao_min\"\n"
            ));
        }
        std::fs::write(rules.join(path.file_name().unwrap()), text).unwrap();
    }
    let options = StoreOptions { durability: Durability::Flush, ..StoreOptions::default() };
    let bj = |h| chrono_tz::Asia::Shanghai.with_ymd_and_hms(2026, 11, 23, h, 0, 0).unwrap().with_timezone(&chrono::Utc);
    let candidate =
        caseflow_engine::RuleSet::load(&caseflow_engine::read_rules_dir(&rules).unwrap()).expect("candidate loads");
    let (due_before, fresh_assignee, served) = {
        let engine = Engine::open(Store::open(&data, &options).unwrap(), caseflow_tests::shipped_rules()).unwrap();
        engine.record_rules_files(&caseflow_engine::read_rules_dir(&root().join("rules")).unwrap()).unwrap();
        engine.deploy(&std::fs::read_to_string(root().join("processes/complaint.flow")).unwrap(), bj(10)).unwrap();
        let crm = Actor { id: "crm".into(), roles: vec![], admin: false };
        let start = |urgency: &str, at| {
            let fields =
                [("customer", "第一中学"), ("contact", "138"), ("content", "投影仪无法开机"), ("urgency", urgency)]
                    .iter()
                    .map(|(k, v)| (k.to_string(), Value::Text(v.to_string())))
                    .collect();
            engine.start("complaint", fields, &crm, None, at).unwrap()
        };
        // One complaint left overdue on a Monday morning: escalated to the manager, li_na.
        let escalated = start("high", bj(10));
        engine.fire_due(bj(11), 100).unwrap();
        let escalated = engine.instance(escalated.id).unwrap().unwrap();
        assert_eq!(escalated.tasks.values().next().unwrap().assignee.as_deref(), Some("li_na"));
        // One fresh: its deadline moves if recomputed.
        let now = SystemClock.now();
        let inst = start("high", now);
        // What the server's dry run answers for this candidate (recompute or not).
        let served =
            [false, true].map(|r| serde_json::to_value(engine.rules_impact(&candidate, r, now).unwrap()).unwrap());
        let fresh = inst.tasks.values().next().unwrap();
        (fresh.due_at, fresh.assignee.clone(), served)
    };
    let (rules_arg, data_arg) = (rules.display().to_string(), data.display().to_string());
    let check = |extra: &[&str]| {
        let mut args = vec!["rules", "check", &rules_arg, "--processes", "processes", "--against", &data_arg];
        args.extend(extra);
        let out = caseflow(&args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let shown = check(&["--recompute"]);
    // The fresh complaint goes to a representative on duty now, or, outside their hours, to
    // the fallback, li_na: the wall clock decides (the CLI's "today" is today).
    let taken_off = 1 + usize::from(fresh_assignee.as_deref() == Some("li_na"));
    let taken_off = format!("  tasks at complaint.receive whose assignee these rules take off them: {taken_off}");
    for line in [
        "  open cases: 2, open tasks: 2",
        "  deadlines that would move: 2",
        "  by minutes: earliest -5, median -5, latest -5",
        "  moved at complaint.receive: 2",
        &taken_off,
        // The overdue complaint escalated to her is hers too.
        "    task 1-2 (complaint.receive): li_na is away today",
    ] {
        assert!(shown.lines().any(|l| l == line), "no `{line}` in:\n{shown}");
    }
    // Without --recompute, as applying without recompute: no deadline moves.
    let shown = check(&[]);
    assert!(shown.contains("deadlines: none moves"), "{shown}");
    // The same report as the server's dry run, both ways.
    for (i, extra) in [&["--format", "json"][..], &["--format", "json", "--recompute"][..]].iter().enumerate() {
        let offline: serde_json::Value = serde_json::from_str(&check(extra)).unwrap();
        assert_eq!(offline, served[i], "offline and served reports differ");
    }
    // Nothing was applied: the case keeps its deadline.
    let engine = Engine::open(Store::open(&data, &options).unwrap(), caseflow_tests::shipped_rules()).unwrap();
    let inst = engine.instance(caseflow_core::case::InstanceId(2)).unwrap().unwrap();
    assert_eq!(inst.tasks.values().next().unwrap().due_at, due_before);
    drop(engine);
    // A folder that is not a data directory is refused, and nothing is created in it.
    let out = caseflow(&["rules", "check", &rules_arg, "--processes", "processes", "--against", &rules_arg]);
    assert_eq!(out.status.code(), Some(2), "an error, not a failed check");
    assert!(text(&out.stderr).contains("holds no caseflow store"), "{}", text(&out.stderr));
    assert!(!rules.join("db").exists());
    let _ = std::fs::remove_dir_all(&tmp);
}

/// A scenario saved in GBK fails alone, naming the encoding, while the others run; a step
/// that moves the clock backwards is refused, not passed for the wrong reason.
#[test]
fn test_fails_a_scenario_in_another_encoding_alone_and_refuses_time_running_backwards() {
    let doc = std::fs::read_to_string(root().join("docs/testing.md")).unwrap();
    let good = caseflow_tests::code_blocks(&doc, "toml")[0].1.clone();
    let dir = std::env::temp_dir().join(format!("caseflow-cli-encodings-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a_good.toml"), &good).unwrap();
    // "投诉" in GBK, in a description.
    let mut gbk = b"description = \"".to_vec();
    gbk.extend([0xCD, 0xB6, 0xCB, 0xDF]);
    gbk.extend(b"\"\nprocess = \"complaint\"\nstart_at = \"2026-11-23T10:00\"\n");
    std::fs::write(dir.join("b_gbk.toml"), gbk).unwrap();
    let backwards = "description = \"back\"\nprocess = \"complaint\"\nstart_at = \"2026-11-23T10:00\"\n\n\
                     [fields]\ncustomer = \"x\"\ncontact = \"1\"\ncontent = \"y\"\n\n\
                     [[step]]\nadvance_to = \"2026-11-23T11:00\"\n\n[[step]]\nadvance_to = \"2026-11-23T10:30\"\nexpect_status = \"running\"\n";
    std::fs::write(dir.join("c_backwards.toml"), backwards).unwrap();
    let out = caseflow(&["test", dir.to_str().unwrap()]);
    let shown = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{shown}{}", text(&out.stderr));
    assert!(shown.contains("ok    ") && shown.contains("a_good.toml"), "the good one ran: {shown}");
    assert!(shown.contains("b_gbk.toml:1") && shown.contains("not UTF-8") && shown.contains("GBK"), "{shown}");
    assert!(shown.contains("c_backwards.toml") && shown.contains("which is before it"), "{shown}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `caseflow test` on the scenario of docs/testing.md: it passes, and with one due time
/// changed it fails exactly as the page shows (file:line, step, expected, found; exit 1).
#[test]
fn test_runs_the_documented_scenario_and_reports_a_failure_as_documented() {
    let doc = std::fs::read_to_string(root().join("docs/testing.md")).unwrap();
    let scenario = &caseflow_tests::code_blocks(&doc, "toml")[0].1;
    let shown = &caseflow_tests::code_blocks(&doc, "text")[0].1;
    let dir = std::env::temp_dir().join(format!("caseflow-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |text: &str, extra: &[&str]| {
        std::fs::write(dir.join("example.toml"), text).unwrap();
        let processes = root().join("processes");
        let rules = root().join("rules");
        let mut args = vec![
            "test",
            "example.toml",
            "--processes",
            processes.to_str().unwrap(),
            "--rules",
            rules.to_str().unwrap(),
        ];
        args.extend(extra);
        Command::new(env!("CARGO_BIN_EXE_caseflow")).args(&args).current_dir(&dir).output().unwrap()
    };
    let out = run(scenario, &[]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).starts_with("ok    example.toml  Medium urgency"), "{}", text(&out.stdout));
    let wrong = scenario.replacen("due = \"2026-11-23T15:30\"", "due = \"2026-11-23T15:00\"", 1);
    assert_ne!(&wrong, scenario);
    let out = run(&wrong, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stdout), *shown, "docs/testing.md shows another output");
    // JSON for CI and editors: the same failure, structured.
    let out = run(&wrong, &["--format", "json", "--coverage"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["failed"], 1);
    let failure = &v["scenarios"][0]["failure"];
    assert_eq!((failure["step"].as_u64(), failure["line"].as_u64()), (Some(1), Some(12)), "{v}");
    assert_eq!(v["coverage"][0]["process"], "complaint", "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The shipped scenarios pass from the command line too, and reach every step of their process.
#[test]
fn test_of_the_shipped_scenarios_passes_with_full_coverage() {
    let out = caseflow(&["test", "--coverage"]);
    assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("not reached"), "{stdout}");
    assert!(stdout.contains("complaint") && stdout.contains("100.0%"), "{stdout}");
    assert!(stdout.trim_end().ends_with("failed") && stdout.contains(" 0 failed"), "{stdout}");
}

/// `caseflow test --record`: a case of a (stopped) server's data directory becomes a scenario,
/// which `caseflow test` then runs and passes.
#[test]
fn a_recorded_case_becomes_a_scenario_that_passes() {
    use caseflow_core::case::{Actor, Command as CaseCommand};
    use caseflow_core::value::Value;
    use caseflow_engine::{Durability, Engine, Store, StoreOptions};
    let tmp = std::env::temp_dir().join(format!("caseflow-cli-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let data = tmp.join("data");
    let options = StoreOptions { durability: Durability::Flush, ..StoreOptions::default() };
    let key = {
        let rules = caseflow_tests::shipped_rules();
        let engine = Engine::open(Store::open(&data, &options).unwrap(), rules.clone()).unwrap();
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00+08:00").unwrap().to_utc();
        engine.deploy(&std::fs::read_to_string(root().join("processes/complaint.flow")).unwrap(), t0).unwrap();
        let fields =
            [("customer", "第一中学"), ("contact", "138"), ("content", "投影仪无法开机"), ("urgency", "medium")]
                .iter()
                .map(|(k, v)| (k.to_string(), Value::Text(v.to_string())))
                .collect();
        let crm = Actor { id: "crm".into(), roles: vec![], admin: false };
        let inst = engine.start("complaint", fields, &crm, None, t0).unwrap();
        // The representative answers an hour later; the verification then runs late.
        let task = inst.tasks.values().next().unwrap().clone();
        let rep = task.assignee.clone().unwrap();
        let actor = Actor { id: rep.clone(), roles: rules.users[&rep].roles.clone(), admin: false };
        let cause = [("cause".to_string(), Value::Text("quality".into()))].into();
        engine
            .command(
                inst.id,
                &actor,
                CaseCommand::CompleteTask { task: task.seq, fields: cause },
                t0 + chrono::Duration::hours(1),
            )
            .unwrap();
        let later = t0 + chrono::Duration::days(3);
        while engine.fire_due(later, 100).unwrap() > 0 {}
        inst.business_key
    };
    let data_arg = data.display().to_string();
    let out = caseflow(&["test", "--record", &key, "--data", &data_arg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let recorded = text(&out.stdout);
    for line in [
        "process = \"complaint\"",
        "start_at = \"2026-11-23T10:00\"",
        "complete = \"receive\"",
        "advance_to = \"2026-11-23T11:00\"",
    ] {
        assert!(recorded.lines().any(|l| l == line), "no `{line}` in:\n{recorded}");
    }
    assert!(recorded.contains("task_overdue@verify"), "{recorded}");
    let file = tmp.join("recorded.toml");
    std::fs::write(&file, &recorded).unwrap();
    let out = caseflow(&["test", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}\n{recorded}", text(&out.stdout));
    // A case that is not there is an error, with nothing printed to stdout.
    let out = caseflow(&["test", "--record", "NO-SUCH-CASE", "--data", &data_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no case with id or business key `NO-SUCH-CASE`"), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
    let _ = std::fs::remove_dir_all(&tmp);
}

/// `caseflow migrate`: the running cases of a stopped server's data directory moved to a new
/// version; the dry run changes nothing, a case that cannot move stays, a mapping moves it.
#[test]
fn migrate_moves_running_cases_of_a_data_directory() {
    use caseflow_core::case::{Actor, Command as CaseCommand, InstanceId};
    use caseflow_core::value::Value;
    use caseflow_engine::{Durability, Engine, Store, StoreOptions};
    let tmp = std::env::temp_dir().join(format!("caseflow-cli-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let data = tmp.join("data");
    let options = StoreOptions { durability: Durability::Flush, ..StoreOptions::default() };
    let rules = caseflow_tests::shipped_rules();
    let open = || Engine::open(Store::open(&data, &options).unwrap(), rules.clone()).unwrap();
    {
        let engine = open();
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-23T10:00:00+08:00").unwrap().to_utc();
        let v1 = std::fs::read_to_string(root().join("tests/migrations/support.flow")).unwrap();
        engine.deploy(&v1, t0).unwrap();
        let crm = Actor { id: "crm".into(), roles: vec![], admin: false };
        let fields = |c: &str| [("customer".to_string(), Value::Text(c.into()))].into();
        engine.start("support", fields("第一中学"), &crm, None, t0).unwrap();
        // The second case goes on into the parallel split (at `call_customer`).
        let second = engine.start("support", fields("第二中学"), &crm, None, t0).unwrap();
        let task = second.tasks.values().next().unwrap().seq;
        engine
            .command(second.id, Actor::system(), CaseCommand::CompleteTask { task, fields: Default::default() }, t0)
            .unwrap();
        let v2 = std::fs::read_to_string(root().join("tests/migrations/support/v2.flow")).unwrap();
        assert_eq!(engine.deploy(&v2, t0).unwrap().version, 2);
    }
    let data_arg = data.display().to_string();
    let out = caseflow(&["migrate", "support", "--from", "1", "--to", "2", "--dry-run", "--data", &data_arg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    for line in [
        "support version 1 -> 2 (dry run: nothing changed): 2 running cases, 1 would move, 1 cannot move",
        "  triage -> first_look (stays): 1",
        "  cannot move (1): it waits at `call_customer`, which version 2 does not have: map `call_customer` to one of its steps",
        // Which case it holds back, by its business key.
        "  case support-2 cannot move: it waits at `call_customer`, which version 2 does not have: map `call_customer` to one of its steps",
        // Times in the calendar's zone, to the second (not UTC with nanoseconds).
        "  case support-1: task 1-2 due 2026-11-24 18:00:00 (was 2026-11-23 15:30:00); defaults region",
    ] {
        assert!(shown.lines().any(|l| l == line), "no `{line}` in:\n{shown}");
    }
    let versions = || {
        let engine = open();
        [1, 2].map(|i| engine.instance(InstanceId(i)).unwrap().unwrap().version)
    };
    assert_eq!(versions(), [1, 1], "a dry run moves nothing");
    let out = caseflow(&[
        "migrate",
        "support",
        "--from",
        "1",
        "--to",
        "2",
        "--map",
        "call_customer=visit",
        "--by",
        "wang_fang",
        "--data",
        &data_arg,
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.starts_with("support version 1 -> 2: 2 running cases, 2 moved, 0 cannot move"), "{shown}");
    assert!(shown.contains("  call_customer -> visit (entered): 1"), "{shown}");
    assert_eq!(versions(), [2, 2]);
    let history = open().history(InstanceId(1)).unwrap();
    assert_eq!(history.iter().find(|h| h.event == "migrated").map(|h| h.actor.as_str()), Some("wang_fang"));
    // A mapping to a step the new version does not have is refused before anything moves.
    let out =
        caseflow(&["migrate", "support", "--from", "2", "--to", "1", "--map", "visit=nowhere", "--data", &data_arg]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("the mapping sends `visit` to `nowhere`, which version 1 has no step of"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&tmp);
}

/// `caseflow what-if`: the closed cases of a data directory replayed through candidate rules;
/// the report says which deadlines would have been missed, and nothing is written.
#[test]
fn what_if_replays_closed_cases_through_candidate_rules() {
    use caseflow_engine::scenario::{self, ScenarioFile, Setup};
    use caseflow_engine::{Durability, Store, StoreOptions};
    let tmp = std::env::temp_dir().join(format!("caseflow-cli-whatif-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let (data, rules) = (tmp.join("data"), tmp.join("rules"));
    std::fs::create_dir_all(&rules).unwrap();
    for entry in std::fs::read_dir(root().join("rules")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap().replace("medium = \"4 workhours\"", "medium = \"30min\"");
        std::fs::write(rules.join(path.file_name().unwrap()), text).unwrap();
    }
    // The happy path of a complaint, run to its end in the data directory: its receive task
    // was done an hour after the start, within the 4 working hours of a medium urgency.
    {
        let setup = Setup::new(caseflow_tests::shipped_processes(), caseflow_tests::shipped_rules()).unwrap();
        let path = root().join("processes/tests/complaint/happy_path.toml");
        let file =
            ScenarioFile { name: "happy_path.toml".into(), text: std::fs::read_to_string(path).unwrap(), dir: None };
        let options = StoreOptions { durability: Durability::Flush, ..StoreOptions::default() };
        let (outcome, case) = scenario::run_keeping(&setup, &file, Store::open(&data, &options).unwrap());
        assert!(outcome.passed(), "{:?}", outcome.failure);
        drop(case);
    }
    let case_as_stored = || {
        let options = StoreOptions { durability: Durability::Flush, ..StoreOptions::default() };
        let engine =
            caseflow_engine::Engine::open(Store::open(&data, &options).unwrap(), caseflow_tests::shipped_rules())
                .unwrap();
        let id = caseflow_core::case::InstanceId(1);
        (engine.instance(id).unwrap().unwrap(), engine.history(id).unwrap().len())
    };
    let before = case_as_stored();
    let (data_arg, rules_arg) = (data.display().to_string(), rules.display().to_string());
    let out = caseflow(&["what-if", "--data", &data_arg, "--rules", &rules_arg]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.starts_with("what-if over 1 closed case (nothing changed): 1 replayed, 0 diverged"), "{shown}");
    assert!(shown.lines().any(|l| l == "  complaint.receive: deadlines met 1/1 -> 0/1"), "{shown}");
    // The same rules change nothing.
    let out = caseflow(&["what-if", "--data", &data_arg, "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["routes_changed"].as_u64(), v["by_step"]["complaint.receive"]["met_after"].as_u64()),
        (Some(0), Some(1)),
        "{v}"
    );
    assert_eq!(case_as_stored(), before, "nothing written");
    // A period that holds nothing, or a candidate folder with no process, is said, not
    // reported as nothing changing.
    let out = caseflow(&["what-if", "--data", &data_arg, "--from", "2026-12-01", "--to", "2026-11-01"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("is not before --to"), "{}", text(&out.stderr));
    let empty = tmp.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = caseflow(&["what-if", "--data", &data_arg, "--processes", empty.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no .flow files"), "{}", text(&out.stderr));
    let _ = std::fs::remove_dir_all(&tmp);
}

/// Every `caseflow …` command the README and the process owners' pages show names a command
/// that exists, with options it has.
#[test]
fn documented_commands_name_real_commands_and_options() {
    let mut checked = 0;
    for page in ["README.md", "docs/testing.md", "docs/versions.md", "docs/editors.md"] {
        let page_text = std::fs::read_to_string(root().join(page)).unwrap();
        for line in page_text.lines() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("caseflow ").or_else(|| line.strip_prefix("cargo run --release -- "))
            else {
                continue;
            };
            let command = rest.split(" #").next().unwrap().split(" >").next().unwrap().trim();
            let words: Vec<&str> = command.split_whitespace().collect();
            // The subcommand, and `rules`' own subcommand.
            let depth = if words.first() == Some(&"rules") { 2 } else { 1 };
            let sub: Vec<&str> = words.iter().take(depth).copied().collect();
            let mut args = sub.clone();
            args.push("--help");
            let help = caseflow(&args);
            assert!(help.status.success(), "{page}: `{command}`: no such command ({})", text_of(&help));
            let usage = text(&help.stdout);
            for flag in words.iter().filter(|w| w.starts_with("--")) {
                let flag = flag.split('=').next().unwrap();
                assert!(usage.contains(flag), "{page}: `{command}`: `{}` has no {flag}", sub.join(" "));
            }
            checked += 1;
        }
    }
    assert!(checked >= 20, "only {checked} documented commands found");
}
