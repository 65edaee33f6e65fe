//! The engine across the FFI: config builder, engine, check sessions, capture handles,
//! history and labels. Each object wraps its `vitalcore` counterpart and delegates one line
//! per method; errors convert in `error.rs`, records in `records.rs`.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::keys::KeyProvider;
use crate::offload::offload;
use crate::records::{CaptureStats, CheckKind, CheckResult, Label, RawSamples, StoredCheck};
use crate::samples::unpack_f64le;
use crate::VitalcoreError;

type Result<T, E = VitalcoreError> = std::result::Result<T, E>;

/// Engine configuration, built step by step. Every step returns a new config; the defaults
/// are those of `vitalcore::Config`: no sync endpoint, no raw retention, SQI thresholds 0.86
/// (ECG/PPG) and 0.9 (activity), subject `local`, outbox purpose `research`, capture queue of
/// 4 windows.
#[derive(Debug, uniffi::Object)]
pub struct EngineConfig {
    inner: vitalcore::Config,
}

impl EngineConfig {
    fn with(&self, f: impl FnOnce(vitalcore::Config) -> vitalcore::Config) -> Arc<Self> {
        Arc::new(Self {
            inner: f(self.inner.clone()),
        })
    }
}

#[uniffi::export]
impl EngineConfig {
    /// A config storing everything under `data_dir` (created on open).
    #[uniffi::constructor]
    pub fn new(data_dir: String) -> Arc<Self> {
        Arc::new(Self {
            inner: vitalcore::Config::new(data_dir),
        })
    }

    /// Base URL of the sync backend. Default: none (sync disabled).
    pub fn sync_endpoint(self: Arc<Self>, url: String) -> Arc<Self> {
        self.with(|c| c.sync_endpoint(url))
    }

    /// Data region the backend must serve (`eu`, `us`...). Default: none.
    pub fn sync_region(self: Arc<Self>, region: String) -> Arc<Self> {
        self.with(|c| c.sync_region(region))
    }

    /// Hex Ed25519 public keys of the sync servers. With any, a sync first asks the endpoint for
    /// its region statement signed by one of them over a fresh nonce and sends nothing (uploads
    /// and erasure requests alike) unless it verifies and names `sync_region`. Default: none
    /// (the endpoint's unsigned region is checked, which only TLS authenticates).
    pub fn sync_region_keys(self: Arc<Self>, keys_hex: Vec<String>) -> Arc<Self> {
        self.with(|c| c.sync_region_keys(keys_hex))
    }

    /// Hex Ed25519 public keys model bundles must be signed with. Default: none.
    pub fn model_public_keys(self: Arc<Self>, keys_hex: Vec<String>) -> Arc<Self> {
        self.with(|c| c.model_public_keys(keys_hex))
    }

    /// Keep raw samples with each check for this many seconds (`None`: do not keep).
    /// Default: `None`.
    pub fn raw_retention_s(self: Arc<Self>, seconds: Option<u64>) -> Arc<Self> {
        self.with(|c| c.raw_retention(seconds.map(Duration::from_secs)))
    }

    /// Minimum signal quality of an ECG/PPG check for the model to run. Default 0.86.
    pub fn cardiac_sqi_threshold(self: Arc<Self>, sqi: f64) -> Arc<Self> {
        self.with(|c| c.cardiac_sqi_threshold(sqi))
    }

    /// Minimum signal quality of an activity check for the model to run. Default 0.9.
    pub fn accel_sqi_threshold(self: Arc<Self>, sqi: f64) -> Arc<Self> {
        self.with(|c| c.accel_sqi_threshold(sqi))
    }

    /// The local subject id records are filed under. Default `local`.
    pub fn subject(self: Arc<Self>, id: String) -> Arc<Self> {
        self.with(|c| c.subject(id))
    }

    /// Outbox purpose of stored checks (`[a-z0-9_]{1,32}`). Default `research`.
    pub fn outbox_purpose(self: Arc<Self>, purpose: String) -> Arc<Self> {
        self.with(|c| c.outbox_purpose(purpose))
    }

    /// Windows a background capture may queue before pushes are refused. Default 4.
    pub fn capture_queue(self: Arc<Self>, windows: u32) -> Arc<Self> {
        self.with(|c| c.capture_queue(windows as usize))
    }

    /// What a finished check survives once `finish` returns. Default `AppCrash`.
    pub fn durability(self: Arc<Self>, durability: Durability) -> Arc<Self> {
        self.with(|c| c.durability(durability.into()))
    }

