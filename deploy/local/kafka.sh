#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) for development, tests and CI.
#   deploy/local/kafka.sh start|stop|status|restart|logs
# Jars come from Maven Central through deploy/kafka/pom.xml; data, logs and the pid file live
# under $SME_DATA_DIR/kafka (default ./.data/kafka, git-ignored). Idempotent: start on a running
# broker and stop on a stopped one both succeed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DATA_DIR=${SME_DATA_DIR:-$ROOT/.data}
case "$DATA_DIR" in /*) ;; *) DATA_DIR=$ROOT/$DATA_DIR ;; esac
KAFKA_HOME=$DATA_DIR/kafka
LIBS=$KAFKA_HOME/libs
LOGS=$KAFKA_HOME/logs
STORE=$KAFKA_HOME/kraft
PIDFILE=$KAFKA_HOME/broker.pid
HOST=${SME_KAFKA_HOST:-127.0.0.1}
PORT=${SME_KAFKA_PORT:-9092}
CONTROLLER_PORT=${SME_KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
WAIT_SECONDS=${SME_KAFKA_START_TIMEOUT:-90}
HEAP=${SME_KAFKA_HEAP:-1g}
POM=$ROOT/deploy/kafka/pom.xml

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

require_java() {
  command -v java >/dev/null || die "java not found (Java 17+ is required for Kafka 4.x)"
  local major
  major=$(java -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2}')
  [ "${major%%.*}" -ge 17 ] 2>/dev/null || die "Java 17+ required, found ${major:-unknown}"
}

# Resolve the broker jars once per pom content (the stamp holds the pom's hash).
ensure_jars() {
  local stamp=$LIBS/.pom.sha256 want
  want=$(sha256sum "$POM" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found: Maven is needed to fetch the Kafka jars"
  log "resolving Kafka jars with Maven (first run only)"
  rm -rf "$LIBS"; mkdir -p "$LIBS"
  mvn -q -B -f "$POM" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$LIBS" >"$KAFKA_HOME/maven.log" 2>&1 \
    || { tail -n 40 "$KAFKA_HOME/maven.log" >&2; die "Maven could not resolve the Kafka jars"; }
  echo "$want" >"$stamp"
}

write_config() {
  mkdir -p "$LOGS" "$STORE"
  cat >"$KAFKA_HOME/server.properties" <<CONF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$STORE
num.partitions=6
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=168
log.segment.bytes=104857600
CONF
}

java_cmd() {
  java -Xmx256m -Dkafka.logs.dir="$LOGS" -Dlog4j2.configurationFile="$ROOT/deploy/local/log4j2.properties" \
    -cp "$LIBS/*" "$@"
}

format_once() {
  [ -f "$STORE/meta.properties" ] && return 0
  log "formatting KRaft storage in $STORE"
  java_cmd kafka.tools.StorageTool format --standalone \
      --cluster-id "$(java_cmd kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)" \
      --config "$KAFKA_HOME/server.properties" >"$LOGS/format.log" 2>&1 \
    || { cat "$LOGS/format.log" >&2; die "storage format failed"; }
}

running_pid() {
  [ -f "$PIDFILE" ] || return 1
  local pid; pid=$(cat "$PIDFILE")
  kill -0 "$pid" 2>/dev/null && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q kafka.Kafka \
    && { echo "$pid"; return 0; }
  return 1
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null; }

# Ready = the broker answers a metadata request (port open alone is too early under KRaft).
broker_ready() {
  port_open || return 1
  grep -q "Kafka Server started" "$LOGS/server.log" 2>/dev/null
}

start() {
  require_java
  mkdir -p "$KAFKA_HOME"
  if pid=$(running_pid); then log "already running (pid $pid) on $HOST:$PORT"; return 0; fi
  if port_open; then die "port $HOST:$PORT is taken by another process; set SME_KAFKA_PORT"; fi
  ensure_jars
  write_config
  format_once
  : >"$LOGS/server.log"
  log "starting broker on $HOST:$PORT (logs: $LOGS/server.log)"
  nohup setsid bash -c 'exec "$@"' _ java -Xms"$HEAP" -Xmx"$HEAP" -XX:+UseG1GC \
      -Djava.awt.headless=true -Dkafka.logs.dir="$LOGS" \
      -Dlog4j2.configurationFile="$ROOT/deploy/local/log4j2.properties" \
      -cp "$LIBS/*" kafka.Kafka "$KAFKA_HOME/server.properties" \
      >"$LOGS/stdout.log" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
  local deadline=$((SECONDS + WAIT_SECONDS))
  until broker_ready; do
    if ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
      tail -n 40 "$LOGS/stdout.log" "$LOGS/server.log" >&2 || true
      die "broker exited during start-up"
    fi
    if [ $SECONDS -ge $deadline ]; then
      tail -n 40 "$LOGS/server.log" >&2 || true
      die "broker not ready after ${WAIT_SECONDS}s"
    fi
    sleep 0.5
  done
  log "ready on $HOST:$PORT (pid $(cat "$PIDFILE"))"
}

stop() {
  local pid
  if ! pid=$(running_pid); then log "not running"; rm -f "$PIDFILE"; return 0; fi
  log "stopping broker (pid $pid)"
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then log "still alive after 30s, killing"; kill -9 "$pid"; fi
  rm -f "$PIDFILE"
}

status() {
  if pid=$(running_pid); then echo "running (pid $pid) on $HOST:$PORT"; else echo "stopped"; return 3; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  logs) tail -n "${2:-100}" "$LOGS/server.log" ;;
  *) echo "usage: $0 start|stop|restart|status|logs [N]" >&2; exit 2 ;;
esac
