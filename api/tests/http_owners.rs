//! The process owners' and administrators' endpoints through the router: deploys, schemas and
//! diagrams, diffs, rules changes and their dry runs, the folder watcher, scenario tests and
//! recordings, migrations.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use caseflow::server::AppState;
use caseflow_engine::clock::Clock;
use caseflow_engine::Engine;
use chrono::{Duration, TimeZone, Utc};
use http_body_util::BodyExt;
use serde_json::json;
use tower::ServiceExt;

use caseflow_tests::shipped_rules as rules;

mod common;
use common::*;

/// A new version of a called process that breaks a deployed caller (the call-back renames
/// `quality_score`, which repair copies back) is refused by every way in, as `caseflow check`
/// refuses the folder: 422 with the caller named over HTTP, refused by the folder watcher, and
/// the previous version stays in force.
#[tokio::test]
async fn a_version_that_breaks_its_callers_is_refused_by_every_way_in() {
    let callback = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../processes/callback.flow")).unwrap();
    let broken = callback.replace("quality_score", "servqual_score");
    assert_ne!(broken, callback);
    let api = Api::new();
    for name in ["callback", "repair"] {
        let text = std::fs::read_to_string(format!("{}/../processes/{name}.flow", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let (s, v) =
            api.call("POST", "/processes", Some("admin"), Some(&json!({ "source": text }).to_string()), &[]).await;
        assert!(s.is_success(), "{name}: {v}");
    }
    let (s, v) =
        api.call("POST", "/processes", Some("admin"), Some(&json!({ "source": broken }).to_string()), &[]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "FLOW040", "{v}");
    assert!(d["message"].as_str().unwrap().contains("`repair`"), "{v}");
    assert!(d["message"].as_str().unwrap().contains("FLOW021"), "{v}");
    let (_, listed) = api.call("GET", "/processes/callback", Some("admin"), None, &[]).await;
    assert_eq!(listed["latest_version"], 1, "{listed}");

    // The watcher's folder: the caller unchanged beside the broken call-back.
    let dir = std::env::temp_dir().join(format!("caseflow-callers-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["callback", "repair", "onboarding", "installation"] {
        let text = std::fs::read_to_string(format!("{}/../processes/{name}.flow", env!("CARGO_MANIFEST_DIR"))).unwrap();
        std::fs::write(dir.join(format!("{name}.flow")), text).unwrap();
    }
    let engine = Engine::open(caseflow_tests::test_store(), rules()).unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 2, 0, 0).unwrap();
    let (deployed, refused) = caseflow::server::deploy_folder(&engine, &dir, now).unwrap();
    assert_eq!(deployed.len(), 4, "{deployed:?} {refused:?}");
    std::fs::write(dir.join("callback.flow"), &broken).unwrap();
    let (deployed, refused) = caseflow::server::deploy_folder(&engine, &dir, now).unwrap();
    assert!(!deployed.iter().any(|d| d.ends_with("(new)")), "{deployed:?}");
    assert!(refused.iter().any(|r| r.contains("FLOW040") && r.contains("callback.flow")), "{refused:?}");
    assert_eq!(engine.definition("callback", None).unwrap().version, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A required field with a default (`required = "north"`): the schema says it may be left
/// out and gives the default; a start that leaves it out gets the default, as the schema says.
#[tokio::test]
async fn a_required_field_with_a_default_may_be_left_out_as_the_schema_says() {
    let api = Api::new();
    let source = "process regional {\n  source \"t\"\n  fields {\n    customer: text \"客户\" required\n    \
                  region: choice(north, south) \"地区\" required = north\n  }\n  start -> handle\n  \
                  task handle {\n    assign role cs_rep\n    due 1 workday\n    asks region\n    -> done\n  }\n  end done\n}\n";
    let (s, v) =
        api.call("POST", "/processes", Some("admin"), Some(&json!({ "source": source }).to_string()), &[]).await;
    assert!(s.is_success(), "{v}");
    let (_, schema) = api.call("GET", "/processes/regional/schema", Some("admin"), None, &[]).await;
    let start = &schema["start"];
    let required: Vec<&str> =
        start["required"].as_array().map(|r| r.iter().filter_map(|x| x.as_str()).collect()).unwrap_or_default();
    assert!(!required.contains(&"region") && required.contains(&"customer"), "{schema}");
    assert_eq!(start["properties"]["region"]["default"], "north", "{schema}");
    let body = json!({ "process": "regional", "fields": { "customer": "第一中学" } }).to_string();
    let (s, inst) = api.call("POST", "/instances", Some("crm"), Some(&body), &[]).await;
    assert_eq!(s, StatusCode::CREATED, "{inst}");
    assert_eq!(inst["fields"]["region"], "north", "{inst}");
    // Still required: a start that sends a value the field does not allow is refused.
    let body = json!({ "process": "regional", "fields": { "customer": "x", "region": "east" } }).to_string();
    assert_eq!(api.call("POST", "/instances", Some("crm"), Some(&body), &[]).await.0, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn deploy_returns_diagnostics_and_timers_escalate() {
    let api = Api::new();
    let text = [("content-type", "text/plain")];
    let broken = "process broken {\n  start -> nowhere\n}\n";
    let (s, v) = api.call("POST", "/processes", Some("admin"), Some(broken), &text).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let codes: Vec<&str> = v["diagnostics"].as_array().unwrap().iter().map(|d| d["code"].as_str().unwrap()).collect();
    assert!(codes.contains(&"FLOW011"), "{v}");
    // The same as JSON, for generated clients; the shipped complaint again changes nothing.
    let (s, same) =
        api.call("POST", "/processes", Some("admin"), Some(&json!({ "source": broken }).to_string()), &[]).await;
    assert_eq!((s, &same["diagnostics"]), (StatusCode::UNPROCESSABLE_ENTITY, &v["diagnostics"]));
    let complaint =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../processes/complaint.flow")).unwrap();
    let (s, d) =
        api.call("POST", "/processes", Some("admin"), Some(&json!({ "source": complaint }).to_string()), &[]).await;
    assert_eq!((s, &d["changed"], &d["version"]), (StatusCode::OK, &json!(false), &json!(1)), "{d}");
    let (s, e) = api.call("POST", "/processes", Some("admin"), Some(r#"{"src":"x"}"#), &[]).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("source")), "{e}");
    let (_, inst) = api.call("POST", "/instances", Some("crm"), Some(START), &[]).await;
    // Ten minutes later the high-urgency deadline passes and the manager gets the task (the
    // deadline and the escalation `+ 0min` after it: two timers).
    api.clock.advance(Duration::minutes(10));
    assert_eq!(api.engine.fire_due(api.clock.now(), 100).unwrap(), 2);
    let (_, inbox) = api.call("GET", "/tasks", Some("li_na"), None, &[]).await;
    assert_eq!(inbox["tasks"][0]["instance"], inst["id"]);
    assert_eq!(inbox["tasks"][0]["overdue"], true);
}

#[tokio::test]
async fn rules_reload_accepted_refused_and_recorded() {
    let dir = RulesCopy::new("reload");
    let api = api_with_rules(&dir);
    assert_eq!(
        api.call("POST", "/admin/rules/reload", Some("admin"), None, &[]).await.0,
        StatusCode::CONFLICT,
        "unchanged"
    );
    assert_eq!(api.call("POST", "/admin/rules/reload", Some("li_na"), None, &[]).await.0, StatusCode::FORBIDDEN);
    // Accepted: a new response time applies to timers created after the change.
    dir.edit("values.toml", "high = \"10min\"", "high = \"5min\"");
    let (s, change) = api.call("POST", "/admin/rules/reload", Some("admin"), None, &[]).await;
    assert_eq!(s, StatusCode::OK, "{change}");
    assert_eq!(change["version"], 1);
    let diff = change["diff"].as_str().unwrap();
    assert!(diff.contains("-high = \"10min\"\n+high = \"5min\""), "{change}");
    // One diff per file, numbered as the file is (not as a concatenation of the folder).
    let values = std::fs::read_to_string(dir.0.join("values.toml")).unwrap();
    let line = values.lines().position(|l| l.starts_with("high = \"5min\"")).unwrap() + 1;
    assert!(diff.starts_with("--- a/values.toml\n+++ b/values.toml\n"), "{diff}");
    assert!(diff.contains(&format!("@@ -{},5 +{},5 @@", line - 2, line - 2)), "line {line}: {diff}");
    let (_, inst) = api.call("POST", "/instances", Some("crm"), Some(START), &[]).await;
    let opened = chrono::DateTime::parse_from_rfc3339(inst["tasks"][0]["opened_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(inst["tasks"][0]["due_at"].as_str().unwrap()).unwrap();
    assert_eq!(due - opened, Duration::minutes(5));
    let id = inst["id"].as_u64().unwrap();
    assert_eq!(api.engine.instance(caseflow_core::case::InstanceId(id)).unwrap().unwrap().rules_version, 1);
    // Refused: a malformed value names its file, line and key; the old rules stay.
    dir.edit("values.toml", "high = \"5min\"", "high = \"5 minuets\"");
    let (s, v) = api.call("POST", "/admin/rules/reload", Some("admin"), None, &[]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v["detail"].as_str().unwrap().contains("values.toml:") && v["field"] == "values.response_time.high", "{v}");
    assert!(!v["detail"].as_str().unwrap().contains(dir.0.to_str().unwrap()), "no server path in answers: {v}");
    assert_eq!(api.engine.rules_version(), 1);
    // The folder stands refused until it is fixed: /health (to anyone), /metrics, and the
    // problems themselves to administrators.
    let (s, health) = api.call("GET", "/health", None, None, &[]).await;
    assert_eq!(
        (s, &health["rules"]["status"], &health["rules"]["version"]),
        (StatusCode::OK, &json!("refused"), &json!(1))
    );
    assert!(health.to_string().find("values.toml").is_none(), "the problems are not public: {health}");
    let (_, in_force) = api.call("GET", "/admin/rules", Some("admin"), None, &[]).await;
    assert!(in_force["refused"]["problems"][0].as_str().unwrap().starts_with("values.toml:"), "{in_force}");
    assert_eq!(api.metric("caseflow_rules_refused").await, 1.0);
    // Refused: removing a role a deployed process uses.
    dir.edit("values.toml", "high = \"5 minuets\"", "high = \"5min\"");
    dir.edit("roles.toml", "[roles.engineer]", "[roles.engineer_old]");
    dir.edit("roles.toml", "\"cs_director\", \"engineer\"]", "\"cs_director\", \"engineer_old\"]");
    dir.edit("people.toml", "roles = [\"engineer\"]", "roles = [\"engineer_old\"]");
    dir.edit("people.toml", "roles = [\"engineer\", \"rnd\"]", "roles = [\"engineer_old\", \"rnd\"]");
    let (s, v) = api.call("POST", "/admin/rules/reload", Some("admin"), None, &[]).await;
    assert_eq!(
        (s, v["type"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("https://caseflow.dev/problems/rules-break-processes")),
        "{v}"
    );
    assert!(api.engine.rules().roles.contains_key("engineer"), "the old rules stay in force");
    dir.edit("roles.toml", "[roles.engineer_old]", "[roles.engineer]");
    dir.edit("roles.toml", "\"cs_director\", \"engineer_old\"]", "\"cs_director\", \"engineer\"]");
    dir.edit("people.toml", "roles = [\"engineer_old\"]", "roles = [\"engineer\"]");
    dir.edit("people.toml", "roles = [\"engineer_old\", \"rnd\"]", "roles = [\"engineer\", \"rnd\"]");
    let (s, v) = api.call("POST", "/admin/rules/reload", Some("admin"), None, &[]).await;
    assert_eq!(s, StatusCode::CONFLICT, "back to the rules in force: {v}");
    assert_eq!(api.call("GET", "/health", None, None, &[]).await.1["rules"]["status"], "ok");
    assert_eq!(api.metric("caseflow_rules_refused").await, 0.0);
    let (_, log) = api.call("GET", "/admin/rules/changes", Some("admin"), None, &[]).await;
    assert_eq!(log["changes"].as_array().unwrap().len(), 1);
    // Decision tables can be tried through the API.
    let (s, v) = api
        .call(
            "POST",
            "/admin/rules/tables/risk_level/evaluate",
            Some("admin"),
            Some(r#"{"inputs":{"probability":5,"impact":4}}"#),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["hits"][0]["outputs"]["level"], "critical");
}

#[test]
fn a_reload_under_load_loses_no_command() {
    let dir = RulesCopy::new("load");
    let api = api_with_rules(&dir);
    let engine = api.engine.clone();
    let now = api.clock.now();
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let engine = engine.clone();
            std::thread::spawn(move || {
                let crm = caseflow_core::case::Actor { id: "crm".into(), roles: vec![], admin: false };
                let mut ids = Vec::new();
                for n in 0..50 {
                    let fields = [("customer", "c"), ("contact", "p"), ("content", "x"), ("urgency", "high")]
                        .iter()
                        .map(|(k, v)| (k.to_string(), caseflow_core::value::Value::Text(v.to_string())))
                        .collect();
                    let inst = engine
                        .start("complaint", fields, &crm, Some(&format!("w{w}-{n}")), now)
                        .expect("every start is accepted");
                    ids.push(inst.id);
                }
                ids
            })
        })
        .collect();
    // Meanwhile, change the rules back and forth.
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for i in 0..10 {
        let (a, b) = if i % 2 == 0 { ("10min", "15min") } else { ("15min", "10min") };
        dir.edit("values.toml", &format!("high = \"{a}\""), &format!("high = \"{b}\""));
        let (s, v) = rt.block_on(api.call("POST", "/admin/rules/reload", Some("admin"), None, &[]));
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let ids: Vec<_> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    assert_eq!(ids.len(), 200);
    for id in ids {
        let inst = engine.instance(id).unwrap().expect("acknowledged start present");
        assert!(inst.rules_version <= 10);
        assert_eq!(inst.tasks.len(), 1);
    }
    assert_eq!(engine.rules_version(), 10);
}

#[tokio::test]
async fn upload_recompute_and_reassign() {
    let dir = RulesCopy::new("upload");
    let api = api_with_rules(&dir);
    let (_, inst) = api.call("POST", "/instances", Some("crm"), Some(START), &[]).await;
    let task = inst["tasks"][0]["id"].as_str().unwrap().to_string();
    let (_, now) = api.call("GET", &format!("/instances/{}", inst["id"]), Some("admin"), None, &[]).await;
    let assignee = now["tasks"][0]["assignee"].as_str().unwrap().to_string();
    assert!(inst["tasks"][0]["due_at"].is_string());
    // A refused upload leaves the folder and the rules as they were.
    let values = std::fs::read_to_string(dir.0.join("values.toml")).unwrap();
    let bad = values.replace("high = \"10min\"", "high = \"ten minutes\"");
    let text = [("content-type", "text/plain")];
    let (s, _) = api.call("PUT", "/admin/rules/files/values.toml", Some("admin"), Some(&bad), &text).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(std::fs::read_to_string(dir.0.join("values.toml")).unwrap(), values);
    let (s, _) = api.call("PUT", "/admin/rules/files/..%2Fescape.toml", Some("admin"), Some(&values), &text).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // An accepted one is written, applied, and with ?recompute=true moves open deadlines.
    let good = values.replace("high = \"10min\"", "high = \"30min\"");
    // As JSON, as a generated client sends it.
    let body = json!({ "text": good }).to_string();
    let (s, v) =
        api.call("PUT", "/admin/rules/files/values.toml?recompute=true", Some("admin"), Some(&body), &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["cases_recomputed"], 1);
    assert_eq!(std::fs::read_to_string(dir.0.join("values.toml")).unwrap(), good);
    let (_, after) = api.call("GET", &format!("/instances/{}", inst["id"]), Some("admin"), None, &[]).await;
    let opened = chrono::DateTime::parse_from_rfc3339(after["tasks"][0]["opened_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(after["tasks"][0]["due_at"].as_str().unwrap()).unwrap();
    assert_eq!(due - opened, Duration::minutes(30));
    // The old 10-minute timer is gone: nothing fires at 10 minutes.
    api.clock.advance(Duration::minutes(11));
    assert_eq!(api.engine.fire_due(api.clock.now(), 100).unwrap(), 0);
    // Everything a user holds goes to someone else in one call.
    let (s, v) = api
        .call(
            "POST",
            &format!("/admin/users/{assignee}/reassign"),
            Some("admin"),
            Some(r#"{"to":"zhang_wei","reason":"left the team"}"#),
            &[],
        )
        .await;
    assert_eq!((s, v["reassigned"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    let (_, after) = api.call("GET", &format!("/instances/{}", inst["id"]), Some("admin"), None, &[]).await;
    assert_eq!(after["tasks"][0]["assignee"], "zhang_wei");
    assert_eq!(after["tasks"][0]["id"], task.as_str());
}

#[test]
fn the_folder_watcher_applies_good_changes_and_refuses_bad_ones() {
    let rules = RulesCopy::new("watch");
    let processes = RulesCopy::new("watch-processes");
    for e in std::fs::read_dir(&processes.0).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let complaint =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../processes/complaint.flow")).unwrap();
    std::fs::write(processes.0.join("complaint.flow"), &complaint).unwrap();
    let api = api_with_rules(&rules);
    let files = caseflow::server::read_rules_dir_by_file_name(&rules.0).unwrap();
    let state = AppState {
        rules_dir: Some(rules.0.clone()),
        rules_files: std::sync::Mutex::new(files),
        ..AppState::new(api.engine.clone(), api.clock.clone(), vec![])
    };
    let mut watch = caseflow::server::FolderWatch::new(&state, processes.0.clone());
    assert_eq!(watch.poll(&state), Default::default(), "nothing changed");
    rules.edit("values.toml", "high = \"10min\"", "high = \"12min\"");
    assert_eq!(watch.poll(&state).rules_version, Some(1));
    rules.edit("calendar.toml", "time_zone = \"Asia/Shanghai\"", "time_zone = \"Asia/Nowhere\"");
    let report = watch.poll(&state);
    assert!(report.rules_refused.unwrap().contains("calendar.toml:"), "refused with the file named");
    assert_eq!(api.engine.rules_version(), 1, "the previous rules stay in force");
    // A changed process deploys as a new version; a broken one is refused, the last good stays.
    std::fs::write(
        processes.0.join("complaint.flow"),
        complaint.replace("due 1 workday\n    asks evidence", "due 2 workdays\n    asks evidence"),
    )
    .unwrap();
    assert_eq!(watch.poll(&state).deployed, ["complaint v2 (new)"]);
    std::fs::write(processes.0.join("complaint.flow"), complaint.replace("-> route", "-> rout")).unwrap();
    let report = watch.poll(&state);
    assert!(report.refused[0].contains("FLOW011"), "{:?}", report.refused);
    assert_eq!(api.engine.definition("complaint", None).unwrap().version, 2);
}

#[tokio::test]
async fn diagrams_as_svg_dot_and_mermaid() {
    let api = Api::new();
    for (format, content_type, needle) in [
        ("", "image/svg+xml", "<svg"),
        ("?format=dot", "text/vnd.graphviz", "digraph"),
        ("?format=mermaid", "text/plain; charset=utf-8", "flowchart TD"),
    ] {
        let req = axum::http::Request::builder()
            .uri(format!("/processes/complaint/diagram{format}"))
            .header("authorization", "Bearer t-crm")
            .body(Body::empty())
            .unwrap();
        let resp = api.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{format}");
        assert_eq!(resp.headers()["content-type"], content_type);
        let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(text.contains(needle), "{format}: {text:.200}");
        // Every step is drawn, under its label.
        assert!(text.contains("接收并登记"), "{format}");
    }
    let (s, _) = api.call("GET", "/processes/complaint/diagram?format=png", Some("crm"), None, &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = api.call("GET", "/processes/nope/diagram", Some("crm"), None, &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[test]
fn processes_that_call_each_other_deploy_together_as_the_checker_checks_them() {
    let dir = std::env::temp_dir().join(format!("caseflow-mutual-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let guarded = |id: &str, other: &str| {
        format!(
            "process {id} {{\n  source \"t\"\n  start -> ask\n  task ask {{\n    assign role cs_rep\n    due 1h\n    \
             -> decide {{\n      when true -> done\n      else -> c\n    }}\n  }}\n  call c process {other} {{ -> done }}\n  end done\n}}\n"
        )
    };
    std::fs::write(dir.join("ping.flow"), guarded("ping", "pong")).unwrap();
    std::fs::write(dir.join("pong.flow"), guarded("pong", "ping")).unwrap();
    // Two more that call each other at once: refused, by both.
    std::fs::write(
        dir.join("tick.flow"),
        "process tick {\n  source \"t\"\n  start -> c\n  call c process tock { -> done }\n  end done\n}\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("tock.flow"),
        "process tock {\n  source \"t\"\n  start -> c\n  call c process tick { -> done }\n  end done\n}\n",
    )
    .unwrap();
    let files: Vec<caseflow_dsl::SourceFile> = ["ping", "pong", "tick", "tock"]
        .iter()
        .map(|n| {
            let path = dir.join(format!("{n}.flow"));
            caseflow_dsl::SourceFile { name: path.display().to_string(), text: std::fs::read_to_string(&path).unwrap() }
        })
        .collect();
    let checked: Vec<bool> = caseflow_dsl::check_files(&files, Some(&rules().catalog()))
        .iter()
        .map(|r| r.checked.process.is_some())
        .collect();
    assert_eq!(checked, [true, true, false, false]);
    let engine = Engine::open(caseflow_tests::test_store(), rules()).unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 2, 0, 0).unwrap();
    let (deployed, refused) = caseflow::server::deploy_folder(&engine, &dir, now).unwrap();
    assert_eq!(deployed, ["ping v1 (new)", "pong v1 (new)"]);
    assert_eq!(refused.len(), 2);
    assert!(refused.iter().all(|r| r.contains("FLOW037")), "{refused:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_process_publishes_the_json_schema_of_its_start_and_its_forms() {
    let api = Api::new();
    let (s, v) = api.call("GET", "/processes/complaint/schema", Some("crm"), None, &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let start = &v["start"];
    assert_eq!(start["$schema"], "https://json-schema.org/draft/2020-12/schema");
    assert_eq!(start["properties"]["urgency"]["enum"], json!(["high", "medium", "low"]));
    assert_eq!(start["properties"]["urgency"]["default"], "medium");
    assert_eq!(start["properties"]["urgency"]["title"], "紧急程度");
    assert_eq!(
        start["properties"]["satisfaction"],
        json!({ "type": "integer", "minimum": 1, "maximum": 5, "title": "满意度" })
    );
    assert_eq!(start["properties"]["evidence"]["items"]["type"], "string");
    assert_eq!(start["required"], json!(["customer", "contact", "content"]), "defaults make a field optional");
    assert_eq!(start["additionalProperties"], false);
    assert_eq!(v["outcomes"], json!(["closed"]), "the ends a case can reach");
    let receive = &v["tasks"]["receive"];
    assert_eq!(receive["required"], json!(["cause"]));
    assert_eq!(receive["properties"]["cause"]["enum"], json!(["quality", "expectation", "communication"]));
    assert!(receive["properties"]["content"].is_object() && receive["properties"]["urgency"].is_null());
    // What the schema says is what the engine does: only the required fields start a case;
    // a value outside an enum, or a field the schema lacks, is refused on that field.
    let minimal = json!({ "process": "complaint", "fields": { "customer": "A", "contact": "1", "content": "c" } });
    assert_eq!(
        api.call("POST", "/instances", Some("crm"), Some(&minimal.to_string()), &[]).await.0,
        StatusCode::CREATED
    );
    for (field, value) in [("urgency", json!("urgent")), ("satisfaction", json!(6)), ("colour", json!("red"))] {
        let mut body = minimal.clone();
        body["fields"][field] = value;
        let (s, e) = api.call("POST", "/instances", Some("crm"), Some(&body.to_string()), &[]).await;
        assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some(field)), "{e}");
    }
    let (s, _) = api.call("GET", "/processes/complaint/schema?version=9", Some("crm"), None, &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// `GET /processes/{id}/diff`: what changed between two deployed versions, as `caseflow diff`
/// shows it.
#[tokio::test]
async fn the_diff_of_two_deployed_versions() {
    let api = Api::new();
    let v2 =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/diff/complaint_v2.new.flow")).unwrap();
    let (s, d) = api.call("POST", "/processes", Some("admin"), Some(&json!({ "source": v2 }).to_string()), &[]).await;
    assert_eq!((s, &d["version"]), (StatusCode::CREATED, &json!(2)), "{d}");
    let (s, v) = api.call("GET", "/processes/complaint/diff?from=1", Some("crm"), None, &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!((&v["from"], &v["to"]), (&json!(1), &json!(2)));
    let changes = &v["changes"];
    assert_eq!(changes["steps_renamed"], json!([{ "from": "file", "to": "archive" }]));
    assert_eq!(changes["steps_added"], json!([{ "name": "onsite_visit", "kind": "task" }]));
    assert!(changes["steps_changed"].as_array().unwrap().iter().any(|c| c["name"] == "engineer_callback"
        && c["clauses"]
            .as_array()
            .unwrap()
            .contains(&json!({"what": "deadline", "old": "due 1 workday", "new": "due 2 workdays"}))));
    // Backwards is the same diff the other way round; a version with itself is no change.
    let (_, back) = api.call("GET", "/processes/complaint/diff?from=2&to=1", Some("crm"), None, &[]).await;
    assert_eq!(back["changes"]["steps_renamed"], json!([{ "from": "archive", "to": "file" }]));
    let (_, same) = api.call("GET", "/processes/complaint/diff?from=2&to=2", Some("crm"), None, &[]).await;
    assert_eq!(same["changes"]["steps_changed"], json!([]));
    for (uri, status) in [
        ("/processes/complaint/diff?from=9", StatusCode::NOT_FOUND),
        ("/processes/complaint/diff?from=1&to=9", StatusCode::NOT_FOUND),
        ("/processes/nothing/diff?from=1", StatusCode::NOT_FOUND),
        ("/processes/complaint/diff", StatusCode::BAD_REQUEST),
        ("/processes/complaint/diff?from=one", StatusCode::BAD_REQUEST),
    ] {
        assert_eq!(api.call("GET", uri, Some("crm"), None, &[]).await.0, status, "{uri}");
    }
    assert_eq!(api.call("GET", "/processes/complaint/diff?from=1", None, None, &[]).await.0, StatusCode::UNAUTHORIZED);
}

/// `PUT /admin/rules/files/{name}?dry_run=true`: what a rules file would do to open work,
/// nothing applied or written.
#[tokio::test]
async fn a_rules_dry_run_reports_moved_deadlines_and_changes_nothing() {
    let dir = RulesCopy::new("dry-run");
    let api = api_with_rules(&dir);
    let (_, inst) = api.call("POST", "/instances", Some("crm"), Some(START), &[]).await;
    let due_before = inst["tasks"][0]["due_at"].clone();
    let values = std::fs::read_to_string(dir.0.join("values.toml")).unwrap();
    let text = [("content-type", "text/plain")];
    // The high-urgency response time from 10 to 5 minutes: the open task's deadline would come
    // 5 minutes sooner; after 7 minutes it would be overdue at once.
    api.clock.advance(Duration::minutes(7));
    let shorter = values.replace("high = \"10min\"", "high = \"5min\"");
    // Applied without `recompute`, open deadlines stay: the dry run says none moves.
    let (s, v) =
        api.call("PUT", "/admin/rules/files/values.toml?dry_run=true", Some("admin"), Some(&shorter), &text).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!((&v["impact"]["recompute"], &v["impact"]["deadlines_moved"]), (&json!(false), &json!(0)), "{v}");
    assert_eq!(v["impact"]["overdue_at_once"], 0, "{v}");
    let (s, v) = api
        .call("PUT", "/admin/rules/files/values.toml?dry_run=true&recompute=true", Some("admin"), Some(&shorter), &text)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["dry_run"], true);
    assert!(v["diff"].as_str().unwrap().contains("+high = \"5min\""), "{v}");
    let impact = &v["impact"];
    assert_eq!((impact["cases"].as_u64(), impact["deadlines_moved"].as_u64()), (Some(1), Some(1)), "{v}");
    assert_eq!(impact["shift_minutes"], json!({ "earliest": -5, "median": -5, "latest": -5 }));
    assert_eq!(impact["overdue_at_once"], 1);
    assert_eq!(impact["moved_by_step"], json!({ "complaint.receive": 1 }));
    assert_eq!(impact["lookups_changed"], json!({}), "the routing table did not change");
    // Nothing applied, nothing written.
    assert_eq!(std::fs::read_to_string(dir.0.join("values.toml")).unwrap(), values);
    let (_, after) = api.call("GET", &format!("/instances/{}", inst["id"]), Some("admin"), None, &[]).await;
    assert_eq!(after["tasks"][0]["due_at"], due_before);
    let (_, rules) = api.call("GET", "/admin/rules", Some("admin"), None, &[]).await;
    assert_eq!(rules["version"], 0, "{rules}");
    // A case whose cause is known: quality complaints would go to another department.
    let task = inst["tasks"][0]["id"].as_str().unwrap();
    let (s, done) = api
        .call("POST", &format!("/tasks/{task}/complete"), Some("admin"), Some(r#"{"fields":{"cause":"quality"}}"#), &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let tables = std::fs::read_to_string(dir.0.join("tables.toml")).unwrap();
    let rerouted = tables
        .replace(r#"{ cause = "quality", department = "rnd" }"#, r#"{ cause = "quality", department = "quality" }"#);
    assert_ne!(rerouted, tables);
    let (s, v) =
        api.call("PUT", "/admin/rules/files/tables.toml?dry_run=true", Some("admin"), Some(&rerouted), &text).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["impact"]["lookups_changed"], json!({ "complaint.route": 1 }), "{v}");
    assert_eq!(v["impact"]["deadlines_moved"], 0);
    assert_eq!(v["impact"]["assignees_lost"], json!([]), "no one's role changed");
    // The assignee of the open task leaves the representatives: the task would lose them.
    let (_, now) = api.call("GET", &format!("/instances/{}", inst["id"]), Some("admin"), None, &[]).await;
    let assignee = now["tasks"][0]["assignee"].as_str().unwrap().to_string();
    let people = std::fs::read_to_string(dir.0.join("people.toml")).unwrap();
    let header = format!("[users.{assignee}]\n");
    let at = people.find(&header).unwrap();
    let roles = people[at..].find("roles = [").unwrap() + at;
    let end = people[roles..].find('\n').unwrap() + roles;
    let moved = format!("{}roles = [\"quality\"]{}", &people[..roles], &people[end..]);
    let (s, v) =
        api.call("PUT", "/admin/rules/files/people.toml?dry_run=true", Some("admin"), Some(&moved), &text).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let step = format!("complaint.{}", now["tasks"][0]["step"].as_str().unwrap());
    assert_eq!(v["impact"]["assignees_lost_by_step"], json!({ step: 1 }), "{v}");
    let lost = &v["impact"]["assignees_lost"][0];
    assert_eq!(
        (lost["assignee"].as_str(), lost["reason"].as_str()),
        (Some(assignee.as_str()), Some("not in role cs_rep")),
        "{v}"
    );
    // A bad file is refused as it would be for real; so are rules a process cannot run on.
    let bad = values.replace("high = \"10min\"", "high = \"ten minutes\"");
    let (s, _) = api.call("PUT", "/admin/rules/files/values.toml?dry_run=true", Some("admin"), Some(&bad), &text).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let renamed = values.replace("[values.escalation_delay]", "[values.escalation_delays]");
    let (s, e) =
        api.call("PUT", "/admin/rules/files/values.toml?dry_run=true", Some("admin"), Some(&renamed), &text).await;
    assert_eq!(
        (s, e["type"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("https://caseflow.dev/problems/rules-break-processes")),
        "{e}"
    );
    // Only administrators.
    let (s, _) =
        api.call("PUT", "/admin/rules/files/values.toml?dry_run=true", Some("crm"), Some(&shorter), &text).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

/// `POST /processes/{id}/test`: scenarios run against a source that is not deployed, as
/// `caseflow test` runs them; nothing is deployed or stored.
#[tokio::test]
async fn scenarios_run_against_an_undeployed_source() {
    let api = Api::new();
    let read = |p: &str| std::fs::read_to_string(format!("{}/../{p}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let scenario = read("processes/tests/complaint/happy_path.toml");
    let source = read("processes/complaint.flow");
    let body = |source: Option<&str>, coverage: bool| {
        json!({ "source": source, "scenarios": [{ "name": "happy_path.toml", "text": scenario }], "coverage": coverage })
            .to_string()
    };
    // The deployed version and the same source pass.
    for src in [None, Some(source.as_str())] {
        let (s, v) = api.call("POST", "/processes/complaint/test", Some("admin"), Some(&body(src, true)), &[]).await;
        assert_eq!((s, &v["passed"], &v["failed"]), (StatusCode::OK, &json!(1), &json!(0)), "{v}");
        assert_eq!(v["coverage"]["process"], "complaint", "{v}");
        assert!(v["coverage"]["percent"].as_f64().unwrap() < 100.0, "one scenario does not reach every step: {v}");
        assert!(!v["coverage"]["missing"].as_array().unwrap().is_empty());
    }
    // A version whose phone step is renamed fails the scenario where it expects that task.
    let renamed = source.replace("phone_resolution", "phone_fix");
    let (s, v) =
        api.call("POST", "/processes/complaint/test", Some("admin"), Some(&body(Some(&renamed), false)), &[]).await;
    assert_eq!((s, &v["failed"]), (StatusCode::OK, &json!(1)), "{v}");
    let failure = &v["scenarios"][0]["failure"];
    let line = scenario.lines().position(|l| l.contains("step = \"phone_resolution\"")).unwrap();
    let step_line =
        scenario.lines().take(line + 1).collect::<Vec<_>>().iter().rposition(|l| *l == "[[step]]").unwrap() + 1;
    assert_eq!(failure["line"], json!(step_line), "{v}");
    assert!(failure["expected"].as_str().unwrap().contains("task `phone_resolution`"), "{v}");
    assert!(failure["found"].as_str().unwrap().contains("phone_fix"), "{v}");
    assert_eq!(v["coverage"], serde_json::Value::Null);
    // Nothing was deployed.
    let (_, p) = api.call("GET", "/processes/complaint", Some("crm"), None, &[]).await;
    assert!(!p.to_string().contains("phone_fix"), "{p}");
    // A source that does not check: 422 with the checker's diagnostics.
    let broken = source.replace("-> phone_resolution", "-> phone_resolutoin");
    let (s, v) =
        api.call("POST", "/processes/complaint/test", Some("admin"), Some(&body(Some(&broken), false)), &[]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["diagnostics"].to_string().contains("FLOW011"), "{v}");
    // Who and what is refused.
    let other = read("processes/repair.flow");
    for (who, uri, body, status) in [
        ("crm", "/processes/complaint/test", body(None, false), StatusCode::FORBIDDEN),
        ("admin", "/processes/complaint/test", json!({ "scenarios": [] }).to_string(), StatusCode::BAD_REQUEST),
        ("admin", "/processes/complaint/test", body(Some(&other), false), StatusCode::BAD_REQUEST),
        ("admin", "/processes/nothing/test", body(None, false), StatusCode::NOT_FOUND),
        ("admin", "/processes/complaint/test", json!({ "scenarios": 1 }).to_string(), StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let (s, v) = api.call("POST", uri, Some(who), Some(&body), &[]).await;
        assert_eq!(s, status, "{who} {uri} {body}: {v}");
    }
}

/// `GET /instances/{id}/scenario`: a real case written as a scenario, which
/// `POST /processes/{id}/test` then runs and passes.
#[tokio::test]
async fn a_case_recorded_as_a_scenario_replays() {
    let api = Api::new();
    let (_, inst) = api.call("POST", "/instances", Some("crm"), Some(START), &[]).await;
    let id = inst["id"].as_u64().unwrap();
    // Within the 10 minutes of a high-urgency complaint (the timer driver is not running here).
    api.clock.advance(Duration::minutes(5));
    let (_, inbox) = api.call("GET", "/tasks", Some("liu_yang"), None, &[]).await;
    let task = inbox["tasks"][0]["id"].as_str().unwrap().to_string();
    let done = Some(r#"{"fields":{"cause":"quality"}}"#);
    let (s, _) = api.call("POST", &format!("/tasks/{task}/complete"), Some("liu_yang"), done, &[]).await;
    assert_eq!(s, StatusCode::OK);
    api.clock.advance(Duration::days(3));
    while api.engine.fire_due(api.clock.now(), 100).unwrap() > 0 {}
    let get = |who: &'static str, uri: String| {
        let app = api.app.clone();
        async move {
            let req =
                Request::builder().uri(uri).header("authorization", format!("Bearer t-{who}")).body(Body::empty());
            let resp = app.oneshot(req.unwrap()).await.unwrap();
            let status = resp.status();
            let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
            let bytes = resp.into_body().collect().await.unwrap().to_bytes();
            (status, ctype, String::from_utf8(bytes.to_vec()).unwrap())
        }
    };
    let (s, ctype, recorded) = get("admin", format!("/instances/{id}/scenario")).await;
    assert_eq!((s, ctype.as_deref()), (StatusCode::OK, Some("text/plain; charset=utf-8")), "{recorded}");
    assert!(
        recorded.contains("complete = \"receive\"\nby = \"liu_yang\"\nfields = { cause = \"quality\" }"),
        "{recorded}"
    );
    assert!(recorded.contains("advance_to = \"2026-11-23T10:05\""), "{recorded}");
    assert!(recorded.contains("task_overdue@verify"), "{recorded}");
    let body = json!({ "scenarios": [{ "name": "recorded.toml", "text": recorded }] }).to_string();
    let (s, v) = api.call("POST", "/processes/complaint/test", Some("admin"), Some(&body), &[]).await;
    assert_eq!((s, &v["passed"]), (StatusCode::OK, &json!(1)), "{v}\n{recorded}");
    // Administrators only; an unknown case is a 404.
    assert_eq!(get("liu_yang", format!("/instances/{id}/scenario")).await.0, StatusCode::FORBIDDEN);
    assert_eq!(get("admin", "/instances/999/scenario".into()).await.0, StatusCode::NOT_FOUND);
}

/// A recording keeps every instant exactly and replays what the CRM did under the same rules:
/// a complaint started at 10:00:50 and answered at 10:10:30 met its 10:10:50 deadline, and a
/// field update by the CRM's service token (the rules' `integration` role) replays as it. A case
/// is found by its business key too.
#[tokio::test]
async fn a_recording_keeps_seconds_and_what_the_crm_did() {
    let api = Api::new();
    api.clock.advance(Duration::seconds(50));
    let (_, inst) = api.call("POST", "/instances", Some("crm"), Some(START), &[]).await;
    let (id, key) = (inst["id"].as_u64().unwrap(), inst["business_key"].as_str().unwrap().to_string());
    api.clock.advance(Duration::minutes(2));
    let more = Some(r#"{"fields":{"content":"投影仪无法开机，已重启两次"}}"#);
    let (s, v) = api.call("POST", &format!("/instances/{id}/fields"), Some("crm"), more, &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    api.clock.advance(Duration::seconds(7 * 60 + 40));
    let (_, inbox) = api.call("GET", "/tasks", Some("liu_yang"), None, &[]).await;
    let task = inbox["tasks"][0]["id"].as_str().unwrap().to_string();
    let done = Some(r#"{"fields":{"cause":"quality"}}"#);
    let (s, _) = api.call("POST", &format!("/tasks/{task}/complete"), Some("liu_yang"), done, &[]).await;
    assert_eq!(s, StatusCode::OK);
    let req = Request::builder()
        .uri(format!("/instances/{key}/scenario"))
        .header("authorization", "Bearer t-admin")
        .body(Body::empty())
        .unwrap();
    let resp = api.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "a business key names the case");
    let recorded = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(recorded.contains("start_at = \"2026-11-23T10:00:50\""), "{recorded}");
    assert!(recorded.contains("advance_to = \"2026-11-23T10:10:30\""), "{recorded}");
    assert!(recorded.contains("by = \"crm\""), "{recorded}");
    assert!(!recorded.contains("task_overdue"), "the deadline was met: {recorded}");
    let body = json!({ "scenarios": [{ "name": "recorded.toml", "text": recorded }] }).to_string();
    let (s, v) = api.call("POST", "/processes/complaint/test", Some("admin"), Some(&body), &[]).await;
    assert_eq!((s, &v["passed"]), (StatusCode::OK, &json!(1)), "{v}\n{recorded}");
}

/// `POST /processes/{id}/migrations`: a dry run reports where running cases would land and
/// changes nothing; applying moves them, each with a `migrated` history entry.
#[tokio::test]
async fn running_cases_migrate_to_a_new_version() {
    let api = Api::new();
    let (_, inst) = api.call("POST", "/instances", Some("crm"), Some(START), &[]).await;
    let id = inst["id"].as_u64().unwrap();
    let v2 =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/diff/complaint_v2.new.flow")).unwrap();
    let (s, _) = api.call("POST", "/processes", Some("admin"), Some(&json!({ "source": v2 }).to_string()), &[]).await;
    assert_eq!(s, StatusCode::CREATED);
    let body = |dry_run: bool| json!({ "from": 1, "to": 2, "dry_run": dry_run }).to_string();
    let (s, v) = api.call("POST", "/processes/complaint/migrations", Some("admin"), Some(&body(true)), &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["dry_run"], &v["cases"], &v["moved"], &v["refused"]),
        (&json!(true), &json!(1), &json!(1), &json!(0)),
        "{v}"
    );
    assert_eq!(v["landing"], json!({ "receive -> receive (stays)": 1 }), "{v}");
    assert_eq!(v["results"][0]["plan"]["tasks_kept"], json!([format!("{id}-2")]), "{v}");
    let (_, still) = api.call("GET", &format!("/instances/{id}"), Some("admin"), None, &[]).await;
    assert_eq!(still["version"], 1, "a dry run moves nothing: {still}");
    let (s, v) = api.call("POST", "/processes/complaint/migrations", Some("admin"), Some(&body(false)), &[]).await;
    assert_eq!((s, &v["moved"]), (StatusCode::OK, &json!(1)), "{v}");
    let (_, moved) = api.call("GET", &format!("/instances/{id}"), Some("admin"), None, &[]).await;
    assert_eq!(moved["version"], 2, "{moved}");
    let (_, history) = api.call("GET", &format!("/instances/{id}/history"), Some("admin"), None, &[]).await;
    let entries = history["history"].as_array().cloned().unwrap_or_default();
    let migrated = entries.iter().find(|h| h["event"] == "migrated").unwrap_or_else(|| panic!("{history}"));
    // The entry names the administrator who asked, not the engine.
    assert_eq!(migrated["actor"], "admin", "{migrated}");
    // A migrated case cannot be recorded as a scenario that replays: said, not written.
    let (s, v) = api.call("GET", &format!("/instances/{id}/scenario"), Some("admin"), None, &[]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("was migrated"), "{v}");
    // Nothing left on version 1: a second run finds no case.
    let (_, again) = api.call("POST", "/processes/complaint/migrations", Some("admin"), Some(&body(false)), &[]).await;
    assert_eq!(again["cases"], 0, "{again}");
    for (who, uri, body, status) in [
        ("crm", "/processes/complaint/migrations", body(true), StatusCode::FORBIDDEN),
        ("admin", "/processes/complaint/migrations", json!({ "from": 1, "to": 9 }).to_string(), StatusCode::NOT_FOUND),
        ("admin", "/processes/nothing/migrations", body(true), StatusCode::NOT_FOUND),
        (
            "admin",
            "/processes/complaint/migrations",
            json!({ "from": 2, "to": 2 }).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "admin",
            "/processes/complaint/migrations",
            json!({ "from": 1, "to": 2, "mapping": { "nope": "receive" } }).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "admin",
            "/processes/complaint/migrations",
            json!({ "from": 1, "to": 2, "x": 1 }).to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        let (s, v) = api.call("POST", uri, Some(who), Some(&body), &[]).await;
        assert_eq!(s, status, "{who} {uri} {body}: {v}");
    }
}
