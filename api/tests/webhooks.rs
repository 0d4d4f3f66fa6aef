//! Webhooks from the durable outbox: signed, in order, retried after a failure, removed from
//! the outbox only once delivered.

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use caseflow::config::WebhookConfig;
use caseflow::webhooks::{deliver, signature};
use caseflow_core::case::Actor;
use caseflow_core::value::Value;
use caseflow_engine::Engine;
use std::sync::{Arc, Mutex};

use caseflow_tests::shipped_rules as rules;

#[derive(Default)]
struct Received {
    calls: usize,
    events: Vec<(String, String, String)>, // (event, signature, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_delivered_signed_in_order_and_retried() {
    // A receiver that fails its first call.
    let received = Arc::new(Mutex::new(Received::default()));
    let r = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| {
            let r = r.clone();
            async move {
                let mut r = r.lock().unwrap();
                r.calls += 1;
                if r.calls == 1 {
                    return StatusCode::INTERNAL_SERVER_ERROR;
                }
                let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
                r.events.push((h("x-caseflow-event"), h("x-caseflow-signature"), body));
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let engine = Arc::new(Engine::open(caseflow_tests::test_store(), rules()).unwrap());
    // On PostgreSQL, events come back through the database, as `caseflow serve` hears them.
    engine.listen_for_changes().unwrap();
    engine.enable_outbox();
    let now = chrono::DateTime::parse_from_rfc3339("2026-11-23T02:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../processes/complaint.flow")).unwrap();
    engine.deploy(&source, now).unwrap();
    let fields = [("customer", "c"), ("contact", "138"), ("content", "x"), ("urgency", "high")]
        .iter()
        .map(|(k, v)| (k.to_string(), Value::Text(v.to_string())))
        .collect();
    let crm = Actor { id: "crm".into(), roles: vec![], admin: false };
    let inst = engine.start("complaint", fields, &crm, None, now).unwrap();
    let expected = engine.history(inst.id).unwrap().len();

    let hooks = vec![WebhookConfig { url: format!("http://{addr}/hook"), secret: "s3cret".into(), events: vec![] }];
    let worker = tokio::spawn(deliver(engine.clone(), hooks, std::time::Duration::from_millis(10)));
    // Wait (bounded) for delivery over the network, and for the worker to take the last one
    // off the outbox once its answer came back (the receiver records an event before it
    // answers, so the worker may not have heard yet).
    for _ in 0..500 {
        let all_received = received.lock().unwrap().events.len() >= expected;
        if all_received && engine.outbox_peek(10).unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    worker.abort();
    let r = received.lock().unwrap();
    assert_eq!(r.events.len(), expected, "every history entry delivered once it succeeded");
    assert!(r.calls > expected, "the first failure was retried");
    let mut last_seq = None;
    for (event, sig, body) in &r.events {
        assert_eq!(*sig, signature("s3cret", body.as_bytes()), "signed with the webhook's secret");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["event"], event.as_str());
        let seq = v["seq"].as_u64().unwrap();
        assert!(last_seq.is_none_or(|l| seq > l), "in order");
        last_seq = Some(seq);
    }
    assert_eq!(r.events[0].0, "started");
    assert!(engine.outbox_peek(10).unwrap().is_empty(), "delivered events leave the outbox");
}
