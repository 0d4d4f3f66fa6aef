use caseflow_engine::clock::{Clock, SystemClock};
use caseflow_engine::core::{Actor, Command};
use caseflow_engine::value::Value;
use caseflow_engine::{Engine, RuleSet, RulesFile, Store};
include!("/tmp/shape.rs");
fn main() {
    let text = "[roles.cs_rep]\nname = \"rep\"\n[users.a]\nroles = [\"cs_rep\"]\n";
    let rules = RuleSet::load(&[RulesFile { name: "b.toml".into(), text: text.into() }]).unwrap();
    let engine = Engine::open(Store::temporary().unwrap(), rules).unwrap();
    engine.deploy(SHAPE, SystemClock.now()).unwrap();
    let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
    let now = SystemClock.now();
    let fields = [("urgency".to_string(), Value::Text("high".into()))].into();
    let inst = engine.start("reference", fields, &admin, None, now).unwrap();
    for r in engine.store().scan_prefix(b"") { let (k, v) = r.unwrap(); println!("{:>5} {:?}", v.len(), String::from_utf8_lossy(&k)); if k.starts_with(b"i/") || k.starts_with(b"h/") { println!("      {}", String::from_utf8_lossy(&v)); } }
    let task = *inst.tasks.keys().next().unwrap();
    engine.command(inst.id, &admin, Command::CompleteTask { task, fields: [("resolved".to_string(), Value::Bool(true))].into() }, now).unwrap();
    println!("---- after complete");
    for r in engine.store().scan_prefix(b"") { let (k, v) = r.unwrap(); println!("{:>5} {:?}", v.len(), String::from_utf8_lossy(&k)); }
}
