//! Background capture: continuous streams cut into overlapping windows whose features are
//! stored, in memory bounded by the window rather than by how long the stream runs.
//!
//! Pushing appends to one buffer per channel; every complete window is copied into a bounded
//! queue and the buffer advances by one hop. One worker thread per capture analyses queued
//! windows and stores each as a window record. When the queue is full the push is refused
//! with [`EngineError::Backpressure`] and nothing of the batch is kept, so memory never grows
//! with a producer that is faster than the engine.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::batch::{ChannelBuffer, SampleBatch};
use crate::engine::{lock, Inner};
use crate::error::{BatchError, EngineError, Result};
use crate::history::Timings;
use crate::kind::{Analyzer, CheckKind};
use crate::prediction::PredictionOutcome;
use crate::session::{build_record, gather, micros, push_into, secs_to_ms};

/// How a background capture cuts its stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CaptureConfig {
    /// What is captured.
    pub kind: CheckKind,
    /// Window length, seconds. At least the kind's minimum duration.
    pub window_s: f64,
    /// Overlap of consecutive windows, seconds, `0 <= overlap_s < window_s`.
    pub overlap_s: f64,
}

impl CaptureConfig {
    /// 60 s windows overlapping by 30 s: the windowing of the signal crate's analyses.
    pub fn new(kind: CheckKind) -> Self {
        Self {
            kind,
            window_s: 60.0,
            overlap_s: 30.0,
        }
    }

    /// Window length, seconds.
    pub fn window_s(mut self, s: f64) -> Self {
        self.window_s = s;
        self
    }

    /// Overlap, seconds.
    pub fn overlap_s(mut self, s: f64) -> Self {
        self.overlap_s = s;
        self
    }
}

/// Counters of a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CaptureStats {
    /// Windows analysed and stored.
    pub windows_stored: u64,
    /// Windows whose analysis or storage failed (for example a signal without beats).
    pub windows_failed: u64,
    /// Windows waiting in the queue.
    pub pending: u64,
    /// Samples held in the channel buffers (bounded by one window plus one batch).
    pub buffered_samples: u64,
}

/// One window waiting for the worker.
struct Job {
    start_ms: i64,
    rate_hz: f64,
    channels: Vec<Vec<f64>>,
}

#[derive(Debug)]
struct Shared {
    engine: Arc<Inner>,
    kind: CheckKind,
    pending: AtomicUsize,
    stored: AtomicUsize,
    failed: AtomicUsize,
}

#[derive(Debug)]
struct Stream {
    buffers: Vec<Option<ChannelBuffer>>,
    sender: Option<SyncSender<Job>>,
}

