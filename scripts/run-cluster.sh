#!/usr/bin/env bash
# One process per part, as a cinema chain would deploy Boxoffice when one machine is not enough:
# a Kafka broker, two web replicas, two booking and two payment replicas (each pair one consumer
# group that splits the partitions), notification and ticket. `make run-cluster` runs it;
# Ctrl-C stops every process (SIGTERM: each drains and commits first). Like a supervisor, it
# starts a part again when it exits (a part exits when it loses the broker for good, say).
#
# Environment: BIN (bin/boxoffice), WEB_PORT (8080: the web replicas take 8080 and 8081),
# KAFKA_BROKERS (empty: an embedded broker process on KAFKA_PORT, 9092; or point it at Apache
# Kafka, e.g. $(scripts/kafka.sh brokers 3) with KAFKA_REPLICATION_FACTOR=3), DATABASE_URL,
# CLUSTER_DIR (.data/cluster: logs and the embedded broker's data).
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${BIN:-bin/boxoffice}
web_port=${WEB_PORT:-8080}
kafka_port=${KAFKA_PORT:-9092}
dir=${CLUSTER_DIR:-.data/cluster}
mkdir -p "$dir/logs"
[ -x "$bin" ] || { echo "run-cluster: $bin is missing: run make build" >&2; exit 1; }

pids=()        # the parts
specs=()       # how each was started: "name target VAR=value..."
broker_pid="" # the embedded broker, stopped last so the parts' final commits reach it
stop_all() {
	local status=${1:-0}
	trap - INT TERM EXIT
	echo "run-cluster: stopping ${#pids[@]} processes" >&2
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [ -n "$broker_pid" ]; then
		kill -TERM "$broker_pid" 2>/dev/null || true
		wait "$broker_pid" 2>/dev/null || true
	fi
	exit "$status"
}
trap 'stop_all 0' INT TERM
trap 'stop_all $?' EXIT

# launch NAME TARGET [VAR=value...]: one process, its log appended to $dir/logs/NAME.log.
launch() {
	local name=$1 target=$2
	shift 2
	# The runtime settings the Makefile explains (RUNTIME_GODEBUG).
	env GODEBUG="${RUNTIME_GODEBUG:-adaptivestackstart=0}${GODEBUG:+,$GODEBUG}" "$@" "$bin" -target="$target" >>"$dir/logs/$name.log" 2>&1 &
	echo "run-cluster: $name (pid $!)" >&2
}

# start NAME TARGET [VAR=value...]: a part, remembered so it can be started again.
start() {
	launch "$@"
	pids+=("$!")
	specs+=("$*")
}

wait_port() {
	for _ in $(seq 1 300); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return; fi
		sleep 0.1
	done
	echo "run-cluster: nothing listens on 127.0.0.1:$1 after 30 s; see $dir/logs" >&2
	exit 1
}

if [ -z "${KAFKA_BROKERS:-}" ]; then
	launch broker broker KAFKA_EMBEDDED_PORT="$kafka_port" KAFKA_DATA_DIR="$dir/kafka"
	broker_pid=$!
	wait_port "$kafka_port"
	export KAFKA_BROKERS=127.0.0.1:$kafka_port
fi

# Migrate once before the parts start, instead of six processes queuing for the same lock.
"$bin" -target=migrate >"$dir/logs/migrate.log" 2>&1 || { cat "$dir/logs/migrate.log" >&2; exit 1; }

start web-1 web HTTP_ADDR="127.0.0.1:$web_port" WEB_INSTANCE=web-1
start web-2 web HTTP_ADDR="127.0.0.1:$((web_port + 1))" WEB_INSTANCE=web-2
start booking-1 booking
start booking-2 booking
start payment-1 payment
start payment-2 payment
start notification notification
start ticket ticket
wait_port "$web_port"
wait_port "$((web_port + 1))"
echo "Boxoffice (one process per part) is running at http://127.0.0.1:$web_port and http://127.0.0.1:$((web_port + 1))"
echo "logs: $dir/logs; Ctrl-C stops everything"

# Run until interrupted. A part that exits is started again; without the broker nothing can
# work, so its loss stops everything.
while true; do
	if [ -n "$broker_pid" ] && ! kill -0 "$broker_pid" 2>/dev/null; then
		echo "run-cluster: the broker exited; see $dir/logs/broker.log" >&2
		exit 1
	fi
	for i in "${!pids[@]}"; do
		if ! kill -0 "${pids[$i]}" 2>/dev/null; then
			wait "${pids[$i]}" 2>/dev/null || true
			# shellcheck disable=SC2086 # the spec is "name target VAR=value...", no spaces inside
			set -- ${specs[$i]}
			echo "run-cluster: $1 exited; starting it again" >&2
			launch "$@"
			pids[i]=$!
		fi
	done
	sleep 1
done
