#!/usr/bin/env bash
# `make bench`: every benchmark, each comparing against the tool a user would otherwise pick.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "no benchmarks yet"
# Backend ingest (SQLite and PostgreSQL), loopback load from a second process.
bash scripts/bench_backend.sh
