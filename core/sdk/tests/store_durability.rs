//! Failure handling: only a known-corrupt file is quarantined (moved aside, never deleted);
//! disk full and a locked database keep every byte of data.

mod store_support;

use std::path::Path;
use std::time::Duration;

use store_support::*;
use vitalcore::store::{HistoryQuery, RawWindow, Store, StoreConfig, StoreError};

const T0: i64 = 1_764_000_000_000;

fn digest(b: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, b).as_ref())
}

fn quarantined_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("readdir")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains(".corrupt-"))
        .collect();
    v.sort();
    v
}

#[test]
fn garbage_file_is_quarantined_not_deleted_and_a_fresh_store_follows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(dir.path());
    let garbage: Vec<u8> = (0..16_384u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&path, &garbage).expect("write garbage");
    let err = Store::open(StoreConfig::new(&path), &provider()).expect_err("corrupt");
    let StoreError::Corrupt {
        quarantined_to: Some(moved),
    } = err
    else {
        panic!("expected quarantine, got {err:?}")
    };
    assert!(!path.exists(), "the corrupt file must be moved away");
    assert_eq!(
        digest(&std::fs::read(&moved).expect("quarantined file")),
        digest(&garbage),
        "quarantined bytes must be kept as they were"
    );
    assert!(moved
        .file_name()
        .expect("name")
        .to_string_lossy()
        .starts_with("vitalcore.db.corrupt-"));
    // The next open starts an empty store; the quarantined file stays.
    let store = open(dir.path());
    assert!(store
        .history(&HistoryQuery::new(subject("a"), 0, i64::MAX))
        .expect("empty")
        .is_empty());
    assert!(moved.exists());
}

#[test]
fn damaged_pages_fail_the_open_check_and_are_quarantined_with_their_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = db_path(dir.path());
    {
        let store = open(dir.path());
        let who = subject("alice");
        store
            .write(|tx| {
                for i in 0..200 {
                    tx.insert_check(&check(&who, T0 + i * 1000, i as u64))?;
                }
                Ok(())
            })
            .expect("fill");
        store.close().expect("close");
    }
    let mut bytes = std::fs::read(&path).expect("read");
    let page = 4096;
    assert!(bytes.len() > 8 * page, "store too small for the test");
    // Scribble over the b-tree headers of a few interior pages (not page 1, which holds the
    // file header: that case is the garbage-file test).
    for p in [3usize, 5, 7] {
        for b in &mut bytes[p * page..p * page + 64] {
            *b = 0xA5;
        }
    }
    std::fs::write(&path, &bytes).expect("damage");
    // A leftover WAL travels with its database into quarantine.
    let wal = dir.path().join("vitalcore.db-wal");
    std::fs::write(&wal, b"").expect("wal");
    let err = Store::open(StoreConfig::new(&path), &provider()).expect_err("corrupt");
    let StoreError::Corrupt {
        quarantined_to: Some(moved),
    } = err
    else {
        panic!("expected quarantine, got {err:?}")
    };
    assert_eq!(
        digest(&std::fs::read(&moved).expect("kept")),
        digest(&bytes)
    );
    let names = quarantined_files(dir.path());
    // Main file and WAL (the -shm the probe created travels along too).
    assert!(names.iter().any(|n| n.ends_with("-wal")), "{names:?}");
    assert!(
        names
            .iter()
            .all(|n| n.starts_with(&*moved.file_name().expect("name").to_string_lossy())),
        "{names:?}"
    );
    assert!(!path.exists() && !wal.exists());
}

#[test]
fn disk_full_is_typed_rolls_back_and_keeps_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig::new(db_path(dir.path())).raw_retention(Some(Duration::from_secs(3600)));
    let store = Store::open(cfg.clone(), &provider()).expect("open");
    let who = subject("alice");
    let kept = check(&who, T0, 1);
    store.save_check(&kept, None, &[]).expect("first");
    // SQLite's page limit produces the same SQLITE_FULL a full disk does.
    store.raw_writer_for_tests(|c| {
        let pages: i64 = c
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .expect("pages");
        c.query_row(
            &format!("PRAGMA max_page_count = {}", pages + 2),
            [],
            |_| Ok(()),
        )
        .expect("limit");
    });
    let big = RawWindow {
        channel: "ppg".into(),
        start_ms: T0,
        rate_hz: 100.0,
        values: vec![1.0; 60_000],
    };
    let lost = check(&who, T0 + 1000, 2);
    let err = store.save_check(&lost, None, &[big]).expect_err("full");
    assert!(matches!(err, StoreError::DiskFull), "{err:?}");
    assert_eq!(
        store.check(&lost.id).expect("read"),
        None,
        "the failed transaction was rolled back whole"
    );
    assert_eq!(store.check(&kept.id).expect("read"), Some(kept.clone()));
    drop(store);
    assert!(
        quarantined_files(dir.path()).is_empty(),
        "disk full must never quarantine"
    );
    let store = Store::open(cfg, &provider()).expect("reopen");
    store.integrity_check().expect("integrity");
    assert_eq!(store.check(&kept.id).expect("read"), Some(kept));
}

#[test]
fn a_locked_database_is_waited_out_not_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(dir.path());
    let who = subject("alice");
    // Another connection (as another process would) holds the write lock for a while.
    let path = db_path(dir.path());
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(path).expect("foreign");
        c.execute_batch("BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS foreign_lock (x);")
            .expect("lock");
        held_tx.send(()).expect("signal");
        std::thread::sleep(Duration::from_millis(700));
        c.execute_batch("ROLLBACK").expect("release");
    });
    held_rx.recv().expect("lock held");
    let c = check(&who, T0, 1);
    let started = std::time::Instant::now();
    store
        .save_check(&c, None, &[])
        .expect("a locked store must be waited for, not reported");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the write did not wait for the lock"
    );
    holder.join().expect("holder");
    assert_eq!(store.check(&c.id).expect("read"), Some(c));
}

#[test]
fn a_lock_held_beyond_the_budget_is_a_typed_busy_error_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig::new(db_path(dir.path())).busy_budget(Duration::ZERO);
    let store = Store::open(cfg, &provider()).expect("open");
    let who = subject("alice");
    let kept = check(&who, T0, 1);
    store.save_check(&kept, None, &[]).expect("first");
    let path = db_path(dir.path());
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let c = rusqlite::Connection::open(path).expect("foreign");
        c.execute_batch("BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS foreign_lock (x);")
            .expect("lock");
        held_tx.send(()).expect("signal");
        let _ = done_rx.recv_timeout(Duration::from_secs(20));
        c.execute_batch("ROLLBACK").expect("release");
    });
    held_rx.recv().expect("lock held");
    let err = store
        .save_check(&check(&who, T0 + 1, 2), None, &[])
        .expect_err("busy beyond budget");
    assert!(matches!(err, StoreError::Busy), "{err:?}");
    assert!(!err.to_string().contains("locked"));
    done_tx.send(()).expect("release");
    holder.join().expect("holder");
    assert_eq!(store.check(&kept.id).expect("read"), Some(kept));
}
