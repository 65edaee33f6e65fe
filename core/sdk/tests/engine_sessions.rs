//! Health-check sessions end to end on real recordings and a real encrypted store file:
//! typed batch errors that leave the session intact, finish committing check + outbox record
//! + raw window together, cancel leaving nothing, history by time range, labels.

mod engine_support;

use std::collections::BTreeMap;
use std::time::Duration;

use engine_support::*;
use vitalcore::signal::{analyze_accel, analyze_ppg, Series};
use vitalcore::{
    BatchError, CheckKind, Config, EngineError, Label, PredictionOutcome, SampleBatch, Vitalcore,
};

/// A check without its timings: the result of `finish` also counts the commit, which the
/// stored record cannot contain.
fn untimed(c: &vitalcore::StoredCheck) -> vitalcore::StoredCheck {
    vitalcore::StoredCheck {
        timings: Default::default(),
        ..c.clone()
    }
}

fn untimed_all(v: &[vitalcore::StoredCheck]) -> Vec<vitalcore::StoredCheck> {
    v.iter().map(untimed).collect()
}

fn one_shot_features(x: &[f64], rate: f64) -> (Vec<u64>, BTreeMap<String, f64>, f64) {
    let a = analyze_ppg(x, rate).expect("one-shot analysis");
    let f = a
        .features
        .iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect();
    (
        a.peaks.iter().map(|&p| p as u64).collect(),
        f,
        a.quality.sqi,
    )
}

#[test]
fn engine_and_session_are_send_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Vitalcore>();
    assert_send_sync::<vitalcore::CheckSession>();
    assert_send_sync::<vitalcore::Capture>();
}

#[test]
fn finish_commits_check_outbox_and_raw_window_together() {
    let dir = tempfile::tempdir().expect("tmp");
    let x = ppg_100hz();
    let engine = Vitalcore::open(
        Config::new(dir.path()).raw_retention(Some(Duration::from_secs(86_400))),
        &keys(),
    )
    .expect("open");
    let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
    s.push_samples("ppg", SampleBatch::uniform(T0_S, 100.0, x.clone()))
        .expect("push");
    let r = s.finish().expect("finish");
    let (peaks, features, sqi) = one_shot_features(&x, 100.0);
    assert_eq!(r.peaks, peaks);
    assert_eq!(r.check.features, features);
    assert_eq!(r.check.quality.sqi, sqi);
    assert_eq!(r.check.feature_set, "v1");
    assert_eq!(r.check.started_at_ms, (T0_S * 1000.0) as i64);
    assert_eq!(r.check.ended_at_ms - r.check.started_at_ms, 24_830);
    assert!(r.check.timings.total_us >= r.check.timings.features_us);
    // 24.8 s: the bundled model reads only features a check this short has, so the gate
    // alone decides between an answer and "quality too low".
    assert!(matches!(
        r.check.prediction,
        PredictionOutcome::Predicted { .. } | PredictionOutcome::QualityTooLow { .. }
    ));
    assert_eq!(
        matches!(r.check.prediction, PredictionOutcome::QualityTooLow { .. }),
        !r.check.quality.acceptable
    );
    // A finished session takes nothing more.
    assert!(matches!(
        s.push_samples("ppg", SampleBatch::uniform(T0_S + 30.0, 100.0, vec![1.0])),
        Err(EngineError::SessionClosed)
    ));
    assert!(matches!(s.finish(), Err(EngineError::SessionClosed)));
    engine.shutdown().expect("shutdown");
    drop(engine);

    let st = store(dir.path());
    let out = outbox(&st);
    assert_eq!(out.len(), 1);
    let id = vitalcore::store::RecordId(
        hex::decode(&r.check.id)
            .expect("hex")
            .try_into()
            .expect("16 bytes"),
    );
    assert_eq!(out[0].check_id, Some(id));
    let payload: serde_json::Value = serde_json::from_slice(&out[0].payload).expect("json");
    assert_eq!(payload["kind"], "ppg");
    assert_eq!(payload["feature_set"], "v1");
    assert!(payload.get("subject").is_none());
    let raw = st.raw_windows(&id).expect("raw");
    assert_eq!(raw.len(), 1);
    let want: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    assert_eq!(raw[0].values, want);
}

