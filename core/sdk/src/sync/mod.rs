//! Upload of consented, anonymized outbox records to the backend, exactly once in effect.
//!
//! The protocol with the store: a batch is formed by claiming outbox rows under a fresh batch
//! id (persisted) *before* the first byte is sent; the idempotency key is that batch id, so a
//! retry — in this run, after a cut connection, or after the app was killed — re-sends the same
//! rows under the same key, and the server answers with its stored acknowledgement instead of
//! storing twice. Rows leave the outbox only when an acknowledgement arrived.
//! Anonymization is deterministic (keyed HMAC, coarsening), so a re-sent batch is byte-identical.
//!
//! Outcome labels ride the same outbox: recording an allow-listed label queues a row under the
//! check's purpose, so it is consent-gated, claimed, retried and acknowledged like a record,
//! arrives exactly once whether its check was already synced or not, and names its check by the
//! same pseudonym and keyed record id (both derived from the check id, not the outbox row).

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flate2::write::GzEncoder;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use vitalcore_protocol::{
    region_statement_message, BatchAck, EnrollRequest, EnrollResponse, ErasureReceipt,
    ErasureRequest, FeatureRecord, OutcomeLabel, RegionStatement, SyncBatch, BATCH_SCHEMA,
};

use crate::privacy::{self, Anonymizer, PrivacyError};
use crate::store::{OutboxRecord, Purpose, RecordId, Store, StoreError, SubjectId};

mod models;
pub use models::ModelPoll;

/// Why a sync run stopped.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The server refused the device credential.
    #[error("the server refused the device credential")]
    Unauthorized,
    /// The endpoint serves another data region than the device's, or (with pinned region
    /// keys) could not prove which region it serves; nothing was sent.
    #[error("endpoint serves region {actual}, the device belongs to {expected}")]
    WrongRegion {
        /// The device's region.
        expected: String,
        /// What the endpoint answered, or [`UNVERIFIED_REGION`] when its region statement
        /// was not signed by a pinned key over this run's nonce.
        actual: String,
    },
    /// The endpoint could not be reached or answered nonsense; retry later.
    #[error("network: {0}")]
    Network(String),
    /// The server kept failing; the batch keeps its key and is retried on the next run.
    #[error("server unavailable, retry after {retry_after_ms} ms")]
    Unavailable {
        /// Suggested wait.
        retry_after_ms: u64,
    },
    /// The local store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Privacy preparation failed for a reason other than a bad record.
    #[error("privacy: {0}")]
    Privacy(#[from] PrivacyError),
    /// The configuration cannot work.
    #[error("invalid sync configuration: {0}")]
    Config(&'static str),
    /// No sync endpoint (or no region) is configured, so nothing can be sent.
    #[error("no sync endpoint and region are configured")]
    NoEndpoint,
    /// The device holds no credential and no enrollment token was given to obtain one.
    #[error("the device is not enrolled and no enrollment token is configured")]
    NotEnrolled,
    /// The app's Wi-Fi-only or charging-only policy holds network use right now.
    #[error("held by the Wi-Fi / charging policy")]
    HeldByPolicy,
    /// The server has no model by this name for this device.
    #[error("no model by this name is published for this device")]
    ModelNotFound,
}

/// `actual` of [`SyncError::WrongRegion`] when the endpoint's region statement did not verify.
pub const UNVERIFIED_REGION: &str = "unverified";

/// Sync settings; every default is in the setter's doc.
#[derive(Clone)]
pub struct SyncConfig {
    endpoint: String,
    region: String,
    credential: String,
    purposes: Vec<Purpose>,
    max_records: usize,
    max_bytes: usize,
    max_attempts: u32,
    base_backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
    wifi_only: bool,
    charging_only: bool,
    region_keys: Vec<[u8; 32]>,
}

impl std::fmt::Debug for SyncConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncConfig")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("credential", &"<redacted>")
            .field("max_records", &self.max_records)
            .field("region_keys", &self.region_keys.len())
            .finish_non_exhaustive()
    }
}

