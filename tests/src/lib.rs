//! Shared helpers for the integration tests: where the repository's files are, and the
//! golden-file comparison with `UPDATE_EXPECT=1` to rewrite expectations.

use caseflow_dsl::{RuleCatalog, SourceFile};
use caseflow_engine::{RuleSet, RulesFile};
use std::path::{Path, PathBuf};

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the repository root").to_path_buf()
}

/// Every file under `dir` (relative to the root) with the extension, sorted.
pub fn files(dir: &str, extension: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == extension))
        .collect();
    out.sort();
    out
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A file as the checker sees it, named relative to the root (as diagnostics print it).
pub fn source_file(path: &Path) -> SourceFile {
    let name = path.strip_prefix(root()).unwrap_or(path).display().to_string();
    SourceFile { name, text: read(path) }
}

/// The shipped processes.
pub fn shipped_processes() -> Vec<SourceFile> {
    files("processes", "flow").iter().map(|p| source_file(p)).collect()
}

/// The shipped rules, which must validate.
pub fn shipped_rules() -> RuleSet {
    let files: Vec<RulesFile> = files("rules", "toml")
        .iter()
        .map(|p| RulesFile { name: p.strip_prefix(root()).unwrap_or(p).display().to_string(), text: read(p) })
        .collect();
    RuleSet::load(&files).unwrap_or_else(|errors| {
        panic!(
            "the shipped rules do not validate:\n{}",
            errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
        )
    })
}

/// The names the shipped rules define.
pub fn shipped_catalog() -> RuleCatalog {
    shipped_rules().catalog()
}

