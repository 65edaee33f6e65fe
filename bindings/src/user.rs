//! The user's rights across the FFI: consent per purpose, `sync_now`, export and deletion of
//! their data, and the sync options they run under. Methods on [`Engine`] delegate one line
//! each to `vitalcore::Vitalcore`; records mirror the core's (`Consent`, `SyncOutcome`,
//! `DeletionReport`) with integer widths uniffi carries.
//!
//! Network work (`sync_now`, `delete_my_data`) runs on an offload thread, inside one
//! process-wide tokio runtime created on the first such call: the HTTP client keeps pooled
//! connections on that runtime between calls, and the host's thread or event loop never
//! blocks on the store or the network.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::engine::Engine;
use crate::offload::offload;
use crate::VitalcoreError;

type Result<T, E = VitalcoreError> = std::result::Result<T, E>;

/// One consent decision.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Consent {
    /// Purpose: `research`, `research_<study>`, `model_training` or `partner_sharing`.
    pub purpose: String,
    /// Granted (`true`) or withdrawn (`false`).
    pub granted: bool,
    /// When it was decided, Unix ms.
    pub at_ms: i64,
    /// Version of the consent text the user saw.
    pub policy_version: String,
}

impl From<vitalcore::Consent> for Consent {
    fn from(c: vitalcore::Consent) -> Self {
        Self {
            purpose: c.purpose,
            granted: c.granted,
            at_ms: c.at_ms,
            policy_version: c.policy_version,
        }
    }
}

/// Consent state: the latest decision per purpose and the whole history.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Consents {
    /// Latest decision of each purpose ever decided.
    pub current: Vec<Consent>,
    /// Every decision, oldest first.
    pub history: Vec<Consent>,
}

/// The upload part of a sync run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct SyncReport {
    /// Batches the server acknowledged.
    pub batches_acked: u64,
    /// Records removed from the outbox after acknowledgement.
    pub records_acked: u64,
    /// Records the server already held (a replay of an earlier partial success).
    pub records_duplicate: u64,
    /// Records set aside as unsendable (kept locally, never retried).
    pub records_quarantined: u64,
    /// Nothing was uploaded because the Wi-Fi / charging policy holds network use.
    pub held_by_policy: bool,
    /// Compressed request bytes sent.
    pub bytes_sent: u64,
}

/// What one `sync_now` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct SyncOutcome {
    /// Uploads.
    pub uploads: SyncReport,
    /// Erasure requests the server confirmed in this run.
    pub erasures_delivered: u64,
    /// Erasure requests still waiting for a later run.
    pub erasures_pending: u64,
    /// The device enrolled (obtained its credential) in this run.
    pub enrolled: bool,
}

impl From<vitalcore::SyncOutcome> for SyncOutcome {
    fn from(o: vitalcore::SyncOutcome) -> Self {
        let u = o.uploads;
        Self {
            uploads: SyncReport {
                batches_acked: u.batches_acked as u64,
                records_acked: u.records_acked as u64,
                records_duplicate: u.records_duplicate as u64,
                records_quarantined: u.records_quarantined as u64,
                held_by_policy: u.held_by_policy,
                bytes_sent: u.bytes_sent,
            },
            erasures_delivered: o.erasures_delivered as u64,
            erasures_pending: o.erasures_pending as u64,
            enrolled: o.enrolled,
        }
    }
}

/// Where the server side of `delete_my_data` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ServerErasure {
    /// The device never enrolled, so no server holds its data.
    NotNeeded,
    /// The server confirmed every erasure request.
    Confirmed {
        /// Requests confirmed.
        requests: u64,
    },
    /// The server could not be reached; `sync_now` delivers the stored requests before any
    /// upload.
    Pending {
        /// Requests waiting.
        requests: u64,
    },
}

/// What `delete_my_data` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct DeletionReport {
    /// Local data keys (and the pseudonym secret) destroyed.
    pub keys_destroyed: u64,
    /// Local rows deleted.
    pub rows_deleted: u64,
    /// The server side.
    pub server: ServerErasure,
}

