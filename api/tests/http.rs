//! The HTTP API through the router, no socket: a whole complaint case, each error class, each
//! authorization rule.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use caseflow::config::{sha256_hex, TokenConfig};
use caseflow::server::{router, AppState};
use caseflow_engine::clock::{Clock, ManualClock};
use caseflow_engine::Storage;
use caseflow_engine::{Engine, Store};
use chrono::{Duration, TimeZone, Utc};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

use caseflow_tests::shipped_rules as rules;

fn token(user: &str, roles: &[&str], admin: bool, service: bool) -> TokenConfig {
    TokenConfig {
        user: user.into(),
        sha256: sha256_hex(&format!("t-{user}")),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        admin,
        service,
    }
}

struct Api {
    app: axum::Router,
    engine: Arc<Engine>,
    clock: Arc<ManualClock>,
}

impl Api {
    fn new() -> Api {
        let engine = Arc::new(Engine::open(Store::temporary().unwrap(), rules()).unwrap());
        let clock = Arc::new(ManualClock::new(
            chrono_tz::Asia::Shanghai.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap().with_timezone(&Utc),
        ));
        let source =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../processes/complaint.flow")).unwrap();
        engine.deploy(&source, clock.now()).unwrap();
        let tokens = vec![
            token("admin", &[], true, false),
            token("crm", &["integration"], false, true),
            token("liu_yang", &["cs_rep"], false, false),
            token("zhang_wei", &["cs_rep"], false, false),
            // A digest written in capitals matches too.
            TokenConfig {
                sha256: sha256_hex("t-chen_jie").to_uppercase(),
                ..token("chen_jie", &["engineer"], false, false)
            },
            token("li_na", &["cs_manager"], false, false),
        ];
        let state = Arc::new(AppState {
            engine: engine.clone(),
            clock: clock.clone(),
            tokens,
            metrics_need_token: false,
            rules_dir: None,
            rules_files: Default::default(),
            rules_refused: Default::default(),
            events: caseflow::server::event_channel(&engine),
            stopping: tokio::sync::watch::Sender::new(false),
        });
        Api { app: router(state, small_bodies()), engine, clock }
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        who: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(w) = who {
            req = req.header("authorization", format!("Bearer t-{w}"));
        }
        if body.is_some() && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(body.map_or_else(Body::empty, |b| Body::from(b.to_string()))).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            assert_eq!(ctype.as_deref(), Some("application/problem+json"), "{status}: errors are problem+json");
            assert!(v["type"].is_string() && v["title"].is_string() && v["detail"].is_string(), "{v}");
        }
        (status, v)
    }
}

impl Api {
    /// One figure of `/metrics`.
    async fn metric(&self, name: &str) -> f64 {
        let req = Request::builder().uri("/metrics").body(Body::empty()).unwrap();
        let bytes = self.app.clone().oneshot(req).await.unwrap().into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .parse()
            .unwrap()
    }

