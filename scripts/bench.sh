#!/usr/bin/env bash
# `make bench`: every benchmark, each comparing against the tool a user would otherwise pick.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${VITALCORE_PYTHON:-.venv/bin/python}

# Signal pipeline vs NeuroKit2 (BENCHMARKS.md, "Signal pipeline vs NeuroKit2").
"$PY" scripts/bench_signal.py

# Encrypted store vs the same schema in plaintext SQLite (BENCHMARKS.md, "Encrypted store").
cargo bench --locked -p vitalcore --bench store

# Engine: finish() latency of a 60 s PPG check, and memory of a 24 h simulated capture
# (figures in BENCHMARKS.md, "Engine").
cargo bench --locked -p vitalcore --bench engine
cargo bench --locked -p vitalcore --bench engine_memory

# Inference: tract (through vitalcore::inference) vs ONNX Runtime 1.32 (the wheel's library via
# the `ort` crate), single thread, same inputs (BENCHMARKS.md, "Inference vs ONNX Runtime").
# RUST_LIB_BACKTRACE=0: tract creates an error per tree leaf visited; with backtraces enabled
# each would capture one (see BENCHMARKS.md).
RUST_LIB_BACKTRACE=0 cargo bench --locked -p vitalcore --bench inference

# Bindings: cdylib size and per-call overhead from Kotlin and Python (BENCHMARKS.md,
# "Bindings: size and call overhead").
bash bindings/bench.sh

# Backend ingest (SQLite and PostgreSQL), loopback load from a second process (BENCHMARKS.md,
# "Backend ingest").
bash scripts/bench_backend.sh

# Scale-out: 1, 2 and 3 nodes behind HAProxy on one PostgreSQL and one S3 server, a node
# killed and restarted mid-run, and the Lambda adapter's cold start (BENCHMARKS.md, "Scale").
bash scripts/bench_scale.sh

# Training pipeline: stage timings at 100 and 1,000 subjects against a real server, and the
# bootstrap's metric step vs scikit-learn's metric functions (BENCHMARKS.md, "Training pipeline").
cargo build --locked -p vitalcore-server
VITALCORE_SERVER_BIN=target/debug/vitalcore-server "$PY" models/scripts/bench_trainer.py

# Device sync against the real server: bytes on the wire per check record, records/s and device
# CPU per record, vs one plain-JSON POST per record (BENCHMARKS.md, "Sync (device side)").
cargo bench --locked -p vitalcore-e2e --bench sync
