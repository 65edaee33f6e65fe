#!/usr/bin/env bash
# `make demo`: runs what exists end to end on embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release -p vitalcore --features cli
ls .cache/recordings/*.csv
