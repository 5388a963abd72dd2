#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft) on loopback, from Maven Central jars. No Docker.
#
#   scripts/kafka.sh [--test] fetch    download the broker jars with Maven (once; cached in .kafka/libs)
#   scripts/kafka.sh [--test] start    format storage if needed, start in the background, wait until it
#                                      answers, print its bootstrap address on stdout
#   scripts/kafka.sh [--test] stop     stop it and wait for it to exit
#   scripts/kafka.sh [--test] status   print the bootstrap address if it runs, exit 1 if not
#   scripts/kafka.sh [--test] where    print its port, controller port, state folder and log folder
#   scripts/kafka.sh [--test] reset    stop it and delete its log folder (every topic, message and
#                                      consumer group) after a confirmation; CONFIRM=yes skips it
#
# Two brokers that never share state: the desk's (make kafka-up, kafka-down, kafka-reset) keeps its
# log in .kafka/data and listens on KAFKA_PORT (default 39092); the tests' (--test, started by the
# test suite) keeps everything under .kafka/test and listens two ports above the desk's, or on
# KAFKA_TEST_PORT. A topic, message or group made by a test is never on the desk's broker.
#
# Environment: KAFKA_HOME_DIR (default .kafka), KAFKA_PORT (default 39092; the controller
# listens on the port + 1), KAFKA_TEST_PORT (default KAFKA_PORT + 2), KAFKA_HEAP (default 512m).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
home="${KAFKA_HOME_DIR:-$root/.kafka}"
desk_port="${KAFKA_PORT:-39092}"
libs="$home/libs"
if [ "${1:-}" = "--test" ]; then
  shift
  instance="the tests' broker"
  is_test=1
  state="$home/test"
  port="${KAFKA_TEST_PORT:-$((desk_port + 2))}"
else
  instance="the desk's broker"
  is_test=0
  state="$home"
  port="$desk_port"
fi
cport="$((port + 1))"
data="$state/data"
pidfile="$state/broker.pid"
log="$state/broker.log"
props="$state/server.properties"

die() { echo "kafka.sh: $*" >&2; exit 1; }

if [ "$is_test" = 1 ] && [ "$port" -le "$((desk_port + 1))" ] && [ "$cport" -ge "$desk_port" ]; then
  die "KAFKA_TEST_PORT=$port collides with the desk's broker on $desk_port and $((desk_port + 1)): pick another"
fi

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

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

start() {
  if running; then echo "127.0.0.1:$port"; return 0; fi
  fetch
  for p in "$port" "$cport"; do
    port_taken "$p" && die "port $p is taken by another process, so $instance cannot start there (KAFKA_PORT, KAFKA_TEST_PORT)"
  done
  mkdir -p "$state"
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

where() {
  echo "port=$port"
  echo "controller_port=$cport"
  echo "state=$state"
  echo "log_dirs=$data"
}

reset() {
  if [ -d "$data" ] && [ ! -f "$data/meta.properties" ] && [ -n "$(ls -A "$data")" ]; then
    die "$data is not a Kafka log folder (no meta.properties): not deleting it"
  fi
  if [ "${CONFIRM:-}" != "yes" ]; then
    [ -t 0 ] || die "deleting $data needs a confirmation; with no terminal to ask on, set CONFIRM=yes (CONFIRM=yes make kafka-reset)"
    printf 'Stop %s on 127.0.0.1:%s and delete every topic, message and consumer group in %s? Type yes: ' \
      "$instance" "$port" "$data" >&2
    local answer=""
    read -r answer || true
    [ "$answer" = "yes" ] || die "nothing deleted"
  fi
  stop
  rm -rf -- "$data"
  echo "kafka.sh: deleted $data; the next start is an empty broker" >&2
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  status) running && echo "127.0.0.1:$port" || exit 1 ;;
  where) where ;;
  reset) reset ;;
  *) echo "usage: scripts/kafka.sh [--test] fetch|start|stop|status|where|reset" >&2; exit 2 ;;
esac
