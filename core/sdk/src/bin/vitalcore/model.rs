//! `vitalcore model ...`: the model doctor for app developers who bring their own ONNX model,
//! and the publisher-side signing of bundles.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use serde::Serialize;
use vitalcore::inference::{inspect, Backend, OnnxModel, TensorInfo};

/// Subcommands of `vitalcore model`.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Load an ONNX file as the SDK would: input/output facts, unsupported operators, latency,
    /// cold start, and a side-by-side run on ONNX Runtime when ORT_DYLIB_PATH points at its
    /// library.
    Check(CheckArgs),
    /// Generate an Ed25519 publisher key pair (PKCS#8 private key file; public key printed as hex).
    Keygen(KeygenArgs),
    /// Fill a manifest's artifact length and sha256 from the ONNX file and sign it.
    Sign(SignArgs),
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable report.
    Text,
    /// One JSON object.
    Json,
}

/// Arguments of `vitalcore model check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// The ONNX file.
    file: PathBuf,
    /// Input shape to pin, comma-separated (default: the declared shape, dynamic dims as 1).
    #[arg(long, value_name = "D0,D1,...")]
    input_shape: Option<String>,
    /// Timed predictions for the latency figures.
    #[arg(long, default_value_t = 1000)]
    runs: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// Arguments of `vitalcore model keygen`.
#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Where to write the PKCS#8 private key (refuses to overwrite).
    #[arg(long)]
    private_key: PathBuf,
}

/// Arguments of `vitalcore model sign`.
#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// Manifest JSON; its `artifact` field is overwritten from `--artifact`.
    #[arg(long)]
    manifest: PathBuf,
    /// The ONNX artifact the manifest pins.
    #[arg(long)]
    artifact: PathBuf,
    /// PKCS#8 Ed25519 private key.
    #[arg(long)]
    private_key: PathBuf,
    /// Where to write the signed envelope JSON.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(cmd: Command) -> ExitCode {
    let result = match cmd {
        Command::Check(args) => check(&args),
        Command::Keygen(args) => keygen(&args),
        Command::Sign(args) => sign(&args),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("vitalcore model: {msg}");
            ExitCode::from(2)
        }
    }
}

#[derive(Debug, Serialize)]
struct Latency {
    runs: usize,
    p50_us: f64,
    p99_us: f64,
}

#[derive(Debug, Serialize)]
struct OrtReport {
    available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cold_start_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<Latency>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_abs_diff: Option<f32>,
    /// Our p50 (on the backend the SDK picked) / ONNX Runtime p50.
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_ratio_p50: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    file: String,
    bytes: usize,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
    unsupported_operators: Vec<String>,
    rewrites: Vec<String>,
    loadable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input_shape: Option<Vec<usize>>,
    /// The evaluator the SDK runs this model on (`tract`, `native_trees`, `native_graph`).
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<Backend>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cold_start_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latency: Option<Latency>,
    onnxruntime: OrtReport,
}

fn parse_shape(s: &str) -> Result<Vec<usize>, String> {
    let dims: Result<Vec<usize>, _> = s.split(',').map(|d| d.trim().parse::<usize>()).collect();
    match dims {
        Ok(d) if !d.is_empty() && d.iter().all(|&x| x > 0) => Ok(d),
        _ => Err(format!(
            "--input-shape `{s}`: expected positive integers like 1,16"
        )),
    }
}

/// Declared shape with symbolic dims (dynamic batch) as 1; `None` when it is not declared.
fn default_shape(info: &TensorInfo) -> Option<Vec<usize>> {
    if info.shape.is_empty() {
        return None;
    }
    Some(
        info.shape
            .iter()
            .map(|d| d.parse::<usize>().unwrap_or(1))
            .collect(),
    )
}

fn percentile(sorted_us: &[f64], q: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let ix = ((sorted_us.len() - 1) as f64 * q).round() as usize;
    sorted_us[ix.min(sorted_us.len() - 1)]
}