/// Handle of a running background capture. Closing it, or dropping the last reference,
/// stops the capture: windows already queued are still stored, the partial window is
/// discarded.
#[derive(Debug)]
pub struct Capture {
    shared: Arc<Shared>,
    config: CaptureConfig,
    queue: usize,
    stream: Mutex<Stream>,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Capture {
    pub(crate) fn start(engine: Arc<Inner>, config: CaptureConfig) -> Result<Self> {
        let spec = config.kind.spec();
        let ok = config.window_s.is_finite()
            && config.window_s >= spec.min_duration_s
            && config.window_s <= spec.max_duration_s
            && config.overlap_s.is_finite()
            && config.overlap_s >= 0.0
            && config.overlap_s < config.window_s;
        if !ok {
            return Err(EngineError::InvalidConfig(
                "capture window must be within the kind's durations and overlap in 0..window",
            ));
        }
        let queue = engine.config.queue_len();
        let (tx, rx) = sync_channel(queue);
        let shared = Arc::new(Shared {
            engine,
            kind: config.kind,
            pending: AtomicUsize::new(0),
            stored: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
        });
        let worker_shared = shared.clone();
        let worker = std::thread::Builder::new()
            .name("vitalcore-capture".into())
            .spawn(move || work(&worker_shared, rx))
            .map_err(|_| EngineError::InvalidConfig("cannot start the capture thread"))?;
        Ok(Self {
            shared,
            config,
            queue,
            stream: Mutex::new(Stream {
                buffers: vec![None; config.kind.channel_names().len()],
                sender: Some(tx),
            }),
            worker: Mutex::new(Some(worker)),
        })
    }

    /// The capture's configuration.
    pub fn config(&self) -> CaptureConfig {
        self.config
    }

    /// Appends a batch to `channel`'s stream. Errors: [`EngineError::Batch`] (the batch is
    /// refused, the stream intact), [`EngineError::Backpressure`] (queue full: nothing of the
    /// batch was kept, push it again later), [`EngineError::CaptureClosed`],
    /// [`EngineError::ShutDown`].
    pub fn push_samples(&self, channel: &str, batch: SampleBatch) -> Result<()> {
        if self.shared.engine.is_shut() {
            return Err(EngineError::ShutDown);
        }
        let mut st = lock(&self.stream);
        let Stream { buffers, sender } = &mut *st;
        let Some(sender) = sender.as_ref() else {
            return Err(EngineError::CaptureClosed);
        };
        let kind = self.config.kind;
        // A channel may run ahead of the others by at most this much before windows are cut.
        let max_s = self.config.window_s * (self.queue as f64 + 2.0);
        let limits = kind.limits(max_s);
        // Copy the buffers for a rollback only when this batch may complete a window.
        let incoming = batch.values.len() + 1;
        let may_complete = self.geometry_hint(buffers, channel, incoming, batch.rate_hz());
        let before = may_complete.then(|| buffers.clone());
        push_into(buffers, kind, &limits, channel, batch)?;
        let Some((win, hop, rate)) = self.geometry(buffers) else {
            return Ok(());
        };
        let ready = ready_windows(buffers, win, hop);
        let pending = self.shared.pending.load(Ordering::SeqCst);
        if pending + ready > self.queue {
            if let Some(before) = before {
                *buffers = before;
            }
            if ready > self.queue {
                return Err(BatchError::TooLong {
                    max_s: self.config.window_s
                        + (self.queue as f64 - 1.0)
                            * (self.config.window_s - self.config.overlap_s),
                }
                .into());
            }
            return Err(EngineError::Backpressure { pending });
        }
        for _ in 0..ready {
            let start_ms = buffers
                .iter()
                .flatten()
                .next()
                .map_or(0, |b| secs_to_ms(b.first_s()));
            let channels = gather(kind, buffers, win)?;
            for b in buffers.iter_mut().flatten() {
                b.drain_front(hop);
            }
            self.shared.pending.fetch_add(1, Ordering::SeqCst);
            // Room is guaranteed: only pushers (serialized by the stream lock) send, and
            // pending + ready <= queue was checked above.
            if sender
                .try_send(Job {
                    start_ms,
                    rate_hz: rate,
                    channels,
                })
                .is_err()
            {
                self.shared.pending.fetch_sub(1, Ordering::SeqCst);
                self.shared.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
        Ok(())
    }

    /// Window length and hop in samples, and the rate, once every channel has data.
    fn geometry(&self, buffers: &[Option<ChannelBuffer>]) -> Option<(usize, usize, f64)> {
        if buffers.iter().any(Option::is_none) {
            return None;
        }
        let rate = buffers.iter().flatten().next()?.rate_hz();
        let win = (self.config.window_s * rate).round() as usize;
        let hop = ((self.config.window_s - self.config.overlap_s) * rate)
            .round()
            .max(1.0) as usize;
        Some((win.max(1), hop, rate))
    }

    /// Whether pushing `incoming` samples (plus a filled hole) to `channel` could complete a
    /// window.
    fn geometry_hint(
        &self,
        buffers: &[Option<ChannelBuffer>],
        channel: &str,
        incoming: usize,
        batch_rate_hz: f64,
    ) -> bool {
        let idx = self.config.kind.channel_index(channel);
        // The batch's rate decides for the first batch; a later batch at another rate is
        // refused before anything is appended.
        let rate = buffers
            .iter()
            .flatten()
            .next()
            .map_or(batch_rate_hz, ChannelBuffer::rate_hz);
        if !(rate.is_finite() && rate > 0.0) {
            return true;
        }
        let win = (self.config.window_s * rate).round() as usize;
        // A uniform batch may bring an interpolated hole of up to the interpolation limit.
        let hole = (crate::signal::series::max_interpolation_gap_s(rate) * rate).ceil() as usize;
        buffers.iter().enumerate().all(|(i, b)| {
            let n = b.as_ref().map_or(0, ChannelBuffer::len);
            let n = if Some(i) == idx {
                n + incoming + hole
            } else {
                n
            };
            n >= win
        })
    }

    /// Counters.
    pub fn stats(&self) -> CaptureStats {
        let buffered = lock(&self.stream)
            .buffers
            .iter()
            .flatten()
            .map(|b| b.len() as u64)
            .sum();
        CaptureStats {
            windows_stored: self.shared.stored.load(Ordering::SeqCst) as u64,
            windows_failed: self.shared.failed.load(Ordering::SeqCst) as u64,
            pending: self.shared.pending.load(Ordering::SeqCst) as u64,
            buffered_samples: buffered,
        }
    }

    /// Stops the capture: refuses further pushes, waits until the queued windows are stored,
    /// and discards the incomplete window. Idempotent.
    pub fn close(&self) -> CaptureStats {
        {
            let mut st = lock(&self.stream);
            st.sender = None;
            st.buffers.iter_mut().for_each(|b| *b = None);
        }
        if let Some(w) = lock(&self.worker).take() {
            // The worker only ends by the queue closing; a panic there was already counted.
            let _ = w.join();
        }
        self.stats()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.close();
    }
}

/// How many windows the buffers hold (each channel needs `win` samples, then `hop` more per
/// further window).
fn ready_windows(buffers: &[Option<ChannelBuffer>], win: usize, hop: usize) -> usize {
    buffers
        .iter()
        .map(|b| {
            let n = b.as_ref().map_or(0, ChannelBuffer::len);
            if n < win {
                0
            } else {
                1 + (n - win) / hop
            }
        })
        .min()
        .unwrap_or(0)
}

fn work(shared: &Shared, rx: Receiver<Job>) {
    let mut analyzer: Option<(f64, Analyzer)> = None;
    for job in rx {
        let ok = store_window(shared, &mut analyzer, &job).is_ok();
        drop(job);
        if ok {
            shared.stored.fetch_add(1, Ordering::SeqCst);
        } else {
            shared.failed.fetch_add(1, Ordering::SeqCst);
        }
        shared.pending.fetch_sub(1, Ordering::SeqCst);
    }
}

fn store_window(shared: &Shared, analyzer: &mut Option<(f64, Analyzer)>, job: &Job) -> Result<()> {
    let op = shared.engine.begin()?;
    let t0 = Instant::now();
    let a = match analyzer {
        Some((rate, a)) if *rate == job.rate_hz => a,
        slot => {
            &mut slot
                .insert((
                    job.rate_hz,
                    Analyzer::new(shared.kind, job.rate_hz, &shared.engine.config)?,
                ))
                .1
        }
    };
    let analysis = a.analyze(&job.channels)?;
    let quality = a.report(&analysis);
    let timings = Timings {
        features_us: micros(t0),
        inference_us: 0,
        commit_us: 0,
        total_us: micros(t0),
    };
    let n = job.channels.first().map_or(0, Vec::len);
    let end = job
        .start_ms
        .saturating_add((n as f64 / job.rate_hz * 1000.0).round() as i64);
    let record = build_record(
        &shared.engine,
        shared.kind.window_name(),
        job.start_ms,
        end,
        job.rate_hz,
        &analysis,
        &quality,
        &PredictionOutcome::NoModel,
        &timings,
    )?;
    op.check_interrupt()?;
    shared.engine.store.save_check(&record, None, &[])?;
    Ok(())
}
