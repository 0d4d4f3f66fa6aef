//! Storage in PostgreSQL, for several caseflow nodes on one database (`database_url`).
//!
//! The engine's keys and values go into one table ordered by key (`bytea` compares bytewise, as
//! sled does), so every index the engine keeps works unchanged. What makes several nodes safe
//! is not the table but the seam: every write is one transaction, applied only if the keys it
//! expects still hold what was read (`Batch::expect`):
//! - keys expected to hold a value are locked (`FOR UPDATE`) and compared in the transaction;
//! - keys expected absent are inserted without `ON CONFLICT`, so the database's unique index
//!   refuses the second of two writers (it waits for the first to commit, then fails);
//! - either failure rolls back everything and answers `StoreError::Conflict`.
//!
//! A write is one statement, `caseflow_write` (a function the schema's version 5 creates), and
//! so one round trip and one transaction of its own: it locks and compares what the batch
//! expects, checks its claims, then deletes, upserts, inserts, adds to counters and appends its
//! announcements to the change feed (`caseflow_feed`, which every node reads: `listen`).
//! A write is durable when it returns, as far as the database's `synchronous_commit` makes a
//! commit durable: tickets are only for order.
//!
//! The trait is synchronous (the engine runs on blocking threads); the store drives its
//! connections on a small runtime of its own and waits on a channel, so it may be called from
//! any thread without entering that runtime.

use crate::storage::{Batch, Bytes, Claim, Listener, Storage, StoreError, Ticket, BATCH_BYTES_MAX};
use crate::sync::Unpoisoned;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio_postgres::error::SqlState;

