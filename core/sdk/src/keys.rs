//! The root key the host platform owns.
//!
//! The app implements [`KeyProvider`] with the Android Keystore or the iOS Keychain and hands the
//! SDK a 256-bit root key. The SDK never stores the root key: it derives per-purpose keys from it
//! (see `store::crypto`) and drops its copy, zeroized, as soon as those are derived.
//!
//! The trait is exported later through uniffi as a foreign trait, so it stays object-safe,
//! `Send + Sync`, takes `&self` only and returns plain bytes plus a typed error.

use std::fmt;

use zeroize::Zeroizing;

/// Length in bytes of the root key a [`KeyProvider`] must return.
pub const ROOT_KEY_LEN: usize = 32;

/// Why a root key could not be obtained or used. Carries no key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The platform keystore is not available right now (device locked, keystore busy).
    /// Retrying later may succeed.
    #[error("the platform key store is unavailable")]
    Unavailable,
    /// The platform has no key for this store (never created, or wiped by the user/OS).
    #[error("no root key exists for this store")]
    NotFound,
    /// The provider returned a key of the wrong length.
    #[error("root key has {found} bytes, expected {ROOT_KEY_LEN}")]
    InvalidLength {
        /// Number of bytes returned.
        found: usize,
    },
    /// Any other platform failure; the message must not contain key material or personal data.
    #[error("key provider failed: {0}")]
    Platform(String),
}

/// Source of the 256-bit root key, implemented by the host app with its platform key store.
///
/// Implementations should return the same key for the same store every time; a different key
/// makes the store refuse to open with `StoreError::WrongKey` (it never wipes data).
pub trait KeyProvider: Send + Sync {
    /// Returns the 32-byte root key. The SDK wraps the returned buffer in [`Zeroizing`] at once,
    /// so the copy handed over is wiped after use.
    fn root_key(&self) -> Result<Vec<u8>, KeyError>;
}

/// A 256-bit key held in memory that is zeroized on drop and never printed.
#[derive(Clone)]
pub struct RootKey(Zeroizing<[u8; ROOT_KEY_LEN]>);

impl RootKey {
    /// Takes a key from bytes returned by a provider, zeroizing the source buffer.
    pub fn from_provider(provider: &dyn KeyProvider) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(provider.root_key()?);
        Self::from_slice(&bytes)
    }

    /// Copies a key from a slice, which must be exactly [`ROOT_KEY_LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; ROOT_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KeyError::InvalidLength { found: bytes.len() })?;
        Ok(Self(Zeroizing::new(arr)))
    }

    /// The key bytes, for key derivation only.
    pub(crate) fn expose(&self) -> &[u8; ROOT_KEY_LEN] {
        &self.0
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey(<redacted>)")
    }
}

/// A [`KeyProvider`] holding its key in process memory: for tests, tools and desktop use where
/// no platform key store exists. Not for production on phones.
#[derive(Clone)]
pub struct InMemoryKeyProvider {
    key: RootKey,
}

impl InMemoryKeyProvider {
    /// A provider returning `key`.
    pub fn new(key: [u8; ROOT_KEY_LEN]) -> Self {
        let key = Zeroizing::new(key);
        Self { key: RootKey(key) }
    }

    /// A provider with a fresh key from the operating system's secure random source.
    pub fn random() -> Result<Self, KeyError> {
        use ring::rand::SecureRandom;
        let mut key = Zeroizing::new([0u8; ROOT_KEY_LEN]);
        ring::rand::SystemRandom::new()
            .fill(&mut key[..])
            .map_err(|_| KeyError::Platform("system random source failed".into()))?;
        Ok(Self { key: RootKey(key) })
    }
}

impl KeyProvider for InMemoryKeyProvider {
    fn root_key(&self) -> Result<Vec<u8>, KeyError> {
        Ok(self.key.expose().to_vec())
    }
}

impl fmt::Debug for InMemoryKeyProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InMemoryKeyProvider(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_key_bytes() {
        let p = InMemoryKeyProvider::new([0xAB; 32]);
        let k = RootKey::from_provider(&p).expect("in-memory provider has a 32-byte key");
        for s in [format!("{p:?}"), format!("{k:?}"), format!("{k:#?}")] {
            assert!(
                !s.contains("171") && !s.to_lowercase().contains("ab, "),
                "{s}"
            );
            assert!(s.contains("redacted"));
        }
    }

    #[test]
    fn wrong_length_is_typed_error() {
        struct Short;
        impl KeyProvider for Short {
            fn root_key(&self) -> Result<Vec<u8>, KeyError> {
                Ok(vec![1; 16])
            }
        }
        assert_eq!(
            RootKey::from_provider(&Short).map(|_| ()),
            Err(KeyError::InvalidLength { found: 16 })
        );
    }

    #[test]
    fn provider_is_object_safe_send_sync() {
        fn assert_send_sync<T: Send + Sync + ?Sized>() {}
        assert_send_sync::<dyn KeyProvider>();
        let p: std::sync::Arc<dyn KeyProvider> =
            std::sync::Arc::new(InMemoryKeyProvider::new([1; 32]));
        assert_eq!(p.root_key().map(|k| k.len()), Ok(32));
    }
}
