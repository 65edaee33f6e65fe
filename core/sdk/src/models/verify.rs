//! Bundle verification, in the order The Update Framework teaches: who signed it, is the
//! artifact the one signed for, is it newer, is it still fresh, can this SDK run it. Nothing
//! is parsed as ONNX before the artifact's length and hash match the signed manifest.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::digest::{digest, SHA256};
use ring::signature::{Ed25519KeyPair, UnparsedPublicKey, ED25519};
use vitalcore_protocol::manifest::{
    ManifestSignature, ModelManifest, ModelVersion, SignedManifest, MANIFEST_SCHEMA,
};

use super::error::ModelError;
use super::trust::TrustedModel;

/// Version of this SDK, compared with [`ModelManifest::min_sdk_version`].
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A publisher's Ed25519 public key, pinned in the SDK configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct PublisherKey {
    key_id: String,
    public: Vec<u8>,
}

impl std::fmt::Debug for PublisherKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherKey")
            .field("key_id", &self.key_id)
            .finish()
    }
}

/// Key id of an Ed25519 public key: lower-case hex of the first 8 bytes of its sha256.
pub fn key_id(public: &[u8]) -> String {
    hex::encode(&digest(&SHA256, public).as_ref()[..8])
}

impl PublisherKey {
    /// A key from its 32 raw public bytes.
    pub fn from_bytes(public: &[u8]) -> Result<Self, ModelError> {
        if public.len() != 32 {
            return Err(ModelError::Malformed(
                "an Ed25519 public key is 32 bytes".into(),
            ));
        }
        Ok(PublisherKey {
            key_id: key_id(public),
            public: public.to_vec(),
        })
    }

    /// A key from the lower-case or upper-case hex of its 32 bytes.
    pub fn from_hex(public_hex: &str) -> Result<Self, ModelError> {
        let bytes = hex::decode(public_hex.trim())
            .map_err(|_| ModelError::Malformed("public key is not hex".into()))?;
        Self::from_bytes(&bytes)
    }

    /// The key id signatures refer to.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }
}

/// Lower-case hex sha256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(digest(&SHA256, bytes).as_ref())
}

/// Signs `manifest_json` (the exact bytes devices will verify) with a PKCS#8 Ed25519 key.
/// For publishers and tests; devices never hold a private key.
pub fn sign_manifest(manifest_json: &[u8], pkcs8: &[u8]) -> Result<SignedManifest, ModelError> {
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
        .map_err(|_| ModelError::Malformed("not a PKCS#8 Ed25519 key".into()))?;
    use ring::signature::KeyPair as _;
    let sig = pair.sign(manifest_json);
    Ok(SignedManifest {
        payload: B64.encode(manifest_json),
        signatures: vec![ManifestSignature {
            key_id: key_id(pair.public_key().as_ref()),
            sig: B64.encode(sig.as_ref()),
        }],
    })
}

/// A manifest whose envelope verified, with the payload digest the trust store records.
#[derive(Debug, Clone)]
pub struct VerifiedManifest {
    /// The manifest.
    pub manifest: ModelManifest,
    /// sha256 of the signed payload bytes.
    pub payload_sha256: String,
}

/// Step 1: the envelope carries a valid signature by a pinned key; returns the manifest.
pub fn verify_envelope(
    envelope: &SignedManifest,
    keys: &[PublisherKey],
) -> Result<VerifiedManifest, ModelError> {
    let payload = B64
        .decode(envelope.payload.as_bytes())
        .map_err(|_| ModelError::Malformed("payload is not base64".into()))?;
    let mut pinned_signature_seen = false;
    let mut verified = false;
    for s in &envelope.signatures {
        let Some(key) = keys.iter().find(|k| k.key_id == s.key_id) else {
            continue;
        };
        pinned_signature_seen = true;
        let Ok(sig) = B64.decode(s.sig.as_bytes()) else {
            continue;
        };
        if UnparsedPublicKey::new(&ED25519, &key.public)
            .verify(&payload, &sig)
            .is_ok()
        {
            verified = true;
            break;
        }
    }
    if !pinned_signature_seen {
        return Err(ModelError::UntrustedKey);
    }
    if !verified {
        return Err(ModelError::BadSignature);
    }
    // Parsed only once authenticated: unauthenticated JSON never reaches serde.
    let manifest: ModelManifest = serde_json::from_slice(&payload)
        .map_err(|e| ModelError::Malformed(format!("manifest: {e}")))?;
    Ok(VerifiedManifest {
        manifest,
        payload_sha256: sha256_hex(&payload),
    })
}

/// Step 2: the artifact is exactly the one the manifest pins (length first, then hash).
pub fn verify_artifact(manifest: &ModelManifest, artifact: &[u8]) -> Result<(), ModelError> {
    let got = artifact.len() as u64;
    if got != manifest.artifact.length {
        return Err(ModelError::ArtifactLength {
            expected: manifest.artifact.length,
            got,
        });
    }
    if !sha256_hex(artifact).eq_ignore_ascii_case(&manifest.artifact.sha256) {
        return Err(ModelError::ArtifactHash);
    }
    Ok(())
}

/// Steps 3-5: newer than what is trusted, not expired, runnable by this SDK.
///
/// `allow_same` accepts the trusted version itself when the payload is the one trusted
/// (re-opening the active bundle after a restart), never a different payload with the same
/// version.
pub fn verify_policy(
    verified: &VerifiedManifest,
    trusted: Option<&TrustedModel>,
    now_unix: i64,
    allow_same: bool,
) -> Result<(), ModelError> {
    let m = &verified.manifest;
    if let Some(t) = trusted {
        let same_trusted =
            allow_same && m.version == t.version && verified.payload_sha256 == t.manifest_sha256;
        if m.version <= t.version && !same_trusted {
            return Err(ModelError::Rollback {
                offered: m.version.clone(),
                trusted: t.version.clone(),
            });
        }
    }
    if now_unix >= m.expires_at {
        return Err(ModelError::Expired);
    }
    if m.schema != MANIFEST_SCHEMA {
        return Err(ModelError::UnsupportedSchema(m.schema));
    }
    let sdk: ModelVersion = SDK_VERSION
        .parse()
        .expect("CARGO_PKG_VERSION is a valid semantic version");
    if m.min_sdk_version > sdk {
        return Err(ModelError::SdkTooOld {
            required: m.min_sdk_version.clone(),
        });
    }
    crate::inference::check_input_spec(&m.input).map_err(ModelError::IncompatibleInputs)?;
    Ok(())
}
