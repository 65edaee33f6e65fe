#!/usr/bin/env bash
# `make demo [DEMO_ARGS="--devices N --postgres URL"]`: the closed loop on embedded defaults.
# An in-process vitalcore-server (SQLite + a local folder in demo-out/, a generated development
# signing key), a fleet of devices doing PPG rhythm checks on simulated (NeuroKit2, known labels)
# and real (heartpy) recordings, labels, consent, sync; the trainer trains and publishes v2 over
# HTTP; the devices fetch it, verify it, install it and run their checks offline on it.
# Output: a summary on stdout (with the time of each phase), demo-out/report.html (plots,
# self-contained), demo-out/summary.json, the trainer's bundle and model card in demo-out/trainer/.
set -euo pipefail
cd "$(dirname "$0")/.."
export VITALCORE_CACHE=${VITALCORE_CACHE:-$PWD/.cache}
PY=${VITALCORE_PYTHON:-.venv/bin/python}
export VITALCORE_PYTHON=$PY
devices=96 checks=8
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --devices) devices=${args[i + 1]:-96} ;;
    --checks-per-device) checks=${args[i + 1]:-8} ;;
  esac
done
SECONDS=0
"$PY" scripts/demo/simulate.py --devices "$devices" --checks-per-device "$checks"
echo "demo: simulated recordings ready in ${SECONDS} s" >&2
SECONDS=0
cargo build --quiet --release --locked -p vitalcore-e2e --bin vitalcore-demo
echo "demo: build ready in ${SECONDS} s" >&2
"${CARGO_TARGET_DIR:-target}"/release/vitalcore-demo "$@"