    /// Whether the model bundled with the SDK serves rhythm checks until a signed update is
    /// installed. Default `true`; with `false` checks report no model until then.
    pub fn builtin_model(self: Arc<Self>, on: bool) -> Arc<Self> {
        self.with(|c| c.builtin_model(on))
    }
}

/// What a finished check survives (`EngineConfig.durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum Durability {
    /// Every `finish` waits for the disk to flush (milliseconds): survives power loss.
    PowerLoss,
    /// `finish` returns once the check is in the store's write-ahead log: survives the app
    /// being killed or crashing; an OS crash or power loss may roll back the latest checks.
    AppCrash,
}

impl From<Durability> for vitalcore::Durability {
    fn from(d: Durability) -> Self {
        match d {
            Durability::PowerLoss => Self::PowerLoss,
            Durability::AppCrash => Self::AppCrash,
        }
    }
}

/// Feeds the engine's `KeyProvider` from the host's. The host's own error is kept so that
/// `open` can hand it back unchanged instead of a lossy translation.
struct HostKeys {
    host: Arc<dyn KeyProvider>,
    host_error: Mutex<Option<VitalcoreError>>,
}

impl vitalcore::keys::KeyProvider for HostKeys {
    fn root_key(&self) -> Result<Vec<u8>, vitalcore::keys::KeyError> {
        // The same checks (length, not all zero) as every other use of a host key.
        match crate::keys::root_key(self.host.as_ref()) {
            Ok(key) => Ok(key.to_vec()),
            Err(e) => {
                *self
                    .host_error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(e);
                Err(vitalcore::keys::KeyError::Unavailable)
            }
        }
    }
}

/// The engine: the encrypted store, check sessions, background captures and history.
/// Open once and share; `shutdown` (or `close`) when done.
#[derive(Debug, uniffi::Object)]
pub struct Engine {
    inner: vitalcore::Vitalcore,
}

impl Engine {
    /// The core engine, for the exports of other modules (`user.rs`).
    pub(crate) fn core(&self) -> &vitalcore::Vitalcore {
        &self.inner
    }
}

fn open(config: &EngineConfig, keys: Arc<dyn KeyProvider>) -> Result<Engine> {
    let adapter = HostKeys {
        host: keys,
        host_error: Mutex::new(None),
    };
    match vitalcore::Vitalcore::open(config.inner.clone(), &adapter) {
        Ok(inner) => Ok(Engine { inner }),
        Err(e) => Err(adapter
            .host_error
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .unwrap_or_else(|| e.into())),
    }
}

/// [`Engine::open`] without blocking the caller (opening may migrate the store and asks the
/// platform keystore). `suspend` in Kotlin, `async` in Swift and Python.
#[uniffi::export]
pub async fn open_engine_async(
    config: Arc<EngineConfig>,
    keys: Arc<dyn KeyProvider>,
) -> Result<Arc<Engine>> {
    offload(move || open(&config, keys).map(Arc::new)).await?
}

#[uniffi::export]
impl Engine {
    /// Opens (or creates) the encrypted store under the config's directory with the key from
    /// `keys`. No network, no thread. A wrong key is `Crypto`; the store is left untouched.
    #[uniffi::constructor]
    pub fn open(config: Arc<EngineConfig>, keys: Arc<dyn KeyProvider>) -> Result<Arc<Self>> {
        open(&config, keys).map(Arc::new)
    }

    /// Starts a health check. Nothing is stored until `finish`.
    pub fn start_check(&self, kind: CheckKind) -> Result<Arc<Session>> {
        Ok(Arc::new(Session {
            inner: self.inner.start_check(kind.into())?,
        }))
    }

    /// Starts a background capture cut into windows of `window_s` seconds overlapping by
    /// `overlap_s`; stops when the handle is closed or released.
    pub fn start_capture(
        &self,
        kind: CheckKind,
        window_s: f64,
        overlap_s: f64,
    ) -> Result<Arc<Capture>> {
        let config = vitalcore::CaptureConfig::new(kind.into())
            .window_s(window_s)
            .overlap_s(overlap_s);
        Ok(Arc::new(Capture {
            inner: self.inner.start_capture(config)?,
        }))
    }

    /// Health checks started in `[from_ms, to_ms)` (Unix ms), oldest first; only `kind` if given.
    pub fn checks(
        &self,
        from_ms: i64,
        to_ms: i64,
        kind: Option<CheckKind>,
    ) -> Result<Vec<StoredCheck>> {
        Ok(records(self.inner.checks(
            from_ms,
            to_ms,
            kind.map(Into::into),
        )?))
    }

