//! Scans over the memtable and sled together, read in chunks.

use super::Store;
use crate::storage::StoreError;
use std::ops::Bound;

/// Entries a scan reads from sled at a time: the first chunk is small (most scans want a page
/// or one entry), later ones grow.
const SCAN_FIRST_CHUNK: usize = 16;
const SCAN_MAX_CHUNK: usize = 1024;

/// A scan that reads the memtable and sled in chunks, holding no sled iterator between them: a
/// caller may write while it scans (the scan goes on after the last key it returned). Like
/// sled's own iterators it is not a snapshot: writes made meanwhile may or may not be seen.
pub struct Scan<'a> {
    store: &'a Store,
    /// The next chunk starts at this key (inclusive).
    from: Vec<u8>,
    /// The end (exclusive); `None`: the end of the keyspace.
    to: Option<Vec<u8>>,
    chunk: usize,
    buffered: std::collections::VecDeque<(sled::IVec, sled::IVec)>,
    done: bool,
}

impl<'a> Scan<'a> {
    pub(super) fn new(store: &'a Store, from: Vec<u8>, to: Option<Vec<u8>>) -> Scan<'a> {
        Scan { store, from, to, chunk: SCAN_FIRST_CHUNK, buffered: Default::default(), done: false }
    }

    /// Reads the next chunk: the memtable's writes in it over sled's entries. Either side may
    /// come back cut at `chunk` entries; the chunk then ends at the smaller cut, and the next
    /// starts after it.
    fn refill(&mut self) -> Result<(), StoreError> {
        while self.buffered.is_empty() && !self.done {
            let (from, to, chunk) = (&self.from, self.to.as_deref(), self.chunk);
            if to.is_some_and(|to| to <= from.as_slice()) {
                self.done = true;
                break;
            }
            // The memtable before sled: a key leaves it only once sled holds its value.
            let (held, held_cut) = self.store.upkeep.memtable.range(from, to, chunk);
            let upper = match (&held_cut, to) {
                (Some(cut), Some(to)) if cut.as_slice() >= to => Bound::Excluded(to),
                (Some(cut), _) => Bound::Included(cut.as_slice()),
                (None, Some(to)) => Bound::Excluded(to),
                (None, None) => Bound::Unbounded,
            };
            let stored = self
                .store
                .handles
                .tree
                .range::<&[u8], _>((Bound::Included(from.as_slice()), upper))
                .take(chunk)
                .collect::<Result<Vec<_>, _>>()?;
            let stored_cut = (stored.len() == chunk).then(|| stored.last().map(|(k, _)| k.to_vec())).flatten();
            let cut = match (held_cut, stored_cut) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let mut merged: std::collections::BTreeMap<Vec<u8>, Option<sled::IVec>> =
                stored.into_iter().map(|(k, v)| (k.to_vec(), Some(v))).collect();
            merged.extend(held);
            let within = |k: &Vec<u8>| cut.as_ref().is_none_or(|c| k <= c);
            self.buffered.extend(
                merged.into_iter().filter(|(k, _)| within(k)).filter_map(|(k, v)| Some((sled::IVec::from(k), v?))),
            );
            match cut {
                Some(mut after) => {
                    // The smallest key after the cut.
                    after.push(0);
                    self.from = after;
                }
                None => self.done = true,
            }
            self.chunk = (chunk * 4).min(SCAN_MAX_CHUNK);
        }
        Ok(())
    }
}

impl Iterator for Scan<'_> {
    type Item = Result<(crate::storage::Bytes, crate::storage::Bytes), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buffered.is_empty() && !self.done {
            if let Err(e) = self.refill() {
                self.done = true;
                return Some(Err(e));
            }
        }
        // sled's buffers, held as they are (no copy).
        self.buffered
            .pop_front()
            .map(|(k, v)| Ok((crate::storage::Bytes::from_owner(k), crate::storage::Bytes::from_owner(v))))
    }
}
