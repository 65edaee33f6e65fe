//! Key hierarchy and sealing.
//!
//! ```text
//! root key (platform) ──HKDF-SHA256, salt = per-store random──▶ canary key  (key check at open)
//!                                                           ├─▶ wrap key    (seals data keys)
//!                                                           ├─▶ meta key    (consent, model cache)
//!                                                           ├─▶ index key   (HMAC lookup tags)
//!                                                           └─▶ audit key   (HMAC chain of the audit log)
//! data key per (subject, purpose): random 256 bits, stored only wrapped by the wrap key.
//! ```
//!
//! Destroying a wrapped data key (crypto-shredding) makes every ciphertext sealed with it
//! unreadable, wherever copies of those ciphertexts survive.
//!
//! Sealed value layout: `format (1) || nonce (12) || ciphertext || tag (16)`, AES-256-GCM with a
//! random nonce from the OS. The associated data binds the format byte, table, row id, column and
//! data key id, so a ciphertext moved to another row, column, table or key fails to open.

use ring::aead::{self, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf;
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::keys::RootKey;

/// Format byte of sealed values. Bumped only when the layout or a column's plaintext encoding
/// changes incompatibly; a migration then re-seals. Part of the associated data.
pub(crate) const SEAL_FORMAT: u8 = 1;
const HEADER_LEN: usize = 1 + NONCE_LEN;
const TAG_LEN: usize = 16;
/// Smallest possible sealed value (empty plaintext).
pub(crate) const MIN_SEALED_LEN: usize = HEADER_LEN + TAG_LEN;

/// Fixed plaintext of the key-check canary. Not secret: what matters is that only the right key
/// authenticates it.
pub(crate) const CANARY_PLAINTEXT: &[u8] = b"vitalcore store key check v1";

/// Why sealing or opening failed. Deliberately carries no data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CryptoFail {
    /// Too short, unknown format byte, or authentication failed: the value was tampered with,
    /// moved, truncated, or sealed under another key.
    Unauthentic,
    /// The OS random source failed.
    Random,
}

/// Where a sealed value lives; bound into its associated data.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Binding<'a> {
    pub table: &'static str,
    pub row: &'a [u8],
    pub column: &'static str,
    pub key_id: i64,
}

impl Binding<'_> {
    fn aad(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16 + self.table.len() + self.row.len() + self.column.len());
        v.extend_from_slice(b"vcs");
        v.push(SEAL_FORMAT);
        for part in [self.table.as_bytes(), self.row, self.column.as_bytes()] {
            // Length prefixes keep ("ab","c") and ("a","bc") apart.
            v.extend_from_slice(&(part.len() as u32).to_be_bytes());
            v.extend_from_slice(part);
        }
        v.extend_from_slice(&self.key_id.to_be_bytes());
        v
    }
}

/// An AES-256-GCM key with random nonces. ring keeps the expanded key schedule internally; the
/// raw key bytes we held to build it are zeroized.
pub(crate) struct SealKey {
    key: LessSafeKey,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(<redacted>)")
    }
}

impl SealKey {
    pub(crate) fn from_bytes(bytes: &[u8; 32]) -> Self {
        let unbound =
            UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte slice is a valid AES-256 key");
        Self {
            key: LessSafeKey::new(unbound),
        }
    }

    fn from_prk(prk: &hkdf::Prk, info: &[u8]) -> Self {
        let info = [info];
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .expect("HKDF-SHA256 can expand 32 bytes");
        Self {
            key: LessSafeKey::new(UnboundKey::from(okm)),
        }
    }

