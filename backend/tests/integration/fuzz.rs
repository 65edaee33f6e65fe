//! Property test: random and mutated bodies through `oneshot`. The endpoint never answers 5xx
//! to bad input, and a refused body never changes the store.

use axum::http::StatusCode;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use serde_json::Value;
use vitalcore_protocol::BatchAck;

use crate::common::*;

#[derive(Debug, Clone)]
enum Body {
    Bytes(Vec<u8>),
    Truncated(usize),
    Flipped(usize, u8),
    Field(&'static str, Value),
    RecordField(&'static str, Value),
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,40}".prop_map(Value::from),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(serde_json::json!(["research", "research"])),
    ]
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600).prop_map(Body::Bytes),
        (0usize..4000).prop_map(Body::Truncated),
        (0usize..4000, any::<u8>()).prop_map(|(i, b)| Body::Flipped(i, b)),
        (
            prop::sample::select(vec![
                "schema",
                "idempotency_key",
                "region",
                "consent",
                "records",
                "labels",
                "extra"
            ]),
            leaf()
        )
            .prop_map(|(f, v)| Body::Field(f, v)),
        (
            prop::sample::select(vec![
                "record_id",
                "subject",
                "study",
                "quality",
                "features",
                "captured_hour",
                "age_band"
            ]),
            leaf()
        )
            .prop_map(|(f, v)| Body::RecordField(f, v)),
    ]
}

#[test]
fn random_bodies_get_a_4xx_or_a_clean_accept_and_never_corrupt_the_store() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (app, credential) = rt.block_on(async {
        let app = TestApp::new(Backend::Sqlite).await;
        let dev = app.enroll().await;
        (app, dev.credential)
    });
    let mut runner = TestRunner::new(PtConfig {
        cases: 160,
        ..PtConfig::default()
    });
    let n = std::cell::Cell::new(0u32);
    runner
        .run(
            &(body(), prop::sample::select(vec!["gzip", "zstd", "br"])),
            |(body, encoding)| {
                n.set(n.get() + 1);
                let valid = sample_batch(&format!("key-fuzz-{:012}", n.get()), "subj", 3);
                let valid_json = serde_json::to_vec(&valid).unwrap();
                let raw = match body {
                    Body::Bytes(b) => b,
                    Body::Truncated(i) => valid_json[..i.min(valid_json.len())].to_vec(),
                    Body::Flipped(i, b) => {
                        let mut v = valid_json.clone();
                        let i = i % v.len();
                        v[i] = b;
                        v
                    }
                    Body::Field(f, x) => {
                        let mut v = serde_json::to_value(&valid).unwrap();
                        v[f] = x;
                        serde_json::to_vec(&v).unwrap()
                    }
                    Body::RecordField(f, x) => {
                        let mut v = serde_json::to_value(&valid).unwrap();
                        v["records"][0][f] = x;
                        serde_json::to_vec(&v).unwrap()
                    }
                };
                let wire = match encoding {
                    "gzip" => gzip(&raw),
                    "zstd" => zstd(&raw),
                    _ => raw.clone(),
                };
                rt.block_on(async {
                    let before = app.counts().await;
                    let (status, _, resp) = app.post_batch(&credential, encoding, wire).await;
                    let after = app.counts().await;
                    prop_assert!(
                        !status.is_server_error(),
                        "{status} for {:?}",
                        String::from_utf8_lossy(&raw)
                    );
                    if status == StatusCode::OK {
                        let ack: BatchAck = serde_json::from_slice(&resp).unwrap();
                        prop_assert_eq!(after.batches, before.batches + 1);
                        prop_assert_eq!(
                            after.records,
                            before.records + i64::from(ack.records_stored)
                        );
                    } else {
                        prop_assert!(status.is_client_error());
                        prop_assert_eq!(after, before, "refused body stored something");
                    }
                    Ok::<(), proptest::test_runner::TestCaseError>(())
                })
            },
        )
        .unwrap();
}
