#!/usr/bin/env bash
# Backend ingest benchmark: a release server on 127.0.0.1 and a load generator in a second
# process, batches of 100 records, first SQLite then PostgreSQL. Prints one JSON line per run.
# Needs `make services` (PostgreSQL running). Bounded: BATCHES batches or MAX_SECONDS each.
set -euo pipefail
cd "$(dirname "$0")/.."
BATCHES=${BATCHES:-3000}
CONCURRENCY=${CONCURRENCY:-32}
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
  VITALCORE_ENROLLMENT_TOKENS=$TOKEN VITALCORE_MAX_INFLIGHT_BATCHES=32 VITALCORE_DB_MAX_CONNECTIONS=16 RUST_LOG=warn \
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
