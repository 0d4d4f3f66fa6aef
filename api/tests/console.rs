//! The console over HTTP, as a browser speaks to it (forms, cookies, redirects), on a manual
//! clock: signing in and out, sessions that expire, failed sign-ins slowed down, forms refused
//! from another site or without their CSRF token, the inbox's order and actions, a task's
//! form with the server's errors beside their fields, a lost race, and the case page. The
//! browser tests (`console_browser.rs`) drive the same pages in chromium.

mod common;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use caseflow::passwords;
use caseflow_engine::clock::Clock;
use caseflow_engine::service::accounts::{self, PasswordRecord};
use common::{Api, START};
use http_body_util::BodyExt;
use tower::ServiceExt;

const PASSWORD: &str = "correct horse battery";

fn set_password(api: &Api, user: &str) {
    let record = PasswordRecord { phc: passwords::hash(PASSWORD), set_at: api.clock.now(), set_by: "test".into() };
    accounts::set_password(api.engine.store(), user, &record, None).unwrap();
}

fn form(fields: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                b' ' => "+".into(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    fields.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

/// A person in a browser: their session cookie, if signed in, and their choice of language.
struct Person<'a> {
    api: &'a Api,
    cookie: Option<String>,
    lang: Option<String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    html: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The CSRF token of the page's forms.
    fn csrf(&self) -> String {
        let at = self.html.find("name=\"_csrf\" value=\"").expect("a form with a CSRF token") + 20;
        self.html[at..].split('"').next().unwrap().to_string()
    }

    /// The inbox rows' task ids, in order.
    fn rows(&self) -> Vec<String> {
        self.html.split("<tr data-task=\"").skip(1).map(|r| r.split('"').next().unwrap().to_string()).collect()
    }
}

impl<'a> Person<'a> {
    fn new(api: &'a Api) -> Self {
        Person { api, cookie: None, lang: None }
    }

    async fn send(&mut self, method: &str, uri: &str, body: Option<String>, headers: &[(&str, &str)]) -> Page {
        // In English unless a test asks otherwise (the console's default is Chinese).
        let mut req = Request::builder().method(method).uri(uri).header("host", "console.test");
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("accept-language")) {
            req = req.header("accept-language", "en-US,en;q=0.9");
        }
        let mut cookies = Vec::new();
        if let Some(c) = &self.cookie {
            cookies.push(format!("caseflow_session={c}"));
        }
        if let Some(l) = &self.lang {
            cookies.push(format!("caseflow_lang={l}"));
        }
        if !cookies.is_empty() {
            req = req.header("cookie", cookies.join("; "));
        }
        if body.is_some() {
            req = req.header("content-type", "application/x-www-form-urlencoded");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp =
            self.api.app.clone().oneshot(req.body(body.map_or_else(Body::empty, Body::from)).unwrap()).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        if let Some(set) = headers.get("set-cookie").and_then(|v| v.to_str().ok()) {
            let (name, value) = set.split(';').next().unwrap().split_once('=').unwrap();
            let value = (!value.is_empty()).then(|| value.to_string());
            match name {
                "caseflow_session" => self.cookie = value,
                "caseflow_lang" => self.lang = value,
                other => panic!("an unknown cookie {other}"),
            }
        }
        let html = String::from_utf8(resp.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        Page { status, headers, html }
    }

    async fn get(&mut self, uri: &str) -> Page {
        self.send("GET", uri, None, &[]).await
    }

    async fn post(&mut self, uri: &str, fields: &[(&str, &str)]) -> Page {
        self.send("POST", uri, Some(form(fields)), &[("origin", "http://console.test")]).await
    }

    async fn sign_in(&mut self, user: &str, password: &str) -> Page {
        self.post("/ui/login", &[("user", user), ("password", password), ("next", "/ui/inbox")]).await
    }
}

async fn start(api: &Api, urgency: &str) -> u64 {
    let body = START.replace("\"urgency\":\"high\"", &format!("\"urgency\":\"{urgency}\""));
    let (s, case) = api.call("POST", "/instances", Some("crm"), Some(&body), &[]).await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    case["id"].as_u64().unwrap()
}

/// The case's open task, its assignee, and another representative.
async fn first_task(api: &Api, case: u64) -> (String, String, &'static str) {
    let (_, c) = api.call("GET", &format!("/instances/{case}"), Some("admin"), None, &[]).await;
    let task = c["tasks"][0]["id"].as_str().unwrap().to_string();
    let holder = c["tasks"][0]["assignee"].as_str().unwrap().to_string();
    let other = ["zhang_wei", "liu_yang"].into_iter().find(|u| *u != holder).unwrap();
    (task, holder, other)
}

#[tokio::test]
async fn signing_in_sets_a_safe_cookie_and_signing_out_ends_the_session() {
    let api = Api::new();
    set_password(&api, "liu_yang");
    let mut p = Person::new(&api);
    let page = p.get("/ui/inbox").await;
    assert_eq!((page.status, page.location()), (StatusCode::SEE_OTHER, "/ui/login?next=/ui/inbox"));
    let page = p.sign_in("liu_yang", PASSWORD).await;
    assert_eq!((page.status, page.location()), (StatusCode::SEE_OTHER, "/ui/inbox"));
    let cookie = page.headers["set-cookie"].to_str().unwrap();
    for part in ["HttpOnly", "SameSite=Lax", "Path=/ui", "Max-Age=43200"] {
        assert!(cookie.contains(part), "{cookie} lacks {part}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP here: a Secure cookie would never come back");
    let inbox = p.get("/ui/inbox").await;
    assert_eq!(inbox.status, StatusCode::OK);
    assert!(inbox.html.contains("刘洋 (liu_yang)"), "the page names who is signed in");
    let csp = inbox.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self';") && !csp.contains("script-src 'self' 'unsafe-inline'"), "{csp}");
    assert!(!inbox.html.contains("<script>"), "no inline script");
    assert_eq!(inbox.headers["cache-control"], "no-store", "case data is not cached");
    assert_eq!(inbox.headers["x-frame-options"], "DENY");
    // The store keeps the session under the token's digest, not the token.
    let stored = accounts::sessions(api.engine.store()).unwrap();
    assert_eq!(stored.len(), 1);
    assert_ne!(hex::encode(stored[0].0), p.cookie.clone().unwrap());
    let csrf = inbox.csrf();
    let old = p.cookie.clone();
    let out = p.post("/ui/logout", &[("_csrf", &csrf)]).await;
    assert_eq!((out.status, out.location()), (StatusCode::SEE_OTHER, "/ui/login"));
    assert!(p.cookie.is_none(), "the cookie is cleared");
    assert!(accounts::sessions(api.engine.store()).unwrap().is_empty(), "the session is gone from the store");
    p.cookie = old;
    assert_eq!(p.get("/ui/inbox").await.status, StatusCode::SEE_OTHER, "the old cookie signs no one in");
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_user_get_the_same_answer_and_failures_are_slowed() {
    let api = Api::new();
    set_password(&api, "liu_yang");
    let mut p = Person::new(&api);
    let wrong = p.sign_in("liu_yang", "not the password").await;
    let unknown = p.sign_in("nobody_here", "not the password").await;
    let no_password = p.sign_in("zhang_wei", "not the password").await;
    for page in [&wrong, &unknown, &no_password] {
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        assert!(page.html.contains("The user name or the password is not right."), "{}", page.html);
        assert!(page.headers.get("set-cookie").is_none());
    }
    // Five failures for a user: the sixth try waits, even with the right password.
    for _ in 0..4 {
        p.sign_in("liu_yang", "still wrong").await;
    }
    let locked = p.sign_in("liu_yang", PASSWORD).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS, "{}", locked.html);
    assert!(locked.html.contains("try again in 1 seconds"), "{}", locked.html);
    assert!(api.metric("caseflow_console_signins_failed_total").await >= 6.0);
    // The wait doubles with each further failure; once it has passed, the right password works.
    api.clock.advance(chrono::Duration::seconds(2));
    assert_eq!(p.sign_in("liu_yang", "wrong again").await.status, StatusCode::UNAUTHORIZED);
    let locked = p.sign_in("liu_yang", PASSWORD).await;
    assert!(locked.html.contains("try again in 2 seconds"), "{}", locked.html);
    api.clock.advance(chrono::Duration::seconds(2));
    assert_eq!(p.sign_in("liu_yang", PASSWORD).await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn sessions_end_when_idle_and_at_their_absolute_limit() {
    let api = Api::new();
    set_password(&api, "liu_yang");
    let mut p = Person::new(&api);
    p.sign_in("liu_yang", PASSWORD).await;
    // Active every 25 minutes: alive past the idle limit of 30, until 12 hours.
    for _ in 0..28 {
        api.clock.advance(chrono::Duration::minutes(25));
        assert_eq!(p.get("/ui/inbox").await.status, StatusCode::OK, "at {}", api.clock.now());
    }
    api.clock.advance(chrono::Duration::minutes(25));
    assert_eq!(p.get("/ui/inbox").await.status, StatusCode::SEE_OTHER, "past 12 hours");
    p.sign_in("liu_yang", PASSWORD).await;
    api.clock.advance(chrono::Duration::minutes(31));
    assert_eq!(p.get("/ui/inbox").await.status, StatusCode::SEE_OTHER, "idle for 31 minutes");
    assert!(accounts::sessions(api.engine.store()).unwrap().is_empty(), "expired sessions are removed");
}

#[tokio::test]
async fn forms_from_another_site_or_without_their_token_change_nothing() {
    let api = Api::new();
    set_password(&api, "liu_yang");
    let case = start(&api, "high").await;
    let mut p = Person::new(&api);
    p.sign_in("liu_yang", PASSWORD).await;
    let inbox = p.get("/ui/inbox").await;
    let task = format!("{case}-2");
    let claim = [("_csrf", inbox.csrf()), ("action", "claim".into()), ("task", task.clone())];
    let claim: Vec<(&str, &str)> = claim.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let body = form(&claim);
    for (headers, why) in [
        (vec![("origin", "http://evil.example")], "another origin"),
        (vec![("sec-fetch-site", "cross-site")], "a cross-site fetch"),
    ] {
        let page = p.send("POST", "/ui/inbox/act", Some(body.clone()), &headers).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{why}");
    }
    let forged = form(&[("_csrf", "0000"), ("action", "claim"), ("task", &task)]);
    let page = p.send("POST", "/ui/inbox/act", Some(forged), &[]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "a wrong token");
    assert!(page.html.contains("out of date"));
    let (_, now) = api.call("GET", &format!("/instances/{case}"), Some("admin"), None, &[]).await;
    assert_eq!(now["tasks"][0]["claimed"], false, "nothing was claimed: {now}");
    let page = p.send("POST", "/ui/inbox/act", Some(body), &[("origin", "http://console.test")]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains(&format!("{task}: claimed")), "{}", page.html);
    let (_, now) = api.call("GET", &format!("/instances/{case}"), Some("admin"), None, &[]).await;
    assert_eq!(
        (now["tasks"][0]["claimed"].clone(), now["tasks"][0]["assignee"].clone()),
        (true.into(), "liu_yang".into())
    );
}

#[tokio::test]
async fn the_inbox_puts_the_soonest_breach_first_and_marks_the_overdue() {
    let api = Api::new();
    set_password(&api, "liu_yang");
    let low = start(&api, "low").await; // 1 workday
    let high = start(&api, "high").await; // 10 minutes
    let medium = start(&api, "medium").await; // 4 workhours
    let mut p = Person::new(&api);
    p.sign_in("liu_yang", PASSWORD).await;
    let rows = |ids: &[u64]| ids.iter().map(|i| format!("{i}-2")).collect::<Vec<_>>();
    let inbox = p.get("/ui/inbox").await;
    assert_eq!(inbox.rows(), rows(&[high, medium, low]), "{}", inbox.html);
    assert!(inbox.html.contains("10 min left"), "the SLA bar says what is left");
    let mine = p.get("/ui/inbox?scope=mine").await;
    assert!(mine.rows().iter().all(|r| inbox.rows().contains(r)) && mine.rows().len() < 3, "{:?}", mine.rows());
    // The high one's deadline passes: it is overdue and, the rules' escalation delay being 0,
    // escalated to a manager at once, priority raised.
    api.clock.advance(chrono::Duration::minutes(15));
    api.engine.fire_due(api.clock.now(), 100).unwrap();
    // Still a representatives' task (its roles), now the manager's: first in both inboxes.
    assert_eq!(p.get("/ui/inbox").await.rows(), rows(&[high, medium, low]));
    assert_eq!(p.get("/ui/inbox?scope=unassigned").await.rows(), Vec::<String>::new());
    set_password(&api, "li_na");
    let mut manager = Person::new(&api);
    manager.sign_in("li_na", PASSWORD).await;
    let inbox = manager.get("/ui/inbox").await;
    assert_eq!(inbox.rows(), rows(&[high]), "{}", inbox.html);
    for mark in ["5 min over", "class=\"mark overdue\"", "class=\"mark escalated\"", "title=\"priority\""] {
        assert!(inbox.html.contains(mark), "{mark}: {}", inbox.html);
    }
    assert_eq!(manager.get("/ui/inbox?escalated=true&overdue=true").await.rows(), rows(&[high]));
    assert_eq!(manager.get("/ui/inbox?process=other").await.rows(), Vec::<String>::new());
    // The live update fetches the rows alone.
    let fragment = manager.get("/ui/inbox?fragment=rows&overdue=true").await;
    assert!(fragment.html.starts_with("<tr data-task="), "{}", fragment.html);
    assert_eq!(fragment.rows(), rows(&[high]));
}

#[tokio::test]
async fn only_those_allowed_see_reassign_and_a_forged_reassign_is_refused() {
    let api = Api::new();
    set_password(&api, "liu_yang");
    set_password(&api, "li_na");
    let case = start(&api, "high").await;
    let task = format!("{case}-2");
    let mut rep = Person::new(&api);
    rep.sign_in("liu_yang", PASSWORD).await;
    let inbox = rep.get("/ui/inbox").await;
    assert!(!inbox.html.contains("value=\"reassign\""), "a representative has no reassign button");
    let page = rep
        .post(
            "/ui/inbox/act",
            &[("_csrf", &inbox.csrf()), ("action", "reassign"), ("task", &task), ("to", "wang_fang")],
        )
        .await;
    assert!(page.html.contains(&format!("{task}: ")) && page.html.contains("may not"), "{}", page.html);
    let (_, now) = api.call("GET", &format!("/instances/{case}"), Some("admin"), None, &[]).await;
    assert_ne!(now["tasks"][0]["assignee"], "wang_fang");
    let mut manager = Person::new(&api);
    manager.sign_in("li_na", PASSWORD).await;
    // A manager sees the role's tasks only through reassigning: give them the task.
    let page = manager.get("/ui/inbox").await;
    assert!(page.html.contains("value=\"reassign\""), "a manager may reassign");
    let page = manager
        .post(
            "/ui/inbox/act",
            &[
                ("_csrf", &page.csrf()),
                ("action", "reassign"),
                ("task", &task),
                ("to", "wang_fang"),
                ("reason", "workload"),
            ],
        )
        .await;
    assert!(page.html.contains(&format!("{task}: reassigned to wang_fang")), "{}", page.html);
}

#[tokio::test]
async fn a_task_form_keeps_what_was_typed_shows_errors_by_their_fields_and_says_when_a_race_was_lost() {
    let api = Api::new();
    set_password(&api, "liu_yang");
    let case = start(&api, "high").await;
    let (_, c) = api.call("GET", &format!("/instances/{case}"), Some("admin"), None, &[]).await;
    let task = c["tasks"][0]["id"].as_str().unwrap().to_string();
    let assignee = c["tasks"][0]["assignee"].as_str().unwrap().to_string();
    set_password(&api, &assignee);
    let mut p = Person::new(&api);
    p.sign_in(&assignee, PASSWORD).await;
    let page = p.get(&format!("/ui/tasks/{task}")).await;
    assert_eq!(page.status, StatusCode::OK);
    // Generated from `asks cause required, content`: a required choice as radios, labelled as
    // the .flow file writes it; the case's content filled in.
    assert!(
        page.html.contains("原因") && page.html.contains("type=\"radio\" name=\"cause\" value=\"quality\""),
        "{}",
        page.html
    );
    assert!(page.html.contains("title=\"required\""));
    assert!(page.html.contains(">投影仪无法开机</textarea>"), "the case's value is shown");
    // Sent without the required choice: the engine's error beside `cause`, the typed text kept.
    let csrf = page.csrf();
    let refused = p.post(&format!("/ui/tasks/{task}"), &[("_csrf", &csrf), ("content", "改过的内容")]).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(refused.html.contains("id=\"f-cause-error\""), "{}", refused.html);
    assert!(refused.html.contains(">改过的内容</textarea>"), "what was typed is kept");
    let done = p
        .post(&format!("/ui/tasks/{task}"), &[("_csrf", &csrf), ("cause", "quality"), ("content", "改过的内容")])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    let (_, c) = api.call("GET", &format!("/instances/{case}"), Some("admin"), None, &[]).await;
    assert_eq!((c["fields"]["cause"].as_str(), c["fields"]["content"].as_str()), (Some("quality"), Some("改过的内容")));
    // Sent again (a second tab): the task is gone, and the page says so and offers the case.
    let again = p.post(&format!("/ui/tasks/{task}"), &[("_csrf", &csrf), ("cause", "quality")]).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(
        again.html.contains("no longer open") && again.html.contains(&format!("/ui/cases/{case}")),
        "{}",
        again.html
    );
}

#[tokio::test]
async fn the_case_page_marks_where_the_case_is_on_its_diagram() {
    let api = Api::new();
    set_password(&api, "liu_yang");
    let case = start(&api, "high").await;
    let mut p = Person::new(&api);
    p.sign_in("liu_yang", PASSWORD).await;
    let page = p.get(&format!("/ui/cases/{case}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("<g data-step=\"receive\" class=\"current\">"), "{}", page.html);
    assert!(page.html.contains("<g data-step=\"start\" class=\"visited\">"));
    assert!(page.html.contains("投诉人") && page.html.contains("第一中学"), "fields with their labels");
    assert!(page.html.contains("138-0000-0000"), "people see sensitive fields (service tokens do not)");
    assert_eq!(p.get("/ui/cases/999").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn administrators_set_passwords_and_end_sessions_through_the_api() {
    let api = Api::new();
    let body = r#"{"password":"a long passphrase"}"#;
    let (s, _) = api.call("PUT", "/admin/users/li_na/password", Some("liu_yang"), Some(body), &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, e) = api.call("PUT", "/admin/users/nobody/password", Some("admin"), Some(body), &[]).await;
    assert_eq!((s, e["type"].as_str()), (StatusCode::NOT_FOUND, Some("https://caseflow.dev/problems/unknown-user")));
    let (s, e) =
        api.call("PUT", "/admin/users/li_na/password", Some("admin"), Some(r#"{"password":"short"}"#), &[]).await;
    assert_eq!((s, e["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("password")));
    let (s, _) = api.call("PUT", "/admin/users/li_na/password", Some("admin"), Some(body), &[]).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let mut p = Person::new(&api);
    assert_eq!(p.sign_in("li_na", "a long passphrase").await.status, StatusCode::SEE_OTHER);
    let (s, list) = api.call("GET", "/admin/users/li_na/sessions", Some("admin"), None, &[]).await;
    assert_eq!((s, list["sessions"].as_array().map(Vec::len)), (StatusCode::OK, Some(1)));
    let (s, _) = api.call("DELETE", "/admin/users/li_na/sessions", Some("admin"), None, &[]).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(p.get("/ui/inbox").await.status, StatusCode::SEE_OTHER, "signed out everywhere");
}

#[tokio::test]
async fn a_person_changes_their_password_and_is_signed_out_elsewhere() {
    let api = Api::new();
    set_password(&api, "liu_yang");
    let (mut here, mut there) = (Person::new(&api), Person::new(&api));
    here.sign_in("liu_yang", PASSWORD).await;
    there.sign_in("liu_yang", PASSWORD).await;
    let page = here.get("/ui/account").await;
    let csrf = page.csrf();
    let wrong = here
        .post(
            "/ui/account/password",
            &[("_csrf", &csrf), ("current", "nope"), ("new", "another long one"), ("again", "another long one")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.html.contains("current password is not right"));
    let ok = here
        .post(
            "/ui/account/password",
            &[("_csrf", &csrf), ("current", PASSWORD), ("new", "another long one"), ("again", "another long one")],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.html);
    assert!(ok.html.contains("Your password is changed."));
    assert_eq!(here.get("/ui/inbox").await.status, StatusCode::OK, "still signed in here");
    assert_eq!(there.get("/ui/inbox").await.status, StatusCode::SEE_OTHER, "signed out there");
    let mut p = Person::new(&api);
    assert_eq!(p.sign_in("liu_yang", PASSWORD).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(p.sign_in("liu_yang", "another long one").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn saved_views_are_kept_on_the_server_personal_or_shared_with_a_role() {
    let api = Api::new();
    for user in ["liu_yang", "zhang_wei", "li_na"] {
        set_password(&api, user);
    }
    let mut liu = Person::new(&api);
    liu.sign_in("liu_yang", PASSWORD).await;
    let csrf = liu.get("/ui/inbox?overdue=true&scope=mine").await.csrf();
    let query = "scope=mine&overdue=true";
    let saved = liu
        .post("/ui/views", &[("_csrf", &csrf), ("query", query), ("name", "我的超时"), ("owner", "user:liu_yang")])
        .await;
    assert!(saved.html.contains("View “我的超时” saved."), "{}", saved.html);
    let shared = liu
        .post(
            "/ui/views",
            &[("_csrf", &csrf), ("query", "due_today=true"), ("name", "今天到期"), ("owner", "role:cs_rep")],
        )
        .await;
    assert!(shared.html.contains("saved"));
    // Not a role of hers: refused, nothing stored.
    let forged =
        liu.post("/ui/views", &[("_csrf", &csrf), ("query", ""), ("name", "x"), ("owner", "role:cs_manager")]).await;
    assert!(forged.html.contains("one of your roles"), "{}", forged.html);
    let views = liu.get("/ui/inbox").await.html;
    assert!(views.contains("href=\"/ui/inbox?scope=mine&amp;overdue=true\"") && views.contains("我的超时"), "{views}");
    // A colleague in the role sees the shared view only; a manager sees neither.
    let mut zhang = Person::new(&api);
    zhang.sign_in("zhang_wei", PASSWORD).await;
    let theirs = zhang.get("/ui/inbox").await.html;
    assert!(theirs.contains("今天到期") && !theirs.contains("我的超时"));
    let mut li = Person::new(&api);
    li.sign_in("li_na", PASSWORD).await;
    let hers = li.get("/ui/inbox").await.html;
    assert!(!hers.contains("今天到期") && !hers.contains("我的超时"));
    // Kept in the store: a new server over it shows them (they are not in the browser).
    assert_eq!(accounts::saved_views(api.engine.store(), &["role:cs_rep".into()]).unwrap().len(), 1);
    // Only who saved a view deletes it.
    let csrf = zhang.get("/ui/inbox").await.csrf();
    let refused = zhang.post("/ui/views/delete", &[("_csrf", &csrf), ("view", "role:cs_rep\u{1f}今天到期")]).await;
    assert!(refused.html.contains("No such view of yours."));
    let csrf = liu.get("/ui/inbox").await.csrf();
    let deleted = liu.post("/ui/views/delete", &[("_csrf", &csrf), ("view", "role:cs_rep\u{1f}今天到期")]).await;
    assert!(deleted.html.contains("View “今天到期” deleted."));
    assert!(!zhang.get("/ui/inbox").await.html.contains("今天到期"));
}

#[tokio::test]
async fn work_in_progress_shows_who_is_on_a_task_and_a_draft_passes_to_whoever_takes_it_over() {
    let api = Api::new();
    let case = start(&api, "high").await;
    let (task, holder, other) = first_task(&api, case).await;
    for user in [holder.as_str(), other, "li_na"] {
        set_password(&api, user);
    }
    let mut p = Person::new(&api);
    p.sign_in(&holder, PASSWORD).await;
    let page = p.get(&format!("/ui/tasks/{task}")).await;
    let csrf = page.csrf();
    assert!(page.html.contains("Start work") && page.html.contains("Save draft"));
    let started = p.post(&format!("/ui/tasks/{task}/start"), &[("_csrf", &csrf)]).await;
    assert_eq!(started.status, StatusCode::SEE_OTHER);
    let inbox = p.get("/ui/inbox").await;
    assert!(inbox.html.contains(&format!("in progress: {holder}")), "{}", inbox.html);
    // Since when, on the calendar's clock (the test's clock is 10:00 in Beijing).
    assert!(inbox.html.contains("title=\"2026-11-23 10:00\">in progress"), "{}", inbox.html);
    let case_page = p.get(&format!("/ui/cases/{case}")).await;
    assert!(
        case_page.html.contains(&format!("{holder} since 11-23 10:00")),
        "the case shows it too: {}",
        case_page.html
    );
    // Half done: the required cause not chosen yet. A draft takes it anyway.
    let saved = p.post(&format!("/ui/tasks/{task}/draft"), &[("_csrf", &csrf), ("content", "客户说下午再联系")]).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.html);
    assert!(saved.html.contains("Draft saved"));
    let (_, c) = api.call("GET", &format!("/instances/{case}"), Some("admin"), None, &[]).await;
    assert_eq!(c["tasks"][0]["draft"]["fields"]["content"], "客户说下午再联系");
    assert_eq!(c["tasks"][0]["started_by"], holder.as_str());
    assert_eq!(c["fields"]["content"], "投影仪无法开机", "a draft does not change the case");
    // The manager gives it to a colleague: nobody is on it now, and the draft goes with it.
    let mut manager = Person::new(&api);
    manager.sign_in("li_na", PASSWORD).await;
    let csrf_m = manager.get("/ui/inbox").await.csrf();
    manager
        .post(
            "/ui/inbox/act",
            &[("_csrf", &csrf_m), ("action", "reassign"), ("task", &task), ("to", other), ("reason", "请假")],
        )
        .await;
    let mut colleague = Person::new(&api);
    colleague.sign_in(other, PASSWORD).await;
    let page = colleague.get(&format!("/ui/tasks/{task}")).await;
    assert!(page.html.contains(&format!("saved by {holder}")), "{}", page.html);
    assert!(page.html.contains(">客户说下午再联系</textarea>"), "the draft's values fill the form");
    assert!(!page.html.contains("In progress"), "the first holder no longer works on it");
}

#[tokio::test]
async fn the_api_starts_work_and_saves_drafts_for_the_assignee_only() {
    let api = Api::new();
    let case = start(&api, "high").await;
    let (task, holder, other) = first_task(&api, case).await;
    let (s, _) = api.call("POST", &format!("/tasks/{task}/start"), Some(other), None, &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = api.call("POST", &format!("/tasks/{task}/start"), Some("crm"), None, &[]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "service tokens do no tasks");
    let (s, c) = api.call("POST", &format!("/tasks/{task}/start"), Some(&holder), None, &[]).await;
    assert_eq!((s, c["tasks"][0]["started_by"].as_str()), (StatusCode::OK, Some(holder.as_str())));
    let (s, e) = api
        .call("PUT", &format!("/tasks/{task}/draft"), Some(&holder), Some(r#"{"fields":{"satisfaction":3}}"#), &[])
        .await;
    assert_eq!(
        (s, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("satisfaction")),
        "not asked by this task"
    );
    let (s, c) = api
        .call("PUT", &format!("/tasks/{task}/draft"), Some(&holder), Some(r#"{"fields":{"cause":"quality"}}"#), &[])
        .await;
    assert_eq!((s, c["tasks"][0]["draft"]["fields"]["cause"].as_str()), (StatusCode::OK, Some("quality")));
    let (_, h) = api.call("GET", &format!("/instances/{case}/history"), Some("admin"), None, &[]).await;
    let events: Vec<&str> = h["history"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert!(events.ends_with(&["work_started", "draft_saved"]), "{events:?}");
}

#[tokio::test]
async fn a_manager_suspends_resumes_and_cancels_a_case_with_a_confirmation_and_a_representative_cannot() {
    let api = Api::new();
    set_password(&api, "liu_yang");
    set_password(&api, "li_na");
    let case = start(&api, "high").await;
    let mut rep = Person::new(&api);
    rep.sign_in("liu_yang", PASSWORD).await;
    let page = rep.get(&format!("/ui/cases/{case}")).await;
    assert!(!page.html.contains("Cancel the case") && !page.html.contains("Suspend"), "no manager actions shown");
    assert!(page.html.contains("deadline of task 2"), "the timers it waits for: {}", page.html);
    let forged = rep
        .post(
            &format!("/ui/cases/{case}/act"),
            &[("_csrf", &page.csrf()), ("action", "cancel"), ("reason", "x"), ("confirm", "yes")],
        )
        .await;
    assert!(forged.html.contains("may not"), "{}", forged.html);
    let mut manager = Person::new(&api);
    manager.sign_in("li_na", PASSWORD).await;
    let page = manager.get(&format!("/ui/cases/{case}")).await;
    let csrf = page.csrf();
    assert!(page.html.contains("Cancel the case") && page.html.contains("Suspend"));
    let act = |fields: Vec<(&'static str, &'static str)>| {
        let mut all = vec![("_csrf", csrf.as_str())];
        all.extend(fields);
        all
    };
    let suspended = manager.post(&format!("/ui/cases/{case}/act"), &act(vec![("action", "suspend")])).await;
    assert!(
        suspended.html.contains("The case is suspended now.") && suspended.html.contains("Resume"),
        "{}",
        suspended.html
    );
    let resumed = manager.post(&format!("/ui/cases/{case}/act"), &act(vec![("action", "resume")])).await;
    assert!(resumed.html.contains("The case is running now."));
    // Retrying an incident is for administrators (the API): a forged post of it does nothing.
    let retry = manager.post(&format!("/ui/cases/{case}/act"), &act(vec![("action", "retry")])).await;
    assert!(retry.html.contains("No such action."), "{}", retry.html);
    let unconfirmed =
        manager.post(&format!("/ui/cases/{case}/act"), &act(vec![("action", "cancel"), ("reason", "客户撤回")])).await;
    assert!(unconfirmed.html.contains("Tick the box to confirm"));
    let (_, c) = api.call("GET", &format!("/instances/{case}"), Some("admin"), None, &[]).await;
    assert_eq!(c["status"], "running", "nothing happened without the confirmation");
    let cancelled = manager
        .post(
            &format!("/ui/cases/{case}/act"),
            &act(vec![("action", "cancel"), ("reason", "客户撤回"), ("confirm", "yes")]),
        )
        .await;
    assert!(cancelled.html.contains("The case is cancelled now."), "{}", cancelled.html);
    assert!(!cancelled.html.contains("Cancel the case"), "an ended case offers no actions");
    let (_, h) = api.call("GET", &format!("/instances/{case}/history"), Some("admin"), None, &[]).await;
    let last = h["history"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["event"].as_str(), last["actor"].as_str()), (Some("cancelled"), Some("li_na")), "{last}");
}

#[tokio::test]
async fn a_long_inbox_shows_the_soonest_hundred_and_says_how_many_more_match() {
    let api = Api::new();
    set_password(&api, "liu_yang");
    let mut ids = Vec::new();
    for i in 0..105 {
        ids.push(start(&api, if i % 2 == 0 { "low" } else { "medium" }).await);
    }
    let mut p = Person::new(&api);
    p.sign_in("liu_yang", PASSWORD).await;
    let page = p.get("/ui/inbox").await;
    assert_eq!(page.rows().len(), 100, "at most 100 rows");
    assert!(page.html.contains("The 100 soonest of 105 tasks that match"), "{}", page.html);
    // The medium ones (4 working hours) come before the low ones (1 working day).
    let first_low = page.rows().iter().position(|r| ids.iter().position(|i| format!("{i}-2") == *r).unwrap() % 2 == 0);
    assert_eq!(first_low, Some(52), "the 52 medium ones first");
}

#[tokio::test]
async fn the_cases_list_pages_finds_a_key_and_exports_csv() {
    let api = Api::new();
    set_password(&api, "li_na");
    for _ in 0..3 {
        start(&api, "high").await;
    }
    let mut p = Person::new(&api);
    assert_eq!(p.get("/ui/cases.csv?process=complaint").await.status, StatusCode::SEE_OTHER, "signed in only");
    p.sign_in("li_na", PASSWORD).await;
    let list = p.get("/ui/cases?process=complaint&status=running").await;
    assert_eq!(list.status, StatusCode::OK);
    for key in ["20261123-001", "20261123-002", "20261123-003"] {
        assert!(list.html.contains(key), "{key}: {}", list.html);
    }
    let found = p.get("/ui/cases?key=20261123-002").await;
    assert_eq!((found.status, found.location()), (StatusCode::SEE_OTHER, "/ui/cases/2"));
    let missing = p.get("/ui/cases?key=19990101-001").await;
    assert!(missing.html.contains("No case has the business key 19990101-001."));
    let csv = p.get("/ui/cases.csv?process=complaint&status=running").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = csv.html.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(lines.len(), 4, "a header and a line per case: {lines:?}");
    assert!(lines[0].starts_with("business_key,started_at,status,at,assignees,") && lines[0].contains("customer"));
    assert!(
        lines[1].starts_with("20261123-001,2026-11-23 10:00,running,receive,") && lines[1].contains("第一中学"),
        "{}",
        lines[1]
    );
    assert_eq!(p.get("/ui/cases.csv?process=nope").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_manager_sees_the_team_s_work_and_gives_one_person_s_tasks_to_another() {
    let api = Api::new();
    set_password(&api, "li_na");
    set_password(&api, "liu_yang");
    let mut held: std::collections::BTreeMap<String, usize> = Default::default();
    for _ in 0..4 {
        let case = start(&api, "high").await;
        let (_, c) = api.call("GET", &format!("/instances/{case}"), Some("admin"), None, &[]).await;
        *held.entry(c["tasks"][0]["assignee"].as_str().unwrap().to_string()).or_default() += 1;
    }
    let mut rep = Person::new(&api);
    rep.sign_in("liu_yang", PASSWORD).await;
    let page = rep.get("/ui/inbox").await;
    assert!(!page.html.contains("href=\"/ui/team\""), "no team page for a representative");
    assert_eq!(rep.get("/ui/team").await.status, StatusCode::FORBIDDEN);
    let mut manager = Person::new(&api);
    manager.sign_in("li_na", PASSWORD).await;
    let team = manager.get("/ui/team").await;
    assert_eq!(team.status, StatusCode::OK);
    let (busiest, n) = held.iter().max_by_key(|(_, n)| **n).map(|(u, n)| (u.clone(), *n)).unwrap();
    assert!(team.html.contains(&format!("({busiest})")), "{}", team.html);
    let to = ["zhang_wei", "wang_fang", "liu_yang"].into_iter().find(|u| *u != busiest).unwrap();
    let done = manager
        .post("/ui/team/reassign", &[("_csrf", &team.csrf()), ("from", &busiest), ("to", to), ("reason", "请假")])
        .await;
    let given = if n == 1 { format!("1 open task of {busiest}") } else { format!("{n} open tasks of {busiest}") };
    assert!(done.html.contains(&format!("{given} given to {to}.")), "{}", done.html);
    let (_, tasks) = api.call("GET", &format!("/tasks?user={busiest}"), Some("admin"), None, &[]).await;
    assert_eq!(tasks["tasks"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn the_cases_list_filters_by_step_assignee_and_day_started_and_exports_what_it_shows() {
    let api = Api::new();
    set_password(&api, "li_na");
    let first = start(&api, "high").await;
    let second = start(&api, "high").await;
    api.clock.advance(chrono::Duration::days(1));
    start(&api, "high").await;
    start(&api, "high").await;
    // The first case moves on from `receive`.
    let (task, holder, _) = first_task(&api, first).await;
    let (s, v) = api
        .call("POST", &format!("/tasks/{task}/complete"), Some(&holder), Some(r#"{"fields":{"cause":"quality"}}"#), &[])
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, c) = api.call("GET", &format!("/instances/{first}"), Some("admin"), None, &[]).await;
    let step_now = c["tasks"][0]["step"].as_str().unwrap().to_string();
    let mut p = Person::new(&api);
    p.sign_in("li_na", PASSWORD).await;
    let keys = |page: &Page| -> Vec<String> {
        page.html
            .split("<td><a href=\"/ui/cases/")
            .skip(1)
            .map(|r| r.split(['>', '<']).nth(1).unwrap().to_string())
            .collect()
    };
    let list = p.get("/ui/cases?process=complaint&status=running&step=receive").await;
    assert_eq!(keys(&list), ["20261123-002", "20261124-001", "20261124-002"], "at receive");
    let list = p.get(&format!("/ui/cases?process=complaint&status=running&step={step_now}")).await;
    assert_eq!(keys(&list), ["20261123-001"], "moved on to {step_now}");
    let list = p.get("/ui/cases?process=complaint&status=running&from=2026-11-24").await;
    assert_eq!(keys(&list), ["20261124-001", "20261124-002"], "started on the 24th or later");
    let list = p.get("/ui/cases?process=complaint&status=running&to=2026-11-23").await;
    assert_eq!(keys(&list), ["20261123-001", "20261123-002"], "started on the 23rd or before");
    // By assignee: the cases where that person holds an open task, from their inbox.
    let (_, holder, _) = first_task(&api, second).await;
    let (_, tasks) = api.call("GET", &format!("/tasks?user={holder}"), Some("admin"), None, &[]).await;
    let mut held: Vec<String> =
        tasks["tasks"].as_array().unwrap().iter().map(|t| t["business_key"].as_str().unwrap().to_string()).collect();
    held.sort();
    assert!(!held.is_empty());
    let list = p.get(&format!("/ui/cases?process=complaint&status=running&assignee={holder}")).await;
    assert_eq!(keys(&list), held, "{holder}'s");
    let list = p.get(&format!("/ui/cases?process=complaint&status=running&assignee={holder}&from=2026-11-24")).await;
    assert_eq!(keys(&list), held.iter().filter(|k| k.starts_with("20261124")).cloned().collect::<Vec<_>>());
    // A bad day is said, and lists nothing.
    let bad = p.get("/ui/cases?process=complaint&status=running&from=24.11.2026").await;
    assert!(bad.html.contains("“24.11.2026” is not a day"), "{}", bad.html);
    assert!(keys(&bad).is_empty());
    // The export holds what the filters select, and refuses a bad day.
    let csv = p.get("/ui/cases.csv?process=complaint&status=running&step=receive&from=2026-11-24").await;
    let lines: Vec<&str> = csv.html.trim_start_matches('\u{feff}').lines().skip(1).collect();
    assert_eq!(lines.iter().map(|l| &l[..12]).collect::<Vec<_>>(), ["20261124-001", "20261124-002"]);
    assert_eq!(p.get("/ui/cases.csv?process=complaint&to=tomorrow").await.status, StatusCode::BAD_REQUEST);
    // The list's links keep the filters.
    assert!(
        list.html.contains("/ui/cases.csv?process=complaint&amp;status=running&amp;step=&amp;assignee="),
        "{}",
        list.html
    );
}

#[tokio::test]
async fn a_filtered_cases_page_reads_a_bounded_number_of_cases_and_offers_to_look_further() {
    let api = Api::new();
    set_password(&api, "li_na");
    let crm = caseflow_core::case::Actor { id: "crm".into(), roles: vec!["integration".into()], admin: false };
    let fields: std::collections::BTreeMap<String, caseflow_core::value::Value> =
        serde_json::from_str::<serde_json::Value>(START).unwrap()["fields"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), caseflow_core::value::Value::Text(v.as_str().unwrap().into())))
            .collect();
    for _ in 0..1_050 {
        api.engine.start("complaint", fields.clone(), &crm, None, api.clock.now()).unwrap();
    }
    api.clock.advance(chrono::Duration::days(1));
    api.engine.start("complaint", fields, &crm, None, api.clock.now()).unwrap();
    let mut p = Person::new(&api);
    p.sign_in("li_na", PASSWORD).await;
    let first = p.get("/ui/cases?process=complaint&status=running&from=2026-11-24").await;
    assert!(!first.html.contains("20261124-001"));
    assert!(first.html.contains("Looked through 1000 cases; more may match further on."), "{}", first.html);
    let at = first.html.find("cursor=").expect("a link to look further") + 7;
    let cursor = first.html[at..].split('"').next().unwrap();
    assert_eq!(cursor, "1000", "it goes on after the last case read");
    let further = p.get(&format!("/ui/cases?process=complaint&status=running&from=2026-11-24&cursor={cursor}")).await;
    assert!(further.html.contains("20261124-001"), "{}", further.html);
    assert!(!further.html.contains("Look further"), "nothing more to read");
}

#[tokio::test]
async fn a_manager_changes_a_case_s_fields_with_errors_by_their_fields_and_a_representative_cannot() {
    let api = Api::new();
    set_password(&api, "liu_yang");
    set_password(&api, "li_na");
    let case = start(&api, "high").await;
    let fields_of = |c: &serde_json::Value| c["fields"].clone();
    let (_, before) = api.call("GET", &format!("/instances/{case}"), Some("admin"), None, &[]).await;
    let mut rep = Person::new(&api);
    rep.sign_in("liu_yang", PASSWORD).await;
    let page = rep.get(&format!("/ui/cases/{case}")).await;
    assert!(!page.html.contains("Change fields"), "no form without the permission");
    let forged = rep.post(&format!("/ui/cases/{case}/fields"), &[("_csrf", &page.csrf()), ("urgency", "low")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.html);
    let mut manager = Person::new(&api);
    manager.sign_in("li_na", PASSWORD).await;
    let page = manager.get(&format!("/ui/cases/{case}")).await;
    assert!(page.html.contains("Change fields") && page.html.contains("紧急程度"), "{}", page.html);
    let csrf = page.csrf();
    let bad = manager
        .post(&format!("/ui/cases/{case}/fields"), &[("_csrf", &csrf), ("urgency", "medium"), ("satisfaction", "9")])
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.html);
    assert!(bad.html.contains("id=\"f-satisfaction-error\""), "the error beside its field: {}", bad.html);
    assert!(bad.html.contains("value=\"medium\" checked"), "what was typed is kept");
    let (_, c) = api.call("GET", &format!("/instances/{case}"), Some("admin"), None, &[]).await;
    assert_eq!(fields_of(&c), fields_of(&before), "nothing changed");
    // The form sent as shown changes nothing and records nothing.
    let same = manager.post(&format!("/ui/cases/{case}/fields"), &[("_csrf", &csrf), ("urgency", "high")]).await;
    assert!(same.html.contains("Nothing was changed."), "{}", same.html);
    let done = manager.post(&format!("/ui/cases/{case}/fields"), &[("_csrf", &csrf), ("urgency", "medium")]).await;
    assert!(done.html.contains("Fields changed: urgency."), "{}", done.html);
    let (_, h) = api.call("GET", &format!("/instances/{case}/history"), Some("admin"), None, &[]).await;
    let updates: Vec<&serde_json::Value> =
        h["history"].as_array().unwrap().iter().filter(|e| e["event"] == "fields_updated").collect();
    assert_eq!(updates.len(), 1, "one change recorded: {updates:?}");
    assert_eq!(updates[0]["actor"], "li_na");
    let changed: Vec<&str> =
        updates[0]["changes"].as_array().unwrap().iter().map(|c| c["field"].as_str().unwrap()).collect();
    assert_eq!(changed, ["urgency"]);
}

#[tokio::test]
async fn the_case_page_offers_the_messages_the_case_takes_now_and_sends_one() {
    let api = Api::new();
    set_password(&api, "liu_yang");
    let source =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../processes/relationship.flow")).unwrap();
    api.engine.deploy(&source, api.clock.now()).unwrap();
    let body = r#"{"process":"relationship","fields":{"customer":"第一中学","tier":"core"}}"#;
    let (s, c) = api.call("POST", "/instances", Some("crm"), Some(body), &[]).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let case = c["id"].as_u64().unwrap();
    let complaint = start(&api, "high").await;
    let mut rep = Person::new(&api);
    rep.sign_in("liu_yang", PASSWORD).await;
    assert!(!rep.get(&format!("/ui/cases/{complaint}")).await.html.contains("Send the message"), "nothing listens");
    let page = rep.get(&format!("/ui/cases/{case}")).await;
    assert!(page.html.contains("<option value=\"customer_left\">"), "{}", page.html);
    let unnamed = rep.post(&format!("/ui/cases/{case}/act"), &[("_csrf", &page.csrf()), ("action", "message")]).await;
    assert!(unnamed.html.contains("Choose the message to send."));
    let sent = rep
        .post(
            &format!("/ui/cases/{case}/act"),
            &[("_csrf", &page.csrf()), ("action", "message"), ("name", "customer_left")],
        )
        .await;
    assert!(sent.html.contains("Message customer_left delivered; the case is completed now."), "{}", sent.html);
    let (_, c) = api.call("GET", &format!("/instances/{case}"), Some("admin"), None, &[]).await;
    assert_eq!(c["status"], "completed");
}

#[tokio::test]
async fn pages_speak_the_browser_s_language_or_the_one_chosen_and_chinese_by_default() {
    let api = Api::new();
    set_password(&api, "li_na");
    let case = start(&api, "high").await;
    let mut p = Person::new(&api);
    let zh = [("accept-language", "zh-CN,zh;q=0.9")];
    let sign_in = p.send("GET", "/ui/login", None, &zh).await;
    assert!(
        sign_in.html.contains("<html lang=\"zh-CN\">") && sign_in.html.contains("<h1>登录</h1>"),
        "{}",
        sign_in.html
    );
    let sign_in = p.send("GET", "/ui/login", None, &[("accept-language", "fr-FR,fr")]).await;
    assert!(sign_in.html.contains("<h1>登录</h1>"), "Chinese when the browser asks for neither");
    assert!(p.get("/ui/login").await.html.contains("<h1>Sign in</h1>"));
    p.sign_in("li_na", PASSWORD).await;
    let inbox = p.get("/ui/inbox").await;
    assert!(
        inbox.html.contains("<html lang=\"en\">") && inbox.html.contains("href=\"/ui/lang/zh-CN\""),
        "{}",
        inbox.html
    );
    // The switch keeps the choice and goes back to the page; any browser language is then overruled.
    let switched =
        p.send("GET", "/ui/lang/zh-CN", None, &[("referer", "http://console.test/ui/cases?status=running")]).await;
    assert_eq!((switched.status, switched.location()), (StatusCode::SEE_OTHER, "/ui/cases?status=running"));
    assert_eq!(p.lang.as_deref(), Some("zh-CN"));
    let inbox = p.get("/ui/inbox").await;
    assert!(inbox.html.contains("<h1>待办</h1>") && inbox.html.contains("href=\"/ui/lang/en\""), "{}", inbox.html);
    assert!(inbox.html.contains("剩余") && !inbox.html.contains(" left<"), "working time in Chinese");
    let page = p.get(&format!("/ui/cases/{case}")).await;
    assert!(page.html.contains("进行中") && page.html.contains("任务 2 的期限"), "{}", page.html);
    let refused = p.get("/ui/cases?process=complaint&from=24.11.2026").await;
    assert!(refused.html.contains("“24.11.2026”不是日期"), "{}", refused.html);
    // Not a place to go back to, or not a language: the inbox, or a page that says so.
    let back = p.send("GET", "/ui/lang/en", None, &[("referer", "http://evil.example/")]).await;
    assert_eq!(back.location(), "/ui/inbox");
    assert_eq!(p.get("/ui/lang/xx").await.status, StatusCode::NOT_FOUND);
    assert_eq!(p.lang.as_deref(), Some("en"));
}

/// The next `task` event of a live-update stream: the last case it names.
async fn next_task_event(body: &mut Body) -> String {
    let mut text = String::new();
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .unwrap();
        if let Some(data) = frame.data_ref() {
            text.push_str(std::str::from_utf8(data).unwrap());
        }
        if let Some(at) = text.find("event: task\ndata: ") {
            let rest = &text[at + 18..];
            if let Some(end) = rest.find('\n') {
                let data: serde_json::Value = serde_json::from_str(&rest[..end]).unwrap();
                assert!(data["changes"].as_u64().unwrap() >= 1, "{data}");
                return data["case"].to_string();
            }
        }
    }
}

/// Whether a stream has something to send now (polled once, without waiting).
fn ready_now(body: &mut Body) -> bool {
    let mut frame = std::pin::pin!(body.frame());
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    std::future::Future::poll(frame.as_mut(), &mut cx).is_ready()
}

#[tokio::test]
async fn live_updates_reach_those_whose_tasks_changed_and_everyone_when_a_case_ends() {
    let api = Api::new();
    set_password(&api, "liu_yang");
    set_password(&api, "li_na");
    let mut streams = Vec::new();
    for user in ["liu_yang", "li_na"] {
        let mut p = Person::new(&api);
        p.sign_in(user, PASSWORD).await;
        let req = Request::get("/ui/events")
            .header("cookie", format!("caseflow_session={}", p.cookie.clone().unwrap()))
            .body(Body::empty())
            .unwrap();
        let resp = api.app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        streams.push(resp.into_body());
    }
    // A complaint's first task is the representatives' (cs_rep), not the manager's. By the time
    // the representative's stream has it, the manager's would have been woken too.
    let case = start(&api, "high").await;
    assert_eq!(next_task_event(&mut streams[0]).await, case.to_string(), "the representative's task opened");
    assert!(!ready_now(&mut streams[1]), "the manager is not told of a representative's task");
    // A cancellation ends tasks anyone may have had on screen: everyone is told.
    let (s, _) =
        api.call("POST", &format!("/instances/{case}/cancel"), Some("admin"), Some(r#"{"reason":"test"}"#), &[]).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(next_task_event(&mut streams[1]).await, case.to_string());
    assert_eq!(next_task_event(&mut streams[0]).await, case.to_string());
}

#[tokio::test]
async fn a_time_is_typed_and_shown_on_the_calendar_s_wall_clock() {
    let api = Api::new();
    set_password(&api, "liu_yang");
    let flow = r#"
process visit "上门" {
  fields {
    customer: text "客户" required
    at: datetime "上门时间"
  }
  start -> book
  task book "预约上门" { assign role cs_rep asks at required -> done }
  end done
}
"#;
    api.engine.deploy(flow, api.clock.now()).unwrap();
    let (s, c) = api
        .call("POST", "/instances", Some("crm"), Some(r#"{"process":"visit","fields":{"customer":"第一中学"}}"#), &[])
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let case = c["id"].as_u64().unwrap();
    let (task, holder, _) = first_task(&api, case).await;
    let mut p = Person::new(&api);
    set_password(&api, &holder);
    p.sign_in(&holder, PASSWORD).await;
    let page = p.get(&format!("/ui/tasks/{task}")).await;
    assert!(page.html.contains("type=\"datetime-local\" name=\"at\""), "{}", page.html);
    let bad = p.post(&format!("/ui/tasks/{task}/draft"), &[("_csrf", &page.csrf()), ("at", "tomorrow at two")]).await;
    assert!(
        bad.html.contains("a date and time is needed") && bad.html.contains("value=\"tomorrow at two\""),
        "{}",
        bad.html
    );
    // 14:30 in Beijing is 06:30 UTC; a draft keeps it, and the form shows it back as typed.
    let saved =
        p.post(&format!("/ui/tasks/{task}/draft"), &[("_csrf", &page.csrf()), ("at", "2026-11-25T14:30")]).await;
    assert!(saved.html.contains("value=\"2026-11-25T14:30\""), "{}", saved.html);
    let done = p.post(&format!("/ui/tasks/{task}"), &[("_csrf", &page.csrf()), ("at", "2026-11-25T14:30")]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.html);
    let (_, c) = api.call("GET", &format!("/instances/{case}"), Some("admin"), None, &[]).await;
    assert_eq!(c["fields"]["at"], "2026-11-25T06:30:00+00:00");
}

/// The cases list searches by a field the process indexes (the complaint's `urgency`), through
/// its index; a field it does not index is said so, not silently ignored.
#[tokio::test]
async fn the_cases_list_searches_by_an_indexed_field() {
    let api = Api::new();
    set_password(&api, "li_na");
    for urgency in ["high", "low", "high"] {
        start(&api, urgency).await;
    }
    let mut p = Person::new(&api);
    p.sign_in("li_na", PASSWORD).await;
    let list = p.get("/ui/cases?process=complaint&status=running&field=urgency&value=low").await;
    assert_eq!(list.status, StatusCode::OK);
    assert!(list.html.contains(r#"href="/ui/cases/2""#), "{}", list.html);
    assert!(
        !list.html.contains(r#"href="/ui/cases/1""#) && !list.html.contains(r#"href="/ui/cases/3""#),
        "{}",
        list.html
    );
    assert!(list.html.contains(r#"<option value="urgency" selected>"#), "the form keeps the search: {}", list.html);
    // Sensitive: never searched by, on any store.
    let refused = p.get("/ui/cases?process=complaint&status=running&field=contact&value=x").await;
    assert!(refused.html.contains("Cases cannot be searched by `contact`"), "{}", refused.html);
}
