//! Exports that exist only in test builds (feature `testing`): they let the Kotlin and
//! Python suites prove that a panic inside Rust reaches them as an exception.

use crate::offload::offload;
use crate::VitalcoreError;

/// Panics on the calling thread. uniffi catches it: Kotlin sees `InternalException`,
/// Python `InternalError`, Swift a thrown error; the process lives on.
#[uniffi::export]
pub fn debug_panic(message: String) -> Result<(), VitalcoreError> {
    panic!("{message}")
}

/// Panics on an offload worker; arrives as `VitalcoreError.Internal`.
#[uniffi::export]
pub async fn debug_panic_async(message: String) -> Result<(), VitalcoreError> {
    offload(move || -> Result<(), VitalcoreError> { panic!("{message}") }).await?
}
