//! What an app offers its user about their data: consent per purpose, sync, export and
//! deletion, as methods of [`Vitalcore`].
//!
//! * Consent: [`Vitalcore::grant_consent`], [`Vitalcore::revoke_consent`] and
//!   [`Vitalcore::consents`]. A withdrawal stops uploads for the purpose at once, drops its
//!   queued records, and queues an erasure request for the server.
//! * Sync: [`Vitalcore::sync_now`] delivers queued erasure requests first, then uploads the
//!   consented outbox (see [`crate::sync`]) to the configured endpoint, enrolling the device on
//!   first use. [`Vitalcore::set_sync_options`] and [`Vitalcore::set_device_conditions`] tune
//!   it; [`Vitalcore::poll_model`] fetches model updates.
//! * Rights: [`Vitalcore::export_my_data`] returns every record of the user as JSON in the
//!   documented [`DataExport`] schema; [`Vitalcore::delete_my_data`] crypto-shreds everything
//!   locally first, then asks the server to erase (or keeps the request for a later sync).
//!
//! # Export format (version 1)
//!
//! ```text
//! {
//!   "format": "vitalcore-export",      // EXPORT_FORMAT
//!   "version": 1,                      // EXPORT_VERSION; a reader refuses versions it does not know
//!   "exported_at_ms": 1790000000000,   // Unix ms
//!   "subject": "local",                // the local profile id the data belongs to
//!   "checks":  [ ExportedCheck ... ],  // health checks, oldest first
//!   "windows": [ ExportedCheck ... ],  // background-capture windows, oldest first
//!   "consents": [ Consent ... ]        // every consent decision, oldest first
//! }
//! ExportedCheck = {
//!   "id": "32 hex digits", "kind": "ppg" | "ecg" | "accel",
//!   "started_at_ms": i64, "ended_at_ms": i64, "feature_set": "v1",
//!   "quality": { "sqi": f64, "threshold": f64 | null, "acceptable": bool },
//!   "features": { "<feature set v1 name>": f64, ... },
//!   "prediction": { "outcome": "predicted" | "quality_too_low" | "features_unavailable" | "no_model",
//!                   "model_name": str | null, "model_version": str | null,
//!                   "outputs": { name: f64 }, "missing_features": [str] },
//!   "labels": [ { "name": str, "value": f64, "source": str, "recorded_at_ms": i64 } ],
//!   "raw": [ { "channel": str, "start_ms": i64, "rate_hz": f64, "values": [f32] } ]  // only if kept
//! }
//! Consent = { "purpose": str, "granted": bool, "at_ms": i64, "policy_version": str }
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::engine::{lock, Vitalcore};
use crate::error::{EngineError, Result};
use crate::history::StoredCheck;
use crate::privacy::{self, AnonymizationPolicy, Anonymizer, LocalDp};
use crate::store::{ConsentDecision, Purpose, SyncMeta};
use crate::sync::{DeviceConditions, ModelPoll, SyncClient, SyncConfig, SyncError, SyncReport};

/// Name in the `format` field of an export.
pub const EXPORT_FORMAT: &str = "vitalcore-export";
/// Version of the export schema this SDK writes.
pub const EXPORT_VERSION: u32 = 1;

/// How [`Vitalcore::sync_now`] talks to the endpoint of [`crate::Config::sync_endpoint`].
/// Every default is on its setter.
#[derive(Clone, PartialEq)]
pub struct SyncOptions {
    enrollment_token: Option<String>,
    study: String,
    time_granularity_secs: i64,
    wifi_only: bool,
    charging_only: bool,
    max_records: usize,
    max_attempts: u32,
    base_backoff: Duration,
    max_backoff: Duration,
    timeout: Duration,
    local_dp: Option<LocalDp>,
    upload_labels: Vec<String>,
}

