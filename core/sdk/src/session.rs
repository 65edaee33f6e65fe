//! Health-check sessions: samples in, one stored and predicted result out.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::batch::{ChannelBuffer, Limits, SampleBatch};
use crate::engine::{lock, Inner, Op};
use crate::error::{BatchError, EngineError, Result};
use crate::history::{StoredCheck, Timings};
use crate::kind::{Analysis, Analyzer, CheckKind};
use crate::prediction::{predict, PredictionOutcome, QualityReport};
use crate::signal::FEATURE_SET_VERSION;
use crate::store::{CheckRecord, OutboxDraft, RawWindow, RecordId, SignalQuality};

/// What [`CheckSession::finish`] returns: the stored check and the beats it found.
#[derive(Clone, PartialEq)]
pub struct CheckResult {
    /// The check as stored (what history returns for it later).
    pub check: StoredCheck,
    /// Beat (ECG/PPG) or step (activity) positions, as sample indices of the first channel
    /// since its first sample. Not stored.
    pub peaks: Vec<u64>,
}

impl std::fmt::Debug for CheckResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckResult")
            .field("check", &self.check)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum State {
    Open(Vec<Option<ChannelBuffer>>),
    Finished,
    Cancelled,
}

/// One health check in progress. `Send + Sync`; pushes from several threads are serialized.
#[derive(Debug)]
pub struct CheckSession {
    engine: Arc<Inner>,
    kind: CheckKind,
    state: Mutex<State>,
}

/// Channel names are a fixed vocabulary, but they come from the app: keep what an error
/// repeats short.
pub(crate) fn shown(channel: &str) -> String {
    channel.chars().take(32).collect()
}

/// Checks `batch` against the channel set of `kind` and appends it to `buffers`. All or
/// nothing: on error `buffers` is unchanged.
pub(crate) fn push_into(
    buffers: &mut [Option<ChannelBuffer>],
    kind: CheckKind,
    limits: &Limits,
    channel: &str,
    batch: SampleBatch,
) -> Result<(), BatchError> {
    let i = kind
        .channel_index(channel)
        .ok_or_else(|| BatchError::UndeclaredChannel {
            channel: shown(channel),
            kind: kind.name(),
        })?;
    // Channels of one kind share one rate: the analysis runs them on one time base.
    let rate = match &batch.timing {
        crate::batch::Timing::Uniform { rate_hz, .. }
        | crate::batch::Timing::Timestamps { rate_hz, .. } => *rate_hz,
    };
    if let Some(other) = buffers.iter().flatten().next() {
        if buffers[i].is_none() && (other.rate_hz() - rate).abs() > 1e-9 * other.rate_hz() {
            return Err(BatchError::RateChanged {
                was_hz: other.rate_hz(),
                now_hz: rate,
            });
        }
    }
    match &mut buffers[i] {
        Some(b) => b.push(batch, limits),
        slot @ None => {
            *slot = Some(ChannelBuffer::start(batch, limits)?);
            Ok(())
        }
    }
}

/// The kind's channels on one uniform grid, cut to a common length.
pub(crate) fn gather(
    kind: CheckKind,
    buffers: &[Option<ChannelBuffer>],
    n: usize,
) -> Result<Vec<Vec<f64>>> {
    let mut out = Vec::with_capacity(buffers.len());
    for b in buffers.iter().flatten() {
        out.push(b.uniform_prefix(n)?);
    }
    if out.len() != kind.channel_names().len() {
        return Err(EngineError::InvalidConfig(
            "every channel of the kind is needed",
        ));
    }
    let m = out.iter().map(Vec::len).min().unwrap_or(0);
    for c in &mut out {
        c.truncate(m);
    }
    Ok(out)
}

impl CheckSession {
    pub(crate) fn new(engine: Arc<Inner>, kind: CheckKind) -> Self {
        let n = kind.channel_names().len();
        Self {
            engine,
            kind,
            state: Mutex::new(State::Open(vec![None; n])),
        }
    }

    /// Kind of the check.
    pub fn kind(&self) -> CheckKind {
        self.kind
    }