#[test]
fn without_retention_no_raw_samples_are_written() {
    let dir = tempfile::tempdir().expect("tmp");
    let engine = open(dir.path());
    let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
    s.push_samples("ppg", SampleBatch::uniform(T0_S, 100.0, ppg_100hz()))
        .expect("push");
    let r = s.finish().expect("finish");
    assert!(engine.raw_samples(&r.check.id).expect("raw").is_empty());
    assert_eq!(outbox(&store(dir.path())).len(), 1);
}

#[test]
fn cancel_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tmp");
    let engine = open(dir.path());
    let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
    s.push_samples("ppg", SampleBatch::uniform(T0_S, 100.0, ppg_100hz()))
        .expect("push");
    s.cancel().expect("cancel");
    s.cancel().expect("cancel is idempotent");
    assert!(matches!(s.finish(), Err(EngineError::SessionClosed)));
    assert!(matches!(
        s.push_samples("ppg", SampleBatch::uniform(T0_S + 30.0, 100.0, vec![1.0])),
        Err(EngineError::SessionClosed)
    ));
    assert!(engine
        .checks(0, i64::MAX, None)
        .expect("history")
        .is_empty());
    let st = store(dir.path());
    assert!(outbox(&st).is_empty());
    let rows: i64 = st.raw_writer_for_tests(|c| {
        c.query_row(
            "SELECT (SELECT count(*) FROM checks) + (SELECT count(*) FROM raw_windows)",
            [],
            |r| r.get(0),
        )
        .expect("count")
    });
    assert_eq!(rows, 0);
}

