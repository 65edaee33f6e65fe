//! The encrypted on-device store: SQLite (WAL) + AES-256-GCM with keys the platform owns.
//!
//! ```no_run
//! use vitalcore::keys::InMemoryKeyProvider;
//! use vitalcore::store::{Store, StoreConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = InMemoryKeyProvider::random()?;
//! let store = Store::open(StoreConfig::new("/data/app/vitalcore.db"), &keys)?;
//! # Ok(()) }
//! ```
//!
//! * Every value about a person is sealed (see [`crypto`] for the key hierarchy and the
//!   associated data); the schema files list each plaintext column and why it exists.
//! * One writer connection behind a mutex, a small pool of read-only connections; a busy
//!   database is retried, never reported as "database is locked".
//! * [`Store::write`] runs several writes (check, outbox record, raw window) in ONE transaction.
//! * Erasure deletes rows and destroys the data keys, so leftover copies are unreadable.

mod audit;
mod checkpoint;
mod checks;
mod codec;
mod consent;
pub mod crypto;
mod db;
mod erase;
mod error;
mod models;
mod outbox;
mod schema;
mod sync_state;
mod types;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

pub use checkpoint::CheckpointStats;
pub use checks::{HistoryQuery, SavedCheck};
pub use codec::DecodeError;
pub use error::{Result, StoreError};
pub use schema::SCHEMA_VERSION;
pub use sync_state::{PendingErasure, SyncMeta};
pub use types::*;

use crate::keys::{KeyProvider, RootKey};
use crypto::{Binding, KeyRing, SealKey, CANARY_PLAINTEXT};
use db::lock;

/// What a committed transaction survives. Both modes keep the database consistent (WAL, atomic
/// commits); they differ in whether a commit waits for the disk to flush.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit waits for an fsync of the WAL (SQLite `synchronous=FULL`): once a write
    /// returns it survives a process kill, an OS crash and power loss. Costs one flush per
    /// commit (milliseconds on phone and server storage).
    #[default]
    PowerLoss,
    /// A commit returns once it is in the WAL file, which the OS flushes on its own schedule and
    /// SQLite at every checkpoint (`synchronous=NORMAL` in WAL mode): once a write returns it
    /// survives the app being killed or crashing at any point; an OS crash or power loss may
    /// roll back the most recent commits, but never corrupts the database or leaves half a
    /// transaction.
    AppCrash,
}

impl Durability {
    /// The `PRAGMA synchronous` value (as SQLite reports it) this mode pins.
    pub(crate) fn synchronous(self) -> (&'static str, &'static str) {
        match self {
            Self::PowerLoss => ("FULL", "2"),
            Self::AppCrash => ("NORMAL", "1"),
        }
    }
}

/// How to open a store. Built with [`StoreConfig::new`] and the builder methods; every default is
/// written on its method.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    path: PathBuf,
    readers: usize,
    raw_retention: Option<Duration>,
    check_on_open: bool,
    busy_budget: Duration,
    audit_reads: bool,
    schema_target: u32,
    durability: Durability,
}

