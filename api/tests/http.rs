//! The HTTP API through the router, no socket: a whole complaint case, each error class, each
//! authorization rule, events, the OpenAPI document. (The process owners' and administrators'
//! endpoints are in `http_owners.rs`.)

use axum::body::Body;
use axum::http::{Request, StatusCode};
use caseflow::server::{router, AppState};
use caseflow_engine::clock::Clock;
use caseflow_engine::Storage;
use chrono::Duration;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

mod common;
use common::*;

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

#[tokio::test]
async fn metrics_can_require_a_token() {
    let mut api = Api::new();
    let state = Arc::new(AppState {
        metrics_need_token: true,
        ..AppState::new(api.engine.clone(), api.clock.clone(), vec![token("scraper", &[], false, true)])
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
    if caseflow_tests::on_postgres() {
        // What the node asked of the database: at least a commit per start.
        let commits = text.lines().find_map(|l| l.strip_prefix("caseflow_db_commits_total ")).expect("db figures");
        assert!(commits.parse::<u64>().unwrap() >= 5, "{text}");
        assert!(!text.contains("caseflow_log_records_total"), "no sled figures on PostgreSQL: {text}");
    } else {
        // This server's store is temporary, without a write-ahead log.
        assert!(text.contains("caseflow_log_records_total 0\n"), "{text}");
        assert!(!text.contains("caseflow_db_commits_total"), "{text}");
    }
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
        for method in ["get", "post", "put", "delete"] {
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
                for (status, r) in responses.iter().filter(|(s, _)| s.starts_with('2') && *s != "204") {
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
                // (An operation that takes and answers no body, as a DELETE, has none to show.)
                let bodies: Vec<&Value> = bodies.collect();
                assert!(
                    bodies.is_empty() || bodies.into_iter().any(has_example),
                    "{method} {openapi_path}: no example"
                );
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
    if caseflow_tests::on_postgres() {
        // Faults are injected into sled's file layer; PostgreSQL's own faults (a crash, a
        // restart, a failover) are `tests/failover.rs`.
        return;
    }
    let api = Api::new();
    let store = api.engine.store().sled().expect("the tests run on sled");
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

/// `POST /admin/backup` writes a copy of the running store into `backup_dir`, which `caseflow
/// import` (`storage::dump::load`) restores with every case; administrators only; a server
/// without a backup folder refuses.
#[tokio::test]
async fn an_administrator_backs_up_the_running_store_and_the_copy_restores_every_case() {
    let mut api = Api::new();
    let (s, _) = api.call("POST", "/admin/backup", Some("admin"), None, &[]).await;
    assert_eq!(s, StatusCode::CONFLICT, "no backup folder: none taken");
    let dir = std::env::temp_dir().join(format!("caseflow-http-backup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let tokens = vec![common::token("admin", &[], true, false), common::token("crm", &["integration"], false, true)];
    let state = Arc::new(AppState {
        backup_dir: Some(dir.clone()),
        ..AppState::new(api.engine.clone(), api.clock.clone(), tokens)
    });
    api.app = router(state, common::small_bodies());
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (s, v) = api.call("POST", "/instances", Some("crm"), Some(START), &[]).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        ids.push(v["id"].as_u64().unwrap());
    }
    let (s, v) = api.call("POST", "/admin/backup", Some("crm"), None, &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    let (s, v) = api.call("POST", "/admin/backup", Some("admin"), None, &[]).await;
    if caseflow_tests::on_postgres() {
        // The database is backed up with its own tools.
        assert_eq!(
            (s, v["type"].as_str()),
            (StatusCode::CONFLICT, Some("https://caseflow.dev/problems/backup-not-here"))
        );
        assert!(v["detail"].as_str().unwrap().contains("pg_dump"), "{v}");
        assert!(!dir.exists(), "nothing written");
        return;
    }
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["cases"], 3);
    let file = std::path::PathBuf::from(v["file"].as_str().unwrap());
    assert!(file.starts_with(&dir) && file.is_file(), "{v}");
    let restored = caseflow_engine::MemoryStore::new();
    let open = || -> std::io::Result<Box<dyn std::io::Read>> { Ok(Box::new(std::fs::File::open(&file)?)) };
    caseflow_engine::storage::dump::load(&restored, &open).unwrap();
    let engine = caseflow_engine::Engine::open(restored, caseflow_tests::shipped_rules()).unwrap();
    for id in ids {
        let inst = engine.instance(caseflow_core::case::InstanceId(id)).unwrap().expect("the case is in the copy");
        assert_eq!(Some(&inst), api.engine.instance(inst.id).unwrap().as_ref());
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Search by case data: `field.NAME=VALUE` over the fields the process indexes (on PostgreSQL,
/// any field neither sensitive nor a list), paged by cursor; a field it cannot be searched by,
/// or an unknown parameter, is refused with 400.
#[tokio::test]
async fn cases_are_searched_by_indexed_fields_a_page_at_a_time() {
    let api = Api::new();
    let mut ids = Vec::new();
    for (customer, urgency) in [("第一中学", "high"), ("第二中学", "high"), ("第一中学", "low"), ("第一中学", "high")]
    {
        let body = json!({"process": "complaint", "fields": {"customer": customer, "contact": "138", "content": "投影仪无法开机", "urgency": urgency}});
        let (s, v) = api.call("POST", "/instances", Some("crm"), Some(&body.to_string()), &[]).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        ids.push(v["id"].clone());
    }
    let school = "%E7%AC%AC%E4%B8%80%E4%B8%AD%E5%AD%A6"; // 第一中学
    let list = |query: String| {
        let api = &api;
        async move { api.call("GET", &format!("/instances?process=complaint&{query}"), Some("crm"), None, &[]).await }
    };
    let ids_of = |page: &Value| -> Vec<Value> {
        page["instances"].as_array().unwrap().iter().map(|i| i["id"].clone()).collect()
    };
    let (s, page) = list(format!("field.customer={school}&limit=2")).await;
    assert_eq!(s, StatusCode::OK, "{page}");
    assert_eq!(ids_of(&page), vec![ids[0].clone(), ids[2].clone()]);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, page) = list(format!("field.customer={school}&limit=2&cursor={cursor}")).await;
    assert_eq!(ids_of(&page), vec![ids[3].clone()]);
    assert!(page["next_cursor"].is_null(), "{page}");
    let (_, page) = list(format!("field.customer={school}&field.urgency=high")).await;
    assert_eq!(ids_of(&page), vec![ids[0].clone(), ids[3].clone()]);
    // A field the process does not index: searched on PostgreSQL (through the cases'
    // documents), refused on sled.
    let (s, page) = list("field.channel=phone&field.urgency=high".to_string()).await;
    match caseflow_tests::on_postgres() {
        true => assert_eq!(ids_of(&page), vec![ids[0].clone(), ids[1].clone(), ids[3].clone()], "{page}"),
        false => assert_eq!((s, &page["field"]), (StatusCode::BAD_REQUEST, &json!("field.channel")), "{page}"),
    }
    for (query, field) in [
        // Sensitive: never searched by.
        ("field.contact=x", "field.contact"),
        ("feld.customer=x", "feld.customer"),
        ("started_after=yesterday", "started_after"),
    ] {
        let (s, v) = list(query.to_string()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{query}: {v}");
        assert_eq!(v["field"], field, "{v}");
    }
}