    pub(crate) fn seal(
        &self,
        rng: &SystemRandom,
        binding: Binding<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CryptoFail> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce).map_err(|_| CryptoFail::Random)?;
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.push(SEAL_FORMAT);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(binding.aad()),
                &mut out[HEADER_LEN..],
            )
            .map_err(|_| CryptoFail::Unauthentic)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Opens a sealed value. The returned plaintext is zeroized when dropped.
    pub(crate) fn open(
        &self,
        binding: Binding<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoFail> {
        if sealed.len() < MIN_SEALED_LEN || sealed[0] != SEAL_FORMAT {
            return Err(CryptoFail::Unauthentic);
        }
        let nonce: [u8; NONCE_LEN] = sealed[1..HEADER_LEN]
            .try_into()
            .map_err(|_| CryptoFail::Unauthentic)?;
        let mut buf = Zeroizing::new(sealed[HEADER_LEN..].to_vec());
        let len = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(binding.aad()),
                &mut buf,
            )
            .map_err(|_| CryptoFail::Unauthentic)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

impl SealKey {
    /// Opens a sealed value in its own buffer (no copy): the hot read path, where the row's
    /// bytes were just fetched into a fresh `Vec`. The buffer is zeroized on drop, including
    /// when authentication fails half way.
    pub(crate) fn open_owned(
        &self,
        binding: Binding<'_>,
        sealed: Vec<u8>,
    ) -> Result<Zeroizing<Vec<u8>>, CryptoFail> {
        let mut buf = Zeroizing::new(sealed);
        if buf.len() < MIN_SEALED_LEN || buf[0] != SEAL_FORMAT {
            return Err(CryptoFail::Unauthentic);
        }
        let nonce: [u8; NONCE_LEN] = buf[1..HEADER_LEN]
            .try_into()
            .map_err(|_| CryptoFail::Unauthentic)?;
        let len = self
            .key
            .open_within(
                Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(binding.aad()),
                &mut buf,
                HEADER_LEN..,
            )
            .map_err(|_| CryptoFail::Unauthentic)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

/// The nonce of a sealed value, for tests that check nonce uniqueness on raw files.
pub fn sealed_nonce(sealed: &[u8]) -> Option<[u8; NONCE_LEN]> {
    if sealed.len() < MIN_SEALED_LEN || sealed[0] != SEAL_FORMAT {
        return None;
    }
    sealed[1..HEADER_LEN].try_into().ok()
}

fn audit_message(prev: &[u8], entry: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(4 + prev.len() + entry.len());
    m.extend_from_slice(&(prev.len() as u32).to_be_bytes());
    m.extend_from_slice(prev);
    m.extend_from_slice(entry);
    m
}

/// Keys derived from the root key for one store (one per-store salt).
pub(crate) struct KeyRing {
    pub canary: SealKey,
    pub wrap: SealKey,
    pub meta: SealKey,
    index: hmac::Key,
    audit: hmac::Key,
    pub rng: SystemRandom,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyRing(<redacted>)")
    }
}

impl KeyRing {
    /// Derives every store key. `salt` is random per store, so the same platform key yields
    /// unrelated keys for two stores.
    pub(crate) fn derive(root: &RootKey, salt: &[u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(root.expose());
        let hmac_key = |info: &[u8]| {
            let info = [info];
            hmac::Key::from(
                prk.expand(&info, hmac::HMAC_SHA256)
                    .expect("HKDF-SHA256 can expand 32 bytes"),
            )
        };
        Self {
            canary: SealKey::from_prk(&prk, b"vitalcore/store/v1/canary"),
            wrap: SealKey::from_prk(&prk, b"vitalcore/store/v1/wrap"),
            meta: SealKey::from_prk(&prk, b"vitalcore/store/v1/meta"),
            index: hmac_key(b"vitalcore/store/v1/index"),
            audit: hmac_key(b"vitalcore/store/v1/audit"),
            rng: SystemRandom::new(),
        }
    }

    /// Keyed hash used as a lookup index instead of a plaintext identifier.
    pub(crate) fn tag(&self, domain: &str, value: &str) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.index);
        ctx.update(&(domain.len() as u32).to_be_bytes());
        ctx.update(domain.as_bytes());
        ctx.update(value.as_bytes());
        ctx.sign().as_ref().to_vec()
    }

    /// Next link of the audit log's HMAC chain.
    pub(crate) fn audit_mac(&self, prev: &[u8], entry: &[u8]) -> Vec<u8> {
        hmac::sign(&self.audit, &audit_message(prev, entry))
            .as_ref()
            .to_vec()
    }

    /// Checks a link of the audit chain in constant time.
    pub(crate) fn audit_verify(&self, prev: &[u8], entry: &[u8], mac: &[u8]) -> bool {
        hmac::verify(&self.audit, &audit_message(prev, entry), mac).is_ok()
    }

    /// A fresh random data key, returned with its raw bytes (zeroized on drop) for wrapping.
    pub(crate) fn new_data_key(&self) -> Result<Zeroizing<[u8; 32]>, CryptoFail> {
        let mut k = Zeroizing::new([0u8; 32]);
        self.rng.fill(&mut k[..]).map_err(|_| CryptoFail::Random)?;
        Ok(k)
    }

    pub(crate) fn random<const N: usize>(&self) -> Result<[u8; N], CryptoFail> {
        let mut b = [0u8; N];
        self.rng.fill(&mut b).map_err(|_| CryptoFail::Random)?;
        Ok(b)
    }

    /// Opens a wrapped data key.
    pub(crate) fn unwrap_data_key(
        &self,
        binding: Binding<'_>,
        wrapped: &[u8],
    ) -> Result<SealKey, CryptoFail> {
        let raw = self.wrap.open(binding, wrapped)?;
        let arr: Zeroizing<[u8; 32]> = Zeroizing::new(
            raw.as_slice()
                .try_into()
                .map_err(|_| CryptoFail::Unauthentic)?,
        );
        Ok(SealKey::from_bytes(&arr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::RootKey;
    use std::collections::HashSet;

    fn ring() -> KeyRing {
        KeyRing::derive(&RootKey::from_slice(&[9; 32]).expect("32 bytes"), b"salt")
    }

    fn b(row: &[u8]) -> Binding<'_> {
        Binding {
            table: "checks",
            row,
            column: "features",
            key_id: 1,
        }
    }

    #[test]
    fn round_trip_and_every_binding_part_matters() {
        let k = ring();
        let sealed = k.meta.seal(&k.rng, b(b"row1"), b"hello").expect("seal");
        assert_eq!(
            &k.meta.open(b(b"row1"), &sealed).expect("open")[..],
            b"hello"
        );
        assert!(k.meta.open(b(b"row2"), &sealed).is_err());
        let mut other = b(b"row1");
        other.column = "detail";
        assert!(k.meta.open(other, &sealed).is_err());
        other = b(b"row1");
        other.table = "labels";
        assert!(k.meta.open(other, &sealed).is_err());
        other = b(b"row1");
        other.key_id = 2;
        assert!(k.meta.open(other, &sealed).is_err());
        // Another key derived from the same root fails too.
        assert!(k.wrap.open(b(b"row1"), &sealed).is_err());
    }

    #[test]
    fn other_salt_or_root_gives_unrelated_keys() {
        let a = ring();
        let sealed = a.meta.seal(&a.rng, b(b"r"), b"x").expect("seal");
        let other_salt = KeyRing::derive(&RootKey::from_slice(&[9; 32]).expect("32"), b"salt2");
        let other_root = KeyRing::derive(&RootKey::from_slice(&[8; 32]).expect("32"), b"salt");
        assert!(other_salt.meta.open(b(b"r"), &sealed).is_err());
        assert!(other_root.meta.open(b(b"r"), &sealed).is_err());
        assert_ne!(a.tag("subject", "s"), other_salt.tag("subject", "s"));
        assert_eq!(a.tag("subject", "s"), ring().tag("subject", "s"));
    }

    #[test]
    fn many_seals_have_unique_nonces() {
        let k = ring();
        let mut seen = HashSet::with_capacity(300_000);
        for _ in 0..300_000 {
            let s = k.meta.seal(&k.rng, b(b"r"), b"").expect("seal");
            assert!(seen.insert(sealed_nonce(&s).expect("well formed")));
        }
    }

    #[test]
    fn ambiguous_binding_concatenations_differ() {
        let k = ring();
        let s = k
            .meta
            .seal(
                &k.rng,
                Binding {
                    table: "ab",
                    row: b"c",
                    column: "d",
                    key_id: 0,
                },
                b"v",
            )
            .expect("seal");
        assert!(k
            .meta
            .open(
                Binding {
                    table: "a",
                    row: b"bc",
                    column: "d",
                    key_id: 0
                },
                &s
            )
            .is_err());
    }
}
