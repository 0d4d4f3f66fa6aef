//! Server settings: `caseflow.toml` (in the working directory, or named by `--config` /
//! `CASEFLOW_CONFIG`), each setting overridable by an environment
//! variable (`CASEFLOW_BIND`, `CASEFLOW_DATA_DIR`, `CASEFLOW_DATABASE_URL`,
//! `CASEFLOW_DATABASE_POOL_SIZE`, `CASEFLOW_PROCESSES_DIR`,
//! `CASEFLOW_RULES_DIR`, `CASEFLOW_DURABILITY`, `CASEFLOW_BODY_BYTES_MAX`,
//! `CASEFLOW_FIELD_KEY_FILE`, `CASEFLOW_CACHE_MIB`, `CASEFLOW_CHECKPOINT_MIB`,
//! `CASEFLOW_ALLOW_PUBLISHED_TOKENS`, `CASEFLOW_CONNECTIONS_MAX`,
//! `CASEFLOW_HEADER_READ_TIMEOUT_SECS`, `CASEFLOW_BODY_IDLE_TIMEOUT_SECS`,
//! `CASEFLOW_DISK_RESERVE_MIB`).

use anyhow::{bail, Context, Result};
use caseflow_engine::Durability;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_bind")]
    pub bind: String,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Where `POST /admin/backup` (`caseflow backup`) writes copies of a running sled store.
    #[serde(default = "default_backup_dir")]
    pub backup_dir: PathBuf,
    /// Keep cases in this PostgreSQL database instead of `data_dir` (a libpq URL; several
    /// hosts with `target_session_attrs=read-write` find the primary): any number of nodes
    /// may serve the same database. Unset: sled in `data_dir`, one node.
    #[serde(default)]
    pub database_url: Option<String>,
    /// Connections each node keeps to the database at most.
    #[serde(default = "default_database_pool_size")]
    pub database_pool_size: usize,
    /// With `sslmode=require` in `database_url`: the PEM file of the certificate authorities
    /// the database's certificate is checked against. Unset: the system's trust store.
    #[serde(default)]
    pub database_ca_file: Option<PathBuf>,
    /// On PostgreSQL, how long a node's claims on due timers and on webhook delivery last
    /// without its heartbeat: the longest a node that stopped holds them back from the others.
    #[serde(default = "default_claim_lease_secs")]
    pub claim_lease_secs: u64,
    #[serde(default = "default_processes_dir")]
    pub processes_dir: PathBuf,
    #[serde(default = "default_rules_dir")]
    pub rules_dir: PathBuf,
    #[serde(default = "default_durability")]
    pub durability: Durability,
    #[serde(default = "default_body_bytes_max")]
    pub body_bytes_max: usize,
    /// sled's page cache, in MiB (its own accounting: the memory it takes is about twice that).
    #[serde(default = "default_cache_mib")]
    pub cache_mib: u64,
    /// Snapshot the database's page table (beside the writers) after this many MiB written, so
    /// that a restart replays at most about that much of sled's log (ARCHITECTURE.md, "Restart
    /// and checkpoints"); 0: never.
    #[serde(default = "default_checkpoint_mib")]
    pub checkpoint_mib: u64,
    /// Writes are refused (503, not applied) while the data directory's disk has less free
    /// space than this, so that storage never meets a full disk; they are taken again once
    /// space is freed. 0: no reserve.
    #[serde(default = "default_disk_reserve_mib")]
    pub disk_reserve_mib: u64,
    /// The key that encrypts sensitive fields at rest (32 bytes, hex); `field.key` in the data
    /// directory unless set. Created on the first start of an empty data directory; back it
    /// up: without it the sensitive data cannot be read.
    #[serde(default)]
    pub field_key_file: Option<PathBuf>,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Serve the published development tokens on an address other machines can reach. Refused
    /// unless set: anyone can read those tokens in the README.
    #[serde(default)]
    pub allow_published_tokens: bool,
    /// Start with no tokens at all (every call then answers 401). Refused unless set: it is
    /// what a server started away from its configuration would do.
    #[serde(default)]
    pub allow_no_tokens: bool,
    /// The file these settings were read from, if any (for messages).
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// `GET /metrics` answers only with a token (any configured one). Off by default: a
    /// scraper on the same machine needs none.
    #[serde(default)]
    pub metrics_need_token: bool,
    /// Outgoing webhooks, fed from the durable outbox.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// Seconds a connection may take to send a request head, counted from its opening or the
    /// end of its previous response (so also the keep-alive idle timeout).
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may go without sending a byte.
    #[serde(default = "default_body_idle_timeout_secs")]
    pub body_idle_timeout_secs: u64,
    /// Open connections at most (lowered to fit the open-file limit); beyond it the least
    /// recently active connection is closed for each new one.
    #[serde(default = "default_connections_max")]
    pub connections_max: usize,
    /// Seconds that requests in flight (and `/events` streams) get to finish on SIGTERM.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// The console (`/ui`): how long sessions last, and whether cookies are HTTPS-only.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Serve HTTPS with this certificate chain (PEM) and `tls_key`: people's passwords cross
    /// the wire. Both or neither.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

