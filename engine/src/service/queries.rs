//! Reads: a case, its history and sub-cases, inboxes by user or role, cases by status, reports.

use super::{corrupt, Engine, EngineError, SubCase, TaskPage};
use crate::storage::codec::{decode, history_entries};
use crate::storage::index::assignee_entry;
use crate::storage::index::TaskView;
use crate::storage::keys::{self, Inbox, Prefix};
use crate::storage::{Bytes, Storage, StoreError};
use caseflow_core::case::{self, Instance, InstanceId, StatusKind};
use chrono::{DateTime, Utc};

/// A person's open tasks in figures (`Engine::inbox_counts`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboxCounts {
    pub open: usize,
    /// Past their deadline.
    pub overdue: usize,
    /// Due in the range asked for (a day).
    pub due: usize,
}

/// Which cases of a process a search asks for (`Engine::search`): every condition holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CaseSearch {
    pub process: String,
    /// `running`, `completed`, ...; `None`: any.
    pub status: Option<String>,
    /// Fields and the value each must hold, as `index_text` writes it. Each must be a field the
    /// process indexes (`index FIELD`); the first one's index drives the search.
    pub fields: Vec<(String, String)>,
    pub started_after: Option<DateTime<Utc>>,
    pub started_before: Option<DateTime<Utc>>,
}

/// A page of a search, and where the next one starts (`None`: there is no more).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchPage {
    pub instances: Vec<Instance>,
    pub next: Option<InstanceId>,
}

/// Index entries a search page looks at, at most: a search whose conditions few cases meet
/// answers a short page (or an empty one) with a cursor rather than scan on.
pub const SEARCH_EXAMINED_MAX: usize = 5_000;

/// Whether `inst` is a case a search asks for: every condition, checked on the case itself.
pub(super) fn holds(q: &CaseSearch, inst: &Instance) -> bool {
    inst.process == q.process
        && q.status.as_deref().is_none_or(|s| inst.status.name() == s)
        && q.fields
            .iter()
            .all(|(f, v)| inst.fields.get(f).and_then(crate::storage::index::index_text).as_deref() == Some(v.as_str()))
        && q.started_after.is_none_or(|t| inst.started_at >= t)
        && q.started_before.is_none_or(|t| inst.started_at < t)
}

impl<S: Storage> Engine<S> {
    /// The cases a search asks for, in id order, after `after`, at most `limit`. Driven by the
    /// index of the first field asked for (`n/`), or, without fields, by the status index;
    /// every condition is checked on the case itself. A page stops after
    /// `SEARCH_EXAMINED_MAX` index entries: it may then be short, with a cursor.
    /// On a store that keeps search documents (PostgreSQL), a search by a field the process
    /// does not index goes through them instead (`documents`).
    pub fn search(&self, q: &CaseSearch, after: Option<InstanceId>, limit: usize) -> Result<SearchPage, EngineError> {
        let indexed = self.indexed_fields(&q.process);
        if let Some((field, _)) = q.fields.iter().find(|(f, _)| !indexed.contains(f)) {
            if !self.searchable_fields(&q.process).contains(field) {
                return Err(EngineError::BadSearch(format!(
                    "process `{}` cannot be searched by `{field}`: declare `index {field}` in it",
                    q.process
                )));
            }
            return self.search_documents(q, after, limit);
        }
        let prefix = match (q.fields.first(), &q.status) {
            (Some((field, value)), _) => keys::field_index_prefix(&q.process, field, value),
            (None, Some(status)) => keys::status_prefix(&q.process, status),
            // Every status: the cases of the process in id order are not one range; one status
            // after another would not page by id. Asked for by the API with a status always.
            (None, None) => return Err(EngineError::BadSearch("give a status or a field to search by".into())),
        };
        let from = match after {
            Some(a) => [prefix.as_slice(), &(a.0 + 1).to_be_bytes()].concat(),
            None => prefix.clone(),
        };
        let end = keys::prefix_end(&prefix).unwrap_or_default();
        let id_of = |k: &[u8]| match q.fields.is_empty() {
            true => keys::status_case(k),
            false => keys::field_index_case(k),
        };
        let mut instances = Vec::new();
        let mut last = None;
        for (examined, item) in self.store.range(&from, &end).enumerate() {
            let (k, _) = item?;
            if examined == SEARCH_EXAMINED_MAX {
                return Ok(SearchPage { instances, next: last });
            }
            // A key whose value has the prefix's value and more (a `\0` in the value): not a
            // case of this value, and not in id order; its case is checked below like any.
            let id = id_of(&k).ok_or_else(|| corrupt(&String::from_utf8_lossy(&k), "bad index entry"))?;
            if k.len() != prefix.len() + 8 {
                continue;
            }
            last = Some(id);
            let Some(inst) = self.instance(id)? else { continue };
            if holds(q, &inst) {
                if instances.len() == limit {
                    // One more than the page: there is a next one, from the last case shown.
                    let next = instances.last().map(|i: &Instance| i.id);
                    return Ok(SearchPage { instances, next });
                }
                instances.push(inst);
            }
        }
        Ok(SearchPage { instances, next: None })
    }

