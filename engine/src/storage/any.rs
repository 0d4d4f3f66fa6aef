//! The storage a server runs on, chosen when it starts: sled behind our log (the embedded
//! default), PostgreSQL (several nodes on one database) or a map in memory (tests, scenario
//! runs). The server, the CLI and the timers hold an `Engine<AnyStorage>` and never name an
//! implementation; what only one implementation has (sled's checkpoints and log figures for
//! `/metrics`) is asked for with `sled()`.

use crate::storage::memory::MemoryStore;
use crate::storage::postgres::PgStore;
use crate::storage::{Batch, Bytes, Claim, Listener, Storage, StoreError, Ticket};
use crate::store::Store;

// One per engine, which lives in an `Arc`: boxing the large variant would add an indirection to
// every read for no saving.
#[allow(clippy::large_enum_variant)]
pub enum AnyStorage {
    Sled(Store),
    Postgres(PgStore),
    Memory(MemoryStore),
}

impl AnyStorage {
    /// The sled store, when this is one (for what only it has: checkpoints, log figures).
    pub fn sled(&self) -> Option<&Store> {
        match self {
            AnyStorage::Sled(s) => Some(s),
            AnyStorage::Postgres(_) | AnyStorage::Memory(_) => None,
        }
    }

    /// The PostgreSQL store, when this is one (for its figures: round trips, commits).
    pub fn postgres(&self) -> Option<&PgStore> {
        match self {
            AnyStorage::Postgres(p) => Some(p),
            AnyStorage::Sled(_) | AnyStorage::Memory(_) => None,
        }
    }

    /// The implementation's name, for `/health` and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyStorage::Sled(_) => "sled",
            AnyStorage::Postgres(_) => "postgres",
            AnyStorage::Memory(_) => "memory",
        }
    }
}

impl From<Store> for AnyStorage {
    fn from(s: Store) -> AnyStorage {
        AnyStorage::Sled(s)
    }
}

impl From<PgStore> for AnyStorage {
    fn from(p: PgStore) -> AnyStorage {
        AnyStorage::Postgres(p)
    }
}

impl From<MemoryStore> for AnyStorage {
    fn from(m: MemoryStore) -> AnyStorage {
        AnyStorage::Memory(m)
    }
}

pub enum AnyScan<'a> {
    Sled(<Store as Storage>::Scan<'a>),
    Postgres(<PgStore as Storage>::Scan<'a>),
    Memory(<MemoryStore as Storage>::Scan<'a>),
}

impl Iterator for AnyScan<'_> {
    type Item = Result<(Bytes, Bytes), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            AnyScan::Sled(s) => s.next(),
            AnyScan::Postgres(p) => p.next(),
            AnyScan::Memory(m) => m.next(),
        }
    }
}

/// Each call goes to the implementation, as it is.
macro_rules! each {
    ($self:ident, $s:ident => $call:expr) => {
        match $self {
            AnyStorage::Sled($s) => $call,
            AnyStorage::Postgres($s) => $call,
            AnyStorage::Memory($s) => $call,
        }
    };
}

impl Storage for AnyStorage {
    type Scan<'a> = AnyScan<'a>;

    fn write(&self, batch: Batch) -> Result<Ticket, StoreError> {
        each!(self, s => s.write(batch))
    }

    fn wait_durable(&self, ticket: Ticket) -> Result<(), StoreError> {
        each!(self, s => s.wait_durable(ticket))
    }

    fn when_durable(&self, ticket: Ticket, done: Box<dyn FnOnce(Result<(), StoreError>) + Send>) {
        each!(self, s => s.when_durable(ticket, done))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        each!(self, s => s.get(key))
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, StoreError> {
        each!(self, s => s.get_many(keys))
    }

    fn scan_prefix(&self, prefix: &[u8]) -> AnyScan<'_> {
        match self {
            AnyStorage::Sled(s) => AnyScan::Sled(s.scan_prefix(prefix)),
            AnyStorage::Postgres(p) => AnyScan::Postgres(p.scan_prefix(prefix)),
            AnyStorage::Memory(m) => AnyScan::Memory(m.scan_prefix(prefix)),
        }
    }

    fn range(&self, from: &[u8], to: &[u8]) -> AnyScan<'_> {
        match self {
            AnyStorage::Sled(s) => AnyScan::Sled(s.range(from, to)),
            AnyStorage::Postgres(p) => AnyScan::Postgres(p.range(from, to)),
            AnyStorage::Memory(m) => AnyScan::Memory(m.range(from, to)),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        each!(self, s => s.flush())
    }

    fn check_health(&self) -> Option<String> {
        each!(self, s => s.check_health())
    }

    fn shared(&self) -> bool {
        each!(self, s => s.shared())
    }

    fn take_number(&self, key: &[u8]) -> Result<u64, StoreError> {
        each!(self, s => s.take_number(key))
    }

    fn listen(&self, hear: Listener) -> Result<(), StoreError> {
        each!(self, s => s.listen(hear))
    }

    fn claim(&self, from: &[u8], to: &[u8], limit: usize, lease: std::time::Duration) -> Result<Claim, StoreError> {
        each!(self, s => s.claim(from, to, limit, lease))
    }

    fn renew(&self, claim: &Claim, lease: std::time::Duration) -> Result<usize, StoreError> {
        each!(self, s => s.renew(claim, lease))
    }

    fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        each!(self, s => s.release(claim))
    }

    fn keeps_documents(&self) -> bool {
        each!(self, s => s.keeps_documents())
    }

    fn find_documented(
        &self,
        from: &[u8],
        to: &[u8],
        containing: &str,
        limit: usize,
    ) -> Result<Vec<Bytes>, StoreError> {
        each!(self, s => s.find_documented(from, to, containing, limit))
    }

    fn undocumented(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        each!(self, s => s.undocumented(from, to, limit))
    }
}
