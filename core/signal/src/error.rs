//! The one error type of the crate: every way input can be unusable, named.
//!
//! Messages carry positions, rates and lengths, never sample values: a health signal is
//! personal data and errors end up in logs.

/// Why a signal or a feature could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    /// No samples at all.
    #[error("input is empty")]
    Empty,
    /// A NaN or an infinity in the samples or timestamps.
    #[error("non-finite value (NaN or infinity) at index {index}")]
    NonFinite {
        /// Index of the first offending sample.
        index: usize,
    },
    /// A sample's magnitude exceeds [`crate::series::MAX_ABS_SAMPLE`]: no sensor produces it,
    /// and it would overflow the filter arithmetic.
    #[error("sample magnitude out of range at index {index}")]
    ValueOutOfRange {
        /// Index of the first offending sample.
        index: usize,
    },
    /// The sample rate is outside `1..=2000` Hz (or not finite).
    #[error("sample rate {rate_hz} Hz is outside the supported range 1..=2000 Hz")]
    RateOutOfRange {
        /// The rejected rate.
        rate_hz: f64,
    },
    /// The sample rate is supported in general but too low for this analysis.
    #[error("{analysis} needs a sample rate of at least {min_hz} Hz, got {rate_hz} Hz")]
    RateTooLow {
        /// Analysis that needs the higher rate.
        analysis: &'static str,
        /// Minimum rate.
        min_hz: f64,
        /// The rate given.
        rate_hz: f64,
    },
    /// A timestamp is earlier than the one before it.
    #[error("timestamps go backwards at index {index}")]
    NonMonotonicTimestamps {
        /// Index of the first offending timestamp.
        index: usize,
    },
    /// A timestamp equals the one before it.
    #[error("duplicate timestamp at index {index}")]
    DuplicateTimestamp {
        /// Index of the first repeated timestamp.
        index: usize,
    },
    /// Parallel inputs (timestamps and values, or accelerometer axes) differ in length.
    #[error("inputs differ in length ({left} vs {right})")]
    LengthMismatch {
        /// Length of the first input.
        left: usize,
        /// Length of the second input.
        right: usize,
    },
    /// The window is too short for a feature: names the feature and its minimum.
    #[error("{feature} needs at least {needed} {unit}, got {got}")]
    TooShort {
        /// Feature (or analysis) that cannot be computed.
        feature: &'static str,
        /// Minimum amount needed.
        needed: f64,
        /// Amount available.
        got: f64,
        /// Unit of `needed`/`got` (`"s"`, `"beats"`, `"NN intervals"`, `"samples"`).
        unit: &'static str,
    },
    /// The feature is mathematically undefined on this input (e.g. sample entropy with no
    /// template matches, or a zero-power band in a ratio).
    #[error("{feature} is undefined for this input: {reason}")]
    Undefined {
        /// Feature that is undefined.
        feature: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A filter cannot be designed for these parameters.
    #[error("invalid filter: {0}")]
    InvalidFilter(&'static str),
    /// An analysis parameter (such as a quality policy) is out of range.
    #[error("invalid parameter: {0}")]
    InvalidParameter(&'static str),
}

/// Result alias of the crate.
pub type Result<T, E = SignalError> = std::result::Result<T, E>;
