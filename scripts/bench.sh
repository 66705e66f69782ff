#!/usr/bin/env bash
# make bench: a standard run of every load scenario (steady, ramp, hot show, idle streams)
# against a fresh Boxoffice on this machine — durable PostgreSQL (synchronous_commit on), the
# embedded broker — printing one table. Arguments go to `boxoffice loadtest` and override the
# standard sizes, e.g. scripts/bench.sh -scenario steady -rate 500 -duration 60s.
#
# Each run gets a fresh Boxoffice (scripts/fresh-boxoffice.sh): a database of its own, a fresh
# broker log, the Load Lab theatre scheduled so there are seats enough, and booking rate limits
# and the per-address stream cap off. The web answers on 127.0.0.1:${BOXOFFICE_BENCH_PORT:-18080}.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

bin="${BOXOFFICE_BIN:-bin/boxoffice}"
log_level=warn
# shellcheck source=scripts/fresh-boxoffice.sh
. scripts/fresh-boxoffice.sh

echo "== machine: $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GB, load average $(cut -d' ' -f1-3 /proc/loadavg); $(go version | cut -d' ' -f3)"
echo "== boxoffice ready in $(awk -v a="$started" -v b="$ready" 'BEGIN {printf "%.1f", b - a}') s (fresh database, embedded broker, durable PostgreSQL)"
echo "== $bin loadtest -url http://127.0.0.1:${http_port} -metrics http://127.0.0.1:${ops_port}/metrics -scenario all -duration 10s -rate 200 -ramp-from 200 -ramp-to 1400 -ramp-step 300 -buyers 10000 -streams 10000 $*"
# The CPU time of the whole machine (/proc/stat's first line): busy, idle and stolen. On a
# virtual machine the host may take CPU from it (steal): figures from a run that lost much of it
# are not comparable with others.
cpu_times() { awk '/^cpu / {print $2+$3+$4+$7+$8, $5+$6, $9}' /proc/stat; }
before_cpu=$(cpu_times)
"$bin" loadtest -url "http://127.0.0.1:${http_port}" -metrics "http://127.0.0.1:${ops_port}/metrics" -scenario all -duration 10s -rate 200 \
  -ramp-from 200 -ramp-to 1400 -ramp-step 300 -buyers 10000 -streams 10000 "$@"
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg); during the run the CPU was $(
  echo "$before_cpu $(cpu_times)" | awk '{busy = $4 - $1; idle = $5 - $2; steal = $6 - $3; all = busy + idle + steal
    if (all <= 0) all = 1
    printf "%.0f%% busy, %.0f%% idle, %.0f%% taken by the host (steal)", 100 * busy / all, 100 * idle / all, 100 * steal / all}')"
