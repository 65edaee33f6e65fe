#!/usr/bin/env bash
# Backend ingest benchmark: a release server on 127.0.0.1 and a load generator in a second
# process, batches of 100 records, first SQLite then PostgreSQL. Prints one JSON line per run.
# Needs `make services` (PostgreSQL running). Bounded: BATCHES batches or MAX_SECONDS each.
set -euo pipefail
cd "$(dirname "$0")/.."
BATCHES=${BATCHES:-3000}
CONCURRENCY=${CONCURRENCY:-8}
MAX_SECONDS=${MAX_SECONDS:-60}
TOKEN=bench-enroll-token
cargo build --release --locked -q -p vitalcore-server --bin vitalcore-server --bin vitalcore-loadgen
SERVER=target/release/vitalcore-server
LOADGEN=target/release/vitalcore-loadgen
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

run() {
  local label=$1 url=$2
  local port mport
  port=$(free_port); mport=$(free_port)
  # Every check stays on (proofs, feature set and range checks, per-credential limiter,
  # per-device slots); the per-device request quota is raised because each of the 8 load
  # generator devices stands in for a crowd (~25 batches/s each at the target rate).
  VITALCORE_ENROLLMENT_TOKENS=$TOKEN VITALCORE_MAX_INFLIGHT_BATCHES=32 VITALCORE_DB_MAX_CONNECTIONS=16 RUST_LOG=warn \
    VITALCORE_DEVICE_BURST=100000 VITALCORE_DEVICE_PER_MINUTE=600000 \
    "$SERVER" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" \
    --data-dir "$work/$label" ${url:+--database-url "$url"} > "$work/$label.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$LOADGEN" --target "http://127.0.0.1:$port" --enroll-token "$TOKEN" --batches "$BATCHES" \
    --records 100 --concurrency "$CONCURRENCY" --max-seconds "$MAX_SECONDS" --server-pid "$pid" --label "$label"
  kill -TERM "$pid"; wait "$pid" || true
}

run sqlite ""
runuser -u postgres -- psql -q -d postgres -c "DROP DATABASE IF EXISTS vitalcore_bench" >/dev/null
runuser -u postgres -- createdb -O vitalcore_test vitalcore_bench
run postgres "postgres://vitalcore_test:vitalcore_test@127.0.0.1:5432/vitalcore_bench"

# Reference a user would otherwise reach for: bulk COPY of the same kind of rows straight into
# the same PostgreSQL table (no HTTP, no validation, no idempotency, no archive): the ceiling.
N=${COPY_ROWS:-300000}
python3 - "$N" > "$work/rows.csv" <<'PY'
import sys, json
n = int(sys.argv[1])
for i in range(n):
    f = json.dumps({"hr_mean": 60 + i % 40, "pnn50": 0.1, "rmssd": 30 + i % 25, "sdnn": 45 + i % 30})
    print(f'copy-subject-{i % 97},r{i},copy-batch,bench,ppg,v1,{1790000000 + i},40-49,0.9,"{f.replace(chr(34), chr(34)*2)}",3')
PY
db="postgres://vitalcore_test:vitalcore_test@127.0.0.1:5432/vitalcore_bench"
t0=$(date +%s.%N)
psql -q "$db" -c "\\copy records (subject, record_id, batch_id, study, kind, feature_set, captured_hour, age_band, quality, features, purposes) FROM '$work/rows.csv' WITH (FORMAT csv)"
t1=$(date +%s.%N)
python3 -c "import json,sys; n=int(sys.argv[1]); s=float(sys.argv[3])-float(sys.argv[2]); print(json.dumps({'label':'psql_copy_reference','records':n,'seconds':round(s,2),'records_per_s':round(n/s)}))" "$N" "$t0" "$t1"
