//! Encrypted store vs the same schema in plaintext SQLite, in the same run.
//!
//! Both sides use the same migrations, the same pinned pragmas (WAL, synchronous=FULL,
//! foreign_keys, secure_delete), the same plaintext encoding and the same transaction pattern;
//! the only difference is what the encrypted store adds: subject HMAC, data key lookup, AES-GCM
//! sealing/opening with bound associated data. Read-side audit entries are off on the encrypted
//! side (`audit_reads(false)`) because the baseline has no audit log.
//!
//! Prints a summary (throughput ratios, p50/p99 latency of one committed check write) and then
//! runs the criterion benchmarks. `VITALCORE_BENCH_QUICK=1` shortens everything.
#![allow(missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use rusqlite::{params, Connection, TransactionBehavior};
use vitalcore::keys::InMemoryKeyProvider;
use vitalcore::store::{
    bench_support, CheckKind, CheckRecord, HistoryQuery, Prediction, RawWindow, RecordId,
    SignalQuality, Store, StoreConfig, SubjectId, Timings,
};

const T0: i64 = 1_764_000_000_000;

fn quick() -> bool {
    std::env::var_os("VITALCORE_BENCH_QUICK").is_some()
}

fn subject() -> SubjectId {
    SubjectId::new("bench-subject").expect("valid")
}

/// A typical check: the 23 features of set v1 padded to 40, session metadata, prediction.
fn check(i: u64) -> CheckRecord {
    let mut names: Vec<String> = vitalcore::signal::FEATURES_V1
        .iter()
        .map(|f| f.name.to_owned())
        .collect();
    let mut k = 0;
    while names.len() < 40 {
        names.push(format!("band_power_{k}"));
        k += 1;
    }
    CheckRecord {
        id: RecordId::random().expect("rng"),
        subject: subject(),
        kind: CheckKind::new("ppg").expect("kind"),
        started_at_ms: T0 + i as i64 * 1000,
        ended_at_ms: T0 + i as i64 * 1000 + 60_000,
        session: [
            ("device", "Pixel 8"),
            ("sensor", "camera_ppg"),
            ("app_version", "1.4.2"),
        ]
        .into_iter()
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .collect(),
        features: names
            .into_iter()
            .enumerate()
            .map(|(j, n)| (n, 60.0 + (i + j as u64) as f64 * 0.37))
            .collect(),
        quality: SignalQuality {
            score: 0.93,
            usable: true,
        },
        prediction: Some(Prediction {
            model_name: "afib".into(),
            model_version: "1.2.0".into(),
            outputs: [("p_afib".to_owned(), 0.12)].into_iter().collect(),
        }),
        timings: Timings {
            features_us: 1200,
            inference_us: 300,
            total_us: 1700,
        },
    }
}

fn raw_window() -> RawWindow {
    RawWindow {
        channel: "ppg_green".into(),
        start_ms: T0,
        rate_hz: 100.0,
        values: (0..6000)
            .map(|i| (i as f32 * 0.01).sin() * 1000.0)
            .collect(),
    }
}

fn encrypted(dir: &Path) -> Store {
    let cfg = StoreConfig::new(dir.join("enc.db"))
        .raw_retention(Some(Duration::from_secs(86_400)))
        .audit_reads(false);
    Store::open(cfg, &InMemoryKeyProvider::new([7; 32])).expect("open encrypted")
}

/// The baseline: same file layout, same pragmas, plaintext blobs.
struct Plain {
    conn: Connection,
}

impl Plain {
    fn open(dir: &Path) -> Self {
        let conn = Connection::open(dir.join("plain.db")).expect("open plain");
        conn.busy_timeout(Duration::from_secs(5)).expect("busy");
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .expect("wal");
        assert_eq!(mode, "wal");
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON; PRAGMA temp_store = MEMORY;")
            .expect("pragmas");
        for (_, sql) in bench_support::MIGRATIONS {
            conn.execute_batch(sql).expect("schema");
        }
        Self { conn }
    }

    fn insert_check(tx: &Connection, c: &CheckRecord) {
        let (f, d) = bench_support::encode_check(c);
        tx.prepare_cached(
            "INSERT INTO checks (id, subject_tag, key_id, kind, started_min, features, detail) VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6)",
        )
        .expect("prepare")
        .execute(params![&c.id.0[..], &b"bench-subject"[..], c.kind.as_str(), c.started_at_ms / 60_000, f, d])
        .expect("insert");
    }

    fn save_checks(&mut self, cs: &[CheckRecord]) {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("begin");
        for c in cs {
            Self::insert_check(&tx, c);
        }
        tx.commit().expect("commit");
    }

