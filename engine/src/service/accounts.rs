//! People's records for the console: password hashes, sessions and saved inbox views, in the store, so
//! that they survive restarts (and several nodes will share them). The engine keeps them and
//! never sees a password or a session token: the server hashes passwords (argon2id) and keys
//! sessions by the SHA-256 of their token. Functions over a `Storage`, not the `Engine`, so
//! that `caseflow user password` can set a password on a stopped data directory without
//! loading rules or processes.

use crate::storage::{keys, Batch, Storage};
use crate::EngineError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A person's password, as the server hashed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PasswordRecord {
    /// The PHC string (`$argon2id$v=19$m=…`): algorithm, parameters, salt and hash together,
    /// so stronger parameters later still verify old hashes.
    pub phc: String,
    pub set_at: DateTime<Utc>,
    /// Who set it: the person, an administrator, or `cli:USER` for `caseflow user password`.
    pub set_by: String,
}

/// A signed-in person's session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user: String,
    pub created_at: DateTime<Utc>,
    /// Updated at most once a minute: the idle timeout is counted from here.
    pub last_seen_at: DateTime<Utc>,
    /// The token every state-changing form carries (compared in constant time).
    pub csrf: String,
    /// Where the sign-in came from, for the person's list of sessions.
    pub address: Option<String>,
    pub user_agent: Option<String>,
}

impl SessionRecord {
    /// Whether the session is past its idle or its absolute lifetime at `now`.
    pub fn expired(&self, now: DateTime<Utc>, idle: chrono::Duration, absolute: chrono::Duration) -> bool {
        now - self.last_seen_at >= idle || now - self.created_at >= absolute
    }
}

fn corrupt(key: &[u8], e: serde_json::Error) -> EngineError {
    super::corrupt(&String::from_utf8_lossy(key), &e.to_string())
}

pub fn password<S: Storage>(store: &S, user: &str) -> Result<Option<PasswordRecord>, EngineError> {
    let key = keys::account(user);
    store.get(&key)?.map(|v| serde_json::from_slice(&v).map_err(|e| corrupt(&key, e))).transpose()
}

/// Sets `user`'s password and ends their sessions (all of them, or all but `keep`: a person
/// who changes their own stays signed in where they did it), in one durable write.
pub fn set_password<S: Storage>(
    store: &S,
    user: &str,
    record: &PasswordRecord,
    keep: Option<&[u8; 32]>,
) -> Result<(), EngineError> {
    let mut batch = Batch::default();
    batch.insert(keys::account(user), serde_json::to_vec(record).expect("a record serialises"));
    for (digest, s) in sessions(store)? {
        if s.user == user && Some(&digest) != keep {
            batch.remove(keys::session(&digest));
        }
    }
    Ok(store.write_now(batch)?)
}

pub fn session<S: Storage>(store: &S, digest: &[u8; 32]) -> Result<Option<SessionRecord>, EngineError> {
    let key = keys::session(digest);
    store.get(&key)?.map(|v| serde_json::from_slice(&v).map_err(|e| corrupt(&key, e))).transpose()
}

/// Stores a session (new, or seen again), durably.
pub fn put_session<S: Storage>(store: &S, digest: &[u8; 32], record: &SessionRecord) -> Result<(), EngineError> {
    let mut batch = Batch::default();
    batch.insert(keys::session(digest), serde_json::to_vec(record).expect("a record serialises"));
    Ok(store.write_now(batch)?)
}

/// Ends sessions, durably: after this their cookies sign no one in.
pub fn end_sessions<S: Storage>(store: &S, digests: &[[u8; 32]]) -> Result<(), EngineError> {
    if digests.is_empty() {
        return Ok(());
    }
    let mut batch = Batch::default();
    for d in digests {
        batch.remove(keys::session(d));
    }
    Ok(store.write_now(batch)?)
}

/// Every stored session with its token digest. Sessions are few (people × devices): a scan.
pub fn sessions<S: Storage>(store: &S) -> Result<Vec<([u8; 32], SessionRecord)>, EngineError> {
    let mut out = Vec::new();
    for item in store.scan_prefix(keys::SESSIONS) {
        let (k, v) = item?;
        let digest = keys::session_digest(&k).ok_or_else(|| super::corrupt(&String::from_utf8_lossy(&k), "bad key"))?;
        out.push((digest, serde_json::from_slice(&v).map_err(|e| corrupt(&k, e))?));
    }
    Ok(out)
}

/// An inbox view a person saved: a named filter, for themselves or shared with a role.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedView {
    /// `user:ID` (personal) or `role:ROLE` (everyone holding the role sees it).
    pub owner: String,
    pub name: String,
    /// The inbox's query string (`scope=mine&overdue=true`), as the inbox reads it.
    pub query: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
}

/// The views `owners` own (a person and their roles), by owner then name.
pub fn saved_views<S: Storage>(store: &S, owners: &[String]) -> Result<Vec<SavedView>, EngineError> {
    let mut out = Vec::new();
    for owner in owners {
        for item in store.scan_prefix(&keys::saved_views_of(owner)) {
            let (k, v) = item?;
            out.push(serde_json::from_slice(&v).map_err(|e| corrupt(&k, e))?);
        }
    }
    Ok(out)
}

/// Saves a view, replacing one of the same owner and name.
pub fn save_view<S: Storage>(store: &S, view: &SavedView) -> Result<(), EngineError> {
    let mut batch = Batch::default();
    batch.insert(keys::saved_view(&view.owner, &view.name), serde_json::to_vec(view).expect("a view serialises"));
    Ok(store.write_now(batch)?)
}

pub fn delete_view<S: Storage>(store: &S, owner: &str, name: &str) -> Result<(), EngineError> {
    let mut batch = Batch::default();
    batch.remove(keys::saved_view(owner, name));
    Ok(store.write_now(batch)?)
}
