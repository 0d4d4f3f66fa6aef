//! The real server on a free port, as an integrator meets it: a complaint case over HTTP/1.1,
//! a graceful shutdown on SIGTERM, and the case still there after a restart.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "common/served.rs"]
mod served;
use served::{cleanup, json, temp_data, Server};

/// The tests over a real socket complete a new complaint's task with the token of whoever it
/// went to, and that depends on the wall clock (who is on shift) and the roster: every
/// representative, and the role's fallback, must have a development token in `caseflow.toml`.
/// (Without `dev-wang-fang` those tests failed on Tuesdays and Thursdays, and after 17:30 in
/// Beijing on other weekdays.)
#[test]
fn everyone_a_new_complaint_task_can_go_to_has_a_development_token() {
    let rules = caseflow_tests::shipped_rules();
    let config = caseflow::config::Config::load(Some(&caseflow_tests::root().join("caseflow.toml"))).unwrap();
    let with_tokens: Vec<&str> = config.tokens.iter().map(|t| t.user.as_str()).collect();
    let rep = &rules.roles["cs_rep"];
    let can_get: Vec<&str> = rules
        .users
        .values()
        .filter(|u| u.roles.iter().any(|r| r == "cs_rep"))
        .map(|u| u.id.as_str())
        .chain(rep.fallback.as_deref())
        .collect();
    assert!(can_get.len() >= 3, "{can_get:?}");
    for user in can_get {
        assert!(with_tokens.contains(&user), "{user} has no development token in caseflow.toml");
    }
}

#[test]
fn a_complaint_case_over_a_real_socket_survives_a_restart() {
    let data: PathBuf = std::env::temp_dir().join(format!("caseflow-server-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let server = Server::start(&data);
    assert_eq!(server.call("GET", "/health", "", None).0, 200);
    assert_eq!(server.call("GET", "/instances/1", "wrong", None).0, 401);
    let start = r#"{"process":"complaint","fields":{"customer":"第一中学","contact":"138-0000-0000","content":"投影仪无法开机","urgency":"medium"}}"#;
    let (status, body) = server.call("POST", "/instances", "dev-crm", Some(start));
    assert_eq!(status, 201, "{body}");
    let inst = json(&body);
    let task = inst["tasks"][0]["id"].as_str().unwrap().to_string();
    let assignee = inst["tasks"][0]["assignee"].as_str().unwrap().replace('_', "-");
    let (status, body) = server.call(
        "POST",
        &format!("/tasks/{task}/complete"),
        &format!("dev-{assignee}"),
        Some(r#"{"fields":{"cause":"quality"}}"#),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["fields"]["department"], "rnd");
    let log = data.with_extension("log");
    let stopped = server.stop();
    assert!(
        stopped.success(),
        "graceful shutdown exits 0, not {stopped}: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // Restarted on the same data: the case is where it was.
    let server = Server::start(&data);
    let (status, body) = server.call("GET", &format!("/instances/{}", inst["id"]), "dev-admin", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["current_steps"][0], "verify");
    // `caseflow test --record` asks the running server for the case as a scenario.
    let url = format!("http://{}", server.addr);
    let key = inst["business_key"].as_str().unwrap();
    let record = |case: &str, token: &str| {
        Command::new(env!("CARGO_BIN_EXE_caseflow"))
            .args(["test", "--record", case, "--url", &url, "--token", token])
            .output()
            .unwrap()
    };
    let out = record(key, "dev-admin");
    let scenario = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(scenario.contains("complete = \"receive\"") && scenario.contains("cause = \"quality\""), "{scenario}");
    assert_eq!(String::from_utf8_lossy(&record(&inst["id"].to_string(), "dev-admin").stdout), scenario, "by id too");
    let out = record("NO-SUCH-CASE", "dev-admin");
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let out = record(key, "dev-crm");
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("403"), "not an administrator");
    let stopped = server.stop();
    assert!(stopped.success(), "{stopped}: {}", std::fs::read_to_string(&log).unwrap_or_default());
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(&log);
}

/// Runs `caseflow serve` in `cwd` with `env`, expects it to refuse to start, and returns what
/// it said.
fn refused_start(cwd: &Path, env: &[(&str, &std::ffi::OsStr)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_caseflow"))
        .arg("serve")
        .current_dir(cwd)
        .env_remove("CASEFLOW_CONFIG")
        .env("CASEFLOW_BIND", "127.0.0.1:0")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "it started: {stderr}");
    stderr
}

fn with(headers: &[String; 3]) -> Vec<&str> {
    headers.iter().map(String::as_str).collect()
}

/// Reads a response up to the end of its head.
fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            other => panic!("the head ended early ({other:?}): {}", String::from_utf8_lossy(&head)),
        }
    }
    String::from_utf8(head).unwrap()
}

#[test]
fn shutdown_ends_event_streams_and_lets_requests_in_flight_finish() {
    let data = temp_data("shutdown");
    let mut server = Server::start(&data);
    // A subscriber to the event stream, which never ends by itself.
    let mut events = server.send_head("GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer dev-admin\r\n\r\n");
    assert!(read_head(&mut events).starts_with("HTTP/1.1 200"), "the stream opened");
    // A start in flight when the signal comes: its handler is reading the body (the server
    // says so with `100 Continue`), and the body has not been sent yet.
    let body = r#"{"process":"complaint","fields":{"customer":"第一中学","contact":"138-0000-0000","content":"投影仪无法开机","urgency":"medium"}}"#;
    let mut start = server.send_head(&format!(
        "POST /instances HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer dev-crm\r\nContent-Type: application/json\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n",
        body.len()
    ));
    let go_on = read_head(&mut start);
    assert!(go_on.starts_with("HTTP/1.1 100"), "{go_on}");
    let rest = body;
    server.terminate();
    // Shutdown has begun once the listener is closed.
    let began = Instant::now();
    while TcpStream::connect(&server.addr).is_ok() {
        assert!(began.elapsed() < Duration::from_secs(10), "the listener never closed");
        std::thread::sleep(Duration::from_millis(5));
    }
    start.write_all(rest.as_bytes()).unwrap();
    let head = read_head(&mut start);
    assert!(head.starts_with("HTTP/1.1 201"), "the request in flight finished: {head}");
    assert!(head.to_ascii_lowercase().contains("connection: close"), "and its connection closes: {head}");
    let status = server.exited_within(Duration::from_secs(10)).expect("the event stream did not hold the shutdown");
    assert!(status.success(), "{status}: {}", std::fs::read_to_string(data.with_extension("log")).unwrap_or_default());
    let mut rest = Vec::new();
    events.read_to_end(&mut rest).expect("the stream ended cleanly");
    // The case started during shutdown was kept.
    let server = Server::start(&data);
    let (status, body) = server.call("GET", "/instances?process=complaint", "dev-admin", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["instances"].as_array().map(Vec::len), Some(1), "{body}");
    assert!(server.stop().success());
    cleanup(&data);
}

#[test]
fn a_connection_that_sends_nothing_is_closed_after_the_header_timeout() {
    let data = temp_data("header-timeout");
    let server = Server::start_with(&data, None, &[("CASEFLOW_HEADER_READ_TIMEOUT_SECS", "1")]);
    let mut silent = TcpStream::connect(&server.addr).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let opened = Instant::now();
    let mut buf = [0u8; 64];
    let n = silent.read(&mut buf).expect("closed by the server, not by our read timeout");
    assert_eq!(n, 0, "closed without an answer");
    assert!(opened.elapsed() < Duration::from_secs(5), "closed after {:?}", opened.elapsed());
    // A slow client that sent half a head is closed too.
    let mut slow = server.send_head("GET /health HTTP/1.1\r\nHo");
    assert_eq!(slow.read(&mut buf).unwrap_or(0), 0);
    assert!(server.stop().success());
    cleanup(&data);
}

#[test]
fn a_body_that_stops_sending_is_refused_with_a_problem() {
    let data = temp_data("body-timeout");
    let server = Server::start_with(&data, None, &[("CASEFLOW_BODY_IDLE_TIMEOUT_SECS", "1")]);
    let mut trickle = server.send_head(
        "POST /instances HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer dev-crm\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"process\":",
    );
    let sent = Instant::now();
    let head = read_head(&mut trickle);
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(head.contains("application/problem+json"), "{head}");
    assert!(sent.elapsed() < Duration::from_secs(5), "answered after {:?}", sent.elapsed());
    let (status, body) = server.call("GET", "/instances?process=complaint", "dev-admin", None);
    assert_eq!((status, json(&body)["instances"].as_array().map(Vec::len)), (200, Some(0)), "nothing started");
    assert!(server.stop().success());
    cleanup(&data);
}

/// Opens `n` connections that send nothing.
fn idle_connections(addr: &str, n: usize) -> Vec<TcpStream> {
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    (0..n)
        .map(|i| {
            TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("idle connection {i} of {n}: {e}"))
        })
        .collect()
}

