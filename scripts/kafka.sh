#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft) on loopback, from Maven Central jars. No Docker.
#
#   scripts/kafka.sh fetch    download the broker jars with Maven (once; cached in .kafka/libs)
#   scripts/kafka.sh start    format storage if needed, start in the background, wait until it
#                             answers, print its bootstrap address on stdout
#   scripts/kafka.sh stop     stop it and wait for it to exit
#   scripts/kafka.sh status   print the bootstrap address if it runs, exit 1 if not
#
# Environment: KAFKA_HOME_DIR (default .kafka), KAFKA_PORT (default 39092; the controller
# listens on KAFKA_PORT+1), KAFKA_HEAP (default 512m).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
home="${KAFKA_HOME_DIR:-$root/.kafka}"
port="${KAFKA_PORT:-39092}"
cport="$((port + 1))"
libs="$home/libs"
data="$home/data"
pidfile="$home/broker.pid"
log="$home/broker.log"
props="$home/server.properties"

die() { echo "kafka.sh: $*" >&2; exit 1; }

fetch() {
  [ -f "$libs/.complete" ] && return 0
  command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the Kafka jars"
  command -v java >/dev/null || die "Java 17+ is needed to run the Kafka broker"
  mkdir -p "$libs"
  echo "kafka.sh: fetching Apache Kafka jars from Maven Central into $libs" >&2
  mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$libs" >&2 \
    || die "mvn could not fetch the Kafka jars (see above)"
  touch "$libs/.complete"
}

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

answers() {
  # A metadata request through the broker's own admin tool would start a second JVM (slow);
  # a TCP connect plus the "started" line in the log is enough and takes milliseconds.
  grep -q "\[BrokerServer id=1\] Transition from STARTING to STARTED" "$log" 2>/dev/null \
    && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
}

write_props() {
  cat > "$props" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
# Fast housekeeping so retention and compaction can be observed in tests.
log.retention.check.interval.ms=1000
log.cleaner.backoff.ms=500
log.segment.delete.delay.ms=1000
file.delete.delay.ms=1000
PROPS
}

start() {
  if running; then echo "127.0.0.1:$port"; return 0; fi
  fetch
  mkdir -p "$home"
  write_props
  local cp="$libs/*"
  if [ ! -f "$data/meta.properties" ]; then
    local id
    id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
    java -cp "$cp" -Dlog4j2.configurationFile="$here/kafka/log4j2.xml" \
      kafka.tools.StorageTool format -t "$id" -c "$props" --ignore-formatted >/dev/null \
      || die "could not format KRaft storage in $data"
  fi
  : > "$log"
  nohup java -Xms${KAFKA_HEAP:-512m} -Xmx${KAFKA_HEAP:-512m} -XX:+UseG1GC -cp "$cp" \
    -Dlog4j2.configurationFile="$here/kafka/log4j2.xml" \
    kafka.Kafka "$props" >>"$log" 2>&1 &
  echo $! > "$pidfile"
  for _ in $(seq 1 240); do
    if answers; then echo "127.0.0.1:$port"; return 0; fi
    running || { tail -n 30 "$log" >&2; die "the broker exited during start (log: $log)"; }
    sleep 0.25
  done
  tail -n 30 "$log" >&2
  die "the broker did not answer on 127.0.0.1:$port within 60 s (log: $log)"
}

stop() {
  running || { rm -f "$pidfile"; return 0; }
  local pid; pid="$(cat "$pidfile")"
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) running && echo "127.0.0.1:$port" || exit 1 ;;
  *) echo "usage: scripts/kafka.sh fetch|start|stop|status" >&2; exit 2 ;;
esac
