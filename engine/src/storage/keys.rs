//! Every key the engine stores, and the one place that knows their bytes: each prefix is a
//! `Prefix`, each key has a constructor here and, where the engine reads keys back, a decoder.
//! No other file builds or slices a key.
//!
//! | prefix | key | value |
//! | --- | --- | --- |
//! | `m/` | `m/next_instance`, `m/format`, `m/rules_version` | u64 BE: the next instance id, the key layout (`FORMAT`), the rules version in force |
//! | `m/` | `m/rules_files` | the rules files in force (JSON), for a restart whose folder is refused |
//! | `m/` | `m/field_key_id` | the id of the key sensitive fields are sealed with |
//! | `m/` | `m/outbox_lease` | empty: claimed by the node that delivers webhooks (on a shared store) |
//! | `m/reindex/` | `m/reindex/{process}` | a backfill of `n/` entries still under way: the fields, and the last instance id done |
//! | `m/rr/` | `m/rr/{role}` | u64 BE: the role's round-robin position, so a restart carries on the rotation |
//! | `c/` | `c/{rules version u64 BE}` | one accepted rules change (who, when, diff) |
//! | `d/` | `d/{process}\0{version u32 BE}` | a deployed definition (source, deployed_at) |
//! | `i/` | `i/{id u64 BE}` | an instance |
//! | `h/` | `h/{id u64 BE}{first seq u64 BE}` | the history entries of one command |
//! | `t/` | `t/{due}{id u64 BE}{timer u32 BE}` | empty: pending timers of running cases, by due time |
//! | `u/` | `u/{user}\0{due}{id u64 BE}{task u32 BE}` | the task's view: open tasks by assignee, soonest due first |
//! | `r/` | `r/{role}\0{due}{id u64 BE}{task u32 BE}` | the task's view, or `ASSIGNED_TO` and the assignee when assigned (the view is in `u/`) |
//! | `s/` | `s/{process}\0{status}\0{id u64 BE}` | empty: instances by process and status |
//! | `p/` | `p/{parent id u64 BE}{child id u64 BE}` | `{process}\0{status}` of the child |
//! | `k/` | `k/{business key}` | u64 BE: the instance id |
//! | `q/` | `q/{process}\0{key prefix}` | u64 BE: the last sequence number given under that prefix |
//! | `x/` | `x/{caller}\0{idempotency key}` | the instance id (u64 BE) and the request's SHA-256 |
//! | `y/` | `y/{process}\0{tally}(\0{key})*\0{id u64 BE}` | empty: the cases a `tally` counted |
//! | `f/` | `f/{process}\0{field}\0{value}\0{step}` | who last completed the step for that value (`familiar`) |
//! | `o/` | `o/{batch seq u64 BE}{index u32 BE}` | an outbox event, when webhooks are configured |
//! | `a/` | `a/{user}` | the person's console password: an argon2id PHC string, when and by whom it was set (JSON) |
//! | `e/` | `e/{SHA-256 of the session token}` | a console session: who, since when, last seen, its CSRF token (JSON) |
//! | `n/` | `n/{process}\0{field}\0{value}\0{id u64 BE}` | empty: the cases of a process by the value of a field it indexes (`index FIELD`) |
//! | `v/` | `v/{user:ID or role:ROLE}\0{name}` | a saved inbox view: its filter, who made it, when (JSON) |
//!
//! `{due}` is a deadline as 8 bytes that sort in time order (`due_bytes`); in inboxes all ones
//! when the task has none, so an inbox page is one range scan in deadline order that reads no
//! instance. Every question the API asks is a prefix or range scan over one of these.

use caseflow_core::case::InstanceId;
use chrono::{DateTime, Utc};

/// The version of this layout, stored at `m/format`. A store of another version is refused
/// when it opens: caseflow has never shipped a store that needs upgrading.
pub const FORMAT: u64 = 4;

