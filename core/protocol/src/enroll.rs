//! Device enrollment: an app enrollment token buys a per-device credential.

use serde::{Deserialize, Serialize};

/// Sent once by a fresh install to `POST /v1/enroll`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// Secret shared by every install of one app (rotated by app release).
    pub enrollment_token: String,
}

impl std::fmt::Debug for EnrollRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollRequest")
            .field("enrollment_token", &"<redacted>")
            .finish()
    }
}

/// The device's identity; the server keeps only a hash of the credential.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// Pseudonymous device id (random, not derived from any hardware id).
    pub device_id: String,
    /// Bearer credential for later calls (`Authorization: Bearer <credential>`); shown once.
    pub credential: String,
}

impl std::fmt::Debug for EnrollResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrollResponse")
            .field("device_id", &self.device_id)
            .field("credential", &"<redacted>")
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enroll_wire_format_is_frozen() {
        let req = EnrollRequest {
            enrollment_token: "tok".into(),
        };
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(json, r#"{"enrollment_token":"tok"}"#);
        assert_eq!(serde_json::from_str::<EnrollRequest>(&json).unwrap(), req);

        let resp = EnrollResponse {
            device_id: "d1".into(),
            credential: "c1".into(),
        };
        let json = serde_json::to_string(&resp).unwrap();
        assert_eq!(json, r#"{"device_id":"d1","credential":"c1"}"#);
        assert_eq!(serde_json::from_str::<EnrollResponse>(&json).unwrap(), resp);
    }

    #[test]
    fn debug_never_shows_secrets() {
        let resp = EnrollResponse {
            device_id: "d1".into(),
            credential: "super-secret".into(),
        };
        let req = EnrollRequest {
            enrollment_token: "app-secret".into(),
        };
        assert!(!format!("{resp:?}").contains("super-secret"));
        assert!(!format!("{req:?}").contains("app-secret"));
    }
}
