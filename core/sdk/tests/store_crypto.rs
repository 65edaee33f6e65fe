//! Encryption at rest: canary scan of the raw files, wrong key, tampering, nonce uniqueness,
//! crypto-shredding, and no personal data in `Debug` or error messages.

mod store_support;

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine as _;
use rusqlite::params;
use store_support::*;
use vitalcore::keys::InMemoryKeyProvider;
use vitalcore::store::{
    crypto::sealed_nonce, ConsentDecision, HistoryQuery, ModelBundle, OutboxDraft, OutcomeLabel,
    Purpose, RawWindow, Store, StoreConfig, StoreError,
};

const T0: i64 = 1_764_000_000_000;

fn needles(plain: &[u8]) -> Vec<Vec<u8>> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    vec![
        plain.to_vec(),
        hex::encode(plain).into_bytes(),
        hex::encode_upper(plain).into_bytes(),
        b64.encode(plain).into_bytes(),
        url.encode(plain).into_bytes(),
    ]
}

/// The first written value found in the store's files (main file, WAL, shared memory), in any
/// of the forms `needles` makes: where, and in which form.
fn find_written(dir: &std::path::Path, secrets: &[Vec<u8>]) -> Option<String> {
    let files = read_all(dir);
    assert!(!files.is_empty(), "no store files found");
    for (path, bytes) in &files {
        for s in secrets {
            for n in needles(s) {
                if contains(bytes, &n) {
                    return Some(format!(
                        "{} contains a written value ({} bytes, form {:?})",
                        path.display(),
                        s.len(),
                        String::from_utf8_lossy(&n[..n.len().min(8)])
                    ));
                }
            }
        }
    }
    None
}

fn assert_absent(dir: &std::path::Path, secrets: &[Vec<u8>], when: &str) {
    if let Some(found) = find_written(dir, secrets) {
        panic!("{when}: {found}");
    }
}