impl From<vitalcore::DeletionReport> for DeletionReport {
    fn from(r: vitalcore::DeletionReport) -> Self {
        use vitalcore::ServerErasure as S;
        Self {
            keys_destroyed: r.keys_destroyed as u64,
            rows_deleted: r.rows_deleted as u64,
            server: match r.server {
                S::NotNeeded => ServerErasure::NotNeeded,
                S::Confirmed { requests } => ServerErasure::Confirmed {
                    requests: requests as u64,
                },
                S::Pending { requests } => ServerErasure::Pending {
                    requests: requests as u64,
                },
            },
        }
    }
}

/// How `sync_now` talks to the config's sync endpoint, built step by step like
/// `EngineConfig`. Defaults are those of `vitalcore::SyncOptions`: no enrollment token,
/// study `default`, times coarsened to 3600 s, no Wi-Fi / charging restriction, 500 records
/// per batch, 5 attempts per request, backoff 500 ms to 60 s, request timeout 30 s.
#[derive(Debug, uniffi::Object)]
pub struct SyncOptions {
    inner: vitalcore::SyncOptions,
}

impl SyncOptions {
    fn with(&self, f: impl FnOnce(vitalcore::SyncOptions) -> vitalcore::SyncOptions) -> Arc<Self> {
        Arc::new(Self {
            inner: f(self.inner.clone()),
        })
    }
}

#[uniffi::export]
impl SyncOptions {
    /// The defaults.
    #[uniffi::constructor]
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            inner: vitalcore::SyncOptions::new(),
        })
    }

    /// The app's enrollment token, exchanged once for a device credential (kept sealed in
    /// the store). Default: none (`NotConfigured` until the device holds a credential).
    pub fn enrollment_token(self: Arc<Self>, token: String) -> Arc<Self> {
        self.with(|o| o.enrollment_token(token))
    }

    /// Study the plain `research` purpose files records under. Default `default`.
    pub fn study(self: Arc<Self>, study: String) -> Arc<Self> {
        self.with(|o| o.study(study))
    }

    /// Capture times are coarsened to this many seconds before upload; at least (and by
    /// default) 3600.
    pub fn time_granularity_s(self: Arc<Self>, seconds: i64) -> Arc<Self> {
        self.with(|o| o.time_granularity_secs(seconds))
    }

    /// Upload only on Wi-Fi (as reported by `set_device_conditions`). Default off.
    pub fn wifi_only(self: Arc<Self>, on: bool) -> Arc<Self> {
        self.with(|o| o.wifi_only(on))
    }

    /// Upload only while charging. Default off.
    pub fn charging_only(self: Arc<Self>, on: bool) -> Arc<Self> {
        self.with(|o| o.charging_only(on))
    }

    /// Most records per upload batch (at least 1). Default 500.
    pub fn max_records(self: Arc<Self>, n: u32) -> Arc<Self> {
        self.with(|o| o.max_records(n as usize))
    }

    /// Attempts per request within one run (at least 1). Default 5.
    pub fn max_attempts(self: Arc<Self>, n: u32) -> Arc<Self> {
        self.with(|o| o.max_attempts(n))
    }

    /// Full-jitter backoff base and cap, ms. Defaults 500 and 60,000.
    pub fn backoff_ms(self: Arc<Self>, base_ms: u64, cap_ms: u64) -> Arc<Self> {
        self.with(|o| {
            o.backoff(
                Duration::from_millis(base_ms),
                Duration::from_millis(cap_ms),
            )
        })
    }

    /// Per-request timeout, ms. Default 30,000.
    pub fn timeout_ms(self: Arc<Self>, ms: u64) -> Arc<Self> {
        self.with(|o| o.timeout(Duration::from_millis(ms)))
    }
}