/// The first bytes of every key, one per kind of entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Prefix {
    Meta,
    RulesChange,
    Definition,
    Instance,
    History,
    Timer,
    UserInbox,
    RoleInbox,
    Status,
    SubCase,
    BusinessKey,
    Sequence,
    Idempotency,
    Tally,
    Familiar,
    Outbox,
    Account,
    Session,
    SavedView,
    FieldIndex,
    OpenCount,
}

impl Prefix {
    pub const ALL: [Prefix; 21] = [
        Prefix::Meta,
        Prefix::RulesChange,
        Prefix::Definition,
        Prefix::Instance,
        Prefix::History,
        Prefix::Timer,
        Prefix::UserInbox,
        Prefix::RoleInbox,
        Prefix::Status,
        Prefix::SubCase,
        Prefix::BusinessKey,
        Prefix::Sequence,
        Prefix::Idempotency,
        Prefix::Tally,
        Prefix::Familiar,
        Prefix::Outbox,
        Prefix::Account,
        Prefix::Session,
        Prefix::SavedView,
        Prefix::FieldIndex,
        Prefix::OpenCount,
    ];

    pub const fn bytes(self) -> &'static [u8] {
        match self {
            Prefix::Meta => b"m/",
            Prefix::RulesChange => b"c/",
            Prefix::Definition => b"d/",
            Prefix::Instance => b"i/",
            Prefix::History => b"h/",
            Prefix::Timer => b"t/",
            Prefix::UserInbox => b"u/",
            Prefix::RoleInbox => b"r/",
            Prefix::Status => b"s/",
            Prefix::SubCase => b"p/",
            Prefix::BusinessKey => b"k/",
            Prefix::Sequence => b"q/",
            Prefix::Idempotency => b"x/",
            Prefix::Tally => b"y/",
            Prefix::Familiar => b"f/",
            Prefix::Outbox => b"o/",
            Prefix::Account => b"a/",
            Prefix::Session => b"e/",
            Prefix::SavedView => b"v/",
            Prefix::FieldIndex => b"n/",
            Prefix::OpenCount => b"w/",
        }
    }

    /// A key of this prefix followed by `parts`.
    fn key(self, parts: &[&[u8]]) -> Vec<u8> {
        let mut k = Vec::with_capacity(32);
        k.extend_from_slice(self.bytes());
        for p in parts {
            k.extend_from_slice(p);
        }
        k
    }

    /// The body of `key` after this prefix.
    fn body(self, key: &[u8]) -> Option<&[u8]> {
        key.strip_prefix(self.bytes())
    }
}

/// The smallest key above every key that starts with `prefix` (`None`: there is none).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Reads a stored u64 value (counters and ids are 8 bytes BE).
pub fn u64_value(value: &[u8]) -> Option<u64> {
    u64_at(value, 0).filter(|_| value.len() == 8)
}

// ------------------------------------------------------------ m/: meta

pub const NEXT_INSTANCE: &[u8] = b"m/next_instance";
pub const FORMAT_KEY: &[u8] = b"m/format";
pub const RULES_VERSION: &[u8] = b"m/rules_version";
/// The rules files in force (as accepted), for a restart whose folder no longer validates.
pub const RULES_FILES: &[u8] = b"m/rules_files";
/// The id of the field key the store's sensitive values are sealed with.
pub const FIELD_KEY_ID: &[u8] = b"m/field_key_id";
/// Claimed (`Storage::claim`) by the one node that delivers the outbox, on a shared store.
pub const OUTBOX_LEASE: &[u8] = b"m/outbox_lease";
pub const ROUND_ROBIN: &[u8] = b"m/rr/";
/// Backfills of field indexes under way, one per process (`Engine::reindex_step`).
pub const REINDEX: &[u8] = b"m/reindex/";

/// Where the backfill of a process's newly indexed fields keeps its place.
pub fn reindex(process: &str) -> Vec<u8> {
    [REINDEX, process.as_bytes()].concat()
}