impl SyncConfig {
    /// `endpoint` is the base URL of the device's region (for example `https://eu.example`);
    /// `credential` the bearer token from enrollment; `purposes` the upload purposes the app
    /// knows (only those with current consent are sent).
    pub fn new(
        endpoint: impl Into<String>,
        region: impl Into<String>,
        credential: impl Into<String>,
        purposes: Vec<Purpose>,
    ) -> Self {
        Self {
            endpoint: endpoint.into().trim_end_matches('/').to_owned(),
            region: region.into(),
            credential: credential.into(),
            purposes,
            max_records: 500,
            max_bytes: 512 * 1024,
            max_attempts: 5,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
            wifi_only: false,
            charging_only: false,
            region_keys: Vec::new(),
        }
    }
    /// Most records per batch; default 500.
    pub fn max_records(mut self, n: usize) -> Self {
        self.max_records = n.max(1);
        self
    }
    /// Most uncompressed JSON bytes per batch (a single larger record still goes alone);
    /// default 512 KiB.
    pub fn max_bytes(mut self, n: usize) -> Self {
        self.max_bytes = n;
        self
    }
    /// Attempts per batch within one run before giving up until the next run; default 5.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
    /// Backoff base and cap (full jitter: a uniform wait in `[0, min(cap, base * 2^n)]`);
    /// defaults 500 ms and 60 s. `Retry-After` from the server is a floor, capped by `cap`.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.base_backoff = base;
        self.max_backoff = cap;
        self
    }
    /// Per-request timeout; default 30 s.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
    /// Upload only on Wi-Fi; default off.
    pub fn wifi_only(mut self, on: bool) -> Self {
        self.wifi_only = on;
        self
    }
    /// Upload only while charging; default off.
    pub fn charging_only(mut self, on: bool) -> Self {
        self.charging_only = on;
        self
    }
    /// Ed25519 public keys (raw 32 bytes) of which one must sign the endpoint's region
    /// statement (`GET /v1/region`, over a fresh nonce) before anything is sent. Default:
    /// none: the region is read from the unsigned `GET /readyz`, which only TLS (a
    /// certificate for the region's host name) authenticates.
    pub fn region_keys(mut self, keys: Vec<[u8; 32]>) -> Self {
        self.region_keys = keys;
        self
    }
}

/// What the app reports about the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceConditions {
    /// On an unmetered (Wi-Fi) network.
    pub wifi: bool,
    /// Charging.
    pub charging: bool,
}

/// Outcome of one [`SyncClient::sync_now`] run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Batches acknowledged by the server.
    pub batches_acked: usize,
    /// Records deleted from the outbox after acknowledgement.
    pub records_acked: usize,
    /// Outcome labels deleted from the outbox after acknowledgement (not in `records_acked`).
    pub labels_acked: usize,
    /// Records the server already held (a replay or an earlier partial success).
    pub records_duplicate: usize,
    /// Records set aside as poison.
    pub records_quarantined: usize,
    /// The run did nothing because of the Wi-Fi / charging policy.
    pub held_by_policy: bool,
    /// Bytes sent on the wire (compressed request bodies).
    pub bytes_sent: u64,
}

/// The device's sync client. One run at a time; cheap to share behind an `Arc`.
pub struct SyncClient {
    store: Arc<Store>,
    subject: SubjectId,
    anonymizer: Anonymizer,
    config: SyncConfig,
    http: reqwest::Client,
    conditions: Mutex<DeviceConditions>,
    region_verified: Mutex<bool>,
    run: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for SyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncClient")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One outbox row as it goes on the wire.
enum Wire {
    Record(FeatureRecord),
    Label(OutcomeLabel),
}

impl Wire {
    fn encoded_len(&self) -> usize {
        match self {
            Wire::Record(r) => serde_json::to_vec(r).map(|v| v.len()).unwrap_or(0),
            Wire::Label(l) => serde_json::to_vec(l).map(|v| v.len()).unwrap_or(0),
        }
    }
}

enum Sent {
    Acked(BatchAck),
    /// The server rejected the content (4xx other than auth/region/overload).
    Rejected,
    /// Still not through after the allowed attempts.
    GaveUp(u64),
}

impl SyncClient {
    /// Builds the client; nothing is sent until [`SyncClient::sync_now`].
    pub fn new(
        store: Arc<Store>,
        subject: SubjectId,
        anonymizer: Anonymizer,
        config: SyncConfig,
    ) -> Result<Self, SyncError> {
        if config.endpoint.is_empty() || config.region.is_empty() {
            return Err(SyncError::Config("endpoint and region are required"));
        }
        let http = http_client(config.timeout)?;
        Ok(Self {
            store,
            subject,
            anonymizer,
            config,
            http,
            conditions: Mutex::new(DeviceConditions {
                wifi: true,
                charging: true,
            }),
            region_verified: Mutex::new(false),
            run: tokio::sync::Mutex::new(()),
        })
    }

