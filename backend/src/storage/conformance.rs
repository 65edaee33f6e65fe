//! The storage conformance suite. Every [`Store`] implementation runs it through
//! [`store_conformance_tests!`](crate::store_conformance_tests), so SQLite and PostgreSQL are
//! held to one contract.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;

use vitalcore_protocol::{ConsentPurpose, FeatureRecord, OutcomeLabel};

use super::*;

/// Generates one `#[tokio::test]` per conformance check; `$make` is an async expression that
/// yields a fresh, migrated, empty `Arc<dyn Store>`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        $crate::store_conformance_tests!(@each $make;
            migrate_is_idempotent, devices_are_found_by_credential_hash,
            commit_then_replay_returns_the_first_answer, records_are_deduplicated_across_batches,
            failed_commit_leaves_nothing, concurrent_commits_of_one_key_have_one_winner,
            record_queries_filter_by_consent_and_paginate, erasure_removes_subject_and_keeps_audit,
            models_roundtrip_and_rollout, partner_keys_roundtrip,
            subjects_bind_to_their_first_proof, erasure_needs_the_bound_proof_and_drops_emptied_batches,
            revoked_and_expired_credentials_are_refused, idempotency_records_are_purged_after_the_window,
            refusals_are_audited);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let store: std::sync::Arc<dyn $crate::storage::Store> = $make.await;
                $crate::storage::conformance::$name(store).await;
            }
        )*
    };
}

/// A record for the suite.
pub fn record(subject: &str, id: &str, study: &str) -> FeatureRecord {
    FeatureRecord {
        record_id: id.into(),
        subject: subject.into(),
        study: study.into(),
        kind: "ppg".into(),
        feature_set: "v1".into(),
        captured_hour: 1_790_000_000,
        age_band: Some("40-49".into()),
        quality: 0.75,
        features: [
            ("hr_mean".to_string(), 60.0 + id.len() as f64),
            ("rmssd".to_string(), 41.5),
        ]
        .into_iter()
        .collect(),
    }
}

/// A batch write for the suite.
pub fn batch(
    device: &str,
    key: &str,
    records: Vec<FeatureRecord>,
    purposes: &[ConsentPurpose],
) -> BatchWrite {
    let labels = records
        .iter()
        .map(|r| OutcomeLabel {
            subject: r.subject.clone(),
            record_id: r.record_id.clone(),
            label: "regular".into(),
        })
        .collect();
    let mut subjects: Vec<&str> = records.iter().map(|r| r.subject.as_str()).collect();
    subjects.sort_unstable();
    subjects.dedup();
    let archive = subjects
        .iter()
        .map(|s| ArchiveRef {
            subject_digest: format!("d-{s}"),
            object_key: format!("raw/d-{s}/{device}-{key}"),
        })
        .collect();
    let subject_proofs = subjects
        .iter()
        .map(|s| SubjectProof {
            subject_digest: format!("d-{s}"),
            proof_hash: format!("proof-of-{s}"),
        })
        .collect();
    BatchWrite {
        batch_id: format!("b-{device}-{key}"),
        device_id: device.into(),
        idempotency_key: key.into(),
        request_digest: format!("digest-{key}"),
        region: "eu".into(),
        purposes: purpose_bits(purposes),
        received_at: 1_790_000_100,
        records,
        labels,
        archive,
        subjects: subject_proofs,
    }
}

fn erasure<'a>(
    subject: &'a str,
    digest: &'a str,
    proof: Option<&'a str>,
    id: &'a str,
) -> ErasureWrite<'a> {
    ErasureWrite {
        subject,
        subject_digest: digest,
        proof_hash: proof,
        audit_id: id,
        at: 5,
    }
}

fn answer(c: InsertCounts) -> (u16, Vec<u8>) {
    (
        200,
        format!(
            "{}/{}/{}",
            c.records_stored, c.records_duplicate, c.labels_stored
        )
        .into_bytes(),
    )
}

const ALL: &[ConsentPurpose] = &[
    ConsentPurpose::Research,
    ConsentPurpose::ModelTraining,
    ConsentPurpose::PartnerSharing,
];

pub async fn migrate_is_idempotent(store: Arc<dyn Store>) {
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    store.ping().await.unwrap();
    assert_eq!(store.counts().await.unwrap(), StoreCounts::default());
}