    /// A GET whatever its status, as JSON (for /health, whose 503 is not a problem).
    async fn call_raw(&self, method: &str, uri: &str) -> (StatusCode, Value) {
        let req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

const START: &str = r#"{"process":"complaint","fields":{"customer":"第一中学","contact":"138-0000-0000","content":"投影仪无法开机","urgency":"high"}}"#;

#[tokio::test]
async fn a_whole_complaint_case_over_http() {
    let api = Api::new();
    let (s, inst) = api.call("POST", "/instances", Some("crm"), Some(START), &[("idempotency-key", "crm-1")]).await;
    assert_eq!(s, StatusCode::CREATED, "{inst}");
    assert_eq!(inst["business_key"], "20261123-001");
    assert_eq!(inst["fields"]["contact"], "***", "sensitive fields are masked for service tokens");
    assert_eq!(inst["tasks"][0]["sla"]["allowed_minutes"], 10, "the SLA clock is visible: {inst}");
    assert_eq!(inst["tasks"][0]["sla"]["running"], true);
    let id = inst["id"].as_u64().unwrap();
    // The same idempotency key returns the same instance.
    let (_, again) = api.call("POST", "/instances", Some("crm"), Some(START), &[("idempotency-key", "crm-1")]).await;
    assert_eq!(again["id"], inst["id"]);
    // The assignee sees it in their inbox.
    let (_, inbox) = api.call("GET", "/tasks", Some("liu_yang"), None, &[]).await;
    let task = inbox["tasks"][0]["id"].as_str().unwrap().to_string();
    let (s, after) = api
        .call(
            "POST",
            &format!("/tasks/{task}/complete"),
            Some("liu_yang"),
            Some(r#"{"fields":{"cause":"quality"}}"#),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{after}");
    assert_eq!(after["fields"]["department"], "rnd");
    assert_eq!(after["fields"]["contact"], "138-0000-0000", "staff see sensitive fields");
    // Walk the rest.
    for (fields, who) in
        [("{}", "liu_yang"), (r#"{"resolved":true}"#, "liu_yang"), (r#"{"satisfaction":5}"#, "any"), ("{}", "any")]
    {
        let (_, inst) = api.call("GET", &format!("/instances/{id}"), Some("admin"), None, &[]).await;
        let t = &inst["tasks"][0];
        let who = if who == "any" { t["assignee"].as_str().unwrap().to_string() } else { who.to_string() };
        let body = format!(r#"{{"fields":{fields}}}"#);
        let (s, v) = api
            .call("POST", &format!("/tasks/{}/complete", t["id"].as_str().unwrap()), Some(&who), Some(&body), &[])
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (_, done) = api.call("GET", "/instances/by-key/20261123-001", Some("admin"), None, &[]).await;
    assert_eq!((&done["status"], &done["outcome"]), (&json!("completed"), &json!("closed")));
    let (_, history) = api.call("GET", &format!("/instances/{id}/history"), Some("admin"), None, &[]).await;
    let events: Vec<&str> =
        history["history"].as_array().unwrap().iter().map(|h| h["event"].as_str().unwrap()).collect();
    assert_eq!(events.first(), Some(&"started"));
    assert!(events.contains(&"decision_table") && events.contains(&"reached_end"), "{events:?}");
    // The integrator's token sees the phone number masked in the history too.
    let (_, masked) = api.call("GET", &format!("/instances/{id}/history"), Some("crm"), None, &[]).await;
    let started = &masked["history"][0]["changes"];
    let contact = started.as_array().unwrap().iter().find(|c| c["field"] == "contact").unwrap();
    assert_eq!(contact["new"], "***");
}

#[tokio::test]
async fn idempotency_keys_are_checked_scoped_to_the_caller_and_bound_to_the_request() {
    let api = Api::new();
    let key = |k: &'static str| [("idempotency-key", k)];
    let (s, first) = api.call("POST", "/instances", Some("crm"), Some(START), &key("crm-9")).await;
    assert_eq!(s, StatusCode::CREATED, "{first}");
    // The same body again: the same case.
    let (s, again) = api.call("POST", "/instances", Some("crm"), Some(START), &key("crm-9")).await;
    assert_eq!((s, &again["id"]), (StatusCode::CREATED, &first["id"]));
    // Another body under the same key: refused, nothing started.
    let other = START.replace("\"high\"", "\"low\"");
    let (s, v) = api.call("POST", "/instances", Some("crm"), Some(&other), &key("crm-9")).await;
    assert_eq!(
        (s, v["type"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("https://caseflow.dev/problems/idempotency-key-reused")),
        "{v}"
    );
    // Another caller's key of the same text is theirs: a case of their own.
    let (s, theirs) = api.call("POST", "/instances", Some("li_na"), Some(START), &key("crm-9")).await;
    assert_eq!(s, StatusCode::CREATED, "{theirs}");
    assert_ne!(theirs["id"], first["id"]);
    // A key that cannot be read is refused, not ignored (a retry would start a second case).
    for bad in [&b"\xe4\xb8\xad"[..], b"", &[b'k'; 201]] {
        let req = Request::builder()
            .method("POST")
            .uri("/instances")
            .header("authorization", "Bearer t-crm")
            .header("content-type", "application/json")
            .header("idempotency-key", axum::http::HeaderValue::from_bytes(bad).unwrap())
            .body(Body::from(START))
            .unwrap();
        assert_eq!(api.app.clone().oneshot(req).await.unwrap().status(), StatusCode::BAD_REQUEST, "{bad:?}");
    }
    let (s, _) = api
        .call("POST", "/instances", Some("crm"), Some(START), &[("idempotency-key", "a"), ("idempotency-key", "b")])
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "two keys");
    let (_, list) = api.call("GET", "/instances?process=complaint", Some("admin"), None, &[]).await;
    assert_eq!(list["instances"].as_array().map(Vec::len), Some(2), "{list}");
}

/// A manager may put a case on hold and take it off (the rules' `suspend` permission); a
/// representative may not.
#[tokio::test]
async fn managers_hold_and_resume_cases() {
    let api = Api::new();
    // A manager may put a case on hold and take it off (the `suspend` permission); a
    // representative may not.
    let (_, inst) = api.call("POST", "/instances", Some("crm"), Some(START), &[]).await;
    let hold = format!("/instances/{}/suspend", inst["id"]);
    assert_eq!(api.call("POST", &hold, Some("liu_yang"), None, &[]).await.0, StatusCode::FORBIDDEN);
    let (s, v) = api.call("POST", &hold, Some("li_na"), None, &[]).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("suspended")), "{v}");
    let (s, v) = api.call("POST", &format!("/instances/{}/resume", inst["id"]), Some("li_na"), None, &[]).await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("running")), "{v}");
}

#[tokio::test]
async fn every_error_class_is_a_clear_4xx() {
    let api = Api::new();
    let (s, v) = api.call("GET", "/instances/1", None, None, &[]).await;
    assert_eq!(
        (s, v["detail"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("no token: send `Authorization: Bearer TOKEN`"))
    );
    // A token was sent, and is wrong: said so, not "send a token".
    let (s, v) = api.call("GET", "/instances/1", Some("nobody"), None, &[]).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(v["detail"].as_str().unwrap().contains("not one this server knows"), "{v}");
    let (s, _) = api.call("POST", "/instances", Some("crm"), Some("{not json"), &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = api
        .call("POST", "/instances", Some("crm"), Some(r#"{"process":"complaint","fields":{},"extra":1}"#), &[])
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "unknown fields are refused: {v}");
    let (s, v) = api
        .call(
            "POST",
            "/instances",
            Some("crm"),
            Some(r#"{"process":"complaint","fields":{"customer":"x","contact":"y","content":"z","urgency":"urgent"}}"#),
            &[],
        )
        .await;
    assert_eq!((s, v["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("urgency")));
    let (s, _) = api.call("POST", "/instances", Some("crm"), Some(r#"{"process":"nope"}"#), &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let big = format!(r#"{{"process":"complaint","fields":{{"content":"{}"}}}}"#, "x".repeat(100_000));
    let (s, _) = api.call("POST", "/instances", Some("crm"), Some(&big), &[]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    let (s, _) = api.call("GET", "/instances/999", Some("admin"), None, &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api.call("GET", "/instances/abc", Some("admin"), None, &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = api.call("GET", "/no/such/route", Some("admin"), None, &[]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A known route with the wrong method: 405 as problem+json, with the methods it takes.
    let (s, v) = api.call("DELETE", "/instances", Some("admin"), None, &[]).await;
    assert_eq!(
        (s, v["type"].as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, Some("https://caseflow.dev/problems/method-not-allowed")),
        "{v}"
    );
    let req = Request::builder().method("PUT").uri("/tasks/1/complete").body(Body::empty()).unwrap();
    let resp = api.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers().get("allow").and_then(|v| v.to_str().ok()), Some("POST"));
    // Rejections raised before a handler runs are problems too: a path that is not UTF-8, a text
    // body that is not UTF-8 or too large.
    let (s, v) = api.call("GET", "/processes/%FF", Some("admin"), None, &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    for (body, status) in
        [(vec![b'a', 0xFF, b'b'], StatusCode::BAD_REQUEST), (vec![b'#'; 100_000], StatusCode::PAYLOAD_TOO_LARGE)]
    {
        let req = Request::builder()
            .method("PUT")
            .uri("/admin/rules/files/people.toml")
            .header("authorization", "Bearer t-admin")
            .header("content-type", "text/plain")
            .body(Body::from(body))
            .unwrap();
        let resp = api.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), status);
        let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string());
        assert_eq!(ctype.as_deref(), Some("application/problem+json"));
        let v: Value = serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    }
    // Nothing of the refused requests was stored.
    assert!(api.engine.instance(caseflow_core::case::InstanceId(1)).unwrap().is_none());
}

#[tokio::test]
async fn authorization_rules() {
    let api = Api::new();
    let (_, inst) = api.call("POST", "/instances", Some("crm"), Some(START), &[]).await;
    let task = inst["tasks"][0]["id"].as_str().unwrap().to_string();
    let complete = format!("/tasks/{task}/complete");
    let body = Some(r#"{"fields":{"cause":"quality"}}"#);
    // A service token may start cases, not work on tasks.
    assert_eq!(api.call("POST", &complete, Some("crm"), body, &[]).await.0, StatusCode::FORBIDDEN);
    // Staff outside the task's roles may not complete it.
    assert_eq!(api.call("POST", &complete, Some("chen_jie"), body, &[]).await.0, StatusCode::FORBIDDEN);
    // Nor read someone else's inbox.
    assert_eq!(api.call("GET", "/tasks?user=liu_yang", Some("chen_jie"), None, &[]).await.0, StatusCode::FORBIDDEN);
    // Only administrators deploy.
    assert_eq!(api.call("POST", "/processes", Some("li_na"), Some("process x {}"), &[]).await.0, StatusCode::FORBIDDEN);
    // A member of the candidate role may complete; the second completion loses the race: 409.
    assert_eq!(api.call("POST", &complete, Some("zhang_wei"), body, &[]).await.0, StatusCode::OK);
    assert_eq!(api.call("POST", &complete, Some("liu_yang"), body, &[]).await.0, StatusCode::CONFLICT);
}

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
    let engine = Engine::open(Store::temporary().unwrap(), rules()).unwrap();
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

/// A copy of the shipped rules in a temporary folder, for reload tests.
struct RulesCopy(std::path::PathBuf);

impl RulesCopy {
    fn new(name: &str) -> RulesCopy {
        let dir = std::env::temp_dir().join(format!("caseflow-rules-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../rules")).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
        RulesCopy(dir)
    }

    fn edit(&self, file: &str, from: &str, to: &str) {
        let p = self.0.join(file);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{file} lacks `{from}`");
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    }
}

impl Drop for RulesCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn api_with_rules(dir: &RulesCopy) -> Api {
    let mut api = Api::new();
    let files = caseflow::server::read_rules_dir_by_file_name(&dir.0).unwrap();
    let tokens = vec![
        token("admin", &[], true, false),
        token("crm", &[], false, true),
        token("li_na", &["cs_manager"], false, false),
    ];
    let state = Arc::new(AppState {
        engine: api.engine.clone(),
        clock: api.clock.clone(),
        tokens,
        metrics_need_token: false,
        rules_dir: Some(dir.0.clone()),
        rules_files: std::sync::Mutex::new(files),
        rules_refused: Default::default(),
        events: caseflow::server::event_channel(&api.engine),
        stopping: tokio::sync::watch::Sender::new(false),
    });
    api.app = router(state, small_bodies());
    api
}

#[tokio::test]
async fn metrics_can_require_a_token() {
    let mut api = Api::new();
    let state = Arc::new(AppState {
        engine: api.engine.clone(),
        clock: api.clock.clone(),
        tokens: vec![token("scraper", &[], false, true)],
        metrics_need_token: true,
        rules_dir: None,
        rules_files: Default::default(),
        rules_refused: Default::default(),
        events: caseflow::server::event_channel(&api.engine),
        stopping: tokio::sync::watch::Sender::new(false),
    });
    api.app = router(state, small_bodies());
    assert_eq!(api.call("GET", "/metrics", None, None, &[]).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.call("GET", "/metrics", Some("admin"), None, &[]).await.0,
        StatusCode::UNAUTHORIZED,
        "not configured here"
    );
    let req =
        Request::builder().uri("/metrics").header("authorization", "Bearer t-scraper").body(Body::empty()).unwrap();
    let resp = api.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
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
        engine: api.engine.clone(),
        clock: api.clock.clone(),
        tokens: vec![],
        metrics_need_token: false,
        rules_dir: Some(rules.0.clone()),
        rules_files: std::sync::Mutex::new(files),
        rules_refused: Default::default(),
        events: caseflow::server::event_channel(&api.engine),
        stopping: tokio::sync::watch::Sender::new(false),
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
async fn listing_with_cursor_pagination_metrics_and_request_ids() {
    let api = Api::new();
    for _ in 0..5 {
        assert_eq!(api.call("POST", "/instances", Some("crm"), Some(START), &[]).await.0, StatusCode::CREATED);
    }
    let (s, page1) = api.call("GET", "/instances?process=complaint&limit=2", Some("admin"), None, &[]).await;
    assert_eq!(s, StatusCode::OK, "{page1}");
    let ids =
        |v: &Value| v["instances"].as_array().unwrap().iter().map(|i| i["id"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!(ids(&page1), [1, 2]);
    let cursor = page1["next_cursor"].as_str().expect("cursors are strings on every list");
    let (_, page2) = api
        .call("GET", &format!("/instances?process=complaint&limit=2&cursor={cursor}"), Some("admin"), None, &[])
        .await;
    assert_eq!(ids(&page2), [3, 4]);
    let (_, page3) = api
        .call(
            "GET",
            &format!("/instances?process=complaint&limit=2&cursor={}", page2["next_cursor"].as_str().unwrap()),
            Some("admin"),
            None,
            &[],
        )
        .await;
    assert_eq!(ids(&page3), [5]);
    assert!(page3["next_cursor"].is_null());
    let (s, _) = api.call("GET", "/instances?process=complaint&status=bogus", Some("admin"), None, &[]).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // The role's inbox, two at a time, by deadline.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (s, page) = api.call("GET", &format!("/tasks?role=cs_rep&limit=2{cursor}"), Some("admin"), None, &[]).await;
        assert_eq!(s, StatusCode::OK, "{page}");
        seen.extend(page["tasks"].as_array().unwrap().iter().map(|t| t["due_at"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
    let (s, e) = api.call("GET", "/tasks?role=cs_rep&cursor=nonsense", Some("admin"), None, &[]).await;
    assert_eq!((s, e["type"].as_str()), (StatusCode::BAD_REQUEST, Some("https://caseflow.dev/problems/bad-cursor")));
    // Metrics in Prometheus text.
    let req = axum::http::Request::builder().uri("/metrics").body(Body::empty()).unwrap();
    let resp = api.app.clone().oneshot(req).await.unwrap();
    let text = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(text.contains("caseflow_instances{process=\"complaint\",status=\"running\"} 5"), "{text}");
    // Each receiving task: its deadline and two escalations (to the manager, to the director).
    assert!(text.contains("caseflow_timers_pending 15"), "{text}");
    // This server's store is temporary, without a write-ahead log.
    assert!(text.contains("caseflow_log_records_total 0\n"), "{text}");
    // A request id on every response; the caller's is kept.
    let req =
        axum::http::Request::builder().uri("/health").header("x-request-id", "abc-123").body(Body::empty()).unwrap();
    let resp = api.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    // The calendar's known holidays, as /health reports them (the clock: 2026-11-23).
    let (_, health) = api.call("GET", "/health", None, None, &[]).await;
    assert_eq!(health["calendar"], json!({ "covered_through": "2026-12-31", "days_left": 38, "status": "ending" }));
    let req = axum::http::Request::builder().uri("/nope").body(Body::empty()).unwrap();
    let resp = api.app.clone().oneshot(req).await.unwrap();
    assert!(resp.headers().contains_key("x-request-id"), "errors carry one too");
}

#[tokio::test]
async fn server_sent_events_stream_durable_changes_filtered() {
    let api = Api::new();
    let req = Request::builder()
        .uri("/events?process=complaint&types=task_opened,escalated")
        .header("authorization", "Bearer t-admin")
        .body(Body::empty())
        .unwrap();
    let resp = api.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    api.call("POST", "/instances", Some("crm"), Some(START), &[]).await;
    api.clock.advance(Duration::minutes(10));
    api.engine.fire_due(api.clock.now(), 10).unwrap();
    let mut text = String::new();
    while !text.contains("event: escalated") {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(5), body.frame())
            .await
            .expect("an event arrives")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert!(text.contains("event: task_opened"), "{text}");
    assert!(!text.contains("event: started"), "filtered by type: {text}");
    assert!(text.contains("\"business_key\":\"20261123-001\""), "{text}");
    // Each event's data has exactly the properties of the document's `Event`.
    let (_, spec) = api.call("GET", "/openapi.json", None, None, &[]).await;
    let declared: std::collections::BTreeSet<&str> =
        spec["components"]["schemas"]["Event"]["properties"].as_object().unwrap().keys().map(String::as_str).collect();
    for data in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
        let event: Value = serde_json::from_str(data).unwrap();
        let sent: std::collections::BTreeSet<&str> = event.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(sent, declared, "{data}");
    }
    // Without a token: 401.
    let req = Request::builder().uri("/events").body(Body::empty()).unwrap();
    assert_eq!(api.app.clone().oneshot(req).await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let api = Api::new();
    let (s, spec) = api.call("GET", "/openapi.json", None, None, &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(spec["openapi"], "3.1.0");
    // Routes and their documentation are registered together (`server::routes`), so the
    // router serves exactly the document's operations: each one answers, never with the
    // router's own "no such route" or 405.
    let mut checked = 0;
    let paths = spec["paths"].as_object().unwrap().clone();
    for (openapi_path, entry) in &paths {
        for method in ["get", "post", "put"] {
            if entry[method].is_object() {
                let uri = openapi_path
                    .split('/')
                    .map(|seg| if seg.starts_with('{') { "1" } else { seg })
                    .collect::<Vec<_>>()
                    .join("/");
                let req =
                    Request::builder().method(method.to_uppercase().as_str()).uri(&uri).body(Body::empty()).unwrap();
                let resp = api.app.clone().oneshot(req).await.unwrap();
                let status = resp.status();
                let body = resp.into_body().collect().await.unwrap().to_bytes();
                let text = String::from_utf8_lossy(&body);
                assert!(
                    status != StatusCode::METHOD_NOT_ALLOWED && !text.contains("no such route"),
                    "{method} {openapi_path} is documented but not routed: {status} {text}"
                );
                let op = &entry[method];
                assert!(op.is_object(), "{method} {openapi_path} is not in /openapi.json");
                // The errors the shared layers give are documented too, as problem+json.
                let responses = op["responses"].as_object().unwrap();
                // `[{}]` first marks a route anyone may call (a token is optional on /metrics).
                let requirements = op["security"].as_array().cloned().unwrap_or_default();
                let secured = requirements.first().is_some_and(|r| r.get("bearer").is_some());
                assert!(!requirements.is_empty(), "{method} {openapi_path}: security must be declared, public or not");
                for (status, needed) in [("401", secured), ("403", secured), ("404", openapi_path.contains('{'))] {
                    if needed {
                        let schema = &responses[status]["content"]["application/problem+json"]["schema"]["$ref"];
                        assert_eq!(schema, "#/components/schemas/Problem", "{method} {openapi_path} {status}");
                    }
                }
                // Every 2xx says what its body is.
                for (status, r) in responses.iter().filter(|(s, _)| s.starts_with('2')) {
                    assert!(r["content"].is_object(), "{method} {openapi_path} {status}: a body schema");
                }
                // And shows it: an example of the request body or of a 2xx body (on the media
                // type, or on the schema it refers to).
                let has_example = |media: &Value| {
                    let schema = &media["schema"];
                    let named =
                        schema["$ref"].as_str().map(|r| &spec["components"]["schemas"][r.rsplit('/').next().unwrap()]);
                    !media["example"].is_null()
                        || !schema["example"].is_null()
                        || !schema["examples"].is_null()
                        || named.is_some_and(|n| !n["example"].is_null() || !n["examples"].is_null())
                };
                let bodies = op["requestBody"]["content"].as_object().into_iter().flat_map(|c| c.values()).chain(
                    responses
                        .iter()
                        .filter(|(s, _)| s.starts_with('2'))
                        .flat_map(|(_, r)| r["content"].as_object().into_iter().flat_map(|c| c.values())),
                );
                assert!(bodies.into_iter().any(has_example), "{method} {openapi_path}: no example");
                // Generated clients group by tag and name and document by summary and description.
                for key in ["summary", "description", "operationId"] {
                    assert!(op[key].as_str().is_some_and(|t| !t.is_empty()), "{method} {openapi_path} has no {key}");
                }
                assert!(!op["summary"].as_str().unwrap().contains('\n'), "{method} {openapi_path}: a one-line summary");
                assert!(op["tags"].as_array().is_some_and(|t| t.len() == 1), "{method} {openapi_path} has no tag");
                // A parameter is in the path only where the path has it; the rest are query.
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let name = p["name"].as_str().unwrap();
                    let in_path = openapi_path.contains(&format!("{{{name}}}"));
                    if p["in"] != "header" {
                        let expected = if in_path { "path" } else { "query" };
                        assert_eq!(p["in"], expected, "{method} {openapi_path}: parameter `{name}`");
                    }
                    if name == "limit" {
                        assert_eq!((&p["schema"]["minimum"], &p["schema"]["maximum"]), (&json!(1), &json!(500)), "{p}");
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 28, "only {checked} routes found in the router");
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

#[tokio::test]
async fn reports_over_http() {
    let api = Api::new();
    api.call("POST", "/instances", Some("crm"), Some(START), &[]).await;
    let (s, r) =
        api.call("GET", "/reports?process=complaint&from=2026-11-01T00:00:00Z", Some("admin"), None, &[]).await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["cases"], 1);
    assert_eq!(r["by_field"]["urgency"]["high"], 1);
    assert_eq!(api.call("GET", "/reports?process=nope", Some("admin"), None, &[]).await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        api.call("GET", "/reports?process=complaint&from=yesterday", Some("admin"), None, &[]).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn every_bad_field_is_reported_at_once() {
    let api = Api::new();
    let body = r#"{"process":"complaint","fields":{"urgency":"urgent","contact":5,"colour":"red"}}"#;
    let (s, v) = api.call("POST", "/instances", Some("crm"), Some(body), &[]).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> =
        v["errors"].as_array().expect("an errors list").iter().map(|e| e["field"].as_str().unwrap()).collect();
    // Wrong choice, wrong type, unknown field, and the two required fields left out.
    for f in ["urgency", "contact", "colour", "customer", "content"] {
        assert!(fields.contains(&f), "{f} missing from {v}");
    }
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
    let engine = Engine::open(Store::temporary().unwrap(), rules()).unwrap();
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 2, 0, 0).unwrap();
    let (deployed, refused) = caseflow::server::deploy_folder(&engine, &dir, now).unwrap();
    assert_eq!(deployed, ["ping v1 (new)", "pong v1 (new)"]);
    assert_eq!(refused.len(), 2);
    assert!(refused.iter().all(|r| r.contains("FLOW037")), "{refused:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn permissions_of_the_rules_are_what_the_routes_allow() {
    let api = Api::new();
    let (_, inst) = api.call("POST", "/instances", Some("crm"), Some(START), &[]).await;
    let id = inst["id"].as_u64().unwrap();
    let task = inst["tasks"][0]["id"].as_str().unwrap().to_string();
    let holder = inst["tasks"][0]["assignee"].as_str().unwrap().to_string();
    let colleague = if holder == "liu_yang" { "zhang_wei" } else { "liu_yang" };
    // A colleague may not take over an assigned task by claiming it; a manager may (recorded).
    let claim = format!("/tasks/{task}/claim");
    assert_eq!(api.call("POST", &claim, Some(colleague), None, &[]).await.0, StatusCode::FORBIDDEN);
    let (s, v) = api.call("POST", &claim, Some(&holder), None, &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // A claim holds: another candidate may not complete it.
    let complete = format!("/tasks/{task}/complete");
    let body = Some(r#"{"fields":{"cause":"quality"}}"#);
    assert_eq!(api.call("POST", &complete, Some(colleague), body, &[]).await.0, StatusCode::FORBIDDEN);
    // Delegation: the assignee passes the task to a colleague who holds one of its roles.
    let delegate = format!("/tasks/{task}/delegate");
    let to = |u: &str| format!(r#"{{"to":"{u}","reason":"on leave"}}"#);
    assert_eq!(api.call("POST", &delegate, Some(colleague), Some(&to(colleague)), &[]).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        api.call("POST", &delegate, Some(&holder), Some(&to("chen_jie")), &[]).await.0,
        StatusCode::UNPROCESSABLE_ENTITY,
        "an engineer holds none of the task's roles"
    );
    let (s, v) = api.call("POST", &delegate, Some(&holder), Some(&to(colleague)), &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (v["tasks"][0]["assignee"].as_str(), v["tasks"][0]["delegated_by"].as_str()),
        (Some(colleague), Some(holder.as_str()))
    );
    // Reassigning one task: the `reassign` permission (managers) only.
    let reassign = format!("/tasks/{task}/reassign");
    assert_eq!(api.call("POST", &reassign, Some(colleague), Some(&to(&holder)), &[]).await.0, StatusCode::FORBIDDEN);
    let (s, v) = api.call("POST", &reassign, Some("li_na"), Some(&to(colleague)), &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The rules in force (the people list among them) and trying a table: `read_rules` only.
    let evaluate = "/admin/rules/tables/risk_level/evaluate";
    let inputs = Some(r#"{"inputs":{"probability":5,"impact":4}}"#);
    for who in ["crm", colleague] {
        assert_eq!(api.call("GET", "/admin/rules", Some(who), None, &[]).await.0, StatusCode::FORBIDDEN, "{who}");
        assert_eq!(api.call("POST", evaluate, Some(who), inputs, &[]).await.0, StatusCode::FORBIDDEN, "{who}");
    }
    for who in ["li_na", "admin"] {
        let (s, v) = api.call("GET", "/admin/rules", Some(who), None, &[]).await;
        assert!(s == StatusCode::OK && v["users"].is_array(), "{who}: {s} {v}");
        assert_eq!(api.call("POST", evaluate, Some(who), inputs, &[]).await.0, StatusCode::OK, "{who}");
    }
    assert_eq!(v["tasks"][0]["assignee"], colleague);
    assert_eq!(
        api.call("POST", &reassign, Some("li_na"), Some(&to("nobody")), &[]).await.0,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    // Moving all of a user's tasks: managers too, not representatives.
    let all = format!("/admin/users/{colleague}/reassign");
    assert_eq!(api.call("POST", &all, Some(&holder), Some(&to(&holder)), &[]).await.0, StatusCode::FORBIDDEN);
    let (s, v) = api.call("POST", &all, Some("li_na"), Some(&to(&holder)), &[]).await;
    assert_eq!((s, v["reassigned"].as_u64()), (StatusCode::OK, Some(1)));
    // Fields: the CRM's token acts in the `integration` role, which may update them; a
    // representative may not.
    let fields = format!("/instances/{id}/fields");
    let change = Some(r#"{"fields":{"content":"投影仪无法开机, 电源灯不亮"}}"#);
    assert_eq!(api.call("POST", &fields, Some(&holder), change, &[]).await.0, StatusCode::FORBIDDEN);
    let (s, v) = api.call("POST", &fields, Some("crm"), change, &[]).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["fields"]["contact"], "***", "a service token still sees sensitive fields masked");
    let (_, history) = api.call("GET", &format!("/instances/{id}/history"), Some("admin"), None, &[]).await;
    let events: Vec<&str> = history["history"].as_array().unwrap().iter().filter_map(|h| h["event"].as_str()).collect();
    assert!(
        events.contains(&"task_delegated") && events.contains(&"task_reassigned") && events.contains(&"fields_updated"),
        "{events:?}"
    );
}

#[tokio::test]
async fn piled_and_chained_execution() {
    let api = Api::new();
    for _ in 0..3 {
        api.call("POST", "/instances", Some("crm"), Some(START), &[]).await;
    }
    // Piled: one's inbox kept to one step, in pages.
    let (s, page) = api.call("GET", "/tasks?role=cs_rep&step=receive&limit=2", Some("liu_yang"), None, &[]).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let first: Vec<&Value> = page["tasks"].as_array().unwrap().iter().collect();
    assert_eq!(first.len(), 2);
    assert!(first.iter().all(|t| t["step"] == "receive"));
    let cursor = page["next_cursor"].as_str().unwrap();
    let (_, rest) = api
        .call("GET", &format!("/tasks?role=cs_rep&step=receive&limit=2&cursor={cursor}"), Some("liu_yang"), None, &[])
        .await;
    assert_eq!(rest["tasks"].as_array().unwrap().len(), 1);
    let (_, none) = api.call("GET", "/tasks?role=cs_rep&step=no_such_step", Some("liu_yang"), None, &[]).await;
    assert!(none["tasks"].as_array().unwrap().is_empty());
    // Chained: completing a task says which tasks of the case are now the caller's.
    let chained = "process chained {\n  source \"t\"\n  start -> first\n  task first { assign role cs_rep due 1h -> second }\n  task second { assign same as first due 1h -> done }\n  end done\n}\n";
    api.engine.deploy(chained, api.clock.now()).unwrap();
    let (_, case) =
        api.call("POST", "/instances", Some("crm"), Some(r#"{"process":"chained","fields":{}}"#), &[]).await;
    let task = case["tasks"][0]["id"].as_str().unwrap().to_string();
    let who = case["tasks"][0]["assignee"].as_str().unwrap().to_string();
    let (s, done) =
        api.call("POST", &format!("/tasks/{task}/complete"), Some(&who), Some(r#"{"fields":{}}"#), &[]).await;
    assert_eq!(s, StatusCode::OK, "{done}");
    let second = done["tasks"][0]["id"].clone();
    assert_eq!(done["next_for_you"], json!([second]), "{done}");
}

#[tokio::test]
async fn storage_failing_is_not_ready_refuses_writes_as_not_applied_and_recovers() {
    let api = Api::new();
    let store = api.engine.store();
    store.faults().arm(caseflow_engine::faults::FaultPoint::Apply, u32::MAX, caseflow_engine::faults::NO_SPACE);
    // Fill the memtable past what it may hold without applying: the apply fails.
    let mut i = 0u32;
    while store.degraded().is_none() && i < 100_000 {
        let mut b = caseflow_engine::store::Batch::default();
        b.insert(format!("z/{i:06}"), vec![1u8; 32]);
        let _ = store.write(b);
        i += 1;
    }
    let (s, health) = api.call_raw("GET", "/health").await;
    assert_eq!((s, health["status"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("degraded")), "{health}");
    assert_eq!(health["storage"]["status"], "failing");
    let before = api.engine.count_instances("complaint", "running").unwrap();
    let (s, e) = api.call("POST", "/instances", Some("crm"), Some(START), &[]).await;
    assert_eq!(
        (s, e["type"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("https://caseflow.dev/problems/storage")),
        "{e}"
    );
    assert_eq!(api.engine.count_instances("complaint", "running").unwrap(), before, "not applied means not applied");
    // Space again: the next write is taken, and the server is ready.
    store.faults().arm(caseflow_engine::faults::FaultPoint::Apply, 0, caseflow_engine::faults::NO_SPACE);
    let (s, _) = api.call("POST", "/instances", Some("crm"), Some(START), &[]).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, health) = api.call_raw("GET", "/health").await;
    assert_eq!((s, health["status"].as_str()), (StatusCode::OK, Some("ok")));
}

fn small_bodies() -> caseflow::server::RequestLimits {
    caseflow::server::RequestLimits { body_bytes_max: 64 * 1024, ..Default::default() }
}

#[tokio::test]
async fn a_parent_lists_every_sub_process_case_and_a_child_names_its_parent() {
    let api = Api::new();
    let survey = r#"
process survey {
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
process two_surveys {
  fields {
    school: text required
    first: int(1..5)
    second: int(1..5)
  }
  start -> first_survey
  call first_survey process survey {
    input school = school
    output first = score
    -> second_survey
  }
  call second_survey process survey {
    input school = school
    output second = score
    -> done
  }
  end done
}
"#;
    api.engine.deploy(survey, api.clock.now()).unwrap();
    api.engine.deploy(parent, api.clock.now()).unwrap();
    let start = r#"{"process":"two_surveys","fields":{"school":"二中"}}"#;
    let (s, p) = api.call("POST", "/instances", Some("crm"), Some(start), &[]).await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let first = &p["sub_cases"][0];
    assert_eq!(
        (&first["process"], &first["status"], &first["waited_for"]),
        (&json!("survey"), &json!("running"), &json!(true)),
        "{p}"
    );
    let first_id = first["id"].as_u64().unwrap();
    let (_, child) = api.call("GET", &format!("/instances/{first_id}"), Some("admin"), None, &[]).await;
    assert_eq!(child["parent"], p["id"], "{child}");
    assert_eq!(child["sub_cases"], json!([]), "a process without `call` has none");
    let task = child["tasks"][0]["id"].as_str().unwrap().to_string();
    let (s, v) = api
        .call("POST", &format!("/tasks/{task}/complete"), Some("admin"), Some(r#"{"fields":{"score":4}}"#), &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The ended child stays listed; the second is the one waited for now.
    let (_, p) = api.call("GET", &format!("/instances/{}", p["id"]), Some("admin"), None, &[]).await;
    let listed: Vec<(u64, &str, bool)> = p["sub_cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_u64().unwrap(), c["status"].as_str().unwrap(), c["waited_for"].as_bool().unwrap()))
        .collect();
    assert_eq!(listed.len(), 2, "{p}");
    assert_eq!(listed[0], (first_id, "completed", false), "{p}");
    assert_eq!((listed[1].1, listed[1].2), ("running", true), "{p}");
    assert_eq!(p["fields"]["first"], 4);
}

#[tokio::test]
async fn an_unknown_task_is_404_a_closed_one_409_and_limits_are_enforced() {
    let api = Api::new();
    let (_, inst) = api.call("POST", "/instances", Some("crm"), Some(START), &[]).await;
    // One shape per concept: the status a name, a timer's kind internally tagged.
    assert_eq!((&inst["status"], &inst["outcome"], &inst["incident"]), (&json!("running"), &Value::Null, &Value::Null));
    let kinds: Vec<&str> =
        inst["timers"].as_array().unwrap().iter().map(|t| t["kind"]["kind"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"due"), "{inst}");
    assert!(inst["timers"].as_array().unwrap().iter().all(|t| t["kind"]["task"].is_u64()), "{inst}");
    let id = inst["id"].as_u64().unwrap();
    let (s, v) =
        api.call("POST", &format!("/tasks/{id}-999/complete"), Some("admin"), Some(r#"{"fields":{}}"#), &[]).await;
    assert_eq!(
        (s, v["type"].as_str()),
        (StatusCode::NOT_FOUND, Some("https://caseflow.dev/problems/unknown-task")),
        "{v}"
    );
    let task = inst["tasks"][0]["id"].as_str().unwrap().to_string();
    let (s, v) = api
        .call("POST", &format!("/tasks/{task}/complete"), Some("admin"), Some(r#"{"fields":{"cause":"quality"}}"#), &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = api
        .call("POST", &format!("/tasks/{task}/complete"), Some("admin"), Some(r#"{"fields":{"cause":"quality"}}"#), &[])
        .await;
    assert_eq!(
        (s, v["type"].as_str()),
        (StatusCode::CONFLICT, Some("https://caseflow.dev/problems/task-not-open")),
        "{v}"
    );
    for bad in ["0", "501"] {
        for path in [format!("/instances?process=complaint&limit={bad}"), format!("/tasks?limit={bad}")] {
            let (s, v) = api.call("GET", &path, Some("admin"), None, &[]).await;
            assert_eq!((s, v["field"].as_str()), (StatusCode::BAD_REQUEST, Some("limit")), "{path}: {v}");
        }
    }
    assert_eq!(api.call("GET", "/tasks?limit=500", Some("admin"), None, &[]).await.0, StatusCode::OK);
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

/// Every problem kind the server's code can answer is listed in the document's `Problem.type`
/// enum (and every listed kind is used), so clients can match on them.
#[tokio::test]
async fn every_problem_type_the_code_uses_is_declared() {
    let api = Api::new();
    let (_, spec) = api.call("GET", "/openapi.json", None, None, &[]).await;
    let declared: std::collections::BTreeSet<String> = spec["components"]["schemas"]["Problem"]["properties"]["type"]
        ["enum"]
        .as_array()
        .expect("an enum of problem types")
        .iter()
        .map(|v| v.as_str().unwrap().trim_start_matches("https://caseflow.dev/problems/").to_string())
        .collect();
    // Every file of the server but the one that declares the kinds.
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src/server"));
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let code: String = files
        .iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "openapi.rs"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let mut used = std::collections::BTreeSet::new();
    // The first string after each `ApiError::new(StatusCode::X,` and `kind:`, each `problems/KIND`,
    // and the kinds given to errors from below the handlers.
    let first_string = |rest: &str| rest.split('"').nth(1).map(str::to_string);
    for (i, _) in code.match_indices("ApiError::new(") {
        let rest = &code[i + "ApiError::new(".len()..];
        if rest.trim_start().starts_with("StatusCode::") {
            used.extend(first_string(rest));
        }
    }
    for (i, _) in code.match_indices("kind: \"") {
        used.extend(first_string(&code[i..]));
    }
    for (i, _) in code.match_indices("problems/") {
        let rest = &code[i + "problems/".len()..];
        used.insert(rest.chars().take_while(|c| c.is_ascii_lowercase() || *c == '-').collect());
    }
    for line in code[code.find("async fn problem_for_bare_errors").unwrap()..].lines().take(40) {
        if let Some((_, k)) = line.trim().split_once("=> \"") {
            used.insert(k.trim_end_matches("\",").to_string());
        }
    }
    used.retain(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
    assert!(used.len() >= 30, "found only {used:?}");
    let undeclared: Vec<_> = used.difference(&declared).collect();
    assert!(undeclared.is_empty(), "used but not declared: {undeclared:?}");
    let unused: Vec<_> = declared.difference(&used).collect();
    assert!(unused.is_empty(), "declared but never used: {unused:?}");
}

/// `docs/openapi.json` is the document the server serves: the Rust client (`api/client`) is
/// generated from it at build time. `UPDATE_EXPECT=1` rewrites it.
#[tokio::test]
async fn docs_openapi_json_is_the_served_document() {
    let api = Api::new();
    let (_, served) = api.call("GET", "/openapi.json", None, None, &[]).await;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json");
    let text = serde_json::to_string_pretty(&served).unwrap() + "\n";
    if std::env::var("UPDATE_EXPECT").is_ok() {
        std::fs::write(path, &text).unwrap();
    }
    let file: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(file == served, "docs/openapi.json differs from the served document: run UPDATE_EXPECT=1 cargo test -p caseflow --test http docs_openapi");
}

/// The token is checked before anything else: without one, a malformed body, query or path is
/// still 401, and says nothing about what would be accepted.
#[tokio::test]
async fn no_token_is_401_before_the_input_is_looked_at() {
    let api = Api::new();
    for (method, path, body) in [
        ("POST", "/instances", Some("{not json")),
        ("GET", "/tasks?limit=0", None),
        ("GET", "/instances/not-a-number", None),
        ("POST", "/tasks/1-1/complete", Some(r#"{"fields":7}"#)),
        ("POST", "/admin/rules/tables/nope/evaluate", Some("[]")),
    ] {
        let (s, v) = api.call(method, path, None, body, &[]).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{method} {path}: {v}");
    }
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