    /// The app reports network and charging state (the SDK cannot see them portably).
    pub fn set_conditions(&self, c: DeviceConditions) {
        if let Ok(mut g) = self.conditions.lock() {
            *g = c;
        }
    }

    /// Whether the Wi-Fi / charging policy allows network use under the reported conditions.
    pub fn policy_allows(&self) -> bool {
        let c = self
            .conditions
            .lock()
            .map(|g| *g)
            .unwrap_or(DeviceConditions {
                wifi: false,
                charging: false,
            });
        (c.wifi || !self.config.wifi_only) && (c.charging || !self.config.charging_only)
    }

    /// Uploads everything due now: first batches left in flight by an earlier run (same key),
    /// then new batches. Returns what happened; a batch that could not get through keeps its
    /// key and rows for the next run.
    pub async fn sync_now(&self) -> Result<SyncReport, SyncError> {
        self.sync_purposes(&self.config.purposes).await
    }

    /// [`SyncClient::sync_now`] for the purposes in `candidates` instead of the configured ones
    /// (still only those with current consent).
    ///
    /// With local differential privacy, a purpose whose budget is spent keeps its remaining
    /// records on the device; the run uploads everything else and then fails with
    /// [`PrivacyError::BudgetExhausted`].
    pub async fn sync_purposes(&self, candidates: &[Purpose]) -> Result<SyncReport, SyncError> {
        let _one_run = self.run.lock().await;
        let mut report = SyncReport::default();
        if !self.policy_allows() {
            report.held_by_policy = true;
            return Ok(report);
        }
        self.verify_region().await?;
        let mut consented = privacy::consented(&self.store, &self.subject, candidates)?;
        let mut budget_spent = false;

        for (batch, rows) in self.store.outbox_in_flight_of(&self.subject)? {
            if rows.iter().any(|r| !consented.contains(&r.purpose)) {
                // Consent changed while in flight: dissolve; the rows go out again only under
                // consent (withdrawal erases them in the same step anyway).
                self.store.outbox_fail(&batch, now_ms(), u32::MAX)?;
                continue;
            }
            self.deliver(&batch, &rows, &mut report).await?;
        }

        loop {
            let due = self.store.outbox_due_of(
                &self.subject,
                &consented,
                now_ms(),
                self.config.max_records,
            )?;
            let Some(first) = due.first() else {
                break;
            };
            let purpose = first.purpose.clone();
            let mut ids = Vec::new();
            let mut label_ids = Vec::new();
            let mut bytes = 0usize;
            for r in due.iter().filter(|r| r.purpose == purpose) {
                match self.wire(r) {
                    Ok(w) => {
                        let n = w.encoded_len();
                        if !(ids.is_empty() && label_ids.is_empty())
                            && bytes + n > self.config.max_bytes
                        {
                            break;
                        }
                        bytes += n;
                        match w {
                            Wire::Record(_) => ids.push(r.id),
                            Wire::Label(_) => label_ids.push(r.id),
                        }
                    }
                    Err(PrivacyError::MalformedRecord | PrivacyError::NoFeatures) => {
                        self.store.outbox_quarantine(&r.id)?;
                        report.records_quarantined += 1;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if ids.is_empty() && label_ids.is_empty() {
                continue;
            }
            if let (Some(dp), false) = (self.anonymizer.local_dp(), ids.is_empty()) {
                // Charged once per record, before its noised values can leave the device.
                // Labels carry no measured value, so they spend no budget.
                let (allowed, refused) = self.store.charge_epsilon(
                    &self.subject,
                    &purpose,
                    &ids,
                    dp.record_epsilon(),
                    dp.budget(),
                )?;
                if refused {
                    budget_spent = true;
                    consented.retain(|p| *p != purpose);
                }
                ids = allowed;
            }
            ids.extend(label_ids);
            if ids.is_empty() {
                continue;
            }
            // The key is fixed and persisted here, before anything is sent.
            let (batch, _) = self.store.outbox_claim(&ids)?;
            let rows = self
                .store
                .outbox_in_flight_of(&self.subject)?
                .into_iter()
                .find(|(b, _)| *b == batch)
                .map(|(_, rows)| rows)
                .unwrap_or_default();
            if rows.is_empty() {
                // Claimed by another run in between: leave the rest to it.
                break;
            }
            self.deliver(&batch, &rows, &mut report).await?;
        }
        if budget_spent {
            // Everything else went out; the records over budget stay queued.
            return Err(PrivacyError::BudgetExhausted.into());
        }
        Ok(report)
    }

    fn wire(&self, r: &OutboxRecord) -> Result<Wire, PrivacyError> {
        // The wire id derives from the check, so a label queued after its check was synced
        // (and the check's row acknowledged and gone) still names the same record.
        let record_key = r.check_id.as_ref().unwrap_or(&r.id).as_bytes();
        if privacy::is_label_payload(&r.payload) {
            if r.check_id.is_none() {
                return Err(PrivacyError::MalformedRecord);
            }
            return self
                .anonymizer
                .label(&self.subject, &r.purpose, record_key, &r.payload)
                .map(Wire::Label);
        }
        self.anonymizer
            .anonymize_as(
                &self.subject,
                &r.purpose,
                r.id.as_bytes(),
                record_key,
                &r.payload,
            )
            .map(Wire::Record)
    }

    /// Sends one claimed batch until acknowledged, rejected, or out of attempts.
    async fn deliver(
        &self,
        batch: &RecordId,
        rows: &[OutboxRecord],
        report: &mut SyncReport,
    ) -> Result<(), SyncError> {
        match self.send_batch(batch, rows, report).await? {
            Sent::Acked(ack) => {
                let labels = rows
                    .iter()
                    .filter(|r| privacy::is_label_payload(&r.payload))
                    .count();
                let acked = self.store.outbox_ack(batch)?;
                report.records_acked += acked.saturating_sub(labels);
                report.labels_acked += acked.min(labels);
                report.batches_acked += 1;
                report.records_duplicate += ack.records_duplicate as usize;
                Ok(())
            }
            Sent::Rejected if rows.len() == 1 => {
                self.store.outbox_quarantine(&rows[0].id)?;
                report.records_quarantined += 1;
                Ok(())
            }
            Sent::Rejected => {
                // Nothing of a rejected batch is stored: find the bad record by sending each
                // alone, so it alone is quarantined and the rest go through.
                self.store.outbox_fail(batch, now_ms(), u32::MAX)?;
                for r in rows {
                    let (single, n) = self.store.outbox_claim(std::slice::from_ref(&r.id))?;
                    if n == 1 {
                        Box::pin(self.deliver(&single, std::slice::from_ref(r), report)).await?;
                    }
                }
                Ok(())
            }
            Sent::GaveUp(retry_after_ms) => Err(SyncError::Unavailable { retry_after_ms }),
        }
    }

    fn body(&self, batch: &RecordId, rows: &[OutboxRecord]) -> Result<Vec<u8>, SyncError> {
        let purpose = &rows[0].purpose;
        let (wire_purpose, _) = privacy::wire_purpose(purpose)?;
        let mut records = Vec::new();
        let mut labels: Vec<OutcomeLabel> = Vec::new();
        for r in rows {
            match self.wire(r)? {
                Wire::Record(w) => records.push(w),
                // The server keeps the first label of a record and refuses a batch naming a
                // record twice; a later one for the same check is acknowledged with the batch.
                Wire::Label(l) => {
                    if !labels.iter().any(|x| x.record_id == l.record_id) {
                        labels.push(l);
                    }
                }
            }
        }
        // The possession proof of every subject named (one per purpose in practice).
        let subject_proofs = records
            .iter()
            .map(|r| &r.subject)
            .chain(labels.iter().map(|l| &l.subject))
            .map(|s| (s.clone(), self.anonymizer.subject_proof(s)))
            .collect();
        let b = SyncBatch {
            schema: BATCH_SCHEMA,
            idempotency_key: hex::encode(batch.as_bytes()),
            region: self.config.region.clone(),
            consent: vec![wire_purpose],
            records,
            labels,
            subject_proofs,
        };
        let json = serde_json::to_vec(&b).map_err(|_| SyncError::Config("batch encoding"))?;
        let mut gz = GzEncoder::new(
            Vec::with_capacity(json.len() / 3),
            flate2::Compression::default(),
        );
        gz.write_all(&json)
            .and_then(|_| gz.finish())
            .map_err(|_| SyncError::Config("compression"))
    }

    async fn send_batch(
        &self,
        batch: &RecordId,
        rows: &[OutboxRecord],
        report: &mut SyncReport,
    ) -> Result<Sent, SyncError> {
        let body = match self.body(batch, rows) {
            Ok(b) => b,
            Err(SyncError::Privacy(_)) => return Ok(Sent::Rejected),
            Err(e) => return Err(e),
        };
        let url = format!("{}/v1/batches", self.config.endpoint);
        let mut last_wait = 0u64;
        for attempt in 0..self.config.max_attempts {
            let res = self
                .http
                .post(&url)
                .header(AUTHORIZATION, format!("Bearer {}", self.config.credential))
                .header(CONTENT_TYPE, "application/json")
                .header(CONTENT_ENCODING, "gzip")
                .body(body.clone())
                .send()
                .await;
            report.bytes_sent += body.len() as u64;
            let retry_after = match res {
                Ok(resp) => {
                    let status = resp.status();
                    let ra = retry_after_secs(resp.headers());
                    if status.is_success() {
                        match read_json::<BatchAck>(resp).await {
                            Some(ack) => return Ok(Sent::Acked(ack)),
                            // Cut during the answer: the server may have committed; the
                            // same key makes the retry safe.
                            None => None,
                        }
                    } else {
                        match status {
                            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                                return Err(SyncError::Unauthorized)
                            }
                            StatusCode::MISDIRECTED_REQUEST => {
                                return Err(SyncError::WrongRegion {
                                    expected: self.config.region.clone(),
                                    actual: "other".into(),
                                })
                            }
                            StatusCode::BAD_REQUEST
                            | StatusCode::UNPROCESSABLE_ENTITY
                            | StatusCode::PAYLOAD_TOO_LARGE
                            | StatusCode::CONFLICT => return Ok(Sent::Rejected),
                            _ => ra,
                        }
                    }
                }
                Err(_) => None,
            };
            if attempt + 1 == self.config.max_attempts {
                break;
            }
            let wait = self.backoff(attempt, retry_after);
            last_wait = wait.as_millis() as u64;
            tokio::time::sleep(wait).await;
        }
        Ok(Sent::GaveUp(last_wait))
    }

    fn backoff(&self, attempt: u32, retry_after: Option<u64>) -> Duration {
        full_jitter(
            self.config.base_backoff,
            self.config.max_backoff,
            attempt,
            retry_after,
            unit_random(),
        )
    }

    /// Asks the endpoint which region it serves and refuses a mismatch before any upload
    /// (and before any erasure request, which carries a pseudonym); see [`check_region`].
    async fn verify_region(&self) -> Result<(), SyncError> {
        if self.region_verified.lock().map(|g| *g).unwrap_or(false) {
            return Ok(());
        }
        check_region(
            &self.http,
            &self.config.endpoint,
            &self.config.region,
            &self.config.region_keys,
        )
        .await?;
        if let Ok(mut g) = self.region_verified.lock() {
            *g = true;
        }
        Ok(())
    }

    /// Withdraws consent for `purpose`: records the decision (uploads stop at once: every
    /// batch checks consent), erases queued records for it, and asks the server to erase the
    /// subject's data under that purpose's pseudonym.
    pub async fn revoke(
        &self,
        purpose: &Purpose,
        policy_version: &str,
    ) -> Result<Option<ErasureReceipt>, SyncError> {
        let _one_run = self.run.lock().await;
        self.store.record_consent(
            &self.subject,
            &crate::store::ConsentDecision {
                purpose: purpose.clone(),
                granted: false,
                at_ms: now_ms(),
                policy_version: policy_version.to_owned(),
            },
        )?;
        self.store.erase_purpose(&self.subject, purpose)?;
        self.request_erasure(purpose).await.map(Some)
    }

    /// The subject's pseudonym for `purpose`, as the server knows it.
    pub fn pseudonym(&self, purpose: &Purpose) -> String {
        self.anonymizer.pseudonym(&self.subject, purpose)
    }

    /// The possession proof of `pseudonym` under this client's pseudonym key (see
    /// [`Anonymizer::subject_proof`]).
    pub fn subject_proof(&self, pseudonym: &str) -> String {
        self.anonymizer.subject_proof(pseudonym)
    }

    /// `POST /v1/erasure` for this subject's pseudonym under `purpose`.
    pub async fn request_erasure(&self, purpose: &Purpose) -> Result<ErasureReceipt, SyncError> {
        self.send_erasure(&self.pseudonym(purpose)).await
    }

    /// `POST /v1/erasure` for a pseudonym of this client's pseudonym key, with its proof.
    pub async fn send_erasure(&self, pseudonym: &str) -> Result<ErasureReceipt, SyncError> {
        let proof = self.subject_proof(pseudonym);
        self.send_erasure_proved(pseudonym, Some(&proof)).await
    }

    /// `POST /v1/erasure` for a pseudonym and its proof computed earlier (kept while the
    /// device was offline, possibly under a pseudonym secret that was shredded since). A
    /// request stored before proofs existed has none; the server accepts that only for a
    /// subject it never bound.
    ///
    /// Errors: [`SyncError::Unauthorized`] when the credential is refused or the server holds
    /// the subject under another proof (403).
    pub async fn send_erasure_proved(
        &self,
        pseudonym: &str,
        proof: Option<&str>,
    ) -> Result<ErasureReceipt, SyncError> {
        // A pseudonym goes only to the endpoint of the device's own region.
        self.verify_region().await?;
        let req = ErasureRequest {
            subject: pseudonym.to_owned(),
            proof: proof.map(str::to_owned),
        };
        let url = format!("{}/v1/erasure", self.config.endpoint);
        for attempt in 0..self.config.max_attempts {
            let res = self
                .http
                .post(&url)
                .header(AUTHORIZATION, format!("Bearer {}", self.config.credential))
                .header(CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&req).map_err(|_| SyncError::Config("erasure encoding"))?)
                .send()
                .await;
            let ra = match res {
                Ok(r) if r.status().is_success() => {
                    if let Some(receipt) = read_json::<ErasureReceipt>(r).await {
                        return Ok(receipt);
                    }
                    None
                }
                Ok(r)
                    if r.status() == StatusCode::UNAUTHORIZED
                        || r.status() == StatusCode::FORBIDDEN =>
                {
                    return Err(SyncError::Unauthorized)
                }
                Ok(r) => retry_after_secs(r.headers()),
                Err(_) => None,
            };
            if attempt + 1 < self.config.max_attempts {
                tokio::time::sleep(self.backoff(attempt, ra)).await;
            }
        }
        Err(SyncError::Unavailable {
            retry_after_ms: self.config.max_backoff.as_millis() as u64,
        })
    }
}

/// Refuses `endpoint` unless it serves `region`. With pinned `region_keys` the endpoint must
/// answer `GET /v1/region` with a statement signed by one of them over a nonce chosen now, so
/// neither a server without the key nor a replayed statement passes, over plain HTTP as well;
/// without keys the unsigned region of `GET /readyz` is compared, which only TLS (a certificate
/// for the region's host name) authenticates.
///
/// Errors: [`SyncError::WrongRegion`] (another region, or [`UNVERIFIED_REGION`] when the
/// statement does not verify), [`SyncError::Network`] / [`SyncError::Unavailable`] (retry).
pub async fn verify_region(
    endpoint: &str,
    region: &str,
    region_keys: &[[u8; 32]],
    timeout: Duration,
) -> Result<(), SyncError> {
    let http = http_client(timeout)?;
    check_region(&http, endpoint.trim_end_matches('/'), region, region_keys).await
}

async fn check_region(
    http: &reqwest::Client,
    endpoint: &str,
    expected: &str,
    keys: &[[u8; 32]],
) -> Result<(), SyncError> {
    let actual = if keys.is_empty() {
        unsigned_region(http, endpoint).await?
    } else {
        signed_region(http, endpoint, expected, keys).await?
    };
    if actual != expected {
        return Err(SyncError::WrongRegion {
            expected: expected.to_owned(),
            actual,
        });
    }
    Ok(())
}

async fn unsigned_region(http: &reqwest::Client, endpoint: &str) -> Result<String, SyncError> {
    #[derive(serde::Deserialize)]
    struct Ready {
        region: String,
    }
    let resp = http
        .get(format!("{endpoint}/readyz"))
        .send()
        .await
        .map_err(|_| SyncError::Network("endpoint unreachable".into()))?;
    let ready: Ready = read_json(resp)
        .await
        .ok_or_else(|| SyncError::Network("endpoint did not state its region".into()))?;
    Ok(ready.region)
}

/// The region of a statement signed by a pinned key over a fresh nonce. A statement that does
/// not verify is a refusal, not a network error to retry: the endpoint answered, and what it
/// answered cannot be trusted.
async fn signed_region(
    http: &reqwest::Client,
    endpoint: &str,
    expected: &str,
    keys: &[[u8; 32]],
) -> Result<String, SyncError> {
    let unverified = || SyncError::WrongRegion {
        expected: expected.to_owned(),
        actual: UNVERIFIED_REGION.to_owned(),
    };
    let mut raw = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| SyncError::Config("system random generator"))?;
    let nonce = hex::encode(raw);
    let resp = http
        .get(format!("{endpoint}/v1/region?nonce={nonce}"))
        .send()
        .await
        .map_err(|_| SyncError::Network("endpoint unreachable".into()))?;
    let status = resp.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(SyncError::Unavailable {
            retry_after_ms: retry_after_secs(resp.headers()).unwrap_or(1) * 1000,
        });
    }
    if !status.is_success() {
        return Err(unverified());
    }
    // A cut while reading is the network's doing (retry); a complete answer that is not a
    // valid statement is the endpoint's.
    let bytes = resp
        .bytes()
        .await
        .map_err(|_| SyncError::Network("region statement cut off".into()))?;
    let st: RegionStatement = serde_json::from_slice(&bytes).map_err(|_| unverified())?;
    if !region_statement_verifies(&st, &nonce, keys) {
        return Err(unverified());
    }
    Ok(st.region)
}

