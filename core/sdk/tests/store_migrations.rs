//! Migrations: upgrade of a committed v1 store file, released migrations frozen, failed
//! migrations rolled back, newer or foreign files left untouched.
//!
//! The fixture `tests/fixtures/store_v1.db` was written by this SDK at schema version 1. To
//! regenerate it (only if migration 001 itself was wrong before release), run
//! `VITALCORE_WRITE_STORE_V1_FIXTURE=1 cargo test -p vitalcore --test store_migrations`.

mod store_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use store_support::*;
use vitalcore::store::{
    CheckKind, CheckRecord, ConsentDecision, HistoryQuery, ModelBundle, OutboxDraft, OutcomeLabel,
    Prediction, Purpose, RawWindow, RecordId, SignalQuality, Store, StoreConfig, StoreError,
    Timings, SCHEMA_VERSION,
};

const T0: i64 = 1_764_000_000_000;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store_v1.db")
}

/// What the fixture holds, rebuilt deterministically. Self-contained on purpose: it must not
/// follow later edits of the feature set or of the shared test helpers.
fn fixture_checks() -> Vec<CheckRecord> {
    let who = subject("fixture-subject");
    (0..3u8)
        .map(|i| {
            let start = T0 + i64::from(i) * 60_000;
            CheckRecord {
                id: RecordId([i + 1; 16]),
                subject: who.clone(),
                kind: CheckKind::new("ppg").expect("kind"),
                started_at_ms: start,
                ended_at_ms: start + 60_000,
                session: [("device", "fixture-phone"), ("app_version", "0.1.0")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                features: (0..40)
                    .map(|j| {
                        (
                            format!("feature_{j:02}"),
                            f64::from(i) * 10.0 + f64::from(j) * 0.5,
                        )
                    })
                    .collect(),
                quality: SignalQuality {
                    score: 0.9,
                    usable: true,
                },
                prediction: Some(Prediction {
                    model_name: "afib".into(),
                    model_version: "1.0.0".into(),
                    outputs: [("p_afib".to_owned(), 0.25)].into_iter().collect(),
                }),
                timings: Timings {
                    features_us: 1000,
                    inference_us: 200,
                    total_us: 1300,
                },
            }
        })
        .collect()
}

fn fixture_window() -> RawWindow {
    RawWindow {
        channel: "ppg_green".into(),
        start_ms: T0,
        rate_hz: 100.0,
        values: (0..500).map(|i| i as f32 * 0.5).collect(),
    }
}

fn fixture_label() -> OutcomeLabel {
    OutcomeLabel {
        name: "afib".into(),
        value: 0.0,
        source: "self_report".into(),
        recorded_at_ms: T0,
    }
}

fn fixture_consent() -> ConsentDecision {
    ConsentDecision {
        purpose: Purpose::new("research").expect("p"),
        granted: true,
        at_ms: T0,
        policy_version: "2026-01".into(),
    }
}

fn fixture_bundle() -> ModelBundle {
    ModelBundle {
        model: "afib".into(),
        version: "1.0.0".into(),
        manifest: b"manifest v1".to_vec(),
        artifact: b"onnx v1".to_vec(),
    }
}

fn write_fixture(path: &Path) {
    let _ = std::fs::remove_file(path);
    let cfg = StoreConfig::new(path)
        .schema_target(1)
        .raw_retention(Some(Duration::from_secs(100 * 365 * 86_400)));
    let store = Store::open(cfg, &provider()).expect("create v1");
    let checks = fixture_checks();
    let who = checks[0].subject.clone();
    for (i, c) in checks.iter().enumerate() {
        let draft = OutboxDraft {
            purpose: Purpose::new("research").expect("p"),
            check_id: Some(c.id),
            payload: format!("outbox {i}").into_bytes(),
        };
        let raw = if i == 0 {
            vec![fixture_window()]
        } else {
            vec![]
        };
        store.save_check(c, Some(&draft), &raw).expect("save");
    }
    store
        .write(|tx| tx.insert_label(&checks[0].id, &fixture_label()))
        .expect("label");
    store
        .record_consent(&who, &fixture_consent())
        .expect("consent");
    store.put_model_bundle(&fixture_bundle()).expect("bundle");
    store.set_active_model("afib", "1.0.0").expect("active");
    store
        .history(&HistoryQuery::new(who, T0, T0 + 3_600_000))
        .expect("audited read");
    store.close().expect("close");
    // Small committed file: 1 KiB pages, vacuumed, back in WAL mode.
    let c = rusqlite::Connection::open(path).expect("raw");
    c.execute_batch(
        "PRAGMA journal_mode = DELETE; PRAGMA page_size = 1024; VACUUM; PRAGMA journal_mode = WAL;",
    )
    .expect("compact");
}

fn schema_of(path: &Path) -> Vec<(String, String)> {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open");
    let mut s = c.prepare("SELECT name, coalesce(sql, '') FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name").expect("prepare");
    s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn copy_fixture(dir: &Path) -> PathBuf {
    assert!(
        fixture().exists(),
        "missing committed fixture {}",
        fixture().display()
    );
    let p = db_path(dir);
    std::fs::copy(fixture(), &p).expect("copy fixture");
    p
}

fn user_version(p: &Path) -> i64 {
    rusqlite::Connection::open(p)
        .expect("raw")
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version")
}

#[test]
fn migration_001_still_creates_the_committed_v1_schema() {
    if std::env::var_os("VITALCORE_WRITE_STORE_V1_FIXTURE").is_some() {
        write_fixture(&fixture());
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = db_path(dir.path());
    drop(Store::open(StoreConfig::new(&fresh).schema_target(1), &provider()).expect("create v1"));
    assert_eq!(user_version(&fresh), 1);
    assert_eq!(
        schema_of(&fresh),
        schema_of(&fixture()),
        "a released migration was edited: add a new one instead"
    );
    assert_eq!(user_version(&fixture()), 1);
}

#[test]
fn committed_v1_store_upgrades_to_current_with_every_record_readable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = copy_fixture(dir.path());
    assert_eq!(user_version(&path), 1);
    let cfg = StoreConfig::new(&path).raw_retention(Some(Duration::from_secs(86_400)));
    let store = Store::open(cfg, &provider()).expect("upgrade");
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));
    store.integrity_check().expect("integrity after upgrade");

    let checks = fixture_checks();
    let who = checks[0].subject.clone();
    assert_eq!(
        store
            .history(&HistoryQuery::new(who.clone(), T0, T0 + 3_600_000))
            .expect("history"),
        checks
    );
    assert_eq!(
        store.raw_windows(&checks[0].id).expect("raw"),
        vec![fixture_window()]
    );
    assert_eq!(
        store.labels(&checks[0].id).expect("labels"),
        vec![fixture_label()]
    );
    assert_eq!(
        store
            .consent(&who, &Purpose::new("research").expect("p"))
            .expect("consent"),
        Some(fixture_consent())
    );
    assert_eq!(
        store.active_model("afib").expect("model"),
        Some(fixture_bundle())
    );
    // v1 outbox rows got the new column's default (due at once) and use it from now on.
    let due = store
        .outbox_due(&[Purpose::new("research").expect("p")], 0, 10)
        .expect("due");
    assert_eq!(
        due.iter().map(|r| r.payload.clone()).collect::<Vec<_>>(),
        (0..3)
            .map(|i| format!("outbox {i}").into_bytes())
            .collect::<Vec<_>>()
    );
    let (batch, _) = store.outbox_claim(&[due[0].id]).expect("claim");
    store.outbox_fail(&batch, 10_000, 5).expect("fail");
    assert_eq!(
        store
            .outbox_due(&[Purpose::new("research").expect("p")], 9_999, 10)
            .expect("due")
            .len(),
        2
    );
    // The audit chain spans the upgrade.
    let before = store.verify_audit_log().expect("chain");
    assert!(before >= 1);
    let c = check(&who, T0 + 10 * 60_000, 42);
    store
        .save_check(&c, None, &[])
        .expect("new write after upgrade");
    assert_eq!(store.check(&c.id).expect("read"), Some(c));
    assert!(store.verify_audit_log().expect("chain") > before);
}

