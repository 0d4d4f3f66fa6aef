//! The real server on a free port, as an integrator meets it: a complaint case over HTTP/1.1,
//! a graceful shutdown on SIGTERM, and the case still there after a restart.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(data: &Path) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_caseflow"))
            .arg("serve")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
            .env("CASEFLOW_BIND", "127.0.0.1:0")
            .env("CASEFLOW_DATA_DIR", data)
            .env("CASEFLOW_FIELD_KEY_FILE", data.join("field.key"))
            .env("CASEFLOW_DURABILITY", "flush")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            // Appended to a log in the data folder, shown if a stop fails.
            .stderr(
                std::fs::OpenOptions::new().create(true).append(true).open(data.with_extension("log")).expect("log"),
            )
            .spawn()
            .expect("the server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("it says where it listens");
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in `{line}`"))
            .to_string();
        Server { child, addr }
    }

    fn call(&self, method: &str, path: &str, token: &str, body: Option<&str>) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).expect("connects");
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap();
        let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }

    fn stop(mut self) -> std::process::ExitStatus {
        // SIGTERM: finish requests, flush storage, exit 0.
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill runs");
        self.child.wait().expect("the server exits")
    }
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
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
    let stopped = server.stop();
    assert!(stopped.success(), "{stopped}: {}", std::fs::read_to_string(&log).unwrap_or_default());
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_file(&log);
}