/// The schema, by version: each is applied once, in order, in one transaction under an advisory
/// lock, so nodes starting at once do not race. Versions are never edited, only added.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "CREATE TABLE caseflow_entries (key bytea PRIMARY KEY, value bytea NOT NULL);
         CREATE SEQUENCE caseflow_batches;",
    ),
    // Claims (`Storage::claim`) live on the row they hold: deleted with it, free when NULL or
    // when the lease ended. Columns added NULL cost no rewrite of the table.
    (
        2,
        "ALTER TABLE caseflow_entries ADD COLUMN claim_token bigint, ADD COLUMN claim_until timestamptz;
         CREATE SEQUENCE caseflow_claims;",
    ),
    // A batch applied by one statement, its own transaction (`write_batch`): the keys it expects
    // locked in key order and compared, its claims checked, then its writes and announcements.
    // A condition that fails raises CF001, a lost claim CF002, each with the key in hex. Each
    // key is compared by a lookup of its own (a correlated subquery): a join could be planned,
    // once per session and while the table is small, as a scan of the whole table.
    (
        3,
        "CREATE FUNCTION caseflow_apply(
           lock_keys bytea[], lock_values bytea[], claim_keys bytea[], claim_tokens bigint[],
           seq_prefixes bytea[], seq_values bytea[], removes bytea[], up_keys bytea[], up_values bytea[],
           fresh_keys bytea[], fresh_values bytea[], probes bytea[], add_keys bytea[], add_deltas bigint[],
           notes text[]) RETURNS void LANGUAGE plpgsql AS $$
         DECLARE
           bad bytea;
           seq bigint;
         BEGIN
           IF cardinality(lock_keys) > 0 OR cardinality(claim_keys) > 0 THEN
             PERFORM 1 FROM caseflow_entries WHERE key = ANY(lock_keys || claim_keys) ORDER BY key FOR UPDATE;
             SELECT w.k INTO bad FROM unnest(claim_keys, claim_tokens) AS w(k, t)
               WHERE (SELECT e.claim_token FROM caseflow_entries e WHERE e.key = w.k) IS DISTINCT FROM w.t LIMIT 1;
             IF FOUND THEN
               RAISE EXCEPTION USING ERRCODE = 'CF002', MESSAGE = encode(bad, 'hex');
             END IF;
             SELECT w.k INTO bad FROM unnest(lock_keys, lock_values) AS w(k, v)
               WHERE (SELECT e.value FROM caseflow_entries e WHERE e.key = w.k) IS DISTINCT FROM w.v LIMIT 1;
             IF FOUND THEN
               RAISE EXCEPTION USING ERRCODE = 'CF001', MESSAGE = encode(bad, 'hex');
             END IF;
           END IF;
           IF cardinality(removes) > 0 THEN
             DELETE FROM caseflow_entries WHERE key = ANY(removes);
           END IF;
           IF cardinality(up_keys) > 0 THEN
             INSERT INTO caseflow_entries (key, value) SELECT * FROM unnest(up_keys, up_values)
               ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
           END IF;
           IF cardinality(seq_prefixes) > 0 THEN
             seq := nextval('caseflow_batches');
             INSERT INTO caseflow_entries (key, value)
               SELECT p || int8send(seq) || int4send((i - 1)::int), v
               FROM unnest(seq_prefixes, seq_values) WITH ORDINALITY AS s(p, v, i)
               ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
           END IF;
           IF cardinality(fresh_keys) > 0 THEN
             INSERT INTO caseflow_entries (key, value) SELECT * FROM unnest(fresh_keys, fresh_values);
           END IF;
           IF cardinality(probes) > 0 THEN
             DELETE FROM caseflow_entries WHERE key = ANY(probes);
           END IF;
           IF cardinality(add_keys) > 0 THEN
             INSERT INTO caseflow_entries (key, value) SELECT k, int8send(d) FROM unnest(add_keys, add_deltas) AS a(k, d)
               ON CONFLICT (key) DO UPDATE SET value = int8send(('x' || encode(caseflow_entries.value, 'hex'))::bit(64)::bigint
                 + ('x' || encode(EXCLUDED.value, 'hex'))::bit(64)::bigint);
           END IF;
           IF cardinality(notes) > 0 THEN
             PERFORM pg_notify('caseflow', m) FROM unnest(notes) WITH ORDINALITY AS a(m, i) ORDER BY i;
           END IF;
         END $$;",
    ),
    // A counter's next value (`Storage::take_number`) in one statement, its own transaction,
    // committed without waiting for the disk.
    (
        4,
        "CREATE FUNCTION caseflow_next_number(counter bytea) RETURNS bytea LANGUAGE plpgsql AS $$
         DECLARE
           taken bytea;
         BEGIN
           PERFORM set_config('synchronous_commit', 'off', true);
           INSERT INTO caseflow_entries (key, value) VALUES (counter, int8send(1))
             ON CONFLICT (key) DO UPDATE
             SET value = int8send(('x' || encode(caseflow_entries.value, 'hex'))::bit(64)::bigint + 1)
             RETURNING value INTO taken;
           RETURN taken;
         END $$;",
    ),
    // The change feed (`Storage::listen`): a batch's announcements are a row of
    // `caseflow_feed`, under the id of the transaction that wrote it, read by every node in
    // transaction id order once no transaction before it can still commit (`FEED_SQL`). It
    // replaces `NOTIFY`, whose commits PostgreSQL takes one at a time, server-wide, through the
    // WAL flush and a synchronous standby's answer.
    // Search documents (`Storage::keeps_documents`): a case's row (`i/` keys) carries a JSON
    // document of its process, status and fields, found through a GIN index. `caseflow_write`
    // is `caseflow_apply` with the documents of the rows it upserts and inserts; the old
    // function, which nodes not yet upgraded still call, now clears the document of a row it
    // writes, so a stale document is never trusted: a case without one is found through the
    // second, partial index and checked on its value (`find_documented`) until
    // `Engine::document_step` writes it one.
    (
        5,
        r"CREATE TABLE caseflow_feed (
           xid bigint NOT NULL DEFAULT pg_current_xact_id()::text::bigint,
           seq bigint GENERATED ALWAYS AS IDENTITY,
           at timestamptz NOT NULL DEFAULT now(),
           notes text[] NOT NULL,
           PRIMARY KEY (xid, seq));
         CREATE INDEX caseflow_feed_at ON caseflow_feed (at);
         ALTER TABLE caseflow_entries ADD COLUMN doc jsonb;
         CREATE INDEX caseflow_documents ON caseflow_entries USING gin (doc jsonb_path_ops) WHERE doc IS NOT NULL;
         CREATE INDEX caseflow_undocumented ON caseflow_entries (key)
           WHERE doc IS NULL AND key >= '\x692f'::bytea AND key < '\x6930'::bytea;
         CREATE FUNCTION caseflow_write(
           lock_keys bytea[], lock_values bytea[], claim_keys bytea[], claim_tokens bigint[],
           seq_prefixes bytea[], seq_values bytea[], removes bytea[], up_keys bytea[], up_values bytea[],
           fresh_keys bytea[], fresh_values bytea[], probes bytea[], add_keys bytea[], add_deltas bigint[],
           notes text[], up_docs jsonb[], fresh_docs jsonb[]) RETURNS void LANGUAGE plpgsql AS $$
         DECLARE
           bad bytea;
           seq bigint;
         BEGIN
           IF cardinality(lock_keys) > 0 OR cardinality(claim_keys) > 0 THEN
             PERFORM 1 FROM caseflow_entries WHERE key = ANY(lock_keys || claim_keys) ORDER BY key FOR UPDATE;
             SELECT w.k INTO bad FROM unnest(claim_keys, claim_tokens) AS w(k, t)
               WHERE (SELECT e.claim_token FROM caseflow_entries e WHERE e.key = w.k) IS DISTINCT FROM w.t LIMIT 1;
             IF FOUND THEN
               RAISE EXCEPTION USING ERRCODE = 'CF002', MESSAGE = encode(bad, 'hex');
             END IF;
             SELECT w.k INTO bad FROM unnest(lock_keys, lock_values) AS w(k, v)
               WHERE (SELECT e.value FROM caseflow_entries e WHERE e.key = w.k) IS DISTINCT FROM w.v LIMIT 1;
             IF FOUND THEN
               RAISE EXCEPTION USING ERRCODE = 'CF001', MESSAGE = encode(bad, 'hex');
             END IF;
           END IF;
           IF cardinality(removes) > 0 THEN
             DELETE FROM caseflow_entries WHERE key = ANY(removes);
           END IF;
           IF cardinality(up_keys) > 0 THEN
             -- unnest pads the shorter documents array with NULLs.
             INSERT INTO caseflow_entries (key, value, doc)
               SELECT k, v, d FROM unnest(up_keys, up_values, up_docs) AS u(k, v, d) WHERE k IS NOT NULL
               ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, doc = EXCLUDED.doc;
           END IF;
           IF cardinality(seq_prefixes) > 0 THEN
             seq := nextval('caseflow_batches');
             INSERT INTO caseflow_entries (key, value)
               SELECT p || int8send(seq) || int4send((i - 1)::int), v
               FROM unnest(seq_prefixes, seq_values) WITH ORDINALITY AS s(p, v, i)
               ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
           END IF;
           IF cardinality(fresh_keys) > 0 THEN
             INSERT INTO caseflow_entries (key, value, doc)
               SELECT k, v, d FROM unnest(fresh_keys, fresh_values, fresh_docs) AS f(k, v, d) WHERE k IS NOT NULL;
           END IF;
           IF cardinality(probes) > 0 THEN
             DELETE FROM caseflow_entries WHERE key = ANY(probes);
           END IF;
           IF cardinality(add_keys) > 0 THEN
             INSERT INTO caseflow_entries (key, value) SELECT k, int8send(d) FROM unnest(add_keys, add_deltas) AS a(k, d)
               ON CONFLICT (key) DO UPDATE SET value = int8send(('x' || encode(caseflow_entries.value, 'hex'))::bit(64)::bigint
                 + ('x' || encode(EXCLUDED.value, 'hex'))::bit(64)::bigint);
           END IF;
           IF cardinality(notes) > 0 THEN
             INSERT INTO caseflow_feed (notes) VALUES (notes);
           END IF;
         END $$;
         CREATE OR REPLACE FUNCTION caseflow_apply(
           lock_keys bytea[], lock_values bytea[], claim_keys bytea[], claim_tokens bigint[],
           seq_prefixes bytea[], seq_values bytea[], removes bytea[], up_keys bytea[], up_values bytea[],
           fresh_keys bytea[], fresh_values bytea[], probes bytea[], add_keys bytea[], add_deltas bigint[],
           notes text[]) RETURNS void LANGUAGE sql AS $$
           SELECT caseflow_write(lock_keys, lock_values, claim_keys, claim_tokens, seq_prefixes, seq_values,
             removes, up_keys, up_values, fresh_keys, fresh_values, probes, add_keys, add_deltas, notes,
             '{}'::jsonb[], '{}'::jsonb[]);
         $$;",
    ),
];

/// The advisory lock the schema's migrations are applied under (any fixed number).
const MIGRATION_LOCK: i64 = 0x6361_7365_666c_6f77; // "caseflow"

/// How long a call waits for the database before it fails.
const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How often the watchdog looks whether calls are waiting with none answered
/// (`Liveness`), and how long its probe waits for the database's answer.
const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// How often a caller waiting for the database looks whether it was found stalled.
const WAIT_SLICE: std::time::Duration = std::time::Duration::from_millis(100);
const STALLED: &str = "the database is not answering (a probe on a connection of its own got no answer in 2 s)";