pub async fn devices_are_found_by_credential_hash(store: Arc<dyn Store>) {
    store
        .insert_device("dev-a", "hash-a", 1, 100)
        .await
        .unwrap();
    assert_eq!(
        store
            .device_by_credential("hash-a", 2)
            .await
            .unwrap()
            .as_deref(),
        Some("dev-a")
    );
    assert_eq!(store.device_by_credential("hash-b", 2).await.unwrap(), None);
    assert!(matches!(
        store.insert_device("dev-b", "hash-a", 2, 100).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(store.counts().await.unwrap().devices, 1);
}

pub async fn commit_then_replay_returns_the_first_answer(store: Arc<dyn Store>) {
    let b = batch(
        "dev",
        "key-1",
        vec![record("s1", "r1", "st"), record("s2", "r2", "st")],
        ALL,
    );
    let first = store.commit_batch(&b, &answer).await.unwrap();
    let CommitOutcome::Committed(first) = first else {
        panic!("first commit must write")
    };
    assert_eq!(first.body, b"2/0/2");
    let before = store.counts().await.unwrap();
    assert_eq!(
        (
            before.batches,
            before.records,
            before.labels,
            before.idempotency,
            before.archive_refs
        ),
        (1, 2, 2, 1, 2)
    );

    let again = store.commit_batch(&b, &answer).await.unwrap();
    assert_eq!(again, CommitOutcome::Existing(first.clone()));
    assert_eq!(
        store.counts().await.unwrap(),
        before,
        "a replay stores nothing"
    );
    assert_eq!(
        store.idempotent_answer("dev", "key-1").await.unwrap(),
        Some(first)
    );
    assert_eq!(
        store.idempotent_answer("other-dev", "key-1").await.unwrap(),
        None,
        "keys are per device"
    );
}

pub async fn records_are_deduplicated_across_batches(store: Arc<dyn Store>) {
    let b1 = batch("dev", "key-1", vec![record("s1", "r1", "st")], ALL);
    let b2 = batch(
        "dev",
        "key-2",
        vec![record("s1", "r1", "st"), record("s1", "r2", "st")],
        ALL,
    );
    store.commit_batch(&b1, &answer).await.unwrap();
    let CommitOutcome::Committed(a) = store.commit_batch(&b2, &answer).await.unwrap() else {
        panic!("new key must write")
    };
    assert_eq!(a.body, b"1/1/1");
    assert_eq!(store.counts().await.unwrap().records, 2);
}

pub async fn failed_commit_leaves_nothing(store: Arc<dyn Store>) {
    let b1 = batch("dev", "key-1", vec![record("s1", "r1", "st")], ALL);
    store.commit_batch(&b1, &answer).await.unwrap();
    let before = store.counts().await.unwrap();
    // Second batch: new key and new records, but an archive reference that collides with the
    // first batch's, so the transaction fails after the rows were inserted.
    let mut b2 = batch("dev", "key-2", vec![record("s9", "r9", "st")], ALL);
    b2.archive = b1.archive.clone();
    assert!(store.commit_batch(&b2, &answer).await.is_err());
    assert_eq!(
        store.counts().await.unwrap(),
        before,
        "rows, key and refs all rolled back"
    );
    assert_eq!(store.idempotent_answer("dev", "key-2").await.unwrap(), None);
}

pub async fn concurrent_commits_of_one_key_have_one_winner(store: Arc<dyn Store>) {
    let b = Arc::new(batch("dev", "key-c", vec![record("s1", "r1", "st")], ALL));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, b) = (store.clone(), b.clone());
        tasks.push(tokio::spawn(async move {
            store.commit_batch(&b, &answer).await
        }));
    }
    let mut committed = 0;
    let mut bodies = Vec::new();
    for t in tasks {
        match t.await.unwrap().unwrap() {
            CommitOutcome::Committed(a) => {
                committed += 1;
                bodies.push(a.body);
            }
            CommitOutcome::Existing(a) => bodies.push(a.body),
        }
    }
    assert_eq!(committed, 1);
    assert!(bodies.iter().all(|x| x == b"1/0/1"));
    let c = store.counts().await.unwrap();
    assert_eq!((c.batches, c.records, c.idempotency), (1, 1, 1));
}

pub async fn record_queries_filter_by_consent_and_paginate(store: Arc<dyn Store>) {
    let research_only = batch(
        "dev",
        "key-1",
        vec![record("s1", "r1", "a")],
        &[ConsentPurpose::Research],
    );
    let training = batch(
        "dev",
        "key-2",
        (0..5)
            .map(|i| record("s2", &format!("t{i}"), if i < 3 { "a" } else { "b" }))
            .collect(),
        &[ConsentPurpose::ModelTraining],
    );
    store.commit_batch(&research_only, &answer).await.unwrap();
    store.commit_batch(&training, &answer).await.unwrap();
    let q = |study: Option<&str>, after_seq, limit| RecordQuery {
        study: study.map(str::to_owned),
        purpose: ConsentPurpose::ModelTraining,
        after_seq,
        limit,
    };
    let all = store.records(&q(None, 0, 100)).await.unwrap();
    assert_eq!(
        all.len(),
        5,
        "the research-only record is not in a training query"
    );
    assert!(all.iter().all(|r| r.label.as_deref() == Some("regular")));
    assert_eq!(all[0].record, training.records[0]);
    let page1 = store.records(&q(Some("a"), 0, 2)).await.unwrap();
    let page2 = store.records(&q(Some("a"), page1[1].seq, 2)).await.unwrap();
    assert_eq!(page1.len(), 2);
    assert_eq!(page2.len(), 1);
    assert!(page2[0].seq > page1[1].seq);
    assert!(store
        .records(&RecordQuery {
            purpose: ConsentPurpose::PartnerSharing,
            ..q(None, 0, 100)
        })
        .await
        .unwrap()
        .is_empty());
}

