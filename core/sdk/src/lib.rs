//! `vitalcore`: the engine app developers embed.
//!
//! Modules arrive with their capabilities: `store` (encrypted SQLite), `inference` (tract),
//! `models` (signed bundles), then the engine, privacy and sync.
#![warn(missing_docs)]

pub use vitalcore_signal as signal;

pub mod keys;
pub mod privacy;
pub mod store;
pub mod sync;