    pub fn instance(&self, id: InstanceId) -> Result<Option<Instance>, EngineError> {
        Ok(self.instance_stored(id)?.map(|s| s.instance))
    }

    /// The case and the bytes it was read from (a write conditional on them follows).
    pub(crate) fn instance_stored(&self, id: InstanceId) -> Result<Option<super::Stored>, EngineError> {
        let k = keys::instance(id);
        let Some(bytes) = self.store.get(&k)? else { return Ok(None) };
        let mut instance = decode::<Instance>(&k, &bytes)?;
        self.protect_instance(&mut instance, false)?;
        Ok(Some(super::Stored { instance, bytes }))
    }

    /// Every sub-process case `parent` started (ended ones too), oldest first, with its process
    /// and status.
    pub fn sub_cases(&self, parent: InstanceId) -> Result<Vec<SubCase>, EngineError> {
        let prefix = keys::sub_cases_of(parent);
        self.store
            .scan_prefix(&prefix)
            .map(|item| {
                let (k, v) = item?;
                let corrupt = || StoreError::Corrupt {
                    key: String::from_utf8_lossy(&k).into(),
                    problem: "bad sub-case entry".into(),
                };
                let id = keys::sub_case_child(&k).ok_or_else(corrupt)?;
                let text = std::str::from_utf8(&v).map_err(|_| corrupt())?;
                let (process, status) = text.split_once('\0').ok_or_else(corrupt)?;
                Ok(SubCase { id, process: process.to_string(), status: status.to_string() })
            })
            .collect()
    }

    pub fn instance_by_key(&self, business_key: &str) -> Result<Option<Instance>, EngineError> {
        match self.store.get_u64(&keys::business_key(business_key))? {
            Some(id) => self.instance(InstanceId(id)),
            None => Ok(None),
        }
    }

    /// The audit trail, in order.
    pub fn history(&self, id: InstanceId) -> Result<Vec<case::HistoryEntry>, EngineError> {
        let Some(inst) = self.instance(id)? else { return Ok(Vec::new()) };
        let prefix = keys::history_of(id);
        let mut history = Vec::with_capacity(inst.history_len.min(1024) as usize);
        for item in self.store.scan_prefix(&prefix) {
            let (k, v) = item?;
            history.extend(history_entries(&k, &v)?);
        }
        self.seal_history(&inst, history, false)
    }

    /// Open tasks of a user (by assignee) or of a role (by candidate role), soonest due first,
    /// up to `limit`.
    pub fn tasks(&self, user: Option<&str>, role: Option<&str>, limit: usize) -> Result<Vec<TaskView>, EngineError> {
        Ok(self.tasks_page(user, role, None, limit)?.tasks)
    }