impl std::fmt::Debug for SyncOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncOptions")
            .field(
                "enrollment_token",
                &self.enrollment_token.as_ref().map(|_| "<redacted>"),
            )
            .field("wifi_only", &self.wifi_only)
            .field("charging_only", &self.charging_only)
            .finish_non_exhaustive()
    }
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SyncOptions {
    /// Defaults as documented on each setter.
    pub fn new() -> Self {
        Self {
            enrollment_token: None,
            study: "default".to_owned(),
            time_granularity_secs: 3600,
            wifi_only: false,
            charging_only: false,
            max_records: 500,
            max_attempts: 5,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
            local_dp: None,
            upload_labels: Vec::new(),
        }
    }

    /// Outcome label names that are uploaded for training (the model's class names, for
    /// example `["regular", "irregular"]`). A label recorded with [`Vitalcore::add_label`]
    /// while its name is listed and its value is 1 is queued with its check's upload purpose
    /// and sent by [`Vitalcore::sync_now`] under the same consent and pseudonym as the check,
    /// also when the check itself went out earlier. Only the name travels. Default: none (no
    /// label leaves the device).
    pub fn upload_labels<I: IntoIterator<Item = S>, S: Into<String>>(mut self, names: I) -> Self {
        self.upload_labels = names.into_iter().map(Into::into).collect();
        self
    }

    /// Laplace noise on chosen features with an epsilon budget per purpose, persisted in the
    /// store (see [`LocalDp`]). Default: none.
    pub fn local_dp(mut self, dp: LocalDp) -> Self {
        self.local_dp = Some(dp);
        self
    }

    /// The app's enrollment token, exchanged once for a device credential that is kept sealed
    /// in the store. Default: none (sync then fails with [`SyncError::NotEnrolled`] until the
    /// device has a credential).
    pub fn enrollment_token(mut self, token: impl Into<String>) -> Self {
        self.enrollment_token = Some(token.into());
        self
    }

    /// Study that records of the plain `research` purpose are filed under. Default:
    /// `"default"`.
    pub fn study(mut self, study: impl Into<String>) -> Self {
        self.study = study.into();
        self
    }

    /// Capture times are coarsened to this many seconds before upload; at least (and by
    /// default) 3600.
    pub fn time_granularity_secs(mut self, secs: i64) -> Self {
        self.time_granularity_secs = secs.max(3600);
        self
    }

    /// Upload only on Wi-Fi (as reported by [`Vitalcore::set_device_conditions`]). Default:
    /// off.
    pub fn wifi_only(mut self, on: bool) -> Self {
        self.wifi_only = on;
        self
    }

    /// Upload only while charging. Default: off.
    pub fn charging_only(mut self, on: bool) -> Self {
        self.charging_only = on;
        self
    }

    /// Most records per upload batch. Default: 500.
    pub fn max_records(mut self, n: usize) -> Self {
        self.max_records = n.max(1);
        self
    }

    /// Attempts per request within one run before the run gives up until the next. Default: 5.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// Full-jitter backoff base and cap. Defaults: 500 ms and 60 s.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.base_backoff = base;
        self.max_backoff = cap;
        self
    }

    /// Per-request timeout. Default: 30 s.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }
}

/// One consent decision as the app shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// Purpose (`research`, `research_<study>`, `model_training`, `partner_sharing`); a
    /// study granted as `research:<study>` reads back as `research_<study>`.
    pub purpose: String,
    /// Granted (`true`) or withdrawn/refused (`false`).
    pub granted: bool,
    /// When it was given, Unix milliseconds.
    pub at_ms: i64,
    /// Version of the consent text the user saw.
    pub policy_version: String,
}

impl From<ConsentDecision> for Consent {
    fn from(d: ConsentDecision) -> Self {
        Self {
            purpose: d.purpose.as_str().to_owned(),
            granted: d.granted,
            at_ms: d.at_ms,
            policy_version: d.policy_version,
        }
    }
}

/// Consent state: the latest decision per purpose and the whole history.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Consents {
    /// Latest decision for each purpose ever decided, by purpose name.
    pub current: Vec<Consent>,
    /// Every decision, oldest first.
    pub history: Vec<Consent>,
}