/// Rows a scan reads at a time.
const SCAN_PAGE: i64 = 512;

/// How a PostgreSQL store is reached.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// A libpq URL or key=value string; several hosts with `target_session_attrs=read-write`
    /// find the primary after a failover.
    pub url: String,
    /// Connections this node keeps open at most.
    pub pool_size: usize,
    /// With `sslmode=require` in the URL: the PEM file of the certificate authorities whose
    /// server certificates are trusted; `None`: the system's trust store.
    pub ca_file: Option<std::path::PathBuf>,
}

impl PgOptions {
    pub fn new(url: impl Into<String>) -> PgOptions {
        PgOptions { url: url.into(), pool_size: 16, ca_file: None }
    }
}

/// How connections are made: in the clear, or with `sslmode=require` over TLS whose server
/// certificate is verified (its chain to a trusted authority, and the host name it is reached
/// by: libpq's `verify-full`, stricter than libpq's `require`).
#[derive(Clone)]
enum Tls {
    Off,
    On(tokio_postgres_rustls::MakeRustlsConnect),
}

impl Tls {
    fn of(config: &tokio_postgres::Config, options: &PgOptions) -> Result<Tls, StoreError> {
        if config.get_ssl_mode() != tokio_postgres::config::SslMode::Require {
            if let Some(ca) = &options.ca_file {
                return Err(StoreError::Backend(format!(
                    "database_ca_file ({}) is set, but database_url does not ask for TLS: add sslmode=require",
                    ca.display()
                )));
            }
            return Ok(Tls::Off);
        }
        let mut roots = rustls::RootCertStore::empty();
        match &options.ca_file {
            Some(path) => {
                use rustls::pki_types::{pem::PemObject, CertificateDer};
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<_, _>>())
                    .map_err(|e| StoreError::Backend(format!("database_ca_file {}: {e}", path.display())))?;
                if certs.is_empty() {
                    return Err(StoreError::Backend(format!(
                        "database_ca_file {} holds no PEM certificate",
                        path.display()
                    )));
                }
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|e| StoreError::Backend(format!("database_ca_file {}: {e}", path.display())))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
                if roots.is_empty() {
                    return Err(StoreError::Backend(
                        "sslmode=require, and the system has no trusted certificates: set database_ca_file".into(),
                    ));
                }
            }
        }
        // ring, as the HTTPS server (`api/src/listen.rs` says why it is marked deprecated).
        #[allow(deprecated)]
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Backend(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Tls::On(tokio_postgres_rustls::MakeRustlsConnect::new(tls)))
    }

    fn manager(&self, config: tokio_postgres::Config) -> Manager {
        let recycling = || ManagerConfig { recycling_method: RecyclingMethod::Fast };
        match self {
            Tls::Off => Manager::from_config(config, tokio_postgres::NoTls, recycling()),
            Tls::On(tls) => Manager::from_config(config, tls.clone(), recycling()),
        }
    }
}

pub struct PgStore {
    pool: Pool,
    /// How to connect: the listener (`Storage::listen`) keeps a connection of its own.
    config: tokio_postgres::Config,
    tls: Tls,
    /// Drives the connections; `None` once shut down (on drop).
    runtime: Option<tokio::runtime::Runtime>,
    /// Tickets: the order of this node's writes (each is durable when `write` returns).
    written: AtomicU64,
    /// Round trips to the database so far (a read or a write is one), for the benchmark.
    round_trips: AtomicU64,
    /// Transactions this store committed (writes and numbers taken), for the benchmark.
    commits: AtomicU64,
    /// Whether the database answers, as the watchdog last found.
    liveness: std::sync::Arc<Liveness>,
    /// Why the change feed cannot be read on, when a transaction has held it back for
    /// `FEED_HELD_AFTER` (`PgStore::feed_held_back`).
    feed_held: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// Whether the database answers at all. A database that stopped answering without closing its
/// connections (a paused server, a network that drops packets) would hold every caller for
/// `CALL_TIMEOUT`, and with them the threads that serve requests. So a watchdog looks every
/// `WATCH_EVERY`: when calls wait and none was answered since it last looked, it sends
/// `SELECT 1` on a connection of its own; no answer within `PROBE_TIMEOUT` marks the database
/// stalled, and an answer clears the mark. While it is marked, callers stop waiting (a write's
/// outcome is then unknown: it was sent) and new calls fail at once, sending nothing. A slow
/// statement alone, or one waiting for a lock, does not mark it: the probe is answered.
#[derive(Default)]
struct Liveness {
    /// Calls sent and not yet answered (or timed out).
    waiting: AtomicU64,
    /// Calls that came back so far, with rows or an error.
    answered: AtomicU64,
    stalled: std::sync::atomic::AtomicBool,
}

impl Liveness {
    fn stalled(&self) -> bool {
        self.stalled.load(Ordering::SeqCst)
    }

    /// Looks every `WATCH_EVERY`, and probes when calls wait unanswered or it is marked stalled.
    async fn watch(self: std::sync::Arc<Self>, config: tokio_postgres::Config, tls: Tls) {
        let mut probe: Option<tokio_postgres::Client> = None;
        let mut seen = self.answered.load(Ordering::SeqCst);
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            let answered = self.answered.load(Ordering::SeqCst);
            let quiet = answered == seen && self.waiting.load(Ordering::SeqCst) > 0;
            seen = answered;
            if !quiet && !self.stalled() {
                continue;
            }
            let answer = tokio::time::timeout(PROBE_TIMEOUT, async {
                if probe.as_ref().is_none_or(|p| p.is_closed()) {
                    probe = Some(connect(&config, &tls).await?);
                }
                match &probe {
                    Some(p) => p.simple_query("SELECT 1").await.map(drop),
                    None => Ok(()),
                }
            })
            .await;
            let answers = matches!(answer, Ok(Ok(())));
            if !answers {
                // A connection whose query got no answer may get it late: a new one next time.
                probe = None;
            }
            self.stalled.store(!answers, Ordering::SeqCst);
        }
    }
}

/// A connection of its own (the watchdog's probe), driven on the store's runtime.
async fn connect(config: &tokio_postgres::Config, tls: &Tls) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    match tls {
        Tls::Off => {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(connection);
            Ok(client)
        }
        Tls::On(tls) => {
            let (client, connection) = config.connect(tls.clone()).await?;
            tokio::spawn(connection);
            Ok(client)
        }
    }
}