/// `[console]`: the staff's sign-in sessions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// A session ends after this many minutes without a request.
    #[serde(default = "default_session_idle_minutes")]
    pub session_idle_minutes: u64,
    /// And after this many hours in any case.
    #[serde(default = "default_session_max_hours")]
    pub session_max_hours: u64,
    /// People reach the server through a proxy that serves HTTPS: session cookies are marked
    /// `Secure` (never sent over plain HTTP).
    #[serde(default)]
    pub behind_https_proxy: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        toml::from_str("").expect("defaults")
    }
}

fn default_session_idle_minutes() -> u64 {
    30
}
fn default_session_max_hours() -> u64 {
    12
}

impl ConsoleConfig {
    pub fn settings(&self) -> Result<crate::console::ConsoleSettings> {
        if self.session_idle_minutes == 0 || self.session_max_hours == 0 {
            bail!("[console] session_idle_minutes and session_max_hours must be at least 1");
        }
        let minutes = |m: u64| chrono::Duration::minutes(i64::try_from(m).unwrap_or(i64::MAX / 60_000).min(525_600));
        Ok(crate::console::ConsoleSettings {
            idle: minutes(self.session_idle_minutes),
            absolute: minutes(self.session_max_hours.saturating_mul(60)),
            secure_cookies: self.behind_https_proxy,
        })
    }
}

/// A URL that receives engine events as signed JSON POSTs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    /// The HMAC-SHA256 key for the `x-caseflow-signature` header.
    pub secret: String,
    /// Event names to send (`task_opened`, `escalated`, ...); empty sends all.
    #[serde(default)]
    pub events: Vec<String>,
}

/// A bearer token, stored as its SHA-256 (hex); the token itself is never written down here.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub user: String,
    pub sha256: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub admin: bool,
    /// An integrator's service token: may start cases and send messages, not work on tasks.
    #[serde(default)]
    pub service: bool,
}

fn default_bind() -> String {
    "127.0.0.1:8080".into()
}
fn default_data_dir() -> PathBuf {
    "data".into()
}
fn default_backup_dir() -> PathBuf {
    "backups".into()
}
fn default_processes_dir() -> PathBuf {
    "processes".into()
}
fn default_rules_dir() -> PathBuf {
    "rules".into()
}
fn default_durability() -> Durability {
    Durability::Fsync
}
fn default_cache_mib() -> u64 {
    caseflow_engine::StoreOptions::default().cache_bytes >> 20
}
fn default_checkpoint_mib() -> u64 {
    caseflow_engine::StoreOptions::default().checkpoint_bytes.unwrap_or(0) >> 20
}
fn default_disk_reserve_mib() -> u64 {
    caseflow_engine::store::DEFAULT_SPACE_RESERVE_BYTES >> 20
}
fn default_header_read_timeout_secs() -> u64 {
    10
}
fn default_body_idle_timeout_secs() -> u64 {
    10
}
fn default_connections_max() -> usize {
    10_000
}
fn default_shutdown_grace_secs() -> u64 {
    5
}
fn default_claim_lease_secs() -> u64 {
    caseflow_engine::service::CLAIM_LEASE.as_secs()
}
fn default_database_pool_size() -> usize {
    16
}

fn default_body_bytes_max() -> usize {
    1024 * 1024
}

pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Config {
    /// Where the field key is: as configured, else `field.key` in the data directory.
    pub fn field_key_file(&self) -> PathBuf {
        self.field_key_file.clone().unwrap_or_else(|| self.data_dir.join("field.key"))
    }

    /// Where cases are kept, for messages: the data directory, or the database (without its
    /// password).
    pub fn store_place(&self) -> String {
        match &self.database_url {
            Some(url) => match url.parse::<tokio_postgres::Config>() {
                Ok(c) => format!(
                    "PostgreSQL database {} on {}",
                    c.get_dbname().unwrap_or("(default)"),
                    c.get_hosts()
                        .iter()
                        .map(|h| match h {
                            tokio_postgres::config::Host::Tcp(h) => h.clone(),
                            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Err(_) => "PostgreSQL".into(),
            },
            None => self.data_dir.display().to_string(),
        }
    }

    /// Opens the store: PostgreSQL when `database_url` is set, else sled in `data_dir`.
    pub fn open_store(&self) -> Result<caseflow_engine::AnyStorage> {
        use caseflow_engine::storage::postgres::{PgOptions, PgStore};
        Ok(match &self.database_url {
            Some(url) => {
                let options = PgOptions {
                    url: url.clone(),
                    pool_size: self.database_pool_size,
                    ca_file: self.database_ca_file.clone(),
                };
                PgStore::connect(&options).with_context(|| format!("connecting to {}", self.store_place()))?.into()
            }
            None => {
                std::fs::create_dir_all(&self.data_dir)
                    .with_context(|| format!("creating {}", self.data_dir.display()))?;
                caseflow_engine::Store::open(&self.data_dir, &self.store_options())
                    .with_context(|| format!("opening the store in {}", self.data_dir.display()))?
                    .into()
            }
        })
    }

    /// How the store is opened.
    pub fn store_options(&self) -> caseflow_engine::StoreOptions {
        caseflow_engine::StoreOptions {
            durability: self.durability,
            cache_bytes: self.cache_mib << 20,
            checkpoint_bytes: (self.checkpoint_mib > 0).then_some(self.checkpoint_mib << 20),
            space_reserve_bytes: self.disk_reserve_mib << 20,
            ..caseflow_engine::StoreOptions::default()
        }
    }

    /// Reads the configuration: `path` if given (`--config`, `CASEFLOW_CONFIG`), which must
    /// exist; otherwise `caseflow.toml` in the working directory if there is one, else the
    /// defaults. Paths in a file are relative to the file's folder. Then the `CASEFLOW_*`
    /// environment overrides apply (their paths relative to the working directory). Then what
    /// serving needs is checked (`check_serving`).
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let config = Config::load_store_settings(path)?;
        config.check_serving()?;
        Ok(config)
    }

    /// `load`, without the checks that only serving needs (tokens, where it listens): for the
    /// commands that only open the store (`export`, `import`).
    // One piece (over 100 lines): the file, then each `CASEFLOW_*` override in turn, then the checks that need them all.
    pub fn load_store_settings(path: Option<&Path>) -> Result<Config> {
        let source = match path {
            Some(p) if !p.is_file() => {
                bail!("the configuration file {} does not exist (given by --config or CASEFLOW_CONFIG)", p.display())
            }
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from("caseflow.toml")).filter(|p| p.is_file()),
        };
        let mut config: Config = match &source {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                let mut config: Config = toml::from_str(&text)
                    .with_context(|| format!("{} is not a valid configuration", path.display()))?;
                let base = path.parent().unwrap_or(Path::new(""));
                for p in
                    [&mut config.data_dir, &mut config.backup_dir, &mut config.processes_dir, &mut config.rules_dir]
                {
                    *p = base.join(&*p);
                }
                let files = [
                    &mut config.field_key_file,
                    &mut config.tls_cert,
                    &mut config.tls_key,
                    &mut config.database_ca_file,
                ];
                for k in files.into_iter().flatten() {
                    *k = base.join(&*k);
                }
                config
            }
            None => toml::from_str("").expect("defaults"),
        };
        config.source = source;
        // A misspelt variable is refused as a misspelt key in the file is: silently ignored,
        // it would leave the setting it meant at its default.
        if let Some(problem) = unknown_env(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok())) {
            bail!("{problem}");
        }
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(v) = env("CASEFLOW_BIND") {
            config.bind = v;
        }
        if let Some(v) = env("CASEFLOW_DATA_DIR") {
            config.data_dir = v.into();
        }
        if let Some(v) = env("CASEFLOW_BACKUP_DIR") {
            config.backup_dir = v.into();
        }
        if let Some(v) = env("CASEFLOW_DATABASE_URL") {
            config.database_url = Some(v);
        }
        if let Some(v) = env("CASEFLOW_DATABASE_CA_FILE") {
            config.database_ca_file = Some(v.into());
        }
        if let Some(v) = env("CASEFLOW_DATABASE_POOL_SIZE") {
            config.database_pool_size =
                v.parse().with_context(|| format!("CASEFLOW_DATABASE_POOL_SIZE=`{v}` is not a number"))?;
        }
        if let Some(v) = env("CASEFLOW_CLAIM_LEASE_SECS") {
            config.claim_lease_secs =
                v.parse().with_context(|| format!("CASEFLOW_CLAIM_LEASE_SECS=`{v}` is not a number"))?;
        }
        if let Some(v) = env("CASEFLOW_PROCESSES_DIR") {
            config.processes_dir = v.into();
        }
        if let Some(v) = env("CASEFLOW_RULES_DIR") {
            config.rules_dir = v.into();
        }
        if let Some(v) = env("CASEFLOW_DURABILITY") {
            config.durability = match v.as_str() {
                "fsync" => Durability::Fsync,
                "flush" => Durability::Flush,
                "none" => Durability::None,
                other => bail!("CASEFLOW_DURABILITY=`{other}`: use fsync, flush or none"),
            };
        }
        if let Some(v) = env("CASEFLOW_FIELD_KEY_FILE") {
            config.field_key_file = Some(v.into());
        }
        if let Some(v) = env("CASEFLOW_TLS_CERT") {
            config.tls_cert = Some(v.into());
        }
        if let Some(v) = env("CASEFLOW_TLS_KEY") {
            config.tls_key = Some(v.into());
        }
        if let Some(v) = env("CASEFLOW_BODY_BYTES_MAX") {
            config.body_bytes_max =
                v.parse().with_context(|| format!("CASEFLOW_BODY_BYTES_MAX=`{v}` is not a number"))?;
        }
        if let Some(v) = env("CASEFLOW_CACHE_MIB") {
            config.cache_mib = v.parse().with_context(|| format!("CASEFLOW_CACHE_MIB=`{v}` is not a number"))?;
        }
        if let Some(v) = env("CASEFLOW_ALLOW_PUBLISHED_TOKENS") {
            config.allow_published_tokens = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = env("CASEFLOW_ALLOW_NO_TOKENS") {
            config.allow_no_tokens = matches!(v.as_str(), "1" | "true" | "yes");
        }
        if let Some(v) = env("CASEFLOW_CHECKPOINT_MIB") {
            config.checkpoint_mib =
                v.parse().with_context(|| format!("CASEFLOW_CHECKPOINT_MIB=`{v}` is not a number"))?;
        }
        if let Some(v) = env("CASEFLOW_DISK_RESERVE_MIB") {
            config.disk_reserve_mib =
                v.parse().with_context(|| format!("CASEFLOW_DISK_RESERVE_MIB=`{v}` is not a number"))?;
        }
        if let Some(v) = env("CASEFLOW_CONNECTIONS_MAX") {
            config.connections_max =
                v.parse().with_context(|| format!("CASEFLOW_CONNECTIONS_MAX=`{v}` is not a number"))?;
        }
        if let Some(v) = env("CASEFLOW_HEADER_READ_TIMEOUT_SECS") {
            config.header_read_timeout_secs =
                v.parse().with_context(|| format!("CASEFLOW_HEADER_READ_TIMEOUT_SECS=`{v}` is not a number"))?;
        }
        if let Some(v) = env("CASEFLOW_BODY_IDLE_TIMEOUT_SECS") {
            config.body_idle_timeout_secs =
                v.parse().with_context(|| format!("CASEFLOW_BODY_IDLE_TIMEOUT_SECS=`{v}` is not a number"))?;
        }
        if config.connections_max == 0 || config.header_read_timeout_secs == 0 || config.body_idle_timeout_secs == 0 {
            bail!("connections_max, header_read_timeout_secs and body_idle_timeout_secs must be at least 1");
        }
        if config.cache_mib == 0 {
            bail!("cache_mib must be at least 1");
        }
        if config.tls_cert.is_some() != config.tls_key.is_some() {
            bail!("tls_cert and tls_key go together (CASEFLOW_TLS_CERT, CASEFLOW_TLS_KEY): give both to serve HTTPS, or neither");
        }
        for t in &config.tokens {
            if t.sha256.len() != 64 || !t.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!("token of `{}`: sha256 must be 64 hex digits (`caseflow token-hash TOKEN` prints it)", t.user);
            }
        }
        Ok(config)
    }

    /// What serving refuses: no tokens unless allowed, the published tokens on a reachable address.
    fn check_serving(&self) -> Result<()> {
        let config = self;
        if config.tokens.is_empty() && !config.allow_no_tokens {
            let read = match &config.source {
                Some(p) => format!("{} configures no tokens", p.display()),
                None => "no caseflow.toml in the working directory, and none given".to_string(),
            };
            bail!(
                "{read}: every API call would be refused with 401. Point --config (or CASEFLOW_CONFIG) at your \
                 caseflow.toml, add [[tokens]] (`caseflow token-hash TOKEN` prints the hash to store), or set \
                 allow_no_tokens = true (CASEFLOW_ALLOW_NO_TOKENS=1) if that is meant"
            );
        }
        let published = config.published_tokens();
        if !published.is_empty() && !config.allow_published_tokens && !is_loopback(&config.bind) {
            bail!(
                "bind = `{}` can be reached from other machines, and the tokens of users {} are the development \
                 tokens published in the README: give them new tokens (`caseflow token-hash NEW_TOKEN` prints \
                 the hash to store), bind to 127.0.0.1, or, on a trusted network only, set \
                 allow_published_tokens = true (CASEFLOW_ALLOW_PUBLISHED_TOKENS=1)",
                config.bind,
                published.join(", ")
            );
        }
        Ok(())
    }

    /// Users whose token is one of the published development tokens.
    pub fn published_tokens(&self) -> Vec<&str> {
        let digests: Vec<String> = PUBLISHED_TOKENS.iter().map(|t| sha256_hex(t)).collect();
        self.tokens
            .iter()
            .filter(|t| digests.iter().any(|d| d.eq_ignore_ascii_case(&t.sha256)))
            .map(|t| t.user.as_str())
            .collect()
    }
}

