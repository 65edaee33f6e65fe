#!/usr/bin/env bash
# `make bench`: every benchmark, each comparing against the tool a user would otherwise pick.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${VITALCORE_PYTHON:-.venv/bin/python}

# Signal pipeline vs NeuroKit2 (BENCHMARKS.md, "Signal pipeline vs NeuroKit2").
"$PY" scripts/bench_signal.py

# Encrypted store vs the same schema in plaintext SQLite (BENCHMARKS.md, "Encrypted store").
cargo bench --locked -p vitalcore --bench store
# Backend ingest (SQLite and PostgreSQL), loopback load from a second process.
bash scripts/bench_backend.sh