impl PgStore {
    /// Connects and brings the schema up to this caseflow's version.
    pub fn connect(options: &PgOptions) -> Result<PgStore, StoreError> {
        let mut config: tokio_postgres::Config =
            options.url.parse().map_err(|e| StoreError::Backend(format!("database_url: {e}")))?;
        // Every statement reads by key or by a range of keys, for which the primary key's index
        // is right at any size. A session plans a statement once, from the statistics of that
        // moment: taken while the table was small, they made it a scan of the whole table, kept
        // after the table grew until the next ANALYZE (nodes.rs, `..._past_its_statistics`).
        let session = session_options(config.get_options());
        config.options(session);
        let tls = Tls::of(&config, options)?;
        let manager = tls.manager(config.clone());
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("caseflow-pg")
            .enable_all()
            .build()?;
        let store = PgStore {
            pool,
            config,
            tls,
            runtime: Some(runtime),
            written: AtomicU64::new(0),
            round_trips: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            liveness: Default::default(),
            feed_held: Default::default(),
        };
        if let Some(rt) = &store.runtime {
            rt.spawn(store.liveness.clone().watch(store.config.clone(), store.tls.clone()));
        }
        store.run(migrate(store.pool.clone())).map_err(|e| match e {
            StoreError::Unavailable(why) => StoreError::Backend(format!("the database cannot be reached: {why}")),
            other => other,
        })?;
        Ok(store)
    }

