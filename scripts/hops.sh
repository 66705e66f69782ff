#!/usr/bin/env bash
# Where one hop's time goes: a light steady load (10 bookings a second for 15 s, so the machine is
# nearly idle and the figures are the pipeline's floor, not a queue) against a fresh Boxoffice,
# as make bench runs it but logging every event at debug level, then `boxoffice hops` over the
# log: per consumer how long its events waited (broker and fetch) and how long handling took,
# per outbox relay its take, publish and commit. Arguments go to `boxoffice loadtest`, e.g.
# scripts/hops.sh -rate 100 -duration 20s.
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
BOOKING_RATE_LIMIT=0 LOG_LEVEL=debug \
GODEBUG="${RUNTIME_GODEBUG:-adaptivestackstart=0}${GODEBUG:+,$GODEBUG}" "$bin" >"$work/boxoffice.log" 2>&1 &
pid=$!
stop() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT

for _ in $(seq 1 300); do
  if "$bin" health "http://127.0.0.1:${http_port}/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then echo "hops: boxoffice did not start:" >&2; cat "$work/boxoffice.log" >&2; exit 1; fi
  sleep 0.1
done
# A few seconds first so every connection has its statements prepared; only what follows counts.
"$bin" loadtest -url "http://127.0.0.1:${http_port}" -scenario steady -rate 10 -duration 3s >/dev/null
skip=$(wc -l <"$work/boxoffice.log")
echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" loadtest -url "http://127.0.0.1:${http_port}" -scenario steady -rate 10 -duration 15s "$@"
echo
tail -n +"$((skip + 1))" "$work/boxoffice.log" | "$bin" hops
