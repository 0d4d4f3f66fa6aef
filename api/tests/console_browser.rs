//! The console in a real browser: Debian's chromium, headless, driven through chromedriver
//! (WebDriver, fantoccini), against the server on a loopback port with a manual clock. A
//! representative signs in, reads the inbox in deadline order, sees a new case arrive without
//! reloading, moves with the keys, sends a task's form with a missing answer and sees the
//! error beside its field with what they typed kept, completes it, and finds the case on its
//! diagram, in Chinese as the browser asks; a manager switches to English and reassigns
//! overdue work in bulk. Screenshots of each page go to `target/console-screenshots/`
//! (docs/console.md shows them).
//!
//! Needs `chromium`, `chromedriver` and axe-core: when one is missing, the test runs the
//! project's `scripts/install-browser.sh` first (Debian's packages need root or sudo), so
//! `cargo test --workspace` on a fresh machine installs what it drives.

mod common;

use caseflow::passwords;
use caseflow_engine::clock::Clock;
use caseflow_engine::service::accounts::{self, PasswordRecord};
use common::{Api, START};
use fantoccini::{Client, ClientBuilder, Locator};
use std::time::Duration;

const PASSWORD: &str = "correct horse battery";

struct Driver(std::process::Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Installs the browser, its driver, a CJK font and axe-core when one is missing.
fn ensure_installed() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::process::Command::new(root.join("scripts/install-browser.sh"))
        .output()
        .expect("scripts/install-browser.sh runs");
    assert!(
        out.status.success(),
        "scripts/install-browser.sh failed (it installs Debian's chromium and chromium-driver: run it as root or with sudo):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// chromedriver on a free port, once it accepts connections.
async fn chromedriver() -> (Driver, u16) {
    ensure_installed();
    let binary = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect(
            "chromedriver is not installed: run scripts/install-browser.sh (Debian's chromium and chromium-driver)",
        );
    let port = free_port();
    let child = std::process::Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver(child);
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return (driver, port);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("chromedriver did not start listening on port {port}");
}

async fn browser(port: u16) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            // As root in a container: no sandbox; no network beyond loopback.
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                     "--no-first-run", "--disable-background-networking", "--disable-component-update",
                     "--disable-sync", "--window-size=1280,900", "--lang=zh-CN"],
            // The browser asks for Chinese, as the service department's do: the pages are in
            // Chinese until someone switches.
            "prefs": {"intl.accept_languages": "zh-CN,zh"}
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a chromium session")
}

/// The server on a loopback port, over the test API's engine and clock.
async fn serve(api: &Api) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = caseflow::listen::Limits {
        header_read_timeout: Duration::from_secs(10),
        connections_max: 100,
        shutdown_grace: Duration::from_secs(1),
    };
    tokio::spawn(caseflow::listen::serve(listener, api.app.clone(), limits, std::future::pending()));
    format!("http://{addr}")
}

fn set_password(api: &Api, user: &str) {
    let record = PasswordRecord { phc: passwords::hash(PASSWORD), set_at: api.clock.now(), set_by: "test".into() };
    accounts::set_password(api.engine.store(), user, &record, None).unwrap();
}

async fn start(api: &Api, urgency: &str) -> (u64, String) {
    let body = START.replace("\"urgency\":\"high\"", &format!("\"urgency\":\"{urgency}\""));
    let (_, case) = api.call("POST", "/instances", Some("crm"), Some(&body), &[]).await;
    (case["id"].as_u64().unwrap(), case["tasks"][0]["assignee"].as_str().unwrap().to_string())
}

async fn rows(c: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for r in c.find_all(Locator::Css("tr[data-task]")).await.unwrap() {
        out.push(r.attr("data-task").await.unwrap().unwrap());
    }
    out
}

async fn screenshot(c: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), c.screenshot().await.unwrap()).unwrap();
}

/// The accessibility audit (axe-core, WCAG 2.1 A and AA rules) of the page shown: every
/// violation, as `rule (impact): help, N elements`.
async fn audit(c: &Client) -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/node_modules/axe-core/axe.min.js");
    let axe = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run scripts/install-browser.sh", path.display()));
    c.execute(&axe, vec![]).await.unwrap();
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] })
                .then(r => done(r.violations.map(v => `${v.id} (${v.impact}): ${v.help}, ${v.nodes.length} elements: ${v.nodes.map(n => n.target.join(' ')).slice(0, 3).join('; ')}`)))
                .catch(e => done(['axe failed: ' + e]));",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(found).unwrap()
}