    /// [`Engine::checks`] on a worker thread.
    pub async fn checks_async(
        self: Arc<Self>,
        from_ms: i64,
        to_ms: i64,
        kind: Option<CheckKind>,
    ) -> Result<Vec<StoredCheck>> {
        offload(move || self.checks(from_ms, to_ms, kind)).await?
    }

    /// Background-capture windows started in `[from_ms, to_ms)`, oldest first.
    pub fn windows(
        &self,
        from_ms: i64,
        to_ms: i64,
        kind: Option<CheckKind>,
    ) -> Result<Vec<StoredCheck>> {
        Ok(records(self.inner.windows(
            from_ms,
            to_ms,
            kind.map(Into::into),
        )?))
    }

    /// One check or window by id, or `None`.
    pub fn check(&self, id: String) -> Result<Option<StoredCheck>> {
        Ok(self.inner.check(&id)?.map(Into::into))
    }

    /// Raw samples kept with a check (empty unless raw retention was on).
    pub fn raw_samples(&self, id: String) -> Result<Vec<RawSamples>> {
        Ok(records(self.inner.raw_samples(&id)?))
    }

    /// Records an outcome label for a check. `NotFound` if there is no such check.
    pub fn add_label(&self, check_id: String, label: Label) -> Result<()> {
        Ok(self.inner.add_label(&check_id, label.into())?)
    }

    /// The labels of a check, in the order they were recorded.
    pub fn labels(&self, check_id: String) -> Result<Vec<Label>> {
        Ok(records(self.inner.labels(&check_id)?))
    }

    /// Deletes a check with its labels, raw samples and pending upload; whether it existed.
    pub fn delete_check(&self, id: String) -> Result<bool> {
        Ok(self.inner.delete_check(&id)?)
    }

    /// Makes operations in progress stop at their next step with `Interrupted`, committing
    /// nothing. Later operations are not affected.
    pub fn interrupt(&self) {
        self.inner.interrupt()
    }

    /// Refuses new work, waits for work in progress, checkpoints the store. Idempotent;
    /// later calls fail with `Closed`.
    pub fn shutdown(&self) -> Result<()> {
        Ok(self.inner.shutdown()?)
    }

    /// [`Engine::shutdown`] on a worker thread (it waits for a `finish` in progress).
    pub async fn shutdown_async(self: Arc<Self>) -> Result<()> {
        offload(move || self.shutdown()).await?
    }

    /// Whether `shutdown` was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.is_shut_down()
    }
}

fn records<T, U: From<T>>(v: Vec<T>) -> Vec<U> {
    v.into_iter().map(Into::into).collect()
}

/// One health check in progress: push batches, then `finish` (or `cancel`).
#[derive(Debug, uniffi::Object)]
pub struct Session {
    inner: Arc<vitalcore::CheckSession>,
}

#[uniffi::export]
impl Session {
    /// Appends samples of `channel` taken at `rate_hz`, the first at `start_s` (Unix
    /// seconds). A bad batch is refused with `InvalidInput` and the session is unchanged.
    pub fn push_samples(
        &self,
        channel: String,
        start_s: f64,
        rate_hz: f64,
        samples: Vec<f64>,
    ) -> Result<()> {
        Ok(self.inner.push_samples(
            &channel,
            vitalcore::SampleBatch::uniform(start_s, rate_hz, samples),
        )?)
    }

    /// [`Session::push_samples`] with samples packed as little-endian f64 bytes: one copy
    /// across the FFI instead of one encode per sample.
    pub fn push_samples_f64le(
        &self,
        channel: String,
        start_s: f64,
        rate_hz: f64,
        samples: Vec<u8>,
    ) -> Result<()> {
        self.push_samples(channel, start_s, rate_hz, unpack_f64le(&samples)?)
    }

    /// Appends samples with their own timestamps (Unix seconds) from a sensor nominally at
    /// `rate_hz`; the engine resamples to a uniform grid.
    pub fn push_timestamped(
        &self,
        channel: String,
        times_s: Vec<f64>,
        samples: Vec<f64>,
        rate_hz: f64,
    ) -> Result<()> {
        Ok(self.inner.push_samples(
            &channel,
            vitalcore::SampleBatch::timestamped(times_s, samples, rate_hz),
        )?)
    }

    /// Seconds of signal pushed on `channel` so far.
    pub fn duration_s(&self, channel: String) -> f64 {
        self.inner.duration_s(&channel)
    }

    /// The kind of this check.
    pub fn kind(&self) -> CheckKind {
        self.inner.kind().into()
    }