/// What one [`Vitalcore::sync_now`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncOutcome {
    /// The upload part (batches, records, quarantine, bytes, policy hold).
    pub uploads: SyncReport,
    /// Erasure requests the server confirmed in this run.
    pub erasures_delivered: usize,
    /// Erasure requests still waiting.
    pub erasures_pending: usize,
    /// The device enrolled (obtained its credential) in this run.
    pub enrolled: bool,
}

/// Where the server side of [`Vitalcore::delete_my_data`] stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerErasure {
    /// The device never enrolled with a server, so no server holds its data.
    NotNeeded,
    /// The server confirmed every erasure request.
    Confirmed {
        /// Requests confirmed.
        requests: usize,
    },
    /// The server could not be reached (or no endpoint is configured now); the requests are
    /// kept and [`Vitalcore::sync_now`] delivers them before any upload.
    Pending {
        /// Requests waiting.
        requests: usize,
    },
}

/// What [`Vitalcore::delete_my_data`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletionReport {
    /// Local data keys (and the pseudonym secret) destroyed.
    pub keys_destroyed: usize,
    /// Local rows deleted.
    pub rows_deleted: usize,
    /// The server side.
    pub server: ServerErasure,
}

/// The whole export, see the module documentation for the schema.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct DataExport {
    /// Always [`EXPORT_FORMAT`].
    pub format: String,
    /// [`EXPORT_VERSION`] of the writer.
    pub version: u32,
    /// When the export was made, Unix milliseconds.
    pub exported_at_ms: i64,
    /// The local profile id the data belongs to.
    pub subject: String,
    /// Health checks, oldest first.
    pub checks: Vec<ExportedCheck>,
    /// Background-capture windows, oldest first.
    pub windows: Vec<ExportedCheck>,
    /// Every consent decision, oldest first.
    pub consents: Vec<Consent>,
}

impl std::fmt::Debug for DataExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataExport")
            .field("version", &self.version)
            .field("checks", &self.checks.len())
            .field("windows", &self.windows.len())
            .field("consents", &self.consents.len())
            .finish_non_exhaustive()
    }
}

/// One check or window in an export.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedCheck {
    /// Record id, 32 hexadecimal digits.
    pub id: String,
    /// Kind name (`ppg`, `ecg`, `accel`).
    pub kind: String,
    /// Time of the first sample, Unix milliseconds.
    pub started_at_ms: i64,
    /// End of the analysed signal, Unix milliseconds.
    pub ended_at_ms: i64,
    /// Feature set version.
    pub feature_set: String,
    /// Signal quality.
    pub quality: ExportedQuality,
    /// Features by feature set name.
    pub features: BTreeMap<String, f64>,
    /// Prediction or why there is none.
    pub prediction: ExportedPrediction,
    /// Outcome labels, in the order recorded.
    pub labels: Vec<ExportedLabel>,
    /// Raw samples, when raw retention kept them.
    pub raw: Vec<ExportedRaw>,
}

impl std::fmt::Debug for ExportedCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedCheck")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Signal quality in an export.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedQuality {
    /// Signal quality index, `0..=1`.
    pub sqi: f64,
    /// Threshold that applied, when recorded.
    pub threshold: Option<f64>,
    /// Whether the quality was good enough to predict on.
    pub acceptable: bool,
}

impl std::fmt::Debug for ExportedQuality {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportedQuality(<redacted>)")
    }
}

/// Prediction outcome in an export.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedPrediction {
    /// `predicted`, `quality_too_low`, `features_unavailable` or `no_model`.
    pub outcome: String,
    /// Model name, when predicted.
    pub model_name: Option<String>,
    /// Model version, when predicted.
    pub model_version: Option<String>,
    /// Model outputs, when predicted.
    pub outputs: BTreeMap<String, f64>,
    /// Features the model needed but the recording did not yield.
    pub missing_features: Vec<String>,
}

impl std::fmt::Debug for ExportedPrediction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedPrediction")
            .field("outcome", &self.outcome)
            .finish_non_exhaustive()
    }
}