pub async fn erasure_removes_subject_and_keeps_audit(store: Arc<dyn Store>) {
    let b = batch(
        "dev",
        "key-1",
        vec![
            record("gone", "r1", "a"),
            record("gone", "r2", "a"),
            record("kept", "r3", "a"),
        ],
        ALL,
    );
    store.commit_batch(&b, &answer).await.unwrap();
    let c = store
        .erase_subject(&erasure("gone", "d-gone", Some("proof-of-gone"), "audit-1"))
        .await
        .unwrap();
    assert_eq!(
        (c.records, c.labels, c.batches),
        (2, 2, 0),
        "the batch still holds `kept`"
    );
    assert_eq!(c.object_keys, vec!["raw/d-gone/dev-key-1".to_string()]);
    let left = store
        .records(&RecordQuery {
            study: None,
            purpose: ConsentPurpose::Research,
            after_seq: 0,
            limit: 100,
        })
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].record.subject, "kept");
    assert_eq!(store.counts().await.unwrap().archive_refs, 1);
    let audit = store.audit_entries().await.unwrap();
    assert_eq!(
        audit,
        vec![AuditEntry {
            audit_id: "audit-1".into(),
            at: 5,
            records_deleted: 2,
            labels_deleted: 2,
            objects_deleted: 1
        }]
    );
    let again = store
        .erase_subject(&ErasureWrite {
            at: 6,
            ..erasure("gone", "d-gone", Some("proof-of-gone"), "audit-2")
        })
        .await
        .unwrap();
    assert_eq!(
        (again.records, again.labels, again.object_keys.len()),
        (0, 0, 0)
    );
}

pub async fn models_roundtrip_and_rollout(store: Arc<dyn Store>) {
    let row = ModelRow {
        name: "m".into(),
        version: "1.0.0".into(),
        signed_manifest: "{}".into(),
        artifact_key: "models/m/1.0.0.onnx".into(),
        rollout_percent: 10,
        created_at: 3,
    };
    store.insert_model(&row).await.unwrap();
    assert!(matches!(
        store.insert_model(&row).await,
        Err(StoreError::Conflict)
    ));
    store.set_rollout("m", "1.0.0", 100).await.unwrap();
    assert!(matches!(
        store.set_rollout("m", "9.9.9", 1).await,
        Err(StoreError::NotFound)
    ));
    let got = store.models("m").await.unwrap();
    assert_eq!(
        got,
        vec![ModelRow {
            rollout_percent: 100,
            ..row
        }]
    );
    assert!(store.models("other").await.unwrap().is_empty());
}

pub async fn partner_keys_roundtrip(store: Arc<dyn Store>) {
    let key = PartnerKey {
        key_id: "pk1".into(),
        scopes: PartnerScopes {
            studies: vec!["a".into()],
            features: vec!["hr_mean".into()],
            records: false,
        },
        expires_at: 100,
    };
    store.insert_partner_key(&key, "h1", 1).await.unwrap();
    assert_eq!(store.partner_key("h1", 2).await.unwrap(), Some(key.clone()));
    assert_eq!(store.partner_key("h2", 2).await.unwrap(), None);
    assert!(matches!(
        store.insert_partner_key(&key, "h3", 1).await,
        Err(StoreError::Conflict)
    ));
}