#[test]
fn canary_scan_finds_no_written_value_in_db_wal_or_shm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig::new(db_path(dir.path())).raw_retention(Some(Duration::from_secs(3600)));
    let store = Store::open(cfg, &provider()).expect("open");
    let who = subject("subject-CANARY-7f3a9c");
    let mut c = check(&who, T0, 1);
    c.session
        .insert("device".into(), "CANARYDEVICE-93af1e".into());
    c.features
        .insert("canary_feature_zz81".into(), 12345.678901234);
    let raw_values: Vec<f32> = (0..6000).map(|i| 1000.123 + i as f32 * 0.731).collect();
    let raw = RawWindow {
        channel: "CANARYCHANNEL-ppg".into(),
        start_ms: T0,
        rate_hz: 100.0,
        values: raw_values.clone(),
    };
    let draft = OutboxDraft {
        purpose: Purpose::new("research").expect("p"),
        check_id: Some(c.id),
        payload: b"CANARY-PAYLOAD-88d1b2".to_vec(),
    };
    let saved = store
        .save_check(&c, Some(&draft), std::slice::from_ref(&raw))
        .expect("save");
    assert_eq!(saved.raw_ids.len(), 1);
    store
        .write(|tx| {
            tx.insert_label(
                &c.id,
                &OutcomeLabel {
                    name: "CANARYLABEL-afib".into(),
                    value: 1.0,
                    source: "clinician".into(),
                    recorded_at_ms: T0,
                },
            )
            .map(|_| ())
        })
        .expect("label");
    store
        .record_consent(
            &who,
            &ConsentDecision {
                purpose: Purpose::new("research").expect("p"),
                granted: true,
                at_ms: T0,
                policy_version: "CANARY-POLICY-v9".into(),
            },
        )
        .expect("consent");
    store
        .put_model_bundle(&ModelBundle {
            model: "afib".into(),
            version: "1.2.0".into(),
            manifest: b"CANARY-MANIFEST-body".to_vec(),
            artifact: b"CANARY-ONNX-bytes-1234".to_vec(),
        })
        .expect("bundle");
    // Reading back proves the values were stored, not dropped.
    let back = store.check(&c.id).expect("read").expect("present");
    assert_eq!(back, c);
    assert_eq!(store.raw_windows(&c.id).expect("raw"), vec![raw]);

    let raw_bytes: Vec<u8> = raw_values[100..116]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let secrets: Vec<Vec<u8>> = vec![
        b"subject-CANARY-7f3a9c".to_vec(),
        b"CANARYDEVICE-93af1e".to_vec(),
        b"canary_feature_zz81".to_vec(),
        12345.678901234f64.to_le_bytes().to_vec(),
        b"CANARYCHANNEL-ppg".to_vec(),
        raw_bytes,
        b"CANARY-PAYLOAD-88d1b2".to_vec(),
        b"CANARYLABEL-afib".to_vec(),
        b"CANARY-POLICY-v9".to_vec(),
        b"CANARY-MANIFEST-body".to_vec(),
        b"CANARY-ONNX-bytes-1234".to_vec(),
        b"Pixel 8".to_vec(),
        KEY.to_vec(),
    ];
    // While open: the values sit in WAL frames.
    let wal_len = std::fs::metadata(format!("{}-wal", db_path(dir.path()).display()))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        wal_len > 0,
        "the WAL should hold the writes while the store is open"
    );
    assert_absent(dir.path(), &secrets, "open store");
    store.close().expect("close");
    // After close: checkpointed into the main file.
    assert_absent(dir.path(), &secrets, "closed store");
    // The scan itself finds a value written in plaintext into the very files it read (the
    // test is able to fail): a canary in the WAL of an open connection, then, after that
    // connection checkpointed on close, in the main file; one plain, one hex-encoded.
    let planted = |value: &[u8], form: &[u8]| {
        let conn = rusqlite::Connection::open(db_path(dir.path())).expect("plain sqlite");
        conn.execute_batch("CREATE TABLE IF NOT EXISTS planted (v BLOB)")
            .expect("table");
        conn.execute("INSERT INTO planted (v) VALUES (?1)", [form])
            .expect("plant");
        let in_wal = find_written(dir.path(), &[value.to_vec()]);
        drop(conn);
        let in_main = find_written(dir.path(), &[value.to_vec()]);
        (in_wal, in_main)
    };
    let device = b"CANARYDEVICE-93af1e".to_vec();
    let (in_wal, in_main) = planted(&device, &device);
    let in_wal = in_wal.expect("the scan missed a plaintext canary in the WAL");
    assert!(in_wal.contains("-wal contains"), "{in_wal}");
    let in_main = in_main.expect("the scan missed a plaintext canary in the main file");
    assert!(in_main.contains(".db contains"), "{in_main}");
    let feature = 12345.678901234f64.to_le_bytes().to_vec();
    let (in_wal, _) = planted(&feature, hex::encode(&feature).as_bytes());
    assert!(
        in_wal.is_some(),
        "the scan missed a hex-encoded canary in the store's files"
    );
}

/// Content of the main file and the WAL (a missing WAL reads as empty: SQLite may leave an empty
/// one behind). `-shm` is a rebuildable index of the WAL, not data.
fn file_state(dir: &std::path::Path) -> Vec<(String, usize, String)> {
    store_files(dir)
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with("-shm"))
        .map(|p| {
            let b = std::fs::read(&p).unwrap_or_default();
            let digest = ring::digest::digest(&ring::digest::SHA256, &b);
            (
                p.display().to_string(),
                b.len(),
                hex::encode(digest.as_ref()),
            )
        })
        .collect()
}

