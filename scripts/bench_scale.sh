#!/usr/bin/env bash
# Scale-out benchmark (BENCHMARKS.md, "Scale"): 1, 2 and 3 release `vitalcore-server` nodes
# behind HAProxy (Debian's package) on one PostgreSQL database and one s3s-fs S3 server, the
# load generator uploading gzip batches through the balancer; then 3 nodes again with node 2
# SIGKILLed and restarted mid-run (nothing lost, nothing twice: checked in the database); then
# the Lambda adapter's cold start against a minimal Runtime API. One JSON line per run.
# Needs `make services`. Everything on 127.0.0.1; every run bounded by BATCHES and MAX_SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
BATCHES=${BATCHES:-8000}
CONCURRENCY=${CONCURRENCY:-12}
MAX_SECONDS=${MAX_SECONDS:-40}
RECORDS=${RECORDS:-20}
TOKEN=bench-enroll-token
HAPROXY=${VITALCORE_HAPROXY_BIN:-/usr/sbin/haproxy}
S3=${VITALCORE_S3_SERVER_BIN:-$PWD/.services/bin/s3s-fs}
PG=postgres://vitalcore_test:vitalcore_test@127.0.0.1:5432/vitalcore_scale
cargo build --release --locked -q -p vitalcore-server --features lambda \
  --bin vitalcore-server --bin vitalcore-loadgen --bin vitalcore-lambda
SERVER=target/release/vitalcore-server
LOADGEN=target/release/vitalcore-loadgen
LAMBDA=target/release/vitalcore-lambda
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}" ${lb:-} ${s3pid:-}; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 1 200); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.05; done; echo "bench_scale: $1 not ready" >&2; return 1; }

fresh_db() {
  runuser -u postgres -- psql -q -d postgres -c "DROP DATABASE IF EXISTS vitalcore_scale" >/dev/null
  runuser -u postgres -- createdb -O vitalcore_test vitalcore_scale
}

s3port=$(free_port)
mkdir -p "$work/s3/vitalcore-archive"
"$S3" --host 127.0.0.1 --port "$s3port" --access-key AK --secret-key SK "$work/s3" >/dev/null 2>&1 &
s3pid=$!
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$s3port") 2>/dev/null && break; sleep 0.05; done

node_ports=()
start_node() { # index
  local i=$1
  VITALCORE_DATABASE_URL=$PG VITALCORE_DB_MAX_CONNECTIONS=8 VITALCORE_MAX_INFLIGHT_BATCHES=32 \
  VITALCORE_ENROLLMENT_TOKENS=$TOKEN VITALCORE_S3_BUCKET=vitalcore-archive \
  VITALCORE_S3_ENDPOINT="http://127.0.0.1:$s3port" VITALCORE_S3_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=AK AWS_SECRET_ACCESS_KEY=SK RUST_LOG=warn \
    "$SERVER" serve --listen "127.0.0.1:${node_ports[i]}" --metrics-listen "127.0.0.1:$(free_port)" \
    --data-dir "$work/node$i" >>"$work/node$i.log" 2>&1 &
  pids[i]=$!
  wait_http "http://127.0.0.1:${node_ports[i]}/readyz"
}

start_cluster() { # nodes
  local n=$1 i
  fresh_db
  rm -rf "$work/s3/vitalcore-archive" && mkdir -p "$work/s3/vitalcore-archive"
  node_ports=() pids=()
  for ((i = 0; i < n; i++)); do node_ports[i]=$(free_port); done
  for ((i = 0; i < n; i++)); do start_node "$i"; done
  lbport=$(free_port)
  {
    printf 'global\n  maxconn 2048\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n'
    printf '  retries 3\n  option redispatch 1\n  retry-on conn-failure empty-response response-timeout 502 503\n'
    printf 'frontend api\n  bind 127.0.0.1:%s\n  default_backend nodes\n' "$lbport"
    printf 'backend nodes\n  balance roundrobin\n  option httpchk GET /readyz\n  default-server inter 200ms fall 1 rise 2\n'
    for ((i = 0; i < n; i++)); do printf '  server n%s 127.0.0.1:%s check\n' "$i" "${node_ports[i]}"; done
  } >"$work/haproxy.cfg"
  "$HAPROXY" -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
  lb=$!
  wait_http "http://127.0.0.1:$lbport/readyz"
}

stop_cluster() {
  kill "$lb" 2>/dev/null || true; wait "$lb" 2>/dev/null || true
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=() lb=
}

# Bytes at rest per record: PostgreSQL (records table and its indexes) and the S3 archive.
at_rest() {
  python3 - "$PG" "$work/s3/vitalcore-archive" <<'PY'
import json, os, subprocess, sys
url, root = sys.argv[1], sys.argv[2]
q = "select count(*), pg_total_relation_size('records') from records"
n, pg = (int(v) for v in subprocess.run(["psql", url, "-XAtc", q], capture_output=True, text=True, check=True).stdout.strip().split("|"))
s3 = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
dups = int(subprocess.run(["psql", url, "-XAtc", "select count(*) - count(distinct (subject, record_id)) from records"], capture_output=True, text=True, check=True).stdout)
print(json.dumps({"stored_records": n, "duplicates": dups, "pg_bytes_per_record": round(pg / max(n, 1), 1), "s3_bytes_per_record": round(s3 / max(n, 1), 1)}))
PY
}

