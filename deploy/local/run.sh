#!/usr/bin/env bash
# `make run`: start the engine and the gateway against the local broker, print where things
# are, and stop both on Ctrl-C. The broker keeps running (`make stop` stops it).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BIN=$ROOT/.venv/bin
DATA_DIR=${SME_DATA_DIR:-$ROOT/.data}
mkdir -p "$DATA_DIR/logs"
HTTP="http://${SME_HTTP_HOST:-127.0.0.1}:${SME_HTTP_PORT:-8080}"
ENGINE="http://${SME_ENGINE_WEB_HOST:-127.0.0.1}:${SME_ENGINE_WEB_PORT:-6066}"

pids=()
cleanup() {
  trap - INT TERM EXIT
  echo; echo "stopping engine and gateway..."
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "stopped (the Kafka broker is still running; 'make stop' stops it)"
  exit 0
}
trap cleanup INT TERM EXIT

"$BIN/sme" topics >/dev/null
"$BIN/sme" engine >"$DATA_DIR/logs/engine.log" 2>&1 & pids+=($!)
"$BIN/sme" gateway >"$DATA_DIR/logs/gateway.log" 2>&1 & pids+=($!)

for _ in $(seq 1 120); do
  if curl -fsS "$HTTP/readyz" >/dev/null 2>&1; then break; fi
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "a service exited during start-up:"; tail -n 30 "$DATA_DIR"/logs/*.log; exit 1; }
  done
  sleep 0.5
done
curl -fsS "$HTTP/readyz" >/dev/null || { echo "gateway not ready after 60s"; tail -n 30 "$DATA_DIR"/logs/*.log; exit 1; }

cat <<MSG
SME is running.
  API           $HTTP/api/v1/035-sequential-messaging-engine   (OpenAPI: $HTTP/docs)
  Dashboard     $HTTP/dashboard
  Metrics       $HTTP/metrics (gateway)   $ENGINE/metrics (engine)
  Kafka         ${SME_KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}  (publish events to sme.events)
  Logs          $DATA_DIR/logs/
Press Ctrl-C to stop the services.
MSG
wait -n "${pids[@]}" || true
echo "a service stopped; see $DATA_DIR/logs/"