/// An outcome label in an export.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedLabel {
    /// Label name.
    pub name: String,
    /// Value.
    pub value: f64,
    /// Source.
    pub source: String,
    /// When recorded, Unix milliseconds.
    pub recorded_at_ms: i64,
}

impl std::fmt::Debug for ExportedLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ExportedLabel(<redacted>)")
    }
}

/// Raw samples of one channel in an export.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedRaw {
    /// Channel name.
    pub channel: String,
    /// Time of the first sample, Unix milliseconds.
    pub start_ms: i64,
    /// Rate, Hz.
    pub rate_hz: f64,
    /// Samples.
    pub values: Vec<f32>,
}

impl std::fmt::Debug for ExportedRaw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportedRaw")
            .field("channel", &self.channel)
            .field("samples", &self.values.len())
            .finish_non_exhaustive()
    }
}

/// Per-engine state of this module, held by the engine.
#[derive(Debug, Default)]
pub(crate) struct UserState {
    options: Mutex<SyncOptions>,
    conditions: Mutex<Option<DeviceConditions>>,
    /// Bumped whenever a cached client must not be reused (options changed, pseudonym secret
    /// shredded).
    generation: AtomicU64,
    client: Mutex<Option<(u64, Arc<SyncClient>)>>,
    /// The server refused the stored credential: the next run enrolls again (with a token).
    credential_refused: std::sync::atomic::AtomicBool,
    /// One network run at a time, so erasure requests always precede the uploads after them.
    run: tokio::sync::Mutex<()>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn throwaway_secret() -> Result<zeroize::Zeroizing<[u8; 32]>> {
    let mut k = zeroize::Zeroizing::new([0u8; 32]);
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k[..])
        .map_err(|_| crate::store::StoreError::Random)?;
    Ok(k)
}

/// A purpose the user can consent to: a valid name with an upload meaning.
fn upload_purpose(name: &str) -> Result<Purpose> {
    let p = privacy::purpose_from_name(name)?;
    privacy::wire_purpose(&p)?;
    Ok(p)
}

impl Vitalcore {
    /// The outbox payload queuing the upload of a label, if the sync options let it leave.
    pub(crate) fn label_upload(&self, name: &str, value: f64) -> Option<Vec<u8>> {
        let o = lock(&self.inner.user.options);
        AnonymizationPolicy::new("-")
            .allow_labels(o.upload_labels.iter().cloned())
            .label_uploads(name, value)
            .then(|| privacy::label_payload(name))
    }

