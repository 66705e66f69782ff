#!/usr/bin/env bash
# Where one hop's time goes: a light steady load (10 bookings a second for 15 s, so the machine is
# nearly idle and the figures are the pipeline's floor, not a queue) against a fresh Boxoffice,
# as make bench runs it but logging every event at debug level, then `boxoffice hops` over the
# log: per consumer how long its events waited (broker and fetch) and how long handling took,
# per outbox relay its drains' take, publish and commit and its fast lane's publish and delete.
# Arguments go to `boxoffice loadtest`, e.g. scripts/hops.sh -rate 100 -duration 20s.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

bin="${BOXOFFICE_BIN:-bin/boxoffice}"
log_level=debug
# shellcheck source=scripts/fresh-boxoffice.sh
. scripts/fresh-boxoffice.sh
# A few seconds first so every connection has its statements prepared; only what follows counts.
"$bin" loadtest -url "http://127.0.0.1:${http_port}" -scenario steady -rate 10 -duration 3s >/dev/null
skip=$(wc -l <"$work/boxoffice.log")
echo "== machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$bin" loadtest -url "http://127.0.0.1:${http_port}" -scenario steady -rate 10 -duration 15s "$@"
echo
tail -n +"$((skip + 1))" "$work/boxoffice.log" | "$bin" hops
