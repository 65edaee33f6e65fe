//! The store API as the engine uses it: round trips, one-transaction writes, history, outbox
//! bookkeeping, consent, model cache, audit log, retention, pinned pragmas, bad input.

mod store_support;

use std::time::Duration;

use store_support::*;
use vitalcore::store::{
    AuditAction, BatchFailure, CheckKind, ConsentDecision, Durability, HistoryQuery, ModelBundle,
    OutboxDraft, OutcomeLabel, Purpose, RawWindow, Store, StoreConfig, StoreError, SubjectId,
};

const T0: i64 = 1_764_000_000_000;

fn with_raw(dir: &std::path::Path) -> Store {
    let cfg = StoreConfig::new(db_path(dir)).raw_retention(Some(Duration::from_secs(7 * 86_400)));
    Store::open(cfg, &provider()).expect("open")
}

fn research() -> Purpose {
    Purpose::new("research").expect("purpose")
}

fn window(seed: f32) -> RawWindow {
    RawWindow {
        channel: "ppg_green".into(),
        start_ms: T0,
        rate_hz: 100.0,
        values: (0..6000).map(|i| seed + i as f32).collect(),
    }
}

#[test]
fn check_outbox_and_raw_window_round_trip_in_one_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = with_raw(dir.path());
    let who = subject("alice");
    let c = check(&who, T0, 3);
    let draft = OutboxDraft {
        purpose: research(),
        check_id: Some(c.id),
        payload: b"anonymized".to_vec(),
    };
    let saved = store
        .save_check(&c, Some(&draft), &[window(1.0), window(2.0)])
        .expect("save");
    assert_eq!(saved.raw_ids.len(), 2);
    assert_eq!(store.check(&c.id).expect("get"), Some(c.clone()));
    assert_eq!(
        store.raw_windows(&c.id).expect("raw"),
        vec![window(1.0), window(2.0)]
    );
    let due = store.outbox_due(&[research()], i64::MAX, 10).expect("due");
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].id, due[0].check_id, due[0].payload.as_slice()),
        (saved.outbox_id.expect("id"), Some(c.id), &b"anonymized"[..])
    );
    let label = OutcomeLabel {
        name: "afib".into(),
        value: 1.0,
        source: "clinician".into(),
        recorded_at_ms: T0 + 5,
    };
    store
        .write(|tx| tx.insert_label(&c.id, &label))
        .expect("label");
    assert_eq!(store.labels(&c.id).expect("labels"), vec![label]);
    // Survives reopen.
    drop(store);
    let store = with_raw(dir.path());
    assert_eq!(store.check(&c.id).expect("get"), Some(c));
}

#[test]
fn a_failing_transaction_leaves_nothing_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = with_raw(dir.path());
    let who = subject("alice");
    let c = check(&who, T0, 1);
    let other = check(&who, T0, 2);
    let err = store
        .write(|tx| {
            tx.insert_check(&c)?;
            tx.enqueue_outbox(
                &who,
                &OutboxDraft {
                    purpose: research(),
                    check_id: Some(c.id),
                    payload: vec![1],
                },
            )?;
            // The raw window of a check that does not exist fails the whole transaction.
            tx.insert_raw_window(&other.id, &window(0.0))?;
            Ok(())
        })
        .expect_err("must fail");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(store.check(&c.id).expect("get"), None);
    assert_eq!(store.outbox_counts().expect("counts"), (0, 0));
    // An error returned by the engine's own code rolls back too.
    let err = store
        .write(|tx| {
            tx.insert_check(&c)?;
            Err::<(), _>(StoreError::InvalidInput("engine changed its mind"))
        })
        .expect_err("must fail");
    assert!(matches!(err, StoreError::InvalidInput(_)));
    assert_eq!(store.check(&c.id).expect("get"), None);
}

