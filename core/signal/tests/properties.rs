//! Arbitrary input never panics: every analysis returns a typed error or a well-formed
//! result (peaks inside the input and increasing, finite features, SQI in [0, 1]).

use proptest::prelude::*;
use vitalcore_signal::{analyze_accel, analyze_ecg, analyze_ppg, Series, SignalError};

fn sample() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => -5.0..5.0f64,
        1 => any::<f64>(),
        1 => Just(0.0),
        1 => prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY)],
        1 => prop_oneof![Just(1e300), Just(-1e300), Just(1e-300), Just(f64::MIN_POSITIVE)],
    ]
}

fn samples() -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![
        prop::collection::vec(sample(), 0..4000),
        // Constant signals of random length.
        (any::<f64>(), 0usize..4000).prop_map(|(v, n)| vec![v; n]),
        // Mostly clean noise long enough to reach the beat detectors.
        prop::collection::vec(-1.0..1.0f64, 1000..6000),
    ]
}

fn rate() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        0.0..2500.0f64,
        Just(1.0),
        Just(20.0),
        Just(50.0),
        Just(100.0),
        Just(2000.0),
    ]
}

fn check_cardiac(r: Result<vitalcore_signal::CardiacAnalysis, SignalError>, n: usize) {
    if let Ok(a) = r {
        assert!(a.peaks.windows(2).all(|w| w[0] < w[1]));
        assert!(a.peaks.iter().all(|&p| p < n));
        assert!((0.0..=1.0).contains(&a.quality.sqi));
        for (_, v) in a.features.iter() {
            assert!(v.is_none_or(f64::is_finite));
        }
        assert!(!a.windows.is_empty());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn ecg_never_panics(x in samples(), fs in rate()) {
        check_cardiac(analyze_ecg(&x, fs), x.len());
    }

    #[test]
    fn ppg_never_panics(x in samples(), fs in rate()) {
        check_cardiac(analyze_ppg(&x, fs), x.len());
    }

    #[test]
    fn accel_never_panics(
        x in samples(), y in samples(), z in samples(), fs in rate(), same_len in any::<bool>()
    ) {
        let n = x.len().min(y.len()).min(z.len());
        let (y, z) = if same_len { (&y[..n], &z[..n]) } else { (&y[..], &z[..]) };
        let x = if same_len { &x[..n] } else { &x[..] };
        if let Ok(a) = analyze_accel(x, y, z, fs) {
            prop_assert!(a.peaks.iter().all(|&p| p < x.len()));
            prop_assert!((0.0..=1.0).contains(&a.sqi));
            for (_, v) in a.features.iter() {
                prop_assert!(v.is_none_or(f64::is_finite));
            }
        }
    }

    #[test]
    fn timestamps_never_panic(
        t in prop::collection::vec(sample(), 0..500),
        steps in prop::collection::vec(0.0..0.5f64, 0..500),
        v in prop::collection::vec(sample(), 0..500),
        fs in rate(),
        use_steps in any::<bool>(),
    ) {
        // Either arbitrary stamps, or increasing stamps from random steps (some zero).
        let t: Vec<f64> = if use_steps {
            steps.iter().scan(0.0, |acc, d| { *acc += d; Some(*acc) }).collect()
        } else {
            t
        };
        let v = if use_steps { vec![0.5; t.len()] } else { v };
        if let Ok(r) = Series::from_timestamps(&t, &v, fs) {
            for s in &r.segments {
                prop_assert!(s.values().iter().all(|x| x.is_finite()));
            }
            prop_assert!(r.gaps.windows(2).all(|g| g[0].end_s <= g[1].start_s));
        }
    }
}
