//! Reopen after a kill mid-finish. Run by its own `main` (no libtest harness) because the test
//! binary re-executes itself as the child: `VITALCORE_ENGINE_ROLE=finisher` switches it into
//! that role.
//!
//! The child runs PPG checks back to back (raw retention on), announcing each `finish` before
//! calling it and acknowledging it after it returned; the parent SIGKILLs it at random
//! moments, reopens the engine and verifies that nothing is half-written: every stored check
//! has exactly its outbox record and its raw window, no outbox record or raw window lacks its
//! check, and every acknowledged check is there.

mod engine_support;
mod kill_seed;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use engine_support::*;
use kill_seed::kill_seed;
use vitalcore::{CheckKind, Config, SampleBatch, Vitalcore};

const ROLE: &str = "VITALCORE_ENGINE_ROLE";
const DIR: &str = "VITALCORE_ENGINE_DIR";

/// The engine's default durability (`Durability::AppCrash`, WAL with `synchronous=NORMAL`) is
/// the one under test: its promise is exactly that an acknowledged check survives a kill.
fn config(dir: &Path) -> Config {
    Config::new(dir).raw_retention(Some(Duration::from_secs(86_400)))
}

fn finisher(dir: &Path) {
    let engine = Vitalcore::open(config(dir), &keys()).expect("child open");
    let x = ppg_100hz();
    let mut out = std::io::stdout().lock();
    for k in 0u64.. {
        let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
        let start = T0_S + k as f64 * 60.0;
        for (i, chunk) in x.chunks(100).enumerate() {
            s.push_samples(
                "ppg",
                SampleBatch::uniform(start + i as f64, 100.0, chunk.to_vec()),
            )
            .expect("push");
        }
        writeln!(out, "finishing;").expect("stdout");
        out.flush().expect("flush");
        let r = s.finish().expect("finish");
        writeln!(out, "ack {};", r.check.id).expect("stdout");
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

enum Line {
    Finishing,
    Ack(String),
}

fn kill_mid_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    // VITALCORE_KILL_SEED replays a run: the seed is printed, and libtest shows it on failure.
    let seed = kill_seed("engine kill harness");
    let mut rng = Rng(seed);
    let exe = std::env::current_exe().expect("own binary");
    let mut acked: BTreeSet<String> = BTreeSet::new();
    let rounds = 20;
    let mut mid_finish = 0;
    let started = Instant::now();
    for _ in 0..rounds {
        let mut child = Command::new(&exe)
            .env(ROLE, "finisher")
            .env(DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn finisher");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let msg = if line == "finishing;" {
                    Line::Finishing
                } else if let Some(id) = line.strip_prefix("ack ").and_then(|s| s.strip_suffix(';'))
                {
                    Line::Ack(id.to_owned())
                } else {
                    continue;
                };
                if tx.send(msg).is_err() {
                    break;
                }
            }
        });
        // Wait until the child is inside its first finish, then kill at a random point of
        // the following stream of finishes.
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Line::Finishing) => {}
            _ => panic!("the child never reached finish"),
        }
        std::thread::sleep(Duration::from_micros(rng.next() % 100_000));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        reader.join().expect("reader thread");
        let mut in_finish = true;
        for line in rx.try_iter() {
            match line {
                Line::Finishing => in_finish = true,
                Line::Ack(id) => {
                    in_finish = false;
                    acked.insert(id);
                }
            }
        }
        mid_finish += usize::from(in_finish);
        verify(dir.path(), &acked);
    }
    // Most kills must land inside a finish (between its announcement and its return), or the
    // run proves little.
    assert!(
        mid_finish * 2 >= rounds,
        "only {mid_finish} of {rounds} kills landed mid-finish"
    );
    println!(
        "engine kill harness: {rounds} kills ({mid_finish} mid-finish), {} acknowledged checks verified in {:?}",
        acked.len(),
        started.elapsed()
    );
}

fn verify(dir: &Path, acked: &BTreeSet<String>) {
    let engine = Vitalcore::open(config(dir), &keys()).expect("reopen after SIGKILL");
    let checks = engine.checks(0, i64::MAX, None).expect("history");
    let ids: BTreeSet<String> = checks.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids.len(), checks.len());
    assert!(
        acked.is_subset(&ids),
        "an acknowledged check is missing after the kill"
    );
    for c in &checks {
        let raw = engine.raw_samples(&c.id).expect("raw");
        assert_eq!(raw.len(), 1, "check without its raw window");
        assert_eq!(raw[0].values.len(), 2483);
        assert!(c.features.contains_key("hr_mean"));
    }
    drop(engine);
    let store = store(dir);
    store
        .integrity_check()
        .expect("integrity_check after SIGKILL");
    let out = outbox(&store);
    let with_check: BTreeSet<String> = out
        .iter()
        .filter_map(|r| r.check_id.map(|id| id.to_string()))
        .collect();
    assert_eq!(out.len(), checks.len(), "outbox records vs checks");
    assert_eq!(
        with_check, ids,
        "every check has its outbox record, and only those"
    );
    let raw_rows: i64 = store.raw_writer_for_tests(|c| {
        c.query_row("SELECT count(*) FROM raw_windows", [], |r| r.get(0))
            .expect("count")
    });
    assert_eq!(raw_rows as usize, checks.len(), "raw windows vs checks");
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count()
}

/// This binary runs single-threaded (no test harness), so the thread count is exact: opening
/// starts nothing in the background; a capture runs one worker until its handle is dropped.
fn open_starts_no_background_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let before = threads();
    let engine = Vitalcore::open(
        config(dir.path()).sync_endpoint("https://sync.invalid"),
        &keys(),
    )
    .expect("open");
    assert_eq!(threads(), before, "open started a thread");
    let s = engine.start_check(CheckKind::PpgRhythm).expect("start");
    assert_eq!(threads(), before, "a check session started a thread");
    s.cancel().expect("cancel");
    let cap = engine
        .start_capture(vitalcore::CaptureConfig::new(CheckKind::PpgRhythm))
        .expect("capture");
    assert_eq!(threads(), before + 1, "a capture runs exactly one worker");
    drop(cap);
    assert_eq!(threads(), before, "dropping the capture ends its worker");
    engine.shutdown().expect("shutdown");
    println!("open starts no background work: ok");
}

fn main() {
    let dir = std::env::var_os(DIR).map(std::path::PathBuf::from);
    match (std::env::var(ROLE).as_deref(), dir) {
        (Ok("finisher"), Some(dir)) => finisher(&dir),
        _ => {
            open_starts_no_background_work();
            kill_mid_finish();
            println!("engine_processes: all passed");
        }
    }
}