fn latency(mut samples_us: Vec<f64>) -> Latency {
    samples_us.sort_by(f64::total_cmp);
    Latency {
        runs: samples_us.len(),
        p50_us: percentile(&samples_us, 0.5),
        p99_us: percentile(&samples_us, 0.99),
    }
}

/// Deterministic inputs (xorshift), the same for both runtimes.
fn random_inputs(n: usize, len: usize) -> Vec<Vec<f32>> {
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            (0..len)
                .map(|_| {
                    s ^= s >> 12;
                    s ^= s << 25;
                    s ^= s >> 27;
                    let u =
                        (s.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32;
                    u * 2.0 - 1.0
                })
                .collect()
        })
        .collect()
}

fn check(args: &CheckArgs) -> Result<ExitCode, String> {
    let bytes = std::fs::read(&args.file)
        .map_err(|e| format!("cannot read {}: {}", args.file.display(), e.kind()))?;
    let mut report = Report {
        file: args.file.display().to_string(),
        bytes: bytes.len(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        unsupported_operators: Vec::new(),
        rewrites: Vec::new(),
        loadable: false,
        error: None,
        input_shape: None,
        backend: None,
        cold_start_ms: None,
        latency: None,
        onnxruntime: OrtReport {
            available: false,
            reason: None,
            cold_start_ms: None,
            latency: None,
            max_abs_diff: None,
            latency_ratio_p50: None,
        },
    };
    let runs = args.runs.max(1);
    match inspect(&bytes) {
        Err(e) => report.error = Some(e.to_string()),
        Ok(facts) => {
            report.inputs = facts.inputs;
            report.outputs = facts.outputs;
            report.unsupported_operators = facts.unsupported_operators;
            report.rewrites = facts.rewrites;
        }
    }
    let shape = match &args.input_shape {
        Some(s) => Some(parse_shape(s)?),
        None => report.inputs.first().and_then(default_shape),
    };
    report.input_shape = shape.clone();
    let mut tract_outputs: Vec<Vec<Vec<f32>>> = Vec::new();
    let mut inputs = Vec::new();
    if report.error.is_none() && report.unsupported_operators.is_empty() {
        match shape {
            None => {
                report.error =
                    Some("the input shape is not declared: pass --input-shape".to_owned());
            }
            Some(shape) => {
                let t0 = Instant::now();
                let loaded = OnnxModel::load(&bytes, &shape, None);
                match loaded {
                    Err(e) => report.error = Some(e.to_string()),
                    Ok(model) => {
                        report.backend = Some(model.backend());
                        let len: usize = shape.iter().product();
                        inputs = random_inputs(runs.min(200), len);
                        let first = model.run_all(&inputs[0]);
                        report.cold_start_ms = Some(t0.elapsed().as_secs_f64() * 1e3);
                        match first {
                            Err(e) => report.error = Some(e.to_string()),
                            Ok(_) => {
                                report.loadable = true;
                                report.outputs = model.outputs().to_vec();
                                let mut samples = Vec::with_capacity(runs);
                                for i in 0..runs {
                                    let x = &inputs[i % inputs.len()];
                                    let t = Instant::now();
                                    let out = model.run_all(x).map_err(|e| e.to_string())?;
                                    samples.push(t.elapsed().as_secs_f64() * 1e6);
                                    if i < inputs.len() {
                                        tract_outputs.push(out);
                                    }
                                }
                                report.latency = Some(latency(samples));
                            }
                        }
                    }
                }
            }
        }
    }
    if report.loadable {
        report.onnxruntime = compare_with_ort(&bytes, &report, &inputs, &tract_outputs, runs);
    } else {
        report.onnxruntime.reason = Some("the model did not load".into());
    }
    match args.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        ),
        Format::Text => print_text(&report),
    }
    Ok(if report.loadable {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_text(r: &Report) {
    println!("model: {} ({} bytes)", r.file, r.bytes);
    for i in &r.inputs {
        println!(
            "  input  {} {} [{}]",
            i.name,
            i.datum_type,
            i.shape.join(",")
        );
    }
    for o in &r.outputs {
        println!(
            "  output {} {} [{}]",
            o.name,
            o.datum_type,
            o.shape.join(",")
        );
    }
    for w in &r.rewrites {
        println!("  rewrite applied: {w}");
    }
    if !r.unsupported_operators.is_empty() {
        println!(
            "unsupported operators: {}",
            r.unsupported_operators.join(", ")
        );
    }
    if let Some(e) = &r.error {
        println!("NOT LOADABLE: {e}");
        return;
    }
    if let Some(shape) = &r.input_shape {
        println!("pinned input shape: {shape:?}");
    }
    if let Some(b) = r.backend {
        println!("backend: {}", b.as_str());
    }
    if let (Some(c), Some(l)) = (r.cold_start_ms, &r.latency) {
        println!(
            "vitalcore:    cold start {c:.2} ms, p50 {:.1} us, p99 {:.1} us ({} runs)",
            l.p50_us, l.p99_us, l.runs
        );
    }
    let o = &r.onnxruntime;
    match (&o.latency, o.cold_start_ms) {
        (Some(l), Some(c)) => {
            println!(
                "onnxruntime:  cold start {c:.2} ms, p50 {:.1} us, p99 {:.1} us ({} runs)",
                l.p50_us, l.p99_us, l.runs
            );
            if let Some(d) = o.max_abs_diff {
                println!("max abs diff (vitalcore vs onnxruntime): {d:e}");
            }
            if let Some(ratio) = o.latency_ratio_p50 {
                println!("latency ratio p50 (vitalcore / onnxruntime): {ratio:.2}");
            }
        }
        _ => println!(
            "onnxruntime: not compared ({})",
            o.reason.as_deref().unwrap_or("unavailable")
        ),
    }
}

#[cfg(not(feature = "ort"))]
fn compare_with_ort(
    _bytes: &[u8],
    _report: &Report,
    _inputs: &[Vec<f32>],
    _tract: &[Vec<Vec<f32>>],
    _runs: usize,
) -> OrtReport {
    OrtReport {
        available: false,
        reason: Some("this build has no ONNX Runtime support (cargo feature `ort`)".into()),
        cold_start_ms: None,
        latency: None,
        max_abs_diff: None,
        latency_ratio_p50: None,
    }
}

#[cfg(feature = "ort")]
fn compare_with_ort(
    bytes: &[u8],
    report: &Report,
    inputs: &[Vec<f32>],
    tract: &[Vec<Vec<f32>>],
    runs: usize,
) -> OrtReport {
    let mut out = OrtReport {
        available: false,
        reason: None,
        cold_start_ms: None,
        latency: None,
        max_abs_diff: None,
        latency_ratio_p50: None,
    };
    let Some(path) = std::env::var_os("ORT_DYLIB_PATH") else {
        out.reason = Some("ORT_DYLIB_PATH is not set".into());
        return out;
    };
    if !Path::new(&path).is_file() {
        out.reason = Some("ORT_DYLIB_PATH does not point at a file".into());
        return out;
    }
    match ort_side(bytes, report, inputs, tract, runs, &path) {
        Ok(o) => o,
        Err(e) => {
            out.reason = Some(e);
            out
        }
    }
}

#[cfg(feature = "ort")]
fn ort_side(
    bytes: &[u8],
    report: &Report,
    inputs: &[Vec<f32>],
    tract: &[Vec<Vec<f32>>],
    runs: usize,
    lib: &std::ffi::OsStr,
) -> Result<OrtReport, String> {
    let e = |e: ort::Error| e.to_string();
    ort::init_from(lib.to_string_lossy()).commit().map_err(e)?;
    let shape: Vec<i64> = report
        .input_shape
        .as_ref()
        .map(|s| s.iter().map(|&d| d as i64).collect())
        .unwrap_or_default();
    let input_name = report
        .inputs
        .first()
        .map(|i| i.name.clone())
        .unwrap_or_default();
    let t0 = Instant::now();
    let mut session = ort::session::Session::builder()
        .and_then(|b| b.with_intra_threads(1))
        .and_then(|b| b.with_inter_threads(1))
        .and_then(|b| b.commit_from_memory(bytes))
        .map_err(e)?;
    let mut run = |x: &[f32]| -> Result<Vec<Option<Vec<f32>>>, String> {
        let tensor = ort::value::TensorRef::from_array_view((shape.clone(), x)).map_err(e)?;
        let outputs = session
            .run(ort::inputs![input_name.as_str() => tensor])
            .map_err(e)?;
        Ok(report
            .outputs
            .iter()
            .map(|o| {
                outputs
                    .get(o.name.as_str())
                    .and_then(|v| v.try_extract_tensor::<f32>().ok())
                    .map(|(_, s)| s.to_vec())
            })
            .collect())
    };
    run(&inputs[0])?;
    let cold = t0.elapsed().as_secs_f64() * 1e3;
    let mut max_diff = 0.0f32;
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let x = &inputs[i % inputs.len()];
        let t = Instant::now();
        let outs = run(x)?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
        if let Some(ours) = tract.get(i) {
            for (a, b) in ours.iter().zip(&outs) {
                if let Some(b) = b {
                    if a.len() != b.len() {
                        return Err("output lengths differ between runtimes".into());
                    }
                    for (x, y) in a.iter().zip(b) {
                        max_diff = max_diff.max((x - y).abs());
                    }
                }
            }
        }
    }
    let l = latency(samples);
    let ratio = report
        .latency
        .as_ref()
        .map(|t| t.p50_us / l.p50_us.max(f64::MIN_POSITIVE));
    Ok(OrtReport {
        available: true,
        reason: None,
        cold_start_ms: Some(cold),
        latency: Some(l),
        max_abs_diff: Some(max_diff),
        latency_ratio_p50: ratio,
    })
}

fn keygen(args: &KeygenArgs) -> Result<ExitCode, String> {
    use ring::signature::KeyPair as _;
    if args.private_key.exists() {
        return Err(format!(
            "{} exists; refusing to overwrite a key",
            args.private_key.display()
        ));
    }
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .map_err(|_| "key generation failed".to_owned())?;
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .map_err(|_| "generated key does not parse".to_owned())?;
    std::fs::write(&args.private_key, pkcs8.as_ref())
        .map_err(|e| format!("cannot write key: {}", e.kind()))?;
    println!("{}", hex::encode(pair.public_key().as_ref()));
    Ok(ExitCode::SUCCESS)
}

fn sign(args: &SignArgs) -> Result<ExitCode, String> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| format!("cannot read {}: {}", p.display(), e.kind()))
    };
    let artifact = read(&args.artifact)?;
    let mut manifest: vitalcore_protocol::manifest::ModelManifest =
        serde_json::from_slice(&read(&args.manifest)?).map_err(|e| format!("manifest: {e}"))?;
    manifest.artifact = vitalcore_protocol::manifest::ArtifactRef {
        sha256: vitalcore::models::sha256_hex(&artifact),
        length: artifact.len() as u64,
    };
    let payload = serde_json::to_vec(&manifest).map_err(|e| e.to_string())?;
    let envelope = vitalcore::models::sign_manifest(&payload, &read(&args.private_key)?)
        .map_err(|e| e.to_string())?;
    let json = serde_json::to_string_pretty(&envelope).map_err(|e| e.to_string())?;
    std::fs::write(&args.out, json + "\n")
        .map_err(|e| format!("cannot write envelope: {}", e.kind()))?;
    Ok(ExitCode::SUCCESS)
}