pub fn reindex_process(key: &[u8]) -> Option<String> {
    String::from_utf8(key.strip_prefix(REINDEX)?.to_vec()).ok()
}

/// Where a role's round-robin position is kept.
pub fn round_robin(role: &str) -> Vec<u8> {
    [ROUND_ROBIN, role.as_bytes()].concat()
}

pub fn round_robin_role(key: &[u8]) -> Option<String> {
    String::from_utf8(key.strip_prefix(ROUND_ROBIN)?.to_vec()).ok()
}

// ------------------------------------------------------------ c/, d/: rules and processes

pub fn rules_change(version: u64) -> Vec<u8> {
    Prefix::RulesChange.key(&[&version.to_be_bytes()])
}

pub fn definition(process: &str, version: u32) -> Vec<u8> {
    Prefix::Definition.key(&[process.as_bytes(), b"\0", &version.to_be_bytes()])
}

/// The process and version of a `d/` key.
pub fn definition_of(key: &[u8]) -> Option<(String, u32)> {
    let body = Prefix::Definition.body(key)?;
    let nul = body.iter().position(|b| *b == 0)?;
    let name = String::from_utf8(body[..nul].to_vec()).ok()?;
    Some((name, u32_at(body, nul + 1).filter(|_| body.len() == nul + 5)?))
}

// ------------------------------------------------------------ i/, h/: cases and history

pub fn instance(id: InstanceId) -> Vec<u8> {
    Prefix::Instance.key(&[&id.0.to_be_bytes()])
}

pub fn history(id: InstanceId, first_seq: u64) -> Vec<u8> {
    Prefix::History.key(&[&id.0.to_be_bytes(), &first_seq.to_be_bytes()])
}

/// Every history key of one case, in order.
pub fn history_of(id: InstanceId) -> Vec<u8> {
    Prefix::History.key(&[&id.0.to_be_bytes()])
}

// ------------------------------------------------------------ n/: cases by field value

/// Every entry of the cases of `process` whose `field` holds `value` (as `field_index` writes
/// it), in case id order. A value holding `\0` may share a prefix with another value: callers
/// check the case's field.
pub fn field_index_prefix(process: &str, field: &str, value: &str) -> Vec<u8> {
    Prefix::FieldIndex.key(&[process.as_bytes(), b"\0", field.as_bytes(), b"\0", value.as_bytes(), b"\0"])
}

pub fn field_index(process: &str, field: &str, value: &str, id: InstanceId) -> Vec<u8> {
    let mut k = field_index_prefix(process, field, value);
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

/// The case of an `n/` key: its last eight bytes.
pub fn field_index_case(key: &[u8]) -> Option<InstanceId> {
    let body = Prefix::FieldIndex.body(key)?;
    u64_at(body, body.len().checked_sub(8)?).map(InstanceId)
}

/// The case of an `i/` key.
pub fn instance_of(key: &[u8]) -> Option<InstanceId> {
    let body = Prefix::Instance.body(key).filter(|b| b.len() == 8)?;
    u64_at(body, 0).map(InstanceId)
}

/// The case of an `h/` key.
pub fn history_case(key: &[u8]) -> Option<InstanceId> {
    let body = Prefix::History.body(key).filter(|b| b.len() == 16)?;
    u64_at(body, 0).map(InstanceId)
}

// ------------------------------------------------------------ t/: timers

/// Due times sort as unsigned big-endian: the signed milliseconds shifted by 2^63.
fn due_bytes(t: DateTime<Utc>) -> [u8; 8] {
    ((t.timestamp_millis() as u64) ^ (1 << 63)).to_be_bytes()
}

fn due_from_bytes(b: &[u8]) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis((u64_at(b, 0)? ^ (1 << 63)) as i64)
}

