//! What the HTTP tests share: an API over a temporary store and a manual clock, with a token
//! per role, and a copy of the rules to edit.
#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use caseflow::config::{sha256_hex, TokenConfig};
use caseflow::server::{router, AppState};
use caseflow_engine::clock::{Clock, ManualClock};
use caseflow_engine::Engine;
use chrono::{TimeZone, Utc};
use http_body_util::BodyExt;
use serde_json::Value;
use std::sync::Arc;
use tower::ServiceExt;

use caseflow_tests::shipped_rules as rules;

pub fn token(user: &str, roles: &[&str], admin: bool, service: bool) -> TokenConfig {
    TokenConfig {
        user: user.into(),
        sha256: sha256_hex(&format!("t-{user}")),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        admin,
        service,
    }
}

pub struct Api {
    pub app: axum::Router,
    pub engine: Arc<Engine>,
    pub clock: Arc<ManualClock>,
}

impl Api {
    pub fn new() -> Api {
        let engine = Arc::new(Engine::open(caseflow_tests::test_store(), rules()).unwrap());
        // On PostgreSQL, events come back through the database, as `caseflow serve` hears them.
        engine.listen_for_changes().unwrap();
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
        let state = Arc::new(AppState::new(engine.clone(), clock.clone(), tokens));
        Api { app: router(state, small_bodies()), engine, clock }
    }

    pub async fn call(
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
    pub async fn metric(&self, name: &str) -> f64 {
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
    pub async fn call_raw(&self, method: &str, uri: &str) -> (StatusCode, Value) {
        let req = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

pub const START: &str = r#"{"process":"complaint","fields":{"customer":"第一中学","contact":"138-0000-0000","content":"投影仪无法开机","urgency":"high"}}"#;

/// A copy of the shipped rules in a temporary folder, for reload tests.
pub struct RulesCopy(pub std::path::PathBuf);

impl RulesCopy {
    pub fn new(name: &str) -> RulesCopy {
        let dir = std::env::temp_dir().join(format!("caseflow-rules-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../rules")).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
        }
        RulesCopy(dir)
    }

    pub fn edit(&self, file: &str, from: &str, to: &str) {
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

pub fn api_with_rules(dir: &RulesCopy) -> Api {
    let mut api = Api::new();
    let files = caseflow::server::read_rules_dir_by_file_name(&dir.0).unwrap();
    let tokens = vec![
        token("admin", &[], true, false),
        token("crm", &[], false, true),
        token("li_na", &["cs_manager"], false, false),
    ];
    let state = Arc::new(AppState {
        rules_dir: Some(dir.0.clone()),
        rules_files: std::sync::Mutex::new(files),
        ..AppState::new(api.engine.clone(), api.clock.clone(), tokens)
    });
    api.app = router(state, small_bodies());
    api
}

pub fn small_bodies() -> caseflow::server::RequestLimits {
    caseflow::server::RequestLimits { body_bytes_max: 64 * 1024, ..Default::default() }
}