/// Every kind of bad batch is refused with its typed error, and the session then finishes
/// with exactly the features of the good samples.
#[test]
fn bad_batches_are_typed_errors_and_leave_the_session_intact() {
    let dir = tempfile::tempdir().expect("tmp");
    let engine = open(dir.path());
    let x = ppg_100hz();
    let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
    let half = x.len() / 2;
    s.push_samples("ppg", SampleBatch::uniform(T0_S, 100.0, x[..half].to_vec()))
        .expect("first half");
    let next = T0_S + half as f64 / 100.0;
    let prev_start = T0_S;
    let batch_err = |r: vitalcore::error::Result<()>| match r {
        Err(EngineError::Batch(e)) => e,
        other => panic!("expected a batch error, got {other:?}"),
    };
    let mut nan = x[half..half + 10].to_vec();
    nan[3] = f64::NAN;
    assert_eq!(
        batch_err(s.push_samples("ppg", SampleBatch::uniform(next, 100.0, nan))),
        BatchError::NonFinite { index: 3 }
    );
    let mut inf = x[half..half + 10].to_vec();
    inf[0] = f64::INFINITY;
    assert_eq!(
        batch_err(s.push_samples("ppg", SampleBatch::uniform(next, 100.0, inf))),
        BatchError::NonFinite { index: 0 }
    );
    assert_eq!(
        batch_err(s.push_samples("ppg", SampleBatch::uniform(next, 100.0, vec![]))),
        BatchError::Empty
    );
    // Undeclared channel.
    assert!(matches!(
        batch_err(s.push_samples("ecg", SampleBatch::uniform(next, 100.0, vec![1.0]))),
        BatchError::UndeclaredChannel { kind: "ppg", .. }
    ));
    // Rate change mid-session, and a rate outside the kind's bounds.
    assert_eq!(
        batch_err(s.push_samples("ppg", SampleBatch::uniform(next, 50.0, vec![1.0]))),
        BatchError::RateChanged {
            was_hz: 100.0,
            now_hz: 50.0
        }
    );
    assert!(matches!(
        batch_err(s.push_samples("ppg", SampleBatch::uniform(next, 5.0, vec![1.0]))),
        BatchError::RateOutOfBounds { .. }
    ));
    // Out of order: a batch entirely before the previous batch started.
    assert_eq!(
        batch_err(s.push_samples(
            "ppg",
            SampleBatch::uniform(prev_start - 5.0, 100.0, vec![1.0; 100])
        )),
        BatchError::OutOfOrder
    );
    // Overlap: starts 0.5 s before the end of what was accepted.
    assert!(matches!(
        batch_err(s.push_samples("ppg", SampleBatch::uniform(next - 0.5, 100.0, vec![1.0; 100]))),
        BatchError::Overlap { overlap_s } if (overlap_s - 0.5).abs() < 1e-6
    ));
    // Clock jump: 2 s later than due.
    assert!(matches!(
        batch_err(s.push_samples("ppg", SampleBatch::uniform(next + 2.0, 100.0, vec![1.0; 100]))),
        BatchError::ClockJump { gap_s, .. } if (gap_s - 2.01).abs() < 1e-6
    ));
    // Switching to timestamps on a uniform channel.
    assert_eq!(
        batch_err(s.push_samples(
            "ppg",
            SampleBatch::timestamped(vec![next, next + 0.01], vec![1.0, 2.0], 100.0)
        )),
        BatchError::TimingChanged
    );
    // Timestamped batch problems are checked before the timing change.
    assert_eq!(
        batch_err(s.push_samples(
            "ppg",
            SampleBatch::timestamped(vec![next, next + 0.01], vec![1.0], 100.0)
        )),
        BatchError::LengthMismatch {
            times: 2,
            values: 1
        }
    );
    assert_eq!(
        batch_err(s.push_samples(
            "ppg",
            SampleBatch::timestamped(vec![next, next - 0.01], vec![1.0, 2.0], 100.0)
        )),
        BatchError::NonMonotonic { index: 1 }
    );
    // Finishing too early is refused too, and also leaves the session open.
    let short = engine.start_check(CheckKind::PpgRhythm).expect("start");
    short
        .push_samples("ppg", SampleBatch::uniform(T0_S, 100.0, x[..500].to_vec()))
        .expect("push");
    assert!(matches!(
        short.finish(),
        Err(EngineError::TooShort { channel: "ppg", .. })
    ));
    short
        .push_samples(
            "ppg",
            SampleBatch::uniform(T0_S + 5.0, 100.0, x[500..].to_vec()),
        )
        .expect("push the rest");
    let (peaks, features, _) = one_shot_features(&x, 100.0);
    assert_eq!(short.finish().expect("finish").peaks, peaks);

    // After all that, the rest of the recording goes in and the result is the one-shot one.
    s.push_samples("ppg", SampleBatch::uniform(next, 100.0, x[half..].to_vec()))
        .expect("second half");
    let r = s.finish().expect("finish");
    assert_eq!(r.peaks, peaks);
    assert_eq!(r.check.features, features);
}

#[test]
fn error_messages_carry_no_sample_values() {
    let dir = tempfile::tempdir().expect("tmp");
    let engine = open(dir.path());
    let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
    s.push_samples(
        "ppg",
        SampleBatch::uniform(T0_S, 100.0, vec![1234.5678; 10]),
    )
    .expect("push");
    let errs = [
        s.push_samples(
            "ppg",
            SampleBatch::uniform(T0_S, 100.0, vec![9876.54321; 10]),
        ),
        s.push_samples(
            "ppg",
            SampleBatch::uniform(T0_S + 0.1, 100.0, vec![f64::NAN, 9876.54321]),
        ),
        s.push_samples(
            "ppg",
            SampleBatch::uniform(T0_S + 0.1, 100.0, vec![9876.54321, 1e300]),
        ),
    ];
    for e in errs {
        let msg = format!("{} {:?}", e.as_ref().expect_err("refused"), e);
        assert!(!msg.contains("9876") && !msg.contains("1234"), "{msg}");
    }
}

