//! `vitalcore-protocol`: serde-only wire types shared by devices and the backend.
//!
//! No tokio, no HTTP client, no database: both sides depend on this crate, so it stays small.
//! Every serialized type has a snapshot test: the wire format changes only on purpose.
#![warn(missing_docs)]

pub mod batch;
pub mod enroll;
pub mod erasure;
pub mod feature_set;
pub mod manifest;
pub mod region;
pub mod vocab;

pub use batch::{BatchAck, ConsentPurpose, FeatureRecord, OutcomeLabel, SyncBatch, BATCH_SCHEMA};
pub use enroll::{EnrollRequest, EnrollResponse};
pub use erasure::{ErasureReceipt, ErasureRequest};
pub use feature_set::{
    feature_def, feature_in, feature_set, FeatureDef, Source, FEATURES_V1, FEATURE_SET_VERSION,
};
pub use manifest::{
    ArtifactRef, FeatureInput, InputSpec, ManifestSignature, ModelManifest, ModelVersion,
    OutputSpec, SelfTest, SignedManifest, Task, MANIFEST_SCHEMA,
};
pub use region::{
    is_valid_region_nonce, region_statement_message, RegionStatement, REGION_NONCE_HEX_LEN,
    REGION_STATEMENT_CONTEXT,
};
pub use vocab::{
    is_valid_age_band, is_valid_kind, is_valid_label, is_valid_study, is_valid_subject_proof,
    KINDS, SUBJECT_PROOF_CONTEXT,
};

/// Version of the HTTP API these types belong to (the `/v1` path prefix).
pub const API_VERSION: &str = "v1";
