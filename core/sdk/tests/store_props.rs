//! Property tests: arbitrary records round-trip through the encrypted store; arbitrary or
//! corrupt stored bytes give typed errors, never a panic and never wrong plaintext.

mod store_support;

use std::collections::BTreeMap;

use proptest::prelude::*;
use store_support::*;
use vitalcore::store::{
    bench_support, CheckKind, CheckRecord, Prediction, RawWindow, RecordId, SignalQuality, Store,
    StoreConfig, StoreError, SubjectId, Timings,
};

/// Floats compared by bits, so NaN payloads must survive too.
fn f64_bits(m: &BTreeMap<String, f64>) -> Vec<(String, u64)> {
    m.iter().map(|(k, v)| (k.clone(), v.to_bits())).collect()
}

fn arb_check() -> impl Strategy<Value = CheckRecord> {
    (
        "[a-zA-Z0-9 _\\-\u{e9}\u{4e2d}]{1,40}",
        "[a-z0-9_]{1,32}",
        any::<i64>(),
        0i64..10_000_000,
        prop::collection::btree_map(".{0,20}", ".{0,40}", 0..6),
        prop::collection::btree_map("[a-z_0-9]{1,30}", any::<f64>(), 0..60),
        any::<f64>(),
        any::<bool>(),
        prop::option::of((
            "[ -~]{0,20}",
            "[ -~]{0,10}",
            prop::collection::btree_map(".{0,8}", any::<f64>(), 0..4),
        )),
        any::<[u64; 3]>(),
        any::<[u8; 16]>(),
    )
        .prop_map(
            |(subject, kind, start, dur, session, features, score, usable, pred, t, id)| {
                CheckRecord {
                    id: RecordId(id),
                    subject: SubjectId::new(subject).expect("non-empty by strategy"),
                    kind: CheckKind::new(kind).expect("valid by strategy"),
                    started_at_ms: start.min(i64::MAX - dur),
                    ended_at_ms: start.min(i64::MAX - dur) + dur,
                    session,
                    features,
                    quality: SignalQuality { score, usable },
                    prediction: pred.map(|(model_name, model_version, outputs)| Prediction {
                        model_name,
                        model_version,
                        outputs,
                    }),
                    timings: Timings {
                        features_us: t[0],
                        inference_us: t[1],
                        total_us: t[2],
                    },
                }
            },
        )
}

fn arb_raw() -> impl Strategy<Value = RawWindow> {
    (
        ".{0,20}",
        any::<i64>(),
        any::<f64>(),
        prop::collection::vec(any::<f32>(), 0..300),
    )
        .prop_map(|(channel, start_ms, rate_hz, values)| RawWindow {
            channel,
            start_ms,
            rate_hz,
            values,
        })
}

fn same(a: &CheckRecord, b: &CheckRecord) -> bool {
    a.id == b.id
        && a.subject == b.subject
        && a.kind == b.kind
        && (a.started_at_ms, a.ended_at_ms) == (b.started_at_ms, b.ended_at_ms)
        && a.session == b.session
        && f64_bits(&a.features) == f64_bits(&b.features)
        && a.quality.score.to_bits() == b.quality.score.to_bits()
        && a.quality.usable == b.quality.usable
        && a.timings == b.timings
        && match (&a.prediction, &b.prediction) {
            (None, None) => true,
            (Some(x), Some(y)) => {
                x.model_name == y.model_name
                    && x.model_version == y.model_version
                    && f64_bits(&x.outputs) == f64_bits(&y.outputs)
            }
            _ => false,
        }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_checks_round_trip_through_the_store(c in arb_check()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig::new(db_path(dir.path())).audit_reads(false), &provider()).expect("open");
        store.save_check(&c, None, &[]).expect("save");
        let back = store.check(&c.id).expect("read").expect("present");
        prop_assert!(same(&back, &c));
    }

    #[test]
    fn arbitrary_bytes_in_a_sealed_column_are_an_integrity_error(bytes in prop::collection::vec(any::<u8>(), 0..200), col in prop::sample::select(vec!["features", "detail"])) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(StoreConfig::new(db_path(dir.path())).audit_reads(false), &provider()).expect("open");
        let c = check(&subject("a"), 0, 1);
        store.save_check(&c, None, &[]).expect("save");
        store.raw_writer_for_tests(|conn| conn.execute(&format!("UPDATE checks SET {col} = ?1"), [&bytes]).expect("tamper"));
        let r = store.check(&c.id);
        prop_assert!(matches!(r, Err(StoreError::Integrity { table: "checks", .. })), "{:?}", r);
    }

    #[test]
    fn decoding_arbitrary_plaintext_never_panics(a in prop::collection::vec(any::<u8>(), 0..300), b in prop::collection::vec(any::<u8>(), 0..300)) {
        let kind = CheckKind::new("ppg").expect("kind");
        let _ = bench_support::decode_check(RecordId([0; 16]), kind, &a, &b);
        let _ = bench_support::decode_raw(&a);
    }

    #[test]
    fn every_truncation_or_extension_of_an_encoding_is_rejected(c in arb_check(), tail in prop::collection::vec(any::<u8>(), 1..9), w in arb_raw()) {
        let (f, d) = bench_support::encode_check(&c);
        let kind = c.kind.clone();
        let decode = |f: &[u8], d: &[u8]| bench_support::decode_check(c.id, kind.clone(), f, d);
        let back = decode(&f, &d).expect("own encoding decodes");
        prop_assert!(same(&back, &c));
        // Both sealed columns of a check, every strict prefix, and each extended by one byte,
        // by a zero and by several arbitrary bytes.
        for (name, col) in [("features", &f), ("detail", &d)] {
            let with = |v: &[u8]| if name == "features" { decode(v, &d) } else { decode(&f, v) };
            for n in 0..col.len() {
                prop_assert!(with(&col[..n]).is_err(), "{name} cut to {n} of {} bytes decoded", col.len());
            }
            for extra in [&[0u8][..], &tail[..1], &tail[..]] {
                let mut longer = col.to_vec();
                longer.extend_from_slice(extra);
                prop_assert!(with(&longer).is_err(), "{name} extended by {extra:?} decoded");
            }
        }
        // A raw window's encoding the same way.
        let raw = bench_support::encode_raw(&w);
        prop_assert!(bench_support::decode_raw(&raw).is_ok());
        for n in 0..raw.len() {
            prop_assert!(bench_support::decode_raw(&raw[..n]).is_err(), "raw cut to {n} of {} bytes decoded", raw.len());
        }
        for extra in [&[0u8][..], &tail[..]] {
            let mut longer = raw.clone();
            longer.extend_from_slice(extra);
            prop_assert!(bench_support::decode_raw(&longer).is_err(), "raw extended by {extra:?} decoded");
        }
    }

    #[test]
    fn raw_windows_round_trip_bit_exact(values in prop::collection::vec(any::<f32>(), 0..2000), rate in 0.1f64..10_000.0, channel in ".{0,20}") {
        let w = RawWindow { channel, start_ms: 5, rate_hz: rate, values };
        let back = bench_support::decode_raw(&bench_support::encode_raw(&w)).expect("decode");
        prop_assert_eq!(back.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), w.values.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        prop_assert_eq!((back.channel, back.start_ms, back.rate_hz.to_bits()), (w.channel, w.start_ms, w.rate_hz.to_bits()));
    }
}