/// The development tokens of the shipped `caseflow.toml`, printed in the README.
const PUBLISHED_TOKENS: [&str; 6] =
    ["dev-admin", "dev-crm", "dev-liu-yang", "dev-zhang-wei", "dev-li-na", "dev-chen-jie"];

/// Whether `bind` only accepts connections from this machine. A name other than `localhost`
/// may resolve to anything, so it counts as reachable.
fn is_loopback(bind: &str) -> bool {
    match bind.parse::<std::net::SocketAddr>() {
        Ok(addr) => addr.ip().is_loopback(),
        Err(_) => bind.rsplit_once(':').is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost")),
    }
}

/// Reads the field key, creating it (readable by the owner only) if it does not exist.
pub fn field_key(path: &Path) -> Result<Vec<u8>> {
    if !path.exists() {
        let key = caseflow_engine::crypto::FieldCipher::generate_key()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        use std::io::Write;
        let mut f = options.open(path).with_context(|| format!("creating {}", path.display()))?;
        f.write_all(hex::encode(key).as_bytes())?;
        f.sync_all()?;
        tracing::warn!(file = %path.display(), "created a new key for sensitive fields: back it up");
    }
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let key = hex::decode(text.trim()).with_context(|| format!("{} is not hex", path.display()))?;
    if key.len() != caseflow_engine::crypto::KEY_BYTES {
        bail!("{} must hold {} bytes as hex", path.display(), caseflow_engine::crypto::KEY_BYTES);
    }
    Ok(key)
}