#[test]
fn timestamped_batches_match_resampled_one_shot() {
    let dir = tempfile::tempdir().expect("tmp");
    let engine = open(dir.path());
    let x = ppg_100hz();
    // Slightly irregular stamps around 100 Hz.
    let times: Vec<f64> = (0..x.len())
        .map(|i| T0_S + i as f64 / 100.0 + if i % 3 == 0 { 0.002 } else { 0.0 })
        .collect();
    let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
    for (t, v) in times.chunks(97).zip(x.chunks(97)) {
        s.push_samples(
            "ppg",
            SampleBatch::timestamped(t.to_vec(), v.to_vec(), 100.0),
        )
        .expect("push");
    }
    let r = s.finish().expect("finish");
    let grid = Series::from_timestamps(&times, &x, 100.0).expect("resample");
    assert_eq!(grid.segments.len(), 1);
    let (peaks, features, _) = one_shot_features(grid.segments[0].values(), 100.0);
    assert_eq!(r.peaks, peaks);
    assert_eq!(r.check.features, features);
}

#[test]
fn activity_check_uses_three_channels() {
    let dir = tempfile::tempdir().expect("tmp");
    let engine = open(dir.path());
    // 20 s of walking-like motion at 50 Hz: 1.8 steps/s on the vertical axis.
    let n = 1000;
    let z: Vec<f64> = (0..n)
        .map(|i| 1.0 + 0.3 * (2.0 * std::f64::consts::PI * 1.8 * i as f64 / 50.0).sin())
        .collect();
    let xy = vec![0.02; n];
    let s = engine.start_check(CheckKind::Activity).expect("start");
    assert!(matches!(
        s.push_samples("ppg", SampleBatch::uniform(T0_S, 50.0, vec![1.0])),
        Err(EngineError::Batch(BatchError::UndeclaredChannel { .. }))
    ));
    s.push_samples("accel_x", SampleBatch::uniform(T0_S, 50.0, xy.clone()))
        .expect("x");
    s.push_samples("accel_y", SampleBatch::uniform(T0_S, 50.0, xy.clone()))
        .expect("y");
    // The third axis at another rate than the first two is a rate change.
    assert!(matches!(
        s.push_samples("accel_z", SampleBatch::uniform(T0_S, 25.0, z.clone())),
        Err(EngineError::Batch(BatchError::RateChanged { .. }))
    ));
    assert!(matches!(
        s.finish(),
        Err(EngineError::TooShort {
            channel: "accel_z",
            ..
        })
    ));
    s.push_samples("accel_z", SampleBatch::uniform(T0_S, 50.0, z.clone()))
        .expect("z");
    let r = s.finish().expect("finish");
    let a = analyze_accel(&xy, &xy, &z, 50.0).expect("one-shot");
    let want: BTreeMap<String, f64> = a
        .features
        .iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect();
    assert_eq!(r.check.features, want);
    assert_eq!(r.check.kind, CheckKind::Activity);
}

#[test]
fn quality_too_low_is_not_predicted() {
    let dir = tempfile::tempdir().expect("tmp");
    let engine = Vitalcore::open(
        // The real recording's quality is below a threshold of 1.
        Config::new(dir.path()).cardiac_sqi_threshold(1.0),
        &keys(),
    )
    .expect("open");
    let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
    s.push_samples("ppg", SampleBatch::uniform(T0_S, 100.0, ppg_100hz()))
        .expect("push");
    let r = s.finish().expect("finish");
    assert!(r.check.quality.sqi < 1.0);
    assert!(!r.check.quality.acceptable);
    assert_eq!(
        r.check.prediction,
        PredictionOutcome::QualityTooLow {
            sqi: r.check.quality.sqi,
            threshold: 1.0
        }
    );
    // Features are kept even when nothing is predicted.
    assert!(r.check.features.contains_key("hr_mean"));
    let back = engine.check(&r.check.id).expect("read").expect("stored");
    assert_eq!(back.prediction, r.check.prediction);
}

