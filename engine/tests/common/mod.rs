//! What the engine's tests over sled share: the shipped complaint process, times in Beijing,
//! a complaint's start fields, the CRM caller, a temporary data directory and an engine on it.
#![allow(dead_code)] // each test file uses some of them

use caseflow_core::case::Actor;
use caseflow_core::value::Value;
use caseflow_engine::{Durability, Engine, Store, StoreOptions};
use chrono::{DateTime, TimeZone, Utc};
use std::collections::BTreeMap;
use std::path::PathBuf;

use caseflow_tests::shipped_rules as rules;

pub fn complaint_source() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../processes/complaint.flow")).unwrap()
}

pub fn bj(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    chrono_tz::Asia::Shanghai.with_ymd_and_hms(y, m, d, h, min, 0).unwrap().with_timezone(&Utc)
}

pub fn fields(urgency: &str) -> BTreeMap<String, Value> {
    [("customer", "第一中学"), ("contact", "138"), ("content", "投影仪无法开机"), ("urgency", urgency)]
        .iter()
        .map(|(k, v)| (k.to_string(), Value::Text(v.to_string())))
        .collect()
}

pub fn crm() -> Actor {
    Actor { id: "crm".into(), roles: vec![], admin: false }
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Every byte of the files in the folder, as they lie on disk (for looking for plaintext).
    pub fn bytes_at_rest(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(&self.0).unwrap() {
            let p = entry.unwrap().path();
            if p.is_file() {
                bytes.extend(std::fs::read(&p).unwrap());
            }
        }
        bytes
    }

    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("caseflow-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn engine_at(dir: &TempDir) -> Engine<Store> {
    let options = StoreOptions { durability: Durability::Flush, ..StoreOptions::default() };
    Engine::open(Store::open(&dir.0, &options).unwrap(), rules()).unwrap()
}
