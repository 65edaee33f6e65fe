//! The server's trust boundary (issue 14), on both stores: subjects belong to the proof of
//! their first accepted upload, strict ingest, abuse limits, expiring and revocable
//! credentials, the admin plane on its own listener, and erasure that erases.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use vitalcore_protocol::{BatchAck, ConsentPurpose, ErasureReceipt, FeatureRecord, SyncBatch};
use vitalcore_server::storage::{RecordQuery, RefusalEntry};

use crate::common::*;

on_both!(
    another_device_cannot_write_label_or_erase_a_subject,
    the_owner_erases_after_a_reinstall,
    junk_feature_names_and_out_of_range_values_store_nothing,
    vocabularies_are_enforced_and_refusals_name_the_field_not_the_value,
    every_subject_needs_its_proof,
    enrollment_bursts_are_limited_per_client_ip,
    device_requests_are_limited_per_credential,
    one_device_cannot_take_every_ingest_slot,
    revoked_and_expired_credentials_are_refused_at_once,
    erasure_removes_the_subjects_batches_and_idempotency_records,
    batches_name_no_device_and_idempotency_records_expire,
);

fn stored_subjects(records: &[vitalcore_server::storage::StoredRecord]) -> Vec<String> {
    let mut s: Vec<String> = records.iter().map(|r| r.record.subject.clone()).collect();
    s.sort();
    s.dedup();
    s
}

async fn all_records(app: &TestApp) -> Vec<vitalcore_server::storage::StoredRecord> {
    app.state
        .store
        .records(&RecordQuery {
            study: None,
            purpose: ConsentPurpose::Research,
            after_seq: 0,
            limit: 100_000,
        })
        .await
        .unwrap()
}

async fn post(app: &TestApp, credential: &str, b: &SyncBatch) -> (StatusCode, Vec<u8>) {
    let (s, _, body) = app
        .post_batch(credential, "gzip", gzip(&serde_json::to_vec(b).unwrap()))
        .await;
    (s, body)
}

async fn erase(app: &TestApp, credential: &str, body: serde_json::Value) -> (StatusCode, Vec<u8>) {
    let (s, _, b) = app
        .send(json_post("/v1/erasure", Some(credential), &body))
        .await;
    (s, b)
}

async fn refusals(app: &TestApp) -> Vec<RefusalEntry> {
    app.state.store.refusals().await.unwrap()
}