    /// Appends a batch of samples of `channel`. A refused batch ([`EngineError::Batch`]) leaves
    /// the session exactly as it was: push a corrected batch and carry on.
    pub fn push_samples(&self, channel: &str, batch: SampleBatch) -> Result<()> {
        let mut st = lock(&self.state);
        let State::Open(buffers) = &mut *st else {
            return Err(EngineError::SessionClosed);
        };
        let limits = self.kind.limits(self.kind.spec().max_duration_s);
        push_into(buffers, self.kind, &limits, channel, batch)?;
        Ok(())
    }

    /// Seconds of signal pushed so far on `channel` (0 if none).
    pub fn duration_s(&self, channel: &str) -> f64 {
        match (&*lock(&self.state), self.kind.channel_index(channel)) {
            (State::Open(b), Some(i)) => b[i].as_ref().map_or(0.0, ChannelBuffer::duration_s),
            _ => 0.0,
        }
    }

    /// Analyses the samples, predicts if the quality allows, and stores the check, its outbox
    /// record and (if raw retention is on) its raw windows in ONE transaction.
    ///
    /// On error nothing is stored and the session stays open (push more and finish again);
    /// after success it is closed.
    pub fn finish(&self) -> Result<CheckResult> {
        let t0 = Instant::now();
        let mut st = lock(&self.state);
        let State::Open(buffers) = &*st else {
            return Err(EngineError::SessionClosed);
        };
        let op = self.engine.begin()?;
        let result = self.finish_open(&op, buffers, t0)?;
        // Samples are dropped with the state: a finished session holds no signal.
        *st = State::Finished;
        Ok(result)
    }

    fn finish_open(
        &self,
        op: &Op<'_>,
        buffers: &[Option<ChannelBuffer>],
        t0: Instant,
    ) -> Result<CheckResult> {
        let spec = self.kind.spec();
        let mut n = usize::MAX;
        for (i, b) in buffers.iter().enumerate() {
            let got_s = b.as_ref().map_or(0.0, ChannelBuffer::duration_s);
            if got_s < spec.min_duration_s {
                return Err(EngineError::TooShort {
                    channel: self.kind.channel(i),
                    needed_s: spec.min_duration_s,
                    got_s,
                });
            }
            n = n.min(b.as_ref().map_or(0, ChannelBuffer::len));
        }
        let first = buffers
            .iter()
            .flatten()
            .next()
            .ok_or(EngineError::InvalidConfig(
                "a kind has at least one channel",
            ))?;
        let rate = first.rate_hz();
        let data = gather(self.kind, buffers, n)?;
        let mut analyzer = Analyzer::new(self.kind, rate, &self.engine.config)?;
        let analysis = analyzer.analyze(&data)?;
        let features_us = micros(t0);
        op.check_interrupt()?;

        let t1 = Instant::now();
        let quality = analyzer.report(&analysis);
        let predictor = self.engine.predictor();
        let outcome = predict(
            predictor.as_deref(),
            self.kind,
            &quality,
            &analysis.features,
        )?;
        let inference_us = micros(t1);
        op.check_interrupt()?;

        let started_at_ms = secs_to_ms(first.first_s());
        let duration_ms = (data[0].len() as f64 / rate * 1000.0).round() as i64;
        let mut timings = Timings {
            features_us,
            inference_us,
            commit_us: 0,
            total_us: micros(t0),
        };
        let record = build_record(
            &self.engine,
            self.kind.name(),
            started_at_ms,
            started_at_ms.saturating_add(duration_ms),
            rate,
            &analysis,
            &quality,
            &outcome,
            &timings,
        )?;
        let draft = OutboxDraft {
            purpose: self.engine.purpose.clone(),
            check_id: Some(record.id),
            payload: outbox_payload(self.kind, &record, &outcome)?,
        };
        let raw: Vec<RawWindow> = if self.engine.config.get_raw_retention().is_some() {
            data.iter()
                .enumerate()
                .map(|(i, v)| RawWindow {
                    channel: self.kind.channel(i).to_owned(),
                    start_ms: started_at_ms,
                    rate_hz: rate,
                    values: v.iter().map(|&x| x as f32).collect(),
                })
                .collect()
        } else {
            Vec::new()
        };
        op.check_interrupt()?;
        let t2 = Instant::now();
        self.engine.store.save_check(&record, Some(&draft), &raw)?;
        timings.commit_us = micros(t2);
        timings.total_us = micros(t0);
        Ok(CheckResult {
            check: StoredCheck {
                id: record.id.to_string(),
                kind: self.kind,
                is_window: false,
                started_at_ms,
                ended_at_ms: record.ended_at_ms,
                quality,
                feature_set: FEATURE_SET_VERSION.to_owned(),
                features: analysis.features,
                prediction: outcome,
                timings,
            },
            peaks: analysis.peaks,
        })
    }