/// The HTTP client every sync request goes through: rustls (ring), `timeout` for the whole
/// request and for connecting.
fn http_client(timeout: Duration) -> Result<reqwest::Client, SyncError> {
    // rustls is built with ring, without a process default provider; installing it twice is
    // harmless (the second call reports the first).
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|_| SyncError::Config("http client"))
}

/// Obtains a device credential from `POST /v1/enroll` with the app's enrollment token.
/// The token and the credential never appear in errors.
pub async fn enroll(endpoint: &str, token: &str, timeout: Duration) -> Result<String, SyncError> {
    let http = http_client(timeout)?;
    let body = serde_json::to_vec(&EnrollRequest {
        enrollment_token: token.to_owned(),
    })
    .map_err(|_| SyncError::Config("enrollment encoding"))?;
    let resp = http
        .post(format!("{}/v1/enroll", endpoint.trim_end_matches('/')))
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|_| SyncError::Network("endpoint unreachable".into()))?;
    match resp.status() {
        s if s.is_success() => read_json::<EnrollResponse>(resp)
            .await
            .map(|r| r.credential)
            .ok_or_else(|| SyncError::Network("enrollment answer unreadable".into())),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(SyncError::Unauthorized),
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            Err(SyncError::Unavailable {
                retry_after_ms: retry_after_secs(resp.headers()).unwrap_or(1) * 1000,
            })
        }
        _ => Err(SyncError::Network("enrollment refused".into())),
    }
}

