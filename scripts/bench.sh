#!/usr/bin/env bash
# `make bench`: every benchmark, each comparing against the tool a user would otherwise pick.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${VITALCORE_PYTHON:-.venv/bin/python}

# Signal pipeline vs NeuroKit2 (BENCHMARKS.md, "Signal pipeline vs NeuroKit2").
"$PY" scripts/bench_signal.py

# Encrypted store vs the same schema in plaintext SQLite (BENCHMARKS.md, "Encrypted store").
cargo bench --locked -p vitalcore --bench store
# Bindings: cdylib size and per-call overhead from Kotlin and Python (BENCHMARKS.md,
# "Bindings: size and call overhead").
bash bindings/bench.sh

# Engine: finish() latency of a 60 s PPG check, and memory of a 24 h simulated capture
# (figures in BENCHMARKS.md, "Engine").
cargo bench --locked -p vitalcore --bench engine
cargo bench --locked -p vitalcore --bench engine_memory