    /// Discards the session and its samples. Nothing was stored before `finish`, so nothing
    /// is left behind. Idempotent; fails only if the session was already finished.
    pub fn cancel(&self) -> Result<()> {
        let mut st = lock(&self.state);
        match &*st {
            State::Finished => Err(EngineError::SessionClosed),
            _ => {
                *st = State::Cancelled;
                Ok(())
            }
        }
    }
}

pub(crate) fn micros(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// App clock seconds to Unix milliseconds, saturating on absurd values.
pub(crate) fn secs_to_ms(s: f64) -> i64 {
    let ms = (s * 1000.0).round();
    if ms.is_finite() {
        ms.clamp(i64::MIN as f64, i64::MAX as f64) as i64
    } else {
        0
    }
}

/// The record stored for a check or a capture window.
#[allow(clippy::too_many_arguments)]
pub(crate) fn build_record(
    engine: &Inner,
    kind_name: &str,
    started_at_ms: i64,
    ended_at_ms: i64,
    rate_hz: f64,
    a: &Analysis,
    q: &QualityReport,
    outcome: &PredictionOutcome,
    t: &Timings,
) -> Result<CheckRecord> {
    let mut session = BTreeMap::new();
    session.insert("feature_set".to_owned(), FEATURE_SET_VERSION.to_owned());
    session.insert("outcome".to_owned(), outcome.tag().to_owned());
    session.insert("sqi_threshold".to_owned(), q.threshold.to_string());
    session.insert("rate_hz".to_owned(), rate_hz.to_string());
    if let PredictionOutcome::FeaturesUnavailable { missing } = outcome {
        session.insert("missing_features".to_owned(), missing.join(","));
    }
    let prediction = match outcome {
        PredictionOutcome::Predicted {
            model_name,
            model_version,
            outputs,
        } => Some(crate::store::Prediction {
            model_name: model_name.clone(),
            model_version: model_version.clone(),
            outputs: outputs.clone(),
        }),
        _ => None,
    };
    Ok(CheckRecord {
        id: RecordId::random()?,
        subject: engine.subject.clone(),
        kind: crate::store::CheckKind::new(kind_name)?,
        started_at_ms,
        ended_at_ms,
        session,
        features: a.features.clone(),
        quality: SignalQuality {
            score: a.sqi,
            usable: q.acceptable,
        },
        prediction,
        timings: crate::store::Timings {
            features_us: t.features_us,
            inference_us: t.inference_us,
            total_us: t.total_us,
        },
    })
}

/// The record queued for sync: features, quality and model provenance; no subject, no
/// samples, and the time only to the day (anonymization refines it before upload).
fn outbox_payload(
    kind: CheckKind,
    record: &CheckRecord,
    outcome: &PredictionOutcome,
) -> Result<Vec<u8>> {
    let mut v = serde_json::json!({
        "kind": kind.name(),
        "feature_set": FEATURE_SET_VERSION,
        "day": record.started_at_ms.div_euclid(86_400_000),
        "features": record.features,
        "sqi": record.quality.score,
        "outcome": outcome.tag(),
    });
    if let PredictionOutcome::Predicted {
        model_name,
        model_version,
        outputs,
    } = outcome
    {
        v["model"] = serde_json::json!({
            "name": model_name, "version": model_version, "outputs": outputs,
        });
    }
    serde_json::to_vec(&v).map_err(|_| EngineError::InvalidConfig("outbox record encoding"))
}