#[test]
fn history_by_time_range_and_labels() {
    let dir = tempfile::tempdir().expect("tmp");
    let engine = open(dir.path());
    let x = ppg_100hz();
    let mut ids = Vec::new();
    for h in 0..3 {
        let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
        s.push_samples(
            "ppg",
            SampleBatch::uniform(T0_S + 3600.0 * h as f64, 100.0, x.clone()),
        )
        .expect("push");
        ids.push(s.finish().expect("finish").check);
    }
    let t0 = (T0_S * 1000.0) as i64;
    let all = engine.checks(t0, t0 + 3 * 3_600_000, None).expect("all");
    assert_eq!(untimed_all(&all), untimed_all(&ids));
    let middle = engine
        .checks(t0 + 1, t0 + 2 * 3_600_000, Some(CheckKind::PpgRhythm))
        .expect("middle");
    assert_eq!(untimed_all(&middle), vec![untimed(&ids[1])]);
    assert!(engine
        .checks(t0, t0 + 3 * 3_600_000, Some(CheckKind::EcgRhythm))
        .expect("ecg")
        .is_empty());
    assert!(engine
        .windows(t0, t0 + 3 * 3_600_000, None)
        .expect("w")
        .is_empty());
    let back = engine.check(&ids[2].id).expect("read").expect("stored");
    assert_eq!(untimed(&back), untimed(&ids[2]));
    assert_eq!(back.timings.features_us, ids[2].timings.features_us);

    let label = Label {
        name: "afib".into(),
        value: 0.0,
        source: "clinician".into(),
        recorded_at_ms: t0 + 10,
    };
    engine.add_label(&ids[0].id, label.clone()).expect("label");
    let second = Label {
        value: 1.0,
        source: "self_report".into(),
        ..label.clone()
    };
    engine.add_label(&ids[0].id, second.clone()).expect("label");
    assert_eq!(
        engine.labels(&ids[0].id).expect("labels"),
        vec![label.clone(), second]
    );
    assert!(engine.labels(&ids[1].id).expect("labels").is_empty());
    assert!(matches!(
        engine.add_label(&"00".repeat(16), label.clone()),
        Err(EngineError::NotFound)
    ));
    assert!(matches!(
        engine.add_label("not-an-id", label.clone()),
        Err(EngineError::InvalidId)
    ));
    assert!(matches!(
        engine.add_label(
            &ids[0].id,
            Label {
                value: f64::NAN,
                ..label
            }
        ),
        Err(EngineError::InvalidLabel(_))
    ));
    assert!(engine.delete_check(&ids[0].id).expect("delete"));
    assert_eq!(
        engine
            .checks(t0, t0 + 3 * 3_600_000, None)
            .expect("all")
            .len(),
        2
    );
    // Deleting a check drops its pending upload in the same transaction.
    assert_eq!(outbox(&store(dir.path())).len(), 2);
}

#[test]
fn history_survives_reopen_and_wrong_key_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let id = {
        let engine = open(dir.path());
        let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
        s.push_samples("ppg", SampleBatch::uniform(T0_S, 100.0, ppg_100hz()))
            .expect("push");
        let r = s.finish().expect("finish");
        engine.shutdown().expect("shutdown");
        assert!(matches!(
            engine.start_check(CheckKind::PpgRhythm),
            Err(EngineError::ShutDown)
        ));
        r.check
    };
    let engine = open(dir.path());
    let back = engine.check(&id.id).expect("read").expect("stored");
    assert_eq!(untimed(&back), untimed(&id));
    let wrong = vitalcore::keys::InMemoryKeyProvider::new([8; 32]);
    assert!(matches!(
        Vitalcore::open(Config::new(dir.path()), &wrong),
        Err(EngineError::Store(vitalcore::store::StoreError::WrongKey))
    ));
}

#[test]
fn config_is_validated_at_open() {
    let dir = tempfile::tempdir().expect("tmp");
    for c in [
        Config::new(dir.path()).cardiac_sqi_threshold(1.5),
        Config::new(dir.path()).sync_endpoint("ftp://x"),
        Config::new(dir.path()).model_public_keys(vec!["abc".into()]),
        Config::new(dir.path()).subject(""),
        Config::new(dir.path()).outbox_purpose("Research!"),
    ] {
        assert!(matches!(
            Vitalcore::open(c, &keys()),
            Err(EngineError::InvalidConfig(_))
        ));
    }
    // Opening touches nothing but the data directory.
    let c = Config::new(dir.path().join("nested/data")).sync_endpoint("https://sync.invalid");
    let e = Vitalcore::open(c, &keys()).expect("no network at open");
    assert!(dir.path().join("nested/data/vitalcore.db").exists());
    drop(e);
}

