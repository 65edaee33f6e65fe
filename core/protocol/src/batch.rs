//! Sync batches: anonymized feature records and outcome labels uploaded by devices.
//!
//! A device sends one [`SyncBatch`] per upload, compressed (gzip or zstd), with an idempotency
//! key it keeps until the server acknowledged the batch: a retry with the same key gets the same
//! [`BatchAck`] and stores nothing twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the batch format this crate speaks.
pub const BATCH_SCHEMA: u32 = 1;

/// What the user consented their uploaded data may be used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentPurpose {
    /// Storage for the study the app belongs to.
    Research,
    /// Use in training exports.
    ModelTraining,
    /// Access by partner apps through the partner API.
    PartnerSharing,
}

/// One anonymized feature record (one finished health check).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureRecord {
    /// Device-generated id, unique per subject; a record sent twice is stored once.
    pub record_id: String,
    /// Pseudonymous subject id (never a name, email or device identifier).
    pub subject: String,
    /// Study the record belongs to.
    pub study: String,
    /// Kind of check (for example `"ppg"`, `"ecg"`, `"accel"`).
    pub kind: String,
    /// Feature set version the names refer to (for example `"v1"`).
    pub feature_set: String,
    /// Capture time generalized to the hour, seconds since the Unix epoch (UTC).
    pub captured_hour: i64,
    /// Generalized age band (for example `"40-49"`), when the user shared it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_band: Option<String>,
    /// Signal quality in `[0, 1]`.
    pub quality: f64,
    /// Feature values by name (allow-listed names of the feature set only).
    pub features: BTreeMap<String, f64>,
}

/// An outcome label attached to a record (for supervised training).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutcomeLabel {
    /// Pseudonymous subject id of the labelled record.
    pub subject: String,
    /// Id of the labelled record.
    pub record_id: String,
    /// The label (for example `"irregular"`).
    pub label: String,
}

/// One upload: records and labels with their consent, region and idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncBatch {
    /// Batch format version, [`BATCH_SCHEMA`] for this crate.
    pub schema: u32,
    /// Client-chosen key (16 to 128 characters of `[A-Za-z0-9_-]`), constant across retries.
    pub idempotency_key: String,
    /// Data region the device belongs to; a server of another region refuses the batch.
    pub region: String,
    /// Purposes the user consented to for every record in this batch (at least one).
    pub consent: Vec<ConsentPurpose>,
    /// Feature records.
    pub records: Vec<FeatureRecord>,
    /// Outcome labels.
    #[serde(default)]
    pub labels: Vec<OutcomeLabel>,
    /// Possession proof of each subject the batch names (pseudonym -> proof, see
    /// [`crate::vocab::SUBJECT_PROOF_CONTEXT`]). The server binds a subject to the first proof
    /// it accepts and refuses records and labels for it under any other. Absent on the wire
    /// when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subject_proofs: BTreeMap<String, String>,
}

/// The server's answer to an accepted batch; a retry with the same key gets the same answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAck {
    /// Server id of the batch.
    pub batch_id: String,
    /// Records stored by this batch.
    pub records_stored: u32,
    /// Records already stored by an earlier batch (same subject and record id).
    pub records_duplicate: u32,
    /// Labels stored.
    pub labels_stored: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SyncBatch {
        SyncBatch {
            schema: BATCH_SCHEMA,
            idempotency_key: "k-0123456789abcdef".into(),
            region: "eu".into(),
            consent: vec![ConsentPurpose::Research, ConsentPurpose::ModelTraining],
            records: vec![FeatureRecord {
                record_id: "r1".into(),
                subject: "s-1".into(),
                study: "rhythm".into(),
                kind: "ppg".into(),
                feature_set: "v1".into(),
                captured_hour: 1_790_000_000,
                age_band: Some("40-49".into()),
                quality: 0.9,
                features: [("hr".to_string(), 61.5), ("rmssd".to_string(), 42.0)]
                    .into_iter()
                    .collect(),
            }],
            labels: vec![OutcomeLabel {
                subject: "s-1".into(),
                record_id: "r1".into(),
                label: "regular".into(),
            }],
            subject_proofs: BTreeMap::new(),
        }
    }

    /// Wire snapshot: a change here breaks every device in the field.
    #[test]
    fn batch_wire_format_is_frozen() {
        let json = serde_json::to_string(&sample()).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"{"schema":1,"idempotency_key":"k-0123456789abcdef","region":"eu","#,
                r#""consent":["research","model_training"],"records":[{"record_id":"r1","subject":"s-1","#,
                r#""study":"rhythm","kind":"ppg","feature_set":"v1","captured_hour":1790000000,"#,
                r#""age_band":"40-49","quality":0.9,"features":{"hr":61.5,"rmssd":42.0}}],"#,
                r#""labels":[{"subject":"s-1","record_id":"r1","label":"regular"}]}"#
            )
        );
        let back: SyncBatch = serde_json::from_str(&json).unwrap();
        assert_eq!(back, sample());
    }

    #[test]
    fn subject_proofs_travel_only_when_present() {
        let mut b = sample();
        b.subject_proofs.insert("s-1".into(), "ab".repeat(32));
        let json = serde_json::to_string(&b).unwrap();
        assert!(json.ends_with(&format!(
            r#""subject_proofs":{{"s-1":"{}"}}}}"#,
            "ab".repeat(32)
        )));
        assert_eq!(serde_json::from_str::<SyncBatch>(&json).unwrap(), b);
    }

    #[test]
    fn ack_wire_format_is_frozen() {
        let ack = BatchAck {
            batch_id: "b1".into(),
            records_stored: 3,
            records_duplicate: 1,
            labels_stored: 2,
        };
        let json = serde_json::to_string(&ack).unwrap();
        assert_eq!(
            json,
            r#"{"batch_id":"b1","records_stored":3,"records_duplicate":1,"labels_stored":2}"#
        );
        assert_eq!(serde_json::from_str::<BatchAck>(&json).unwrap(), ack);
    }

    #[test]
    fn consent_purposes_are_snake_case_and_unknown_ones_are_refused() {
        assert_eq!(
            serde_json::to_string(&ConsentPurpose::PartnerSharing).unwrap(),
            r#""partner_sharing""#
        );
        assert!(serde_json::from_str::<ConsentPurpose>(r#""marketing""#).is_err());
    }

    #[test]
    fn labels_default_to_empty() {
        let b: SyncBatch = serde_json::from_str(
            r#"{"schema":1,"idempotency_key":"k","region":"eu","consent":["research"],"records":[]}"#,
        )
        .unwrap();
        assert!(b.labels.is_empty());
    }
}