/// Every `CASEFLOW_*` environment variable caseflow reads.
pub const ENV_VARS: [&str; 25] = [
    "CASEFLOW_ALLOW_NO_TOKENS",
    "CASEFLOW_ALLOW_PUBLISHED_TOKENS",
    "CASEFLOW_BACKUP_DIR",
    "CASEFLOW_BIND",
    "CASEFLOW_CLAIM_LEASE_SECS",
    "CASEFLOW_BODY_BYTES_MAX",
    "CASEFLOW_BODY_IDLE_TIMEOUT_SECS",
    "CASEFLOW_CACHE_MIB",
    "CASEFLOW_CHECKPOINT_MIB",
    "CASEFLOW_CONFIG",
    "CASEFLOW_CONNECTIONS_MAX",
    "CASEFLOW_DATA_DIR",
    "CASEFLOW_DATABASE_CA_FILE",
    "CASEFLOW_DATABASE_POOL_SIZE",
    "CASEFLOW_DATABASE_URL",
    "CASEFLOW_DISK_RESERVE_MIB",
    "CASEFLOW_DURABILITY",
    "CASEFLOW_FIELD_KEY_FILE",
    "CASEFLOW_HEADER_READ_TIMEOUT_SECS",
    // The crash test's child process (engine/src/sync.rs).
    "CASEFLOW_POISON_CHILD",
    "CASEFLOW_PROCESSES_DIR",
    "CASEFLOW_RULES_DIR",
    "CASEFLOW_TLS_CERT",
    "CASEFLOW_TLS_KEY",
    // `caseflow test --record --url`'s token.
    "CASEFLOW_TOKEN",
];

