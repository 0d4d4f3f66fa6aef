//! Signing in and out, the session cookie, and the two extractors every console handler
//! starts with: `Staff` (the signed-in person, or a redirect to the sign-in page) and `Posted`
//! (a form sent by them from our own pages: same origin, CSRF token checked).
//!
//! A session is a random 256-bit token in an `HttpOnly`, `SameSite=Lax` cookie (`Secure` when
//! the server is behind HTTPS); the store keeps only its SHA-256, with the person, the times
//! and its CSRF token, so sessions survive restarts and can be listed and ended. It expires
//! after `idle` without a request and after `absolute` in any case, on the server's clock.
//! Failed sign-ins are counted per user name and per address and slowed down past a few; the
//! answer is the same whether the user exists or not.

use super::i18n::Lang;
use super::layout::{self, page, Flash};
use crate::passwords;
use crate::server::Shared;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Query, Request, State};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use caseflow_core::case::Actor;
use caseflow_engine::service::accounts::{self, SessionRecord};
use caseflow_engine::sync::Unpoisoned;
use chrono::{DateTime, Utc};
use maud::html;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

pub const COOKIE: &str = "caseflow_session";

/// How sessions live, from `caseflow.toml`'s `[console]`.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    /// A session ends after this long without a request.
    pub idle: chrono::Duration,
    /// And after this long in any case.
    pub absolute: chrono::Duration,
    /// Mark the cookie `Secure`: the server is reached over HTTPS (behind a proxy that
    /// terminates it, or serving it itself).
    pub secure_cookies: bool,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            idle: chrono::Duration::minutes(30),
            absolute: chrono::Duration::hours(12),
            secure_cookies: false,
        }
    }
}

/// The console's state beside the engine: its settings and the failed sign-ins.
#[derive(Default)]
pub struct ConsoleState {
    pub settings: ConsoleSettings,
    failures: Mutex<HashMap<String, Failures>>,
    /// Failed sign-ins since the start, for `/metrics`.
    pub failed_signins: std::sync::atomic::AtomicU64,
    /// The open inboxes' live updates.
    pub live: std::sync::Arc<super::live::LiveUpdates>,
}

impl ConsoleState {
    pub fn new(settings: ConsoleSettings) -> Self {
        ConsoleState { settings, ..Default::default() }
    }
}

/// Failed sign-ins in a row for one user name or one address.
#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: DateTime<Utc>,
}

/// Failures allowed before each further attempt must wait (per user name; an address, which
/// many people may share behind one router, gets more).
const FREE_FAILURES_PER_USER: u32 = 5;
const FREE_FAILURES_PER_ADDRESS: u32 = 20;
/// The wait doubles with each failure past the free ones, up to this.
const LOCKOUT_MAX_SECS: i64 = 15 * 60;
/// A count is forgotten after this long without a failure.
const FAILURES_FORGOTTEN_AFTER_SECS: i64 = 60 * 60;

impl Failures {
    /// Until when further attempts are refused.
    fn locked_until(&self, free: u32) -> Option<DateTime<Utc>> {
        let over = self.count.checked_sub(free)?;
        let secs = 1i64.checked_shl(over.min(20)).unwrap_or(LOCKOUT_MAX_SECS).min(LOCKOUT_MAX_SECS);
        Some(self.last + chrono::Duration::seconds(secs))
    }
}

impl ConsoleState {
    /// When the sign-in of `user` from `address` may be tried again, if not now.
    fn locked(&self, user: &str, address: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let failures = self.failures.lock().unpoisoned();
        [(format!("user:{user}"), FREE_FAILURES_PER_USER), (format!("addr:{address}"), FREE_FAILURES_PER_ADDRESS)]
            .iter()
            .filter_map(|(k, free)| failures.get(k).and_then(|f| f.locked_until(*free)))
            .filter(|until| *until > now)
            .max()
    }