#[test]
fn wrong_key_is_typed_and_changes_no_byte_even_with_a_pending_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let who = subject("alice");
    let c = check(&who, T0, 7);
    store.save_check(&c, None, &[]).expect("save");
    // Copy the files while the store is open: a crash image with committed frames in the WAL.
    let crash = tempfile::tempdir().expect("tempdir");
    for (p, b) in read_all(dir.path()) {
        std::fs::write(crash.path().join(p.file_name().expect("name")), b).expect("copy");
    }
    drop(store);
    let crash_wal = std::fs::metadata(crash.path().join("vitalcore.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert!(
        crash_wal > 0,
        "the crash image must have committed frames in its WAL"
    );
    for d in [dir.path(), crash.path()] {
        let before = file_state(d);
        for _ in 0..3 {
            let err = Store::open(
                StoreConfig::new(db_path(d)),
                &InMemoryKeyProvider::new([0x43; 32]),
            )
            .expect_err("wrong key must fail");
            assert!(matches!(err, StoreError::WrongKey), "{err:?}");
        }
        assert_eq!(
            file_state(d),
            before,
            "a wrong-key open modified the files in {}",
            d.display()
        );
        // The right key still opens it and the check is there.
        let s = open(d);
        assert_eq!(s.check(&c.id).expect("read"), Some(c.clone()));
    }
}

fn tamper(store: &Store, sql: &str, p: impl rusqlite::Params) {
    store.raw_writer_for_tests(|c| c.execute(sql, p).expect("tamper sql"));
}

fn blob(store: &Store, sql: &str, p: impl rusqlite::Params) -> Vec<u8> {
    store.raw_writer_for_tests(|c| c.query_row(sql, p, |r| r.get(0)).expect("blob"))
}

fn assert_integrity(r: Result<impl std::fmt::Debug, StoreError>, table: &str, column: &str) {
    match r {
        Err(StoreError::Integrity {
            table: t,
            column: c,
        }) => assert_eq!((t, c), (table, column)),
        other => panic!("expected integrity error on {table}.{column}, got {other:?}"),
    }
}

#[test]
fn tampered_check_ciphertexts_give_integrity_errors_never_wrong_plaintext() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let who = subject("bob");
    let a = check(&who, T0, 1);
    let b = check(&who, T0 + 120_000, 2);
    store.save_check(&a, None, &[]).expect("a");
    store.save_check(&b, None, &[]).expect("b");
    let orig = blob(
        &store,
        "SELECT features FROM checks WHERE id = ?1",
        [&a.id.0[..]],
    );

    // Flip one bit at every region: format byte, nonce, ciphertext body, tag.
    for pos in [0, 5, 20, orig.len() / 2, orig.len() - 1] {
        let mut bad = orig.clone();
        bad[pos] ^= 0x01;
        tamper(
            &store,
            "UPDATE checks SET features = ?1 WHERE id = ?2",
            params![bad, &a.id.0[..]],
        );
        assert_integrity(store.check(&a.id), "checks", "features");
        assert_integrity(
            store.history(&HistoryQuery::new(who.clone(), T0 - 1, T0 + 1)),
            "checks",
            "features",
        );
    }
    // Truncated, to every interesting length.
    for len in [0, 1, 12, 28, orig.len() - 16, orig.len() - 1] {
        tamper(
            &store,
            "UPDATE checks SET features = ?1 WHERE id = ?2",
            params![&orig[..len], &a.id.0[..]],
        );
        assert_integrity(store.check(&a.id), "checks", "features");
    }
    // Extended with trailing bytes.
    let mut longer = orig.clone();
    longer.extend_from_slice(&[0; 4]);
    tamper(
        &store,
        "UPDATE checks SET features = ?1 WHERE id = ?2",
        params![longer, &a.id.0[..]],
    );
    assert_integrity(store.check(&a.id), "checks", "features");
    tamper(
        &store,
        "UPDATE checks SET features = ?1 WHERE id = ?2",
        params![orig, &a.id.0[..]],
    );
    assert_eq!(store.check(&a.id).expect("restored"), Some(a.clone()));

    // Replayed from another row (same subject, same key): detected.
    let b_feat = blob(
        &store,
        "SELECT features FROM checks WHERE id = ?1",
        [&b.id.0[..]],
    );
    tamper(
        &store,
        "UPDATE checks SET features = ?1 WHERE id = ?2",
        params![b_feat, &a.id.0[..]],
    );
    assert_integrity(store.check(&a.id), "checks", "features");
    tamper(
        &store,
        "UPDATE checks SET features = ?1 WHERE id = ?2",
        params![orig, &a.id.0[..]],
    );

    // Swapped between the two sealed columns of one row: detected.
    tamper(
        &store,
        "UPDATE checks SET features = detail, detail = features WHERE id = ?1",
        [&a.id.0[..]],
    );
    assert_integrity(store.check(&a.id), "checks", "features");
    tamper(
        &store,
        "UPDATE checks SET features = detail, detail = features WHERE id = ?1",
        [&a.id.0[..]],
    );
    assert_eq!(store.check(&a.id).expect("restored"), Some(a.clone()));

    // Whole sealed content of row b moved under row a's id: detected.
    tamper(
        &store,
        "UPDATE checks SET id = ?1 WHERE id = ?2",
        params![&[9u8; 16][..], &a.id.0[..]],
    );
    tamper(
        &store,
        "UPDATE checks SET id = ?1 WHERE id = ?2",
        params![&a.id.0[..], &b.id.0[..]],
    );
    assert_integrity(store.check(&a.id), "checks", "features");
}

