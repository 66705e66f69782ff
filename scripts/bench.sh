#!/usr/bin/env bash
# make bench: a standard run of every load scenario (steady, ramp, hot show, idle streams)
# against a fresh Boxoffice on this machine — durable PostgreSQL (synchronous_commit on), the
# embedded broker — printing one table. Arguments go to `boxoffice loadtest` and override the
# standard sizes, e.g. scripts/bench.sh -scenario steady -rate 500 -duration 60s.
#
# Each run gets a database of its own (boxoffice_bench, made again) and a fresh broker log, with
# the Load Lab theatre scheduled (LOADTEST_CATALOG) so there are seats enough, and booking rate
# limits off (BOOKING_RATE_LIMIT=0). The web answers on 127.0.0.1:${BOXOFFICE_BENCH_PORT:-18080}.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

pg_port="${BOXOFFICE_PG_PORT:-55432}"
http_port="${BOXOFFICE_BENCH_PORT:-18080}"
bin="${BOXOFFICE_BIN:-bin/boxoffice}"
scripts/postgres.sh start >/dev/null
pg_bin=""
for v in 17 16 15; do
  if [ -x "/usr/lib/postgresql/$v/bin/psql" ]; then pg_bin="/usr/lib/postgresql/$v/bin"; break; fi
done
PGPASSWORD=boxoffice "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U boxoffice -d postgres -q \
  -c "DROP DATABASE IF EXISTS boxoffice_bench WITH (FORCE)" -c "CREATE DATABASE boxoffice_bench" >/dev/null

work="$(mktemp -d)"
DATABASE_URL="postgres://boxoffice:boxoffice@127.0.0.1:${pg_port}/boxoffice_bench?sslmode=disable" \
HTTP_ADDR="127.0.0.1:${http_port}" KAFKA_DATA_DIR="$work/kafka" LOADTEST_CATALOG=true \
BOOKING_RATE_LIMIT=0 LOG_LEVEL=warn PPROF_ADDR="${BOXOFFICE_PPROF_ADDR:-}" \
GODEBUG="${RUNTIME_GODEBUG:-adaptivestackstart=0}${GODEBUG:+,$GODEBUG}" "$bin" >"$work/boxoffice.log" 2>&1 &
pid=$!
stop() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT

started=$(date +%s.%N)
for _ in $(seq 1 300); do
  if "$bin" health "http://127.0.0.1:${http_port}/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then echo "bench: boxoffice did not start:" >&2; cat "$work/boxoffice.log" >&2; exit 1; fi
  sleep 0.1
done
ready=$(date +%s.%N)

echo "== machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GB, load average $(cut -d' ' -f1-3 /proc/loadavg); $(go version | cut -d' ' -f3)"
echo "== boxoffice ready in $(awk -v a="$started" -v b="$ready" 'BEGIN {printf "%.1f", b - a}') s (fresh database, embedded broker, durable PostgreSQL)"
echo "== $bin loadtest -url http://127.0.0.1:${http_port} -scenario all -duration 10s -rate 200 -ramp-from 200 -ramp-to 1400 -ramp-step 300 -buyers 10000 -streams 10000 $*"
# The CPU time of the whole machine (/proc/stat's first line): busy, idle and stolen. On a
# virtual machine the host may take CPU from it (steal): figures from a run that lost much of it
# are not comparable with others.
cpu_times() { awk '/^cpu / {print $2+$3+$4+$7+$8, $5+$6, $9}' /proc/stat; }
before_cpu=$(cpu_times)
"$bin" loadtest -url "http://127.0.0.1:${http_port}" -scenario all -duration 10s -rate 200 \
  -ramp-from 200 -ramp-to 1400 -ramp-step 300 -buyers 10000 -streams 10000 "$@"
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg); during the run the CPU was $(
  echo "$before_cpu $(cpu_times)" | awk '{busy = $4 - $1; idle = $5 - $2; steal = $6 - $3; all = busy + idle + steal
    if (all <= 0) all = 1
    printf "%.0f%% busy, %.0f%% idle, %.0f%% taken by the host (steal)", 100 * busy / all, 100 * idle / all, 100 * steal / all}')"
