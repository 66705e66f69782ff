#!/usr/bin/env bash
# Real Apache Kafka on 127.0.0.1, in KRaft mode, with nothing done by hand.
#
#   scripts/kafka.sh fetch              take the broker's jars from Maven Central (once)
#   scripts/kafka.sh start [1|3]        start one broker, or a cluster of three (replication 3,
#                                       min.insync.replicas 2); prints the bootstrap servers
#   scripts/kafka.sh stop [1|3]         stop it (the data stays)
#   scripts/kafka.sh reset [1|3]        stop it and delete its data
#   scripts/kafka.sh kill N [1|3]       SIGKILL broker N (for the crash test)
#   scripts/kafka.sh restart N [1|3]    start broker N again
#   scripts/kafka.sh brokers [1|3]      print the bootstrap servers
#
# The single broker listens on 19092, the cluster on 29092-29094 (controllers on +100), so both
# can run at once; BOXOFFICE_KAFKA_PORT and BOXOFFICE_KAFKA_CLUSTER_PORT move their first ports. Brokers keep their data under
# $BOXOFFICE_KAFKA_HOME (.data/apache-kafka by default); the jars stay in .data/apache-kafka.
set -euo pipefail

KAFKA_VERSION=4.1.1 # keep in step with scripts/kafka/pom.xml and docker-compose.yml
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
home=${BOXOFFICE_KAFKA_HOME:-$repo/.data/apache-kafka}
libs=$repo/.data/apache-kafka/dist-$KAFKA_VERSION/libs

die() { echo "kafka.sh: $*" >&2; exit 1; }

fetch() {
	if [ -f "$libs/.complete" ]; then return; fi
	command -v java >/dev/null || die "java is needed (Java 17+)"
	command -v mvn >/dev/null || die "mvn is needed (Maven 3.8+)"
	mkdir -p "$libs"
	echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION's jars from Maven Central into $libs" >&2
	mvn -q -B -Dstyle.color=never -f "$here/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
		dependency:copy-dependencies -DoutputDirectory="$libs" -DincludeScope=runtime >&2
	touch "$libs/.complete"
}

# size is 1 (one broker) or 3 (a cluster); node numbers start at 1.
check_size() { [ "$1" = 1 ] || [ "$1" = 3 ] || die "size $1: want 1 or 3"; }
base_port() {
	if [ "$1" = 1 ]; then echo "${BOXOFFICE_KAFKA_PORT:-19092}"
	else echo "${BOXOFFICE_KAFKA_CLUSTER_PORT:-29092}"; fi
}
node_dir() { echo "$home/cluster-$1/node-$2"; }
broker_port() { echo $(( $(base_port "$1") + $2 - 1 )); }
controller_port() { echo $(( $(base_port "$1") + 100 + $2 - 1 )); }

bootstrap() {
	local size=$1 out="" i
	for i in $(seq 1 "$size"); do out="$out${out:+,}127.0.0.1:$(broker_port "$size" "$i")"; done
	echo "$out"
}

write_config() {
	local size=$1 node=$2 dir voters="" i replicas isr
	dir=$(node_dir "$size" "$node")
	for i in $(seq 1 "$size"); do voters="$voters${voters:+,}$i@127.0.0.1:$(controller_port "$size" "$i")"; done
	if [ "$size" = 3 ]; then replicas=3 isr=2; else replicas=1 isr=1; fi
	mkdir -p "$dir/data"
	cat >"$dir/server.properties" <<EOF
# Written by scripts/kafka.sh: broker $node of $size.
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(broker_port "$size" "$node"),CONTROLLER://127.0.0.1:$(controller_port "$size" "$node")
advertised.listeners=PLAINTEXT://127.0.0.1:$(broker_port "$size" "$node")
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data
num.partitions=6
default.replication.factor=$replicas
min.insync.replicas=$isr
offsets.topic.replication.factor=$replicas
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$isr
# Boxoffice creates its topics itself, with their partition counts.
auto.create.topics.enable=false
# A new consumer group forms at once instead of after 3 s: local brokers serve tests.
group.initial.rebalance.delay.ms=0
# Replay needs history: keep a week (the default), whatever the segment size.
log.retention.hours=168
EOF
	cat >"$dir/log4j2.properties" <<EOF
appender.file.type = File
appender.file.name = file
appender.file.fileName = $dir/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = org.apache.kafka
logger.kafka.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
}

