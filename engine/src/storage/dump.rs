//! A whole store as one stream of bytes, to move it between implementations (`caseflow export`
//! from sled, `caseflow import` into PostgreSQL, and back) and to keep a copy of it.
//!
//! The stream is `caseflow-dump 1\n`, then one record per entry in key order (`1`, the key's
//! length as u32 BE, the key, the value's length, the value), then the end (`0`, the number of
//! entries as u64 BE, and the SHA-256 of every record before it). An entry's bytes are copied as
//! they are stored: sensitive fields stay sealed, so the store that takes them in needs the same
//! field key.
//!
//! Taking a dump in (`load`) refuses a store that holds anything and a stream that is cut or
//! altered, and checks what it wrote by reading it back: the number of entries, and one
//! checksum per case (its record and its history) against those of the stream. Outbox entries
//! (`o/`) are keyed by the writing store's batch sequence; they are written again in order under
//! the new store's own, so that what it adds later sorts after them.

use crate::storage::keys::{self, Prefix};
use crate::storage::{Batch, Bytes, Storage, StoreError};
use caseflow_core::case::InstanceId;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};

const MAGIC: &[u8] = b"caseflow-dump 1\n";

/// Bytes of entries a load writes per batch.
const CHUNK_BYTES: usize = 4 << 20;

/// What a dump held, or what a load took in.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Summary {
    pub entries: u64,
    /// Per case: the SHA-256 of its record and its history entries (keys and values).
    pub cases: BTreeMap<InstanceId, [u8; 32]>,
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the dump: {0}")]
    Io(#[from] std::io::Error),
    #[error("this is not a caseflow dump (it does not begin with `caseflow-dump 1`)")]
    NotADump,
    #[error("the dump is cut short or damaged: {0}; nothing of it was written")]
    Damaged(String),
    #[error("the store already holds entries (the first is `{0}`); a dump goes into an empty store")]
    NotEmpty(String),
    #[error("read back after writing, {0}")]
    Mismatch(String),
}

/// Per-case checksums, fed entry by entry in key order.
#[derive(Default)]
struct CaseDigests {
    cases: BTreeMap<InstanceId, Sha256>,
}

impl CaseDigests {
    fn add(&mut self, key: &[u8], value: &[u8]) {
        let id = keys::instance_of(key).or_else(|| keys::history_case(key));
        if let Some(id) = id {
            let h = self.cases.entry(id).or_default();
            h.update((key.len() as u32).to_be_bytes());
            h.update(key);
            h.update((value.len() as u32).to_be_bytes());
            h.update(value);
        }
    }

    fn finish(self) -> BTreeMap<InstanceId, [u8; 32]> {
        self.cases.into_iter().map(|(id, h)| (id, h.finalize().into())).collect()
    }
}

/// Writes every entry of `store` to `out`. The store is read as it is: take it from a store no
/// process is writing (a stopped server), or the dump may mix moments (`Store::backup` takes a
/// consistent one from a running sled store).
pub fn dump<S: Storage>(store: &S, out: &mut dyn Write) -> Result<Summary, DumpError> {
    write_entries(
        store.scan_prefix(b"").map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(DumpError::from)),
        out,
    )
}

/// Writes a dump of `entries` (in key order).
fn write_entries(
    entries: impl Iterator<Item = Result<Entry, DumpError>>,
    out: &mut dyn Write,
) -> Result<Summary, DumpError> {
    out.write_all(MAGIC)?;
    let mut all = Sha256::new();
    let mut digests = CaseDigests::default();
    let mut count = 0u64;
    for item in entries {
        let (k, v) = item?;
        if !keys::copied(&k) {
            continue;
        }
        let mut record = Vec::with_capacity(9 + k.len() + v.len());
        record.push(1);
        record.extend_from_slice(&(k.len() as u32).to_be_bytes());
        record.extend_from_slice(&k);
        record.extend_from_slice(&(v.len() as u32).to_be_bytes());
        record.extend_from_slice(&v);
        all.update(&record);
        out.write_all(&record)?;
        digests.add(&k, &v);
        count += 1;
    }
    out.write_all(&[0])?;
    out.write_all(&count.to_be_bytes())?;
    out.write_all(&all.finalize())?;
    out.flush()?;
    Ok(Summary { entries: count, cases: digests.finish() })
}

/// Writes the dump `scanned` with `overrides` laid over it (a key's last value, `None` for
/// removed), in key order.
pub fn merge(
    scanned: Box<dyn Read>,
    overrides: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    out: &mut dyn Write,
) -> Result<Summary, DumpError> {
    let mut records = Records::open(scanned)?;
    let mut scanned = std::iter::from_fn(move || records.next_entry().transpose()).peekable();
    let mut overrides = overrides.into_iter().peekable();
    let merged = std::iter::from_fn(move || loop {
        let next_scanned = match scanned.peek() {
            Some(Ok((k, _))) => Some(k.clone()),
            Some(Err(_)) => return scanned.next(),
            None => None,
        };
        let take_override = match (&next_scanned, overrides.peek()) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(s), Some((o, _))) => o <= s,
        };
        if take_override {
            let (k, v) = overrides.next().expect("peeked");
            if next_scanned.as_ref() == Some(&k) {
                scanned.next();
            }
            match v {
                Some(v) => return Some(Ok((k, v))),
                None => continue,
            }
        }
        return scanned.next();
    });
    write_entries(merged, out)
}