    fn failed(&self, user: &str, address: &str, now: DateTime<Utc>) {
        self.failed_signins.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut failures = self.failures.lock().unpoisoned();
        let forget = chrono::Duration::seconds(FAILURES_FORGOTTEN_AFTER_SECS);
        failures.retain(|_, f| now - f.last < forget);
        for key in [format!("user:{user}"), format!("addr:{address}")] {
            let f = failures.entry(key).or_insert(Failures { count: 0, last: now });
            f.count += 1;
            f.last = now;
        }
    }

    fn succeeded(&self, user: &str) {
        self.failures.lock().unpoisoned().remove(&format!("user:{user}"));
    }
}

/// The signed-in person: who they are to the engine, their display name, and their session's
/// CSRF token for the forms of the page.
pub struct Staff {
    pub actor: Actor,
    pub name: String,
    pub csrf: String,
    /// Holds the `reassign` permission: the team page is theirs.
    pub may_reassign: bool,
    /// The language their pages are in.
    pub lang: Lang,
    pub(super) digest: [u8; 32],
}

fn digest_of(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|c| {
        let (name, value) = c.trim().split_once('=')?;
        (name == COOKIE && !value.is_empty()).then(|| value.to_string())
    })
}

/// Where a person who is not signed in is sent: the sign-in page, then back here.
fn to_sign_in(parts: &Parts) -> Response {
    let here = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/ui/inbox");
    let next = if parts.method == axum::http::Method::GET { here } else { "/ui/inbox" };
    let target = format!("/ui/login?next={}", urlencode(next));
    // A script's fetch (live updates) gets a status it can act on, not a page.
    if parts.headers.get("x-requested-with").is_some() {
        return (StatusCode::UNAUTHORIZED, [(header::LOCATION, target)]).into_response();
    }
    Redirect::to(&target).into_response()
}

pub(super) fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[axum::async_trait]
impl FromRequestParts<Shared> for Staff {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Response> {
        let Some(token) = cookie_token(&parts.headers) else { return Err(to_sign_in(parts)) };
        let lang = Lang::of(&parts.headers);
        let digest = digest_of(&token);
        let s = state.clone();
        let now = state.clock.now();
        let found = tokio::task::spawn_blocking(move || -> Result<Option<Staff>, caseflow_engine::EngineError> {
            let settings = &s.console.settings;
            let Some(mut session) = accounts::session(s.engine.store(), &digest)? else { return Ok(None) };
            let rules = s.engine.rules();
            // A person removed from the rules is signed out everywhere at their next request.
            let user = rules.users.get(&session.user);
            if session.expired(now, settings.idle, settings.absolute) || user.is_none() {
                accounts::end_sessions(s.engine.store(), &[digest])?;
                return Ok(None);
            }
            let user = user.expect("checked above");
            // Seen again: at most one write a minute per session.
            if now - session.last_seen_at >= chrono::Duration::minutes(1) {
                session.last_seen_at = now;
                accounts::put_session(s.engine.store(), &digest, &session)?;
            }
            let actor = Actor { id: user.id.clone(), roles: user.roles.clone(), admin: false };
            Ok(Some(Staff {
                may_reassign: rules.permits(&actor, "reassign"),
                actor,
                name: user.name.clone().unwrap_or_else(|| user.id.clone()),
                csrf: session.csrf,
                lang,
                digest,
            }))
        })
        .await;
        match found {
            Ok(Ok(Some(staff))) => Ok(staff),
            Ok(Ok(None)) => Err(to_sign_in(parts)),
            Ok(Err(e)) => Err(layout::error_page(
                lang,
                StatusCode::SERVICE_UNAVAILABLE,
                &lang.f("store-failed", &[("error", e.to_string().into())]),
            )),
            Err(_) => Err(layout::error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, &lang.t("request-failed"))),
        }
    }
}

/// Whether a state-changing request comes from our own pages: a browser names the page's
/// origin (`Origin`) and says whether it is the same site (`Sec-Fetch-Site`); either naming
/// another site is refused. Clients that send neither (curl) still need the CSRF token.
fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_ok = match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        None => true,
        Some(origin) => {
            let authority = origin.split_once("://").map(|(_, a)| a);
            authority.is_some() && authority == host
        }
    };
    let site_ok = match headers.get("sec-fetch-site").and_then(|s| s.to_str().ok()) {
        None | Some("same-origin") | Some("none") => true,
        Some(_) => false,
    };
    origin_ok && site_ok
}