cluster_id() {
	local size=$1 f="$home/cluster-$1/cluster.id"
	if [ ! -s "$f" ]; then
		mkdir -p "$(dirname "$f")"
		java -cp "$libs/*" kafka.tools.StorageTool random-uuid >"$f" 2>/dev/null || die "kafka-storage random-uuid failed"
	fi
	cat "$f"
}

# running SIZE NODE: the node's pid file names a live process that is this broker (a pid file
# left by a crash may name an unrelated process by now).
running() {
	local dir pid
	dir=$(node_dir "$1" "$2")
	[ -f "$dir/pid" ] || return 1
	pid=$(cat "$dir/pid")
	local cmdline
	cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	[[ $cmdline == *"$dir/server.properties"* ]]
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start_node() {
	local size=$1 node=$2 dir pid port
	dir=$(node_dir "$size" "$node")
	if running "$size" "$node"; then return; fi
	rm -f "$dir/pid"
	for port in $(broker_port "$size" "$node") $(controller_port "$size" "$node"); do
		if port_in_use "$port"; then
			die "port $port is in use by another process (another broker? see: ss -ltnp 'sport = :$port')"
		fi
	done
	write_config "$size" "$node"
	if [ ! -f "$dir/data/meta.properties" ]; then
		java -cp "$libs/*" -Dlog4j2.configurationFile="$dir/log4j2.properties" kafka.tools.StorageTool format \
			-t "$(cluster_id "$size")" -c "$dir/server.properties" >"$dir/format.log" 2>&1 ||
			die "formatting broker $node failed: $(tail -5 "$dir/format.log")"
	fi
	: >"$dir/server.log"
	nohup java -Xms256m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$dir/log4j2.properties" \
		-cp "$libs/*" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 &
	pid=$!
	echo "$pid" >"$dir/pid"
}

wait_node() {
	local size=$1 node=$2 dir i
	dir=$(node_dir "$size" "$node")
	for i in $(seq 1 600); do
		if grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null; then return; fi
		# kill -0, not running(): until the fork has exec'ed java, the child's command line is
		# still this script's.
		if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
			die "broker $node of $size exited: $(tail -20 "$dir/stdout.log" "$dir/server.log" 2>/dev/null)"
		fi
		sleep 0.1
	done
	die "broker $node of $size did not start within 60 s: $(tail -20 "$dir/server.log")"
}

stop_node() {
	local size=$1 node=$2 signal=${3:-TERM} dir pid i
	dir=$(node_dir "$size" "$node")
	if ! running "$size" "$node"; then rm -f "$dir/pid"; return 0; fi
	pid=$(cat "$dir/pid")
	if kill -"$signal" "$pid" 2>/dev/null; then
		for i in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$dir/pid"
}

cmd=${1:-}
case "$cmd" in
fetch) fetch ;;
start)
	size=${2:-1}; check_size "$size"; fetch
	for i in $(seq 1 "$size"); do start_node "$size" "$i"; done
	for i in $(seq 1 "$size"); do wait_node "$size" "$i"; done
	echo "kafka.sh: Apache Kafka $KAFKA_VERSION ($size broker(s)) at $(bootstrap "$size")" >&2
	bootstrap "$size"
	;;
stop)
	# All at once: a broker stopped after its peers would wait for a quorum that is gone.
	size=${2:-1}; check_size "$size"
	for i in $(seq 1 "$size"); do stop_node "$size" "$i" & done
	wait
	;;
reset)
	size=${2:-1}; check_size "$size"
	for i in $(seq 1 "$size"); do stop_node "$size" "$i" KILL; done
	rm -rf "$home/cluster-$size"
	;;
kill)
	node=${2:?broker number}; size=${3:-3}; check_size "$size"
	stop_node "$size" "$node" KILL
	;;
restart)
	node=${2:?broker number}; size=${3:-3}; check_size "$size"
	start_node "$size" "$node"
	wait_node "$size" "$node"
	;;
brokers) size=${2:-1}; check_size "$size"; bootstrap "$size" ;;
*) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