    /// Runs `work` on the store's runtime and waits for it on this thread, at most
    /// `CALL_TIMEOUT`, and not once the database is found stalled (`Liveness`): a database that
    /// stopped answering (a paused server, a cut network) fails the call instead of holding the
    /// engine's thread.
    fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.run_or(work, StoreError::Unavailable)
    }

    /// `run`, with what a call given up on means (for a write: its outcome is unknown).
    fn run_or<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, StoreError>> + Send + 'static,
        given_up: impl FnOnce(String) -> StoreError,
    ) -> Result<T, StoreError> {
        use std::sync::mpsc::RecvTimeoutError;
        let runtime = self.runtime.as_ref().ok_or_else(|| StoreError::Unavailable("the store is closed".into()))?;
        let liveness = &self.liveness;
        if liveness.stalled() {
            return Err(StoreError::Unavailable(format!("{STALLED}; nothing was sent")));
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        liveness.waiting.fetch_add(1, Ordering::SeqCst);
        let counts = liveness.clone();
        runtime.spawn(async move {
            let answer = tokio::time::timeout(CALL_TIMEOUT, work).await;
            counts.waiting.fetch_sub(1, Ordering::SeqCst);
            if answer.is_ok() {
                counts.answered.fetch_add(1, Ordering::SeqCst);
            }
            let _ = tx.send(answer.map_err(|_| format!("no answer from the database in {CALL_TIMEOUT:?}")));
        });
        loop {
            match rx.recv_timeout(WAIT_SLICE) {
                Ok(Ok(answer)) => return answer,
                Ok(Err(why)) => return Err(given_up(why)),
                Err(RecvTimeoutError::Timeout) if liveness.stalled() => return Err(given_up(STALLED.into())),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(StoreError::Backend("the database task ended without an answer".into()))
                }
            }
        }
    }

    /// Removes the change feed's rows older than two minutes, as every node's feed reader does
    /// every ten seconds.
    pub fn clean_feed(&self) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let client = pool.get().await.map_err(unavailable)?;
            client.batch_execute(FEED_CLEAN_SQL).await.map_err(unavailable)
        })
    }

    /// Why this node's change feed cannot be read on, when an open transaction has held it back
    /// for 5 s or more (it names the session); `None` while the feed moves, or is not read.
    pub fn feed_held_back(&self) -> Option<String> {
        self.feed_held.lock().unpoisoned().clone()
    }

    /// Round trips to the database so far: each read and each write (`caseflow_apply`) one, a
    /// number taken one (statements sent together without waiting count once).
    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Transactions committed so far: one per write and per number taken.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    fn trips(&self, n: u64) {
        self.round_trips.fetch_add(n, Ordering::Relaxed);
    }

    /// Removes every entry (tests that share one database start from nothing).
    pub fn clear(&self) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let client = pool.get().await.map_err(unavailable)?;
            client.batch_execute("TRUNCATE caseflow_entries").await.map_err(unavailable)
        })
    }

    fn read_page(
        &self,
        from: Vec<u8>,
        inclusive: bool,
        to: Option<Vec<u8>>,
    ) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        self.trips(1);
        let pool = self.pool.clone();
        self.run(async move {
            let client = pool.get().await.map_err(unavailable)?;
            let op = if inclusive { ">=" } else { ">" };
            let rows = match &to {
                Some(to) => {
                    let sql = format!(
                        "SELECT key, value FROM caseflow_entries WHERE key {op} $1 AND key < $2 ORDER BY key LIMIT $3"
                    );
                    let st = client.prepare_cached(&sql).await.map_err(unavailable)?;
                    client.query(&st, &[&from, to, &SCAN_PAGE]).await
                }
                None => {
                    let sql =
                        format!("SELECT key, value FROM caseflow_entries WHERE key {op} $1 ORDER BY key LIMIT $2");
                    let st = client.prepare_cached(&sql).await.map_err(unavailable)?;
                    client.query(&st, &[&from, &SCAN_PAGE]).await
                }
            }
            .map_err(unavailable)?;
            Ok(rows
                .iter()
                .map(|r| (Bytes::from(r.get::<_, Vec<u8>>(0)), Bytes::from(r.get::<_, Vec<u8>>(1))))
                .collect())
        })
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks; the engine may be dropped on an async thread.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Applies the migrations this database lacks, under an advisory lock held for the transaction.
async fn migrate(pool: Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(unavailable)?;
    let tx = client.transaction().await.map_err(unavailable)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(unavailable)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS caseflow_schema (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(unavailable)?;
    let row = tx.query_one("SELECT coalesce(max(version), 0) FROM caseflow_schema", &[]).await.map_err(unavailable)?;
    let at: i32 = row.get(0);
    let newest = MIGRATIONS.last().map_or(0, |m| m.0);
    if at > newest {
        return Err(StoreError::Backend(format!(
            "the database's schema is version {at}, newer than this caseflow's ({newest}): run the caseflow that wrote it"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > at) {
        tx.batch_execute(sql).await.map_err(unavailable)?;
        tx.execute("INSERT INTO caseflow_schema (version) VALUES ($1)", &[version]).await.map_err(unavailable)?;
    }
    tx.commit().await.map_err(unavailable)
}

/// How often a node reads the change feed, and how often it removes what every node has read.
const FEED_EVERY: std::time::Duration = std::time::Duration::from_millis(50);
const FEED_CLEAN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How far the feed can be read (the horizon): every transaction whose id is lower has ended,
/// committed or not, so no row under such an id can still appear. A batch that expects a value
/// another batch wrote read it after that one committed, and its transaction (one statement,
/// sent after the read) takes its id after that: reading in id order keeps each case's order.
/// Beside it, the next transaction id: a horizon that stays while ids move on is held back by a
/// transaction that stays open.
const HORIZON_SQL: &str = "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint \
     FROM pg_current_snapshot() s";
/// Who holds the horizon back: the session whose transaction has its id (`backend_xid` is the
/// id's low 32 bits).
const HOLDER_SQL: &str = "SELECT pid, coalesce(usename, ''), coalesce(application_name, ''), coalesce(state, ''), \
     coalesce(extract(epoch FROM now() - xact_start)::bigint, 0) FROM pg_stat_activity \
     WHERE backend_xid::text::bigint = $1 % 4294967296";
/// How long the horizon may stay while transaction ids move on before `/health` says so.
const FEED_HELD_AFTER: std::time::Duration = std::time::Duration::from_secs(5);
const FEED_SQL: &str = "SELECT notes FROM caseflow_feed WHERE xid >= $1 AND xid < $2 ORDER BY xid, seq";
/// Rows are kept two minutes: a node that could not read for longer misses them (the history
/// has every change).
const FEED_CLEAN_SQL: &str = "DELETE FROM caseflow_feed WHERE at < now() - interval '2 minutes'";

/// Reads the change feed on a connection of its own every `FEED_EVERY` until the connection is
/// lost, from `from` (the horizon read up to; `None`: from now on); the first outcome goes to
/// `started`.
async fn read_feed(
    config: &tokio_postgres::Config,
    tls: &Tls,
    hear: &Listener,
    from: &mut Option<i64>,
    started: &mut Option<std::sync::mpsc::SyncSender<Result<(), String>>>,
    held: &std::sync::Mutex<Option<String>>,
) {
    use base64::Engine as _;
    let mut cleaned = std::time::Instant::now();
    // The horizon last seen and since when.
    let mut stayed: Option<(i64, std::time::Instant)> = None;
    let opened = async {
        let client = connect(config, tls).await?;
        let (horizon_st, feed_st) = (client.prepare(HORIZON_SQL).await?, client.prepare(FEED_SQL).await?);
        Ok::<_, tokio_postgres::Error>((client, horizon_st, feed_st))
    };
    let (client, horizon_st, feed_st) = match opened.await {
        Ok(opened) => opened,
        Err(e) => {
            if let Some(started) = started.take() {
                let _ = started.send(Err(Failure::from(e).0));
            }
            return;
        }
    };
    loop {
        let read = async {
            let now = client.query_one(&horizon_st, &[]).await?;
            let (horizon, next): (i64, i64) = (now.get(0), now.get(1));
            // Past the horizon only if the database went back (a standby that had not received
            // the last transactions was promoted): from there on, then.
            let begin = from.filter(|f| *f <= horizon).unwrap_or(horizon);
            let rows = match begin < horizon {
                true => client.query(&feed_st, &[&begin, &horizon]).await?,
                false => Vec::new(),
            };
            // Held back: the horizon stayed while later transactions began; name the one.
            let mut why = None;
            match stayed {
                Some((at, since)) if at == horizon => {
                    if next > horizon + 1 && since.elapsed() >= FEED_HELD_AFTER {
                        let holder = client.query(HOLDER_SQL, &[&horizon]).await?.first().map(|r| {
                            let (pid, user, app, state, open): (i32, String, String, String, i64) =
                                (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
                            format!("pid {pid}, user `{user}`, application `{app}`, {state}, open {open} s")
                        });
                        why = Some(format!(
                            "the change feed is held back by transaction {horizon} ({}): until it ends, /events on \
                             every node hears nothing of other nodes (end it, or set idle_in_transaction_session_timeout)",
                            holder.unwrap_or_else(|| "its session was not found".into())
                        ));
                    }
                }
                _ => stayed = Some((horizon, std::time::Instant::now())),
            }
            Ok::<_, tokio_postgres::Error>((horizon, rows, why))
        };
        match read.await {
            Ok((horizon, rows, why)) => {
                *held.lock().unpoisoned() = why;
                if let Some(started) = started.take() {
                    let _ = started.send(Ok(()));
                }
                for row in rows {
                    for note in row.get::<_, Vec<String>>(0) {
                        if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(note) {
                            hear(&bytes);
                        }
                    }
                }
                *from = Some(horizon);
            }
            Err(e) => {
                if let Some(started) = started.take() {
                    let _ = started.send(Err(Failure::from(e).0));
                }
                return;
            }
        }
        if cleaned.elapsed() >= FEED_CLEAN_EVERY {
            // Another node may be removing the same rows: either is as good.
            let _ = client.batch_execute(FEED_CLEAN_SQL).await;
            cleaned = std::time::Instant::now();
        }
        tokio::time::sleep(FEED_EVERY).await;
    }
}

/// The startup options of the store's sessions: the URL's own (`options=...`), then the
/// store's (`PgStore::connect` says why).
fn session_options(own: Option<&str>) -> String {
    match own.map(str::trim) {
        Some(own) if !own.is_empty() => format!("{own} -c enable_seqscan=off"),
        _ => "-c enable_seqscan=off".to_string(),
    }
}

/// A failure before the commit was sent: nothing was applied.
fn unavailable(e: impl Into<Failure>) -> StoreError {
    StoreError::Unavailable(e.into().0)
}

/// A failure said in full: a database error's message and code, not only "db error".
struct Failure(String);

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Failure {
        match e.as_db_error() {
            Some(db) => Failure(format!("{}: {} ({})", db.severity(), db.message(), db.code().code())),
            // With its causes: "error performing TLS handshake: invalid peer certificate: ...".
            None => {
                let mut text = e.to_string();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    text.push_str(&format!(": {c}"));
                    cause = c.source();
                }
                Failure(text)
            }
        }
    }
}

impl From<deadpool_postgres::PoolError> for Failure {
    fn from(e: deadpool_postgres::PoolError) -> Failure {
        match e {
            // The database's own words (e.g. "database ... does not exist"), not only "db error".
            deadpool_postgres::PoolError::Backend(e) => Failure::from(e),
            other => Failure(other.to_string()),
        }
    }
}

/// A failure of one of a write's statements: a lost race on a key expected absent (or a
/// deadlock or serialisation failure, which the database rolled back) is a conflict to re-run.
fn statement_failed(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::Conflict(
            e.as_db_error().and_then(|d| d.detail()).unwrap_or("a key expected absent was written meanwhile").into(),
        ),
        Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE => {
            StoreError::Conflict(e.to_string())
        }
        _ => unavailable(e),
    }
}

/// A batch as the statements of one transaction: the final state of each key it touches.
struct Statements {
    /// Keys expected to hold a value, and the value.
    locked: Vec<(Vec<u8>, Bytes)>,
    /// Keys written that must not exist (expected absent): a plain insert.
    fresh: (Vec<Vec<u8>>, Vec<Vec<u8>>),
    upserts: (Vec<Vec<u8>>, Vec<Vec<u8>>),
    removes: Vec<Vec<u8>>,
    /// Keys expected absent that the batch does not write: inserted (so the unique index
    /// checks them as it checks the others) and removed again in the same transaction.
    probes: Vec<Vec<u8>>,
}

impl Statements {
    fn of(batch: Batch) -> Statements {
        let mut absent = std::collections::BTreeSet::new();
        let mut locked = Vec::new();
        for (k, v) in batch.conditions() {
            match v {
                Some(v) => locked.push((k.clone(), v.clone())),
                None => {
                    absent.insert(k.clone());
                }
            }
        }
        let mut last: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for (k, v) in batch.into_ops() {
            last.insert(k, v);
        }
        let mut s = Statements {
            locked,
            fresh: Default::default(),
            upserts: Default::default(),
            removes: Vec::new(),
            probes: Vec::new(),
        };
        for key in &absent {
            if !matches!(last.get(key), Some(Some(_))) {
                s.fresh.0.push(key.clone());
                s.fresh.1.push(Vec::new());
                s.probes.push(key.clone());
                // Removed here by the batch too: the probe's delete does it.
                last.remove(key);
            }
        }
        for (k, v) in last {
            match v {
                Some(v) if absent.contains(&k) => {
                    s.fresh.0.push(k);
                    s.fresh.1.push(v);
                }
                Some(v) => {
                    s.upserts.0.push(k);
                    s.upserts.1.push(v);
                }
                None => s.removes.push(k),
            }
        }
        s
    }
}

/// Claims free keys of a range for a lease, with a new token. The rows are picked in a
/// materialised CTE: inlined, the planner may run the `LIMIT`ed, `SKIP LOCKED` scan more than
/// once and lock more rows than it returns. `SKIP LOCKED` passes over rows another claim or a
/// write holds at this instant, so claimers never wait for each other. Times are the
/// database's, so the nodes' clocks do not matter.
const CLAIM_SQL: &str = "WITH token AS (SELECT nextval('caseflow_claims') AS t), \
     picked AS MATERIALIZED (SELECT key FROM caseflow_entries \
       WHERE key >= $1 AND key < $2 AND (claim_until IS NULL OR claim_until <= clock_timestamp()) \
       ORDER BY key LIMIT $3 FOR UPDATE SKIP LOCKED) \
     UPDATE caseflow_entries e SET claim_token = token.t, \
       claim_until = clock_timestamp() + $4::bigint * interval '1 millisecond' \
     FROM picked, token WHERE e.key = picked.key RETURNING e.key, token.t";
const RENEW_SQL: &str =
    "UPDATE caseflow_entries SET claim_until = clock_timestamp() + $3::bigint * interval '1 millisecond' \
     WHERE key = ANY($1) AND claim_token = $2";
const RELEASE_SQL: &str =
    "UPDATE caseflow_entries SET claim_token = NULL, claim_until = NULL WHERE key = ANY($1) AND claim_token = $2";

/// Cases whose search document contains the one asked for, and cases without a document (the
/// partial index `caseflow_undocumented`, whose bounds the second branch repeats so that the
/// planner may use it), merged in key order.
const FIND_DOCUMENTED_SQL: &str = r"(SELECT key FROM caseflow_entries
       WHERE key >= $1 AND key < $2 AND doc @> $3::text::jsonb ORDER BY key LIMIT $4)
     UNION ALL
     (SELECT key FROM caseflow_entries
       WHERE key >= $1 AND key < $2 AND doc IS NULL AND key >= '\x692f'::bytea AND key < '\x6930'::bytea
       ORDER BY key LIMIT $4)
     ORDER BY key LIMIT $4";
const UNDOCUMENTED_SQL: &str = r"SELECT key, value FROM caseflow_entries
     WHERE key >= $1 AND key < $2 AND doc IS NULL AND key >= '\x692f'::bytea AND key < '\x6930'::bytea
     ORDER BY key LIMIT $3";

/// A counter's next value, its eight big-endian bytes read and written in SQL (schema version 4).
const NEXT_NUMBER_SQL: &str = "SELECT caseflow_next_number($1)";

/// Applies a batch: one statement (`caseflow_write`, schema version 5), so one round trip and
/// one transaction of its own, whatever the batch expects or writes.
const APPLY_SQL: &str =
    "SELECT caseflow_write($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::text[]::jsonb[], $17::text[]::jsonb[])";

async fn write_batch(pool: Pool, mut batch: Batch) -> Result<(), StoreError> {
    let client = pool.get().await.map_err(unavailable)?;
    let apply = client.prepare_cached(APPLY_SQL).await.map_err(unavailable)?;
    // The feed keeps text: each announcement in base64 (the engine's are one event each).
    let notes: Vec<String> = {
        use base64::Engine as _;
        batch.announcements().iter().map(|m| base64::engine::general_purpose::STANDARD.encode(m)).collect()
    };
    let (claim_keys, claim_tokens): (Vec<Vec<u8>>, Vec<i64>) =
        batch.claims().iter().map(|(k, t)| (k.clone(), *t as i64)).unzip();
    let adds: (Vec<Vec<u8>>, Vec<i64>) = batch.adds().map(|(k, d)| (k.clone(), d)).unzip();
    let sequenced: (Vec<Vec<u8>>, Vec<Vec<u8>>) = batch.take_sequenced().into_iter().unzip();
    let documents = batch.take_documents();
    let Statements { locked, removes, upserts, fresh, probes } = Statements::of(batch);
    let documents_of =
        |keys: &[Vec<u8>]| -> Vec<Option<&str>> { keys.iter().map(|k| documents.get(k).map(String::as_str)).collect() };
    let (up_docs, fresh_docs) = (documents_of(&upserts.0), documents_of(&fresh.0));
    let locked: (Vec<Vec<u8>>, Vec<Vec<u8>>) = locked.into_iter().map(|(k, v)| (k, v.to_vec())).unzip();
    let applied = client
        .execute(
            &apply,
            &[
                &locked.0,
                &locked.1,
                &claim_keys,
                &claim_tokens,
                &sequenced.0,
                &sequenced.1,
                &removes,
                &upserts.0,
                &upserts.1,
                &fresh.0,
                &fresh.1,
                &probes,
                &adds.0,
                &adds.1,
                &notes,
                &up_docs,
                &fresh_docs,
            ],
        )
        .await;
    let Err(e) = applied else { return Ok(()) };
    // The key a raised condition names, in hex.
    let named = |e: &tokio_postgres::Error| {
        let hex = e.as_db_error().map(|d| d.message()).unwrap_or_default();
        let bytes: Vec<u8> =
            (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    match e.code() {
        // The database refused the statement: its transaction was rolled back, nothing applied.
        Some(c) if c.code() == "CF001" => Err(StoreError::Conflict(named(&e))),
        Some(c) if c.code() == "CF002" => Err(StoreError::ClaimLost(named(&e))),
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => {
            let keys: Vec<_> = fresh.0.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
            Err(StoreError::Conflict(keys.join("` or `")))
        }
        Some(_) => Err(statement_failed(e)),
        // The connection failed with the statement sent: it may or may not have been applied.
        None => Err(StoreError::OutcomeUnknown(Failure::from(e).0)),
    }
}

/// A scan read a page at a time, each page a query of its own (not a snapshot).
pub struct PgScan<'a> {
    store: &'a PgStore,
    /// Where the next page starts, and whether that key itself is included.
    from: Option<(Vec<u8>, bool)>,
    to: Option<Vec<u8>>,
    page: std::vec::IntoIter<(Bytes, Bytes)>,
}

impl Iterator for PgScan<'_> {
    type Item = Result<(Bytes, Bytes), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(entry) = self.page.next() {
            return Some(Ok(entry));
        }
        let (from, inclusive) = self.from.take()?;
        match self.store.read_page(from, inclusive, self.to.clone()) {
            Ok(page) => {
                if page.len() as i64 == SCAN_PAGE {
                    self.from = page.last().map(|(k, _)| (k.to_vec(), false));
                }
                self.page = page.into_iter();
                self.page.next().map(Ok)
            }
            Err(e) => Some(Err(e)),
        }
    }
}