/// A key and its value.
type Entry = (Vec<u8>, Vec<u8>);

/// A dump's entries, read one at a time; the last item checks its end (count, checksum).
struct Records {
    input: std::io::BufReader<Box<dyn Read>>,
    all: Sha256,
    read: u64,
    last: Option<Vec<u8>>,
    done: bool,
}

impl Records {
    fn open(mut input: Box<dyn Read>) -> Result<Records, DumpError> {
        let mut magic = [0u8; MAGIC.len()];
        input.read_exact(&mut magic).map_err(|_| DumpError::NotADump)?;
        if magic != MAGIC {
            return Err(DumpError::NotADump);
        }
        Ok(Records { input: std::io::BufReader::new(input), all: Sha256::new(), read: 0, last: None, done: false })
    }

    fn take(&mut self, n: usize) -> Result<Vec<u8>, DumpError> {
        let mut buf = vec![0u8; n];
        self.input.read_exact(&mut buf).map_err(|_| damaged("it ends inside an entry"))?;
        Ok(buf)
    }

    fn take_u32(&mut self) -> Result<[u8; 4], DumpError> {
        let mut buf = [0u8; 4];
        self.input.read_exact(&mut buf).map_err(|_| damaged("it ends inside an entry"))?;
        Ok(buf)
    }

    /// The next entry, `None` at a sound end.
    fn next_entry(&mut self) -> Result<Option<Entry>, DumpError> {
        if self.done {
            return Ok(None);
        }
        match self.take(1)?[0] {
            1 => {
                let klen = self.take_u32()?;
                let key = self.take(u32::from_be_bytes(klen) as usize)?;
                let vlen = self.take_u32()?;
                let value = self.take(u32::from_be_bytes(vlen) as usize)?;
                for part in [&[1u8][..], &klen, &key, &vlen, &value] {
                    self.all.update(part);
                }
                if self.last.as_ref().is_some_and(|last| *last >= key) {
                    return Err(damaged("its entries are out of key order"));
                }
                self.last = Some(key.clone());
                self.read += 1;
                Ok(Some((key, value)))
            }
            0 => {
                self.done = true;
                let count = self.take(8)?;
                let sum = self.take(32)?;
                if count[..] != self.read.to_be_bytes() {
                    return Err(damaged("its count of entries does not match them"));
                }
                if sum[..] != std::mem::take(&mut self.all).finalize()[..] {
                    return Err(damaged("its checksum does not match its entries"));
                }
                let mut rest = [0u8; 1];
                if self.input.read(&mut rest)? != 0 {
                    return Err(damaged("there are bytes after its end"));
                }
                Ok(None)
            }
            _ => Err(damaged("an entry has an unknown tag")),
        }
    }
}

fn damaged(what: &str) -> DumpError {
    DumpError::Damaged(what.to_string())
}

/// Writes a dump into an empty store, then reads the store back and checks it holds what the
/// dump held (count, and each case's checksum). `open` gives the dump from its start: it is
/// read twice, first to check it whole (nothing is written from a damaged dump), then to
/// write it a chunk at a time (a store of any size is taken in with little memory).
pub fn load<S: Storage>(store: &S, open: &dyn Fn() -> std::io::Result<Box<dyn Read>>) -> Result<Summary, DumpError> {
    let mut expected = CaseDigests::default();
    let mut checked = Records::open(open()?)?;
    while let Some((k, v)) = checked.next_entry()? {
        expected.add(&k, &v);
    }
    let expected = Summary { entries: checked.read, cases: expected.finish() };
    if let Some(first) = store.scan_prefix(b"").next() {
        let (k, _) = first?;
        return Err(DumpError::NotEmpty(String::from_utf8_lossy(&k).into_owned()));
    }
    let mut records = Records::open(open()?)?;
    let mut batch = Batch::default();
    let mut bytes = 0;
    let mut last = None;
    while let Some((k, v)) = records.next_entry()? {
        bytes += k.len() + v.len();
        if keys::outbox_batch(&k).is_some() {
            batch.insert_sequenced(Prefix::Outbox.bytes().to_vec(), v);
        } else {
            batch.insert(k, v);
        }
        if bytes >= CHUNK_BYTES {
            last = Some(store.write(std::mem::take(&mut batch))?);
            bytes = 0;
        }
    }
    if !batch.is_empty() {
        last = Some(store.write(batch)?);
    }
    if let Some(ticket) = last {
        store.wait_durable(ticket)?;
    }
    store.flush()?;
    let found = summary(store)?;
    if found.entries != expected.entries {
        return Err(DumpError::Mismatch(format!(
            "the store holds {} entries where the dump has {}",
            found.entries, expected.entries
        )));
    }
    if let Some(id) = expected.cases.iter().find(|(id, sum)| found.cases.get(id) != Some(sum)).map(|(id, _)| id) {
        return Err(DumpError::Mismatch(format!("case {id} differs from the dump")));
    }
    Ok(found)
}

/// The store's count of entries and checksum per case, as `dump` reports them.
pub fn summary<S: Storage>(store: &S) -> Result<Summary, DumpError> {
    let mut digests = CaseDigests::default();
    let mut entries = 0;
    for item in store.scan_prefix(b"") {
        let (k, v): (Bytes, Bytes) = item?;
        if !keys::copied(&k) {
            continue;
        }
        digests.add(&k, &v);
        entries += 1;
    }
    Ok(Summary { entries, cases: digests.finish() })
}
