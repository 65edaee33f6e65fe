//! `vitalcore analyze`: beats, features and signal quality of a recording file.
//!
//! Input is CSV: one value per line, or `t,value` rows with `t` in seconds (accelerometer:
//! `x,y,z` or `t,x,y,z`, in g). A non-numeric first line is taken as a header. Timestamped
//! input is resampled to `--rate`; if it has gaps longer than the interpolation limit the
//! longest contiguous segment is analysed and the gaps are listed in the output. Peak
//! indices always refer to data rows of the input file (0 = first data row).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use vitalcore_signal::series::nearest_sample;
use vitalcore_signal::{
    analyze_accel, analyze_ecg, analyze_ppg, feature_def, FeatureVector, Gap, Series, SignalError,
    FEATURE_SET_VERSION,
};

/// Arguments of `vitalcore analyze`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Kind of signal in the file.
    #[arg(long, value_enum)]
    signal: SignalKind,
    /// Sample rate in Hz (the resampling rate for timestamped input).
    #[arg(long)]
    rate: f64,
    /// CSV file to analyse.
    #[arg(long)]
    input: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SignalKind {
    Ecg,
    Ppg,
    Accel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Json,
    Table,
}

/// Why the command failed; printed as one line on stderr.
#[derive(Debug, thiserror::Error)]
enum AnalyzeError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: line {line}: {reason}")]
    Parse {
        path: String,
        line: usize,
        reason: String,
    },
    #[error("{path}: no data rows")]
    NoData { path: String },
    #[error("{path}: {source}")]
    Signal { path: String, source: SignalError },
    #[error("{path}: no segment between gaps is long enough to analyse")]
    NoSegment { path: String },
    #[error("cannot encode output: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Parsed CSV columns (every row has the same number of columns).
struct Table {
    columns: Vec<Vec<f64>>,
}

fn parse(path: &Path, text: &str, kind: SignalKind) -> Result<Table, AnalyzeError> {
    let shown = path.display().to_string();
    let allowed: &[usize] = match kind {
        SignalKind::Ecg | SignalKind::Ppg => &[1, 2],
        SignalKind::Accel => &[3, 4],
    };
    let mut columns: Vec<Vec<f64>> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        let parsed: Result<Vec<f64>, _> = cells.iter().map(|c| c.parse::<f64>()).collect();
        let values = match parsed {
            Ok(v) => v,
            // A header is allowed on the first non-empty line only.
            Err(_) if columns.is_empty() && i == first_content_line(text) => continue,
            Err(_) => {
                return Err(AnalyzeError::Parse {
                    path: shown,
                    line: i + 1,
                    reason: "not a number".into(),
                })
            }
        };
        if columns.is_empty() {
            if !allowed.contains(&values.len()) {
                return Err(AnalyzeError::Parse {
                    path: shown,
                    line: i + 1,
                    reason: format!(
                        "expected {} columns, found {}",
                        allowed
                            .iter()
                            .map(usize::to_string)
                            .collect::<Vec<_>>()
                            .join(" or "),
                        values.len()
                    ),
                });
            }
            columns = vec![Vec::new(); values.len()];
        } else if values.len() != columns.len() {
            return Err(AnalyzeError::Parse {
                path: shown,
                line: i + 1,
                reason: format!("expected {} columns, found {}", columns.len(), values.len()),
            });
        }
        for (col, v) in columns.iter_mut().zip(values) {
            col.push(v);
        }
    }
    if columns.first().is_none_or(Vec::is_empty) {
        return Err(AnalyzeError::NoData { path: shown });
    }
    Ok(Table { columns })
}

fn first_content_line(text: &str) -> usize {
    text.lines().position(|l| !l.trim().is_empty()).unwrap_or(0)
}

/// Channels on a uniform grid, and how to map a grid index back to an input row.
struct Grid<'a> {
    channels: Vec<Vec<f64>>,
    times: Option<&'a [f64]>,
    gaps: Vec<Gap>,
    start_s: f64,
}

/// What the command prints (JSON) or tabulates.
#[derive(Debug, Serialize)]
struct Report {
    signal: &'static str,
    feature_set: &'static str,
    rate_hz: f64,
    input_rows: usize,
    /// Beat (or step) positions as data-row indices of the input file.
    peaks: Vec<usize>,
    features: FeatureVector,
    unavailable: Vec<vitalcore_signal::Unavailable>,
    quality: serde_json::Value,
    windows: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifacts: Option<vitalcore_signal::ArtifactCounts>,
    /// Gaps in timestamped input (empty for uniform input).
    gaps: Vec<Gap>,
    /// Time span analysed, s (the longest segment between gaps).
    analysed_span_s: [f64; 2],
}

pub fn run(args: Args) -> ExitCode {
    match analyze(&args) {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("vitalcore analyze: {e}");
            ExitCode::FAILURE
        }
    }
}