/// Whether `st` answers `nonce` and carries a valid signature by one of `keys` (matched by key
/// id, as model manifests are).
pub fn region_statement_verifies(st: &RegionStatement, nonce: &str, keys: &[[u8; 32]]) -> bool {
    use base64::Engine as _;
    if st.nonce != nonce {
        return false;
    }
    let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(&st.sig) else {
        return false;
    };
    let message = region_statement_message(&st.region, &st.nonce);
    keys.iter().any(|k| {
        crate::models::key_id(k) == st.key_id
            && ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, k)
                .verify(&message, &sig)
                .is_ok()
    })
}

async fn read_json<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Option<T> {
    let bytes = resp.bytes().await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn retry_after_secs(h: &reqwest::header::HeaderMap) -> Option<u64> {
    h.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()
}

/// Full jitter: `u` (uniform in `[0, 1)`) of `min(cap, base * 2^attempt)`; `Retry-After`
/// seconds are a floor, itself capped by `cap` so a hostile header cannot park the device.
fn full_jitter(
    base: Duration,
    cap: Duration,
    attempt: u32,
    retry_after: Option<u64>,
    u: f64,
) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(20)).min(cap);
    let jitter = ceiling.mul_f64(u.clamp(0.0, 1.0));
    match retry_after {
        Some(s) => jitter.max(Duration::from_secs(s).min(cap)),
        None => jitter,
    }
}

