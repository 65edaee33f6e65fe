//! Feature set `v1`. The table lives in `vitalcore-protocol` (one place for the SDK, the
//! trainer's contract and the server's upload check); this module re-exports it under the
//! path the DSP code and its users have always named.

pub use vitalcore_protocol::feature_set::*;
