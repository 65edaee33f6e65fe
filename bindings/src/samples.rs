//! Checks on sample batches coming from the host, before any of them is used.
//!
//! The same checks the signal crate runs (rate in 1..=2000 Hz, non-empty, finite, within
//! sensor range), exposed on their own so that `push_samples` of a session and this call
//! reject exactly the same batches.

use vitalcore_signal::series::{check_rate, check_samples};

/// What a valid batch holds.
#[derive(Debug, Clone, Copy, PartialEq, uniffi::Record)]
pub struct BatchSummary {
    /// Number of samples.
    pub count: u64,
    /// Duration covered, `count / rate_hz`, in seconds.
    pub duration_s: f64,
}

/// Checks a batch of samples taken at `rate_hz` the way the engine checks every batch it is
/// given: `InvalidInput` on an empty batch, a non-finite or out-of-range sample, or a rate
/// outside 1..=2000 Hz. The message names the index, never the value.
#[uniffi::export]
pub fn validate_batch(
    samples: Vec<f64>,
    rate_hz: f64,
) -> Result<BatchSummary, crate::VitalcoreError> {
    check_rate(rate_hz)?;
    check_samples(&samples)?;
    Ok(BatchSummary {
        count: samples.len() as u64,
        duration_s: samples.len() as f64 / rate_hz,
    })
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum PackedError {
    #[error(
        "packed samples must be a whole number of 8-byte little-endian f64 values, got {len} bytes"
    )]
    Ragged { len: usize },
}

/// Unpacks little-endian IEEE-754 f64 values. Hosts pass samples this way to avoid uniffi's
/// per-element sequence encoding, which dominates the cost of a batch call (see BENCHMARKS.md).
pub(crate) fn unpack_f64le(bytes: &[u8]) -> Result<Vec<f64>, crate::VitalcoreError> {
    if !bytes.len().is_multiple_of(8) {
        return Err(PackedError::Ragged { len: bytes.len() }.into());
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            f64::from_le_bytes(b)
        })
        .collect())
}

/// [`validate_batch`] with the samples packed as little-endian f64 bytes (Kotlin
/// `ByteBuffer.order(LITTLE_ENDIAN)`, Swift `withUnsafeBytes`, NumPy `astype("<f8").tobytes()`):
/// one copy across the FFI instead of one encode per sample.
#[uniffi::export]
pub fn validate_batch_f64le(
    samples_f64le: Vec<u8>,
    rate_hz: f64,
) -> Result<BatchSummary, crate::VitalcoreError> {
    validate_batch(unpack_f64le(&samples_f64le)?, rate_hz)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VitalcoreError;

    #[test]
    fn packed_samples_unpack_exactly_and_ragged_input_is_rejected() {
        let x = [1.5, -0.25, f64::MAX, 0.0];
        let bytes: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(unpack_f64le(&bytes).unwrap(), x);
        assert!(matches!(
            validate_batch_f64le(bytes[..9].to_vec(), 100.0),
            Err(VitalcoreError::InvalidInput { .. })
        ));
    }
    use proptest::prelude::*;

    fn invalid(r: Result<BatchSummary, VitalcoreError>) -> bool {
        matches!(r, Err(VitalcoreError::InvalidInput { .. }))
    }

    #[test]
    fn rejects_each_kind_of_bad_batch() {
        assert!(invalid(validate_batch(vec![1.0], 0.0)));
        assert!(invalid(validate_batch(vec![1.0], f64::NAN)));
        assert!(invalid(validate_batch(vec![1.0], 20_000.0)));
        assert!(invalid(validate_batch(vec![], 100.0)));
        assert!(invalid(validate_batch(vec![0.5, f64::INFINITY], 100.0)));
        assert!(invalid(validate_batch(vec![0.5, 1e300], 100.0)));
    }

    #[test]
    fn messages_never_carry_sample_values() {
        let err = validate_batch(vec![123.456, f64::NAN], 100.0).unwrap_err();
        assert!(!err.to_string().contains("123.456"), "{err}");
    }

    proptest! {
        #[test]
        fn any_input_gives_a_summary_or_invalid_input(
            samples in proptest::collection::vec(proptest::num::f64::ANY, 0..64),
            rate in proptest::num::f64::ANY,
        ) {
            match validate_batch(samples.clone(), rate) {
                Ok(s) => {
                    prop_assert_eq!(s.count as usize, samples.len());
                    prop_assert!(samples.iter().all(|v| v.is_finite()));
                    prop_assert!(s.duration_s > 0.0);
                }
                Err(VitalcoreError::InvalidInput { .. }) => {}
                Err(other) => prop_assert!(false, "unexpected error kind {:?}", other),
            }
        }
    }
}
