#!/usr/bin/env bash
# Starts a private PostgreSQL cluster for Boxoffice from the Debian binaries already on the
# machine, unless DATABASE_URL already answers. Idempotent: safe to call before every run/test.
#
#   scripts/postgres.sh start   # init (first time) and start; prints the DATABASE_URL
#   scripts/postgres.sh stop
#   scripts/postgres.sh crash   # stop at once, as a power cut would (for the crash test)
#
# BOXOFFICE_PG_DIR puts the cluster elsewhere (the crash test runs one of its own).
#
# The cluster listens on 127.0.0.1:${BOXOFFICE_PG_PORT:-55432} only, with a superuser
# "boxoffice" (password "boxoffice") so tests can create throw-away databases.
set -euo pipefail

cmd="${1:-start}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
port="${BOXOFFICE_PG_PORT:-55432}"
default_url="postgres://boxoffice:boxoffice@127.0.0.1:${port}/boxoffice?sslmode=disable"
url="${DATABASE_URL:-$default_url}"

pg_bin=""
for v in 17 16 15; do
  if [ -x "/usr/lib/postgresql/$v/bin/pg_ctl" ]; then pg_bin="/usr/lib/postgresql/$v/bin"; break; fi
done

log() { echo "postgres.sh: $*" >&2; }

# run_pg runs a PostgreSQL binary as the cluster's owner: PostgreSQL refuses to run as root,
# so as root we use the "postgres" system user that Debian's packages create.
run_pg() {
  if [ "$(id -u)" = "0" ]; then
    # From /, which the postgres user can always enter (a root-only checkout is not).
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# answers is true when the database in the URL accepts a query (pg_isready alone would say
# yes for a server whose database does not exist yet).
answers() {
  local psql="psql"
  command -v psql >/dev/null 2>&1 || psql="$pg_bin/psql"
  [ -x "$(command -v "$psql" 2>/dev/null)" ] || return 1
  "$psql" "$url" -qAtc 'select 1' >/dev/null 2>&1
}

# data_dir picks .data/pg inside the checkout, unless the cluster owner cannot reach it (a
# checkout under a root-only temp dir): then a per-checkout directory under /var/tmp.
data_dir() {
  if [ -n "${BOXOFFICE_PG_DIR:-}" ]; then echo "$BOXOFFICE_PG_DIR"; return; fi
  local d="$repo/.data/pg"
  if [ "$(id -u)" = "0" ]; then
    mkdir -p "$repo/.data"
    if ! runuser -u postgres -- test -x "$repo/.data"; then
      d="/var/tmp/boxoffice-pg-$(echo -n "$repo" | cksum | cut -d' ' -f1)"
    fi
  fi
  echo "$d"
}

install_postgres() {
  log "PostgreSQL binaries not found; installing Debian's postgresql package"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  for v in 17 16 15; do
    if [ -x "/usr/lib/postgresql/$v/bin/pg_ctl" ]; then pg_bin="/usr/lib/postgresql/$v/bin"; break; fi
  done
}

start() {
  if answers; then
    log "PostgreSQL already answers at $url"
    echo "$url"
    return 0
  fi
  if [ "$url" != "$default_url" ]; then
    log "DATABASE_URL=$url does not answer; starting the private cluster needs DATABASE_URL unset"
    exit 1
  fi
  [ -n "$pg_bin" ] || install_postgres
  local dir; dir="$(data_dir)"
  if [ "$(id -u)" = "0" ]; then
    mkdir -p "$dir" && chown postgres:postgres "$dir" && chmod 700 "$dir"
  else
    mkdir -p "$dir" && chmod 700 "$dir"
  fi
  if [ ! -f "$dir/PG_VERSION" ]; then
    log "initialising a private cluster in $dir"
    local pw; pw="$(mktemp)"; echo boxoffice >"$pw"; chmod 644 "$pw"
    run_pg "$pg_bin/initdb" -D "$dir" -U boxoffice --pwfile="$pw" -A scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pw"
    cat >>"$dir/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = ''
max_connections = 300
shared_buffers = 256MB
fsync = on
synchronous_commit = on
log_min_messages = warning
CONF
  fi
  if ! answers_db postgres; then
    log "starting PostgreSQL on 127.0.0.1:$port (data in $dir)"
    run_pg "$pg_bin/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null
  fi
  # The application database; the cluster's superuser owns it.
  for _ in $(seq 1 50); do answers_db postgres && break; sleep 0.1; done
  if ! answers; then
    log "creating database boxoffice"
    PGPASSWORD=boxoffice "$pg_bin/psql" -h 127.0.0.1 -p "$port" -U boxoffice -d postgres -qc "CREATE DATABASE boxoffice" >/dev/null
  fi
  echo "$url"
}

answers_db() {
  "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$port" -d "$1" >/dev/null 2>&1
}

stop() {
  local dir; dir="$(data_dir)"
  [ -f "$dir/postmaster.pid" ] || { log "not running"; return 0; }
  run_pg "$pg_bin/pg_ctl" -D "$dir" -m fast stop >/dev/null
}

crash() {
  local dir; dir="$(data_dir)"
  [ -f "$dir/postmaster.pid" ] || { log "not running"; return 0; }
  run_pg "$pg_bin/pg_ctl" -D "$dir" -m immediate stop >/dev/null
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  crash) crash ;;
  *) echo "usage: $0 start|stop|crash" >&2; exit 2 ;;
esac
