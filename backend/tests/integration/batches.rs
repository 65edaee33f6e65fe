//! `POST /v1/batches` and enrollment, on both stores: acceptance, idempotency, and every
//! refusal leaving the store unchanged.

use axum::http::StatusCode;
use vitalcore_protocol::BatchAck;

use crate::common::*;

on_both!(
    accepts_gzip_and_zstd_batches,
    duplicate_key_gets_the_same_answer_and_stores_nothing,
    reused_key_with_other_content_is_refused,
    bad_input_is_refused_and_nothing_is_stored,
    enrollment_needs_the_app_token_and_stores_only_a_hash,
);

async fn accepts_gzip_and_zstd_batches(backend: Backend) {
    let app = TestApp::new(backend).await;
    let dev = app.enroll().await;
    let b = sample_batch("key-gzip-0000000001", "subj-a", 100);
    let (status, _, body) = app
        .post_batch(&dev.credential, "gzip", gzip(&body_json(&b)))
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let ack: BatchAck = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (ack.records_stored, ack.records_duplicate, ack.labels_stored),
        (100, 0, 100)
    );

    let b2 = sample_batch("key-zstd-0000000002", "subj-b", 3);
    let (status, _, body) = app
        .post_batch(&dev.credential, "zstd", zstd(&body_json(&b2)))
        .await;
    assert_eq!(status, StatusCode::OK);
    let ack: BatchAck = serde_json::from_slice(&body).unwrap();
    assert_eq!(ack.records_stored, 3);

    let c = app.counts().await;
    assert_eq!(
        (c.batches, c.records, c.labels, c.idempotency),
        (2, 103, 103, 2)
    );
    assert_eq!(
        c.archive_refs, 2,
        "one archived object per subject per batch"
    );
    let archived = app.state.archive.list("raw/").await.unwrap();
    assert_eq!(archived.len(), 2);
}

async fn duplicate_key_gets_the_same_answer_and_stores_nothing(backend: Backend) {
    let app = TestApp::new(backend).await;
    let dev = app.enroll().await;
    let b = sample_batch("key-dup-00000000001", "subj-a", 10);
    let (s1, h1, first) = app
        .post_batch(&dev.credential, "gzip", gzip(&body_json(&b)))
        .await;
    assert_eq!(s1, StatusCode::OK);
    assert!(h1.get("idempotent-replayed").is_none());
    let after_first = app.counts().await;
    // Same batch, other compression: same decompressed bytes, same answer.
    let (s2, h2, second) = app
        .post_batch(&dev.credential, "zstd", zstd(&body_json(&b)))
        .await;
    assert_eq!(s2, StatusCode::OK);
    assert_eq!(second, first, "byte-identical answer");
    assert_eq!(h2.get("idempotent-replayed").unwrap(), "true");
    assert_eq!(app.counts().await, after_first);
    assert_eq!(app.state.archive.list("raw/").await.unwrap().len(), 1);

    // Another device may use the same key string: keys are per device.
    let other = app.enroll().await;
    let b_other = sample_batch("key-dup-00000000001", "subj-z", 1);
    let (s3, _, _) = app
        .post_batch(&other.credential, "gzip", gzip(&body_json(&b_other)))
        .await;
    assert_eq!(s3, StatusCode::OK);
    assert_eq!(app.counts().await.batches, 2);
}

async fn reused_key_with_other_content_is_refused(backend: Backend) {
    let app = TestApp::new(backend).await;
    let dev = app.enroll().await;
    let b = sample_batch("key-reuse-000000001", "subj-a", 2);
    assert_eq!(
        app.post_batch(&dev.credential, "gzip", gzip(&body_json(&b)))
            .await
            .0,
        StatusCode::OK
    );
    let before = app.counts().await;
    let changed = sample_batch("key-reuse-000000001", "subj-a", 3);
    let (status, _, body) = app
        .post_batch(&dev.credential, "gzip", gzip(&body_json(&changed)))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(String::from_utf8_lossy(&body).contains("idempotency_key_reused"));
    assert_eq!(app.counts().await, before);
}

