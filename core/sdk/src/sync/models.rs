//! Model updates: poll the manifest with its ETag, download the artifact it names.
//!
//! Nothing here decides whether a model is trustworthy: the signed envelope and the artifact
//! bytes go to the model lifecycle, which verifies signature, hash, version and expiry. The
//! envelope's payload is only read to learn which artifact version to fetch and how long it
//! may be, so a hostile server cannot make the device download without bound.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, ETAG, IF_NONE_MATCH};
use reqwest::StatusCode;
use vitalcore_protocol::{ModelManifest, SignedManifest};

use super::{SyncClient, SyncError};

/// Largest manifest envelope accepted (a manifest is a few KiB).
const MAX_ENVELOPE: usize = 256 * 1024;
/// Largest artifact accepted whatever the envelope claims; the server's own upload limit.
const MAX_ARTIFACT: u64 = 256 << 20;

/// Outcome of [`SyncClient::poll_model`].
#[derive(Clone, PartialEq, Eq)]
pub enum ModelPoll {
    /// The manifest still has the ETag the device sent: nothing to download.
    NotModified,
    /// A manifest other than the one the device has; unverified bytes for the model lifecycle.
    Available {
        /// The signed manifest envelope exactly as served (`SignedManifest` JSON).
        envelope: Vec<u8>,
        /// The artifact bytes of the version the envelope names.
        artifact: Vec<u8>,
        /// ETag to send on the next poll.
        etag: String,
    },
}

impl std::fmt::Debug for ModelPoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotModified => f.write_str("NotModified"),
            Self::Available {
                envelope, artifact, ..
            } => f
                .debug_struct("Available")
                .field("envelope_len", &envelope.len())
                .field("artifact_len", &artifact.len())
                .finish_non_exhaustive(),
        }
    }
}

/// Model names as the server accepts them: 1-64 of `[A-Za-z0-9_-]`, safe in a URL path.
fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

impl SyncClient {
    /// Asks the server for the manifest of model `name` (with `If-None-Match: etag` when the
    /// device already has one) and, when it changed, downloads the artifact it names.
    ///
    /// Errors: [`SyncError::ModelNotFound`] (nothing published for this device),
    /// [`SyncError::HeldByPolicy`] (Wi-Fi / charging policy), [`SyncError::Unauthorized`],
    /// [`SyncError::Network`] (unreachable, malformed envelope, artifact of the wrong length),
    /// [`SyncError::Unavailable`] (5xx or 429).
    pub async fn poll_model(
        &self,
        name: &str,
        etag: Option<String>,
    ) -> Result<ModelPoll, SyncError> {
        if !valid_name(name) {
            return Err(SyncError::Config(
                "model name must be 1-64 of [A-Za-z0-9_-]",
            ));
        }
        if !self.policy_allows() {
            return Err(SyncError::HeldByPolicy);
        }
        let auth = format!("Bearer {}", self.config.credential);
        let mut req = self
            .http
            .get(format!(
                "{}/v1/models/{name}/manifest",
                self.config.endpoint
            ))
            .header(AUTHORIZATION, &auth);
        if let Some(t) = &etag {
            req = req.header(IF_NONE_MATCH, t.as_str());
        }
        let resp = req
            .send()
            .await
            .map_err(|_| SyncError::Network("endpoint unreachable".into()))?;
        check_status(&resp)?;
        if resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(ModelPoll::NotModified);
        }
        let new_etag = resp
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| SyncError::Network("manifest answer without ETag".into()))?;
        let envelope = read_capped(resp, MAX_ENVELOPE as u64).await?;
        let manifest = unverified_manifest(&envelope)?;
        if manifest.name != name {
            return Err(SyncError::Network("manifest names another model".into()));
        }
        if manifest.artifact.length == 0 || manifest.artifact.length > MAX_ARTIFACT {
            return Err(SyncError::Network(
                "manifest artifact length out of range".into(),
            ));
        }
        let version = manifest.version.to_string();
        let resp = self
            .http
            .get(format!(
                "{}/v1/models/{name}/versions/{version}/artifact",
                self.config.endpoint
            ))
            .header(AUTHORIZATION, &auth)
            .send()
            .await
            .map_err(|_| SyncError::Network("endpoint unreachable".into()))?;
        check_status(&resp)?;
        let artifact = read_capped(resp, manifest.artifact.length).await?;
        if artifact.len() as u64 != manifest.artifact.length {
            return Err(SyncError::Network(
                "artifact length differs from the manifest".into(),
            ));
        }
        Ok(ModelPoll::Available {
            envelope,
            artifact,
            etag: new_etag,
        })
    }
}

fn check_status(resp: &reqwest::Response) -> Result<(), SyncError> {
    let s = resp.status();
    if s.is_success() || s == StatusCode::NOT_MODIFIED {
        return Ok(());
    }
    Err(match s {
        StatusCode::NOT_FOUND => SyncError::ModelNotFound,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => SyncError::Unauthorized,
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => SyncError::Unavailable {
            retry_after_ms: super::retry_after_secs(resp.headers()).unwrap_or(1) * 1000,
        },
        _ => SyncError::Network("model request refused".into()),
    })
}

/// Reads a body of at most `cap` bytes; a longer body is refused without reading the rest.
async fn read_capped(mut resp: reqwest::Response, cap: u64) -> Result<Vec<u8>, SyncError> {
    if resp.content_length().is_some_and(|n| n > cap) {
        return Err(SyncError::Network("answer larger than announced".into()));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|_| SyncError::Network("download cut".into()))?
    {
        if out.len() as u64 + chunk.len() as u64 > cap {
            return Err(SyncError::Network("answer larger than announced".into()));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The manifest inside an envelope, NOT verified: only for the artifact's version and length.
fn unverified_manifest(envelope: &[u8]) -> Result<ModelManifest, SyncError> {
    let bad = || SyncError::Network("malformed manifest envelope".into());
    let signed: SignedManifest = serde_json::from_slice(envelope).map_err(|_| bad())?;
    let payload = B64.decode(signed.payload.as_bytes()).map_err(|_| bad())?;
    serde_json::from_slice(&payload).map_err(|_| bad())
}