/// A form posted by the signed-in person from one of our pages: its fields in order (a list
/// field repeats its name), the CSRF token checked and taken out.
pub struct Posted {
    pub staff: Staff,
    pub fields: Vec<(String, String)>,
}

impl Posted {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[axum::async_trait]
impl FromRequest<Shared> for Posted {
    type Rejection = Response;

    async fn from_request(req: Request, state: &Shared) -> Result<Self, Response> {
        let lang = Lang::of(req.headers());
        if !same_origin(req.headers()) {
            return Err(layout::error_page(lang, StatusCode::FORBIDDEN, &lang.t("form-from-another-site")));
        }
        let (mut parts, body) = req.into_parts();
        let staff = Staff::from_request_parts(&mut parts, state).await?;
        let req = Request::from_parts(parts, body);
        let axum::Form(mut fields) =
            axum::Form::<Vec<(String, String)>>::from_request(req, state).await.map_err(|e| {
                layout::error_page(
                    lang,
                    StatusCode::BAD_REQUEST,
                    &lang.f("form-unreadable", &[("error", e.to_string().into())]),
                )
            })?;
        let sent = fields.iter().position(|(k, _)| k == "_csrf").map(|i| fields.remove(i).1).unwrap_or_default();
        let equal: bool = subtle::ConstantTimeEq::ct_eq(sent.as_bytes(), staff.csrf.as_bytes()).into();
        if !equal {
            return Err(layout::error_page(lang, StatusCode::FORBIDDEN, &lang.t("form-out-of-date")));
        }
        Ok(Posted { staff, fields })
    }
}

/// A random token, 256 bits, as hex.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn session_cookie(state: &Shared, token: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if state.console.settings.secure_cookies { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    ))
    .expect("a token is header-safe")
}

#[derive(serde::Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// Only our own pages are places to go back to after signing in (no open redirect).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if n.starts_with("/ui/") && !n.starts_with("//") && !n.contains('\\') => n,
        _ => "/ui/inbox",
    }
}

fn login_form(l: Lang, next: &str, user: &str, flash: Option<Flash>) -> maud::Markup {
    html! {
        h1 { (l.t("sign-in")) }
        @if let Some(f) = flash { (f) }
        form.signin method="post" action="/ui/login" {
            input type="hidden" name="next" value=(next);
            label { (l.t("user-name")) input name="user" value=(user) autocomplete="username" required autofocus; }
            label { (l.t("password")) input name="password" type="password" autocomplete="current-password" required; }
            button type="submit" { (l.t("sign-in")) }
        }
        p.hint { (l.t("first-password-hint")) " (" code { "caseflow user password" } ")" }
    }
}

pub async fn login_page(Query(q): Query<LoginQuery>, headers: HeaderMap) -> Response {
    let l = Lang::of(&headers);
    let next = safe_next(q.next.as_deref());
    page(l, &l.t("sign-in"), None, login_form(l, next, "", None)).into_response()
}