/// Whether the server has closed this connection (it reads end of file, not "would block").
fn closed_by_server(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 1];
    let closed = match (&*s).read(&mut buf) {
        Ok(n) => n == 0,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

/// 2,000 idle sockets against a server held to 1,024 open files (soft and hard, so it cannot
/// raise its limit): the least recently active are closed for newcomers, and `/health`
/// answers at once.
#[test]
fn health_answers_with_two_thousand_idle_connections_under_a_limit_of_1024_files() {
    const IDLE: usize = 2_000;
    // This test's own process needs the descriptors for its side of the sockets.
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    assert!(hard >= 2 * IDLE as u64, "this test needs a hard limit of {} open files, not {hard}", 2 * IDLE);
    rlimit::increase_nofile_limit(2 * IDLE as u64 + 256).unwrap();
    let data = temp_data("idle-flood");
    // Idle connections are not closed by their header timeout during the test: only the cap
    // can make room.
    let server = Server::start_with(&data, Some("-n 1024"), &[("CASEFLOW_HEADER_READ_TIMEOUT_SECS", "120")]);
    let idle = idle_connections(&server.addr, IDLE);
    let asked = Instant::now();
    let (status, body) = server.call("GET", "/health", "", None);
    assert_eq!(status, 200, "{body}");
    assert!(asked.elapsed() < Duration::from_secs(2), "/health took {:?}", asked.elapsed());
    let shed = idle.iter().filter(|s| closed_by_server(s)).count();
    assert!(shed >= IDLE - 1_024, "only {shed} of {IDLE} idle connections were closed");
    assert!(!closed_by_server(idle.last().unwrap()), "the newest are kept");
    drop(idle);
    assert!(server.stop().success());
    cleanup(&data);
}

/// Under a soft limit of 1,024 and a higher hard limit the server raises its own limit, and
/// every one of 2,000 idle connections stays open until its header timeout.
#[test]
fn the_server_raises_a_low_soft_limit_on_open_files() {
    const IDLE: usize = 2_000;
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    assert!(hard >= 2 * IDLE as u64 + 256, "this test needs a hard limit of {} open files, not {hard}", 2 * IDLE + 256);
    rlimit::increase_nofile_limit(2 * IDLE as u64 + 256).unwrap();
    let data = temp_data("raised-limit");
    let server = Server::start_with(&data, Some("-Sn 1024"), &[("CASEFLOW_HEADER_READ_TIMEOUT_SECS", "120")]);
    let idle = idle_connections(&server.addr, IDLE);
    let (status, body) = server.call("GET", "/health", "", None);
    assert_eq!(status, 200, "{body}");
    let shed = idle.iter().filter(|s| closed_by_server(s)).count();
    assert_eq!(shed, 0, "no connection had to be closed");
    drop(idle);
    assert!(server.stop().success());
    cleanup(&data);
}

/// A copy of the shipped rules, to break.
fn rules_copy(data: &Path) -> PathBuf {
    let rules = data.with_extension("rules");
    let _ = std::fs::remove_dir_all(&rules);
    std::fs::create_dir_all(&rules).unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../rules")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|x| x == "toml") {
            std::fs::copy(&path, rules.join(path.file_name().unwrap())).unwrap();
        }
    }
    rules
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no `{from}`", path.display());
    std::fs::write(path, text.replacen(from, to, 1)).unwrap();
}

