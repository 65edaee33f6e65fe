//! Erasure, training export and the partner API.

use arrow_array::{Array, Float64Array, StringArray};
use axum::http::StatusCode;
use vitalcore_protocol::{ConsentPurpose, ErasureReceipt};
use vitalcore_server::storage::AuditEntry;

use crate::common::*;

fn read_arrow(bytes: &[u8]) -> Vec<arrow_array::RecordBatch> {
    arrow_ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes.to_vec()), None)
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

fn column<'a, T: 'static>(b: &'a arrow_array::RecordBatch, name: &str) -> &'a T {
    b.column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_removes_rows_and_objects_and_leaves_an_anonymous_audit() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let app = TestApp::new(backend).await;
        let dev = app.enroll().await;
        let mut b = sample_batch("key-erase-000000001", "subject-gone", 4);
        b.records
            .extend(sample_batch("x", "subject-kept", 2).records);
        assert_eq!(
            app.post_batch(&dev.credential, "gzip", gzip(&body_json(&b)))
                .await
                .0,
            StatusCode::OK
        );
        let b2 = sample_batch("key-erase-000000002", "subject-gone", 1);
        let mut b2 = b2;
        b2.records[0].record_id = "later".into();
        b2.labels[0].record_id = "later".into();
        assert_eq!(
            app.post_batch(&dev.credential, "zstd", zstd(&body_json(&b2)))
                .await
                .0,
            StatusCode::OK
        );
        let gone_digest = vitalcore_server::auth::sha256_hex(b"subject-gone");
        assert_eq!(
            app.state
                .archive
                .list(&format!("raw/{gone_digest}/"))
                .await
                .unwrap()
                .len(),
            2
        );
        // An orphan left by a crash between archive write and commit is swept too.
        app.state
            .archive
            .put(
                &format!("raw/{gone_digest}/orphan.json.zst"),
                bytes::Bytes::from_static(b"x"),
            )
            .await
            .unwrap();

        let (s, _, _) = app
            .send(json_post(
                "/v1/erasure",
                None,
                &serde_json::json!({ "subject": "subject-gone" }),
            ))
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
        let (s, _, body) = app
            .send(json_post(
                "/v1/erasure",
                Some(&dev.credential),
                &erasure_body("subject-gone"),
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let receipt: ErasureReceipt = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (
                receipt.records_deleted,
                receipt.labels_deleted,
                receipt.objects_deleted
            ),
            (5, 5, 3)
        );
        assert!(app
            .state
            .archive
            .list(&format!("raw/{gone_digest}/"))
            .await
            .unwrap()
            .is_empty());
        let kept_digest = vitalcore_server::auth::sha256_hex(b"subject-kept");
        assert_eq!(
            app.state
                .archive
                .list(&format!("raw/{kept_digest}/"))
                .await
                .unwrap()
                .len(),
            1
        );

        // Export excludes the subject.
        let (s, _, bytes) = app.send(get("/v1/admin/export", Some(ADMIN_TOKEN))).await;
        assert_eq!(s, StatusCode::OK);
        let batches = read_arrow(&bytes);
        let subjects: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let c = column::<StringArray>(b, "subject");
                (0..c.len())
                    .map(|i| c.value(i).to_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(subjects, vec!["subject-kept".to_string(); 2]);

        // The audit keeps counts, not the subject.
        let (s, _, body) = app
            .send(get("/v1/admin/erasure-audit", Some(ADMIN_TOKEN)))
            .await;
        assert_eq!(s, StatusCode::OK);
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains("subject-gone") && !text.contains(&gone_digest),
            "{text}"
        );
        let audit: Vec<AuditEntry> = serde_json::from_slice(&body).unwrap();
        assert_eq!(audit.len(), 1);
        // The audit is written in the erasure transaction: it counts the referenced objects;
        // the orphan swept afterwards is reported in the receipt.
        assert_eq!(
            (
                audit[0].records_deleted,
                audit[0].labels_deleted,
                audit[0].objects_deleted
            ),
            (5, 5, 2)
        );
    }
}

#[tokio::test]
async fn export_is_arrow_with_labels_and_only_training_consent() {
    let app = TestApp::new(Backend::Sqlite).await;
    let dev = app.enroll().await;
    let train = sample_batch("key-export-00000001", "s1", 3);
    let mut research_only = sample_batch("key-export-00000002", "s2", 2);
    research_only.consent = vec![ConsentPurpose::Research];
    research_only.labels.clear();
    research_only.records[0]
        .features
        .insert("sdnn".into(), 55.0);
    for b in [&train, &research_only] {
        assert_eq!(
            app.post_batch(&dev.credential, "gzip", gzip(&body_json(b)))
                .await
                .0,
            StatusCode::OK
        );
    }
    let (s, _, _) = app.send(get("/v1/admin/export", None)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, h, bytes) = app
        .send(get("/v1/admin/export?study=rhythm", Some(ADMIN_TOKEN)))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        h.get("content-type").unwrap(),
        "application/vnd.apache.arrow.stream"
    );
    let batches = read_arrow(&bytes);
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(
        rows, 3,
        "research-only records are not exported for training"
    );
    let b = &batches[0];
    let hr = column::<Float64Array>(b, "f_hr_mean");
    let label = column::<StringArray>(b, "label");
    let ids = column::<StringArray>(b, "record_id");
    for i in 0..3 {
        let want = &train
            .records
            .iter()
            .find(|r| r.record_id == ids.value(i))
            .unwrap();
        assert_eq!(hr.value(i), want.features["hr_mean"]);
        assert_eq!(label.value(i), "regular");
    }
    assert!(
        b.column_by_name("f_sdnn").is_none(),
        "columns come from exported rows only"
    );
    let (s, _, bytes) = app
        .send(get("/v1/admin/export?study=other", Some(ADMIN_TOKEN)))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        read_arrow(&bytes)
            .iter()
            .map(|b| b.num_rows())
            .sum::<usize>(),
        0
    );
}