impl Storage for PgStore {
    type Scan<'a> = PgScan<'a>;

    fn write(&self, batch: Batch) -> Result<Ticket, StoreError> {
        let size = batch.size();
        if size > BATCH_BYTES_MAX {
            return Err(StoreError::TooLarge(size));
        }
        if batch.is_empty() {
            return Ok(self.written.fetch_add(1, Ordering::SeqCst) + 1);
        }
        self.trips(1);
        // A write that timed out may have been committed: its outcome is unknown.
        self.run_or(write_batch(self.pool.clone(), batch), StoreError::OutcomeUnknown)?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(self.written.fetch_add(1, Ordering::SeqCst) + 1)
    }

    fn wait_durable(&self, _: Ticket) -> Result<(), StoreError> {
        Ok(())
    }

    fn when_durable(&self, _: Ticket, done: Box<dyn FnOnce(Result<(), StoreError>) + Send>) {
        done(Ok(()))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        self.trips(1);
        let pool = self.pool.clone();
        let key = key.to_vec();
        self.run(async move {
            let client = pool.get().await.map_err(unavailable)?;
            let st = client
                .prepare_cached("SELECT value FROM caseflow_entries WHERE key = $1")
                .await
                .map_err(unavailable)?;
            let row = client.query_opt(&st, &[&key]).await.map_err(unavailable)?;
            Ok(row.map(|r| Bytes::from(r.get::<_, Vec<u8>>(0))))
        })
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Bytes>>, StoreError> {
        self.trips(1);
        let pool = self.pool.clone();
        let wanted = keys.to_vec();
        let found: BTreeMap<Vec<u8>, Vec<u8>> = self.run(async move {
            let client = pool.get().await.map_err(unavailable)?;
            let st = client
                .prepare_cached("SELECT key, value FROM caseflow_entries WHERE key = ANY($1)")
                .await
                .map_err(unavailable)?;
            let rows = client.query(&st, &[&wanted]).await.map_err(unavailable)?;
            Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
        })?;
        Ok(keys.iter().map(|k| found.get(k).map(|v| Bytes::from(v.clone()))).collect())
    }

    fn scan_prefix(&self, prefix: &[u8]) -> PgScan<'_> {
        PgScan {
            store: self,
            from: Some((prefix.to_vec(), true)),
            to: crate::storage::keys::prefix_end(prefix),
            page: Vec::new().into_iter(),
        }
    }