async fn wait_for(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_representative_works_through_the_inbox_in_chromium() {
    let api = Api::new();
    let (low, _) = start(&api, "low").await;
    let (high, me) = start(&api, "high").await;
    let (medium, _) = start(&api, "medium").await;
    set_password(&api, &me);
    let base = serve(&api).await;
    let (_driver, port) = chromedriver().await;
    let c = browser(port).await;

    // Not signed in: the sign-in page, then back to the inbox.
    c.goto(&format!("{base}/ui/inbox")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/login"));
    c.find(Locator::Css("input[name=user]")).await.unwrap().send_keys(&me).await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    screenshot(&c, "sign-in").await;
    c.find(Locator::Css("form.signin button")).await.unwrap().click().await.unwrap();
    wait_for(&c, "table.inbox").await;
    let order: Vec<String> = [high, medium, low].iter().map(|i| format!("{i}-2")).collect();
    assert_eq!(rows(&c).await, order, "the soonest breach first");
    screenshot(&c, "inbox").await;
    let mut problems = Vec::new();
    problems.extend(audit(&c).await.into_iter().map(|v| format!("inbox: {v}")));

    // A case arrives: the page shows it without a reload, and counts the change.
    c.execute("document.body.dataset.marker = 'not reloaded'", vec![]).await.unwrap();
    let (newest, _) = start(&api, "high").await;
    let row = format!("tr[data-task=\"{newest}-2\"]");
    wait_for(&c, &row).await;
    let marker = c.execute("return document.body.dataset.marker", vec![]).await.unwrap();
    assert_eq!(marker, "not reloaded");
    let count = c.find(Locator::Id("changes")).await.unwrap().text().await.unwrap();
    assert!(count.parse::<u32>().unwrap() >= 1, "{count}");

    // Keys: `?` shows the help; `j` `j` and Enter open the second task.
    let body = c.find(Locator::Css("body")).await.unwrap();
    body.send_keys("?").await.unwrap();
    assert_eq!(c.find(Locator::Id("keys")).await.unwrap().attr("open").await.unwrap().as_deref(), Some("true"));
    body.send_keys("\u{e00c}").await.unwrap(); // Escape closes it
    body.send_keys("j").await.unwrap();
    let first = rows(&c).await[0].clone();
    body.send_keys("\u{e007}").await.unwrap(); // Enter
    wait_for(&c, "form.task").await;
    assert!(c.current_url().await.unwrap().path().ends_with(&format!("/ui/tasks/{first}")));

    // The high case's task: sent without its required answer, the error sits beside the field
    // and what was typed stays.
    c.goto(&format!("{base}/ui/tasks/{high}-2")).await.unwrap();
    let content = wait_for(&c, "textarea[name=content]").await;
    content.clear().await.unwrap();
    content.send_keys("屏幕闪烁").await.unwrap();
    c.find(Locator::Css("form.task button[type=submit]")).await.unwrap().click().await.unwrap();
    let error = wait_for(&c, "#f-cause-error").await;
    assert!(!error.text().await.unwrap().is_empty());
    assert_eq!(
        c.find(Locator::Css("textarea[name=content]")).await.unwrap().prop("value").await.unwrap().as_deref(),
        Some("屏幕闪烁")
    );
    screenshot(&c, "task-form-error").await;
    problems.extend(audit(&c).await.into_iter().map(|v| format!("task form: {v}")));
    c.find(Locator::Css("input[name=cause][value=quality]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("form.task button[type=submit]")).await.unwrap().click().await.unwrap();
    let flash = wait_for(&c, "p.flash.info").await;
    assert!(flash.text().await.unwrap().contains(&format!("任务 {high}-2 已完成")), "in Chinese, as the browser asks");
    let (_, case) = api.call("GET", &format!("/instances/{high}"), Some("admin"), None, &[]).await;
    assert_eq!(case["fields"]["content"], "屏幕闪烁");

    // The case on its diagram: where it is now, and where it has been.
    c.goto(&format!("{base}/ui/cases/{high}")).await.unwrap();
    wait_for(&c, ".diagram svg g.current").await;
    let done = c.find_all(Locator::Css(".diagram svg g.visited")).await.unwrap();
    assert!(done.len() >= 2, "start and receive are done");
    screenshot(&c, "case").await;
    problems.extend(audit(&c).await.into_iter().map(|v| format!("case: {v}")));

    // The list of cases, with the four started here.
    c.goto(&format!("{base}/ui/cases?process=complaint&status=running")).await.unwrap();
    assert_eq!(c.find_all(Locator::Css("table.cases tbody tr")).await.unwrap().len(), 4);
    screenshot(&c, "cases").await;
    problems.extend(audit(&c).await.into_iter().map(|v| format!("cases: {v}")));

    // One's account: the password form and the sessions.
    c.goto(&format!("{base}/ui/account")).await.unwrap();
    wait_for(&c, "form.password").await;
    screenshot(&c, "account").await;
    problems.extend(audit(&c).await.into_iter().map(|v| format!("account: {v}")));

    // Signing out: the inbox asks for a sign-in again.
    c.find(Locator::Css("header form button")).await.unwrap().click().await.unwrap();
    wait_for(&c, "form.signin").await;
    problems.extend(audit(&c).await.into_iter().map(|v| format!("sign-in: {v}")));
    c.goto(&format!("{base}/ui/inbox")).await.unwrap();
    wait_for(&c, "form.signin").await;
    c.close().await.unwrap();
    assert!(problems.is_empty(), "accessibility (axe-core, WCAG 2.1 AA):\n{}", problems.join("\n"));
}

/// Signs `user` in through the sign-in page.
async fn sign_in(c: &Client, base: &str, user: &str) {
    c.goto(&format!("{base}/ui/login")).await.unwrap();
    c.find(Locator::Css("input[name=user]")).await.unwrap().send_keys(user).await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    c.find(Locator::Css("form.signin button")).await.unwrap().click().await.unwrap();
    wait_for(c, "table.inbox").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_reassigns_overdue_escalated_work_in_bulk_and_a_phone_can_work_too() {
    let api = Api::new();
    let (first, _) = start(&api, "high").await;
    let (second, _) = start(&api, "high").await;
    set_password(&api, "li_na");
    set_password(&api, "liu_yang");
    // Both deadlines pass: overdue, and escalated to a manager at once (delay 0 in the rules).
    api.clock.advance(chrono::Duration::minutes(20));
    api.engine.fire_due(api.clock.now(), 100).unwrap();
    let base = serve(&api).await;
    let (_driver, port) = chromedriver().await;
    let c = browser(port).await;
    sign_in(&c, &base, "li_na").await;
    // The manager switches to English in the header; the choice stays for the session's pages.
    assert_eq!(c.find(Locator::Css("html")).await.unwrap().attr("lang").await.unwrap().as_deref(), Some("zh-CN"));
    c.find(Locator::Css("span.langs a[hreflang=en]")).await.unwrap().click().await.unwrap();
    wait_for(&c, "html[lang=en] table.inbox").await;
    let tasks = [format!("{first}-2"), format!("{second}-2")];
    assert_eq!(rows(&c).await, tasks);
    for t in &tasks {
        let row = c.find(Locator::Css(&format!("tr[data-task=\"{t}\"]"))).await.unwrap();
        let marks = row.find(Locator::Css("td.marks")).await.unwrap().text().await.unwrap();
        assert!(marks.contains("overdue") && marks.contains("escalated"), "{t}: {marks}");
    }
    screenshot(&c, "inbox-manager").await;
    // Select both, choose whom and why, reassign: a result per task.
    for t in &tasks {
        c.find(Locator::Css(&format!("input[type=checkbox][value=\"{t}\"]"))).await.unwrap().click().await.unwrap();
    }
    c.find(Locator::Css("form.bulk select[name=to] option[value=wang_fang]")).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("form.bulk input[name=reason]")).await.unwrap().send_keys("病假，由王芳接手").await.unwrap();
    c.find(Locator::Css("form.bulk button[value=reassign]")).await.unwrap().click().await.unwrap();
    wait_for(&c, "p.flash.info").await;
    let results: Vec<String> = {
        let mut out = Vec::new();
        for f in c.find_all(Locator::Css("p.flash")).await.unwrap() {
            out.push(f.text().await.unwrap());
        }
        out
    };
    assert_eq!(results, tasks.iter().map(|t| format!("{t}: reassigned to wang_fang")).collect::<Vec<_>>());
    for id in [first, second] {
        let (_, case) = api.call("GET", &format!("/instances/{id}"), Some("admin"), None, &[]).await;
        assert_eq!(case["tasks"][0]["assignee"], "wang_fang");
    }
    // The team page: the work of the people who report to the manager.
    c.goto(&format!("{base}/ui/team")).await.unwrap();
    wait_for(&c, "table.team").await;
    screenshot(&c, "team").await;
    let mut problems: Vec<String> = audit(&c).await.into_iter().map(|v| format!("team: {v}")).collect();
    c.find(Locator::Css("header form button")).await.unwrap().click().await.unwrap();
    wait_for(&c, "form.signin").await;

    // A representative on a phone: the inbox and a form fit, and pass the audit.
    c.set_window_size(390, 844).await.unwrap();
    sign_in(&c, &base, "liu_yang").await;
    let head_shown = c.find(Locator::Css("table.inbox thead")).await.unwrap().is_displayed().await.unwrap();
    assert!(!head_shown, "no table header on a phone: each task is a block");
    let width: f64 =
        serde_json::from_value(c.execute("return document.documentElement.scrollWidth", vec![]).await.unwrap())
            .unwrap();
    assert!(width <= 390.0, "nothing wider than the phone: {width}px");
    screenshot(&c, "inbox-phone").await;
    problems.extend(audit(&c).await.into_iter().map(|v| format!("inbox (phone): {v}")));
    c.goto(&format!("{base}/ui/tasks/{first}-2")).await.unwrap();
    wait_for(&c, "form.task").await;
    screenshot(&c, "task-phone").await;
    problems.extend(audit(&c).await.into_iter().map(|v| format!("task (phone): {v}")));
    c.close().await.unwrap();
    assert!(problems.is_empty(), "accessibility (axe-core, WCAG 2.1 AA):\n{}", problems.join("\n"));
}