async fn another_device_cannot_write_label_or_erase_a_subject(backend: Backend) {
    let app = TestApp::new(backend).await;
    let a = app.enroll().await;
    let b = app.enroll().await;
    let owned = with_proofs(sample_batch("key-owner-00000001", "subject-of-a", 3));
    assert_eq!(post(&app, &a.credential, &owned).await.0, StatusCode::OK);
    let before = app.counts().await;
    let records_before = all_records(&app).await;

    // B knows A's pseudonym but not its proof: its own proof, or none, gets nothing done.
    let b_proof = "b".repeat(64);
    let mut write = sample_batch("key-intruder-0000001", "subject-of-a", 1);
    write.records[0].record_id = "planted".into();
    write.labels.clear();
    write
        .subject_proofs
        .insert("subject-of-a".into(), b_proof.clone());
    let (s, body) = post(&app, &b.credential, &write).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "{}",
        String::from_utf8_lossy(&body)
    );
    assert!(!String::from_utf8_lossy(&body).contains("subject-of-a"));

    let mut label = sample_batch("key-intruder-0000002", "subject-of-a", 1);
    label.records.clear();
    label.labels[0].record_id = "r0".into();
    label.labels[0].label = "irregular".into();
    label
        .subject_proofs
        .insert("subject-of-a".into(), b_proof.clone());
    assert_eq!(
        post(&app, &b.credential, &label).await.0,
        StatusCode::FORBIDDEN
    );

    for body in [
        serde_json::json!({ "subject": "subject-of-a" }),
        serde_json::json!({ "subject": "subject-of-a", "proof": b_proof }),
    ] {
        let (s, _) = erase(&app, &b.credential, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    // Nothing changed: rows, labels, archive, audit of erasures.
    assert_eq!(app.counts().await, before);
    assert_eq!(all_records(&app).await, records_before);
    assert_eq!(app.state.archive.list("raw/").await.unwrap().len(), 1);
    assert!(app.state.store.audit_entries().await.unwrap().is_empty());
    // Each refusal is audited with the device and the action, never the subject.
    let audit = refusals(&app).await;
    let mut actions: Vec<&str> = audit.iter().map(|r| r.action.as_str()).collect();
    actions.sort_unstable();
    assert_eq!(actions, ["batch", "batch", "erasure", "erasure"]);
    assert!(audit.iter().all(|r| r.device_id == b.device_id));
    let (s, _, body) = app
        .send(get("/v1/admin/refusal-audit", Some(ADMIN_TOKEN)))
        .await;
    assert_eq!(s, StatusCode::OK);
    let text = String::from_utf8_lossy(&body);
    let digest = vitalcore_server::auth::sha256_hex(b"subject-of-a");
    assert!(
        !text.contains("subject-of-a") && !text.contains(&digest),
        "{text}"
    );
    // B's own subjects are B's: writing them works.
    let own = with_proofs(sample_batch("key-b-own-00000001", "subject-of-b", 1));
    assert_eq!(post(&app, &b.credential, &own).await.0, StatusCode::OK);
}

async fn the_owner_erases_after_a_reinstall(backend: Backend) {
    let app = TestApp::new(backend).await;
    let first = app.enroll().await;
    let b = with_proofs(sample_batch("key-before-reinst1", "subject-r", 4));
    assert_eq!(post(&app, &first.credential, &b).await.0, StatusCode::OK);
    // Reinstall: the old credential is gone (revoked here, as an operator would after a lost
    // phone); the app enrolls again and its restored pseudonym key gives the same proof.
    let (s, _, _) = app
        .send(json_post(
            &format!("/v1/admin/devices/{}/revoke", first.device_id),
            Some(ADMIN_TOKEN),
            &serde_json::json!({}),
        ))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let again = app.enroll().await;
    assert_ne!(again.device_id, first.device_id);
    // It can still write its subject...
    let mut more = sample_batch("key-after-reinst01", "subject-r", 1);
    more.records[0].record_id = "after".into();
    more.labels[0].record_id = "after".into();
    assert_eq!(
        post(&app, &again.credential, &with_proofs(more)).await.0,
        StatusCode::OK
    );
    // ...and erase it.
    let (s, body) = erase(&app, &again.credential, erasure_body("subject-r")).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let receipt: ErasureReceipt = serde_json::from_slice(&body).unwrap();
    assert_eq!((receipt.records_deleted, receipt.labels_deleted), (5, 5));
    assert!(all_records(&app).await.is_empty());
    assert!(refusals(&app).await.is_empty());
}

fn junk_record(i: usize, names: impl Iterator<Item = String>) -> FeatureRecord {
    let mut r = record("subject-junk", &format!("j{i}"), "rhythm", 61.0);
    for n in names {
        r.features.insert(n, 1.0);
    }
    r
}

async fn assert_refused_unchanged(app: &TestApp, credential: &str, b: &SyncBatch, field: &str) {
    let before = app.counts().await;
    let (s, body) = post(app, credential, b).await;
    let text = String::from_utf8_lossy(&body).into_owned();
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{field}: {text}");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["field"], field, "{text}");
    assert_eq!(
        app.counts().await,
        before,
        "{field}: refused, yet something was stored"
    );
    assert!(app.state.archive.list("raw/").await.unwrap().is_empty() || before.archive_refs > 0);
}

async fn junk_feature_names_and_out_of_range_values_store_nothing(backend: Backend) {
    let app = TestApp::new(backend).await;
    let dev = app.enroll().await;
    // One name outside feature set v1.
    let mut one = sample_batch("key-junk-name-00001", "subject-junk", 1);
    one.records[0]
        .features
        .insert("patient_ssn_078051120".into(), 1.0);
    let one = with_proofs(one);
    assert_refused_unchanged(&app, &dev.credential, &one, "records[].features").await;
    let (_, body) = post(&app, &dev.credential, &one).await;
    assert!(
        !String::from_utf8_lossy(&body).contains("patient_ssn"),
        "the value is not echoed"
    );
    // 100 records carrying 2,000 distinct junk names between them (20 each).
    let mut many = sample_batch("key-junk-many-00001", "subject-junk", 0);
    many.records = (0..100)
        .map(|i| junk_record(i, (0..20).map(move |k| format!("junk_{i}_{k}"))))
        .collect();
    assert_refused_unchanged(
        &app,
        &dev.credential,
        &with_proofs(many),
        "records[].features",
    )
    .await;
    // Values that are not measurements: an identifier in hr_mean, 1e300, a negative beat count.
    for (name, v) in [
        ("hr_mean", 78_051_120.0),
        ("rmssd", 1e300),
        ("beat_count", -1e9),
    ] {
        let mut b = sample_batch("key-junk-value-0001", "subject-junk", 1);
        b.records[0].features.insert(name.into(), v);
        assert_refused_unchanged(&app, &dev.credential, &with_proofs(b), "records[].features")
            .await;
    }
    // A name of another feature set version.
    let mut v2 = sample_batch("key-junk-set-000001", "subject-junk", 1);
    v2.records[0].feature_set = "v2".into();
    assert_refused_unchanged(
        &app,
        &dev.credential,
        &with_proofs(v2),
        "records[].feature_set",
    )
    .await;
    assert!(all_records(&app).await.is_empty());
    assert!(app.state.archive.list("raw/").await.unwrap().is_empty());
    // The export grows no column: nothing was stored. A valid record still goes in.
    let ok = with_proofs(sample_batch("key-junk-valid-0001", "subject-junk", 2));
    assert_eq!(post(&app, &dev.credential, &ok).await.0, StatusCode::OK);
}

type Mutation = Box<dyn Fn(&mut SyncBatch)>;

async fn vocabularies_are_enforced_and_refusals_name_the_field_not_the_value(backend: Backend) {
    let app = TestApp::new(backend).await;
    let dev = app.enroll().await;
    let secret = "John Smith 1970-01-01";
    let cases: Vec<(&str, Mutation)> = vec![
        (
            "records[].kind",
            Box::new(|b| b.records[0].kind = secret.into()),
        ),
        (
            "records[].study",
            Box::new(|b| b.records[0].study = secret.into()),
        ),
        (
            "records[].age_band",
            Box::new(|b| b.records[0].age_band = Some(secret.into())),
        ),
        (
            "records[].age_band",
            Box::new(|b| b.records[0].age_band = Some("41-45".into())),
        ),
        (
            "records[].age_band",
            Box::new(|b| b.records[0].age_band = Some("23".into())),
        ),
        (
            "labels[].label",
            Box::new(|b| b.labels[0].label = secret.into()),
        ),
        (
            "records[].quality",
            Box::new(|b| b.records[0].quality = 7.0),
        ),
        (
            "records[].captured_hour",
            Box::new(|b| b.records[0].captured_hour = i64::MAX / 2),
        ),
        (
            "records[].record_id",
            Box::new(|b| b.records[0].record_id = "x\u{0}y".into()),
        ),
    ];
    for (field, mutate) in cases {
        let mut b = sample_batch("key-vocab-000000001", "subject-v", 2);
        mutate(&mut b);
        let b = with_proofs(b);
        assert_refused_unchanged(&app, &dev.credential, &b, field).await;
        let (_, body) = post(&app, &dev.credential, &b).await;
        assert!(!String::from_utf8_lossy(&body).contains("John"), "{field}");
    }
}

async fn every_subject_needs_its_proof(backend: Backend) {
    let app = TestApp::new(backend).await;
    let dev = app.enroll().await;
    // No proof at all (an SDK older than bindings), a proof for another subject, a malformed
    // proof: refused, nothing stored.
    let plain = sample_batch("key-proof-00000001", "subject-p", 2);
    assert_refused_unchanged(&app, &dev.credential, &plain, "subject_proofs").await;
    let mut other = plain.clone();
    other
        .subject_proofs
        .insert("someone-else".into(), proof("someone-else"));
    assert_refused_unchanged(&app, &dev.credential, &other, "subject_proofs").await;
    let mut short = plain.clone();
    short
        .subject_proofs
        .insert("subject-p".into(), "abc".into());
    assert_refused_unchanged(&app, &dev.credential, &short, "subject_proofs").await;
    let (s, _) = erase(
        &app,
        &dev.credential,
        serde_json::json!({ "subject": "subject-p", "proof": "NOT-HEX" }),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        post(&app, &dev.credential, &with_proofs(plain)).await.0,
        StatusCode::OK
    );
}

fn enroll_from(ip: &str) -> Request<Body> {
    let mut req = json_post(
        "/v1/enroll",
        None,
        &serde_json::json!({ "enrollment_token": ENROLL_TOKEN }),
    );
    let addr: SocketAddr = format!("{ip}:40000").parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    req
}

async fn enrollment_bursts_are_limited_per_client_ip(backend: Backend) {
    let app = TestApp::with_config(backend, |c| {
        c.enroll_burst = 10;
        c.enroll_per_minute = 10;
    })
    .await;
    let mut created = 0;
    let mut limited = 0;
    for _ in 0..300 {
        let (s, h, _) = app.send(enroll_from("203.0.113.9")).await;
        match s {
            StatusCode::CREATED => created += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let secs: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=60).contains(&secs));
                limited += 1;
            }
            other => panic!("{other}"),
        }
    }
    // The burst, plus at most one more that a slow run gave the quota time to replenish.
    assert!(
        (10..=11).contains(&created),
        "{created} enrollments from one IP got through"
    );
    assert_eq!(created + limited, 300);
    assert_eq!(app.counts().await.devices, created);
    // Another client is not held up by the first one's burst.
    assert_eq!(
        app.send(enroll_from("203.0.113.10")).await.0,
        StatusCode::CREATED
    );
    // Guessing tokens is limited the same way.
    let mut guess = json_post(
        "/v1/enroll",
        None,
        &serde_json::json!({ "enrollment_token": "guess" }),
    );
    guess
        .extensions_mut()
        .insert(ConnectInfo("203.0.113.9:1".parse::<SocketAddr>().unwrap()));
    assert_eq!(app.send(guess).await.0, StatusCode::TOO_MANY_REQUESTS);
}

