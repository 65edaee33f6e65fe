//! Sample batches as apps push them, and the per-channel buffer that validates each batch
//! against what came before.
//!
//! A batch is either uniform (start time + rate) or timestamped. Times are seconds on the
//! app's clock (Unix seconds recommended; only differences matter for the signal, and the
//! first sample's time becomes the check's start). A batch is checked in full before anything
//! is appended, so a refused batch leaves the buffer exactly as it was.

use crate::error::BatchError;
use crate::signal::series::{check_timestamps, max_interpolation_gap_s, MAX_ABS_SAMPLE};
use crate::signal::{Series, SignalError};

/// How the samples of a batch are placed in time.
#[derive(Debug, Clone, PartialEq)]
pub enum Timing {
    /// Evenly spaced samples: the first at `start_s`, then every `1 / rate_hz` seconds.
    Uniform {
        /// Time of the first sample, seconds.
        start_s: f64,
        /// Sampling rate, Hz.
        rate_hz: f64,
    },
    /// One timestamp per sample (strictly increasing). The channel is resampled to `rate_hz`
    /// (the sensor's nominal rate) for analysis.
    Timestamps {
        /// Time of each sample, seconds.
        times_s: Vec<f64>,
        /// Nominal rate the samples are resampled to, Hz.
        rate_hz: f64,
    },
}

/// A batch of samples of one channel, of any size (one sample to a whole recording).
#[derive(Clone, PartialEq)]
pub struct SampleBatch {
    /// Placement in time.
    pub timing: Timing,
    /// Sample values (any unit; accelerometer in g).
    pub values: Vec<f64>,
}

impl std::fmt::Debug for SampleBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleBatch")
            .field("samples", &self.values.len())
            .finish_non_exhaustive()
    }
}

impl SampleBatch {
    /// Evenly spaced samples starting at `start_s`.
    pub fn uniform(start_s: f64, rate_hz: f64, values: Vec<f64>) -> Self {
        Self {
            timing: Timing::Uniform { start_s, rate_hz },
            values,
        }
    }

    /// Timestamped samples, resampled to `rate_hz` for analysis.
    pub fn timestamped(times_s: Vec<f64>, values: Vec<f64>, rate_hz: f64) -> Self {
        Self {
            timing: Timing::Timestamps { times_s, rate_hz },
            values,
        }
    }

    pub(crate) fn rate_hz(&self) -> f64 {
        match &self.timing {
            Timing::Uniform { rate_hz, .. } | Timing::Timestamps { rate_hz, .. } => *rate_hz,
        }
    }

    fn first_s(&self) -> f64 {
        match &self.timing {
            Timing::Uniform { start_s, .. } => *start_s,
            Timing::Timestamps { times_s, .. } => times_s.first().copied().unwrap_or(f64::NAN),
        }
    }

