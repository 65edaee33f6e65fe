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

# Bindings: cdylib size and per-call overhead from Kotlin and Python (BENCHMARKS.md,
# "Bindings: size and call overhead").
bash bindings/bench.sh

# Backend ingest (SQLite and PostgreSQL), loopback load from a second process (BENCHMARKS.md,
# "Backend ingest").
bash scripts/bench_backend.sh

# Device sync against the real server: bytes on the wire per check record, records/s and device
# CPU per record, vs one plain-JSON POST per record (BENCHMARKS.md, "Sync (device side)").
cargo bench --locked -p vitalcore-e2e --bench sync
