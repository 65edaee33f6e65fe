//! `vitalcore-protocol`: serde-only wire types shared by devices and the backend.
//!
//! No tokio, no HTTP client, no database: both sides depend on this crate, so it stays small.
#![warn(missing_docs)]

/// Version of the HTTP API these types belong to (the `/v1` path prefix).
pub const API_VERSION: &str = "v1";
