//! `caseflow serve` as a child process on a free port, as an integrator and an operator meet
//! it: the server tests and the failover tests share it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, None, &[])
    }

    /// Starts `caseflow serve`, under `ulimit` options (e.g. `-n 1024`) if given, with extra
    /// environment variables.
    pub fn start_with(data: &Path, ulimit: Option<&str>, env: &[(&str, &str)]) -> Server {
        Server::start_in(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")), data, ulimit, env)
    }

    /// As `start_with`, in the working directory `cwd`; an empty variable in `env` unsets the
    /// default the tests give it.
    pub fn start_in(cwd: &Path, data: &Path, ulimit: Option<&str>, env: &[(&str, &str)]) -> Server {
        let mut command = match ulimit {
            Some(limit) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(format!("ulimit {limit} && exec \"$0\" serve")).arg(env!("CARGO_BIN_EXE_caseflow"));
                c
            }
            None => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_caseflow"));
                c.arg("serve");
                c
            }
        };
        let mut child = command
            .current_dir(cwd)
            .env("CASEFLOW_BIND", "127.0.0.1:0")
            .env("CASEFLOW_DATA_DIR", data)
            .env("CASEFLOW_FIELD_KEY_FILE", data.join("field.key"))
            .env("CASEFLOW_DURABILITY", "flush")
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            // Appended to a log in the data folder, shown if a stop fails.
            .stderr(
                std::fs::OpenOptions::new().create(true).append(true).open(data.with_extension("log")).expect("log"),
            )
            .spawn()
            .expect("the server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).expect("it says where it listens");
        if line.is_empty() {
            let _ = child.wait();
            panic!(
                "the server did not start: {}",
                std::fs::read_to_string(data.with_extension("log")).unwrap_or_default()
            );
        }
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in `{line}`"))
            .to_string();
        Server { child, addr }
    }

    pub fn call(&self, method: &str, path: &str, token: &str, body: Option<&str>) -> (u16, String) {
        let mut s = TcpStream::connect(&self.addr).expect("connects");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let body = body.unwrap_or("");
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).unwrap_or_else(|e| panic!("{method} {path}: no answer ({e})"));
        let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
        (status, body)
    }

    /// A request of raw bytes with extra header lines; the answer's status, head and body.
    pub fn raw(&self, method: &str, path: &[u8], headers: &[&str], body: &[u8]) -> (u16, String, String) {
        raw_at(&self.addr, method, path, headers, body)
    }

    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate();
        self.child.wait().expect("the server exits")
    }

    /// SIGTERM: finish requests, end event streams, flush storage, exit 0.
    pub fn terminate(&self) {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("kill runs");
    }

    /// Waits up to `limit` for the server to exit.
    pub fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    /// An open connection that has sent `head` (and nothing else yet).
    pub fn send_head(&self, head: &str) -> TcpStream {
        let mut s = TcpStream::connect(&self.addr).expect("connects");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        s
    }
}

/// A test that fails leaves no server behind (holding its port, its data or a database).
impl Drop for Server {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

pub fn temp_data(name: &str) -> PathBuf {
    let data = std::env::temp_dir().join(format!("caseflow-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    data
}

pub fn cleanup(data: &Path) {
    let _ = std::fs::remove_dir_all(data);
    let _ = std::fs::remove_file(data.with_extension("log"));
}

/// A request of raw bytes with extra header lines to the server at `addr`; the answer's
/// status, head and body.
pub fn raw_at(addr: &str, method: &str, path: &[u8], headers: &[&str], body: &[u8]) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} ").into_bytes();
    req.extend_from_slice(path);
    req.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n", body.len()).as_bytes(),
    );
    for h in headers {
        req.extend_from_slice(h.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    s.write_all(&req).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (status, head.to_ascii_lowercase(), body.to_string())
}
