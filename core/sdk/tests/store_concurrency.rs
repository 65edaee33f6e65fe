//! Threads on one store and two store instances on one file: one writer at a time, readers
//! never wait for it, and no "database is locked" reaches any caller.

mod store_support;

use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use store_support::*;
use vitalcore::store::{HistoryQuery, OutboxDraft, Purpose, Store, StoreConfig};

const T0: i64 = 1_764_000_000_000;

#[test]
fn writer_and_reader_threads_on_two_store_instances_see_no_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Arc::new(open(dir.path()));
    // A second instance has its own writer and readers: the same situation as two processes.
    let b = Arc::new(
        Store::open(
            StoreConfig::new(db_path(dir.path())).readers(3),
            &provider(),
        )
        .expect("second"),
    );
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let per_thread = 60;
    let mut handles = Vec::new();
    for t in 0..6 {
        let store = if t % 2 == 0 { a.clone() } else { b.clone() };
        let errors = errors.clone();
        handles.push(std::thread::spawn(move || {
            let who = subject(&format!("writer-{t}"));
            for i in 0..per_thread {
                let c = check(&who, T0 + i * 1000, i as u64);
                let d = OutboxDraft {
                    purpose: Purpose::new("research").expect("p"),
                    check_id: Some(c.id),
                    payload: vec![t as u8],
                };
                if let Err(e) = store.save_check(&c, Some(&d), &[]) {
                    errors.lock().expect("errors").push(e.to_string());
                }
            }
        }));
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for r in 0..4 {
        let store = if r % 2 == 0 { a.clone() } else { b.clone() };
        let errors = errors.clone();
        let stop = stop.clone();
        readers.push(std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || reads == 0 {
                let who = subject(&format!("writer-{}", reads % 6));
                match store.history(&HistoryQuery::new(who, T0, T0 + 10_000_000)) {
                    Ok(h) => assert!(h
                        .windows(2)
                        .all(|w| w[0].started_at_ms <= w[1].started_at_ms)),
                    Err(e) => errors.lock().expect("errors").push(e.to_string()),
                }
                reads += 1;
            }
            reads
        }));
    }
    for h in handles {
        h.join().expect("writer thread");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let reads: u64 = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    let errors = errors.lock().expect("errors").clone();
    assert!(errors.is_empty(), "errors reached callers: {errors:?}");
    assert!(reads > 0);
    for t in 0..6 {
        let h = a
            .history(&HistoryQuery::new(
                subject(&format!("writer-{t}")),
                T0,
                T0 + 10_000_000,
            ))
            .expect("history");
        assert_eq!(h.len(), per_thread as usize);
    }
    assert_eq!(
        a.outbox_counts().expect("counts"),
        (6 * per_thread as u64, 0)
    );
    a.integrity_check().expect("integrity");
}

#[test]
fn readers_do_not_wait_for_an_open_write_transaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(dir.path()));
    let who = subject("alice");
    let before = check(&who, T0, 1);
    store.save_check(&before, None, &[]).expect("first");
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<usize>();
    let reader_store = store.clone();
    let reader_who = who.clone();
    let reader = std::thread::spawn(move || {
        go_rx.recv().expect("go");
        let store = Store::open(
            StoreConfig::new(reader_store.config().path()).audit_reads(false),
            &provider(),
        )
        .expect("second");
        let n = store
            .history(&HistoryQuery::new(reader_who, T0, T0 + 10_000_000))
            .expect("read during write")
            .len();
        done_tx.send(n).expect("done");
    });
    let during = check(&who, T0 + 1000, 2);
    let seen = store
        .write(|tx| {
            tx.insert_check(&during)?;
            // The write transaction stays open until the reader finished: if readers waited for
            // the writer this would never return.
            go_tx.send(()).ok();
            Ok(done_rx
                .recv_timeout(Duration::from_secs(20))
                .expect("the reader was blocked by the writer"))
        })
        .expect("write");
    reader.join().expect("reader");
    assert_eq!(
        seen, 1,
        "the reader sees the last committed state, not the open transaction"
    );
    assert_eq!(
        store
            .history(&HistoryQuery::new(who, T0, T0 + 10_000_000))
            .expect("after")
            .len(),
        2
    );
}
