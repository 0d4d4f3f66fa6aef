//! What the engine keeps at rest: sensitive values sealed (the case's fields, its history's
//! changes and its tasks' drafts), and work in progress on tasks across hands and restarts.

use caseflow_core::case::{Actor, Command, CommandError};
use caseflow_core::value::Value;
use caseflow_engine::EngineError;
use caseflow_engine::Storage;
use std::collections::BTreeMap;

mod common;
use common::{bj, complaint_source, crm, engine_at, fields, TempDir};

#[test]
fn sensitive_fields_are_encrypted_at_rest() {
    let dir = TempDir::new("sensitive");
    let id;
    {
        let engine = engine_at(&dir).with_field_key(&[42u8; 32]).unwrap();
        engine.deploy(&complaint_source(), bj(2026, 11, 23, 9, 0)).unwrap();
        let mut f = fields("low");
        f.insert("contact".into(), Value::Text("138-1234-5678".into()));
        let inst = engine.start("complaint", f, &crm(), None, bj(2026, 11, 23, 10, 0)).unwrap();
        id = inst.id;
        assert_eq!(inst.fields["contact"], Value::Text("138-1234-5678".into()), "callers see plaintext");
        assert_eq!(
            engine.history(id).unwrap()[0].changes.iter().find(|c| c.0 == "contact").unwrap().2,
            Value::Text("138-1234-5678".into())
        );
        engine.store().flush().unwrap();
    }
    // On disk: the phone number appears nowhere, the customer's name (not sensitive) does.
    let bytes = dir.bytes_at_rest();
    let hay = String::from_utf8_lossy(&bytes);
    assert!(!hay.contains("138-1234-5678"), "plaintext phone number at rest");
    assert!(
        hay.contains("投影仪无法开机") || bytes.windows(3).any(|w| w == "投".as_bytes()),
        "non-sensitive data is stored as is"
    );
    // Another key is refused at open, naming both ids; the right one reads the case.
    let wrong = engine_at(&dir).with_field_key(&[7u8; 32]).err().expect("another key is refused");
    assert!(wrong.to_string().contains(&caseflow_engine::crypto::key_id(&[42u8; 32])), "{wrong}");
    let right = engine_at(&dir).with_field_key(&[42u8; 32]).unwrap();
    assert_eq!(right.instance(id).unwrap().unwrap().fields["contact"], Value::Text("138-1234-5678".into()));
}

#[test]
fn work_in_progress_is_marked_and_drafts_are_kept_across_hands_and_sealed_at_rest() {
    let dir = TempDir::new("drafts");
    let source = r#"process callback_note "回访" {
  source "002"
  fields { phone: text "电话" sensitive  note: text "记录"  tries: int(0..5) "次数" }
  start -> ring
  task ring "回电" { assign role cs_rep  asks phone required, note, tries -> done }
  end done
}"#;
    let at = bj(2026, 11, 23, 10, 0);
    let id;
    {
        let engine = engine_at(&dir).with_field_key(&[42u8; 32]).unwrap();
        engine.deploy(source, at).unwrap();
        let inst = engine.start("callback_note", BTreeMap::new(), &crm(), None, at).unwrap();
        id = inst.id;
        let task = inst.tasks.values().next().unwrap().clone();
        let holder = task.assignee.clone().unwrap();
        let person = |id: &str| Actor { id: id.into(), roles: vec!["cs_rep".into()], admin: false };
        let other = ["zhang_wei", "wang_fang", "liu_yang"].into_iter().find(|u| *u != holder).unwrap();
        // Only the assignee starts it or saves a draft.
        for cmd in
            [Command::StartWork { task: task.seq }, Command::SaveDraft { task: task.seq, fields: BTreeMap::new() }]
        {
            let refused = engine.command(id, &person(other), cmd, at).unwrap_err();
            assert!(matches!(refused, EngineError::Command(CommandError::Forbidden { .. })), "{refused}");
        }
        let started = engine.command(id, &person(&holder), Command::StartWork { task: task.seq }, at).unwrap();
        let marked = started.tasks[&task.seq].started.clone().unwrap();
        assert_eq!((marked.by.as_str(), marked.at), (holder.as_str(), at));
        // A draft: fields of the form only, each of its type; required ones may be missing.
        let mut draft = BTreeMap::new();
        draft.insert("nope".to_string(), Value::Text("x".into()));
        let refused = engine.command(id, &person(&holder), Command::SaveDraft { task: task.seq, fields: draft }, at);
        assert!(matches!(refused, Err(EngineError::Command(CommandError::InvalidField { .. }))));
        let mut draft = BTreeMap::new();
        draft.insert("tries".to_string(), Value::Int(9));
        let refused = engine.command(id, &person(&holder), Command::SaveDraft { task: task.seq, fields: draft }, at);
        assert!(matches!(refused, Err(EngineError::Command(CommandError::InvalidField { .. }))), "{refused:?}");
        let mut draft = BTreeMap::new();
        draft.insert("phone".to_string(), Value::Text("139-8765-4321".into()));
        draft.insert("note".to_string(), Value::Text("占线，下午再打".into()));
        engine.command(id, &person(&holder), Command::SaveDraft { task: task.seq, fields: draft.clone() }, at).unwrap();
        // Given to a colleague: nobody is working on it any more, the draft stays for them.
        let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
        let moved = engine
            .command(id, &admin, Command::Reassign { task: task.seq, to: other.into(), reason: "sick".into() }, at)
            .unwrap();
        let t = &moved.tasks[&task.seq];
        assert_eq!(t.started, None);
        assert_eq!(t.draft.as_ref().map(|d| (d.by.as_str(), &d.fields)), Some((holder.as_str(), &draft)));
        let events: Vec<&str> = engine.history(id).unwrap().iter().map(|h| h.event.as_str()).collect();
        assert!(events.contains(&"work_started") && events.contains(&"draft_saved"), "{events:?}");
        assert!(
            engine.history(id).unwrap().iter().all(|h| !h.detail.contains("139-8765-4321")),
            "draft values are not in the history"
        );
        engine.store().flush().unwrap();
    }
    let bytes = dir.bytes_at_rest();
    assert!(!String::from_utf8_lossy(&bytes).contains("139-8765-4321"), "a draft's sensitive value at rest");
    let engine = engine_at(&dir).with_field_key(&[42u8; 32]).unwrap();
    let inst = engine.instance(id).unwrap().unwrap();
    let draft = inst.tasks.values().next().unwrap().draft.clone().unwrap();
    assert_eq!(draft.fields["phone"], Value::Text("139-8765-4321".into()), "read back opened");
}
