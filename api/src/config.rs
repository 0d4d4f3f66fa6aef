//! Server settings: `caseflow.toml` (optional), each setting overridable by an environment
//! variable (`CASEFLOW_BIND`, `CASEFLOW_DATA_DIR`, `CASEFLOW_PROCESSES_DIR`,
//! `CASEFLOW_RULES_DIR`, `CASEFLOW_DURABILITY`, `CASEFLOW_BODY_BYTES_MAX`).

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
    #[serde(default = "default_processes_dir")]
    pub processes_dir: PathBuf,
    #[serde(default = "default_rules_dir")]
    pub rules_dir: PathBuf,
    #[serde(default = "default_durability")]
    pub durability: Durability,
    #[serde(default = "default_body_bytes_max")]
    pub body_bytes_max: usize,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
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
fn default_processes_dir() -> PathBuf {
    "processes".into()
}
fn default_rules_dir() -> PathBuf {
    "rules".into()
}
fn default_durability() -> Durability {
    Durability::Fsync
}
fn default_body_bytes_max() -> usize {
    1024 * 1024
}

pub fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Config {
    /// Reads `path` if it exists (defaults otherwise), then applies environment overrides.
    pub fn load(path: &Path) -> Result<Config> {
        let mut config: Config = if path.exists() {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("{} is not a valid configuration", path.display()))?
        } else {
            toml::from_str("").expect("defaults")
        };
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(v) = env("CASEFLOW_BIND") {
            config.bind = v;
        }
        if let Some(v) = env("CASEFLOW_DATA_DIR") {
            config.data_dir = v.into();
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
        if let Some(v) = env("CASEFLOW_BODY_BYTES_MAX") {
            config.body_bytes_max =
                v.parse().with_context(|| format!("CASEFLOW_BODY_BYTES_MAX=`{v}` is not a number"))?;
        }
        for t in &config.tokens {
            if t.sha256.len() != 64 || !t.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                bail!("token of `{}`: sha256 must be 64 hex digits (`caseflow token-hash TOKEN` prints it)", t.user);
            }
        }
        Ok(config)
    }
}
