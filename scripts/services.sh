#!/usr/bin/env bash
# Services the backend tests need, idempotent: `start` (default) or `stop`.
#  - PostgreSQL 15 (Debian cluster "main"): started with pg_ctlcluster, role and database
#    "vitalcore_test" created if missing. Tests read VITALCORE_TEST_PG_URL (exported by make).
#  - s3s-fs (S3-protocol server from crates.io), built once into a per-user cache shared by
#    every clone on the machine (VITALCORE_SERVICES_CACHE, default ~/.cache/vitalcore-services)
#    and linked as .services/bin/s3s-fs; the tests start their own instance on a free port
#    (VITALCORE_S3_SERVER_BIN).
#  - HAProxy (Debian's package), the load balancer of the scale-out test and benchmark
#    (tests/tests/scale_out.rs, scripts/bench_scale.sh): installed with apt-get only when missing;
#    each test starts its own instance on a free port (VITALCORE_HAPROXY_BIN).
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:-start}
PG_VERSION=15
PG_ROLE=vitalcore_test
PG_DB=vitalcore_test
S3S_VERSION=0.14.0
SERVICES=.services

as_postgres() { runuser -u postgres -- "$@"; }

pg_start() {
  if ! command -v pg_ctlcluster >/dev/null; then
    echo "services: PostgreSQL $PG_VERSION is not installed (apt-get install postgresql-$PG_VERSION)" >&2
    exit 1
  fi
  if ! pg_lsclusters -h | awk '{print $1"/"$2}' | grep -qx "$PG_VERSION/main"; then
    pg_createcluster "$PG_VERSION" main >/dev/null
  fi
  if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1==v && $2=="main" {print $4}' | grep -q online; then
    pg_ctlcluster "$PG_VERSION" main start
  fi
  for _ in $(seq 1 50); do
    as_postgres pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.2
  done
  as_postgres psql -q -v ON_ERROR_STOP=1 -d postgres <<SQL >/dev/null
SELECT 'ok';
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
    CREATE ROLE $PG_ROLE LOGIN PASSWORD '$PG_ROLE';
  END IF;
END \$\$;
SQL
  if ! as_postgres psql -tA -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
    as_postgres createdb -O "$PG_ROLE" "$PG_DB"
  fi
  # Tests create many short-lived schemas and connections in parallel.
  as_postgres psql -q -d postgres -c "ALTER SYSTEM SET max_connections = 300" >/dev/null
  if [ "$(as_postgres psql -tA -d postgres -c 'SHOW max_connections')" != 300 ]; then
    pg_ctlcluster "$PG_VERSION" main restart
  fi
}

s3_install() {
  local cache=${VITALCORE_SERVICES_CACHE:-$HOME/.cache/vitalcore-services}
  if ! [ -x "$cache/bin/s3s-fs" ] || [ "$(cat "$cache/s3s-fs.version" 2>/dev/null)" != "$S3S_VERSION" ]; then
    echo "services: building s3s-fs $S3S_VERSION from crates.io into $cache (once per machine)" >&2
    cargo install --quiet --locked --force --root "$cache" "s3s-fs@$S3S_VERSION" --features binary
    echo "$S3S_VERSION" > "$cache/s3s-fs.version"
  fi
  mkdir -p "$SERVICES/bin"
  ln -sfn "$cache/bin/s3s-fs" "$SERVICES/bin/s3s-fs"
}

haproxy_install() {
  if ! [ -x /usr/sbin/haproxy ]; then
    echo "services: installing Debian's haproxy" >&2
    # The package list may be missing on a fresh machine; refresh it once, then install.
    apt-get install -y -q haproxy >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q haproxy >/dev/null; }
  fi
  # The package's own service is not needed: tests run their own instances.
  if command -v systemctl >/dev/null && systemctl is-active -q haproxy 2>/dev/null; then
    systemctl stop haproxy || true
  fi
}

case "$action" in
  start)
    pg_start
    s3_install
    haproxy_install
    echo "services: postgresql, s3s-fs and haproxy ready" >&2
    ;;
  stop)
    pg_ctlcluster "$PG_VERSION" main stop 2>/dev/null || true
    ;;
  *)
    echo "usage: $0 [start|stop]" >&2
    exit 2
    ;;
esac