impl StoreConfig {
    /// A store at `path` (the `-wal` and `-shm` files live next to it).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            readers: 2,
            raw_retention: None,
            check_on_open: true,
            busy_budget: Duration::from_secs(30),
            audit_reads: true,
            schema_target: SCHEMA_VERSION,
            durability: Durability::PowerLoss,
        }
    }

    /// Number of read-only connections. Default: 2. At least 1.
    pub fn readers(mut self, n: usize) -> Self {
        self.readers = n.max(1);
        self
    }

    /// How long raw sensor windows are kept. Default: `None`, raw windows are not stored at all
    /// ([`WriteTx::insert_raw_window`] then stores nothing and returns `None`).
    pub fn raw_retention(mut self, keep: Option<Duration>) -> Self {
        self.raw_retention = keep;
        self
    }

    /// Run `PRAGMA quick_check` at open and quarantine the file if it fails. Default: `true`.
    /// Costs one read of the file; turn off only for very large stores with their own checks.
    pub fn check_on_open(mut self, on: bool) -> Self {
        self.check_on_open = on;
        self
    }

    /// How long a write or read keeps retrying while another process holds the lock before
    /// giving up with [`StoreError::Busy`]. Default: 30 s.
    pub fn busy_budget(mut self, budget: Duration) -> Self {
        self.busy_budget = budget;
        self
    }

    /// Append an audit entry for every read of health data. Default: `true`.
    pub fn audit_reads(mut self, on: bool) -> Self {
        self.audit_reads = on;
        self
    }

    /// What a returned write survives. Default: [`Durability::PowerLoss`] (every commit is
    /// flushed to stable storage before it returns).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// See [`StoreConfig::durability`].
    pub fn get_durability(&self) -> Durability {
        self.durability
    }

    /// Creates or migrates only up to `version`. Only for producing old-schema test fixtures.
    #[doc(hidden)]
    pub fn schema_target(mut self, version: u32) -> Self {
        self.schema_target = version.clamp(1, SCHEMA_VERSION);
        self
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Data keys already verified in the current transaction.
type KeyMemo = Vec<(i64, Arc<SealKey>)>;

/// Unwrapped data keys in memory, by id. Ids of destroyed keys are remembered so a reader racing
/// an erasure cannot put a destroyed key back.
#[derive(Debug, Default)]
struct DataKeys {
    by_id: HashMap<i64, Arc<SealKey>>,
    destroyed: HashSet<i64>,
}

/// The encrypted store. `Send + Sync`: share it behind an `Arc`.
pub struct Store {
    config: StoreConfig,
    keys: KeyRing,
    writer: Mutex<Connection>,
    readers: db::ReaderPool,
    data_keys: Mutex<DataKeys>,
    checkpointer: checkpoint::Checkpointer,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

const CANARY: Binding<'static> = Binding {
    table: "store_meta",
    row: b"canary",
    column: "value",
    key_id: 0,
};

impl Store {
    /// Opens (creating if needed) the store, proving the key with the canary before anything is
    /// written, then setting pragmas and running pending migrations.
    ///
    /// Errors: [`StoreError::WrongKey`] (nothing modified), [`StoreError::Corrupt`] with the path
    /// the corrupt file was moved to, [`StoreError::SchemaTooNew`], [`StoreError::NotAStore`].
    pub fn open(config: StoreConfig, provider: &dyn KeyProvider) -> Result<Self> {
        let root = RootKey::from_provider(provider)?;
        let existed = config.path.exists();
        let mut conn = db::open_connection(&config.path, true)?;
        // Until the key is proven, closing must not checkpoint the WAL into the main file: a
        // wrong-key open leaves the files exactly as they were.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        let keys = match db::with_retry(config.busy_budget, || probe(&mut conn, &config, &root)) {
            Ok(k) => k,
            Err(e) if existed && db::is_corruption(&e) => {
                drop(conn);
                let moved = db::quarantine(&config.path)?;
                return Err(StoreError::Corrupt {
                    quarantined_to: Some(moved),
                });
            }
            Err(e) => return Err(e),
        };
        drop(root);
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)?;
        db::apply_pragmas(&conn, true, config.durability)?;
        db::with_retry(config.busy_budget, || {
            schema::migrate(&mut conn, config.schema_target)
        })?;
        db::verify_pragmas(&conn, config.durability)?;
        // From here on the writer's commits only note the WAL size; checkpoints run off the
        // commit path (see `checkpoint`).
        checkpoint::install_hook(&conn)?;
        let checkpointer = checkpoint::Checkpointer::new(config.path.clone(), config.durability);
        let mut readers = Vec::with_capacity(config.readers);
        for _ in 0..config.readers {
            let r = db::open_connection(&config.path, false)?;
            db::apply_pragmas(&r, false, config.durability)?;
            readers.push(r);
        }
        Ok(Self {
            config,
            keys,
            writer: Mutex::new(conn),
            readers: db::ReaderPool::new(readers),
            data_keys: Mutex::new(DataKeys::default()),
            checkpointer,
        })
    }

    /// Checkpoints the WAL into the main file and closes every connection. The connections are
    /// closed even when the checkpoint fails (the WAL is then replayed at the next open).
    pub fn close(self) -> Result<()> {
        self.checkpoint().map(|_| ())
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`), committing if it returns `Ok`.
    /// Everything written through the [`WriteTx`] is atomic: a check, its outbox record and its
    /// raw window land together or not at all. While another process holds the write lock the
    /// whole transaction is retried, so `f` may run more than once and must not have side
    /// effects outside the transaction.
    pub fn write<T>(&self, mut f: impl FnMut(&mut WriteTx<'_>) -> Result<T>) -> Result<T> {
        let mut conn = lock(&self.writer);
        let mut unwrapped: Vec<(i64, Arc<SealKey>)> = Vec::new();
        let out = db::with_retry(self.config.busy_budget, || {
            unwrapped.clear();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut w = WriteTx {
                tx: &tx,
                store: self,
                unwrapped: &mut unwrapped,
            };
            let v = f(&mut w)?;
            tx.commit()?;
            Ok(v)
        })?;
        self.checkpointer.after_commit(&conn);
        // Keys created in the transaction are cached only once they are committed.
        let mut cache = lock(&self.data_keys);
        for (id, k) in unwrapped {
            if !cache.destroyed.contains(&id) {
                cache.by_id.insert(id, k);
            }
        }
        Ok(out)
    }

    /// Runs `f` on a read-only connection (a consistent snapshot), retrying while busy.
    pub(crate) fn read<T>(&self, mut f: impl FnMut(&Connection) -> Result<T>) -> Result<T> {
        let conn = self.readers.get();
        db::with_retry(self.config.busy_budget, || {
            let tx = conn.unchecked_transaction()?;
            let v = f(&tx)?;
            tx.finish()?;
            Ok(v)
        })
    }

    /// The data key with this id. Its row is looked up once per transaction (`memo`), in the
    /// same snapshot as the rows it opens, so a key another instance or process destroyed is
    /// refused even while this instance still caches it; the unwrapped key itself is cached.
    fn data_key(&self, conn: &Connection, key_id: i64, memo: &mut KeyMemo) -> Result<Arc<SealKey>> {
        if let Some((_, k)) = memo.iter().find(|(i, _)| *i == key_id) {
            return Ok(k.clone());
        }
        let row: Option<(Vec<u8>, String, Vec<u8>)> = conn
            .prepare_cached("SELECT subject_tag, purpose, wrapped FROM data_keys WHERE id = ?1")?
            .query_row([key_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let Some((subject_tag, purpose, wrapped)) = row else {
            self.forget_keys(&[key_id]);
            return Err(StoreError::KeyDestroyed);
        };
        let cached = lock(&self.data_keys).by_id.get(&key_id).cloned();
        let key = match cached {
            Some(k) => k,
            None => {
                let key = Arc::new(self.unwrap_key(&subject_tag, &purpose, &wrapped)?);
                let mut cache = lock(&self.data_keys);
                if cache.destroyed.contains(&key_id) {
                    return Err(StoreError::KeyDestroyed);
                }
                cache.by_id.insert(key_id, key.clone());
                key
            }
        };
        memo.push((key_id, key.clone()));
        Ok(key)
    }

    fn unwrap_key(&self, subject_tag: &[u8], purpose: &str, wrapped: &[u8]) -> Result<SealKey> {
        let row = key_row(subject_tag, purpose);
        self.keys
            .unwrap_data_key(wrap_binding(&row), wrapped)
            .map_err(|_| StoreError::Integrity {
                table: "data_keys",
                column: "wrapped",
            })
    }

    fn forget_keys(&self, ids: &[i64]) {
        let mut cache = lock(&self.data_keys);
        for id in ids {
            cache.by_id.remove(id);
            cache.destroyed.insert(*id);
        }
    }

    fn subject_tag(&self, subject: &SubjectId) -> Vec<u8> {
        self.keys.tag("subject", subject.as_str())
    }

    /// Writes the WAL back into the main file and truncates it, so pages holding deleted data no
    /// longer linger in the `-wal` file. Returns `false` when a reader (possibly in another
    /// process) held an old snapshot and the WAL could not be truncated completely; a later
    /// checkpoint finishes the job.
    pub fn checkpoint(&self) -> Result<bool> {
        let conn = lock(&self.writer);
        self.checkpointer.exclusive(|| {
            db::with_retry(self.config.busy_budget, || {
                let busy: i64 =
                    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
                Ok(busy == 0)
            })
        })
    }

    /// Stops and joins the store's maintenance thread, if one runs (it checkpoints the WAL off
    /// the commit path and starts again on the next need). Dropping the store does the same.
    pub fn stop_maintenance(&self) {
        self.checkpointer.stop();
    }

    /// How many WAL checkpoints ran off the commit path and inline, and whether the
    /// maintenance thread runs.
    pub fn checkpoint_stats(&self) -> CheckpointStats {
        self.checkpointer.stats()
    }

    /// Runs SQLite's full `PRAGMA integrity_check`.
    pub fn integrity_check(&self) -> Result<()> {
        self.read(|c| {
            let r: String = c.query_row("PRAGMA integrity_check", [], |r| r.get(0))?;
            if r == "ok" {
                Ok(())
            } else {
                Err(StoreError::Corrupt {
                    quarantined_to: None,
                })
            }
        })
    }

    /// Plain-rusqlite access for tests that inspect or damage the file on purpose.
    #[doc(hidden)]
    pub fn raw_writer_for_tests<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        f(&lock(&self.writer))
    }
}

/// Verifies the key against the canary (or initializes a fresh store) without writing to an
/// existing file.
fn probe(conn: &mut Connection, config: &StoreConfig, root: &RootKey) -> Result<KeyRing> {
    loop {
        let version = schema::user_version(conn)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version == 0 && schema::is_empty_database(conn)? {
            db::apply_pragmas(conn, true, config.durability)?;
            let rng = ring::rand::SystemRandom::new();
            let mut salt = [0u8; 32];
            ring::rand::SecureRandom::fill(&rng, &mut salt).map_err(|_| StoreError::Random)?;
            let keys = KeyRing::derive(root, &salt);
            let canary = keys
                .canary
                .seal(&keys.rng, CANARY, CANARY_PLAINTEXT)
                .map_err(|_| StoreError::Random)?;
            let created = schema::create_fresh(conn, config.schema_target, |tx| {
                tx.execute(
                    "INSERT INTO store_meta (name, value) VALUES ('kdf_salt', ?1), ('canary', ?2)",
                    params![&salt[..], canary],
                )?;
                Ok(())
            })?;
            if created {
                return Ok(keys);
            }
            // Another connection initialized it first: verify like any existing store.
            continue;
        }
        if config.check_on_open {
            let r: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
            if r != "ok" {
                return Err(StoreError::Corrupt {
                    quarantined_to: None,
                });
            }
        }
        let has_meta: bool = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'store_meta'",
            [],
            |r| r.get::<_, i64>(0).map(|n| n == 1),
        )?;
        if !has_meta {
            return Err(StoreError::NotAStore);
        }
        let meta = |name: &str| -> Result<Vec<u8>> {
            conn.query_row(
                "SELECT value FROM store_meta WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?
            .ok_or(StoreError::NotAStore)
        };
        let salt = meta("kdf_salt")?;
        let canary = meta("canary")?;
        let keys = KeyRing::derive(root, &salt);
        return match keys.canary.open(CANARY, &canary) {
            Ok(p) if p.as_slice() == CANARY_PLAINTEXT => Ok(keys),
            _ => Err(StoreError::WrongKey),
        };
    }
}

fn key_row(subject_tag: &[u8], purpose: &str) -> Vec<u8> {
    let mut row = subject_tag.to_vec();
    row.push(0);
    row.extend_from_slice(purpose.as_bytes());
    row
}

fn wrap_binding(row: &[u8]) -> Binding<'_> {
    Binding {
        table: "data_keys",
        row,
        column: "wrapped",
        key_id: 0,
    }
}

/// Concatenates the parts of a row identity for associated data.
fn row_id(parts: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(parts.iter().map(|p| p.len() + 4).sum());
    for p in parts {
        v.extend_from_slice(&(p.len() as u32).to_be_bytes());
        v.extend_from_slice(p);
    }
    v
}

/// One write transaction; see [`Store::write`].
pub struct WriteTx<'a> {
    tx: &'a Transaction<'a>,
    store: &'a Store,
    unwrapped: &'a mut Vec<(i64, Arc<SealKey>)>,
}

impl std::fmt::Debug for WriteTx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteTx")
    }
}

impl WriteTx<'_> {
    /// The data key of `(subject, purpose)`, created if it does not exist yet.
    fn key_for(&mut self, subject_tag: &[u8], purpose: &Purpose) -> Result<(i64, Arc<SealKey>)> {
        // Looked up inside the transaction every time, so a key another process destroyed
        // meanwhile is never used to seal new data.
        let row: Option<(i64, Vec<u8>)> = self
            .tx
            .prepare_cached(
                "SELECT id, wrapped FROM data_keys WHERE subject_tag = ?1 AND purpose = ?2",
            )?
            .query_row(params![subject_tag, purpose.as_str()], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        if let Some((id, wrapped)) = row {
            if let Some(k) = lock(&self.store.data_keys).by_id.get(&id) {
                return Ok((id, k.clone()));
            }
            if let Some((_, k)) = self.unwrapped.iter().find(|(i, _)| *i == id) {
                return Ok((id, k.clone()));
            }
            let k = Arc::new(
                self.store
                    .unwrap_key(subject_tag, purpose.as_str(), &wrapped)?,
            );
            self.unwrapped.push((id, k.clone()));
            return Ok((id, k));
        }
        let keys = &self.store.keys;
        let raw = keys.new_data_key().map_err(|_| StoreError::Random)?;
        let krow = key_row(subject_tag, purpose.as_str());
        let wrapped = keys
            .wrap
            .seal(&keys.rng, wrap_binding(&krow), &raw[..])
            .map_err(|_| StoreError::Random)?;
        self.tx.execute(
            "INSERT INTO data_keys (subject_tag, purpose, wrapped) VALUES (?1, ?2, ?3)",
            params![subject_tag, purpose.as_str(), wrapped],
        )?;
        let id = self.tx.last_insert_rowid();
        let k = Arc::new(SealKey::from_bytes(&raw));
        self.unwrapped.push((id, k.clone()));
        Ok((id, k))
    }

    /// The data key with this id (for rows attached to an existing row).
    fn key_by_id(&mut self, key_id: i64) -> Result<Arc<SealKey>> {
        if let Some((_, k)) = self.unwrapped.iter().find(|(i, _)| *i == key_id) {
            return Ok(k.clone());
        }
        self.store.data_key(self.tx, key_id, &mut KeyMemo::new())
    }

    fn seal(&self, key: &SealKey, binding: Binding<'_>, plaintext: &[u8]) -> Result<Vec<u8>> {
        key.seal(&self.store.keys.rng, binding, plaintext)
            .map_err(|_| StoreError::Random)
    }
}

/// Maps an authentication failure of a sealed column to a typed error.
fn unauthentic(
    table: &'static str,
    column: &'static str,
) -> impl Fn(crypto::CryptoFail) -> StoreError {
    move |_| StoreError::Integrity { table, column }
}

/// Internals the benchmark's plaintext baseline reuses, so both sides encode the same bytes and
/// use the same schema. Not part of the API.
#[doc(hidden)]
pub mod bench_support {
    pub use super::schema::MIGRATIONS;
    use super::types::{CheckRecord, RawWindow};

    /// The two column plaintexts of a check, exactly as the store seals them.
    pub fn encode_check(c: &CheckRecord) -> (Vec<u8>, Vec<u8>) {
        (c.encode_features(), c.encode_detail())
    }

    /// The plaintext of a raw window, exactly as the store seals it.
    pub fn encode_raw(w: &RawWindow) -> Vec<u8> {
        w.encode()
    }

    /// Decodes what [`encode_check`] produced.
    pub fn decode_check(
        id: super::RecordId,
        kind: super::CheckKind,
        features: &[u8],
        detail: &[u8],
    ) -> Result<CheckRecord, super::DecodeError> {
        CheckRecord::decode(id, kind, features, detail)
    }

    /// Decodes what [`encode_raw`] produced.
    pub fn decode_raw(b: &[u8]) -> Result<RawWindow, super::DecodeError> {
        RawWindow::decode(b)
    }
}