#[test]
fn raw_windows_are_not_kept_by_default_and_purged_after_retention() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let who = subject("alice");
    let c = check(&who, T0, 1);
    let saved = store.save_check(&c, None, &[window(1.0)]).expect("save");
    assert!(saved.raw_ids.is_empty());
    assert!(store.raw_windows(&c.id).expect("raw").is_empty());
    drop(store);

    let cfg = StoreConfig::new(db_path(dir.path())).raw_retention(Some(Duration::from_secs(3600)));
    let store = Store::open(cfg, &provider()).expect("open");
    let c2 = check(&who, T0 + 1, 2);
    store.save_check(&c2, None, &[window(1.0)]).expect("save");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    assert_eq!(
        store.purge_expired_raw(now).expect("purge"),
        0,
        "still within retention"
    );
    assert_eq!(store.raw_windows(&c2.id).expect("raw").len(), 1);
    assert_eq!(
        store.purge_expired_raw(now + 2 * 3_600_000).expect("purge"),
        1
    );
    assert!(store.raw_windows(&c2.id).expect("raw").is_empty());
    assert!(
        store.check(&c2.id).expect("check").is_some(),
        "the check itself stays"
    );
}

#[test]
fn history_filters_by_subject_exact_time_range_and_kind_oldest_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let alice = subject("alice");
    let bob = subject("bob");
    // Same minute bucket, different seconds, inserted out of order.
    let times = [T0 + 50_000, T0 + 10_000, T0 + 30_000, T0 + 120_000, T0 - 1];
    let mut checks: Vec<_> = times
        .iter()
        .enumerate()
        .map(|(i, t)| check(&alice, *t, i as u64))
        .collect();
    checks[2].kind = CheckKind::new("ecg").expect("kind");
    store
        .write(|tx| {
            for c in &checks {
                tx.insert_check(c)?;
            }
            tx.insert_check(&check(&bob, T0 + 10_000, 9))
        })
        .expect("write");
    let got = store
        .history(&HistoryQuery::new(alice.clone(), T0, T0 + 120_000))
        .expect("history");
    let got_times: Vec<i64> = got.iter().map(|c| c.started_at_ms).collect();
    assert_eq!(got_times, vec![T0 + 10_000, T0 + 30_000, T0 + 50_000]);
    let ecg = store
        .history(
            &HistoryQuery::new(alice.clone(), T0, T0 + 120_001)
                .kind(CheckKind::new("ecg").expect("k")),
        )
        .expect("ecg");
    assert_eq!(ecg, vec![checks[2].clone()]);
    assert_eq!(
        store
            .history(&HistoryQuery::new(bob, T0, T0 + 60_000))
            .expect("bob")
            .len(),
        1
    );
    assert!(matches!(
        store.history(&HistoryQuery::new(alice, T0, T0)),
        Err(StoreError::InvalidInput(_))
    ));
}