pub async fn login(
    State(state): State<Shared>,
    peer: Option<ConnectInfo<SocketAddr>>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<Vec<(String, String)>>,
) -> Response {
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let (user, password) = (field("user").trim().to_string(), field("password"));
    let next = safe_next(Some(&field("next"))).to_string();
    let l = Lang::of(&headers);
    if !same_origin(&headers) {
        return layout::error_page(l, StatusCode::FORBIDDEN, &l.t("form-from-another-site"));
    }
    let address = peer.map(|ConnectInfo(a)| a.ip().to_string()).unwrap_or_else(|| "unknown".into());
    let now = state.clock.now();
    let refuse = |status: StatusCode, message: String| {
        (status, page(l, &l.t("sign-in"), None, login_form(l, &next, &user, Some(Flash::Error(message)))))
            .into_response()
    };
    if let Some(until) = state.console.locked(&user, &address, now) {
        let secs = (until - now).num_seconds().max(1);
        return refuse(StatusCode::TOO_MANY_REQUESTS, l.f("too-many-failures", &[("secs", secs.into())]));
    }
    let s = state.clone();
    let (u, user_agent) =
        (user.clone(), headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_string));
    let addr = address.clone();
    let signed_in = tokio::task::spawn_blocking(move || -> Result<Option<String>, caseflow_engine::EngineError> {
        let known = s.engine.rules().users.contains_key(&u);
        let record = if known { accounts::password(s.engine.store(), &u)? } else { None };
        // The same work whether or not the user exists or has a password: the time the answer
        // takes tells nothing.
        let phc = record.as_ref().map_or(passwords::decoy(), |r| r.phc.as_str());
        let matches = passwords::verify(&password, phc) && record.is_some();
        if !matches {
            return Ok(None);
        }
        let token = random_token();
        let session = SessionRecord {
            user: u,
            created_at: now,
            last_seen_at: now,
            csrf: random_token(),
            address: Some(addr),
            user_agent: user_agent.map(|a| a.chars().take(200).collect()),
        };
        accounts::put_session(s.engine.store(), &digest_of(&token), &session)?;
        Ok(Some(token))
    })
    .await;
    match signed_in {
        Ok(Ok(Some(token))) => {
            state.console.succeeded(&user);
            tracing::info!(user = %user, address = %address, "signed in to the console");
            let max_age = state.console.settings.absolute.num_seconds();
            let mut response = Redirect::to(&next).into_response();
            response.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, &token, max_age));
            response
        }
        Ok(Ok(None)) => {
            state.console.failed(&user, &address, now);
            tracing::warn!(user = %user, address = %address, "a console sign-in failed");
            refuse(StatusCode::UNAUTHORIZED, l.t("sign-in-refused"))
        }
        Ok(Err(e)) => layout::error_page(
            l,
            StatusCode::SERVICE_UNAVAILABLE,
            &l.f("store-failed", &[("error", e.to_string().into())]),
        ),
        Err(_) => layout::error_page(l, StatusCode::INTERNAL_SERVER_ERROR, &l.t("request-failed")),
    }
}

pub async fn logout(State(state): State<Shared>, posted: Posted) -> Response {
    let s = state.clone();
    let digest = posted.staff.digest;
    match tokio::task::spawn_blocking(move || accounts::end_sessions(s.engine.store(), &[digest])).await {
        Ok(Ok(())) => {
            let mut response = Redirect::to("/ui/login").into_response();
            response.headers_mut().insert(header::SET_COOKIE, session_cookie(&state, "", 0));
            response
        }
        _ => layout::error_page(
            posted.staff.lang,
            StatusCode::SERVICE_UNAVAILABLE,
            &posted.staff.lang.t("sign-out-failed"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockouts_start_after_the_free_failures_and_double() {
        let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let f = |count| Failures { count, last: t };
        assert_eq!(f(4).locked_until(5), None);
        assert_eq!(f(5).locked_until(5), Some(t + chrono::Duration::seconds(1)));
        assert_eq!(f(8).locked_until(5), Some(t + chrono::Duration::seconds(8)));
        assert_eq!(f(500).locked_until(5), Some(t + chrono::Duration::seconds(LOCKOUT_MAX_SECS)));
    }

    #[test]
    fn only_our_pages_are_places_to_return_to() {
        assert_eq!(safe_next(Some("/ui/cases/3")), "/ui/cases/3");
        for bad in ["https://evil.example/", "//evil.example/ui/", "/api", "/ui/\\evil", ""] {
            assert_eq!(safe_next(Some(bad)), "/ui/inbox", "{bad}");
        }
    }

    #[test]
    fn a_form_from_another_site_is_not_ours() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        assert!(same_origin(&headers(&[("host", "a:8080"), ("origin", "http://a:8080")])));
        assert!(same_origin(&headers(&[("host", "a:8080"), ("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("host", "a:8080"), ("origin", "http://evil:8080")])));
        assert!(!same_origin(&headers(&[("host", "a:8080"), ("origin", "null")])));
        assert!(!same_origin(&headers(&[("host", "a:8080"), ("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("host", "a:8080"), ("sec-fetch-site", "same-site")])));
    }
}
