//! The server's statement of the data region it serves, signed over a nonce the device chose.
//!
//! `GET /v1/region?nonce=<hex>` answers a [`RegionStatement`]. The signature (Ed25519, by the
//! server's key, which the device pins) covers [`region_statement_message`] of the region and
//! the nonce, so a statement cannot be replayed to another device or another run, and a server
//! without the key cannot claim a region. The message starts with a context string and is not
//! JSON, so it can never be taken for a signed model manifest by the same key.

use serde::{Deserialize, Serialize};

/// Context prefix of the signed message; the version changes with the message layout.
pub const REGION_STATEMENT_CONTEXT: &[u8] = b"vitalcore-region-statement/v1";

/// Shortest and longest nonce, in hexadecimal digits (16 to 64 random bytes).
pub const REGION_NONCE_HEX_LEN: std::ops::RangeInclusive<usize> = 32..=128;

/// Answer of `GET /v1/region`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionStatement {
    /// Region the server serves (`eu`, `us`, ...).
    pub region: String,
    /// The nonce of the request, echoed.
    pub nonce: String,
    /// Key id of the signing key: lower-case hex of the first 8 bytes of sha256(public key).
    pub key_id: String,
    /// Ed25519 signature over [`region_statement_message`], standard base64.
    pub sig: String,
}

/// The signed bytes: the context, then the region and the nonce, each preceded by its length
/// as a big-endian `u32` (so no choice of strings makes two statements sign the same bytes).
pub fn region_statement_message(region: &str, nonce: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(REGION_STATEMENT_CONTEXT.len() + 8 + region.len() + nonce.len());
    m.extend_from_slice(REGION_STATEMENT_CONTEXT);
    for part in [region, nonce] {
        // Both are bounded far below 4 GiB by the route; saturating keeps the function total.
        let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
        m.extend_from_slice(&len.to_be_bytes());
        m.extend_from_slice(part.as_bytes());
    }
    m
}

/// Whether `nonce` is a well-formed request nonce: lower-case hex of an allowed length.
pub fn is_valid_region_nonce(nonce: &str) -> bool {
    REGION_NONCE_HEX_LEN.contains(&nonce.len())
        && nonce
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_statement_wire_format_is_frozen() {
        let s = RegionStatement {
            region: "eu".into(),
            nonce: "00ff".into(),
            key_id: "0123456789abcdef".into(),
            sig: "c2ln".into(),
        };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(
            json,
            r#"{"region":"eu","nonce":"00ff","key_id":"0123456789abcdef","sig":"c2ln"}"#
        );
        assert_eq!(serde_json::from_str::<RegionStatement>(&json).unwrap(), s);
    }

    #[test]
    fn message_layout_is_frozen_and_unambiguous() {
        let m = region_statement_message("eu", "ab");
        let mut want = b"vitalcore-region-statement/v1".to_vec();
        want.extend_from_slice(&[0, 0, 0, 2, b'e', b'u', 0, 0, 0, 2, b'a', b'b']);
        assert_eq!(m, want);
        // Moving bytes between the fields changes the message.
        assert_ne!(
            region_statement_message("eua", "b"),
            region_statement_message("eu", "ab")
        );
        assert!(!m.starts_with(b"{"));
    }

    #[test]
    fn nonce_must_be_lower_hex_of_allowed_length() {
        assert!(is_valid_region_nonce(&"a1".repeat(16)));
        assert!(is_valid_region_nonce(&"0f".repeat(64)));
        assert!(!is_valid_region_nonce(&"a1".repeat(15)));
        assert!(!is_valid_region_nonce(&"a1".repeat(65)));
        assert!(!is_valid_region_nonce(&"A1".repeat(16)));
        assert!(!is_valid_region_nonce(&"g1".repeat(16)));
    }
}
