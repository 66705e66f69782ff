# Sourced by scripts/bench.sh and scripts/hops.sh: starts a fresh Boxoffice for a measurement —
# its own database (boxoffice_bench, made again), a fresh embedded broker log, durable PostgreSQL,
# the Load Lab theatre scheduled (LOADTEST_CATALOG) so there are seats enough, booking rate limits
# and the per-address caps off (the load comes from one address, holding thousands of streams;
# each booking is a buyer of its own, so the cap per buyer stays on) — answering on
# 127.0.0.1:$http_port, and waits until it is ready. Set before sourcing:
# bin, log_level. Sets: http_port, ops_port, pid, work (its log is $work/boxoffice.log), started and
# ready (times), and a trap that stops it and removes $work at exit. Run from the repository's
# top. make bench and make hops share the database and the port: one at a time.
pg_port="${BOXOFFICE_PG_PORT:-55432}"
http_port="${BOXOFFICE_BENCH_PORT:-18080}"
ops_port=$((http_port + 1)) # the web's internal port (OPS_ADDR): its /metrics for the load tool
scripts/postgres.sh start >/dev/null
pg_bin=""
for v in 17 16 15; do
  if [ -x "/usr/lib/postgresql/$v/bin/psql" ]; then pg_bin="/usr/lib/postgresql/$v/bin"; break; fi
done
if [ -z "$pg_bin" ]; then echo "$(basename "$0"): no psql of PostgreSQL 15, 16 or 17 under /usr/lib/postgresql" >&2; exit 1; fi
PGPASSWORD=boxoffice "$pg_bin/psql" -h 127.0.0.1 -p "$pg_port" -U boxoffice -d postgres -q \
  -c "DROP DATABASE IF EXISTS boxoffice_bench WITH (FORCE)" -c "CREATE DATABASE boxoffice_bench" >/dev/null

work="$(mktemp -d)"
DATABASE_URL="postgres://boxoffice:boxoffice@127.0.0.1:${pg_port}/boxoffice_bench?sslmode=disable" \
OPS_ADDR="127.0.0.1:${ops_port}" \
HTTP_ADDR="127.0.0.1:${http_port}" KAFKA_DATA_DIR="$work/kafka" LOADTEST_CATALOG=true \
BOOKING_RATE_LIMIT=0 SEATS_PER_ADDRESS=0 STREAMS_PER_ADDRESS=0 LOG_LEVEL="$log_level" PPROF_ADDR="${BOXOFFICE_PPROF_ADDR:-}" \
GODEBUG="${RUNTIME_GODEBUG:-adaptivestackstart=0}${GODEBUG:+,$GODEBUG}" "$bin" >"$work/boxoffice.log" 2>&1 &
pid=$!
stop() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$work"
}
trap stop EXIT

started=$(date +%s.%N)
until "$bin" health "http://127.0.0.1:${http_port}/readyz" >/dev/null 2>&1; do
  if ! kill -0 "$pid" 2>/dev/null; then echo "$(basename "$0"): boxoffice did not start:" >&2; cat "$work/boxoffice.log" >&2; exit 1; fi
  if awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {exit !(b - a > 30)}'; then
    echo "$(basename "$0"): boxoffice not ready within 30 s:" >&2; tail -20 "$work/boxoffice.log" >&2; exit 1
  fi
  sleep 0.1
done
ready=$(date +%s.%N)