#[test]
fn outbox_claim_fail_backoff_quarantine_and_ack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let who = subject("alice");
    let training = Purpose::new("model_training").expect("p");
    store
        .write(|tx| {
            for i in 0..3u8 {
                tx.enqueue_outbox(
                    &who,
                    &OutboxDraft {
                        purpose: research(),
                        check_id: None,
                        payload: vec![i],
                    },
                )?;
            }
            tx.enqueue_outbox(
                &who,
                &OutboxDraft {
                    purpose: training.clone(),
                    check_id: None,
                    payload: vec![9],
                },
            )
        })
        .expect("enqueue");
    // Only consented purposes are offered, oldest first.
    let due = store.outbox_due(&[research()], 1000, 10).expect("due");
    assert_eq!(
        due.iter().map(|r| r.payload[0]).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let keys: Vec<[u8; 16]> = due.iter().map(|r| r.idempotency_key).collect();
    let (batch, n) = store
        .outbox_claim(&due.iter().map(|r| r.id).collect::<Vec<_>>())
        .expect("claim");
    assert_eq!(n, 3);
    assert!(
        store
            .outbox_due(&[research()], 1000, 10)
            .expect("due")
            .is_empty(),
        "in flight"
    );
    assert_eq!(
        store.outbox_fail(&batch, 5000, 2).expect("fail"),
        BatchFailure {
            retrying: 3,
            quarantined: 0
        }
    );
    assert!(
        store
            .outbox_due(&[research()], 4999, 10)
            .expect("due")
            .is_empty(),
        "backing off"
    );
    let again = store.outbox_due(&[research()], 5000, 10).expect("due");
    assert_eq!(
        again.iter().map(|r| r.idempotency_key).collect::<Vec<_>>(),
        keys,
        "idempotency keys are stable"
    );
    assert!(again.iter().all(|r| r.attempts == 1));
    let (batch, _) = store
        .outbox_claim(&again.iter().map(|r| r.id).collect::<Vec<_>>())
        .expect("claim");
    assert_eq!(
        store.outbox_fail(&batch, 9000, 2).expect("fail"),
        BatchFailure {
            retrying: 0,
            quarantined: 3
        }
    );
    assert_eq!(store.outbox_counts().expect("counts"), (1, 3));
    let t = store
        .outbox_due(std::slice::from_ref(&training), 0, 10)
        .expect("due");
    let (batch, _) = store.outbox_claim(&[t[0].id]).expect("claim");
    drop(store);
    // A crash mid-upload: the batch is released on restart and acknowledged later.
    let store = open(dir.path());
    assert!(store
        .outbox_due(std::slice::from_ref(&training), 0, 10)
        .expect("due")
        .is_empty());
    assert_eq!(store.outbox_release_in_flight().expect("release"), 1);
    let t = store.outbox_due(&[training], 0, 10).expect("due");
    let (batch2, _) = store.outbox_claim(&[t[0].id]).expect("claim");
    assert_ne!(batch, batch2);
    assert_eq!(store.outbox_ack(&batch2).expect("ack"), 1);
    assert_eq!(store.outbox_counts().expect("counts"), (0, 3));
}

#[test]
fn consent_keeps_history_and_latest_is_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let who = subject("alice");
    assert_eq!(store.consent(&who, &research()).expect("none"), None);
    let d = |granted, at| ConsentDecision {
        purpose: research(),
        granted,
        at_ms: at,
        policy_version: "2026-01".into(),
    };
    for (g, at) in [(true, 1), (false, 2), (true, 3)] {
        store.record_consent(&who, &d(g, at)).expect("record");
    }
    store
        .record_consent(&subject("bob"), &d(false, 4))
        .expect("bob");
    assert_eq!(
        store.consent(&who, &research()).expect("state"),
        Some(d(true, 3))
    );
    assert_eq!(
        store.consent_history(&who, None).expect("history"),
        vec![d(true, 1), d(false, 2), d(true, 3)]
    );
}

#[test]
fn model_cache_and_active_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let b = |v: &str, art: &[u8]| ModelBundle {
        model: "afib".into(),
        version: v.into(),
        manifest: format!("manifest {v}").into_bytes(),
        artifact: art.to_vec(),
    };
    assert!(matches!(
        store.set_active_model("afib", "1.0.0"),
        Err(StoreError::NotFound)
    ));
    store.put_model_bundle(&b("1.0.0", b"one")).expect("put");
    store.put_model_bundle(&b("1.1.0", b"two")).expect("put");
    assert_eq!(store.active_model("afib").expect("none"), None);
    store.set_active_model("afib", "1.0.0").expect("activate");
    assert_eq!(
        store.active_model("afib").expect("active"),
        Some(b("1.0.0", b"one"))
    );
    store.set_active_model("afib", "1.1.0").expect("swap");
    assert_eq!(
        store.active_model("afib").expect("active"),
        Some(b("1.1.0", b"two"))
    );
    // Re-downloading the active version replaces the bytes and keeps it active.
    store
        .put_model_bundle(&b("1.1.0", b"two-fixed"))
        .expect("replace");
    assert_eq!(
        store.active_model("afib").expect("active"),
        Some(b("1.1.0", b"two-fixed"))
    );
    assert_eq!(
        store.model_bundle("afib", "1.0.0").expect("old"),
        Some(b("1.0.0", b"one"))
    );
}

