//! Errors of the engine ([`crate::Vitalcore`], sessions, capture, history).
//!
//! Messages carry positions, rates, durations and fixed names (channels, kinds) only: never a
//! sample value, an id of a person or key material, because errors end up in app logs.

use crate::privacy::PrivacyError;
use crate::signal::SignalError;
use crate::store::StoreError;
use crate::sync::SyncError;

/// Why a sample batch was refused. The session or capture it was pushed to is unchanged: the
/// app may push a corrected batch and carry on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The batch has no samples.
    #[error("the batch is empty")]
    Empty,
    /// A NaN or infinity in the samples or timestamps.
    #[error("non-finite value (NaN or infinity) at index {index}")]
    NonFinite {
        /// Index of the first offending value in the batch.
        index: usize,
    },
    /// A sample's magnitude is beyond anything a sensor produces.
    #[error("sample magnitude out of range at index {index}")]
    ValueOutOfRange {
        /// Index of the first offending sample in the batch.
        index: usize,
    },
    /// Timestamps and values differ in length.
    #[error("{times} timestamps for {values} values")]
    LengthMismatch {
        /// Number of timestamps.
        times: usize,
        /// Number of values.
        values: usize,
    },
    /// Timestamps inside the batch repeat or go backwards.
    #[error("timestamps not strictly increasing at index {index}")]
    NonMonotonic {
        /// Index of the first offending timestamp in the batch.
        index: usize,
    },
    /// The channel is not one the check or capture kind declares.
    #[error("channel {channel:?} is not declared for {kind}")]
    UndeclaredChannel {
        /// The channel pushed (truncated to 32 characters).
        channel: String,
        /// The kind that does not declare it.
        kind: &'static str,
    },
    /// The rate is outside the bounds the kind declares.
    #[error("rate {rate_hz} Hz is outside {min_hz}..={max_hz} Hz for this channel")]
    RateOutOfBounds {
        /// Rate given.
        rate_hz: f64,
        /// Lowest accepted rate.
        min_hz: f64,
        /// Highest accepted rate.
        max_hz: f64,
    },
    /// The rate differs from the rate of the channel's earlier batches.
    #[error("rate changed mid-stream from {was_hz} Hz to {now_hz} Hz")]
    RateChanged {
        /// Rate of the earlier batches.
        was_hz: f64,
        /// Rate of this batch.
        now_hz: f64,
    },
    /// The channel received uniform batches before and timestamped ones now, or the reverse.
    #[error("the channel's timing changed between uniform and timestamped batches")]
    TimingChanged,
    /// The batch lies entirely before the previous batch of the channel started: delivered late.
    #[error("batch is out of order: it ends before the previous batch started")]
    OutOfOrder,
    /// The batch starts at or before the last sample already accepted.
    #[error("batch overlaps the accepted samples by {overlap_s:.3} s")]
    Overlap {
        /// How much earlier than the next sample was due it starts, seconds.
        overlap_s: f64,
    },
    /// The batch starts (or jumps inside) further after the previous sample than the
    /// interpolation limit: a clock jump or lost data, which is never bridged silently.
    #[error("time jumps forward by {gap_s:.3} s (limit {limit_s:.3} s)")]
    ClockJump {
        /// Size of the jump, seconds.
        gap_s: f64,
        /// Largest hole that is interpolated, seconds.
        limit_s: f64,
    },
    /// Accepting the batch would exceed the longest duration the kind allows.
    #[error("the channel would exceed its maximum of {max_s} s")]
    TooLong {
        /// Maximum duration, seconds.
        max_s: f64,
    },
}

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The encrypted store failed (see [`StoreError`]).
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// Feature extraction refused the signal.
    #[error("signal: {0}")]
    Signal(#[from] SignalError),
    /// The model failed to run on the features.
    #[error("inference: {0}")]
    Inference(String),
    /// A model bundle was refused (the previous model keeps serving), or the model cache
    /// could not be read or written.
    #[error("model: {0}")]
    Model(#[from] crate::models::ModelError),
    /// A sample batch was refused; the session is intact.
    #[error("batch refused: {0}")]
    Batch(#[from] BatchError),
    /// The configuration is unusable; names the setting.
    #[error("invalid configuration: {0}")]
    InvalidConfig(&'static str),
    /// A required channel has too little data to finish.
    #[error("channel {channel} has {got_s:.1} s, the check needs at least {needed_s} s")]
    TooShort {
        /// Channel name.
        channel: &'static str,
        /// Minimum duration, seconds.
        needed_s: f64,
        /// Duration pushed, seconds.
        got_s: f64,
    },
    /// The session was finished or cancelled already.
    #[error("the session is closed (finished or cancelled)")]
    SessionClosed,
    /// The capture was closed.
    #[error("the capture is closed")]
    CaptureClosed,
    /// The engine was shut down.
    #[error("the engine is shut down")]
    ShutDown,
    /// [`crate::Vitalcore::interrupt`] stopped the operation before it committed anything.
    #[error("interrupted; nothing was committed")]
    Interrupted,
    /// The capture's window queue is full: the app pushes faster than windows are processed.
    /// The batch was not accepted; push it again later.
    #[error("capture is {pending} windows behind; batch not accepted, retry later")]
    Backpressure {
        /// Windows waiting to be processed.
        pending: usize,
    },
    /// A record id is not in the expected form (32 hexadecimal digits).
    #[error("malformed record id")]
    InvalidId,
    /// No check with this id.
    #[error("no such check")]
    NotFound,
    /// A label is malformed; names the field.
    #[error("invalid label: {0}")]
    InvalidLabel(&'static str),
    /// Sync, enrollment, erasure delivery or a model poll failed (see [`SyncError`]).
    #[error("sync: {0}")]
    Sync(#[from] SyncError),
    /// A purpose cannot be consented to (not an upload purpose), or a record could not be
    /// prepared for upload (see [`PrivacyError`]).
    #[error("privacy: {0}")]
    Privacy(#[from] PrivacyError),
}

/// Result alias of the engine.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