async fn device_requests_are_limited_per_credential(backend: Backend) {
    let app = TestApp::with_config(backend, |c| {
        c.device_burst = 5;
        c.device_per_minute = 1;
    })
    .await;
    let a = app.enroll().await;
    let b = app.enroll().await;
    let mut statuses = Vec::new();
    for i in 0..8 {
        let batch = with_proofs(sample_batch(
            &format!("key-rate-{i:010}"),
            "subject-rate",
            1,
        ));
        let mut batch = batch;
        batch.records[0].record_id = format!("r-{i}");
        batch.labels[0].record_id = format!("r-{i}");
        let (s, h, _) = app
            .post_batch(
                &a.credential,
                "gzip",
                gzip(&serde_json::to_vec(&batch).unwrap()),
            )
            .await;
        if s == StatusCode::TOO_MANY_REQUESTS {
            assert!(h.get("retry-after").is_some());
        }
        statuses.push(s);
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(ok, 5, "{statuses:?}");
    assert_eq!(statuses.last(), Some(&StatusCode::TOO_MANY_REQUESTS));
    // Erasure is a device route too.
    let (s, _) = erase(&app, &a.credential, erasure_body("subject-rate")).await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    // Another device has its own quota.
    let (s, _) = erase(&app, &b.credential, erasure_body("nobody")).await;
    assert_eq!(s, StatusCode::OK);
}

async fn one_device_cannot_take_every_ingest_slot(backend: Backend) {
    let app = TestApp::with_config(backend, |c| {
        c.max_inflight_per_device = 2;
        c.max_inflight_batches = 8;
    })
    .await;
    let greedy = app.enroll().await;
    let other = app.enroll().await;
    // The greedy device has both of its slots busy (two uploads in flight).
    let _s1 = app.state.limits.device_slot(&greedy.device_id, 1).unwrap();
    let _s2 = app.state.limits.device_slot(&greedy.device_id, 1).unwrap();
    let b = with_proofs(sample_batch("key-fair-000000001", "subject-greedy", 1));
    let (s, h, body) = app
        .post_batch(
            &greedy.credential,
            "gzip",
            gzip(&serde_json::to_vec(&b).unwrap()),
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS);
    assert!(h.get("retry-after").is_some());
    assert!(String::from_utf8_lossy(&body).contains("rate_limited"));
    // The process still has slots, and another device gets one.
    let b = with_proofs(sample_batch("key-fair-000000002", "subject-other", 1));
    let (s, _, _) = app
        .post_batch(
            &other.credential,
            "gzip",
            gzip(&serde_json::to_vec(&b).unwrap()),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.counts().await.batches, 1);
}

async fn revoked_and_expired_credentials_are_refused_at_once(backend: Backend) {
    let app = TestApp::with_config(backend, |c| c.device_credential_ttl_secs = 2).await;
    let dev = app.enroll().await;
    let b = with_proofs(sample_batch("key-revoke-0000001", "subject-x", 1));
    assert_eq!(post(&app, &dev.credential, &b).await.0, StatusCode::OK);
    let (s, _, _) = app
        .send(json_post(
            &format!("/v1/admin/devices/{}/revoke", dev.device_id),
            Some(ADMIN_TOKEN),
            &serde_json::json!({}),
        ))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // The very next request, on any route.
    let b2 = with_proofs(sample_batch("key-revoke-0000002", "subject-x", 1));
    assert_eq!(
        post(&app, &dev.credential, &b2).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        erase(&app, &dev.credential, erasure_body("subject-x"))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.send(get("/v1/models/m/manifest", Some(&dev.credential)))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    let (s, _, _) = app
        .send(json_post(
            "/v1/admin/devices/0000/revoke",
            Some(ADMIN_TOKEN),
            &serde_json::json!({}),
        ))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Partner keys: revoked at once; a key may be given a short life.
    let (s, _, body) = app
        .send(json_post(
            "/v1/admin/partner-keys",
            Some(ADMIN_TOKEN),
            &serde_json::json!({ "studies": ["rhythm"], "features": ["hr_mean"], "records": true }),
        ))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let key: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let api_key = key["api_key"].as_str().unwrap().to_owned();
    let page = "/v1/partner/records?study=rhythm";
    assert_eq!(app.send(get(page, Some(&api_key))).await.0, StatusCode::OK);
    let (s, _, _) = app
        .send(json_post(
            &format!(
                "/v1/admin/partner-keys/{}/revoke",
                key["key_id"].as_str().unwrap()
            ),
            Some(ADMIN_TOKEN),
            &serde_json::json!({}),
        ))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        app.send(get(page, Some(&api_key))).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (s, _, _) = app
        .send(json_post(
            "/v1/admin/partner-keys",
            Some(ADMIN_TOKEN),
            &serde_json::json!({ "studies": ["rhythm"], "features": ["hr_mean"], "records": true,
                                 "expires_in_secs": 999_999_999u64 }),
        ))
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "longer than partner_key_ttl_secs"
    );
    let (_, _, body) = app
        .send(json_post(
            "/v1/admin/partner-keys",
            Some(ADMIN_TOKEN),
            &serde_json::json!({ "studies": ["rhythm"], "features": ["hr_mean"], "records": true,
                                 "expires_in_secs": 1 }),
        ))
        .await;
    let short: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let short_key = short["api_key"].as_str().unwrap().to_owned();

    // Expiry: a fresh device's credential lives 2 s here.
    let fresh = app.enroll().await;
    let b3 = with_proofs(sample_batch("key-expire-0000001", "subject-y", 1));
    assert_eq!(post(&app, &fresh.credential, &b3).await.0, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let b4 = with_proofs(sample_batch("key-expire-0000002", "subject-y", 1));
    assert_eq!(
        post(&app, &fresh.credential, &b4).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.send(get(page, Some(&short_key))).await.0,
        StatusCode::UNAUTHORIZED
    );
}

async fn erasure_removes_the_subjects_batches_and_idempotency_records(backend: Backend) {
    let app = TestApp::new(backend).await;
    let dev = app.enroll().await;
    // Two batches of the subject alone, one shared with another subject.
    let only1 = with_proofs(sample_batch("key-erase-only-0001", "subject-e", 3));
    let mut only2 = sample_batch("key-erase-only-0002", "subject-e", 1);
    only2.records[0].record_id = "second".into();
    only2.labels[0].record_id = "second".into();
    let mut shared = sample_batch("key-erase-shared-01", "subject-e", 0);
    shared.records = vec![
        record("subject-e", "shared-e", "rhythm", 70.0),
        record("subject-f", "shared-f", "rhythm", 71.0),
    ];
    for b in [only1, with_proofs(only2), with_proofs(shared)] {
        assert_eq!(post(&app, &dev.credential, &b).await.0, StatusCode::OK);
    }
    let c = app.counts().await;
    assert_eq!((c.batches, c.idempotency, c.records), (3, 3, 6));
    let (s, body) = erase(&app, &dev.credential, erasure_body("subject-e")).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let c = app.counts().await;
    assert_eq!(
        (
            c.batches,
            c.idempotency,
            c.records,
            c.labels,
            c.archive_refs
        ),
        (1, 1, 1, 0, 1),
        "the subject's own batches went with their idempotency records; the shared one stays, \
         detached from the subject"
    );
    assert_eq!(stored_subjects(&all_records(&app).await), ["subject-f"]);
    // The kept batch's answer names no subject.
    let (s, h, body) = app
        .post_batch(
            &dev.credential,
            "gzip",
            gzip(&body_json(&{
                let mut b = sample_batch("key-erase-shared-01", "subject-e", 0);
                b.records = vec![
                    record("subject-e", "shared-e", "rhythm", 70.0),
                    record("subject-f", "shared-f", "rhythm", 71.0),
                ];
                b
            })),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h.get("idempotent-replayed").unwrap(), "true");
    let ack: BatchAck = serde_json::from_slice(&body).unwrap();
    assert_eq!(ack.records_stored, 2);
    assert!(!String::from_utf8_lossy(&body).contains("subject-e"));
}

async fn batches_name_no_device_and_idempotency_records_expire(backend: Backend) {
    let app = TestApp::with_config(backend, |c| c.idempotency_window_secs = 1).await;
    let dev = app.enroll().await;
    let research = with_proofs(sample_batch("key-link-research01", "pseudonym-research", 1));
    let training = with_proofs(sample_batch("key-link-training01", "pseudonym-training", 1));
    let mut ids = Vec::new();
    for b in [&research, &training] {
        let (s, body) = post(&app, &dev.credential, b).await;
        assert_eq!(s, StatusCode::OK);
        ids.push(serde_json::from_slice::<BatchAck>(&body).unwrap().batch_id);
    }
    let derived = |key: &str| {
        vitalcore_server::auth::sha256_hex(format!("{}\0{key}", dev.device_id).as_bytes())[..32]
            .to_owned()
    };
    assert_ne!(
        ids[0],
        derived("key-link-research01"),
        "batch ids are random"
    );
    assert_eq!(app.state.store.purge_idempotency(0).await.unwrap(), 0);
    // Past the window the idempotency records (the only rows naming the device) are purged:
    // the two pseudonyms' batches can no longer be tied to one device.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let n = app
        .state
        .store
        .purge_idempotency(vitalcore_server::now_secs() - 1)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let c = app.counts().await;
    assert_eq!((c.batches, c.idempotency, c.records), (2, 0, 2));
}

/// The admin plane is not on the public router; the SAM template routes public paths only and
/// the container publishes no admin port.
#[tokio::test]
async fn admin_routes_are_only_on_the_admin_listener() {
    let app = TestApp::new(Backend::Sqlite).await;
    let public: std::collections::BTreeSet<_> = vitalcore_server::openapi::public_operations()
        .into_iter()
        .collect();
    for (method, path) in vitalcore_server::openapi::operations() {
        let uri = path
            .replace("{name}", "m")
            .replace("{version}", "1.0.0")
            .replace("{key_id}", "00")
            .replace("{device_id}", "00");
        let req = |auth: bool| {
            let mut r = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .header("content-type", "application/json");
            if auth {
                r = r.header("authorization", format!("Bearer {ADMIN_TOKEN}"));
            }
            r.body(Body::from("{}")).unwrap()
        };
        if public.contains(&(method, path)) {
            assert!(!path.starts_with("/v1/admin/"), "{path}");
        } else {
            assert!(path.starts_with("/v1/admin/"), "{path}");
            // Not even with the admin token: the route does not exist on the public router.
            let (s, _, body) = app.send_public(req(true)).await;
            assert_eq!(
                s,
                StatusCode::NOT_FOUND,
                "{method} {path} on the public router"
            );
            assert!(String::from_utf8_lossy(&body).contains("not_found"));
            // On the admin router it exists and asks for the admin token.
            let (s, _, _) = send_to(&app.admin, req(false)).await;
            assert_eq!(
                s,
                StatusCode::UNAUTHORIZED,
                "{method} {path} on the admin router"
            );
        }
    }
    let template = include_str!("../../deploy/template.yaml");
    let routed: std::collections::BTreeSet<(String, String)> = template
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Path: "))
        .zip(
            template
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Method: ")),
        )
        .map(|(p, m)| (m.to_lowercase(), p.to_owned()))
        .collect();
    let want: std::collections::BTreeSet<(String, String)> = public
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        routed, want,
        "the SAM template routes exactly the public operations"
    );
    assert!(!template.contains("proxy+") && !template.contains("VITALCORE_ADMIN_TOKEN"));
    let docker = include_str!("../../deploy/Dockerfile");
    let expose = docker.lines().find(|l| l.starts_with("EXPOSE")).unwrap();
    assert!(!expose.contains("9091"), "{expose}");
    assert!(docker.contains("\"--admin-listen\", \"127.0.0.1:9091\""));
}

/// After an erasure, none of the subject's id, record ids or values is left anywhere in the
/// SQLite files (main database, WAL, shared memory), and its archived objects are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erased_subject_leaves_no_bytes_in_the_sqlite_files() {
    let app = TestApp::new(Backend::Sqlite).await;
    let dev = app.enroll().await;
    let subject = "canary-subject-5f0c1e";
    let mut b = sample_batch("key-grep-0000000001", subject, 0);
    b.records = (0..50)
        .map(|i| {
            let mut r = record(subject, &format!("canary-rec-{i:03}"), "rhythm", 0.0);
            r.features.clear();
            r.features
                .insert("hr_mean".into(), 123.456_789 + f64::from(i) / 1e7);
            r.features.insert("rmssd".into(), 987.654_321);
            r
        })
        .collect();
    b.labels.clear();
    let mut other = sample_batch("key-grep-0000000002", "kept-subject", 20);
    other.records.iter_mut().for_each(|r| {
        r.features.insert("sdnn".into(), 55.5);
    });
    for batch in [with_proofs(b), with_proofs(other)] {
        assert_eq!(post(&app, &dev.credential, &batch).await.0, StatusCode::OK);
    }
    let files = || {
        ["t.db", "t.db-wal", "t.db-shm"]
            .iter()
            .filter_map(|f| std::fs::read(app.dir.path().join(f)).ok())
            .collect::<Vec<_>>()
    };
    let needles: Vec<Vec<u8>> = vec![
        subject.as_bytes().to_vec(),
        b"canary-rec-0".to_vec(),
        b"123.4567".to_vec(),
        b"987.654321".to_vec(),
    ];
    let found = |bytes: &[Vec<u8>]| -> Vec<String> {
        needles
            .iter()
            .filter(|n| {
                bytes
                    .iter()
                    .any(|f| f.windows(n.len()).any(|w| w == &n[..]))
            })
            .map(|n| String::from_utf8_lossy(n).into_owned())
            .collect()
    };
    assert_eq!(
        found(&files()).len(),
        needles.len(),
        "the canaries are there before"
    );
    let (s, _) = erase(&app, &dev.credential, erasure_body(subject)).await;
    assert_eq!(s, StatusCode::OK);
    let left = found(&files());
    assert!(
        left.is_empty(),
        "after erasure the db files still hold {left:?}"
    );
    let wal = std::fs::metadata(app.dir.path().join("t.db-wal")).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the WAL was checkpointed with TRUNCATE");
    let digest = vitalcore_server::auth::sha256_hex(subject.as_bytes());
    assert!(app
        .state
        .archive
        .list(&format!("raw/{digest}/"))
        .await
        .unwrap()
        .is_empty());
    // The other subject is intact.
    assert_eq!(stored_subjects(&all_records(&app).await), ["kept-subject"]);
}