    fn save_raw(&mut self, check_id: &RecordId, w: &RawWindow) {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("begin");
        let id = RecordId::random().expect("rng");
        tx.prepare_cached("INSERT INTO raw_windows (id, check_id, key_id, expires_min, samples) VALUES (?1, ?2, 0, ?3, ?4)")
            .expect("prepare")
            .execute(params![&id.0[..], &check_id.0[..], i64::MAX / 60_000, bench_support::encode_raw(w)])
            .expect("insert");
        tx.commit().expect("commit");
    }

    fn history(&self, from: i64, to: i64) -> Vec<CheckRecord> {
        let tx = self.conn.unchecked_transaction().expect("begin");
        let mut out = Vec::new();
        {
            let mut s = tx
                .prepare_cached(
                    "SELECT id, kind, features, detail FROM checks WHERE subject_tag = ?1 AND started_min BETWEEN ?2 AND ?3 ORDER BY started_min",
                )
                .expect("prepare");
            let mut rows = s
                .query(params![
                    &b"bench-subject"[..],
                    from / 60_000,
                    (to - 1) / 60_000
                ])
                .expect("query");
            while let Some(r) = rows.next().expect("row") {
                let id: Vec<u8> = r.get(0).expect("id");
                let kind: String = r.get(1).expect("kind");
                let f: Vec<u8> = r.get(2).expect("f");
                let d: Vec<u8> = r.get(3).expect("d");
                let c = bench_support::decode_check(
                    RecordId(id.as_slice().try_into().expect("16 bytes")),
                    CheckKind::new(kind).expect("kind"),
                    &f,
                    &d,
                )
                .expect("decode");
                if (from..to).contains(&c.started_at_ms) {
                    out.push(c);
                }
            }
        }
        tx.finish().expect("end");
        out.sort_by_key(|c| (c.started_at_ms, c.id));
        out
    }

