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
    /// A subject the request names is bound to another possession proof; nothing was written.
    #[error("subject bound to another proof")]
    Forbidden,
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

/// A subject a batch names with the hash of its possession proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectProof {
    /// sha256 (hex) of the pseudonymous subject id.
    pub subject_digest: String,
    /// sha256 (hex) of the proof the request carried (the proof itself is never stored).
    pub proof_hash: String,
}

/// Everything one accepted batch writes, atomically.
#[derive(Debug, Clone)]
pub struct BatchWrite {
    /// Server batch id (random; it names no device).
    pub batch_id: String,
    /// Uploading device: keys the idempotency record only (purged after the idempotency
    /// window), never stored with the batch or its rows.
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
    /// Every subject the batch names, with its proof hash: the first accepted proof binds the
    /// subject; a batch naming a subject bound to another proof writes nothing
    /// ([`StoreError::Forbidden`]).
    pub subjects: Vec<SubjectProof>,
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
    /// Batches (with their idempotency records) deleted because nothing of them was left.
    pub batches: u64,
}

/// What an erasure asks for.
#[derive(Debug, Clone)]
pub struct ErasureWrite<'a> {
    /// The pseudonymous subject id.
    pub subject: &'a str,
    /// sha256 (hex) of it.
    pub subject_digest: &'a str,
    /// sha256 (hex) of the proof the request carried, if any. A bound subject is erased only
    /// with its own proof ([`StoreError::Forbidden`] otherwise, nothing deleted).
    pub proof_hash: Option<&'a str>,
    /// Id of the audit entry.
    pub audit_id: &'a str,
    /// Time, seconds since the epoch.
    pub at: i64,
}

/// A refused attempt on a subject bound to another proof: who (the device) and what, never
/// the subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalEntry {
    /// Audit id.
    pub audit_id: String,
    /// Time, seconds since the epoch.
    pub at: i64,
    /// The device that tried.
    pub device_id: String,
    /// `batch` or `erasure`.
    pub action: String,
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
    /// After this time (seconds since the epoch) the key is refused.
    pub expires_at: i64,
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

    /// Registers a device by the hash of its credential, valid until `expires_at`.
    async fn insert_device(
        &self,
        device_id: &str,
        credential_hash: &str,
        at: i64,
        expires_at: i64,
    ) -> StoreResult<()>;
    /// The device id owning a credential hash, if the credential is neither revoked nor
    /// expired at `now`.
    async fn device_by_credential(
        &self,
        credential_hash: &str,
        now: i64,
    ) -> StoreResult<Option<String>>;
    /// Revokes a device's credential from `at` on ([`StoreError::NotFound`] if unknown).
    async fn revoke_device(&self, device_id: &str, at: i64) -> StoreResult<()>;

    /// The stored answer for a device's idempotency key.
    async fn idempotent_answer(
        &self,
        device_id: &str,
        key: &str,
    ) -> StoreResult<Option<StoredAnswer>>;
    /// Writes the batch atomically: subject bindings, idempotency record (with the answer
    /// `answer` builds), batch, records, labels and archive references, or nothing. When the
    /// key is already taken, writes nothing and returns the stored answer; when a subject is
    /// bound to another proof, writes nothing and fails with [`StoreError::Forbidden`].
    async fn commit_batch(
        &self,
        batch: &BatchWrite,
        answer: AnswerFn<'_>,
    ) -> StoreResult<CommitOutcome>;
    /// Whether any of `subjects` is bound to another proof than the one given (a read-only
    /// early check; [`Store::commit_batch`] decides inside its transaction).
    async fn proof_mismatch(&self, subjects: &[SubjectProof]) -> StoreResult<bool>;
    /// Records matching a query, ordered by `seq`, labels joined.
    async fn records(&self, query: &RecordQuery) -> StoreResult<Vec<StoredRecord>>;

    /// Deletes a subject's records, labels and archive references, the batches and
    /// idempotency records left empty by that, and writes an audit entry, in one
    /// transaction; then makes the deleted bytes unrecoverable from the database files where
    /// the engine allows it (SQLite: `secure_delete` and a TRUNCATE checkpoint). The subject's
    /// binding stays (a digest and a proof hash, nothing else), so nobody else can take the
    /// pseudonym over. Returns what went (the caller then deletes the objects).
    async fn erase_subject(&self, e: &ErasureWrite<'_>) -> StoreResult<ErasureCounts>;
    /// Deletes idempotency records created before `before` (the idempotency window): after
    /// that nothing the server stores ties a batch to a device.
    async fn purge_idempotency(&self, before: i64) -> StoreResult<u64>;
    /// Records a refused attempt on a subject bound to another proof.
    async fn insert_refusal(&self, entry: &RefusalEntry) -> StoreResult<()>;
    /// Refused attempts, oldest first.
    async fn refusals(&self) -> StoreResult<Vec<RefusalEntry>>;
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
    /// The partner key with this hash, if neither revoked nor expired at `now`.
    async fn partner_key(&self, key_hash: &str, now: i64) -> StoreResult<Option<PartnerKey>>;
    /// Revokes a partner key from `at` on ([`StoreError::NotFound`] if unknown).
    async fn revoke_partner_key(&self, key_id: &str, at: i64) -> StoreResult<()>;
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

/// Per batch touched by an erasure: (records, labels) deleted from it; batches that only had an
/// archived object of the subject appear with (0, 0).
pub(crate) fn touched_batches(
    records: &[String],
    labels: &[String],
    refs: &[(String, String)],
) -> std::collections::BTreeMap<String, (i64, i64)> {
    let mut out: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    for b in records {
        out.entry(b.clone()).or_default().0 += 1;
    }
    for b in labels {
        out.entry(b.clone()).or_default().1 += 1;
    }
    for (_, b) in refs {
        out.entry(b.clone()).or_default();
    }
    out
}

pub(crate) fn features_to_json(r: &FeatureRecord) -> String {
    // A BTreeMap<String, f64> of finite values always serializes.
    serde_json::to_string(&r.features).unwrap_or_else(|_| "{}".into())
}

pub(crate) fn features_from_json(s: &str) -> StoreResult<std::collections::BTreeMap<String, f64>> {
    serde_json::from_str(s).map_err(|_| StoreError::Corrupt("features"))
}