fn unit_random() -> f64 {
    let mut b = [0u8; 8];
    // A failed system RNG only makes the wait the full ceiling; never a reason to fail sync.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        return 1.0;
    }
    (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(100);
    const CAP: Duration = Duration::from_secs(5);

    #[test]
    fn full_jitter_spans_zero_to_the_exponential_ceiling_capped() {
        for attempt in 0..8u32 {
            let ceiling = (BASE * 2u32.pow(attempt)).min(CAP);
            assert_eq!(full_jitter(BASE, CAP, attempt, None, 0.0), Duration::ZERO);
            assert_eq!(full_jitter(BASE, CAP, attempt, None, 1.0), ceiling);
            assert_eq!(full_jitter(BASE, CAP, attempt, None, 0.5), ceiling / 2);
        }
        // Far past the cap, and with attempt counts that would overflow a shift.
        assert_eq!(full_jitter(BASE, CAP, 40, None, 1.0), CAP);
        assert_eq!(full_jitter(BASE, CAP, u32::MAX, None, 1.0), CAP);
    }

    #[test]
    fn retry_after_is_a_floor_capped_by_the_cap() {
        assert_eq!(
            full_jitter(BASE, CAP, 0, Some(2), 0.0),
            Duration::from_secs(2)
        );
        // A larger jitter wins over a smaller Retry-After.
        assert_eq!(
            full_jitter(BASE, Duration::from_secs(60), 10, Some(1), 0.5),
            Duration::from_secs(30)
        );
        assert_eq!(full_jitter(BASE, CAP, 0, Some(86_400), 0.0), CAP);
    }

    #[test]
    fn real_waits_are_spread_over_the_whole_interval() {
        // 400 draws of the system RNG: the chance that none falls in the lowest (or highest)
        // fifth is 0.8^400, about 1e-39.
        let ceiling = (BASE * 8).min(CAP);
        let waits: Vec<Duration> = (0..400)
            .map(|_| full_jitter(BASE, CAP, 3, None, unit_random()))
            .collect();
        assert!(waits.iter().all(|w| *w <= ceiling));
        assert!(waits.iter().any(|w| *w < ceiling / 5));
        assert!(waits.iter().any(|w| *w > ceiling * 4 / 5));
    }
}
