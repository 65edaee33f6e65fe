//! Credentials: device bearer credentials, the admin token and partner API keys. Only hashes
//! are stored or compared; secrets never reach logs.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use ring::rand::SecureRandom as _;

use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::PartnerKey;

/// sha256 of bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lower-case hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha256(bytes))
}

/// `n` random bytes, URL-safe base64 (for credentials and ids).
pub fn random_token(n: usize) -> Result<String, ApiError> {
    let mut buf = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| ApiError::Internal)?;
    Ok(B64URL.encode(buf))
}

/// Random lower-case hex id of `n` bytes.
pub fn random_hex(n: usize) -> Result<String, ApiError> {
    let mut buf = vec![0u8; n];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| ApiError::Internal)?;
    Ok(hex::encode(buf))
}

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = v.strip_prefix("Bearer ")?.trim();
    (!token.is_empty() && token.len() <= 512).then_some(token)
}

/// Whether `secret` matches one of the configured hashes. Comparing digests (not secrets)
/// means timing reveals nothing useful about the secret.
pub(crate) fn matches_any(secret: &str, hashes: &[[u8; 32]]) -> bool {
    let h = sha256(secret.as_bytes());
    hashes.iter().any(|x| ring_eq(x, &h))
}

fn ring_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An authenticated device.
#[derive(Debug, Clone)]
pub struct Device {
    /// Its pseudonymous id.
    pub device_id: String,
}

impl FromRequestParts<AppState> for Device {
    type Rejection = ApiError;

    /// Rate-limited per credential first (so unknown and revoked credentials cost little),
    /// then looked up on every request: a revoked or expired credential is refused on the very
    /// next request, on every node.
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        let digest = sha256(token.as_bytes());
        state.limits.check_device(digest)?;
        match state
            .store
            .device_by_credential(&hex::encode(digest), crate::now_secs())
            .await?
        {
            Some(device_id) => Ok(Self { device_id }),
            None => Err(ApiError::Unauthorized),
        }
    }
}

/// The admin.
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        match &state.admin_hash {
            Some(h) if matches_any(token, std::slice::from_ref(h)) => Ok(Self),
            _ => Err(ApiError::Unauthorized),
        }
    }
}

/// An authenticated partner app.
#[derive(Debug, Clone)]
pub struct Partner(pub PartnerKey);

impl FromRequestParts<AppState> for Partner {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        match state
            .store
            .partner_key(&sha256_hex(token.as_bytes()), crate::now_secs())
            .await?
        {
            Some(k) => Ok(Self(k)),
            None => Err(ApiError::Unauthorized),
        }
    }
}
