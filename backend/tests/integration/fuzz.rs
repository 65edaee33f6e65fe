//! Property test: random and mutated bodies through `oneshot`. The endpoint never answers 5xx
//! to bad input, a refused body never changes the store, and an accepted one stores exactly
//! the records and labels it carried.

use axum::http::StatusCode;
use proptest::prelude::*;
use proptest::test_runner::{Config as PtConfig, TestRunner};
use serde_json::Value;
use vitalcore_protocol::{BatchAck, ConsentPurpose, SyncBatch};
use vitalcore_server::storage::{RecordQuery, StoredRecord};

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
                "subject_proofs",
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
                "age_band",
                "kind",
                "feature_set"
            ]),
            leaf()
        )
            .prop_map(|(f, v)| Body::RecordField(f, v)),
    ]
}

/// Every stored record (any purpose), by sequence number.
async fn all_records(app: &TestApp) -> Vec<StoredRecord> {
    let mut all = std::collections::BTreeMap::new();
    for purpose in [
        ConsentPurpose::Research,
        ConsentPurpose::ModelTraining,
        ConsentPurpose::PartnerSharing,
    ] {
        let q = RecordQuery {
            study: None,
            purpose,
            after_seq: 0,
            limit: i64::MAX,
        };
        for r in app.state.store.records(&q).await.unwrap() {
            all.insert(r.seq, r);
        }
    }
    all.into_values().collect()
}

/// The body's records with their labels, in a comparable form.
fn carried(batch: &SyncBatch) -> Vec<String> {
    let mut out: Vec<String> = batch
        .records
        .iter()
        .map(|r| {
            let label = batch
                .labels
                .iter()
                .find(|l| l.subject == r.subject && l.record_id == r.record_id)
                .map(|l| l.label.clone());
            format!("{r:?} label {label:?}")
        })
        .collect();
    out.sort();
    out
}

fn stored(records: &[StoredRecord]) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .map(|r| format!("{:?} label {:?}", r.record, r.label))
        .collect();
    out.sort();
    out
}

/// The server takes gzip and zstd only: a valid body in any other encoding is refused with
/// 415 and stores nothing (the property test below sends gzip and zstd, where the content is).
#[test]
fn other_encodings_are_refused_and_store_nothing() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let app = TestApp::new(Backend::Sqlite).await;
        let dev = app.enroll().await;
        for (i, encoding) in ["br", "identity", "deflate", "gzip, zstd"]
            .iter()
            .enumerate()
        {
            let body =
                serde_json::to_vec(&sample_batch(&format!("key-enc-{i:08}"), "s", 3)).unwrap();
            let before = app.counts().await;
            let (status, _, _) = app.post_batch(&dev.credential, encoding, body).await;
            assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{encoding}");
            assert_eq!(app.counts().await, before, "{encoding}");
        }
    });
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
    let accepted = std::cell::Cell::new(0u32);
    runner
        .run(
            &(body(), prop::sample::select(vec!["gzip", "zstd"])),
            |(body, encoding)| {
                n.set(n.get() + 1);
                // A subject of its own per case: an accepted body's records are all new.
                let valid = with_proofs(sample_batch(
                    &format!("key-fuzz-{:012}", n.get()),
                    &format!("subj-{:06}", n.get()),
                    3,
                ));
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
                    _ => zstd(&raw),
                };
                rt.block_on(async {
                    let before = app.counts().await;
                    let records_before = all_records(&app).await;
                    let (status, _, resp) = app.post_batch(&credential, encoding, wire).await;
                    let after = app.counts().await;
                    let records_after = all_records(&app).await;
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
                        // What was stored is what the body carried: every record, field by
                        // field, with its label.
                        let sent: SyncBatch = serde_json::from_slice(&raw).unwrap();
                        let last = records_before.last().map_or(0, |r| r.seq);
                        let new: Vec<StoredRecord> = records_after
                            .iter()
                            .filter(|r| r.seq > last)
                            .cloned()
                            .collect();
                        prop_assert_eq!(ack.records_stored as usize, sent.records.len());
                        prop_assert_eq!(stored(&new), carried(&sent));
                        prop_assert_eq!(
                            &records_after[..records_before.len()],
                            &records_before[..],
                            "an accepted body changed earlier records"
                        );
                        accepted.set(accepted.get() + 1);
                    } else {
                        prop_assert!(status.is_client_error());
                        prop_assert_eq!(after, before, "refused body stored something");
                        prop_assert_eq!(
                            records_after,
                            records_before,
                            "refused body changed stored records"
                        );
                    }
                    Ok::<(), proptest::test_runner::TestCaseError>(())
                })
            },
        )
        .unwrap();
    // Mutations that keep the body valid (a field set to an acceptable value) must occur, or
    // the content check above never ran.
    assert!(
        accepted.get() > 0,
        "no case was accepted: the stored content was never checked"
    );
}