#[test]
fn moved_rows_keys_and_columns_are_detected_in_every_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig::new(db_path(dir.path())).raw_retention(Some(Duration::from_secs(3600)));
    let store = Store::open(cfg, &provider()).expect("open");
    let alice = subject("alice");
    let bob = subject("bob");
    let ca = check(&alice, T0, 1);
    let cb = check(&bob, T0, 2);
    let w = RawWindow {
        channel: "ppg".into(),
        start_ms: T0,
        rate_hz: 100.0,
        values: vec![1.0; 100],
    };
    let research = Purpose::new("research").expect("p");
    let draft = |c: &vitalcore::store::CheckRecord| OutboxDraft {
        purpose: research.clone(),
        check_id: Some(c.id),
        payload: b"rec".to_vec(),
    };
    store
        .save_check(&ca, Some(&draft(&ca)), std::slice::from_ref(&w))
        .expect("a");
    store
        .save_check(&cb, Some(&draft(&cb)), std::slice::from_ref(&w))
        .expect("b");

    // Bob's key id on Alice's row: the wrong key cannot open it.
    let bob_key: i64 = store.raw_writer_for_tests(|c| {
        c.query_row(
            "SELECT key_id FROM checks WHERE id = ?1",
            [&cb.id.0[..]],
            |r| r.get(0),
        )
        .expect("k")
    });
    let alice_key: i64 = store.raw_writer_for_tests(|c| {
        c.query_row(
            "SELECT key_id FROM checks WHERE id = ?1",
            [&ca.id.0[..]],
            |r| r.get(0),
        )
        .expect("k")
    });
    assert_ne!(bob_key, alice_key, "each subject has its own data key");
    tamper(
        &store,
        "UPDATE checks SET key_id = ?1 WHERE id = ?2",
        params![bob_key, &ca.id.0[..]],
    );
    assert_integrity(store.check(&ca.id), "checks", "features");
    tamper(
        &store,
        "UPDATE checks SET key_id = ?1 WHERE id = ?2",
        params![alice_key, &ca.id.0[..]],
    );

    // Alice's row re-tagged as Bob's: Bob's history refuses it instead of showing it.
    let bob_tag = blob(
        &store,
        "SELECT subject_tag FROM checks WHERE id = ?1",
        [&cb.id.0[..]],
    );
    tamper(
        &store,
        "UPDATE checks SET subject_tag = ?1 WHERE id = ?2",
        params![bob_tag, &ca.id.0[..]],
    );
    assert_integrity(
        store.history(&HistoryQuery::new(bob.clone(), T0 - 1, T0 + 1)),
        "checks",
        "subject_tag",
    );
    assert_integrity(store.check(&ca.id), "checks", "subject_tag");

    // Raw window moved to another check.
    tamper(
        &store,
        "UPDATE raw_windows SET check_id = ?1 WHERE check_id = ?2",
        params![&cb.id.0[..], &ca.id.0[..]],
    );
    assert_integrity(store.raw_windows(&cb.id), "raw_windows", "samples");

    // Outbox record relabelled with another purpose (for example one the user consented to).
    tamper(&store, "UPDATE outbox SET purpose = 'model_training'", []);
    assert_integrity(
        store.outbox_due(&[Purpose::new("model_training").expect("p")], i64::MAX, 10),
        "outbox",
        "payload",
    );

    // Wrapped data key flipped: every row under it fails, as an integrity error.
    let wrapped = blob(
        &store,
        "SELECT wrapped FROM data_keys WHERE id = ?1",
        [bob_key],
    );
    let mut bad = wrapped.clone();
    bad[20] ^= 0x80;
    tamper(
        &store,
        "UPDATE data_keys SET wrapped = ?1 WHERE id = ?2",
        params![bad, bob_key],
    );
    let fresh = open_again(&store, dir.path());
    assert_integrity(fresh.check(&cb.id), "data_keys", "wrapped");
    drop(fresh);

    // Model artifact and consent bodies.
    store
        .put_model_bundle(&ModelBundle {
            model: "m".into(),
            version: "1".into(),
            manifest: b"man".to_vec(),
            artifact: b"onnx".to_vec(),
        })
        .expect("m1");
    store
        .put_model_bundle(&ModelBundle {
            model: "m".into(),
            version: "2".into(),
            manifest: b"man2".to_vec(),
            artifact: b"onnx2".to_vec(),
        })
        .expect("m2");
    tamper(&store, "UPDATE model_bundles SET artifact = (SELECT artifact FROM model_bundles WHERE version = '2') WHERE version = '1'", []);
    assert_integrity(store.model_bundle("m", "1"), "model_bundles", "artifact");
    tamper(
        &store,
        "UPDATE model_bundles SET version = '3' WHERE version = '2'",
        [],
    );
    assert_integrity(store.model_bundle("m", "3"), "model_bundles", "manifest");
    for granted in [true, false] {
        store
            .record_consent(
                &alice,
                &ConsentDecision {
                    purpose: research.clone(),
                    granted,
                    at_ms: T0,
                    policy_version: "1".into(),
                },
            )
            .expect("consent");
    }
    // Replaying the older "granted" body over the newer "withdrawn" one is detected.
    tamper(&store, "UPDATE consent_events SET body = (SELECT body FROM consent_events ORDER BY seq LIMIT 1) WHERE seq = (SELECT max(seq) FROM consent_events)", []);
    assert_integrity(store.consent(&alice, &research), "consent_events", "body");
}

