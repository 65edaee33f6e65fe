//! Erasure of a pseudonymous subject's data on the server.

use serde::{Deserialize, Serialize};

/// Sent by a device to `POST /v1/erasure`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureRequest {
    /// Pseudonymous subject id whose records, labels and archived objects are deleted.
    pub subject: String,
    /// The subject's possession proof (as in [`crate::SyncBatch::subject_proofs`]); required
    /// for a subject the server has bound, absent on the wire when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<String>,
}

/// What the server deleted; the audit trail keeps these counts, never the subject id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasureReceipt {
    /// Id of the audit entry.
    pub audit_id: String,
    /// Feature records deleted.
    pub records_deleted: u64,
    /// Outcome labels deleted.
    pub labels_deleted: u64,
    /// Archived raw objects deleted.
    pub objects_deleted: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erasure_wire_format_is_frozen() {
        let req = ErasureRequest {
            subject: "s-1".into(),
            proof: None,
        };
        let json = serde_json::to_string(&req).unwrap();
        assert_eq!(json, r#"{"subject":"s-1"}"#);
        assert_eq!(serde_json::from_str::<ErasureRequest>(&json).unwrap(), req);
        let proved = ErasureRequest {
            proof: Some("ab".repeat(32)),
            ..req
        };
        let json = serde_json::to_string(&proved).unwrap();
        assert_eq!(
            json,
            format!(r#"{{"subject":"s-1","proof":"{}"}}"#, "ab".repeat(32))
        );
        assert_eq!(
            serde_json::from_str::<ErasureRequest>(&json).unwrap(),
            proved
        );

        let receipt = ErasureReceipt {
            audit_id: "a1".into(),
            records_deleted: 4,
            labels_deleted: 2,
            objects_deleted: 1,
        };
        let json = serde_json::to_string(&receipt).unwrap();
        assert_eq!(
            json,
            r#"{"audit_id":"a1","records_deleted":4,"labels_deleted":2,"objects_deleted":1}"#
        );
        assert_eq!(
            serde_json::from_str::<ErasureReceipt>(&json).unwrap(),
            receipt
        );
    }
}
