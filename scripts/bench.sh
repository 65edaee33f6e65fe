#!/usr/bin/env bash
# `make bench`: every benchmark, each comparing against the tool a user would otherwise pick.
set -euo pipefail
cd "$(dirname "$0")/.."

# Encrypted store vs the same schema in plaintext SQLite (figures in BENCHMARKS.md, "Encrypted store").
cargo bench --locked -p vitalcore --bench store
