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

# Training pipeline: stage timings at 100 and 1,000 subjects against a real server, and the
# bootstrap's metric step vs scikit-learn's metric functions (BENCHMARKS.md, "Training pipeline").
cargo build --locked -p vitalcore-server
VITALCORE_SERVER_BIN=target/debug/vitalcore-server "$PY" models/scripts/bench_trainer.py
