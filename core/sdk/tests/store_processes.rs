//! Multi-process tests, run by their own `main` (no libtest harness) because the test binary
//! re-executes itself as the child: `VITALCORE_STORE_ROLE=writer|stress` switches it into that
//! role.
//!
//! * SIGKILL harness: a child writes checks (each with its outbox record and raw window in one
//!   transaction) and prints every id after its commit returned; the parent kills it at random
//!   points, reopens, and verifies every acknowledged record is present, intact and decryptable
//!   and that `PRAGMA integrity_check` passes.
//! * Two processes (plus the parent) write and read the same file at once; no error, in
//!   particular no "database is locked", may reach any of them.

mod kill_seed;
mod store_support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use kill_seed::kill_seed;
use store_support::*;
use vitalcore::store::{
    CheckRecord, Durability, HistoryQuery, OutboxDraft, Purpose, RawWindow, RecordId, Store,
    StoreConfig, SubjectId,
};

const ROLE: &str = "VITALCORE_STORE_ROLE";
const DIR: &str = "VITALCORE_STORE_DIR";
const T0: i64 = 1_764_000_000_000;

const DURABILITY: &str = "VITALCORE_STORE_DURABILITY";

fn config(dir: &Path) -> StoreConfig {
    // Writers alternate between the two durability modes: both promise that an acknowledged
    // write survives SIGKILL (they differ only on power loss, which no test here can cause).
    let durability = match std::env::var(DURABILITY).as_deref() {
        Ok("app_crash") => Durability::AppCrash,
        _ => Durability::PowerLoss,
    };
    StoreConfig::new(db_path(dir))
        .raw_retention(Some(Duration::from_secs(30 * 86_400)))
        .durability(durability)
}

/// The record with this sequence number, rebuilt identically by child and parent.
fn record(seq: u64) -> (CheckRecord, OutboxDraft, RawWindow) {
    let who = subject("crash-subject");
    let mut c = check(&who, T0 + seq as i64 * 1000, seq);
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&seq.to_be_bytes());
    id[8..].copy_from_slice(b"sigkill!");
    c.id = RecordId(id);
    let draft = OutboxDraft {
        purpose: Purpose::new("research").expect("p"),
        check_id: Some(c.id),
        payload: seq.to_le_bytes().to_vec(),
    };
    let raw = RawWindow {
        channel: "ppg".into(),
        start_ms: c.started_at_ms,
        rate_hz: 100.0,
        values: (0..500).map(|i| (seq + i) as f32).collect(),
    };
    (c, draft, raw)
}

fn writer(dir: &Path, mut start: u64) {
    let store = Store::open(config(dir), &provider()).expect("child open");
    // The previous child may have committed records it was killed before acknowledging.
    while store
        .check(&record(start).0.id)
        .expect("child probe")
        .is_some()
    {
        start += 1;
    }
    let mut out = std::io::stdout().lock();
    for seq in start.. {
        let (c, d, r) = record(seq);
        store
            .save_check(&c, Some(&d), std::slice::from_ref(&r))
            .expect("child write");
        // Acknowledged only after the commit returned; the ';' marks a complete line.
        writeln!(out, "ack {seq};").expect("stdout");
        out.flush().expect("flush");
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn sigkill_harness() {
    let dir = tempfile::tempdir().expect("tempdir");
    // VITALCORE_KILL_SEED replays a run: the seed is printed, and libtest shows it on failure.
    let seed = kill_seed("sigkill harness");
    let mut rng = Rng(seed);
    let exe = std::env::current_exe().expect("own binary");
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let mut next = 0u64;
    let rounds = 50;
    let started = Instant::now();
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .env(ROLE, "writer")
            .env(DIR, dir.path())
            .env("VITALCORE_STORE_START", next.to_string())
            .env(
                DURABILITY,
                if round % 2 == 1 {
                    "app_crash"
                } else {
                    "power_loss"
                },
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(n) = line.strip_prefix("ack ").and_then(|s| s.strip_suffix(';')) {
                    if tx.send(n.parse::<u64>().expect("ack number")).is_err() {
                        break;
                    }
                }
            }
        });
        // Random kill point: sometimes during open/recovery, mostly mid-stream of commits.
        let delay = if round % 5 == 0 {
            rng.next() % 20
        } else {
            20 + rng.next() % 250
        };
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        reader.join().expect("reader thread");
        let new: Vec<u64> = rx.try_iter().collect();
        for &n in &new {
            acked.insert(n);
        }
        next = acked.iter().next_back().map_or(next, |m| m + 1).max(next);
        // A record may have committed without its ack being printed: the next child skips it,
        // and it is not checked (only acknowledged records are promised).
        verify(dir.path(), &new);
    }
    verify(dir.path(), &acked.iter().copied().collect::<Vec<_>>());
    let store = Store::open(config(dir.path()), &provider()).expect("reopen");
    let all = store
        .history(&HistoryQuery::new(subject("crash-subject"), 0, i64::MAX))
        .expect("history");
    assert!(
        all.len() >= acked.len(),
        "history has {} checks, {} were acknowledged",
        all.len(),
        acked.len()
    );
    assert!(
        acked.len() >= 50,
        "too few acknowledged writes ({}) for a meaningful run",
        acked.len()
    );
    println!(
        "sigkill harness: {rounds} kills, {} acknowledged records verified in {:?}",
        acked.len(),
        started.elapsed()
    );
}