/// A second store on the same file, so nothing cached in the first one hides a tampered key.
fn open_again(_first: &Store, dir: &std::path::Path) -> Store {
    open(dir)
}

#[test]
fn nonces_are_unique_over_many_seals_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let research = Purpose::new("research").expect("p");
    let mut total = 0;
    for session in 0..3u64 {
        let store = open(dir.path());
        let who = subject(&format!("s{}", session % 2));
        for batch in 0..4u64 {
            store
                .write(|tx| {
                    for i in 0..500u64 {
                        let c = check(
                            &who,
                            T0 + (i * 1000) as i64,
                            session * 10_000 + batch * 500 + i,
                        );
                        tx.insert_check(&c)?;
                        tx.enqueue_outbox(
                            &who,
                            &OutboxDraft {
                                purpose: research.clone(),
                                check_id: Some(c.id),
                                payload: vec![0; 8],
                            },
                        )?;
                    }
                    Ok(())
                })
                .expect("batch");
            total += 500 * 3;
        }
        drop(store);
    }
    let conn = rusqlite::Connection::open(db_path(dir.path())).expect("raw open");
    let mut seen = HashSet::new();
    let mut n = 0;
    for sql in [
        "SELECT features FROM checks",
        "SELECT detail FROM checks",
        "SELECT payload FROM outbox",
        "SELECT wrapped FROM data_keys",
        "SELECT value FROM store_meta WHERE name = 'canary'",
    ] {
        let mut stmt = conn.prepare(sql).expect("prepare");
        let blobs: Vec<Vec<u8>> = stmt
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        for b in blobs {
            let nonce = sealed_nonce(&b).expect("sealed layout");
            assert!(seen.insert(nonce), "nonce reused");
            n += 1;
        }
    }
    assert!(
        n >= total,
        "expected at least {total} sealed values, found {n}"
    );
}