    /// Extracts features, gates on quality, runs the active model and stores the check in
    /// one encrypted commit.
    pub fn finish(&self) -> Result<CheckResult> {
        Ok(self.inner.finish()?.into())
    }

    /// [`Session::finish`] on a worker thread: `suspend` in Kotlin, `async` in Swift/Python.
    pub async fn finish_async(self: Arc<Self>) -> Result<CheckResult> {
        offload(move || self.finish()).await?
    }

    /// Discards the samples; nothing is stored.
    pub fn cancel(&self) -> Result<()> {
        Ok(self.inner.cancel()?)
    }
}

/// A background capture. Windows are analysed and stored as samples arrive; closing (or
/// releasing) the handle stops it.
#[derive(Debug, uniffi::Object)]
pub struct Capture {
    inner: Arc<vitalcore::Capture>,
}

#[uniffi::export]
impl Capture {
    /// Appends samples; `Backpressure` when windows queue up faster than they are processed
    /// (the batch was not taken: push it again later).
    pub fn push_samples(
        &self,
        channel: String,
        start_s: f64,
        rate_hz: f64,
        samples: Vec<f64>,
    ) -> Result<()> {
        Ok(self.inner.push_samples(
            &channel,
            vitalcore::SampleBatch::uniform(start_s, rate_hz, samples),
        )?)
    }

    /// [`Capture::push_samples`] with samples packed as little-endian f64 bytes.
    pub fn push_samples_f64le(
        &self,
        channel: String,
        start_s: f64,
        rate_hz: f64,
        samples: Vec<u8>,
    ) -> Result<()> {
        self.push_samples(channel, start_s, rate_hz, unpack_f64le(&samples)?)
    }

    /// Counters so far.
    pub fn stats(&self) -> CaptureStats {
        self.inner.stats().into()
    }

    /// Stops the capture after the queued windows are processed; final counters. Idempotent.
    /// (Named `stop`, not `close`: generated Kotlin objects already have `close()`, which
    /// releases the handle, and that stops the capture too.)
    pub fn stop(&self) -> CaptureStats {
        self.inner.close().into()
    }

    /// [`Capture::stop`] on a worker thread (it waits for queued windows).
    pub async fn stop_async(self: Arc<Self>) -> Result<CaptureStats> {
        Ok(offload(move || self.stop()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Result<Vec<u8>, VitalcoreError>);
    impl KeyProvider for Fixed {
        fn root_key(&self) -> Result<Vec<u8>, VitalcoreError> {
            self.0.clone()
        }
    }

    fn engine(dir: &std::path::Path, key: Result<Vec<u8>, VitalcoreError>) -> Result<Arc<Engine>> {
        let config = EngineConfig::new(dir.to_string_lossy().into_owned());
        Engine::open(config, Arc::new(Fixed(key)))
    }

    #[test]
    fn the_host_key_opens_the_store_and_another_key_is_a_crypto_error() {
        let dir = tempfile::tempdir().expect("temp dir");
        let e = engine(dir.path(), Ok(vec![7; 32])).expect("open");
        e.shutdown().expect("shutdown");
        drop(e);
        let err = engine(dir.path(), Ok(vec![8; 32])).expect_err("wrong key");
        assert!(matches!(err, VitalcoreError::Crypto { .. }), "{err:?}");
        engine(dir.path(), Ok(vec![7; 32])).expect("same key reopens");
    }

    #[test]
    fn host_key_errors_reach_the_caller_unchanged_and_bad_keys_are_typed() {
        let dir = tempfile::tempdir().expect("temp dir");
        let host = VitalcoreError::Crypto {
            reason: "keystore locked".into(),
        };
        let err = engine(dir.path(), Err(host.clone())).expect_err("host error");
        assert_eq!(err, host);
        let err = engine(dir.path(), Ok(vec![1; 16])).expect_err("short key");
        assert!(
            matches!(err, VitalcoreError::InvalidInput { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn closed_sessions_and_engines_are_closed_errors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let e = engine(dir.path(), Ok(vec![7; 32])).expect("open");
        let s = e.start_check(CheckKind::PpgRhythm).expect("session");
        s.cancel().expect("cancel");
        let err = s
            .push_samples("ppg".into(), 0.0, 100.0, vec![0.0; 10])
            .expect_err("cancelled");
        assert!(matches!(err, VitalcoreError::Closed { .. }), "{err:?}");
        e.shutdown().expect("shutdown");
        let err = e.start_check(CheckKind::PpgRhythm).expect_err("shut down");
        assert!(matches!(err, VitalcoreError::Closed { .. }), "{err:?}");
    }
}
