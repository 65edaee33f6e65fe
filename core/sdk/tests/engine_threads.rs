//! One engine shared across threads: concurrent sessions, shutdown while a finish is running,
//! interrupt.

mod engine_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use engine_support::*;
use vitalcore::signal::{analyze_ecg, analyze_ppg};
use vitalcore::{CheckKind, EngineError, SampleBatch};

#[test]
fn sessions_on_several_threads_at_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let engine = Arc::new(open(dir.path()));
    let ppg = ppg_100hz();
    let mut ecg = mitdb_ecg();
    ecg.truncate(60 * 360);
    let ppg_peaks: Vec<u64> = analyze_ppg(&ppg, 100.0)
        .expect("ppg")
        .peaks
        .iter()
        .map(|&p| p as u64)
        .collect();
    let ecg_peaks: Vec<u64> = analyze_ecg(&ecg, 360.0)
        .expect("ecg")
        .peaks
        .iter()
        .map(|&p| p as u64)
        .collect();
    let threads = 4;
    let per_thread = 3;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (engine, barrier) = (engine.clone(), barrier.clone());
            let (ppg, ecg) = (ppg.clone(), ecg.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let mut out = Vec::new();
                for k in 0..per_thread {
                    // Each thread runs one session of each kind side by side, interleaving
                    // their pushes, in batch sizes that differ per thread.
                    let start = T0_S + (t * per_thread + k) as f64 * 600.0;
                    let p = engine.start_check(CheckKind::PpgRhythm).expect("start");
                    let e = engine.start_check(CheckKind::EcgRhythm).expect("start");
                    let (bp, be) = (37 + 11 * t, 301 + 97 * t);
                    let (mut i, mut j) = (0, 0);
                    while i < ppg.len() || j < ecg.len() {
                        if i < ppg.len() {
                            let n = bp.min(ppg.len() - i);
                            let b = SampleBatch::uniform(
                                start + i as f64 / 100.0,
                                100.0,
                                ppg[i..i + n].to_vec(),
                            );
                            p.push_samples("ppg", b).expect("push ppg");
                            i += n;
                        }
                        if j < ecg.len() {
                            let n = be.min(ecg.len() - j);
                            let b = SampleBatch::uniform(
                                start + j as f64 / 360.0,
                                360.0,
                                ecg[j..j + n].to_vec(),
                            );
                            e.push_samples("ecg", b).expect("push ecg");
                            j += n;
                        }
                    }
                    out.push(p.finish().expect("finish ppg"));
                    out.push(e.finish().expect("finish ecg"));
                }
                out
            })
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for h in handles {
        for r in h.join().expect("thread") {
            let want = match r.check.kind {
                CheckKind::PpgRhythm => &ppg_peaks,
                _ => &ecg_peaks,
            };
            assert_eq!(&r.peaks, want);
            ids.insert(r.check.id);
        }
    }
    assert_eq!(ids.len(), threads * per_thread * 2);
    let stored = engine.checks(0, i64::MAX, None).expect("history");
    assert_eq!(stored.len(), ids.len());
    assert!(stored.iter().all(|c| ids.contains(&c.id)));
    assert_eq!(outbox(&store(dir.path())).len(), ids.len());
}

/// `shutdown` called while another thread is inside `finish`: the finish either completes
/// (and then before `shutdown` returns, and its check is on disk after reopening) or is
/// refused with `ShutDown` and leaves nothing. At least one shutdown must land mid-finish
/// (called before the finish returned, the finish then completing): rounds go on, with the
/// delay before `shutdown` varied, until three have (at most 60 rounds).
#[test]
fn shutdown_during_a_finish() {
    let ecg = mitdb_ecg();
    let mut completed = 0;
    let mut refused = 0;
    let mut mid_finish = 0;
    let mut rounds = 0u64;
    while mid_finish < 3 && rounds < 60 {
        let round = rounds;
        rounds += 1;
        let dir = tempfile::tempdir().expect("tmp");
        let engine = Arc::new(open(dir.path()));
        let s = engine.start_check(CheckKind::EcgRhythm).expect("start");
        s.push_samples("ecg", SampleBatch::uniform(T0_S, 360.0, ecg.clone()))
            .expect("push");
        let started = Arc::new(AtomicBool::new(false));
        let finisher = {
            let started = started.clone();
            std::thread::spawn(move || {
                started.store(true, Ordering::SeqCst);
                let r = s.finish();
                (r, Instant::now())
            })
        };
        while !started.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        // Vary the moment: right away, or a little into the analysis.
        std::thread::sleep(std::time::Duration::from_millis((round % 6) * 15));
        let shutdown_called_at = Instant::now();
        engine.shutdown().expect("shutdown");
        let shut_at = Instant::now();
        let (r, finished_at) = finisher.join().expect("finisher");
        assert!(matches!(
            engine.checks(0, i64::MAX, None),
            Err(EngineError::ShutDown)
        ));
        drop(engine);
        let reopened = open(dir.path());
        let stored = reopened.checks(0, i64::MAX, None).expect("history");
        match r {
            Ok(r) => {
                completed += 1;
                assert!(
                    finished_at <= shut_at,
                    "shutdown returned before the finish"
                );
                if finished_at > shutdown_called_at {
                    mid_finish += 1;
                }
                assert_eq!(stored.len(), 1);
                assert_eq!(stored[0].id, r.check.id);
                assert_eq!(outbox(&store(dir.path())).len(), 1);
            }
            Err(EngineError::ShutDown) => {
                refused += 1;
                assert!(stored.is_empty());
                assert!(outbox(&store(dir.path())).is_empty());
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(completed + refused, rounds);
    assert!(
        mid_finish >= 3,
        "in {rounds} rounds only {mid_finish} shutdowns landed inside a finish that then \
         completed ({completed} completed, {refused} refused): the waiting is untested"
    );
}

/// `interrupt` stops a finish in progress before it commits; the session stays open and
/// finishes normally afterwards.
#[test]
fn interrupt_stops_a_finish_and_the_session_stays_usable() {
    let dir = tempfile::tempdir().expect("tmp");
    let engine = Arc::new(open(dir.path()));
    let ecg = mitdb_ecg();
    let s = engine.start_check(CheckKind::EcgRhythm).expect("start");
    s.push_samples("ecg", SampleBatch::uniform(T0_S, 360.0, ecg.clone()))
        .expect("push");
    let done = Arc::new(AtomicBool::new(false));
    let interrupter = {
        let (engine, done) = (engine.clone(), done.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !done.load(Ordering::SeqCst) {
                engine.interrupt();
                n += 1;
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            n
        })
    };
    let mut interrupted = 0;
    let r = loop {
        match s.finish() {
            Err(EngineError::Interrupted) => {
                interrupted += 1;
                // Nothing was committed by the interrupted attempt.
                assert!(engine.checks(0, i64::MAX, None).expect("h").is_empty());
                if interrupted == 3 {
                    done.store(true, Ordering::SeqCst);
                }
            }
            other => break other.expect("finish after interrupts"),
        }
    };
    done.store(true, Ordering::SeqCst);
    assert!(interrupter.join().expect("interrupter") > 0);
    // The analysis of 5 minutes of ECG takes far longer than the 0.2 ms between interrupts.
    assert!(interrupted >= 1);
    let want: Vec<u64> = analyze_ecg(&ecg, 360.0)
        .expect("ecg")
        .peaks
        .iter()
        .map(|&p| p as u64)
        .collect();
    assert_eq!(r.peaks, want);
    assert_eq!(engine.checks(0, i64::MAX, None).expect("h").len(), 1);
}