mod arbitrary_batches {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            8 => -5.0f64..5.0,
            1 => Just(f64::NAN),
            1 => Just(f64::INFINITY),
            1 => Just(1e300),
        ]
    }

    fn batch() -> impl Strategy<Value = (String, SampleBatch)> {
        let channel = prop_oneof![8 => Just("ppg".to_owned()), 1 => "[a-z_]{0,40}"];
        let rate = prop_oneof![8 => Just(100.0), 1 => Just(50.0), 1 => -10.0f64..5000.0];
        let start = prop_oneof![8 => 0.0f64..40.0, 1 => Just(f64::NAN), 1 => -1e12f64..1e12];
        let uniform = (start, rate, prop::collection::vec(value(), 0..300))
            .prop_map(|(s, r, v)| SampleBatch::uniform(T0_S + s, r, v));
        let stamped = (
            prop::collection::vec(0.0f64..0.05, 0..300),
            0.0f64..40.0,
            prop::collection::vec(value(), 0..300),
        )
            .prop_map(|(steps, s, v)| {
                let mut t = T0_S + s;
                let times = steps
                    .iter()
                    .map(|d| {
                        t += d;
                        t
                    })
                    .collect();
                SampleBatch::timestamped(times, v, 100.0)
            });
        (channel, prop_oneof![3 => uniform, 1 => stamped])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Whatever the app pushes, the engine never panics; an accepted batch grows the
        /// channel, a refused one leaves it exactly as it was, and finish either stores a
        /// check or fails with a typed error and keeps the session open.
        #[test]
        fn arbitrary_batches_never_poison_a_session(
            batches in prop::collection::vec(batch(), 1..30)
        ) {
            let dir = tempfile::tempdir().expect("tmp");
            let engine = open(dir.path());
            let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
            for (channel, b) in batches {
                let before = s.duration_s("ppg");
                let n = b.values.len();
                match s.push_samples(&channel, b) {
                    Ok(()) => prop_assert!(s.duration_s("ppg") > before || n == 0),
                    Err(EngineError::Batch(_)) => prop_assert_eq!(s.duration_s("ppg"), before),
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                }
            }
            match s.finish() {
                Ok(r) => {
                    prop_assert_eq!(engine.checks(0, i64::MAX, None).expect("h").len(), 1);
                    prop_assert!(r.check.features.values().all(|v| v.is_finite()));
                }
                Err(EngineError::TooShort { .. } | EngineError::Signal(_)) => {
                    prop_assert!(engine.checks(0, i64::MAX, None).expect("h").is_empty());
                    // Still open: a cancel succeeds.
                    prop_assert!(s.cancel().is_ok());
                }
                Err(e) => prop_assert!(false, "unexpected finish error {e}"),
            }
        }
    }
}

#[test]
fn debug_output_carries_no_health_values() {
    let dir = tempfile::tempdir().expect("tmp");
    let engine = open(dir.path());
    let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
    let batch = SampleBatch::uniform(T0_S, 100.0, ppg_100hz());
    assert!(!format!("{batch:?}").contains("530"));
    s.push_samples("ppg", batch).expect("push");
    let r = s.finish().expect("finish");
    let shown = format!("{r:?} {r:#?} {:?}", engine.checks(0, i64::MAX, None));
    for v in r.check.features.values().chain([&r.check.quality.sqi]) {
        // Small whole numbers (counts) cannot be told apart from the shape figures Debug shows.
        if v.fract() == 0.0 && v.abs() < 100.0 {
            continue;
        }
        assert!(!shown.contains(&v.to_string()), "{v} in {shown}");
    }
    assert!(!shown.contains(&format!("{:?}", &r.peaks[..3])));
}