/// `t` rounded up to its millisecond.
fn ceil_millis(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis((t.timestamp_micros() + 999).div_euclid(1000)).unwrap_or(t)
}

/// A timer is indexed at its due time rounded *up* to the millisecond, so that every timer the
/// driver finds at or before `now`'s millisecond is really due: none is tried early.
pub fn timer(due: DateTime<Utc>, id: InstanceId, seq: u32) -> Vec<u8> {
    Prefix::Timer.key(&[&due_bytes(ceil_millis(due)), &id.0.to_be_bytes(), &seq.to_be_bytes()])
}

/// The end (exclusive) of the timers due by `now`: every key up to `now`'s millisecond.
pub fn timers_due_by(now: DateTime<Utc>) -> Vec<u8> {
    let next_ms = DateTime::from_timestamp_millis(now.timestamp_micros().div_euclid(1000) + 1).unwrap_or(now);
    Prefix::Timer.key(&[&due_bytes(next_ms)])
}

/// The (rounded) due time, case and timer of a `t/` key.
pub fn timer_of(key: &[u8]) -> Option<(DateTime<Utc>, InstanceId, u32)> {
    let body = Prefix::Timer.body(key).filter(|b| b.len() == 20)?;
    Some((due_from_bytes(body)?, InstanceId(u64_at(body, 8)?), u32_at(body, 16)?))
}

// ------------------------------------------------------------ u/, r/: inboxes

/// Whose inbox: an assignee's (`u/`) or a candidate role's (`r/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbox<'a> {
    User(&'a str),
    Role(&'a str),
}

/// Bytes after an inbox's prefix that place a task in it: due, case, task.
pub const INBOX_PLACE_LEN: usize = 20;

impl Inbox<'_> {
    /// Every entry of this inbox starts with this.
    pub fn prefix(self) -> Vec<u8> {
        match self {
            Inbox::User(u) => Prefix::UserInbox.key(&[u.as_bytes(), b"\0"]),
            Inbox::Role(r) => Prefix::RoleInbox.key(&[r.as_bytes(), b"\0"]),
        }
    }

    /// A task's entry, placed by its deadline (tasks without one last), then case and task.
    pub fn entry(self, due: Option<DateTime<Utc>>, id: InstanceId, task: u32) -> Vec<u8> {
        let mut k = self.prefix();
        k.extend_from_slice(&due.map_or([0xff; 8], due_bytes));
        k.extend_from_slice(&id.0.to_be_bytes());
        k.extend_from_slice(&task.to_be_bytes());
        k
    }

    /// The first place in this inbox for a task due at or after `due` (entries are ordered by
    /// deadline): the bound of a range of deadlines.
    pub fn due_from(self, due: DateTime<Utc>) -> Vec<u8> {
        let mut k = self.prefix();
        k.extend_from_slice(&due_bytes(due));
        k
    }

    /// The first key after the entry placed at `place` (an entry's last `INBOX_PLACE_LEN`
    /// bytes), for the next page.
    pub fn after(self, place: &[u8]) -> Vec<u8> {
        let mut k = self.prefix();
        k.extend_from_slice(place);
        k.push(0);
        k
    }

    /// Above every entry of this inbox.
    pub fn end(self) -> Vec<u8> {
        let mut k = self.prefix();
        k.extend_from_slice(&[0xff; INBOX_PLACE_LEN + 1]);
        k
    }
}

/// Where an inbox entry places its task (its last `INBOX_PLACE_LEN` bytes).
pub fn inbox_place(key: &[u8]) -> Option<&[u8]> {
    key.len().checked_sub(INBOX_PLACE_LEN).map(|at| &key[at..])
}

/// The assignee of a `u/` entry.
pub fn inbox_user(key: &[u8]) -> Option<String> {
    let rest = Prefix::UserInbox.body(key)?;
    let end = rest.iter().position(|b| *b == 0)?;
    Some(String::from_utf8_lossy(&rest[..end]).into_owned())
}