    fn last_s(&self) -> f64 {
        match &self.timing {
            Timing::Uniform { start_s, rate_hz } => {
                start_s + (self.values.len().saturating_sub(1)) as f64 / rate_hz
            }
            Timing::Timestamps { times_s, .. } => times_s.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// Rate bounds and duration limit a channel is checked against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Limits {
    pub min_hz: f64,
    pub max_hz: f64,
    pub max_s: f64,
}

/// Samples of one channel accepted so far.
#[derive(Debug, Clone)]
pub(crate) struct ChannelBuffer {
    rate_hz: f64,
    timestamped: bool,
    /// Start of the latest accepted batch: a batch ending before it is out of order.
    last_batch_start_s: f64,
    /// Time of the last accepted sample.
    last_s: f64,
    /// Time of the first sample still held.
    first_s: f64,
    values: Vec<f64>,
    /// Timestamps, for timestamped channels only.
    times: Vec<f64>,
}

fn check_values(values: &[f64]) -> Result<(), BatchError> {
    if values.is_empty() {
        return Err(BatchError::Empty);
    }
    if let Some(index) = values.iter().position(|v| !v.is_finite()) {
        return Err(BatchError::NonFinite { index });
    }
    if let Some(index) = values.iter().position(|v| v.abs() > MAX_ABS_SAMPLE) {
        return Err(BatchError::ValueOutOfRange { index });
    }
    Ok(())
}

/// Checks a batch on its own: values, rate bounds, timestamps.
pub(crate) fn check_batch(b: &SampleBatch, limits: &Limits) -> Result<(), BatchError> {
    check_values(&b.values)?;
    let rate = b.rate_hz();
    if !(rate.is_finite() && rate >= limits.min_hz && rate <= limits.max_hz) {
        return Err(BatchError::RateOutOfBounds {
            rate_hz: rate,
            min_hz: limits.min_hz,
            max_hz: limits.max_hz,
        });
    }
    match &b.timing {
        Timing::Uniform { start_s, .. } => {
            if !start_s.is_finite() {
                return Err(BatchError::NonFinite { index: 0 });
            }
        }
        Timing::Timestamps { times_s, .. } => {
            if times_s.len() != b.values.len() {
                return Err(BatchError::LengthMismatch {
                    times: times_s.len(),
                    values: b.values.len(),
                });
            }
            check_timestamps(times_s).map_err(|e| match e {
                SignalError::NonFinite { index } => BatchError::NonFinite { index },
                SignalError::NonMonotonicTimestamps { index }
                | SignalError::DuplicateTimestamp { index } => BatchError::NonMonotonic { index },
                _ => BatchError::Empty,
            })?;
            let limit = max_interpolation_gap_s(rate);
            if let Some(w) = times_s.windows(2).find(|w| w[1] - w[0] > limit) {
                return Err(BatchError::ClockJump {
                    gap_s: w[1] - w[0],
                    limit_s: limit,
                });
            }
        }
    }
    Ok(())
}

impl ChannelBuffer {
    /// A buffer holding `b`, which must have passed [`check_batch`].
    pub fn start(b: SampleBatch, limits: &Limits) -> Result<Self, BatchError> {
        check_batch(&b, limits)?;
        let rate_hz = b.rate_hz();
        if b.values.len() as f64 / rate_hz > limits.max_s {
            return Err(BatchError::TooLong {
                max_s: limits.max_s,
            });
        }
        let (first_s, last_s) = (b.first_s(), b.last_s());
        let (timestamped, times) = match b.timing {
            Timing::Uniform { .. } => (false, Vec::new()),
            Timing::Timestamps { times_s, .. } => (true, times_s),
        };
        Ok(Self {
            rate_hz,
            timestamped,
            last_batch_start_s: first_s,
            last_s,
            first_s,
            values: b.values,
            times,
        })
    }

    /// Validates `b` against the samples held and appends it, or leaves everything unchanged
    /// and says why.
    ///
    /// A uniform batch continues the channel's grid if its first sample lies after the last
    /// one held and less than one period past where the grid expects it: batch stamps from
    /// the app's clock jitter, and jitter under one period is absorbed. A later start is a
    /// hole of whole missing periods, filled linearly up to the interpolation limit as the
    /// signal crate does for timestamped input; anything later is a
    /// [`BatchError::ClockJump`].
    pub fn push(&mut self, b: SampleBatch, limits: &Limits) -> Result<(), BatchError> {
        check_batch(&b, limits)?;
        let rate = b.rate_hz();
        if (rate - self.rate_hz).abs() > 1e-9 * self.rate_hz {
            return Err(BatchError::RateChanged {
                was_hz: self.rate_hz,
                now_hz: rate,
            });
        }
        let timestamped = matches!(b.timing, Timing::Timestamps { .. });
        if timestamped != self.timestamped {
            return Err(BatchError::TimingChanged);
        }
        let period = 1.0 / rate;
        let (first, last) = (b.first_s(), b.last_s());
        if last < self.last_batch_start_s {
            return Err(BatchError::OutOfOrder);
        }
        // Where the next sample is due, and how far this batch is from it.
        let due = if timestamped {
            self.last_s
        } else {
            self.last_s + period
        };
        let delta = first - due;
        // Overlap means a first sample at or before the last one held; anything after it is
        // clock jitter (apps stamp batches with their own clock) and joins seamlessly.
        if first <= self.last_s {
            return Err(BatchError::Overlap { overlap_s: -delta });
        }
        let limit = max_interpolation_gap_s(rate);
        let hole = if timestamped { delta } else { delta + period };
        if hole > limit {
            return Err(BatchError::ClockJump {
                gap_s: hole,
                limit_s: limit,
            });
        }
        // Samples missing between the last one held and this batch (uniform only).
        let missing = if timestamped {
            0
        } else {
            (delta * rate + 1e-6).floor().max(0.0) as usize
        };
        let total = self.values.len() + missing + b.values.len();
        if total as f64 / rate > limits.max_s {
            return Err(BatchError::TooLong {
                max_s: limits.max_s,
            });
        }
        if missing > 0 {
            let (a, z) = (
                self.values.last().copied().unwrap_or(b.values[0]),
                b.values[0],
            );
            let n = missing + 1;
            self.values
                .extend((1..n).map(|k| a + (z - a) * k as f64 / n as f64));
        }
        self.values.extend_from_slice(&b.values);
        if let Timing::Timestamps { times_s, .. } = b.timing {
            self.times.extend_from_slice(&times_s);
        }
        self.last_batch_start_s = first;
        self.last_s = if timestamped {
            last
        } else {
            self.first_s + (self.values.len() - 1) as f64 * period
        };
        Ok(())
    }

    pub fn rate_hz(&self) -> f64 {
        self.rate_hz
    }

    pub fn first_s(&self) -> f64 {
        self.first_s
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Seconds of signal held.
    pub fn duration_s(&self) -> f64 {
        if self.timestamped {
            self.times
                .last()
                .zip(self.times.first())
                .map_or(0.0, |(l, f)| l - f + 1.0 / self.rate_hz)
        } else {
            self.values.len() as f64 / self.rate_hz
        }
    }

    /// The first `n` samples (all if fewer) on the uniform grid: as pushed for uniform
    /// channels, resampled for timestamped ones.
    pub fn uniform_prefix(&self, n: usize) -> Result<Vec<f64>, SignalError> {
        let n = n.min(self.values.len());
        if !self.timestamped {
            return Ok(self.values[..n].to_vec());
        }
        let r = Series::from_timestamps(&self.times[..n], &self.values[..n], self.rate_hz)?;
        // Gaps were refused batch by batch, so the resampling yields one segment.
        Ok(r.longest().map(|s| s.values().to_vec()).unwrap_or_default())
    }

    /// Drops the first `n` samples (capture windows advancing).
    pub fn drain_front(&mut self, n: usize) {
        let n = n.min(self.values.len());
        self.values.drain(..n);
        if self.timestamped {
            self.times.drain(..n);
            self.first_s = self.times.first().copied().unwrap_or(self.last_s);
        } else {
            self.first_s += n as f64 / self.rate_hz;
        }
    }
}