    /// Replaces the sync options (the endpoint and region come from [`crate::Config`]).
    pub fn set_sync_options(&self, options: SyncOptions) {
        *lock(&self.inner.user.options) = options;
        self.inner.user.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// The app reports the network and charging state (the SDK cannot see them portably);
    /// the Wi-Fi-only / charging-only options are judged against the latest report. Until the
    /// first report the device counts as on Wi-Fi and charging.
    pub fn set_device_conditions(&self, wifi: bool, charging: bool) {
        *lock(&self.inner.user.conditions) = Some(DeviceConditions { wifi, charging });
    }

    /// Records that the user consents to `purpose` under the consent text `policy_version`.
    /// Records queued for the purpose from now on are uploaded by [`Vitalcore::sync_now`].
    ///
    /// Errors: [`EngineError::Privacy`] if the purpose has no upload meaning (valid purposes:
    /// `research`, `research:<study>` (also spelled `research_<study>`), `model_training`,
    /// `partner_sharing`).
    pub fn grant_consent(&self, purpose: &str, policy_version: &str) -> Result<Consent> {
        let p = upload_purpose(purpose)?;
        let _op = self.inner.begin()?;
        let d = ConsentDecision {
            purpose: p,
            granted: true,
            at_ms: now_ms(),
            policy_version: policy_version.to_owned(),
        };
        self.inner.store.record_consent(&self.inner.subject, &d)?;
        Ok(d.into())
    }

    /// Withdraws consent for `purpose`, all locally and at once: nothing more is uploaded for
    /// it (every batch checks consent), its queued records are erased with their key, and an
    /// erasure request for the server is stored (when the device ever enrolled) and delivered
    /// by the next [`Vitalcore::sync_now`] before any upload. The withdrawal and the request
    /// are committed together. No network I/O.
    pub fn revoke_consent(&self, purpose: &str) -> Result<Consent> {
        let p = upload_purpose(purpose)?;
        let _op = self.inner.begin()?;
        let store = &self.inner.store;
        let subject = &self.inner.subject;
        let policy_version = store
            .consent(subject, &p)?
            .map(|d| d.policy_version)
            .unwrap_or_default();
        let pseudonym = if store.sync_meta(SyncMeta::Credential)?.is_some() {
            store.existing_pseudonym_secret(subject)?.map(|secret| {
                let a = Anonymizer::new(secret, AnonymizationPolicy::new("-"));
                let ps = a.pseudonym(subject, &p);
                let proof = a.subject_proof(&ps);
                (ps, proof)
            })
        } else {
            None
        };
        let d = ConsentDecision {
            purpose: p.clone(),
            granted: false,
            at_ms: now_ms(),
            policy_version,
        };
        store.write(|tx| {
            tx.record_consent(subject, &d)?;
            if let Some((ps, proof)) = &pseudonym {
                tx.queue_erasure(ps, Some(proof))?;
            }
            Ok(())
        })?;
        store.erase_purpose(subject, &p)?;
        Ok(d.into())
    }

    /// The latest decision per purpose and the full history.
    pub fn consents(&self) -> Result<Consents> {
        let _op = self.inner.begin()?;
        let history: Vec<Consent> = self
            .inner
            .store
            .consent_history(&self.inner.subject, None)?
            .into_iter()
            .map(Consent::from)
            .collect();
        let mut latest: BTreeMap<String, Consent> = BTreeMap::new();
        for c in &history {
            latest.insert(c.purpose.clone(), c.clone());
        }
        Ok(Consents {
            current: latest.into_values().collect(),
            history,
        })
    }

    /// Erasure requests stored and not yet confirmed by the server.
    pub fn pending_erasures(&self) -> Result<usize> {
        let _op = self.inner.begin()?;
        Ok(self.inner.store.pending_erasures()?.len())
    }

    fn endpoint(&self) -> Result<(String, String)> {
        let c = &self.inner.config;
        match (c.get_sync_endpoint(), c.get_sync_region()) {
            (Some(e), Some(r)) if !e.is_empty() && !r.is_empty() => {
                Ok((e.to_owned(), r.to_owned()))
            }
            _ => Err(SyncError::NoEndpoint.into()),
        }
    }

    fn policy_allows(&self) -> bool {
        let o = lock(&self.inner.user.options);
        match *lock(&self.inner.user.conditions) {
            Some(c) => (c.wifi || !o.wifi_only) && (c.charging || !o.charging_only),
            None => true,
        }
    }

    /// The stored credential, or one obtained now with the enrollment token (then stored).
    async fn credential(&self, endpoint: &str) -> Result<(String, bool)> {
        let store = &self.inner.store;
        let (token, timeout) = {
            let o = lock(&self.inner.user.options);
            (o.enrollment_token.clone(), o.timeout)
        };
        // A credential the server refused (expired or revoked) is replaced when a token can
        // enroll the device again; it stays stored until then (it also records that the
        // device enrolled, which decides whether withdrawals queue server erasures).
        let refused = self.inner.user.credential_refused.load(Ordering::SeqCst);
        if let Some(c) = store.sync_meta(SyncMeta::Credential)? {
            if !(refused && token.is_some()) {
                let c =
                    String::from_utf8(c.to_vec()).map_err(|_| crate::store::StoreError::Layout)?;
                return Ok((c, false));
            }
        }
        let token = token.ok_or(SyncError::NotEnrolled)?;
        // The token goes only to an endpoint of the device's own region, as everything else.
        let region = self.inner.config.get_sync_region().unwrap_or_default();
        crate::sync::verify_region(endpoint, region, &self.inner.config.region_keys()?, timeout)
            .await?;
        let credential = crate::sync::enroll(endpoint, &token, timeout).await?;
        store.set_sync_meta(SyncMeta::Credential, credential.as_bytes())?;
        self.inner
            .user
            .credential_refused
            .store(false, Ordering::SeqCst);
        Ok((credential, true))
    }

    /// A client for the current options and pseudonym secret, cached until either changes.
    /// With `erasure_attempts`, a one-off client that only delivers stored erasure requests:
    /// it must not create a pseudonym secret (which would make the next deletion queue a
    /// request for a pseudonym the server never saw), so it gets a throwaway one.
    async fn client(&self, erasure_attempts: Option<u32>) -> Result<(Arc<SyncClient>, bool)> {
        let attempts = erasure_attempts;
        let (endpoint, region) = self.endpoint()?;
        let user = &self.inner.user;
        let generation = user.generation.load(Ordering::SeqCst);
        if attempts.is_none() {
            if let Some((g, c)) = &*lock(&user.client) {
                if *g == generation {
                    return Ok((c.clone(), false));
                }
            }
        }
        let (credential, enrolled) = self.credential(&endpoint).await?;
        let o = lock(&user.options).clone();
        let secret = match attempts {
            None => self.inner.store.pseudonym_secret(&self.inner.subject)?,
            Some(_) => throwaway_secret()?,
        };
        let mut policy = AnonymizationPolicy::new(o.study.clone())
            .time_granularity_secs(o.time_granularity_secs)
            .allow_labels(o.upload_labels.iter().cloned());
        if let Some(dp) = &o.local_dp {
            policy = policy.local_dp(dp.clone());
        }
        let anonymizer = Anonymizer::new(secret, policy);
        let config = SyncConfig::new(endpoint, region, credential, Vec::new())
            .max_records(o.max_records)
            .max_attempts(attempts.unwrap_or(o.max_attempts))
            .backoff(o.base_backoff, o.max_backoff)
            .timeout(o.timeout)
            .wifi_only(o.wifi_only)
            .charging_only(o.charging_only)
            .region_keys(self.inner.config.region_keys()?);
        let client = Arc::new(SyncClient::new(
            self.inner.store.clone(),
            self.inner.subject.clone(),
            anonymizer,
            config,
        )?);
        if attempts.is_none() {
            *lock(&user.client) = Some((generation, client.clone()));
        }
        Ok((client, enrolled))
    }

    /// Delivers stored erasure requests, oldest first; stops at the first failure.
    async fn flush_erasures(&self, client: &SyncClient) -> Result<usize> {
        let mut delivered = 0;
        for e in self.inner.store.pending_erasures()? {
            client
                .send_erasure_proved(&e.pseudonym, e.proof.as_deref())
                .await?;
            self.inner.store.erasure_delivered(&e.id)?;
            delivered += 1;
        }
        Ok(delivered)
    }

    /// Talks to the sync endpoint now: delivers stored erasure requests, then (unless the
    /// Wi-Fi / charging policy holds it) uploads every consented outbox record, exactly once
    /// in effect. Enrolls the device first if it has no credential yet.
    ///
    /// Erasure requests are sent even while the policy holds uploads: they are a few hundred
    /// bytes and carry out the user's request. Uploads never overtake a pending erasure: if a
    /// request cannot be delivered the run stops with the error and uploads nothing.
    ///
    /// Errors: [`EngineError::Sync`] with [`SyncError::NoEndpoint`] (no endpoint/region in
    /// the config), [`SyncError::NotEnrolled`], [`SyncError::WrongRegion`],
    /// [`SyncError::Unavailable`] / [`SyncError::Network`] (retry later), ...
    ///
    /// After a run the server refused the credential in (expired or revoked), the next run
    /// enrolls the device again when an enrollment token is configured; its subjects stay its
    /// own (the server binds them to proofs from the pseudonym key, not to the credential).
    pub async fn sync_now(&self) -> Result<SyncOutcome> {
        let result = self.sync_run().await;
        if matches!(result, Err(EngineError::Sync(SyncError::Unauthorized))) {
            let user = &self.inner.user;
            user.credential_refused.store(true, Ordering::SeqCst);
            user.generation.fetch_add(1, Ordering::SeqCst);
            *lock(&user.client) = None;
        }
        result
    }

    async fn sync_run(&self) -> Result<SyncOutcome> {
        drop(self.inner.begin()?);
        self.endpoint()?;
        let user = &self.inner.user;
        let _one_run = user.run.lock().await;
        let mut out = SyncOutcome::default();
        let pending = self.inner.store.pending_erasures()?.len();
        if pending == 0 && !self.policy_allows() {
            out.uploads.held_by_policy = true;
            return Ok(out);
        }
        let (client, enrolled) = self.client(None).await?;
        out.enrolled = enrolled;
        if let Some(c) = *lock(&user.conditions) {
            client.set_conditions(c);
        }
        out.erasures_delivered = self.flush_erasures(&client).await?;
        let candidates: Vec<Purpose> = self
            .inner
            .store
            .consent_history(&self.inner.subject, None)?
            .into_iter()
            .map(|d| d.purpose)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if self.inner.is_shut() {
            return Err(EngineError::ShutDown);
        }
        out.uploads = client.sync_purposes(&candidates).await?;
        out.erasures_pending = self.inner.store.pending_erasures()?.len();
        Ok(out)
    }

    /// Polls the server for model `name` (`etag`: the one of the envelope the device holds)
    /// and downloads the artifact when it changed. The bytes are NOT verified here: hand them
    /// to the model lifecycle. See [`SyncClient::poll_model`].
    pub async fn poll_model(&self, name: &str, etag: Option<String>) -> Result<ModelPoll> {
        drop(self.inner.begin()?);
        let (client, _) = self.client(None).await?;
        if let Some(c) = *lock(&self.inner.user.conditions) {
            client.set_conditions(c);
        }
        Ok(client.poll_model(name, etag).await?)
    }

    /// Every record of the user, decrypted, as JSON in the [`DataExport`] schema (see the
    /// module documentation). Each read is recorded in the store's audit log.
    pub fn export_my_data(&self) -> Result<String> {
        let export = self.export_data()?;
        serde_json::to_string_pretty(&export)
            .map_err(|_| EngineError::InvalidConfig("export encoding"))
    }

    /// [`Vitalcore::export_my_data`] as a value.
    pub fn export_data(&self) -> Result<DataExport> {
        let checks = self.checks(i64::MIN, i64::MAX, None)?;
        let windows = self.windows(i64::MIN, i64::MAX, None)?;
        let consents = self.consents()?.history;
        let convert = |c: StoredCheck| -> Result<ExportedCheck> {
            let labels = self
                .labels(&c.id)?
                .into_iter()
                .map(|l| ExportedLabel {
                    name: l.name,
                    value: l.value,
                    source: l.source,
                    recorded_at_ms: l.recorded_at_ms,
                })
                .collect();
            let raw = self
                .raw_samples(&c.id)?
                .into_iter()
                .map(|r| ExportedRaw {
                    channel: r.channel,
                    start_ms: r.start_ms,
                    rate_hz: r.rate_hz,
                    values: r.values,
                })
                .collect();
            let outcome = c.prediction.tag().to_owned();
            let prediction = match c.prediction {
                crate::PredictionOutcome::Predicted {
                    model_name,
                    model_version,
                    outputs,
                } => ExportedPrediction {
                    outcome,
                    model_name: Some(model_name),
                    model_version: Some(model_version),
                    outputs,
                    missing_features: Vec::new(),
                },
                crate::PredictionOutcome::FeaturesUnavailable { missing } => ExportedPrediction {
                    outcome,
                    model_name: None,
                    model_version: None,
                    outputs: BTreeMap::new(),
                    missing_features: missing,
                },
                _ => ExportedPrediction {
                    outcome,
                    model_name: None,
                    model_version: None,
                    outputs: BTreeMap::new(),
                    missing_features: Vec::new(),
                },
            };
            Ok(ExportedCheck {
                id: c.id,
                kind: c.kind.name().to_owned(),
                started_at_ms: c.started_at_ms,
                ended_at_ms: c.ended_at_ms,
                feature_set: c.feature_set,
                quality: ExportedQuality {
                    sqi: c.quality.sqi,
                    threshold: c
                        .quality
                        .threshold
                        .is_finite()
                        .then_some(c.quality.threshold),
                    acceptable: c.quality.acceptable,
                },
                features: c.features,
                prediction,
                labels,
                raw,
            })
        };
        Ok(DataExport {
            format: EXPORT_FORMAT.to_owned(),
            version: EXPORT_VERSION,
            exported_at_ms: now_ms(),
            subject: self.inner.config.subject_id().to_owned(),
            checks: checks
                .into_iter()
                .map(convert)
                .collect::<Result<Vec<_>>>()?,
            windows: windows
                .into_iter()
                .map(convert)
                .collect::<Result<Vec<_>>>()?,
            consents,
        })
    }

    /// Deletes all of the user's data. Locally first and completely, before any network I/O:
    /// checks, windows, labels, raw samples and queued uploads are deleted and every data key
    /// of the user, including the pseudonym secret, is destroyed (crypto-shredding), so later
    /// uploads carry new, unlinkable pseudonyms. Then, if the device ever enrolled, erasure
    /// requests for each pseudonym the server may hold are stored and one delivery attempt is
    /// made; when it fails they stay stored and [`Vitalcore::sync_now`] delivers them.
    ///
    /// Consent history is kept: it is the record of what the user decided, and it says what
    /// may be uploaded from now on.
    pub async fn delete_my_data(&self) -> Result<DeletionReport> {
        drop(self.inner.begin()?);
        let store = &self.inner.store;
        let subject = &self.inner.subject;
        let enrolled = store.sync_meta(SyncMeta::Credential)?.is_some();
        let mut pseudonyms = Vec::new();
        if enrolled {
            if let Some(secret) = store.existing_pseudonym_secret(subject)? {
                let a = Anonymizer::new(secret, AnonymizationPolicy::new("-"));
                let ever: BTreeSet<Purpose> = store
                    .consent_history(subject, None)?
                    .into_iter()
                    .filter(|d| d.granted)
                    .map(|d| d.purpose)
                    .collect();
                pseudonyms.extend(ever.iter().map(|p| {
                    let ps = a.pseudonym(subject, p);
                    let proof = a.subject_proof(&ps);
                    (ps, proof)
                }));
            }
        }
        // Requests first: once the secret is shredded the pseudonyms cannot be recomputed.
        store.write(|tx| {
            for (p, proof) in &pseudonyms {
                tx.queue_erasure(p, Some(proof))?;
            }
            Ok(())
        })?;
        let local = store.erase_subject(subject)?;
        self.inner.user.generation.fetch_add(1, Ordering::SeqCst);
        *lock(&self.inner.user.client) = None;

        let pending = store.pending_erasures()?.len();
        let server = if !enrolled && pending == 0 {
            ServerErasure::NotNeeded
        } else if self.endpoint().is_err() {
            ServerErasure::Pending { requests: pending }
        } else {
            let _one_run = self.inner.user.run.lock().await;
            let delivered = match self.client(Some(1)).await {
                Ok((client, _)) => {
                    let mut n = 0;
                    for e in store.pending_erasures()? {
                        if client
                            .send_erasure_proved(&e.pseudonym, e.proof.as_deref())
                            .await
                            .is_err()
                        {
                            break;
                        }
                        store.erasure_delivered(&e.id)?;
                        n += 1;
                    }
                    n
                }
                Err(_) => 0,
            };
            match store.pending_erasures()?.len() {
                0 => ServerErasure::Confirmed {
                    requests: delivered,
                },
                left => ServerErasure::Pending { requests: left },
            }
        };
        Ok(DeletionReport {
            keys_destroyed: local.keys_destroyed,
            rows_deleted: local.rows_deleted,
            server,
        })
    }
}
