//! The storage trait and its two implementations: SQLite (embedded default) and PostgreSQL
//! (production). Both pass the same conformance suite ([`conformance`], run through
//! [`store_conformance_tests!`](crate::store_conformance_tests)).

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use vitalcore_protocol::{ConsentPurpose, FeatureRecord, OutcomeLabel};

pub mod conformance;
pub mod postgres;
pub mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Storage failures, without row values in their text.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Database unreachable, shutting down, or no connection free in time: retry later.
    #[error("database unavailable")]
    Unavailable,
    /// A unique key already exists.
    #[error("conflict")]
    Conflict,
    /// The addressed row does not exist.
    #[error("not found")]
    NotFound,
    /// A stored value could not be decoded.
    #[error("corrupt stored value: {0}")]
    Corrupt(&'static str),
    /// Any other database error (kind and SQLSTATE only).
    #[error("database error: {0}")]
    Backend(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable,
            sqlx::Error::RowNotFound => Self::NotFound,
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                if db.is_unique_violation() {
                    Self::Conflict
                } else if code.starts_with("08")
                    || code.starts_with("57P")
                    || code == "53300"
                    || code == "5"
                    || code == "6"
                {
                    // Connection exceptions, admin shutdown, too many connections, SQLite busy/locked.
                    Self::Unavailable
                } else {
                    Self::Backend(format!("sqlstate {code}"))
                }
            }
            sqlx::Error::Protocol(_) => Self::Unavailable,
            _ => Self::Backend(kind_of(&e).to_owned()),
        }
    }
}

fn kind_of(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => "decode",
        sqlx::Error::ColumnNotFound(_) | sqlx::Error::ColumnIndexOutOfBounds { .. } => "column",
        sqlx::Error::Configuration(_) => "configuration",
        sqlx::Error::TypeNotFound { .. } => "type",
        _ => "other",
    }
}

/// Result alias of this module.
pub type StoreResult<T> = Result<T, StoreError>;

/// Consent purposes as a bit set, so queries filter with one integer test.
pub fn purpose_bits(purposes: &[ConsentPurpose]) -> i64 {
    purposes.iter().fold(0, |acc, p| acc | purpose_bit(*p))
}

/// The bit of one purpose.
pub fn purpose_bit(p: ConsentPurpose) -> i64 {
    match p {
        ConsentPurpose::Research => 1,
        ConsentPurpose::ModelTraining => 2,
        ConsentPurpose::PartnerSharing => 4,
    }
}

/// A stored answer to an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswer {
    /// sha256 (hex) of the decompressed request body the key was first used with.
    pub request_digest: String,
    /// HTTP status sent.
    pub status: u16,
    /// Body sent.
    pub body: Vec<u8>,
}

/// Where one subject's slice of a batch is archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRef {
    /// sha256 (hex) of the pseudonymous subject id; the object key contains it.
    pub subject_digest: String,
    /// Object key in the archive store.
    pub object_key: String,
}

/// Everything one accepted batch writes, atomically.
#[derive(Debug, Clone)]
pub struct BatchWrite {
    /// Server batch id.
    pub batch_id: String,
    /// Uploading device.
    pub device_id: String,
    /// Client idempotency key.
    pub idempotency_key: String,
    /// sha256 (hex) of the decompressed body.
    pub request_digest: String,
    /// Region of the batch.
    pub region: String,
    /// Consent bits ([`purpose_bits`]).
    pub purposes: i64,
    /// Receive time, seconds since the epoch.
    pub received_at: i64,
    /// Records.
    pub records: Vec<FeatureRecord>,
    /// Labels.
    pub labels: Vec<OutcomeLabel>,
    /// Archived objects (already written) this batch references.
    pub archive: Vec<ArchiveRef>,
}

/// Rows a committed batch actually inserted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InsertCounts {
    /// Records inserted.
    pub records_stored: u32,
    /// Records skipped because (subject, record id) was already stored.
    pub records_duplicate: u32,
    /// Labels inserted.
    pub labels_stored: u32,
}

/// Builds the answer stored with the idempotency key from what was inserted.
pub type AnswerFn<'a> = &'a (dyn Fn(InsertCounts) -> (u16, Vec<u8>) + Send + Sync);

/// Result of [`Store::commit_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// This call wrote the batch; the answer was stored with the key.
    Committed(StoredAnswer),
    /// The key was already used; nothing was written.
    Existing(StoredAnswer),
}

/// A stored feature record with its consent bits and sequence number.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// Monotonic id (pagination cursor).
    pub seq: i64,
    /// Consent bits.
    pub purposes: i64,
    /// The record.
    pub record: FeatureRecord,
    /// Its outcome label, if any.
    pub label: Option<String>,
}

/// Which records a query returns.
#[derive(Debug, Clone)]
pub struct RecordQuery {
    /// Only this study (all studies when `None`).
    pub study: Option<String>,
    /// Only records whose consent includes this purpose.
    pub purpose: ConsentPurpose,
    /// Only records with `seq` greater than this (pagination).
    pub after_seq: i64,
    /// At most this many.
    pub limit: i64,
}

/// Deleted by an erasure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureCounts {
    /// Records deleted.
    pub records: u64,
    /// Labels deleted.
    pub labels: u64,
    /// Archive object keys whose references were deleted (the caller deletes the objects).
    pub object_keys: Vec<String>,
}