    fn range(&self, from: &[u8], to: &[u8]) -> PgScan<'_> {
        let empty = to <= from;
        PgScan {
            store: self,
            from: (!empty).then(|| (from.to_vec(), true)),
            to: Some(to.to_vec()),
            page: Vec::new().into_iter(),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn check_health(&self) -> Option<String> {
        if self.liveness.stalled() {
            return Some(STALLED.into());
        }
        let pool = self.pool.clone();
        self.run(async move {
            let client = pool.get().await.map_err(unavailable)?;
            client.batch_execute("SELECT 1").await.map_err(unavailable)
        })
        .err()
        .map(|e| e.to_string())
    }

    fn shared(&self) -> bool {
        true
    }

    /// A connection of its own that reads the change feed (`read_feed`) every 50 ms, connected
    /// again (after a second) whenever it is lost, going on from where it was: what was
    /// announced meanwhile is heard too, unless the connection was lost for over two minutes.
    /// Returns once it has read the feed once (or could not connect the first time: it keeps
    /// trying).
    fn listen(&self, hear: Listener) -> Result<(), StoreError> {
        let runtime = self.runtime.as_ref().ok_or_else(|| StoreError::Unavailable("the store is closed".into()))?;
        let (config, tls, held) = (self.config.clone(), self.tls.clone(), self.feed_held.clone());
        let (started, listening) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
        runtime.spawn(async move {
            let (mut started, mut from) = (Some(started), None);
            loop {
                read_feed(&config, &tls, &hear, &mut from, &mut started, &held).await;
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        });
        match listening.recv_timeout(CALL_TIMEOUT) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(why)) => Err(StoreError::Unavailable(format!("listening for other nodes' changes: {why}"))),
            Err(_) => Err(StoreError::Unavailable("listening for other nodes' changes: no answer".into())),
        }
    }