#[test]
fn erasure_shreds_keys_so_leftover_ciphertext_is_unreadable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig::new(db_path(dir.path())).raw_retention(Some(Duration::from_secs(3600)));
    let store = Store::open(cfg, &provider()).expect("open");
    let alice = subject("alice");
    let bob = subject("bob");
    let research = Purpose::new("research").expect("p");
    let w = RawWindow {
        channel: "ppg".into(),
        start_ms: T0,
        rate_hz: 100.0,
        values: vec![2.5; 6000],
    };
    let mut alice_checks = Vec::new();
    for i in 0..20 {
        let c = check(&alice, T0 + i * 60_000, i as u64);
        store
            .save_check(
                &c,
                Some(&OutboxDraft {
                    purpose: research.clone(),
                    check_id: Some(c.id),
                    payload: b"a".to_vec(),
                }),
                std::slice::from_ref(&w),
            )
            .expect("a");
        alice_checks.push(c);
    }
    let cb = check(&bob, T0, 99);
    store
        .save_check(
            &cb,
            Some(&OutboxDraft {
                purpose: research.clone(),
                check_id: Some(cb.id),
                payload: b"b".to_vec(),
            }),
            &[],
        )
        .expect("b");
    let victim = &alice_checks[3];
    // What an attacker could later dig out of free pages, the WAL or a later copy.
    let leftover: (Vec<u8>, Vec<u8>, Vec<u8>, i64) = store.raw_writer_for_tests(|c| {
        c.query_row(
            "SELECT subject_tag, features, detail, key_id FROM checks WHERE id = ?1",
            [&victim.id.0[..]],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("row")
    });
    let wrapped: Vec<Vec<u8>> = store.raw_writer_for_tests(|c| {
        let mut s = c
            .prepare("SELECT wrapped FROM data_keys WHERE subject_tag = ?1")
            .expect("p");
        s.query_map([&leftover.0], |r| r.get(0))
            .expect("q")
            .collect::<Result<_, _>>()
            .expect("rows")
    });
    assert_eq!(wrapped.len(), 2, "alice has a care key and a research key");

    let report = store.erase_subject(&alice).expect("erase");
    assert_eq!(report.keys_destroyed, 2);
    assert!(report.wal_truncated);
    assert!(report.rows_deleted >= 20);
    assert!(store
        .history(&HistoryQuery::new(alice.clone(), T0 - 1, T0 + 3_600_000))
        .expect("history")
        .is_empty());
    assert_eq!(
        store.check(&cb.id).expect("bob"),
        Some(cb.clone()),
        "other subjects are untouched"
    );
    assert_eq!(
        store
            .outbox_due(std::slice::from_ref(&research), i64::MAX, 100)
            .expect("due")
            .len(),
        1
    );

    // Neither the wrapped keys nor the ciphertext remain in the files (secure_delete + WAL truncate).
    let files = read_all(dir.path());
    for (path, bytes) in &files {
        for k in &wrapped {
            assert!(
                !contains(bytes, &k[13..]),
                "wrapped key left in {}",
                path.display()
            );
        }
        assert!(
            !contains(bytes, &leftover.1[13..]),
            "ciphertext left in {}",
            path.display()
        );
    }
    // A leftover copy put back is unreadable: its key no longer exists.
    store.raw_writer_for_tests(|c| {
        c.execute("INSERT INTO checks (id, subject_tag, key_id, kind, started_min, features, detail) VALUES (?1, ?2, ?3, 'ppg', 0, ?4, ?5)",
            params![&victim.id.0[..], leftover.0, leftover.3, leftover.1, leftover.2]).expect("reinsert")
    });
    assert!(matches!(
        store.check(&victim.id),
        Err(StoreError::KeyDestroyed)
    ));
    drop(store);
    let reopened = open(dir.path());
    assert!(matches!(
        reopened.check(&victim.id),
        Err(StoreError::KeyDestroyed)
    ));

    // Withdrawing one purpose shreds only that purpose.
    let r = reopened
        .erase_purpose(&bob, &research)
        .expect("erase purpose");
    assert_eq!(r.keys_destroyed, 1);
    assert!(reopened
        .outbox_due(std::slice::from_ref(&research), i64::MAX, 100)
        .expect("due")
        .is_empty());
    assert_eq!(reopened.check(&cb.id).expect("bob"), Some(cb));
    let erasures = reopened
        .audit_log()
        .expect("audit")
        .iter()
        .filter(|e| e.action == vitalcore::store::AuditAction::Erase)
        .count();
    assert_eq!(erasures, 2);
    reopened.verify_audit_log().expect("chain");
}