fn verify(dir: &Path, seqs: &[u64]) {
    let store =
        Store::open(config(dir).audit_reads(false), &provider()).expect("reopen after SIGKILL");
    store
        .integrity_check()
        .expect("integrity_check after SIGKILL");
    for &seq in seqs {
        let (c, _, r) = record(seq);
        assert_eq!(
            store.check(&c.id).expect("read acknowledged check"),
            Some(c.clone()),
            "acknowledged check {seq} lost or altered"
        );
        assert_eq!(
            store.raw_windows(&c.id).expect("raw"),
            vec![r],
            "raw window of {seq}"
        );
    }
    let due = store
        .outbox_due(
            &[Purpose::new("research").expect("p")],
            i64::MAX,
            usize::MAX >> 1,
        )
        .expect("outbox");
    let payloads: BTreeSet<Vec<u8>> = due.into_iter().map(|r| r.payload).collect();
    for &seq in seqs {
        assert!(
            payloads.contains(seq.to_le_bytes().as_slice()),
            "outbox record of {seq} lost"
        );
    }
}

fn stress_child(dir: &Path, who: &str, n: usize) {
    let store = Store::open(config(dir), &provider()).expect("stress open");
    let subject = subject(who);
    for i in 0..n {
        let c = check(&subject, T0 + i as i64 * 1000, i as u64);
        let d = OutboxDraft {
            purpose: Purpose::new("research").expect("p"),
            check_id: Some(c.id),
            payload: vec![1],
        };
        if let Err(e) = store.save_check(&c, Some(&d), &[]) {
            println!("error {e}");
            std::process::exit(2);
        }
        if i % 10 == 0 {
            if let Err(e) = store.history(&HistoryQuery::new(subject.clone(), T0, T0 + 10_000_000))
            {
                println!("error {e}");
                std::process::exit(2);
            }
        }
    }
    println!("done;");
}

fn two_process_stress() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Created first, so the children race on writes rather than on creation.
    drop(Store::open(config(dir.path()), &provider()).expect("create"));
    let exe = std::env::current_exe().expect("own binary");
    let n = 300;
    let children: Vec<_> = ["proc-a", "proc-b"]
        .iter()
        .map(|who| {
            Command::new(&exe)
                .env(ROLE, "stress")
                .env(DIR, dir.path())
                .env("VITALCORE_STORE_SUBJECT", who)
                .env("VITALCORE_STORE_N", n.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn stress child")
        })
        .collect();
    // The parent writes too: three processes on one file.
    stress_child_inline(dir.path(), "parent", n);
    for child in children {
        let out = child.wait_with_output().expect("wait");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("done;"),
            "stress child failed: {text}"
        );
        assert!(
            !text.contains("locked"),
            "'database is locked' reached the caller: {text}"
        );
    }
    let store = Store::open(config(dir.path()), &provider()).expect("reopen");
    store.integrity_check().expect("integrity");
    for who in ["proc-a", "proc-b", "parent"] {
        let h = store
            .history(&HistoryQuery::new(subject(who), T0, T0 + 10_000_000))
            .expect("history");
        assert_eq!(h.len(), n, "{who} lost writes");
    }
    assert_eq!(store.outbox_counts().expect("counts"), (3 * n as u64, 0));
    println!("two-process stress: 3 processes x {n} committed checks, no error");
}

fn stress_child_inline(dir: &Path, who: &str, n: usize) {
    let store = Store::open(config(dir), &provider()).expect("open");
    let s: SubjectId = subject(who);
    for i in 0..n {
        let c = check(&s, T0 + i as i64 * 1000, i as u64);
        let d = OutboxDraft {
            purpose: Purpose::new("research").expect("p"),
            check_id: Some(c.id),
            payload: vec![1],
        };
        store
            .save_check(&c, Some(&d), &[])
            .expect("parent write must not fail");
        if i % 10 == 0 {
            store
                .history(&HistoryQuery::new(s.clone(), T0, T0 + 10_000_000))
                .expect("parent read");
        }
    }
}

fn main() {
    let dir = std::env::var_os(DIR).map(std::path::PathBuf::from);
    match (std::env::var(ROLE).as_deref(), dir) {
        (Ok("writer"), Some(dir)) => {
            let start = std::env::var("VITALCORE_STORE_START")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            writer(&dir, start);
        }
        (Ok("stress"), Some(dir)) => {
            let who = std::env::var("VITALCORE_STORE_SUBJECT").expect("subject");
            let n = std::env::var("VITALCORE_STORE_N")
                .ok()
                .and_then(|s| s.parse().ok())
                .expect("n");
            stress_child(&dir, &who, n);
        }
        _ => {
            let t = Instant::now();
            sigkill_harness();
            two_process_stress();
            println!("store_processes: all passed in {:?}", t.elapsed());
        }
    }
}