    /// One statement, one round trip (see `CLAIM_SQL`).
    fn claim(&self, from: &[u8], to: &[u8], limit: usize, lease: std::time::Duration) -> Result<Claim, StoreError> {
        if to <= from || limit == 0 {
            return Ok(Claim::default());
        }
        self.trips(1);
        self.commits.fetch_add(1, Ordering::Relaxed);
        let pool = self.pool.clone();
        let (from, to) = (from.to_vec(), to.to_vec());
        let (limit, lease) = (limit as i64, lease.as_millis() as i64);
        self.run(async move {
            let client = pool.get().await.map_err(unavailable)?;
            let st = client.prepare_cached(CLAIM_SQL).await.map_err(unavailable)?;
            let rows = client.query(&st, &[&from, &to, &limit, &lease]).await.map_err(unavailable)?;
            let token = rows.first().map_or(0, |r| r.get::<_, i64>(1) as u64);
            let mut keys: Vec<Vec<u8>> = rows.iter().map(|r| r.get(0)).collect();
            keys.sort();
            Ok(Claim { token, keys: keys.into_iter().map(Bytes::from).collect() })
        })
    }

    fn renew(&self, claim: &Claim, lease: std::time::Duration) -> Result<usize, StoreError> {
        if claim.keys.is_empty() {
            return Ok(0);
        }
        self.trips(1);
        let pool = self.pool.clone();
        let keys: Vec<Vec<u8>> = claim.keys.iter().map(|k| k.to_vec()).collect();
        let (token, lease) = (claim.token as i64, lease.as_millis() as i64);
        self.run(async move {
            let client = pool.get().await.map_err(unavailable)?;
            let st = client.prepare_cached(RENEW_SQL).await.map_err(unavailable)?;
            Ok(client.execute(&st, &[&keys, &token, &lease]).await.map_err(unavailable)? as usize)
        })
    }

    fn release(&self, claim: &Claim) -> Result<(), StoreError> {
        if claim.keys.is_empty() {
            return Ok(());
        }
        self.trips(1);
        let pool = self.pool.clone();
        let keys: Vec<Vec<u8>> = claim.keys.iter().map(|k| k.to_vec()).collect();
        let token = claim.token as i64;
        self.run(async move {
            let client = pool.get().await.map_err(unavailable)?;
            let st = client.prepare_cached(RELEASE_SQL).await.map_err(unavailable)?;
            client.execute(&st, &[&keys, &token]).await.map_err(unavailable)?;
            Ok(())
        })
    }

    fn keeps_documents(&self) -> bool {
        true
    }

    /// Two round trips: the statement is prepared for each search, so it is planned for the
    /// document asked for (a value most cases hold reads the key index in order and filters;
    /// a rare one reads the GIN index and sorts what it found).
    fn find_documented(
        &self,
        from: &[u8],
        to: &[u8],
        containing: &str,
        limit: usize,
    ) -> Result<Vec<Bytes>, StoreError> {
        if to <= from || limit == 0 {
            return Ok(Vec::new());
        }
        self.trips(2);
        let (pool, from, to, containing, limit) =
            (self.pool.clone(), from.to_vec(), to.to_vec(), containing.to_string(), limit as i64);
        self.run(async move {
            let client = pool.get().await.map_err(unavailable)?;
            let rows =
                client.query(FIND_DOCUMENTED_SQL, &[&from, &to, &containing, &limit]).await.map_err(unavailable)?;
            Ok(rows.iter().map(|r| Bytes::from(r.get::<_, Vec<u8>>(0))).collect())
        })
    }

    fn undocumented(&self, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<(Bytes, Bytes)>, StoreError> {
        if to <= from || limit == 0 {
            return Ok(Vec::new());
        }
        self.trips(1);
        let (pool, from, to, limit) = (self.pool.clone(), from.to_vec(), to.to_vec(), limit as i64);
        self.run(async move {
            let client = pool.get().await.map_err(unavailable)?;
            let st = client.prepare_cached(UNDOCUMENTED_SQL).await.map_err(unavailable)?;
            let rows = client.query(&st, &[&from, &to, &limit]).await.map_err(unavailable)?;
            Ok(rows
                .iter()
                .map(|r| (Bytes::from(r.get::<_, Vec<u8>>(0)), Bytes::from(r.get::<_, Vec<u8>>(1))))
                .collect())
        })
    }

    /// One statement, one round trip: the counter's row is updated in a transaction of its own
    /// that commits without waiting for the disk (`synchronous_commit = off`, set in it), so it
    /// holds the row's lock for microseconds, not for a flush; the log is written in order, so
    /// the number is on disk before any commit made after it that did wait (the case's own).
    fn take_number(&self, key: &[u8]) -> Result<u64, StoreError> {
        self.trips(1);
        self.commits.fetch_add(1, Ordering::Relaxed);
        let pool = self.pool.clone();
        let key = key.to_vec();
        self.run(async move {
            let client = pool.get().await.map_err(unavailable)?;
            let next = client.prepare_cached(NEXT_NUMBER_SQL).await.map_err(unavailable)?;
            let row = client.query_one(&next, &[&key]).await.map_err(unavailable)?;
            let value: Vec<u8> = row.get(0);
            crate::storage::keys::u64_value(&value).ok_or_else(|| StoreError::Corrupt {
                key: String::from_utf8_lossy(&key).into_owned(),
                problem: format!("expected 8 bytes, found {}", value.len()),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The schema's partial index and `find_documented` name the cases' keys by their bytes.
    #[test]
    fn the_sql_s_bounds_of_the_cases_keys_are_the_engine_s() {
        use crate::storage::keys::{prefix_end, Prefix};
        assert_eq!(Prefix::Instance.bytes(), b"\x69\x2f");
        assert_eq!(prefix_end(Prefix::Instance.bytes()).unwrap(), b"\x69\x30");
        for sql in [MIGRATIONS[4].1, FIND_DOCUMENTED_SQL, UNDOCUMENTED_SQL] {
            assert!(sql.contains(r"key >= '\x692f'::bytea AND key < '\x6930'::bytea"), "{sql}");
        }
    }

    #[test]
    fn the_url_s_own_options_are_kept_before_the_store_s() {
        let url = "postgres://caseflow@127.0.0.1:5432/db?options=-c%20search_path%3Dcases";
        let config: tokio_postgres::Config = url.parse().unwrap();
        assert_eq!(session_options(config.get_options()), "-c search_path=cases -c enable_seqscan=off");
        let bare: tokio_postgres::Config = "host=127.0.0.1 user=caseflow".parse().unwrap();
        assert_eq!(session_options(bare.get_options()), "-c enable_seqscan=off");
    }
}