    fn raw(&self, check_id: &RecordId) -> Vec<RawWindow> {
        let tx = self.conn.unchecked_transaction().expect("begin");
        let out = {
            let mut s = tx
                .prepare_cached(
                    "SELECT samples FROM raw_windows WHERE check_id = ?1 ORDER BY rowid",
                )
                .expect("prepare");
            let rows = s
                .query_map([&check_id.0[..]], |r| r.get::<_, Vec<u8>>(0))
                .expect("query");
            rows.map(|b| bench_support::decode_raw(&b.expect("row")).expect("decode"))
                .collect()
        };
        tx.finish().expect("end");
        out
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Alternates encrypted and plaintext runs of the same operation so drift (other processes,
/// disk cache) hits both sides equally; returns operations per second of each side.
fn compare(
    rounds: usize,
    mut enc: impl FnMut() -> u64,
    mut plain: impl FnMut() -> u64,
) -> (f64, f64) {
    let (mut te, mut tp, mut ne, mut np) = (Duration::ZERO, Duration::ZERO, 0u64, 0u64);
    for round in 0..rounds {
        // Who goes first alternates: an fsync right after the other side's fsync waits longer.
        for side in [round % 2, 1 - round % 2] {
            let t = Instant::now();
            if side == 0 {
                ne += enc();
                te += t.elapsed();
            } else {
                np += plain();
                tp += t.elapsed();
            }
        }
    }
    (ne as f64 / te.as_secs_f64(), np as f64 / tp.as_secs_f64())
}

fn summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = encrypted(dir.path());
    let mut plain = Plain::open(dir.path());
    let who = subject();
    let scale = if quick() { 1 } else { 4 };
    let mut i = 0u64;
    let mut next = || {
        i += 1;
        check(i)
    };

    // One committed check per transaction (the engine's finish() path), with latency percentiles.
    let n = 250 * scale;
    let (mut lat_e, mut lat_p) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for round in 0..n {
        for side in [round % 2, 1 - round % 2] {
            let c = next();
            let t = Instant::now();
            if side == 0 {
                store.save_check(&c, None, &[]).expect("enc write");
                lat_e.push(t.elapsed());
            } else {
                plain.save_checks(std::slice::from_ref(&c));
                lat_p.push(t.elapsed());
            }
        }
    }
    lat_e.sort();
    lat_p.sort();
    let sum = |v: &[Duration]| v.iter().sum::<Duration>().as_secs_f64();
    let (commit_e, commit_p) = (n as f64 / sum(&lat_e), n as f64 / sum(&lat_p));

    // 100 checks per transaction: commit cost amortized, so the crypto cost shows.
    let (batch_e, batch_p) = compare(
        10 * scale,
        || {
            let cs: Vec<_> = (0..100).map(|_| next_check()).collect();
            store
                .write(|tx| {
                    for c in &cs {
                        tx.insert_check(c)?;
                    }
                    Ok(())
                })
                .expect("enc batch");
            100
        },
        || {
            let cs: Vec<_> = (0..100).map(|_| next_check()).collect();
            plain.save_checks(&cs);
            100
        },
    );

    // Read back 100 checks by time range, decrypting on the fly (both sides hold the same 100).
    let rdir = tempfile::tempdir().expect("tempdir");
    let (rstore, rplain) = with_100_checks(rdir.path());
    let (read_e, read_p) = compare(
        200 * scale,
        || {
            let n = rstore
                .history(&HistoryQuery::new(who.clone(), T0, T0 + 100_000))
                .expect("enc read")
                .len();
            assert_eq!(n, 100);
            n as u64
        },
        || {
            let n = rplain.history(T0, T0 + 100_000).len();
            assert_eq!(n, 100);
            n as u64
        },
    );

    // Raw windows (60 s at 100 Hz), one per transaction.
    let anchor = check(0);
    store.save_check(&anchor, None, &[]).expect("anchor");
    plain.save_checks(std::slice::from_ref(&anchor));
    let w = raw_window();
    let (raw_in_e, raw_in_p) = compare(
        40 * scale,
        || {
            store
                .write(|tx| tx.insert_raw_window(&anchor.id, &w))
                .expect("enc raw");
            1
        },
        || {
            plain.save_raw(&anchor.id, &w);
            1
        },
    );
    let (raw_out_e, raw_out_p) = compare(
        100 * scale,
        || store.raw_windows(&anchor.id).expect("enc raw read").len() as u64,
        || plain.raw(&anchor.id).len() as u64,
    );

    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("\n== vitalcore store: encrypted vs plaintext SQLite (same schema, pragmas, transactions) ==");
    println!(
        "{:<44} {:>12} {:>12} {:>7}",
        "operation", "encrypted/s", "plaintext/s", "ratio"
    );
    for (name, e, p) in [
        (
            "check write, 1 per commit (synchronous=FULL)",
            commit_e,
            commit_p,
        ),
        ("check write, 100 per commit", batch_e, batch_p),
        ("check read, history of 100", read_e, read_p),
        (
            "raw window write (6000 samples), 1/commit",
            raw_in_e,
            raw_in_p,
        ),
        ("raw window read (6000 samples)", raw_out_e, raw_out_p),
    ] {
        println!("{name:<44} {e:>12.0} {p:>12.0} {:>7.2}", e / p);
    }
    println!(
        "single committed check write latency: encrypted p50 {:.2} ms p99 {:.2} ms | plaintext p50 {:.2} ms p99 {:.2} ms (n={n})",
        ms(percentile(&lat_e, 0.5)),
        ms(percentile(&lat_e, 0.99)),
        ms(percentile(&lat_p, 0.5)),
        ms(percentile(&lat_p, 0.99)),
    );
}

fn with_100_checks(dir: &Path) -> (Store, Plain) {
    let store = encrypted(dir);
    let mut plain = Plain::open(dir);
    let cs: Vec<_> = (0..100).map(check).collect();
    store
        .write(|tx| {
            for c in &cs {
                tx.insert_check(c)?;
            }
            Ok(())
        })
        .expect("fill");
    plain.save_checks(&cs);
    (store, plain)
}

fn next_check() -> CheckRecord {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(1_000_000);
    check(N.fetch_add(1, Ordering::Relaxed))
}

fn criterion_benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = encrypted(dir.path());
    let mut plain = Plain::open(dir.path());
    let mut g = c.benchmark_group("store_check_batch100");
    g.throughput(Throughput::Elements(100));
    g.bench_function("encrypted", |b| {
        b.iter_batched(
            || (0..100).map(|_| next_check()).collect::<Vec<_>>(),
            |cs| {
                store
                    .write(|tx| {
                        for c in &cs {
                            tx.insert_check(c)?;
                        }
                        Ok(())
                    })
                    .expect("write")
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("plaintext", |b| {
        b.iter_batched(
            || (0..100).map(|_| next_check()).collect::<Vec<_>>(),
            |cs| plain.save_checks(&cs),
            BatchSize::LargeInput,
        )
    });
    g.finish();

    let rdir = tempfile::tempdir().expect("tempdir");
    let (rstore, rplain) = with_100_checks(rdir.path());
    let mut g = c.benchmark_group("store_history100");
    g.throughput(Throughput::Elements(100));
    g.bench_function("encrypted", |b| {
        b.iter(|| {
            rstore
                .history(&HistoryQuery::new(subject(), T0, T0 + 100_000))
                .map(|h| h.len())
        })
    });
    g.bench_function("plaintext", |b| {
        b.iter(|| rplain.history(T0, T0 + 100_000).len())
    });
    g.finish();
}

fn main() {
    summary();
    let secs = if quick() { 1 } else { 3 };
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(secs))
        .configure_from_args();
    criterion_benches(&mut c);
    c.final_summary();
}