pub async fn subjects_bind_to_their_first_proof(store: Arc<dyn Store>) {
    let a = batch("dev-a", "key-a", vec![record("s", "r1", "x")], ALL);
    store.commit_batch(&a, &answer).await.unwrap();
    let mine = SubjectProof {
        subject_digest: "d-s".into(),
        proof_hash: "proof-of-s".into(),
    };
    let theirs = SubjectProof {
        proof_hash: "another-proof".into(),
        ..mine.clone()
    };
    assert!(!store
        .proof_mismatch(std::slice::from_ref(&mine))
        .await
        .unwrap());
    assert!(store
        .proof_mismatch(std::slice::from_ref(&theirs))
        .await
        .unwrap());
    let before = store.counts().await.unwrap();
    let mut b = batch(
        "dev-b",
        "key-b",
        vec![record("s", "r2", "x"), record("t", "r3", "x")],
        ALL,
    );
    b.subjects[0].proof_hash = "another-proof".into();
    assert!(matches!(
        store.commit_batch(&b, &answer).await,
        Err(StoreError::Forbidden)
    ));
    assert_eq!(
        store.counts().await.unwrap(),
        before,
        "nothing of the batch was written"
    );
    // `t` was not bound by the refused batch: its own proof still binds it.
    let t = batch("dev-b", "key-t", vec![record("t", "r3", "x")], ALL);
    store.commit_batch(&t, &answer).await.unwrap();
    // The same proof from another device (a reinstall) is the owner.
    let again = batch("dev-c", "key-c", vec![record("s", "r4", "x")], ALL);
    assert!(matches!(
        store.commit_batch(&again, &answer).await.unwrap(),
        CommitOutcome::Committed(_)
    ));
}

pub async fn erasure_needs_the_bound_proof_and_drops_emptied_batches(store: Arc<dyn Store>) {
    let b = batch(
        "dev",
        "key-1",
        vec![record("s", "r1", "x"), record("s", "r2", "x")],
        ALL,
    );
    store.commit_batch(&b, &answer).await.unwrap();
    let before = store.counts().await.unwrap();
    for wrong in [None, Some("another-proof")] {
        assert!(matches!(
            store
                .erase_subject(&erasure("s", "d-s", wrong, "audit-x"))
                .await,
            Err(StoreError::Forbidden)
        ));
    }
    assert_eq!(store.counts().await.unwrap(), before);
    assert!(store.audit_entries().await.unwrap().is_empty());
    let c = store
        .erase_subject(&erasure("s", "d-s", Some("proof-of-s"), "audit-1"))
        .await
        .unwrap();
    assert_eq!((c.records, c.labels, c.batches), (2, 2, 1));
    let after = store.counts().await.unwrap();
    assert_eq!(
        (
            after.batches,
            after.records,
            after.labels,
            after.idempotency,
            after.archive_refs
        ),
        (0, 0, 0, 0, 0),
        "the subject's batch and idempotency record went with it"
    );
    assert!(store
        .idempotent_answer("dev", "key-1")
        .await
        .unwrap()
        .is_none());
    // An unbound subject (never uploaded, or uploaded before bindings existed) needs no proof.
    store
        .erase_subject(&erasure("never", "d-never", None, "audit-2"))
        .await
        .unwrap();
}

pub async fn revoked_and_expired_credentials_are_refused(store: Arc<dyn Store>) {
    store
        .insert_device("dev-a", "hash-a", 1, 1000)
        .await
        .unwrap();
    assert!(store
        .device_by_credential("hash-a", 999)
        .await
        .unwrap()
        .is_some());
    assert!(
        store
            .device_by_credential("hash-a", 1000)
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    store.revoke_device("dev-a", 5).await.unwrap();
    assert!(
        store
            .device_by_credential("hash-a", 6)
            .await
            .unwrap()
            .is_none(),
        "revoked"
    );
    assert!(matches!(
        store.revoke_device("nope", 5).await,
        Err(StoreError::NotFound)
    ));
    let key = PartnerKey {
        key_id: "pk".into(),
        scopes: PartnerScopes {
            studies: vec!["a".into()],
            features: vec!["sqi".into()],
            records: true,
        },
        expires_at: 1000,
    };
    store.insert_partner_key(&key, "kh", 1).await.unwrap();
    assert!(
        store.partner_key("kh", 1000).await.unwrap().is_none(),
        "expired"
    );
    assert!(store.partner_key("kh", 10).await.unwrap().is_some());
    store.revoke_partner_key("pk", 11).await.unwrap();
    assert!(
        store.partner_key("kh", 12).await.unwrap().is_none(),
        "revoked"
    );
    assert!(matches!(
        store.revoke_partner_key("nope", 5).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn idempotency_records_are_purged_after_the_window(store: Arc<dyn Store>) {
    let b = batch("dev", "key-1", vec![record("s", "r1", "x")], ALL);
    store.commit_batch(&b, &answer).await.unwrap();
    assert_eq!(store.purge_idempotency(b.received_at).await.unwrap(), 0);
    assert_eq!(store.purge_idempotency(b.received_at + 1).await.unwrap(), 1);
    let c = store.counts().await.unwrap();
    assert_eq!((c.idempotency, c.batches, c.records), (0, 1, 1));
}

pub async fn refusals_are_audited(store: Arc<dyn Store>) {
    let r = RefusalEntry {
        audit_id: "r1".into(),
        at: 3,
        device_id: "dev-b".into(),
        action: "erasure".into(),
    };
    store.insert_refusal(&r).await.unwrap();
    assert_eq!(store.refusals().await.unwrap(), vec![r]);
}