/// The runtime every network call of the bindings runs in, made on first use.
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> =
        OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("vitalcore-net")
                .enable_all()
                .build()
                .map_err(|_| "could not start the network runtime".to_owned())
        })
        .as_ref()
        .map_err(|reason| VitalcoreError::Internal {
            reason: reason.clone(),
        })
}

/// Runs `work` (which awaits network I/O) to completion on an offload thread.
pub(crate) async fn on_network<T, F, Fut>(work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T>>,
{
    offload(move || runtime()?.block_on(work())).await?
}

#[uniffi::export]
impl Engine {
    /// Replaces the sync options (endpoint and region come from the `EngineConfig`).
    pub fn set_sync_options(&self, options: Arc<SyncOptions>) {
        self.core().set_sync_options(options.inner.clone())
    }

    /// The app reports Wi-Fi and charging state, which the Wi-Fi-only / charging-only
    /// options are judged against. Until the first report both count as true.
    pub fn set_device_conditions(&self, wifi: bool, charging: bool) {
        self.core().set_device_conditions(wifi, charging)
    }

    /// Records the user's consent to `purpose` under consent text `policy_version`.
    /// `InvalidInput` for a purpose with no upload meaning.
    pub fn grant_consent(&self, purpose: String, policy_version: String) -> Result<Consent> {
        Ok(self.core().grant_consent(&purpose, &policy_version)?.into())
    }

    /// Withdraws consent for `purpose` at once and locally: nothing more is uploaded for it,
    /// its queued records are erased, and an erasure request is queued for the server
    /// (delivered by the next `sync_now`). No network I/O.
    pub fn revoke_consent(&self, purpose: String) -> Result<Consent> {
        Ok(self.core().revoke_consent(&purpose)?.into())
    }

    /// The latest decision per purpose and the full history.
    pub fn consents(&self) -> Result<Consents> {
        let c = self.core().consents()?;
        Ok(Consents {
            current: c.current.into_iter().map(Into::into).collect(),
            history: c.history.into_iter().map(Into::into).collect(),
        })
    }

    /// Erasure requests stored and not yet confirmed by the server.
    pub fn pending_erasures(&self) -> Result<u64> {
        Ok(self.core().pending_erasures()? as u64)
    }

    /// Talks to the sync endpoint now: delivers stored erasure requests, then uploads the
    /// consented outbox, each record once; enrolls the device first if needed. Errors:
    /// `NotConfigured` (no endpoint/region, no enrollment token, endpoint of another
    /// region), `Unauthorized`, `Network` (retry later; `retry_after_ms` when the server
    /// said). `suspend` in Kotlin, `async` in Swift and Python. Cancelling the caller does
    /// not stop a run in progress; its result is dropped and the next run carries on.
    pub async fn sync_now(self: Arc<Self>) -> Result<SyncOutcome> {
        on_network(move || async move { Ok(self.core().sync_now().await?.into()) }).await
    }

    /// Every record of the user, decrypted, as JSON (format `vitalcore-export`, version 1;
    /// schema in the SDK documentation). Each read is audited.
    pub fn export_my_data(&self) -> Result<String> {
        Ok(self.core().export_my_data()?)
    }

    /// [`Engine::export_my_data`] on a worker thread.
    pub async fn export_my_data_async(self: Arc<Self>) -> Result<String> {
        offload(move || self.export_my_data()).await?
    }

    /// Deletes all of the user's data: locally first and completely (rows deleted, keys
    /// destroyed), then asks the server to erase; when it cannot be reached the request is
    /// kept and `sync_now` delivers it. Consent history is kept.
    pub async fn delete_my_data(self: Arc<Self>) -> Result<DeletionReport> {
        on_network(move || async move { Ok(self.core().delete_my_data().await?.into()) }).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::{Context, Poll, Wake, Waker};
    use vitalcore::sync::SyncError as S;

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }

    // What a host executor does: poll, park until woken.
    fn block_on<F: Future>(fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }

    struct Key;
    impl crate::KeyProvider for Key {
        fn root_key(&self) -> Result<Vec<u8>, VitalcoreError> {
            Ok(vec![9; 32])
        }
    }

    fn engine(dir: &std::path::Path, endpoint: Option<&str>) -> Arc<Engine> {
        let mut config = crate::EngineConfig::new(dir.to_string_lossy().into_owned());
        if let Some(url) = endpoint {
            config = config.sync_endpoint(url.into()).sync_region("eu".into());
        }
        Engine::open(config, Arc::new(Key)).expect("open")
    }

    #[test]
    fn sync_errors_map_to_what_the_app_can_do() {
        let kind = |e: S| match VitalcoreError::from(e) {
            VitalcoreError::NotConfigured { .. } => "not_configured",
            VitalcoreError::Unauthorized { .. } => "unauthorized",
            VitalcoreError::Network {
                retry_after_ms: Some(1500),
                ..
            } => "network_retry_1500",
            VitalcoreError::Network {
                retry_after_ms: None,
                ..
            } => "network",
            VitalcoreError::NotFound { .. } => "not_found",
            VitalcoreError::InvalidInput { .. } => "invalid_input",
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(kind(S::NoEndpoint), "not_configured");
        assert_eq!(kind(S::NotEnrolled), "not_configured");
        assert_eq!(kind(S::Config("x")), "not_configured");
        let wrong = S::WrongRegion {
            expected: "eu".into(),
            actual: "us".into(),
        };
        assert_eq!(kind(wrong), "not_configured");
        assert_eq!(kind(S::Unauthorized), "unauthorized");
        let busy = S::Unavailable {
            retry_after_ms: 1500,
        };
        assert_eq!(kind(busy), "network_retry_1500");
        assert_eq!(kind(S::Network("reset".into())), "network");
        assert_eq!(kind(S::HeldByPolicy), "network");
        assert_eq!(kind(S::ModelNotFound), "not_found");
        let purpose = S::Privacy(vitalcore::privacy::PrivacyError::UnknownPurpose);
        assert_eq!(kind(purpose), "invalid_input");
    }

    #[test]
    fn consent_round_trips_and_sync_without_endpoint_is_not_configured() {
        let dir = tempfile::tempdir().expect("temp dir");
        let e = engine(dir.path(), None);
        let err = e
            .grant_consent("advertising".into(), "v1".into())
            .expect_err("no upload meaning");
        assert!(
            matches!(err, VitalcoreError::InvalidInput { .. }),
            "{err:?}"
        );
        let c = e
            .grant_consent("research".into(), "v1".into())
            .expect("grant");
        assert!(c.granted && c.purpose == "research" && c.policy_version == "v1");
        assert!(!e.revoke_consent("research".into()).expect("revoke").granted);
        let all = e.consents().expect("consents");
        assert_eq!(
            all.history.iter().map(|c| c.granted).collect::<Vec<_>>(),
            [true, false]
        );
        assert_eq!(all.current.len(), 1);
        let err = block_on(e.clone().sync_now()).expect_err("no endpoint");
        assert!(
            matches!(err, VitalcoreError::NotConfigured { .. }),
            "{err:?}"
        );
        // Never enrolled: deletion is local, nothing for a server to erase.
        let report = block_on(e.clone().delete_my_data()).expect("delete");
        assert_eq!(report.server, ServerErasure::NotNeeded);
        let export = e.export_my_data().expect("export");
        assert!(export.contains("vitalcore-export"), "{export}");
    }

    #[test]
    fn an_unreachable_endpoint_is_a_network_error_without_retry_hint() {
        let dir = tempfile::tempdir().expect("temp dir");
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port");
        let e = engine(dir.path(), Some(&format!("http://{dead}")));
        e.set_sync_options(
            SyncOptions::new()
                .enrollment_token("token".into())
                .max_attempts(1)
                .timeout_ms(2000),
        );
        let err = block_on(e.clone().sync_now()).expect_err("nothing listens");
        assert!(
            matches!(
                err,
                VitalcoreError::Network {
                    retry_after_ms: None,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