#[test]
fn audit_log_records_access_and_deletion_and_is_append_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = with_raw(dir.path());
    let who = subject("alice");
    let c = check(&who, T0, 1);
    store.save_check(&c, None, &[window(0.0)]).expect("save");
    store
        .history(&HistoryQuery::new(who.clone(), T0, T0 + 1))
        .expect("read");
    store.raw_windows(&c.id).expect("raw");
    assert!(store.delete_check(&c.id).expect("delete"));
    assert!(
        store.raw_windows(&c.id).expect("raw").is_empty(),
        "raw windows go with their check"
    );
    let log = store.audit_log().expect("log");
    let summary: Vec<(AuditAction, &str, u64)> = log
        .iter()
        .map(|e| (e.action, e.scope.as_str(), e.rows))
        .collect();
    assert_eq!(
        summary,
        vec![
            (AuditAction::Read, "checks", 1),
            (AuditAction::Read, "raw_windows", 1),
            (AuditAction::Delete, "checks", 1),
            (AuditAction::Read, "raw_windows", 0),
        ]
    );
    assert_eq!(store.verify_audit_log().expect("chain"), 4);
    // Triggers refuse edits and deletions.
    store.raw_writer_for_tests(|conn| {
        assert!(conn.execute("UPDATE audit_log SET rows = 0", []).is_err());
        assert!(conn
            .execute("DELETE FROM audit_log WHERE seq = 2", [])
            .is_err());
    });
    assert_eq!(store.verify_audit_log().expect("chain"), 4);
    // Around the triggers, the HMAC chain catches an edit and a deletion.
    store.raw_writer_for_tests(|conn| {
        conn.execute_batch(
            "DROP TRIGGER audit_log_no_update; UPDATE audit_log SET rows = 7 WHERE seq = 3;",
        )
        .expect("edit")
    });
    assert!(matches!(
        store.verify_audit_log(),
        Err(StoreError::AuditChainBroken { seq: 3 })
    ));
    store.raw_writer_for_tests(|conn| {
        conn.execute_batch("UPDATE audit_log SET rows = 1 WHERE seq = 3; DROP TRIGGER audit_log_no_delete; DELETE FROM audit_log WHERE seq = 2;").expect("delete")
    });
    assert!(matches!(
        store.verify_audit_log(),
        Err(StoreError::AuditChainBroken { seq: 3 })
    ));
}

#[test]
fn pinned_pragmas_hold_on_writer_and_readers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let got: Vec<String> = store.raw_writer_for_tests(|c| {
        [
            "journal_mode",
            "synchronous",
            "foreign_keys",
            "secure_delete",
            "busy_timeout",
        ]
        .iter()
        .map(|p| {
            c.query_row(&format!("PRAGMA {p}"), [], |r| {
                r.get::<_, rusqlite::types::Value>(0)
            })
            .map(|v| format!("{v:?}"))
            .expect("pragma")
        })
        .collect()
    });
    assert_eq!(
        got,
        vec![
            "Text(\"wal\")",
            "Integer(2)",
            "Integer(1)",
            "Integer(1)",
            "Integer(5000)"
        ]
    );
    // A second connection opened by someone else sees WAL: it is persistent in the file.
    let other = rusqlite::Connection::open(db_path(dir.path())).expect("raw");
    let mode: String = other
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
}

#[test]
fn app_crash_durability_pins_normal_and_either_mode_reopens_the_other() {
    let dir = tempfile::tempdir().expect("tempdir");
    let who = subject("durability");
    let c = check(&who, T0, 3);
    {
        let store = Store::open(
            StoreConfig::new(db_path(dir.path())).durability(Durability::AppCrash),
            &provider(),
        )
        .expect("open app-crash");
        let sync: i64 = store.raw_writer_for_tests(|conn| {
            conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
                .expect("pragma")
        });
        assert_eq!(sync, 1, "AppCrash must run with synchronous=NORMAL");
        store.save_check(&c, None, &[]).expect("save");
    }
    // The mode is per connection, not stored in the file: a power-loss store opens it and
    // pins FULL again.
    let store = open(dir.path());
    let sync: i64 = store.raw_writer_for_tests(|conn| {
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("pragma")
    });
    assert_eq!(sync, 2);
    assert_eq!(store.check(&c.id).expect("read"), Some(c));
}

