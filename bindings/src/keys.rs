//! The host-implemented key provider, and the one check every root key goes through.
//!
//! The platform owns the root key (Android Keystore, iOS Keychain, a secrets manager in
//! Python); vitalcore asks for it when it opens the store. Until the engine's own
//! `vitalcore::keys` trait lands, the FFI defines the trait; the engine will take an adapter
//! that delegates to it, so host implementations keep working unchanged.

use std::sync::Arc;

use ring::digest;
use zeroize::Zeroizing;

use crate::offload::offload;
use crate::VitalcoreError;

/// Length of the root key, in bytes (256 bits).
pub const ROOT_KEY_LEN: u32 = 32;

/// Domain separation for fingerprints, so a fingerprint is never the hash of the bare key.
const FINGERPRINT_DOMAIN: &[u8] = b"vitalcore/key-fingerprint/v1\0";

/// Supplies the 32-byte root key. Implemented in Kotlin, Swift or Python.
///
/// Throw `VitalcoreError.Crypto` (keystore locked or unavailable) or `Storage`; any other
/// exception reaches the caller as `Internal`, with its message dropped.
#[uniffi::export(with_foreign)]
pub trait KeyProvider: Send + Sync {
    /// Returns the root key: exactly 32 bytes, not all zero.
    fn root_key(&self) -> Result<Vec<u8>, VitalcoreError>;
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum KeyError {
    // The length is not secret; the bytes are never reported.
    #[error("root key must be {ROOT_KEY_LEN} bytes, got {len}")]
    WrongLength { len: usize },
    #[error("root key is all zero bytes (uninitialised keystore entry?)")]
    Degenerate,
}

/// Asks `provider` for the root key and checks it. The bytes live only in zeroizing memory.
pub(crate) fn root_key(provider: &dyn KeyProvider) -> Result<Zeroizing<[u8; 32]>, VitalcoreError> {
    let raw = Zeroizing::new(provider.root_key()?);
    let mut key = Zeroizing::new([0u8; 32]);
    if raw.len() != key.len() {
        return Err(KeyError::WrongLength { len: raw.len() }.into());
    }
    key.copy_from_slice(&raw);
    if key.iter().all(|b| *b == 0) {
        return Err(KeyError::Degenerate.into());
    }
    Ok(key)
}

fn fingerprint(provider: &dyn KeyProvider) -> Result<String, VitalcoreError> {
    let key = root_key(provider)?;
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(FINGERPRINT_DOMAIN);
    ctx.update(key.as_slice());
    Ok(hex::encode(&ctx.finish().as_ref()[..8]))
}

/// Fingerprint of the provider's root key: the first 8 bytes of
/// SHA-256(`"vitalcore/key-fingerprint/v1\0"` || key), as 16 lowercase hex digits. Lets an
/// app check that it hands the same key as last time without ever showing the key.
#[uniffi::export]
pub fn key_fingerprint(provider: Arc<dyn KeyProvider>) -> Result<String, VitalcoreError> {
    fingerprint(provider.as_ref())
}

/// [`key_fingerprint`] without blocking the caller: the provider is called on a worker
/// thread (a keystore may prompt or take its time). `suspend` in Kotlin, `async` elsewhere.
#[uniffi::export]
pub async fn key_fingerprint_async(
    provider: Arc<dyn KeyProvider>,
) -> Result<String, VitalcoreError> {
    offload(move || fingerprint(provider.as_ref())).await?
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

    fn fp(r: Result<Vec<u8>, VitalcoreError>) -> Result<String, VitalcoreError> {
        key_fingerprint(Arc::new(Fixed(r)))
    }

    #[test]
    fn fingerprint_matches_its_definition() {
        let key: Vec<u8> = (1..=32).collect();
        let mut input = b"vitalcore/key-fingerprint/v1\0".to_vec();
        input.extend_from_slice(&key);
        let want = hex::encode(&digest::digest(&digest::SHA256, &input).as_ref()[..8]);
        assert_eq!(fp(Ok(key)).unwrap(), want);
    }

    #[test]
    fn bad_keys_are_typed_errors_without_key_bytes() {
        let err = fp(Ok(vec![7u8; 31])).unwrap_err();
        assert!(
            matches!(err, VitalcoreError::InvalidInput { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("31"));
        let err = fp(Ok(vec![0u8; 32])).unwrap_err();
        assert!(matches!(err, VitalcoreError::Crypto { .. }), "{err:?}");
    }

    #[test]
    fn provider_errors_pass_through_unchanged() {
        let e = VitalcoreError::Network {
            reason: "x".into(),
            retry_after_ms: Some(5),
        };
        assert_eq!(fp(Err(e.clone())).unwrap_err(), e);
    }
}
