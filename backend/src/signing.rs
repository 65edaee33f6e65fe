//! The server's Ed25519 publisher key: signs model manifests.
//!
//! The key comes from a file or the environment. Only in explicit dev mode may the server create
//! one (persisted under the data dir, and logged as such); in production mode a missing key
//! disables model upload instead of inventing a key nobody pinned.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use vitalcore_protocol::{
    region_statement_message, ManifestSignature, ModelManifest, RegionStatement, SignedManifest,
};

/// Key loading and signing failures (never contain key material).
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The key file could not be read or written.
    #[error("signing key file: {0}")]
    Io(std::io::ErrorKind),
    /// The bytes are not an Ed25519 PKCS#8 document (raw DER or base64).
    #[error("signing key is not Ed25519 PKCS#8")]
    BadKey,
    /// The manifest could not be serialized.
    #[error("manifest serialization failed")]
    Serialize,
    /// No signature by the expected key verifies.
    #[error("signature does not verify")]
    BadSignature,
}

/// The publisher key pair.
pub struct Signer {
    pair: Ed25519KeyPair,
    key_id: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Lower-case hex of the first 8 bytes of sha256(public key).
pub fn key_id_of(public_key: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, public_key);
    hex::encode(&d.as_ref()[..8])
}

impl Signer {
    /// From PKCS#8 DER bytes, or the same base64-encoded (whitespace ignored).
    pub fn from_pkcs8(bytes: &[u8]) -> Result<Self, SigningError> {
        let pair = Ed25519KeyPair::from_pkcs8(bytes).or_else(|_| {
            let text: String = String::from_utf8_lossy(bytes).split_whitespace().collect();
            let der = B64
                .decode(text.as_bytes())
                .map_err(|_| SigningError::BadKey)?;
            Ed25519KeyPair::from_pkcs8(&der).map_err(|_| SigningError::BadKey)
        })?;
        let key_id = key_id_of(pair.public_key().as_ref());
        Ok(Self { pair, key_id })
    }

    /// From a key file.
    pub fn from_file(path: &Path) -> Result<Self, SigningError> {
        let bytes = std::fs::read(path).map_err(|e| SigningError::Io(e.kind()))?;
        Self::from_pkcs8(&bytes)
    }

    /// Dev mode only: loads `path`, creating a fresh key there first if it does not exist.
    /// Returns whether a key was created, so the caller can say so.
    pub fn load_or_create_dev(path: &Path) -> Result<(Self, bool), SigningError> {
        if path.exists() {
            return Ok((Self::from_file(path)?, false));
        }
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| SigningError::BadKey)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| SigningError::Io(e.kind()))?;
        }
        std::fs::write(path, doc.as_ref()).map_err(|e| SigningError::Io(e.kind()))?;
        restrict_permissions(path)?;
        Ok((Self::from_pkcs8(doc.as_ref())?, true))
    }

    /// Key id as devices pin it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// Signs the manifest's JSON bytes.
    pub fn sign(&self, manifest: &ModelManifest) -> Result<SignedManifest, SigningError> {
        let payload = serde_json::to_vec(manifest).map_err(|_| SigningError::Serialize)?;
        let sig = self.pair.sign(&payload);
        Ok(SignedManifest {
            payload: B64.encode(&payload),
            signatures: vec![ManifestSignature {
                key_id: self.key_id.clone(),
                sig: B64.encode(sig.as_ref()),
            }],
        })
    }

    /// Signs the statement that this node serves `region`, bound to the device's `nonce`.
    /// The signed bytes carry their own context (see `vitalcore_protocol::region`), so a
    /// region statement never verifies as a model manifest or the other way round.
    pub fn sign_region(&self, region: &str, nonce: &str) -> RegionStatement {
        let sig = self.pair.sign(&region_statement_message(region, nonce));
        RegionStatement {
            region: region.to_owned(),
            nonce: nonce.to_owned(),
            key_id: self.key_id.clone(),
            sig: B64.encode(sig.as_ref()),
        }
    }
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) -> Result<(), SigningError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| SigningError::Io(e.kind()))
}

#[cfg(not(unix))]
fn restrict_permissions(_: &Path) -> Result<(), SigningError> {
    Ok(())
}

/// Verifies an envelope against a pinned public key and returns the manifest it carries.
pub fn verify(signed: &SignedManifest, public_key: &[u8]) -> Result<ModelManifest, SigningError> {
    let payload = B64
        .decode(&signed.payload)
        .map_err(|_| SigningError::BadSignature)?;
    let want = key_id_of(public_key);
    let ok = signed.signatures.iter().any(|s| {
        s.key_id == want
            && B64.decode(&s.sig).is_ok_and(|sig| {
                UnparsedPublicKey::new(&ED25519, public_key)
                    .verify(&payload, &sig)
                    .is_ok()
            })
    });
    if !ok {
        return Err(SigningError::BadSignature);
    }
    serde_json::from_slice(&payload).map_err(|_| SigningError::BadSignature)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn dev_key_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pk8");
        let (a, created) = Signer::load_or_create_dev(&path).unwrap();
        assert!(created);
        let (b, created) = Signer::load_or_create_dev(&path).unwrap();
        assert!(!created);
        assert_eq!(a.public_key(), b.public_key());
        assert_eq!(a.key_id().len(), 16);
        let b64 = B64.encode(std::fs::read(&path).unwrap());
        assert_eq!(
            Signer::from_pkcs8(b64.as_bytes()).unwrap().key_id(),
            a.key_id()
        );
        assert!(!format!("{a:?}").contains(&b64));
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert!(matches!(
            Signer::from_pkcs8(b"not a key"),
            Err(SigningError::BadKey)
        ));
    }
}