#[test]
fn a_broken_rules_file_does_not_stop_a_restart() {
    let data = temp_data("broken-rules");
    let rules = rules_copy(&data);
    let env = [("CASEFLOW_RULES_DIR", rules.to_str().unwrap())];
    let server = Server::start_with(&data, None, &env);
    assert!(server.stop().success());
    // Changed while the server was down, validly: a change like any other, recorded.
    edit(&rules.join("values.toml"), "high = \"10min\"", "high = \"5min\"");
    let server = Server::start_with(&data, None, &env);
    let (_, changes) = server.call("GET", "/admin/rules/changes", "dev-admin", None);
    let changes = json(&changes);
    assert_eq!(changes["changes"][0]["by"], "caseflow (start)", "{changes}");
    assert!(changes["changes"][0]["diff"].as_str().unwrap().starts_with("--- a/values.toml"), "{changes}");
    assert!(server.stop().success());
    // Broken while the server was down: it starts on the last accepted rules, and says so.
    edit(&rules.join("values.toml"), "high = \"5min\"", "high = \"5 minuets\"");
    let server = Server::start_with(&data, None, &env);
    let (status, health) = server.call("GET", "/health", "", None);
    let health = json(&health);
    assert_eq!((status, &health["rules"]["status"]), (200, &serde_json::json!("refused")), "{health}");
    let (_, metrics) = server.call("GET", "/metrics", "", None);
    assert!(metrics.contains("caseflow_rules_refused 1"), "{metrics}");
    let (_, in_force) = server.call("GET", "/admin/rules", "dev-admin", None);
    let in_force = json(&in_force);
    let problem = in_force["refused"]["problems"][0].as_str().unwrap();
    assert!(problem.starts_with("values.toml:") && problem.contains("minuets"), "{in_force}");
    assert!(!in_force.to_string().contains(rules.to_str().unwrap()), "no server path in answers: {in_force}");
    // The accepted rules serve: a high-urgency case gets the 5-minute response time.
    let start = r#"{"process":"complaint","fields":{"customer":"第一中学","contact":"138-0000-0000","content":"投影仪无法开机","urgency":"high"}}"#;
    let (status, body) = server.call("POST", "/instances", "dev-crm", Some(start));
    assert_eq!(status, 201, "{body}");
    let task = &json(&body)["tasks"][0];
    let opened = chrono::DateTime::parse_from_rfc3339(task["opened_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(task["due_at"].as_str().unwrap()).unwrap();
    assert_eq!(due - opened, chrono::Duration::minutes(5));
    // Fixed on disk: the watcher takes it, and the server is whole again.
    edit(&rules.join("values.toml"), "high = \"5 minuets\"", "high = \"7min\"");
    let fixed = Instant::now();
    loop {
        let (_, health) = server.call("GET", "/health", "", None);
        if json(&health)["rules"]["status"] == "ok" {
            break;
        }
        assert!(fixed.elapsed() < Duration::from_secs(20), "the fixed rules were never taken: {health}");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(server.stop().success());
    let _ = std::fs::remove_dir_all(&rules);
    cleanup(&data);
}

#[test]
fn a_first_start_with_broken_rules_says_why_it_cannot_start() {
    let data = temp_data("first-broken");
    let rules = rules_copy(&data);
    edit(&rules.join("values.toml"), "high = \"10min\"", "high = \"5 minuets\"");
    let key = data.join("field.key");
    let env = [
        ("CASEFLOW_DATA_DIR", data.as_os_str()),
        ("CASEFLOW_FIELD_KEY_FILE", key.as_os_str()),
        ("CASEFLOW_RULES_DIR", rules.as_os_str()),
    ];
    let stderr = refused_start(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")), &env);
    assert!(stderr.contains("values.toml:") && stderr.contains("no accepted rules to fall back on"), "{stderr}");
    let _ = std::fs::remove_dir_all(&rules);
    cleanup(&data);
}

/// A misspelt `CASEFLOW_*` variable is refused, naming the one it meant, as a misspelt key of
/// caseflow.toml is: silently ignored, it would leave a setting at its default.
#[test]
fn a_misspelt_environment_variable_stops_the_start() {
    let data = temp_data("misspelt-env");
    let env = [("CASEFLOW_DATA_DIR", data.as_os_str()), ("CASEFLOW_DURABILTY", std::ffi::OsStr::new("fsync"))];
    let stderr = refused_start(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")), &env);
    assert!(stderr.contains("CASEFLOW_DURABILTY") && stderr.contains("did you mean CASEFLOW_DURABILITY?"), "{stderr}");
    assert!(!data.exists(), "nothing was created");
}

/// Started away from its files, the server finds them through `CASEFLOW_CONFIG`, with paths
/// relative to the configuration file and the field key in the data directory; without it,
/// it refuses to start rather than answer 401 to everyone.
#[test]
fn the_configuration_is_found_from_any_working_directory() {
    let root = temp_data("config-elsewhere");
    let (etc, elsewhere) = (root.join("etc"), root.join("elsewhere"));
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let repo = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let shipped = std::fs::read_to_string(format!("{repo}/caseflow.toml")).unwrap();
    let config = shipped
        .replace("data_dir = \"data\"", "data_dir = \"state\"")
        .replace("processes_dir = \"processes\"", &format!("processes_dir = \"{repo}/processes\""))
        .replace("rules_dir = \"rules\"", &format!("rules_dir = \"{repo}/rules\""));
    std::fs::write(etc.join("caseflow.toml"), config).unwrap();
    let config_file = etc.join("caseflow.toml");
    // No data directory or key file from the tests' defaults: the file says where.
    let env = [
        ("CASEFLOW_CONFIG", config_file.to_str().unwrap()),
        ("CASEFLOW_DATA_DIR", ""),
        ("CASEFLOW_FIELD_KEY_FILE", ""),
    ];
    let server = Server::start_in(&elsewhere, &root, None, &env);
    let (status, body) = server.call("GET", "/processes", "dev-admin", None);
    assert_eq!(status, 200, "{body}");
    assert!(etc.join("state").join("field.key").is_file(), "the key is created with the data");
    let start = r#"{"process":"complaint","fields":{"customer":"第一中学","contact":"138-0000-0000","content":"投影仪无法开机","urgency":"medium"}}"#;
    assert_eq!(server.call("POST", "/instances", "dev-crm", Some(start)).0, 201);
    assert!(server.stop().success());
    // Without the configuration: refused, saying how to give it.
    let stderr = refused_start(&elsewhere, &[]);
    assert!(stderr.contains("CASEFLOW_CONFIG"), "{stderr}");
    assert!(!elsewhere.join("data").exists(), "nothing was created: {stderr}");
    // A data directory with cases and no key file: refused, not given a new key.
    std::fs::rename(etc.join("state").join("field.key"), etc.join("field.key.saved")).unwrap();
    let with_config = [("CASEFLOW_CONFIG", config_file.as_os_str())];
    let stderr = refused_start(&elsewhere, &with_config);
    assert!(stderr.contains("no field key at"), "{stderr}");
    assert!(!etc.join("state").join("field.key").exists(), "no new key was made");
    // Another key: refused too.
    std::fs::write(etc.join("state").join("field.key"), "ab".repeat(32)).unwrap();
    let stderr = refused_start(&elsewhere, &with_config);
    assert!(stderr.contains("not the key this data directory was written with"), "{stderr}");
    cleanup(&root);
}

/// A real small filesystem (a tmpfs, where this test may mount one: as root, as CI runs).
struct Mounted(PathBuf);

impl Mounted {
    fn tmpfs(at: &Path, size: &str) -> Option<Mounted> {
        let is_root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n"));
        if !is_root {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        std::fs::create_dir_all(at).unwrap();
        let mounted =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(at).status();
        assert!(mounted.is_ok_and(|s| s.success()), "root, yet the tmpfs did not mount at {}", at.display());
        Some(Mounted(at.to_path_buf()))
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount").args(["-o", &format!("remount,size={size}")]).arg(&self.0).status().unwrap();
        assert!(ok.success());
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server on a 64 MiB filesystem, started until the disk fills: every answer means what
/// it says. Acknowledged starts are kept, refused ones ("not applied") are not there, `/health`
/// says storage is failing, and once the filesystem is made larger writes are taken again
/// without a restart.
#[test]
fn a_full_disk_refuses_writes_as_not_applied_and_recovers_when_space_is_freed() {
    let root = temp_data("full-disk");
    let Some(disk) = Mounted::tmpfs(&root.join("mnt"), "64m") else { return };
    let data = disk.0.join("data");
    let env = [("CASEFLOW_DISK_RESERVE_MIB", "16"), ("CASEFLOW_DURABILITY", "fsync")];
    let server = Server::start_in(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")), &data, None, &env);
    // Cases of ~16 KB that do not compress, to fill the disk in a few thousand starts.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut body = || {
        let content: String = (0..16_000)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from(b'a' + (seed % 26) as u8)
            })
            .collect();
        format!(
            r#"{{"process":"complaint","fields":{{"customer":"第一中学","contact":"138-0000-0000","content":"{content}","urgency":"low"}}}}"#
        )
    };
    let (mut acknowledged, mut unknown) = (Vec::new(), 0);
    // Fills until a start is refused and `/health`, asked next, says so. The store's own upkeep
    // (a checkpoint dropping log segments) may free space just after a refusal, and the disk
    // is then above the reserve again: filling goes on.
    let (refusal, health) = loop {
        let (status, answer) = server.call("POST", "/instances", "dev-crm", Some(&body()));
        match status {
            201 => acknowledged.push(json(&answer)["id"].as_u64().unwrap()),
            503 if answer.contains("storage-outcome-unknown") => unknown += 1,
            503 => {
                let (status, health) = server.call("GET", "/health", "", None);
                if status == 503 {
                    break (json(&answer), json(&health));
                }
                assert_eq!(status, 200, "{health}");
            }
            other => panic!("{other}: {answer}"),
        }
        assert!(acknowledged.len() < 20_000, "64 MiB never filled");
    };
    assert_eq!(refusal["type"], "https://caseflow.dev/problems/storage", "{refusal}");
    eprintln!("{} starts acknowledged before the disk filled", acknowledged.len());
    assert_eq!(unknown, 0, "the reserve keeps the disk from filling under a write");
    assert!(health["storage"]["error"].as_str().unwrap().contains("reserve"), "{health}");
    let (_, list) = server.call("GET", "/instances?process=complaint&limit=1", "dev-admin", None);
    assert!(json(&list)["instances"].is_array(), "reads go on: {list}");
    // Still full: still refused (once more upkeep frees nothing more).
    let still = loop {
        let (status, answer) = server.call("POST", "/instances", "dev-crm", Some(&body()));
        match status {
            201 => acknowledged.push(json(&answer)["id"].as_u64().unwrap()),
            _ => break (status, answer),
        }
        assert!(acknowledged.len() < 20_000, "64 MiB never filled");
    };
    assert_eq!(still.0, 503, "{}", still.1);
    assert!(!still.1.contains("storage-outcome-unknown"), "{}", still.1);
    // A restart with 1 MiB free (less than one log segment) opens, serves reads, and still
    // refuses writes.
    assert!(server.stop().success());
    let ballast = disk.0.join("ballast");
    {
        let mut f = std::fs::File::create(&ballast).unwrap();
        let block = vec![1u8; 1 << 16];
        while f.write_all(&block).is_ok() {}
        let full = f.metadata().unwrap().len();
        f.set_len(full.saturating_sub(1 << 20)).unwrap();
    }
    let server = Server::start_in(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")), &data, None, &env);
    let (status, health) = server.call("GET", "/health", "", None);
    assert_eq!(status, 503, "{health}");
    let (status, one) = server.call("GET", &format!("/instances/{}", acknowledged[0]), "dev-admin", None);
    assert_eq!(status, 200, "{one}");
    assert_eq!(server.call("POST", "/instances", "dev-crm", Some(&body())).0, 503);
    // Space is freed (the ballast goes, the filesystem grows): ready again, and writes are
    // taken, no restart.
    std::fs::remove_file(&ballast).unwrap();
    disk.resize("256m");
    let (status, health) = server.call("GET", "/health", "", None);
    assert_eq!(status, 200, "{health}");
    let (status, answer) = server.call("POST", "/instances", "dev-crm", Some(&body()));
    assert_eq!(status, 201, "{answer}");
    acknowledged.push(json(&answer)["id"].as_u64().unwrap());
    assert!(server.stop().success());
    // After a restart, exactly the acknowledged cases are there.
    let server = Server::start_in(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")), &data, None, &env);
    let (mut stored, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let path = match cursor {
            Some(c) => format!("/instances?process=complaint&limit=500&cursor={c}"),
            None => "/instances?process=complaint&limit=500".to_string(),
        };
        let (_, page) = server.call("GET", &path, "dev-admin", None);
        let page = json(&page);
        stored.extend(page["instances"].as_array().unwrap().iter().map(|i| i["id"].as_u64().unwrap()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(stored, acknowledged, "every acknowledged case, and nothing refused");
    assert!(server.stop().success());
    drop(disk);
    cleanup(&root);
}

/// Items 4 to 6 and 9 of the hostile-clients list, against the real server on a socket:
/// idempotency keys, who may read the rules, problem+json for every error, safe defaults.
#[test]
fn keys_permissions_and_errors_hold_over_a_real_socket() {
    let data = temp_data("contract");
    let server = Server::start(&data);
    let start = r#"{"process":"complaint","fields":{"customer":"第一中学","contact":"138-0000-0000","content":"投影仪无法开机","urgency":"medium"}}"#;
    let crm = ["Authorization: Bearer dev-crm", "Content-Type: application/json"];
    let keyed = |key: &str| [crm[0], crm[1], key].map(str::to_string);
    // Idempotency: the same key and body answer the same case; another body is refused.
    let h = keyed("Idempotency-Key: crm-77");
    let (s1, _, first) = server.raw("POST", b"/instances", &with(&h), start.as_bytes());
    let (s2, _, again) = server.raw("POST", b"/instances", &with(&h), start.as_bytes());
    assert_eq!((s1, s2), (201, 201), "{first} {again}");
    assert_eq!(json(&first)["id"], json(&again)["id"]);
    let other = start.replace("medium", "high");
    let (s, head, body) = server.raw("POST", b"/instances", &with(&h), other.as_bytes());
    assert_eq!(s, 422, "{body}");
    assert!(head.contains("application/problem+json") && body.contains("idempotency-key-reused"), "{body}");
    let (s, _, body) = server.raw("POST", b"/instances", &with(&keyed("Idempotency-Key: 键")), start.as_bytes());
    assert_eq!(s, 400, "a key that is not visible ASCII is refused, not ignored: {body}");
    // Authorization: the people list is not for a representative; a manager may read it.
    let (s, _, body) = server.raw("GET", b"/admin/rules", &["Authorization: Bearer dev-liu-yang"], b"");
    assert_eq!(s, 403, "{body}");
    let (s, _, _) = server.raw("GET", b"/admin/rules", &["Authorization: Bearer dev-li-na"], b"");
    assert_eq!(s, 200);
    // Every error is a problem: a wrong method, a path that is not UTF-8, a text body too large.
    for (method, path, headers, body, status) in [
        ("DELETE", &b"/instances/1"[..], vec![crm[0]], Vec::new(), 405),
        ("GET", &b"/instances/by-key/%FF%FE"[..], vec![crm[0]], Vec::new(), 400),
        (
            "POST",
            &b"/processes"[..],
            vec!["Authorization: Bearer dev-admin", "Content-Type: text/plain"],
            vec![b'x'; 2 << 20],
            413,
        ),
        ("POST", &b"/instances"[..], crm.to_vec(), b"{\"process\":\"\xff\"}".to_vec(), 400),
    ] {
        let (s, head, text) = server.raw(method, path, &headers, &body);
        assert_eq!(s, status, "{method} {}: {text}", String::from_utf8_lossy(path));
        assert!(head.contains("content-type: application/problem+json"), "{method}: {head}");
        assert!(
            json(&text)["type"].as_str().is_some_and(|t| t.starts_with("https://caseflow.dev/problems/")),
            "{text}"
        );
    }
    assert!(server.stop().success());
    // Safe defaults: the published tokens are not served on a reachable address.
    let key = data.join("field.key");
    let env = [
        ("CASEFLOW_BIND", std::ffi::OsStr::new("0.0.0.0:0")),
        ("CASEFLOW_DATA_DIR", data.as_os_str()),
        ("CASEFLOW_FIELD_KEY_FILE", key.as_os_str()),
    ];
    let stderr = refused_start(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")), &env);
    assert!(stderr.contains("allow_published_tokens"), "{stderr}");
    cleanup(&data);
}

/// A Rust client generated from `docs/openapi.json` (progenitor, `api/client`) drives a whole
/// complaint case against the real server: each answer must deserialize into the document's
/// types, so a document that disagrees with the server fails here. What each task needs is read
/// from the process's published JSON Schema.
#[test]
fn a_client_generated_from_the_document_drives_a_whole_complaint_case() {
    use caseflow_client::types;
    let data = temp_data("rust-client");
    let server = Server::start(&data);
    let base = format!("http://{}", server.addr);
    let client = |token: &str| {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
        let http = reqwest::Client::builder().default_headers(headers).build().unwrap();
        caseflow_client::Client::new_with_client(&base, http)
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (crm, admin) = (client("dev-crm"), client("dev-admin"));
        let fields = serde_json::json!({ "customer": "第一中学", "contact": "138-0000-0000", "content": "投影仪无法开机", "urgency": "high" });
        let body = types::StartRequest { process: "complaint".into(), fields: fields.as_object().unwrap().clone() };
        let case = crm.start(Some("rust-client-1"), &body).await.expect("started").into_inner();
        assert_eq!((case.status, case.current_steps.clone()), (types::CaseStatus::Running, vec!["receive".to_string()]));
        let again = crm.start(Some("rust-client-1"), &body).await.expect("the same key answers the same case");
        assert_eq!(again.into_inner().id, case.id);
        let schema = crm.process_schema("complaint", None).await.expect("the schema").into_inner();
        let mut steps = Vec::new();
        for _ in 0..12 {
            let now = admin.get_instance(case.id).await.expect("read").into_inner();
            if now.status == types::CaseStatus::Completed {
                assert_eq!(now.outcome.as_deref(), Some("closed"));
                break;
            }
            let task = now.tasks.first().expect("a running case has a task");
            // Each required answer from the task's form schema: the first choice, yes, the top
            // of a range.
            let form = &schema.tasks[&task.step];
            let mut answers = serde_json::Map::new();
            for name in form["required"].as_array().unwrap() {
                let name = name.as_str().unwrap();
                let property = &form["properties"][name];
                let value = match property["type"].as_str() {
                    Some("boolean") => serde_json::json!(true),
                    Some("integer") => property["maximum"].clone(),
                    _ => property["enum"][0].clone(),
                };
                answers.insert(name.to_string(), value);
            }
            steps.push(task.step.clone());
            admin
                .complete(&task.id, &types::CompleteRequest { fields: answers })
                .await
                .unwrap_or_else(|e| panic!("completing {}: {e}", task.step));
        }
        assert_eq!(steps, ["receive", "verify", "phone_resolution", "feedback", "file"]);
        let inbox = admin.inbox(None, std::num::NonZeroU64::new(10), None, None, None).await.expect("an inbox");
        assert!(inbox.into_inner().tasks.iter().all(|t| t.instance != case.id), "no open task left");
        let trail = admin.history(case.id).await.expect("the history").into_inner();
        assert_eq!(trail.history.first().map(|h| h.event), Some(types::HistoryEntryEvent::Started), "events are an enum");
        // An error is a problem the document lists.
        let missing = admin.get_instance(999_999).await.expect_err("no such case");
        assert_eq!(missing.status().map(|s| s.as_u16()), Some(404));
    });
    assert!(server.stop().success());
    cleanup(&data);
}

/// Two servers on one PostgreSQL database, as two nodes behind a load balancer: a case started
/// on one is read and moved on by the other, the same `Idempotency-Key` sent to both at once
/// starts one case, and a node killed with SIGKILL loses nothing the other cannot serve.
#[test]
fn two_nodes_on_one_postgres_database_serve_the_same_cases() {
    let Some(url) = caseflow_tests::postgres_database("http_two_nodes") else { return };
    let data = temp_data("two-nodes");
    let (a_dir, b_dir) = (data.join("a"), data.join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    // Every node needs the one field key; the first start makes it.
    let key = data.join("field.key");
    let key = key.to_str().unwrap();
    let env = [("CASEFLOW_DATABASE_URL", url.as_str()), ("CASEFLOW_FIELD_KEY_FILE", key)];
    let mut a = Server::start_with(&a_dir, None, &env);
    let b = Server::start_with(&b_dir, None, &env);
    // B's event stream, open before A starts anything: B answers the head once it listens, so
    // the head is read first (A's start could otherwise commit before B subscribed).
    let mut events = b.send_head(
        "GET /events?process=complaint&types=started HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer dev-admin\r\n\r\n",
    );
    let head = read_head(&mut events);
    assert!(head.starts_with("HTTP/1.1 200"), "B's stream opened: {head}");
    let start = r#"{"process":"complaint","fields":{"customer":"第一中学","contact":"138-0000-0000","content":"投影仪无法开机","urgency":"medium"}}"#;
    let (status, body) = a.call("POST", "/instances", "dev-crm", Some(start));
    assert_eq!(status, 201, "{body}");
    let inst = json(&body);
    let id = inst["id"].clone();
    // `/events` on B carries the start A made.
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.contains(&format!("\"instance\":{id}")) && Instant::now() < deadline {
        let mut chunk = [0u8; 4096];
        if let Ok(n) = events.read(&mut chunk) {
            seen.push_str(&String::from_utf8_lossy(&chunk[..n]));
        }
    }
    assert!(seen.contains("event: started") && seen.contains(&format!("\"instance\":{id}")), "{seen}");
    drop(events);
    let (status, body) = b.call("GET", &format!("/instances/{id}"), "dev-admin", None);
    assert_eq!(status, 200, "started on A, read on B: {body}");
    assert_eq!(json(&body)["fields"]["contact"], "138-0000-0000", "the sensitive field opens with the shared key");
    let task = inst["tasks"][0]["id"].as_str().unwrap().to_string();
    let assignee = inst["tasks"][0]["assignee"].as_str().unwrap().replace('_', "-");
    let complete = |node: &Server| {
        node.call(
            "POST",
            &format!("/tasks/{task}/complete"),
            &format!("dev-{assignee}"),
            Some(r#"{"fields":{"cause":"quality"}}"#),
        )
    };
    let (status, body) = complete(&b);
    assert_eq!(status, 200, "completed on B: {body}");
    assert_eq!(complete(&a).0, 409, "and not again on A");
    let (_, body) = a.call("GET", &format!("/instances/{id}"), "dev-admin", None);
    assert_eq!(json(&body)["current_steps"][0], "verify", "{body}");
    // The same key to both nodes at once: one case.
    for k in 0..5 {
        let send = |node: &Server| {
            let (status, _, body) = node.raw(
                "POST",
                b"/instances",
                &[
                    "Authorization: Bearer dev-crm",
                    "Content-Type: application/json",
                    &format!("Idempotency-Key: both-{k}"),
                ],
                start.as_bytes(),
            );
            (status, body)
        };
        let ids: Vec<String> = std::thread::scope(|s| {
            let (send, a, b) = (&send, &a, &b);
            let (ha, hb) = (s.spawn(move || send(a)), s.spawn(move || send(b)));
            [ha.join().unwrap(), hb.join().unwrap()]
                .into_iter()
                .filter(|(status, _)| *status != 409) // the other node's start still in progress
                .map(|(status, body)| {
                    assert!(status == 200 || status == 201, "{status}: {body}");
                    json(&body)["id"].to_string()
                })
                .collect()
        });
        assert!(!ids.is_empty() && ids.iter().all(|i| *i == ids[0]), "one case for key both-{k}: {ids:?}");
    }
    // A new version deployed on A is in force on B within two seconds.
    let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../processes/complaint.flow")).unwrap();
    let changed = source.replace("due 1 workday\n    asks evidence", "due 2 workdays\n    asks evidence");
    assert_ne!(changed, source);
    let body = serde_json::json!({ "source": changed }).to_string();
    let (status, body) = a.call("POST", "/processes", "dev-admin", Some(&body));
    assert_eq!(status, 201, "{body}");
    let version = json(&body)["version"].clone();
    let deployed_at = Instant::now();
    loop {
        let (_, body) = b.call("GET", "/processes/complaint", "dev-admin", None);
        if json(&body)["latest_version"] == version {
            break;
        }
        assert!(deployed_at.elapsed() < Duration::from_secs(2), "B still serves {body}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = b.call("POST", "/instances", "dev-crm", Some(start));
    assert_eq!((status, &json(&body)["version"]), (201, &version), "{body}");
    // A killed outright: what it acknowledged is served by B.
    Command::new("kill").args(["-KILL", &a.child.id().to_string()]).status().unwrap();
    assert!(a.exited_within(Duration::from_secs(10)).is_some());
    let (status, body) = b.call("GET", &format!("/instances/{id}"), "dev-admin", None);
    assert_eq!(status, 200, "{body}");
    assert!(b.stop().success());
    let _ = std::fs::remove_dir_all(&data);
}

/// Timers across two nodes under faults, with a lease of 2 s: node A, firing a burst of due
/// timers, is paused (SIGSTOP) past its lease while B runs, then resumed; later A is killed
/// (SIGKILL) in the middle of another burst. B takes over what A had claimed once the lease
/// ends, and every case's timer fires exactly once: A, resumed, fires nothing B took over.
#[test]
fn a_node_paused_past_its_lease_or_killed_while_firing_timers_fires_nothing_twice() {
    let Some(url) = caseflow_tests::postgres_database("http_claims") else { return };
    let data = temp_data("claims");
    let (a_dir, b_dir) = (data.join("a"), data.join("b"));
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let key = data.join("field.key");
    let env = [
        ("CASEFLOW_DATABASE_URL", url.as_str()),
        ("CASEFLOW_FIELD_KEY_FILE", key.to_str().unwrap()),
        ("CASEFLOW_CLAIM_LEASE_SECS", "2"),
    ];
    let mut a = Server::start_with(&a_dir, None, &env);
    let source = "process pause_test \"暂停测试\" {\n  source \"tests\"\n  start -> hold\n  wait hold \"等待\" {\n    for 2s -> ring_back\n  }\n  task ring_back \"回电\" {\n    assign role cs_rep\n    due 1 workday\n    -> done\n  }\n  end done\n}\n";
    let (status, body) =
        a.call("POST", "/processes", "dev-admin", Some(&serde_json::json!({ "source": source }).to_string()));
    assert_eq!(status, 201, "{body}");
    let signal = |server: &Server, sig: &str| {
        let ok = Command::new("kill").args([sig, &server.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig}");
    };
    // Starts `n` cases on `node`; their timers fall due 2 s after each start.
    let burst = |node: &Server, n: usize| -> Vec<String> {
        (0..n)
            .map(|_| {
                let (status, body) =
                    node.call("POST", "/instances", "dev-crm", Some(r#"{"process":"pause_test","fields":{}}"#));
                assert_eq!(status, 201, "{body}");
                json(&body)["id"].to_string()
            })
            .collect()
    };
    // Every case's timer fired exactly once, within `within`.
    let fired_once = |node: &Server, ids: &[String], within: Duration| {
        let deadline = Instant::now() + within;
        for id in ids {
            loop {
                let (status, body) = node.call("GET", &format!("/instances/{id}/history"), "dev-admin", None);
                assert_eq!(status, 200, "{body}");
                let events: Vec<String> = json(&body)["history"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h["event"].as_str().unwrap().to_string())
                    .collect();
                let fired = events.iter().filter(|e| *e == "timer_fired").count();
                assert!(fired <= 1, "case {id}'s timer fired twice: {events:?}");
                if fired == 1 {
                    assert_eq!(events.iter().filter(|e| *e == "task_opened").count(), 1, "{events:?}");
                    break;
                }
                assert!(Instant::now() < deadline, "case {id}'s timer never fired: {events:?}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };

    // Paused in the middle of a burst, past its lease, and resumed.
    let first = burst(&a, 400);
    std::thread::sleep(Duration::from_millis(2200));
    signal(&a, "-STOP");
    let b = Server::start_with(&b_dir, None, &env);
    std::thread::sleep(Duration::from_secs(4));
    signal(&a, "-CONT");
    fired_once(&b, &first, Duration::from_secs(30));
    fired_once(&a, &first, Duration::from_secs(5));

    // Killed in the middle of a burst.
    let second = burst(&a, 400);
    std::thread::sleep(Duration::from_millis(2200));
    a.child.kill().unwrap();
    let _ = a.child.wait();
    fired_once(&b, &second, Duration::from_secs(30));
    drop(b);
    cleanup(&data);
}

/// A version that adds `index FIELD` makes the cases of earlier versions findable by it: the
/// server's background driver indexes them, and `/metrics` shows the backfill until it is done.
#[test]
fn cases_of_an_earlier_version_are_found_once_a_new_version_indexes_the_field() {
    let data = temp_data("backfill");
    let server = Server::start(&data);
    let flow = |index: &str| {
        format!(
            "process callers \"来电\" {{\n  source \"tests\"\n  fields {{\n    who: text \"来电人\" required\n  }}\n  start -> call_back\n{index}  task call_back \"回电\" {{\n    assign role cs_rep\n    due 1 workday\n    -> done\n  }}\n  end done\n}}\n"
        )
    };
    let deploy = |source: String| {
        let (status, body) =
            server.call("POST", "/processes", "dev-admin", Some(&serde_json::json!({ "source": source }).to_string()));
        assert_eq!(status, 201, "{body}");
    };
    deploy(flow(""));
    let ids: Vec<String> = (0..5)
        .map(|i| {
            let body = format!(r#"{{"process":"callers","fields":{{"who":"{}"}}}}"#, ["王", "李"][i % 2]);
            let (status, body) = server.call("POST", "/instances", "dev-crm", Some(&body));
            assert_eq!(status, 201, "{body}");
            json(&body)["id"].to_string()
        })
        .collect();
    let search = || {
        let (status, body) = server.call("GET", "/instances?process=callers&field.who=%E7%8E%8B", "dev-admin", None);
        (status, json(&body))
    };
    assert_eq!(search().0, 400, "not indexed yet");
    deploy(flow("  index who\n"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let found = loop {
        let (status, page) = search();
        assert_eq!(status, 200, "{page}");
        let found: Vec<String> = page["instances"].as_array().unwrap().iter().map(|i| i["id"].to_string()).collect();
        if found.len() == 3 {
            break found;
        }
        assert!(Instant::now() < deadline, "the earlier cases were never indexed: {page}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(found, [ids[0].clone(), ids[2].clone(), ids[4].clone()]);
    let (_, metrics) = server.call("GET", "/metrics", "", None);
    assert!(metrics.contains("caseflow_index_backfills 0\n"), "{metrics}");
    assert!(server.stop().success());
    cleanup(&data);
}