    /// A page of an inbox, soonest due first (tasks without a deadline last), starting after
    /// `cursor`. One range scan of the task index: no instance is read.
    pub fn tasks_page(
        &self,
        user: Option<&str>,
        role: Option<&str>,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<TaskPage, EngineError> {
        let inbox = match (user, role) {
            (Some(u), _) => Inbox::User(u),
            (None, Some(r)) => Inbox::Role(r),
            (None, None) => return Ok(TaskPage { tasks: Vec::new(), next_cursor: None }),
        };
        let from = match cursor {
            // The cursor is the hex of where the last task of the page sat in the inbox.
            Some(c) => {
                let place = (0..c.len())
                    .step_by(2)
                    .map(|i| c.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
                    .collect::<Option<Vec<u8>>>()
                    .filter(|b| b.len() == keys::INBOX_PLACE_LEN)
                    .ok_or_else(|| EngineError::BadCursor(c.to_string()))?;
                inbox.after(&place)
            }
            None => inbox.prefix(),
        };
        let mut tasks = Vec::new();
        let mut last: Option<Bytes> = None;
        for item in self.store.range(&from, &inbox.end()).take(limit.saturating_add(1)) {
            let (k, v) = item?;
            if tasks.len() == limit {
                let place = keys::inbox_place(last.as_deref().unwrap_or(&k)).unwrap_or_default();
                let next = place.iter().map(|b| format!("{b:02x}")).collect();
                return Ok(TaskPage { tasks, next_cursor: Some(next) });
            }
            match assignee_entry(&k, &v) {
                // A role entry of an assigned task: the view is in the assignee's inbox. Gone
                // means the task changed between the two reads (a scan is not a snapshot).
                Some(uk) => match self.store.get(&uk)? {
                    Some(view) => tasks.push(decode::<TaskView>(&uk, &view)?),
                    None => continue,
                },
                None => tasks.push(decode::<TaskView>(&k, &v)?),
            }
            last = Some(k);
        }
        Ok(TaskPage { tasks, next_cursor: None })
    }

    /// A user's open tasks, how many are past their deadline at `now`, and how many are due in
    /// `[due_from, due_to)`. The first is the count the engine keeps for assignment; the others
    /// are ranges of the user's inbox index, which is ordered by deadline: no task is read, and
    /// only the overdue and the due ones are counted, however many the person holds.
    pub fn inbox_counts(
        &self,
        user: &str,
        now: DateTime<Utc>,
        due_from: DateTime<Utc>,
        due_to: DateTime<Utc>,
    ) -> Result<InboxCounts, EngineError> {
        let inbox = Inbox::User(user);
        let count = |from: Vec<u8>, to: Vec<u8>| -> Result<usize, EngineError> {
            let mut n = 0;
            for item in self.store.range(&from, &to) {
                item?;
                n += 1;
            }
            Ok(n)
        };
        let open = self.stored_open_tasks(&[user])[0];
        Ok(InboxCounts {
            open,
            overdue: count(inbox.prefix(), inbox.due_from(now))?,
            due: count(inbox.due_from(due_from), inbox.due_from(due_to.max(due_from)))?,
        })
    }

    /// Ids of a process's instances in a status.
    pub fn instances(&self, process: &str, status: &str, limit: usize) -> Result<Vec<InstanceId>, EngineError> {
        self.instances_after(process, status, None, limit)
    }

    /// Ids of a process's instances in a status after `after` (exclusive), in id order.
    pub fn instances_after(
        &self,
        process: &str,
        status: &str,
        after: Option<InstanceId>,
        limit: usize,
    ) -> Result<Vec<InstanceId>, EngineError> {
        let prefix = keys::status_prefix(process, status);
        let from = match after {
            Some(a) => keys::status(process, status, InstanceId(a.0 + 1)),
            None => prefix.clone(),
        };
        let end = keys::prefix_end(&prefix).unwrap_or_default();
        self.store
            .range(&from, &end)
            .take(limit)
            .map(|r| {
                let (k, _) = r?;
                keys::status_case(&k).ok_or_else(|| corrupt(&String::from_utf8_lossy(&k), "bad status entry"))
            })
            .collect()
    }

    /// How many instances of a process are in a status (an index scan, no instance read).
    pub fn count_instances(&self, process: &str, status: &str) -> Result<usize, EngineError> {
        Ok(self.store.scan_prefix(&keys::status_prefix(process, status)).count())
    }

    pub fn count_pending_timers(&self) -> Result<usize, EngineError> {
        Ok(self.store.scan_prefix(Prefix::Timer.bytes()).count())
    }

    /// The KPI report of a process over cases started in `[from, to)` (see `report`).
    pub fn report(
        &self,
        process: &str,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Result<caseflow_core::report::Report, EngineError> {
        let def = self.definition(process, None).ok_or_else(|| EngineError::UnknownProcess(process.to_string()))?;
        let choice_fields: Vec<String> = def
            .model
            .fields
            .iter()
            .filter(|f| matches!(f.ty, caseflow_dsl::model::FieldType::Choice(_)))
            .map(|f| f.name.clone())
            .collect();
        let mut cases = Vec::new();
        for status in StatusKind::ALL {
            for id in self.instances(process, status.as_str(), usize::MAX)? {
                let Some(inst) = self.instance(id)? else { continue };
                if from.is_some_and(|f| inst.started_at < f) || to.is_some_and(|t| inst.started_at >= t) {
                    continue;
                }
                let history = self.history(id)?;
                cases.push((inst, history));
            }
        }
        Ok(caseflow_core::report::build(process, from, to, &choice_fields, &cases))
    }
}