async fn partner_key(app: &TestApp, scopes: serde_json::Value) -> String {
    let (s, _, body) = app
        .send(json_post(
            "/v1/admin/partner-keys",
            Some(ADMIN_TOKEN),
            &scopes,
        ))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["api_key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn partner_api_enforces_scopes_pagination_and_min_group_size() {
    let app = TestApp::with_config(Backend::Sqlite, |c| c.min_group_size = 3).await;
    let dev = app.enroll().await;
    // 3 subjects in age band 40-49 and 1 in 70-79, all sharing with partners; 1 not sharing.
    for (i, (subject, band)) in [
        ("p1", "40-49"),
        ("p2", "40-49"),
        ("p3", "40-49"),
        ("p4", "70-79"),
    ]
    .iter()
    .enumerate()
    {
        let mut b = sample_batch(&format!("key-partner-{i:08}"), subject, 2);
        for r in &mut b.records {
            r.age_band = Some((*band).into());
        }
        assert_eq!(
            app.post_batch(&dev.credential, "gzip", gzip(&body_json(&b)))
                .await
                .0,
            StatusCode::OK
        );
    }
    let mut private = sample_batch("key-partner-private", "p5", 2);
    private.consent = vec![ConsentPurpose::Research, ConsentPurpose::ModelTraining];
    assert_eq!(
        app.post_batch(&dev.credential, "gzip", gzip(&body_json(&private)))
            .await
            .0,
        StatusCode::OK
    );

    let records_key = partner_key(
        &app,
        serde_json::json!({ "studies": ["rhythm"], "features": ["hr_mean"], "records": true }),
    )
    .await;
    let agg_key = partner_key(
        &app,
        serde_json::json!({ "studies": ["rhythm"], "features": ["hr_mean"], "records": false }),
    )
    .await;

    // Pagination through all shared records; only scoped features; no raw subject ids.
    let mut cursor = 0;
    let mut seen = Vec::new();
    loop {
        let (s, _, body) = app
            .send(get(
                &format!("/v1/partner/records?study=rhythm&limit=3&cursor={cursor}"),
                Some(&records_key),
            ))
            .await;
        assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let text = String::from_utf8_lossy(&body).to_string();
        assert!(
            !text.contains("rmssd") && !text.contains("\"p1\""),
            "{text}"
        );
        let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let records = page["records"].as_array().unwrap();
        assert!(records.len() <= 3);
        seen.extend(records.iter().cloned());
        match page["next_cursor"].as_i64() {
            Some(c) => cursor = c,
            None => break,
        }
    }
    assert_eq!(
        seen.len(),
        8,
        "4 sharing subjects x 2 records; the non-sharing subject is absent"
    );

    // Aggregates-only key cannot read records; out-of-scope study/feature refused.
    assert_eq!(
        app.send(get("/v1/partner/records?study=rhythm", Some(&agg_key)))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.send(get("/v1/partner/records?study=other", Some(&records_key)))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.send(get(
            "/v1/partner/aggregates?study=rhythm&feature=rmssd&group_by=kind",
            Some(&agg_key)
        ))
        .await
        .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.send(get("/v1/partner/records?study=rhythm", Some("vcp_forged")))
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );

    let (s, _, body) = app
        .send(get(
            "/v1/partner/aggregates?study=rhythm&feature=hr_mean&group_by=age_band",
            Some(&agg_key),
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    let agg: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let groups = agg["groups"].as_array().unwrap();
    assert_eq!(
        groups.len(),
        1,
        "the 70-79 group has 1 subject < k=3 and is withheld: {agg}"
    );
    assert_eq!(groups[0]["group"], "40-49");
    assert_eq!(groups[0]["subjects"], 3);
    assert_eq!(groups[0]["records"], 6);
    // hr values are 60 and 61 for each subject.
    assert_eq!(groups[0]["mean"], 60.5);
    assert_eq!(agg["suppressed_groups"], 1);
    assert_eq!(agg["min_group_size"], 3);
}