#[test]
fn failed_migration_rolls_back_and_keeps_the_old_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = copy_fixture(dir.path());
    // An object in the way of migration 002 makes it fail half way.
    rusqlite::Connection::open(&path)
        .expect("raw")
        .execute_batch("CREATE INDEX outbox_due ON outbox (created_ms);")
        .expect("block");
    let err = Store::open(StoreConfig::new(&path), &provider()).expect_err("must fail");
    assert!(
        matches!(err, StoreError::Migration { version: 2, .. }),
        "{err:?}"
    );
    assert_eq!(user_version(&path), 1);
    let cols: Vec<String> = {
        let c = rusqlite::Connection::open(&path).expect("raw");
        let mut s = c
            .prepare("SELECT name FROM pragma_table_info('outbox')")
            .expect("p");
        s.query_map([], |r| r.get(0))
            .expect("q")
            .collect::<Result<_, _>>()
            .expect("rows")
    };
    assert!(
        !cols.iter().any(|c| c == "next_attempt_at_ms"),
        "the ALTER TABLE was not rolled back"
    );
    // Remove the obstacle: the upgrade then succeeds and the data is there.
    rusqlite::Connection::open(&path)
        .expect("raw")
        .execute_batch("DROP INDEX outbox_due;")
        .expect("unblock");
    let store = Store::open(StoreConfig::new(&path), &provider()).expect("upgrade");
    assert_eq!(
        store.check(&fixture_checks()[1].id).expect("read"),
        Some(fixture_checks()[1].clone())
    );
}

fn digest(p: &Path) -> String {
    hex::encode(
        ring::digest::digest(&ring::digest::SHA256, &std::fs::read(p).expect("read")).as_ref(),
    )
}

#[test]
fn newer_schema_and_foreign_databases_are_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = copy_fixture(dir.path());
    rusqlite::Connection::open(&path)
        .expect("raw")
        .execute_batch("PRAGMA user_version = 99;")
        .expect("bump");
    let before = digest(&path);
    let err = Store::open(StoreConfig::new(&path), &provider()).expect_err("too new");
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew {
                found: 99,
                supported: SCHEMA_VERSION
            }
        ),
        "{err:?}"
    );
    assert_eq!(digest(&path), before);

    let other = dir.path().join("other.db");
    rusqlite::Connection::open(&other)
        .expect("raw")
        .execute_batch("CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('x');")
        .expect("foreign");
    let before = digest(&other);
    let err = Store::open(StoreConfig::new(&other), &provider()).expect_err("foreign");
    assert!(matches!(err, StoreError::NotAStore), "{err:?}");
    assert_eq!(digest(&other), before);
}
