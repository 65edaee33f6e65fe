//! Checks on sample batches coming from the host, before any of them is used.
//!
//! Every entry point that takes samples (one-shot analysis now, `push_samples` of a session
//! later) runs these checks first, so a NaN from a sensor driver or a rate of zero becomes
//! `InvalidInput` and never reaches the DSP.

/// Highest sample rate accepted, in Hz. Wearable PPG/ECG/accelerometers run at 25-1000 Hz;
/// anything above this is a unit mistake (for example a rate given in mHz).
pub const MAX_RATE_HZ: f64 = 10_000.0;

/// What a valid batch holds.
#[derive(Debug, Clone, Copy, PartialEq, uniffi::Record)]
pub struct BatchSummary {
    /// Number of samples.
    pub count: u64,
    /// Duration covered, `count / rate_hz`, in seconds.
    pub duration_s: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub(crate) enum BatchError {
    #[error("sample rate must be a finite number in (0, {MAX_RATE_HZ}] Hz")]
    BadRate,
    #[error("sample batch is empty")]
    Empty,
    // The index says where to look; the value itself is never reported.
    #[error("sample {index} is not a finite number")]
    NotFinite { index: usize },
}

pub(crate) fn check_batch(samples: &[f64], rate_hz: f64) -> Result<BatchSummary, BatchError> {
    if !(rate_hz.is_finite() && rate_hz > 0.0 && rate_hz <= MAX_RATE_HZ) {
        return Err(BatchError::BadRate);
    }
    if samples.is_empty() {
        return Err(BatchError::Empty);
    }
    if let Some(index) = samples.iter().position(|v| !v.is_finite()) {
        return Err(BatchError::NotFinite { index });
    }
    Ok(BatchSummary {
        count: samples.len() as u64,
        duration_s: samples.len() as f64 / rate_hz,
    })
}

/// Checks a batch of samples taken at `rate_hz` the way the engine checks every batch it is
/// given; `InvalidInput` on an empty batch, a non-finite sample or a rate outside
/// (0, 10 000] Hz.
#[uniffi::export]
pub fn validate_batch(
    samples: Vec<f64>,
    rate_hz: f64,
) -> Result<BatchSummary, crate::VitalcoreError> {
    Ok(check_batch(&samples, rate_hz)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rejects_each_kind_of_bad_batch() {
        assert_eq!(check_batch(&[1.0], 0.0), Err(BatchError::BadRate));
        assert_eq!(check_batch(&[1.0], f64::NAN), Err(BatchError::BadRate));
        assert_eq!(check_batch(&[1.0], 20_000.0), Err(BatchError::BadRate));
        assert_eq!(check_batch(&[], 100.0), Err(BatchError::Empty));
        assert_eq!(
            check_batch(&[0.5, f64::INFINITY], 100.0),
            Err(BatchError::NotFinite { index: 1 })
        );
    }

    #[test]
    fn messages_never_carry_sample_values() {
        let err = validate_batch(vec![123.456, f64::NAN], 100.0).unwrap_err();
        assert!(!err.to_string().contains("123.456"), "{err}");
    }

    proptest! {
        #[test]
        fn any_input_gives_a_summary_or_a_typed_error(
            samples in proptest::collection::vec(proptest::num::f64::ANY, 0..64),
            rate in proptest::num::f64::ANY,
        ) {
            match validate_batch(samples.clone(), rate) {
                Ok(s) => {
                    prop_assert_eq!(s.count as usize, samples.len());
                    prop_assert!(samples.iter().all(|v| v.is_finite()));
                    prop_assert!(s.duration_s > 0.0);
                }
                Err(crate::VitalcoreError::InvalidInput { .. }) => {
                    prop_assert!(
                        samples.is_empty()
                            || !(rate.is_finite() && rate > 0.0 && rate <= MAX_RATE_HZ)
                            || samples.iter().any(|v| !v.is_finite())
                    );
                }
                Err(other) => prop_assert!(false, "unexpected error kind {:?}", other),
            }
        }
    }
}