fn analyze(args: &Args) -> Result<String, AnalyzeError> {
    let shown = args.input.display().to_string();
    let text = std::fs::read_to_string(&args.input).map_err(|source| AnalyzeError::Read {
        path: shown.clone(),
        source,
    })?;
    let table = parse(&args.input, &text, args.signal)?;
    let sig = |source| AnalyzeError::Signal {
        path: shown.clone(),
        source,
    };
    let rows = table.columns[0].len();
    let timestamped = matches!(
        (args.signal, table.columns.len()),
        (SignalKind::Ecg | SignalKind::Ppg, 2) | (SignalKind::Accel, 4)
    );
    let Grid {
        channels,
        times,
        gaps,
        start_s,
    } = if timestamped {
        let t = &table.columns[0];
        let mut grid = Grid {
            channels: Vec::new(),
            times: Some(t.as_slice()),
            gaps: Vec::new(),
            start_s: 0.0,
        };
        for col in &table.columns[1..] {
            let r = Series::from_timestamps(t, col, args.rate).map_err(sig)?;
            let seg = r.longest().ok_or_else(|| AnalyzeError::NoSegment {
                path: shown.clone(),
            })?;
            grid.start_s = seg.start_s();
            grid.channels.push(seg.values().to_vec());
            grid.gaps = r.gaps;
        }
        grid
    } else {
        Grid {
            channels: table.columns.clone(),
            times: None,
            gaps: Vec::new(),
            start_s: 0.0,
        }
    };
    let to_row = |p: usize| match times {
        Some(t) => nearest_sample(t, start_s + p as f64 / args.rate),
        None => p,
    };
    let span = [start_s, start_s + channels[0].len() as f64 / args.rate];
    let report = match args.signal {
        SignalKind::Ecg | SignalKind::Ppg => {
            let a = if args.signal == SignalKind::Ecg {
                analyze_ecg(&channels[0], args.rate)
            } else {
                analyze_ppg(&channels[0], args.rate)
            }
            .map_err(sig)?;
            Report {
                signal: if args.signal == SignalKind::Ecg {
                    "ecg"
                } else {
                    "ppg"
                },
                feature_set: FEATURE_SET_VERSION,
                rate_hz: args.rate,
                input_rows: rows,
                peaks: a.peaks.iter().map(|&p| to_row(p)).collect(),
                features: a.features,
                unavailable: a.unavailable,
                quality: serde_json::to_value(a.quality)?,
                windows: serde_json::to_value(&a.windows)?,
                artifacts: Some(a.artifacts),
                gaps,
                analysed_span_s: span,
            }
        }
        SignalKind::Accel => {
            let a =
                analyze_accel(&channels[0], &channels[1], &channels[2], args.rate).map_err(sig)?;
            Report {
                signal: "accel",
                feature_set: FEATURE_SET_VERSION,
                rate_hz: args.rate,
                input_rows: rows,
                peaks: a.peaks.iter().map(|&p| to_row(p)).collect(),
                features: a.features,
                unavailable: a.unavailable,
                quality: serde_json::json!({
                    "sqi": a.sqi,
                    "threshold": vitalcore_signal::accel::ACCEL_SQI_THRESHOLD,
                    "acceptable": a.acceptable,
                }),
                windows: serde_json::to_value(&a.windows)?,
                artifacts: None,
                gaps,
                analysed_span_s: span,
            }
        }
    };
    match args.format {
        Format::Json => Ok(serde_json::to_string_pretty(&report)? + "\n"),
        Format::Table => Ok(table_text(&report)),
    }
}

fn table_text(r: &Report) -> String {
    let mut s = String::new();
    let q = &r.quality;
    // Writing to a String cannot fail.
    let _ = writeln!(
        s,
        "signal {}  rate {} Hz  rows {}  peaks {}  sqi {:.3} (threshold {}, {})",
        r.signal,
        r.rate_hz,
        r.input_rows,
        r.peaks.len(),
        q["sqi"].as_f64().unwrap_or(f64::NAN),
        q["threshold"],
        if q["acceptable"].as_bool() == Some(true) {
            "acceptable"
        } else {
            "below threshold"
        }
    );
    for g in &r.gaps {
        let _ = writeln!(s, "gap {:.3} s .. {:.3} s", g.start_s, g.end_s);
    }
    let _ = writeln!(s, "{:<18} {:>12}  unit", "feature", "value");
    for (name, v) in r.features.iter() {
        let unit = feature_def(name).map_or("", |f| f.unit);
        match v {
            Some(v) => {
                let _ = writeln!(s, "{name:<18} {v:>12.3}  {unit}");
            }
            None => {
                let _ = writeln!(s, "{name:<18} {:>12}  {unit}", "-");
            }
        }
    }
    let windows = r.windows.as_array().map_or(0, Vec::len);
    let _ = writeln!(s, "windows {windows}");
    s
}