// ------------------------------------------------------------ w/: open tasks per user, shared stores

/// Rows a user's open-task count is spread over on a shared store (`Batch::add` to one of
/// them, chosen per batch): commands changing one person's inbox at once mostly lock
/// different rows, so they seldom wait on each other's commits. The count is their sum.
pub const OPEN_COUNT_SHARDS: u8 = 16;

/// Present once a shared store's `w/` counts were made from its inboxes: the counts are then
/// kept by every write that changes an inbox.
pub const OPEN_COUNTS_MADE: &[u8] = Prefix::OpenCount.bytes();

/// One of the rows of `user`'s open-task count.
pub fn open_count(user: &str, shard: u8) -> Vec<u8> {
    Prefix::OpenCount.key(&[user.as_bytes(), b"\0", &[shard]])
}

/// Whether `key` is kept in a copy of the store (`storage::dump`): not the `w/` counts, which
/// are the inboxes' sums, made again by the engine that opens a shared store without them.
pub fn copied(key: &[u8]) -> bool {
    !key.starts_with(Prefix::OpenCount.bytes())
}

/// The `u/` entry of the same task under `user`, for a role entry that points there.
pub fn user_entry_for(role_entry: &[u8], user: &[u8]) -> Option<Vec<u8>> {
    Some(Prefix::UserInbox.key(&[user, b"\0", inbox_place(role_entry)?]))
}

// ------------------------------------------------------------ s/, p/: cases by status, sub-cases

/// Every case of a process in one status.
pub fn status_prefix(process: &str, status: &str) -> Vec<u8> {
    Prefix::Status.key(&[process.as_bytes(), b"\0", status.as_bytes(), b"\0"])
}