async fn bad_input_is_refused_and_nothing_is_stored(backend: Backend) {
    let app = TestApp::with_config(backend, |c| {
        c.max_body_bytes = 64 << 10;
        c.max_batch_bytes = 256 << 10;
        c.max_records_per_batch = 50;
    })
    .await;
    let dev = app.enroll().await;
    let good = with_proofs(sample_batch("key-good-0000000001", "subj-a", 2));
    let json = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = serde_json::to_value(&good).unwrap();
        f(&mut v);
        serde_json::to_vec(&v).unwrap()
    };
    // A gzip bomb: 32 MiB of spaces inside a ~32 KiB body.
    let bomb = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut e, &vec![b' '; 32 << 20]).unwrap();
        e.finish().unwrap()
    };
    assert!(
        bomb.len() < 64 << 10,
        "bomb must pass the body limit to test the decompression cap"
    );
    let random_big: Vec<u8> = (0..(100u32 << 10))
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let cases: Vec<(&str, &str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "malformed json",
            "gzip",
            gzip(b"{\"schema\":1,"),
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "not json at all",
            "zstd",
            zstd(b"\x00\x01garbage"),
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "wrong shape",
            "gzip",
            gzip(br#"{"schema":1,"records":"nope"}"#),
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "corrupt gzip",
            "gzip",
            b"\x1f\x8b\x08\x00garbage".to_vec(),
            StatusCode::BAD_REQUEST,
            "corrupt_compression",
        ),
        (
            "not compressed",
            "identity",
            body_json(&good),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_encoding",
        ),
        (
            "compression bomb",
            "gzip",
            bomb,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            "oversized body",
            "gzip",
            random_big,
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            "unknown schema",
            "gzip",
            gzip(&json(&|v| v["schema"] = 2.into())),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_schema",
        ),
        (
            "future schema shape",
            "gzip",
            gzip(br#"{"schema":7,"whatever":[1,2]}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unsupported_schema",
        ),
        (
            "other region",
            "gzip",
            gzip(&json(&|v| v["region"] = "us".into())),
            StatusCode::MISDIRECTED_REQUEST,
            "wrong_region",
        ),
        (
            "unknown region",
            "gzip",
            gzip(&json(&|v| v["region"] = "mars".into())),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            "no consent",
            "gzip",
            gzip(&json(&|v| v["consent"] = serde_json::json!([]))),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            "unknown purpose",
            "gzip",
            gzip(&json(&|v| v["consent"] = serde_json::json!(["marketing"]))),
            StatusCode::BAD_REQUEST,
            "malformed",
        ),
        (
            "short key",
            "gzip",
            gzip(&json(&|v| v["idempotency_key"] = "k1".into())),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            "quality out of range",
            "gzip",
            gzip(&json(&|v| v["records"][0]["quality"] = 7.into())),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            "repeated record",
            "gzip",
            gzip(&json(&|v| v["records"][1]["record_id"] = "r0".into())),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
        ),
        (
            "too many records",
            "gzip",
            gzip(&body_json(&sample_batch("key-many-0000000001", "s", 51))),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
    ];
    let before = app.counts().await;
    for (what, enc, body, want, code) in cases {
        let (status, headers, resp) = app.post_batch(&dev.credential, enc, body).await;
        let text = String::from_utf8_lossy(&resp);
        assert_eq!(status, want, "{what}: {text}");
        assert!(
            text.contains(&format!("\"error\":\"{code}\"")),
            "{what}: {text}"
        );
        assert!(
            headers.get("retry-after").is_none(),
            "{what}: client errors are final"
        );
        assert_eq!(app.counts().await, before, "{what}: nothing stored");
    }
    // Forged and missing credentials.
    for cred in ["vcd_forged", ""] {
        let (status, _, _) = app.post_batch(cred, "gzip", gzip(&body_json(&good))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(app.counts().await, before);
    assert!(
        app.state.archive.list("raw/").await.unwrap().is_empty(),
        "nothing archived"
    );
    // The good batch still goes through afterwards.
    let (status, _, _) = app
        .post_batch(&dev.credential, "gzip", gzip(&body_json(&good)))
        .await;
    assert_eq!(status, StatusCode::OK);
}

async fn enrollment_needs_the_app_token_and_stores_only_a_hash(backend: Backend) {
    let app = TestApp::new(backend).await;
    let (status, _, _) = app
        .send(json_post(
            "/v1/enroll",
            None,
            &serde_json::json!({ "enrollment_token": "wrong" }),
        ))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = app
        .send(json_post(
            "/v1/enroll",
            None,
            &serde_json::json!({ "nope": 1 }),
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(app.counts().await.devices, 0);
    let a = app.enroll().await;
    let b = app.enroll().await;
    assert_ne!(a.device_id, b.device_id);
    assert_ne!(a.credential, b.credential);
    assert_eq!(app.counts().await.devices, 2);
    // The credential itself is nowhere in the store; its hash is.
    let hash = vitalcore_server::auth::sha256_hex(a.credential.as_bytes());
    assert_eq!(
        app.state
            .store
            .device_by_credential(&hash, vitalcore_server::now_secs())
            .await
            .unwrap(),
        Some(a.device_id.clone())
    );
    assert_eq!(
        app.state
            .store
            .device_by_credential(&a.credential, vitalcore_server::now_secs())
            .await
            .unwrap(),
        None
    );
}