#[test]
fn debug_and_errors_carry_no_personal_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let who = subject("patient-jane-doe-1984");
    let mut c = check(&who, T0, 1);
    c.session.insert("note".into(), "SECRET-NOTE-77".into());
    store.save_check(&c, None, &[]).expect("save");
    let wrong = Store::open(
        StoreConfig::new(db_path(dir.path())),
        &InMemoryKeyProvider::new([1; 32]),
    )
    .expect_err("wrong key");
    tamper(&store, "UPDATE checks SET detail = x'00'", []);
    let integrity = store.check(&c.id).expect_err("tampered");
    let texts = [
        format!("{c:?}"),
        format!("{who:?}"),
        format!("{store:?}"),
        format!("{:?}", provider()),
        format!("{wrong} {wrong:?}"),
        format!("{integrity} {integrity:?}"),
    ];
    for t in &texts {
        // Feature values are 61.5, 61.75, ...: searched with their decimal point so that a
        // random record id printed in hex can never match by chance.
        for secret in ["jane", "SECRET-NOTE", "Pixel", "61.5", "66.25", "0.01"] {
            assert!(!t.contains(secret), "{secret:?} leaked in {t}");
        }
    }
}

#[test]
fn a_key_erased_by_another_instance_is_refused_even_while_cached() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = open(dir.path());
    let b = open(dir.path());
    let alice = subject("alice");
    let c = check(&alice, T0, 1);
    a.save_check(&c, None, &[]).expect("save");
    // Instance b unwraps and caches alice's key.
    assert_eq!(b.check(&c.id).expect("read"), Some(c.clone()));
    let leftover: (Vec<u8>, Vec<u8>, Vec<u8>, i64) = a.raw_writer_for_tests(|conn| {
        conn.query_row(
            "SELECT subject_tag, features, detail, key_id FROM checks WHERE id = ?1",
            [&c.id.0[..]],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .expect("row")
    });
    a.erase_subject(&alice).expect("erase in a");
    a.raw_writer_for_tests(|conn| {
        conn.execute(
            "INSERT INTO checks (id, subject_tag, key_id, kind, started_min, features, detail) VALUES (?1, ?2, ?3, 'ppg', 0, ?4, ?5)",
            params![&c.id.0[..], leftover.0, leftover.3, leftover.1, leftover.2],
        )
        .expect("reinsert")
    });
    assert!(
        matches!(b.check(&c.id), Err(StoreError::KeyDestroyed)),
        "b still opened data under a destroyed key"
    );
    // New data for alice written through b gets a fresh key, readable by both.
    let fresh = check(&alice, T0 + 60_000, 2);
    b.save_check(&fresh, None, &[]).expect("write after erase");
    assert_eq!(a.check(&fresh.id).expect("read"), Some(fresh));
}