/// Compares `actual` with the golden file; with `UPDATE_EXPECT=1`, rewrites it instead.
/// Returns a description of the difference, or `None` when they agree.
pub fn compare_golden(path: &Path, actual: &str) -> Option<String> {
    if std::env::var_os("UPDATE_EXPECT").is_some() {
        std::fs::write(path, actual).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        return None;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    (expected != actual).then(|| {
        format!(
            "{} differs (run with UPDATE_EXPECT=1 to accept):\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        )
    })
}

/// The fenced code blocks of one language in a Markdown text, each with the line it starts on.
pub fn code_blocks(markdown: &str, language: &str) -> Vec<(usize, String)> {
    let fence = format!("```{language}");
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in markdown.lines().enumerate() {
        match (&mut current, line.trim_end()) {
            (None, l) if l == fence => current = Some((i + 2, String::new())),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some((_, text)), _) => {
                text.push_str(line);
                text.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// A new, empty PostgreSQL database for one test, on the server `scripts/postgres.sh` starts
/// (installing Debian's postgresql the first time, as the browser tests install chromium).
/// `CASEFLOW_TEST_POSTGRES=skip` leaves PostgreSQL out, for a machine that cannot install it;
/// `.ci/run` never sets it.
pub fn postgres_database(name: &str) -> Option<String> {
    if std::env::var("CASEFLOW_TEST_POSTGRES").as_deref() == Ok("skip") {
        eprintln!("CASEFLOW_TEST_POSTGRES=skip: {name} does not run on PostgreSQL");
        return None;
    }
    let db = format!("{name}_{}", std::process::id());
    let out = std::process::Command::new(root().join("scripts/postgres.sh"))
        .args(["database", &db])
        .output()
        .unwrap_or_else(|e| panic!("running scripts/postgres.sh: {e}"));
    assert!(out.status.success(), "scripts/postgres.sh database {db}: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).expect("a URL").trim().to_string())
}

/// A PostgreSQL server of one test's own, in a directory of its own, for the tests that stop,
/// crash or fail over their database (the shared server of `postgres_database` stays up for
/// the others). Made by `scripts/postgres.sh`, as the shared one; stopped and removed on drop.
pub struct OwnPostgres {
    dir: PathBuf,
    /// Its port, kept across a restart.
    pub port: u16,
}

impl OwnPostgres {
    /// A new server; `None` where `CASEFLOW_TEST_POSTGRES=skip`.
    pub fn start(name: &str) -> Option<OwnPostgres> {
        if std::env::var("CASEFLOW_TEST_POSTGRES").as_deref() == Ok("skip") {
            eprintln!("CASEFLOW_TEST_POSTGRES=skip: {name} does not run on PostgreSQL");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("caseflow-postgres-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut server = OwnPostgres { dir, port: 0 };
        server.script(&["start"]);
        server.port = server.read_port();
        Some(server)
    }

    /// A synchronous standby of this server: every commit this server acknowledges from now on
    /// is on the standby's disk too.
    pub fn standby(&self, name: &str) -> OwnPostgres {
        let dir = std::env::temp_dir().join(format!("caseflow-postgres-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut standby = OwnPostgres { dir, port: 0 };
        standby.script(&["standby", &self.port.to_string()]);
        standby.port = standby.read_port();
        standby
    }

    /// A new, empty database on this server; its URL.
    pub fn database(&self, name: &str) -> String {
        self.script(&["database", name]).trim().to_string()
    }

    /// Starts the server again (after `stop` or `crash`), on the same port.
    pub fn start_again(&self) {
        self.script(&["start"]);
        assert_eq!(self.read_port(), self.port, "the port was taken meanwhile");
    }

    /// A fast shutdown: sessions are ended, the server stops.
    pub fn stop(&self) {
        self.script(&["stop"]);
    }

    /// `kill -9` of the server and every process of it.
    pub fn crash(&self) {
        self.script(&["crash"]);
    }

    /// Pauses the server and every process of it (SIGSTOP): connections stay open, and nothing
    /// is answered, as when a database hangs or its network drops packets.
    pub fn freeze(&self) {
        self.script(&["freeze"]);
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self) {
        self.script(&["thaw"]);
    }

    /// Makes this standby a primary.
    pub fn promote(&self) {
        self.script(&["promote"]);
    }

    /// Serves TLS with the certificate and key (PEM files), and takes TLS connections only.
    pub fn tls(&self, cert: &Path, key: &Path) {
        self.script(&["tls", &cert.display().to_string(), &key.display().to_string()]);
    }

    fn read_port(&self) -> u16 {
        let port = std::fs::read_to_string(self.dir.join("port")).expect("postgres.sh writes the port");
        port.trim().parse().expect("a port")
    }

    fn script(&self, args: &[&str]) -> String {
        let out = std::process::Command::new(root().join("scripts/postgres.sh"))
            .args(args)
            .env("CASEFLOW_PG_DIR", &self.dir)
            .output()
            .unwrap_or_else(|e| panic!("running scripts/postgres.sh: {e}"));
        assert!(
            out.status.success(),
            "scripts/postgres.sh {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("text")
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        // Resumed if frozen, stopped if it runs, and killed if that failed.
        for how in ["thaw", "stop", "crash"] {
            let _ = std::process::Command::new(root().join("scripts/postgres.sh"))
                .arg(how)
                .env("CASEFLOW_PG_DIR", &self.dir)
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The store an HTTP or console test runs on: a temporary sled store, the server's default, or
/// with `CASEFLOW_TEST_STORE=postgres` a new database of its own on the test server, so that
/// `.ci/run` runs the same suites on both stores.
pub fn test_store() -> caseflow_engine::AnyStorage {
    use std::sync::atomic::{AtomicU32, Ordering};
    static DATABASES: AtomicU32 = AtomicU32::new(0);
    if !on_postgres() {
        return caseflow_engine::Store::temporary().expect("a temporary sled store").into();
    }
    let name = format!("api_{}", DATABASES.fetch_add(1, Ordering::Relaxed));
    let url = postgres_database(&name).expect("CASEFLOW_TEST_STORE=postgres needs PostgreSQL");
    let options = caseflow_engine::storage::postgres::PgOptions::new(url);
    caseflow_engine::storage::postgres::PgStore::connect(&options).expect("connecting to the test database").into()
}

/// Whether `test_store` gives PostgreSQL (`CASEFLOW_TEST_STORE=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("CASEFLOW_TEST_STORE").as_deref() == Ok("postgres")
}
