//! Search by case data (`index FIELD` in a process, `Engine::search`): the cases whose indexed
//! fields hold the values asked for, in id order and a page at a time, found through index
//! entries kept in each command's own write (so a changed field moves its case), on sled,
//! PostgreSQL and memory alike.

mod common;

use caseflow_core::case::{Actor, Command, Instance, InstanceId};
use caseflow_core::value::Value;
use caseflow_engine::service::CaseSearch;
use caseflow_engine::storage::postgres::{PgOptions, PgStore};
use caseflow_engine::{Engine, MemoryStore, Storage, Store};
use common::{bj, complaint_source, crm};
use std::collections::BTreeMap;

use caseflow_tests::shipped_rules as rules;

fn start<S: Storage>(engine: &Engine<S>, customer: &str, urgency: &str, minute: u32) -> InstanceId {
    let fields: BTreeMap<String, Value> =
        [("customer", customer), ("contact", "138"), ("content", "投影仪无法开机"), ("urgency", urgency)]
            .iter()
            .map(|(k, v)| (k.to_string(), Value::Text(v.to_string())))
            .collect();
    engine.start("complaint", fields, &crm(), None, bj(2026, 11, 23, 10, minute)).unwrap().id
}

fn search(fields: &[(&str, &str)]) -> CaseSearch {
    CaseSearch {
        process: "complaint".into(),
        status: Some("running".into()),
        fields: fields.iter().map(|(f, v)| (f.to_string(), v.to_string())).collect(),
        ..CaseSearch::default()
    }
}

/// Every page of a search, followed by its cursors.
fn all_pages<S: Storage>(engine: &Engine<S>, q: &CaseSearch, limit: usize) -> Vec<Vec<InstanceId>> {
    let (mut pages, mut after) = (Vec::new(), None);
    loop {
        let page = engine.search(q, after, limit).unwrap();
        pages.push(page.instances.iter().map(|i: &Instance| i.id).collect());
        match page.next {
            Some(next) => after = Some(next),
            None => return pages,
        }
    }
}

fn check<S: Storage>(engine: Engine<S>) {
    engine.deploy(&complaint_source(), bj(2026, 11, 23, 9, 0)).unwrap();
    let school = "第一中学";
    let mut cases = Vec::new();
    for i in 0..7u32 {
        let customer = if i % 2 == 0 { school } else { "第二中学" };
        cases.push((start(&engine, customer, ["high", "low"][(i % 3 == 0) as usize], i), customer));
    }
    let of_school: Vec<InstanceId> = cases.iter().filter(|(_, c)| *c == school).map(|(id, _)| *id).collect();
    assert_eq!(of_school.len(), 4);
    // One field, paged two at a time; two fields; a start time.
    assert_eq!(
        all_pages(&engine, &search(&[("customer", school)]), 2),
        vec![of_school[..2].to_vec(), of_school[2..].to_vec()]
    );
    let urgent_school = all_pages(&engine, &search(&[("customer", school), ("urgency", "low")]), 50).concat();
    assert_eq!(urgent_school, vec![of_school[0], of_school[3]], "cases 0 and 6: i % 3 == 0");
    let later = CaseSearch { started_after: Some(bj(2026, 11, 23, 10, 3)), ..search(&[("customer", school)]) };
    assert_eq!(all_pages(&engine, &later, 50).concat(), of_school[2..].to_vec());
    assert!(all_pages(&engine, &search(&[("customer", "第三中学")]), 50).concat().is_empty());

    // A changed field moves its case in the index, in the command's own write.
    let admin = Actor { id: "admin".into(), roles: vec![], admin: true };
    let moved = of_school[1];
    let fields = [("customer".to_string(), Value::Text("第三中学".into()))].into();
    engine.command(moved, &admin, Command::UpdateFields { fields }, bj(2026, 11, 23, 11, 0)).unwrap();
    assert_eq!(all_pages(&engine, &search(&[("customer", "第三中学")]), 50).concat(), vec![moved]);
    assert!(!all_pages(&engine, &search(&[("customer", school)]), 50).concat().contains(&moved));
    // The status is a condition too: a cancelled case leaves running searches.
    engine.command(of_school[0], &admin, Command::Cancel { reason: "test".into() }, bj(2026, 11, 23, 11, 5)).unwrap();
    assert_eq!(all_pages(&engine, &search(&[("customer", school)]), 50).concat(), vec![of_school[2], of_school[3]]);
    let cancelled = CaseSearch { status: Some("cancelled".into()), ..search(&[("customer", school)]) };
    assert_eq!(all_pages(&engine, &cancelled, 50).concat(), vec![of_school[0]]);
}

#[test]
fn cases_are_found_by_the_fields_their_process_indexes() {
    check(Engine::open(MemoryStore::new(), rules()).unwrap());
    check(Engine::open(Store::temporary().unwrap(), rules()).unwrap());
    if let Some(url) = caseflow_tests::postgres_database("search") {
        check(Engine::open(PgStore::connect(&PgOptions::new(&url)).unwrap(), rules()).unwrap());
    }
}