#[test]
fn bad_input_is_a_typed_error_and_stores_nothing() {
    assert!(matches!(
        SubjectId::new(""),
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(
        Purpose::new("Research!"),
        Err(StoreError::InvalidInput(_))
    ));
    assert!(matches!(Purpose::new(""), Err(StoreError::InvalidInput(_))));
    let dir = tempfile::tempdir().expect("tempdir");
    let store = with_raw(dir.path());
    let who = subject("alice");
    let mut c = check(&who, T0, 1);
    c.ended_at_ms = c.started_at_ms - 1;
    assert!(matches!(
        store.save_check(&c, None, &[]),
        Err(StoreError::InvalidInput(_))
    ));
    let ok = check(&who, T0, 2);
    let mut bad = window(0.0);
    bad.rate_hz = f64::NAN;
    assert!(matches!(
        store.save_check(&ok, None, &[bad]),
        Err(StoreError::InvalidInput(_))
    ));
    assert!(store
        .history(&HistoryQuery::new(who, T0 - 10, T0 + 10))
        .expect("history")
        .is_empty());
    assert!(matches!(
        store.put_model_bundle(&ModelBundle {
            model: String::new(),
            version: "1".into(),
            manifest: vec![],
            artifact: vec![]
        }),
        Err(StoreError::InvalidInput(_))
    ));
}

#[test]
fn store_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
}

#[test]
fn wal_is_checkpointed_off_the_commit_path_and_stays_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(dir.path());
    let cfg = StoreConfig::new(&path)
        .durability(Durability::AppCrash)
        .raw_retention(Some(Duration::from_secs(7 * 86_400)));
    let store = Store::open(cfg.clone(), &provider()).expect("open");
    assert!(
        !store.checkpoint_stats().thread_running,
        "opening a store started its maintenance thread"
    );
    let page_size: u64 = store.raw_writer_for_tests(|conn| {
        conn.query_row("PRAGMA page_size", [], |r| r.get(0))
            .expect("pragma")
    });
    let mut wal = path.clone().into_os_string();
    wal.push("-wal");
    let who = subject("wal");
    // Each save writes a 24 KB sealed raw window: 1,500 saves put about 9,000 pages through
    // the WAL, which without checkpoints would all stay in it; the writer's hard limit is
    // 4,000 pages.
    let mut ids = Vec::new();
    let mut largest_wal = 0;
    for i in 0..1500 {
        let c = check(&who, T0 + i, i as u64);
        store
            .save_check(&c, None, &[window(i as f32)])
            .expect("save");
        ids.push(c.id);
        let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        largest_wal = largest_wal.max(len);
    }
    let stats = store.checkpoint_stats();
    println!("{stats:?}, largest WAL {largest_wal} bytes");
    assert!(
        stats.thread_running,
        "the WAL passed the threshold: {stats:?}"
    );
    assert!(
        stats.background >= 1,
        "no checkpoint ran off the commit path: {stats:?}"
    );
    let written_pages = 1500 * (24_000 / page_size);
    let bound = (4_000 + 64) * page_size;
    assert!(
        largest_wal <= bound,
        "WAL reached {largest_wal} bytes (bound {bound}, {written_pages} pages written)"
    );
    store.stop_maintenance();
    assert!(
        !store.checkpoint_stats().thread_running,
        "stop joins the thread"
    );
    // Writes after a stop are fine (the thread starts again on the next need) and everything
    // committed survives a reopen.
    let last = check(&who, T0 + 10_000, 7);
    store.save_check(&last, None, &[]).expect("save after stop");
    ids.push(last.id);
    drop(store);
    let store = Store::open(cfg, &provider()).expect("reopen");
    for id in &ids {
        assert!(
            store.check(id).expect("read").is_some(),
            "a committed check is missing"
        );
    }
    store.integrity_check().expect("integrity");
}
