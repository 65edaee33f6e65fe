//! Loopback load generator for `scripts/bench.sh`: enrolls devices, then uploads gzip batches
//! of feature records from concurrent workers, bounded in count and time, and prints one JSON
//! line of figures. Refuses any target other than 127.0.0.1 / localhost.

use std::io::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use vitalcore_protocol::{ConsentPurpose, EnrollResponse, FeatureRecord, SyncBatch};

#[derive(Parser)]
#[command(about = "vitalcore ingest load generator (loopback only)")]
struct Args {
    /// Server base URL, for example http://127.0.0.1:8080.
    #[arg(long)]
    target: String,
    /// App enrollment token the server accepts.
    #[arg(long)]
    enroll_token: String,
    /// Batches to send in total (upper bound).
    #[arg(long, default_value_t = 2000)]
    batches: usize,
    /// Records per batch.
    #[arg(long, default_value_t = 100)]
    records: usize,
    /// Concurrent uploaders (one device each).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Stop after this many seconds even if batches remain.
    #[arg(long, default_value_t = 60)]
    max_seconds: u64,
    /// Server process ids (comma-separated: every node behind a balancer), to read their CPU
    /// time from /proc.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Label printed with the figures.
    #[arg(long, default_value = "run")]
    label: String,
}

fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    Some(ticks / hz)
}

fn batch(worker: usize, n: usize, records: usize) -> Vec<u8> {
    let recs: Vec<FeatureRecord> = (0..records)
        .map(|i| FeatureRecord {
            record_id: format!("w{worker}-b{n}-r{i}"),
            subject: format!("bench-subject-{worker}-{}", n % 8),
            study: "bench".into(),
            kind: "ppg".into(),
            feature_set: "v1".into(),
            captured_hour: 1_790_000_000 + (n as i64) * 3600,
            age_band: Some("40-49".into()),
            quality: 0.9,
            features: [
                ("hr_mean".to_string(), 60.0 + (i % 40) as f64),
                ("rmssd".to_string(), 30.0 + (i % 25) as f64),
                ("sdnn".to_string(), 45.0 + (i % 30) as f64),
                ("pnn50".to_string(), 0.1 + (i % 10) as f64 / 100.0),
            ]
            .into_iter()
            .collect(),
        })
        .collect();
    // One possession proof per subject, as the SDK sends (any 64 hex digits bind a fresh
    // subject; the same ones must come back for it).
    let subject_proofs = (0..8)
        .map(|k| {
            (
                format!("bench-subject-{worker}-{k}"),
                format!("{:064x}", worker * 8 + k + 1),
            )
        })
        .filter(|(s, _)| recs.iter().any(|r| &r.subject == s))
        .collect();
    let b = SyncBatch {
        schema: 1,
        idempotency_key: format!("bench-{worker:04}-{n:08}-{}", std::process::id()),
        region: "eu".into(),
        consent: vec![ConsentPurpose::Research, ConsentPurpose::ModelTraining],
        records: recs,
        labels: Vec::new(),
        subject_proofs,
    };
    let json = serde_json::to_vec(&b).expect("a batch of plain values serializes");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&json).expect("writing to a Vec cannot fail");
    gz.finish().expect("writing to a Vec cannot fail")
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let host_ok = ["http://127.0.0.1:", "http://localhost:"]
        .iter()
        .any(|p| args.target.starts_with(p));
    if !host_ok {
        return Err(
            "the load generator only targets http://127.0.0.1:<port> or http://localhost:<port>"
                .into(),
        );
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let mut creds = Vec::new();
    for _ in 0..args.concurrency {
        let r = client
            .post(format!("{}/v1/enroll", args.target))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(
                &serde_json::json!({ "enrollment_token": args.enroll_token }),
            )?)
            .send()
            .await?;
        if !r.status().is_success() {
            return Err(format!("enrollment failed: {}", r.status()).into());
        }
        let e: EnrollResponse = serde_json::from_slice(&r.bytes().await?)?;
        creds.push(e.credential);
    }
    // Bodies are built before the clock starts, so the figures measure the server.
    let per_worker = args.batches.div_ceil(args.concurrency);
    let bodies: Vec<Vec<Vec<u8>>> = (0..args.concurrency)
        .map(|w| (0..per_worker).map(|n| batch(w, n, args.records)).collect())
        .collect();
    let cpu_all = |pids: &[u32]| -> Option<f64> { pids.iter().map(|p| cpu_seconds(*p)).sum() };
    let body_bytes: usize = bodies.iter().flatten().map(Vec::len).sum();
    let body_count: usize = bodies.iter().map(Vec::len).sum();
    let cpu0 = (!args.server_pid.is_empty())
        .then(|| cpu_all(&args.server_pid))
        .flatten();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.max_seconds);
    let sent = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (w, (cred, bodies)) in creds.into_iter().zip(bodies).enumerate() {
        let (client, target, sent, total) = (
            client.clone(),
            args.target.clone(),
            sent.clone(),
            args.batches,
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let (mut ok, mut retried, mut failed) = (0usize, 0usize, 0usize);
            for body in bodies {
                if Instant::now() > deadline || sent.fetch_add(1, Ordering::Relaxed) >= total {
                    break;
                }
                loop {
                    let t = Instant::now();
                    let r = client
                        .post(format!("{target}/v1/batches"))
                        .header("authorization", format!("Bearer {cred}"))
                        .header("content-type", "application/json")
                        .header("content-encoding", "gzip")
                        .body(body.clone())
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            lat.push(t.elapsed().as_secs_f64() * 1000.0);
                            ok += 1;
                            break;
                        }
                        Ok(r) if r.status().as_u16() == 429 || r.status().as_u16() == 503 => {
                            retried += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        _ => {
                            failed += 1;
                            break;
                        }
                    }
                    if Instant::now() > deadline {
                        break;
                    }
                }
            }
            let _ = w;
            (lat, ok, retried, failed)
        }));
    }
    let mut lat = Vec::new();
    let (mut ok, mut retried, mut failed) = (0, 0, 0);
    for t in tasks {
        let (l, o, r, f) = t.await?;
        lat.extend(l);
        ok += o;
        retried += r;
        failed += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu1 = (!args.server_pid.is_empty())
        .then(|| cpu_all(&args.server_pid))
        .flatten();
    lat.sort_by(f64::total_cmp);
    let records = ok * args.records;
    let cpu_per_1k = match (cpu0, cpu1) {
        (Some(a), Some(b)) if records > 0 => Some((b - a) / records as f64 * 1000.0 * 1000.0),
        _ => None,
    };
    let out = serde_json::json!({
        "label": args.label,
        "batches_ok": ok,
        "batches_retried": retried,
        "batches_failed": failed,
        "records": records,
        "seconds": (elapsed * 100.0).round() / 100.0,
        "records_per_s": (records as f64 / elapsed).round(),
        "p50_ms": (pct(&lat, 0.50) * 10.0).round() / 10.0,
        "p99_ms": (pct(&lat, 0.99) * 10.0).round() / 10.0,
        "server_cpu_ms_per_1k_records": cpu_per_1k.map(|v| (v * 10.0).round() / 10.0),
        "request_bytes_per_record": (body_bytes as f64 / (body_count * args.records).max(1) as f64 * 10.0).round() / 10.0,
        "kinesis_shards_replaced": (records as f64 / elapsed / 1000.0).floor(),
    });
    println!("{out}");
    if failed > 0 {
        return Err(format!("{failed} batches failed").into());
    }
    Ok(())
}