pub fn status(process: &str, status: &str, id: InstanceId) -> Vec<u8> {
    let mut k = status_prefix(process, status);
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

/// The case of an `s/` key.
pub fn status_case(key: &[u8]) -> Option<InstanceId> {
    Some(InstanceId(u64_at(key, key.len().checked_sub(8)?)?))
}

pub fn sub_case(parent: InstanceId, child: InstanceId) -> Vec<u8> {
    Prefix::SubCase.key(&[&parent.0.to_be_bytes(), &child.0.to_be_bytes()])
}

/// Every sub-process case `parent` started.
pub fn sub_cases_of(parent: InstanceId) -> Vec<u8> {
    Prefix::SubCase.key(&[&parent.0.to_be_bytes()])
}

/// The child of a `p/` key.
pub fn sub_case_child(key: &[u8]) -> Option<InstanceId> {
    let body = Prefix::SubCase.body(key).filter(|b| b.len() == 16)?;
    Some(InstanceId(u64_at(body, 8)?))
}

// ------------------------------------------------------------ k/, q/, x/: keys and requests

pub fn business_key(text: &str) -> Vec<u8> {
    Prefix::BusinessKey.key(&[text.as_bytes()])
}

/// The counter of business keys that share `key_prefix` (the rendered text before `{seq}`).
pub fn sequence(process: &str, key_prefix: &str) -> Vec<u8> {
    Prefix::Sequence.key(&[process.as_bytes(), b"\0", key_prefix.as_bytes()])
}

/// An idempotency key as one caller gave it (`scoped` is `caller\0key`).
pub fn idempotency(scoped: &str) -> Vec<u8> {
    Prefix::Idempotency.key(&[scoped.as_bytes()])
}

/// An idempotency key's value: the case it started and the SHA-256 of the request.
pub fn idempotency_value(id: InstanceId, request: &[u8; 32]) -> Vec<u8> {
    [&id.0.to_be_bytes()[..], request].concat()
}

/// The case and request digest of an idempotency value (a start that crashed between taking
/// its key and writing its case may have left the id alone). `None`: not such a value.
pub fn idempotency_of(value: &[u8]) -> Option<(InstanceId, Option<[u8; 32]>)> {
    let id = InstanceId(u64_at(value, 0)?);
    match value.len() {
        8 => Some((id, None)),
        40 => Some((id, Some(value[8..].try_into().ok()?))),
        _ => None,
    }
}

// ------------------------------------------------------------ y/, f/: tallies and familiarity

/// The cases a tally counted under these keys, one entry each (`tally_entry`), so counting
/// reads one prefix and no case.
pub fn tally_prefix(process: &str, name: &str, keys: &[String]) -> Vec<u8> {
    let mut k = Prefix::Tally.key(&[process.as_bytes(), b"\0", name.as_bytes()]);
    for key in keys {
        k.push(0);
        k.extend_from_slice(key.as_bytes());
    }
    k.push(0);
    k
}

pub fn tally_entry(process: &str, name: &str, keys: &[String], id: InstanceId) -> Vec<u8> {
    let mut k = tally_prefix(process, name, keys);
    k.extend_from_slice(&id.0.to_be_bytes());
    k
}

/// Who last completed `step` in a case of `process` whose `field` held `value`.
pub fn familiar(process: &str, field: &str, value: &str, step: &str) -> Vec<u8> {
    Prefix::Familiar.key(&[
        process.as_bytes(),
        b"\0",
        field.as_bytes(),
        b"\0",
        value.as_bytes(),
        b"\0",
        step.as_bytes(),
    ])
}

// ------------------------------------------------------------ o/: outbox

/// Outbox events are sequenced inserts (`Batch::insert_sequenced`): the batch's sequence
/// number and the event's index in it follow the prefix.
pub const OUTBOX: &[u8] = Prefix::Outbox.bytes();

/// The sequence number of the batch that wrote an `o/` key.
pub fn outbox_batch(key: &[u8]) -> Option<u64> {
    u64_at(Prefix::Outbox.body(key)?, 0)
}

// ------------------------------------------------------------ a/, e/: people's sign-in

/// A person's password record.
pub fn account(user: &str) -> Vec<u8> {
    Prefix::Account.key(&[user.as_bytes()])
}

/// A session, by the digest of its token (the token itself is never stored).
pub fn session(token_digest: &[u8; 32]) -> Vec<u8> {
    Prefix::Session.key(&[token_digest])
}

pub const SESSIONS: &[u8] = Prefix::Session.bytes();

/// The token digest of an `e/` key.
pub fn session_digest(key: &[u8]) -> Option<[u8; 32]> {
    Prefix::Session.body(key)?.try_into().ok()
}

/// A saved view of `owner` (`user:ID` or `role:ROLE`).
pub fn saved_view(owner: &str, name: &str) -> Vec<u8> {
    Prefix::SavedView.key(&[owner.as_bytes(), b"\0", name.as_bytes()])
}

/// The views of `owner`.
pub fn saved_views_of(owner: &str) -> Vec<u8> {
    Prefix::SavedView.key(&[owner.as_bytes(), b"\0"])
}

/// The owner and name of a `v/` key.
pub fn saved_view_of(key: &[u8]) -> Option<(String, String)> {
    let body = std::str::from_utf8(Prefix::SavedView.body(key)?).ok()?;
    let (owner, name) = body.split_once('\0')?;
    Some((owner.to_string(), name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_distinct_two_bytes_and_none_is_a_prefix_of_another_key_kind() {
        let all: std::collections::BTreeSet<_> = Prefix::ALL.iter().map(|p| p.bytes()).collect();
        assert_eq!(all.len(), Prefix::ALL.len());
        assert!(all.iter().all(|p| p.len() == 2 && p[1] == b'/'));
    }

    #[test]
    fn due_times_sort_by_bytes() {
        let a = DateTime::from_timestamp_millis(-5).unwrap();
        let b = DateTime::from_timestamp_millis(0).unwrap();
        let c = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        assert!(due_bytes(a) < due_bytes(b) && due_bytes(b) < due_bytes(c));
        assert_eq!(due_from_bytes(&due_bytes(c)), Some(c));
    }

    #[test]
    fn timers_are_indexed_no_earlier_than_due_and_read_back() {
        let due = DateTime::from_timestamp_micros(1_800_000_000_000_001).unwrap();
        let k = timer(due, InstanceId(7), 3);
        assert_eq!(timer_of(&k), Some((DateTime::from_timestamp_millis(1_800_000_000_001).unwrap(), InstanceId(7), 3)));
        assert!(k >= timers_due_by(DateTime::from_timestamp_millis(1_800_000_000_000).unwrap()), "not due a µs early");
        assert!(k < timers_due_by(DateTime::from_timestamp_millis(1_800_000_000_001).unwrap()));
        let whole = DateTime::from_timestamp_millis(1_800_000_000_000).unwrap();
        assert_eq!(timer_of(&timer(whole, InstanceId(1), 0)).map(|t| t.0), Some(whole));
    }

    #[test]
    fn inboxes_sort_by_deadline_then_case_and_tasks_without_one_come_last() {
        let soon = DateTime::from_timestamp_millis(1_800_000_000_000);
        let later = DateTime::from_timestamp_millis(1_800_000_000_001);
        let inbox = Inbox::User("a");
        assert!(inbox.entry(soon, InstanceId(9), 1) < inbox.entry(later, InstanceId(1), 1));
        assert!(inbox.entry(later, InstanceId(9), 1) < inbox.entry(None, InstanceId(1), 1));
        let e = inbox.entry(None, InstanceId(1), 1);
        assert!(e > inbox.prefix() && e < inbox.end());
        assert!(inbox.after(inbox_place(&e).unwrap()) > e);
        assert_eq!(inbox_user(&e).as_deref(), Some("a"));
        let role = Inbox::Role("r").entry(soon, InstanceId(2), 5);
        assert_eq!(user_entry_for(&role, b"a"), Some(inbox.entry(soon, InstanceId(2), 5)));
    }

    #[test]
    fn keys_read_back() {
        assert_eq!(definition_of(&definition("complaint", 3)), Some(("complaint".into(), 3)));
        assert_eq!(definition_of(b"d/complaint"), None);
        assert_eq!(status_case(&status("p", "running", InstanceId(42))), Some(InstanceId(42)));
        assert_eq!(sub_case_child(&sub_case(InstanceId(1), InstanceId(2))), Some(InstanceId(2)));
        assert_eq!(round_robin_role(&round_robin("cs_rep")).as_deref(), Some("cs_rep"));
        let mut o = OUTBOX.to_vec();
        o.extend_from_slice(&7u64.to_be_bytes());
        o.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(outbox_batch(&o), Some(7));
        assert_eq!(session_digest(&session(&[3; 32])), Some([3; 32]));
        assert_eq!(session_digest(b"e/short"), None);
        assert_eq!(saved_view_of(&saved_view("role:cs_rep", "今天")), Some(("role:cs_rep".into(), "今天".into())));
        assert!(saved_view("user:a", "x").starts_with(&saved_views_of("user:a")));
        assert!(!saved_view("user:ab", "x").starts_with(&saved_views_of("user:a")));
        let v = idempotency_value(InstanceId(5), &[9; 32]);
        assert_eq!(idempotency_of(&v), Some((InstanceId(5), Some([9; 32]))));
        assert_eq!(idempotency_of(&5u64.to_be_bytes()), Some((InstanceId(5), None)));
        assert_eq!(idempotency_of(&v[..20]), None);
        assert!(tally_entry("p", "t", &["a".into()], InstanceId(1)).starts_with(&tally_prefix(
            "p",
            "t",
            &["a".into()]
        )));
        assert!(!tally_prefix("p", "t", &["ab".into()]).starts_with(&tally_prefix("p", "t", &["a".into()])));
    }
}