/// An erasure audit entry: counts and time only, never the subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Audit id.
    pub audit_id: String,
    /// Time, seconds since the epoch.
    pub at: i64,
    /// Records deleted.
    pub records_deleted: i64,
    /// Labels deleted.
    pub labels_deleted: i64,
    /// Archived objects deleted.
    pub objects_deleted: i64,
}

/// A published model version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRow {
    /// Model name.
    pub name: String,
    /// Semantic version string.
    pub version: String,
    /// The [`vitalcore_protocol::SignedManifest`] JSON served to devices.
    pub signed_manifest: String,
    /// Archive key of the ONNX artifact.
    pub artifact_key: String,
    /// Share of devices (0..=100) that get this version.
    pub rollout_percent: i64,
    /// Publication time, seconds since the epoch.
    pub created_at: i64,
}

/// What a partner API key may read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerScopes {
    /// Studies the key may read.
    pub studies: Vec<String>,
    /// Feature names the key may see.
    pub features: Vec<String>,
    /// `true`: per-record access; `false`: aggregates only.
    pub records: bool,
}

/// A partner key as stored (hash only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerKey {
    /// Public id of the key.
    pub key_id: String,
    /// Its scopes.
    pub scopes: PartnerScopes,
}

/// Row counts, for readiness detail and tests that prove nothing was stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    /// Enrolled devices.
    pub devices: i64,
    /// Batches.
    pub batches: i64,
    /// Records.
    pub records: i64,
    /// Labels.
    pub labels: i64,
    /// Idempotency records.
    pub idempotency: i64,
    /// Archive references.
    pub archive_refs: i64,
}

/// The storage contract. Implementations must pass [`conformance`].
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Applies pending numbered migrations (idempotent, safe with several nodes starting).
    async fn migrate(&self) -> StoreResult<()>;
    /// A round trip to the database (readiness).
    async fn ping(&self) -> StoreResult<()>;
    /// Row counts.
    async fn counts(&self) -> StoreResult<StoreCounts>;

    /// Registers a device by the hash of its credential.
    async fn insert_device(
        &self,
        device_id: &str,
        credential_hash: &str,
        at: i64,
    ) -> StoreResult<()>;
    /// The device id owning a credential hash.
    async fn device_by_credential(&self, credential_hash: &str) -> StoreResult<Option<String>>;

    /// The stored answer for a device's idempotency key.
    async fn idempotent_answer(
        &self,
        device_id: &str,
        key: &str,
    ) -> StoreResult<Option<StoredAnswer>>;
    /// Writes the batch atomically: idempotency record (with the answer `answer` builds),
    /// batch, records, labels and archive references, or nothing. When the key is already
    /// taken, writes nothing and returns the stored answer.
    async fn commit_batch(
        &self,
        batch: &BatchWrite,
        answer: AnswerFn<'_>,
    ) -> StoreResult<CommitOutcome>;
    /// Records matching a query, ordered by `seq`, labels joined.
    async fn records(&self, query: &RecordQuery) -> StoreResult<Vec<StoredRecord>>;

    /// Deletes a subject's records, labels and archive references and writes an audit entry,
    /// in one transaction. Returns what went (the caller then deletes the objects).
    async fn erase_subject(
        &self,
        subject: &str,
        subject_digest: &str,
        audit_id: &str,
        at: i64,
    ) -> StoreResult<ErasureCounts>;
    /// Erasure audit trail, oldest first.
    async fn audit_entries(&self) -> StoreResult<Vec<AuditEntry>>;

    /// Adds a model version ([`StoreError::Conflict`] if it exists).
    async fn insert_model(&self, row: &ModelRow) -> StoreResult<()>;
    /// All versions of a model.
    async fn models(&self, name: &str) -> StoreResult<Vec<ModelRow>>;
    /// Changes a version's rollout share ([`StoreError::NotFound`] if absent).
    async fn set_rollout(&self, name: &str, version: &str, percent: i64) -> StoreResult<()>;

    /// Adds a partner key by hash.
    async fn insert_partner_key(
        &self,
        key: &PartnerKey,
        key_hash: &str,
        at: i64,
    ) -> StoreResult<()>;
    /// The partner key with this hash.
    async fn partner_key(&self, key_hash: &str) -> StoreResult<Option<PartnerKey>>;
}

/// Opens the store a URL names (`sqlite://...` or `postgres://...`) and migrates it.
pub async fn open(
    url: &str,
    max_connections: u32,
    acquire_timeout: std::time::Duration,
) -> StoreResult<Arc<dyn Store>> {
    let store: Arc<dyn Store> =
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Arc::new(PostgresStore::connect(url, max_connections, acquire_timeout).await?)
        } else if url.starts_with("sqlite:") {
            Arc::new(SqliteStore::connect(url, acquire_timeout).await?)
        } else {
            return Err(StoreError::Backend(
                "unsupported database url scheme".into(),
            ));
        };
    store.migrate().await?;
    Ok(store)
}

pub(crate) fn features_to_json(r: &FeatureRecord) -> String {
    // A BTreeMap<String, f64> of finite values always serializes.
    serde_json::to_string(&r.features).unwrap_or_else(|_| "{}".into())
}

pub(crate) fn features_from_json(s: &str) -> StoreResult<std::collections::BTreeMap<String, f64>> {
    serde_json::from_str(s).map_err(|_| StoreError::Corrupt("features"))
}