/// The first `CASEFLOW_*` variable among `names` that caseflow does not read, as a sentence
/// naming the closest one it does.
pub fn unknown_env(names: impl Iterator<Item = String>) -> Option<String> {
    let mut unknown: Vec<String> =
        names.filter(|n| n.starts_with("CASEFLOW_") && !ENV_VARS.contains(&n.as_str())).collect();
    unknown.sort();
    let name = unknown.into_iter().next()?;
    let hint = match caseflow_dsl::diag::closest(&name, ENV_VARS.iter().copied()) {
        Some(c) => format!("did you mean {c}?"),
        None => format!("caseflow reads {}", ENV_VARS.join(", ")),
    };
    Some(format!("the environment variable {name} is not one caseflow reads ({hint}); unset it or correct its name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config> {
        let path = std::env::temp_dir().join(format!("caseflow-config-{}-{}.toml", std::process::id(), text.len()));
        std::fs::write(&path, text).unwrap();
        let config = Config::load(Some(&path));
        let _ = std::fs::remove_file(&path);
        config
    }

    #[test]
    fn the_shipped_configuration_loads_and_maps_to_store_options() {
        let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../caseflow.toml");
        let config = Config::load(Some(Path::new(shipped))).unwrap();
        let options = config.store_options();
        assert_eq!(options.cache_bytes, config.cache_mib << 20);
        assert_eq!(options.checkpoint_bytes, Some(config.checkpoint_mib << 20));
        assert_eq!(options.durability, config.durability);
    }

    #[test]
    fn the_published_tokens_are_refused_on_a_reachable_address() {
        let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../caseflow.toml")).unwrap();
        let loopback = load(&shipped).unwrap();
        assert_eq!(loopback.published_tokens().len(), 6, "every shipped token is a published one");
        for bind in ["0.0.0.0:8080", "[::]:8080", "10.0.0.5:8080", "caseflow.example:8080"] {
            let exposed = shipped.replace("bind = \"127.0.0.1:8080\"", &format!("bind = \"{bind}\""));
            let err = load(&exposed).unwrap_err().to_string();
            assert!(err.contains("dev-") || err.contains("published"), "{bind}: {err}");
            assert!(err.contains("admin") && err.contains("allow_published_tokens"), "{err}");
            let allowed = format!("allow_published_tokens = true\n{exposed}");
            assert!(load(&allowed).is_ok(), "{bind}: an explicit allowance starts");
        }
        for bind in ["127.0.0.1:9000", "[::1]:8080", "localhost:8080"] {
            assert!(load(&shipped.replace("127.0.0.1:8080", bind)).is_ok(), "{bind}");
        }
        // Tokens of one's own are fine anywhere.
        let own = format!(
            "bind = \"0.0.0.0:8080\"\n[[tokens]]\nuser = \"ops\"\nsha256 = \"{}\"\nadmin = true\n",
            sha256_hex("s3cret-ops")
        );
        assert!(load(&own).is_ok());
    }

    #[test]
    fn checkpoints_can_be_turned_off_and_an_empty_cache_is_refused() {
        let off = load("allow_no_tokens = true\ncheckpoint_mib = 0\ncache_mib = 16\n").unwrap();
        assert_eq!(off.store_options().checkpoint_bytes, None);
        assert_eq!(off.store_options().cache_bytes, 16 << 20);
        let err = load("allow_no_tokens = true\ncache_mib = 0\n").unwrap_err();
        assert!(err.to_string().contains("cache_mib"), "{err}");
        assert!(load("checkpoint_mib = \"often\"\n").is_err());
    }

    #[test]
    fn paths_in_a_file_are_relative_to_it_and_the_key_follows_the_data() {
        let dir = std::env::temp_dir().join(format!("caseflow-config-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("caseflow.toml");
        std::fs::write(&file, "allow_no_tokens = true\ndata_dir = \"state\"\nrules_dir = \"/etc/caseflow/rules\"\n")
            .unwrap();
        let config = Config::load(Some(&file)).unwrap();
        assert_eq!(config.data_dir, dir.join("state"));
        assert_eq!(config.rules_dir, PathBuf::from("/etc/caseflow/rules"), "absolute paths stay");
        assert_eq!(config.processes_dir, dir.join("processes"), "defaults too are beside the file");
        assert_eq!(config.field_key_file(), dir.join("state").join("field.key"), "the key lives with the data");
        std::fs::write(&file, "allow_no_tokens = true\nfield_key_file = \"keys/field.key\"\n").unwrap();
        assert_eq!(Config::load(Some(&file)).unwrap().field_key_file(), dir.join("keys/field.key"));
        let _ = std::fs::remove_dir_all(&dir);
        let missing = Config::load(Some(Path::new("/nonexistent/caseflow.toml"))).unwrap_err().to_string();
        assert!(missing.contains("does not exist") && missing.contains("CASEFLOW_CONFIG"), "{missing}");
    }

    #[test]
    fn a_server_without_tokens_is_refused_unless_meant() {
        let err = load("bind = \"127.0.0.1:8080\"\n").unwrap_err().to_string();
        assert!(
            err.contains("configures no tokens") && err.contains("--config") && err.contains("allow_no_tokens"),
            "{err}"
        );
        assert!(load("allow_no_tokens = true\n").is_ok());
    }

    #[test]
    fn a_misspelt_environment_variable_is_refused_with_the_name_it_meant() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>().into_iter();
        assert_eq!(super::unknown_env(names(&["CASEFLOW_BIND", "PATH", "CASEFLOW_TOKEN"])), None);
        let problem = super::unknown_env(names(&["CASEFLOW_BIND", "CASEFLOW_DATA_DRI"])).unwrap();
        assert!(
            problem.contains("CASEFLOW_DATA_DRI") && problem.contains("did you mean CASEFLOW_DATA_DIR?"),
            "{problem}"
        );
        let problem = super::unknown_env(names(&["CASEFLOW_DATABSE_URL"])).unwrap();
        assert!(problem.contains("CASEFLOW_DATABSE_URL is not one caseflow reads"), "{problem}");
    }

    /// `ENV_VARS` is the list of what the code reads: every `CASEFLOW_*` name in a string of
    /// the server's and the engine's source is on it (else a start with it set is refused).
    #[test]
    fn every_environment_variable_the_code_reads_is_listed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut stack = vec![root.join("api/src"), root.join("engine/src")];
        let mut seen = 0;
        while let Some(path) = stack.pop() {
            if path.is_dir() {
                stack.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
                continue;
            }
            if path.extension().is_none_or(|x| x != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // Tests spell wrong names on purpose.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for (i, _) in code.match_indices("\"CASEFLOW_") {
                let name: String = code[i + 1..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
                if name.ends_with('_') {
                    continue; // the prefix itself
                }
                assert!(
                    super::ENV_VARS.contains(&name.as_str()),
                    "{} reads {name}, which ENV_VARS lacks",
                    path.display()
                );
                seen += 1;
            }
        }
        assert!(seen >= 15, "only {seen} found");
    }
}