for n in 1 2 3; do
  start_cluster "$n"
  out=$("$LOADGEN" --target "http://127.0.0.1:$lbport" --enroll-token "$TOKEN" --batches "$BATCHES" \
    --records "$RECORDS" --concurrency "$CONCURRENCY" --max-seconds "$MAX_SECONDS" \
    --server-pid "$(IFS=,; echo "${pids[*]}")" --label "haproxy_${n}_nodes")
  rest=$(at_rest)
  python3 -c 'import json,sys; a=json.loads(sys.argv[1]); a.update(json.loads(sys.argv[2])); a["nodes"]=int(sys.argv[3]); print(json.dumps(a))' "$out" "$rest" "$n"
  stop_cluster
done

# Failover: 3 nodes, node 1 SIGKILLed a few seconds in and restarted; the load generator keeps
# uploading through the balancer (HAProxy retries a request whose node died on another one;
# the batch's idempotency key makes that safe). Every acknowledged record is stored once.
start_cluster 3
"$LOADGEN" --target "http://127.0.0.1:$lbport" --enroll-token "$TOKEN" --batches "$BATCHES" \
  --records "$RECORDS" --concurrency "$CONCURRENCY" --max-seconds "$MAX_SECONDS" \
  --label haproxy_3_nodes_node_killed >"$work/failover.json" &
gen=$!
sleep 5
kill -KILL "${pids[1]}"; wait "${pids[1]}" 2>/dev/null || true
sleep 1
start_node 1
wait "$gen"
out=$(cat "$work/failover.json")
rest=$(at_rest)
python3 -c '
import json, sys
a = json.loads(sys.argv[1]); a.update(json.loads(sys.argv[2]))
a["lost"] = a["records"] - a["stored_records"]
print(json.dumps(a))
assert a["duplicates"] == 0 and a["stored_records"] >= a["records"], "failover lost or duplicated records"
' "$out" "$rest"
stop_cluster

# Lambda cold start: the release binary against a one-event Runtime API on 127.0.0.1 (the same
# protocol AWS runs; backend/tests/integration/lambda.rs drives more events in `make test`).
fresh_db
python3 - "$LAMBDA" "$PG" "$TOKEN" <<'PY'
import http.server, json, os, subprocess, sys, threading, time
lam, db, token = sys.argv[1:4]
event = {"version": "2.0", "routeKey": "$default", "rawPath": "/v1/enroll", "rawQueryString": "",
         "headers": {"content-type": "application/json"},
         "requestContext": {"accountId": "123456789012", "apiId": "api", "domainName": "api.example", "domainPrefix": "api",
                            "http": {"method": "POST", "path": "/v1/enroll", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "bench"},
                            "requestId": "r", "routeKey": "$default", "stage": "$default", "time": "07/Dec/2026:23:00:00 +0000", "timeEpoch": 0},
         "body": json.dumps({"enrollment_token": token}), "isBase64Encoded": False}
marks, served = {}, threading.Event()
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        marks.setdefault("init", time.perf_counter())
        if served.is_set():
            time.sleep(5); self.send_response(500); self.end_headers(); return
        served.set()
        body = json.dumps(event).encode()
        self.send_response(200)
        for k, v in (("Lambda-Runtime-Aws-Request-Id", "r1"), ("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30000)),
                     ("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-west-1:123456789012:function:vitalcore"),
                     ("Lambda-Runtime-Trace-Id", "Root=1-0-0"), ("Content-Length", str(len(body)))):
            self.send_header(k, v)
        self.end_headers(); self.wfile.write(body)
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0)); body = self.rfile.read(n)
        marks["answer"] = time.perf_counter(); marks["status"] = json.loads(body).get("statusCode")
        self.send_response(202); self.send_header("Content-Length", "0"); self.end_headers()
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
env = dict(os.environ, AWS_LAMBDA_RUNTIME_API=f"127.0.0.1:{srv.server_port}", AWS_LAMBDA_FUNCTION_NAME="vitalcore",
           AWS_LAMBDA_FUNCTION_VERSION="$LATEST", AWS_LAMBDA_FUNCTION_MEMORY_SIZE="512",
           AWS_LAMBDA_LOG_GROUP_NAME="g", AWS_LAMBDA_LOG_STREAM_NAME="s", VITALCORE_DATABASE_URL=db,
           VITALCORE_ENROLLMENT_TOKENS=token, VITALCORE_DB_MAX_CONNECTIONS="2", RUST_LOG="warn")
env.pop("VITALCORE_S3_BUCKET", None)
t0 = time.perf_counter()
p = subprocess.Popen([lam], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
deadline = time.time() + 30
while "answer" not in marks and time.time() < deadline:
    time.sleep(0.002)
p.kill(); p.wait()
assert marks.get("status") == 201, marks
print(json.dumps({"label": "lambda_cold_start_release", "init_ms": round((marks["init"] - t0) * 1000, 1),
                  "first_answer_ms": round((marks["answer"] - t0) * 1000, 1),
                  "binary_bytes": os.path.getsize(lam), "note": "process start to first invocation/next, and to the enroll answer; PostgreSQL connect + migration check included"}))
PY
