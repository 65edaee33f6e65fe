//! Background capture on a real 11-minute PPG: windows stored with the features of exactly
//! their samples, memory bounded by the window, backpressure instead of growth, and a handle
//! that stops the capture when closed or dropped.

mod engine_support;

use std::collections::BTreeMap;
use std::time::Duration;

use engine_support::*;
use vitalcore::signal::analyze_ppg;
use vitalcore::{
    BatchError, CaptureConfig, CheckKind, Config, EngineError, SampleBatch, Vitalcore,
};

/// heartpy data3: 11 minutes of PPG, analysed as 100 Hz.
fn long_ppg() -> Vec<f64> {
    recording("heartpy_data3")
}

fn features_of(x: &[f64]) -> Option<BTreeMap<String, f64>> {
    let a = analyze_ppg(x, 100.0).ok()?;
    Some(
        a.features
            .iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
            .collect(),
    )
}

/// Pushes, waiting out backpressure; returns how often the engine pushed back.
fn push_all(cap: &vitalcore::Capture, x: &[f64], batch: usize) -> usize {
    let mut pushed_back = 0;
    for (k, chunk) in x.chunks(batch).enumerate() {
        let start = T0_S + (k * batch) as f64 / 100.0;
        loop {
            match cap.push_samples("ppg", SampleBatch::uniform(start, 100.0, chunk.to_vec())) {
                Ok(()) => break,
                Err(EngineError::Backpressure { .. }) => {
                    pushed_back += 1;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(e) => panic!("push: {e}"),
            }
        }
    }
    pushed_back
}

#[test]
fn windows_carry_the_features_of_their_samples() {
    let dir = tempfile::tempdir().expect("tmp");
    let engine = open(dir.path());
    let x = long_ppg();
    let cap = engine
        .start_capture(
            CaptureConfig::new(CheckKind::PpgRhythm)
                .window_s(60.0)
                .overlap_s(20.0),
        )
        .expect("capture");
    push_all(&cap, &x, 250);
    let stats = cap.close();
    let (win, hop) = (6000, 4000);
    let expected = (x.len() - win) / hop + 1;
    assert_eq!(
        (stats.windows_stored + stats.windows_failed) as usize,
        expected
    );
    assert_eq!(stats.pending, 0);
    assert_eq!(stats.buffered_samples, 0);
    let t0 = (T0_S * 1000.0) as i64;
    let windows = engine.windows(t0, t0 + 86_400_000, None).expect("windows");
    assert_eq!(windows.len() as u64, stats.windows_stored);
    assert!(engine
        .checks(t0, t0 + 86_400_000, None)
        .expect("checks")
        .is_empty());
    // Every 60 s window of this recording is analysable.
    assert_eq!(stats.windows_failed, 0);
    for w in &windows {
        assert!(w.is_window);
        assert_eq!(w.kind, CheckKind::PpgRhythm);
        let k = usize::try_from(w.started_at_ms - t0).expect("after t0") / 10 / hop;
        assert_eq!(w.started_at_ms, t0 + (k * hop * 10) as i64);
        assert_eq!(w.ended_at_ms - w.started_at_ms, 60_000);
        let want = features_of(&x[k * hop..k * hop + win]).expect("window analysable");
        assert_eq!(w.features, want, "window {k}");
    }
}

#[test]
fn a_fast_producer_gets_backpressure_and_nothing_is_lost() {
    let dir = tempfile::tempdir().expect("tmp");
    let engine = Vitalcore::open(Config::new(dir.path()).capture_queue(1), &keys()).expect("open");
    let x = long_ppg();
    let cap = engine
        .start_capture(
            CaptureConfig::new(CheckKind::PpgRhythm)
                .window_s(10.0)
                .overlap_s(0.0),
        )
        .expect("capture");
    // A batch holding more windows than the queue can ever take is refused as too long.
    assert!(matches!(
        cap.push_samples("ppg", SampleBatch::uniform(T0_S, 100.0, x[..2500].to_vec())),
        Err(EngineError::Batch(BatchError::TooLong { .. }))
    ));
    let mut max_buffered = 0;
    let mut pushed_back = 0;
    for (k, chunk) in x.chunks(1000).enumerate() {
        let start = T0_S + (k * 1000) as f64 / 100.0;
        loop {
            let r = cap.push_samples("ppg", SampleBatch::uniform(start, 100.0, chunk.to_vec()));
            let s = cap.stats();
            max_buffered = max_buffered.max(s.buffered_samples);
            assert!(s.pending <= 1, "queue grew to {}", s.pending);
            match r {
                Ok(()) => break,
                Err(EngineError::Backpressure { pending }) => {
                    assert_eq!(pending, 1);
                    pushed_back += 1;
                    std::thread::yield_now();
                }
                Err(e) => panic!("push: {e}"),
            }
        }
    }
    // Memory is bounded by one window plus one batch, however long the stream.
    assert!(max_buffered <= 2000, "buffered {max_buffered}");
    assert!(pushed_back > 0, "the producer was never pushed back");
    let stats = cap.close();
    // Every refused batch was pushed again, so every window of the stream was processed: each
    // 10 s window the analysis accepts is stored, each one it refuses is counted as failed,
    // and nothing else.
    let windows: Vec<&[f64]> = x.chunks_exact(1000).collect();
    let analysable = windows.iter().filter(|w| features_of(w).is_some()).count();
    assert!(
        analysable >= windows.len() * 9 / 10,
        "the recording changed: only {analysable} of {} windows analyse",
        windows.len()
    );
    assert_eq!(stats.windows_stored as usize, analysable, "{stats:?}");
    assert_eq!(
        stats.windows_failed as usize,
        windows.len() - analysable,
        "{stats:?}"
    );
    let t0 = (T0_S * 1000.0) as i64;
    let stored = engine.windows(t0, t0 + 86_400_000, None).expect("windows");
    let starts: std::collections::BTreeSet<i64> = stored.iter().map(|w| w.started_at_ms).collect();
    let want: std::collections::BTreeSet<i64> = windows
        .iter()
        .enumerate()
        .filter(|(_, w)| features_of(w).is_some())
        .map(|(k, _)| t0 + k as i64 * 10_000)
        .collect();
    assert_eq!(
        starts, want,
        "the stored windows are the analysable ones, once each"
    );
    assert_eq!(stored.len(), want.len());
}

#[test]
fn bad_batches_are_refused_and_the_stream_goes_on() {
    let dir = tempfile::tempdir().expect("tmp");
    let engine = open(dir.path());
    let x = long_ppg();
    let x = &x[..12_000];
    let cap = engine
        .start_capture(
            CaptureConfig::new(CheckKind::PpgRhythm)
                .window_s(60.0)
                .overlap_s(0.0),
        )
        .expect("capture");
    cap.push_samples("ppg", SampleBatch::uniform(T0_S, 100.0, x[..3000].to_vec()))
        .expect("push");
    let next = T0_S + 30.0;
    for bad in [
        SampleBatch::uniform(next, 100.0, vec![f64::NAN]),
        SampleBatch::uniform(next, 50.0, vec![1.0]),
        SampleBatch::uniform(next - 1.0, 100.0, vec![1.0]),
        SampleBatch::uniform(next + 5.0, 100.0, vec![1.0]),
    ] {
        assert!(matches!(
            cap.push_samples("ppg", bad),
            Err(EngineError::Batch(_))
        ));
    }
    assert!(matches!(
        cap.push_samples("accel_x", SampleBatch::uniform(next, 100.0, vec![1.0])),
        Err(EngineError::Batch(BatchError::UndeclaredChannel { .. }))
    ));
    cap.push_samples("ppg", SampleBatch::uniform(next, 100.0, x[3000..].to_vec()))
        .expect("rest");
    let stats = cap.close();
    assert_eq!(stats.windows_stored, 2);
    let t0 = (T0_S * 1000.0) as i64;
    let w = engine.windows(t0, t0 + 3_600_000, None).expect("windows");
    assert_eq!(Some(w[1].features.clone()), features_of(&x[6000..12_000]));
    assert!(matches!(
        cap.push_samples("ppg", SampleBatch::uniform(next + 90.0, 100.0, vec![1.0])),
        Err(EngineError::CaptureClosed)
    ));
}

#[test]
fn dropping_the_handle_stops_the_capture() {
    let dir = tempfile::tempdir().expect("tmp");
    let engine = open(dir.path());
    let x = long_ppg();
    let cap = engine
        .start_capture(
            CaptureConfig::new(CheckKind::PpgRhythm)
                .window_s(30.0)
                .overlap_s(0.0),
        )
        .expect("capture");
    push_all(&cap, &x[..9500], 500);
    drop(cap);
    // Drop waited for the queued windows: all three complete windows are stored, the
    // incomplete fourth is discarded.
    let t0 = (T0_S * 1000.0) as i64;
    let w = engine.windows(t0, t0 + 3_600_000, None).expect("windows");
    assert_eq!(w.len(), 3);
    let again = engine.windows(t0, t0 + 3_600_000, None).expect("windows");
    assert_eq!(again.len(), 3, "a dropped capture stores nothing more");
}

#[test]
fn capture_config_is_checked() {
    let dir = tempfile::tempdir().expect("tmp");
    let engine = open(dir.path());
    for c in [
        CaptureConfig::new(CheckKind::PpgRhythm).window_s(5.0),
        CaptureConfig::new(CheckKind::PpgRhythm)
            .window_s(60.0)
            .overlap_s(60.0),
        CaptureConfig::new(CheckKind::Activity).window_s(f64::NAN),
        CaptureConfig::new(CheckKind::EcgRhythm).overlap_s(-1.0),
    ] {
        assert!(matches!(
            engine.start_capture(c),
            Err(EngineError::InvalidConfig(_))
        ));
    }
    engine.shutdown().expect("shutdown");
    assert!(matches!(
        engine.start_capture(CaptureConfig::new(CheckKind::PpgRhythm)),
        Err(EngineError::ShutDown)
    ));
}

#[test]
fn timestamped_streams_are_windowed_too() {
    let dir = tempfile::tempdir().expect("tmp");
    let engine = open(dir.path());
    let x = long_ppg();
    let x = &x[..18_000];
    let cap = engine
        .start_capture(
            CaptureConfig::new(CheckKind::PpgRhythm)
                .window_s(60.0)
                .overlap_s(30.0),
        )
        .expect("capture");
    for (k, chunk) in x.chunks(333).enumerate() {
        let times = (0..chunk.len())
            .map(|i| T0_S + (k * 333 + i) as f64 / 100.0)
            .collect();
        let batch = SampleBatch::timestamped(times, chunk.to_vec(), 100.0);
        // A loaded host may fall behind: backpressure is retried, as an app would.
        loop {
            match cap.push_samples("ppg", batch.clone()) {
                Ok(()) => break,
                Err(EngineError::Backpressure { .. }) => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Err(e) => panic!("push: {e}"),
            }
        }
    }
    let stats = cap.close();
    assert_eq!(stats.windows_stored, 5);
    let t0 = (T0_S * 1000.0) as i64;
    let w = engine.windows(t0, t0 + 3_600_000, None).expect("windows");
    for (k, w) in w.iter().enumerate() {
        let want = features_of(&x[k * 3000..k * 3000 + 6000]).expect("analysable");
        assert_eq!(w.features.len(), want.len());
        for (name, v) in &want {
            let got = w.features[name];
            assert!(
                (got - v).abs() <= 1e-9 * v.abs().max(1.0),
                "{name}: {got} vs {v}"
            );
        }
    }
}
