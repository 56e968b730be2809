#!/usr/bin/env bash
# Issue 12 target 4: server-wide allocated bytes per QoS 1 telemetry message in steady state.
# Starts our host (Release, fresh data directory, PERF_DIAGNOSTICS=true), provisions 100 devices, warms up
# for WARMUP, then for each of ROUNDS runs a DURATION mqtt-publish (100 connections, window 32, 64-byte
# payload of KIND text|numeric) and divides the growth of /health/runtime's allocatedBytes by the acked
# messages. Any extra environment reaches the server unchanged.
# Usage: KIND=text ROUNDS=2 DURATION=20s WARMUP=10s bash load/alloc-per-message.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${KIND:-text} ROUNDS=${ROUNDS:-2} DURATION=${DURATION:-20s} WARMUP=${WARMUP:-10s}
HTTP_PORT=${HTTP_PORT:-28990} MQTT_PORT=${MQTT_PORT:-28993}
if [ -z "${NO_BUILD:-}" ]; then
  dotnet build -c Release load -v q -nologo >/dev/null
  dotnet build -c Release src/Api -v q -nologo >/dev/null
fi
LOAD=(dotnet load/bin/Release/net10.0/Perf.Load.dll)
API="http://127.0.0.1:$HTTP_PORT"
DATA=$(mktemp -d)
PERF_DIAGNOSTICS=true DATA_DIR=$DATA BIND_ADDRESS=127.0.0.1 HTTP_BIND_PORT=$HTTP_PORT MQTT_BIND_PORT=$MQTT_PORT \
  COAP_ENABLED=false TCP_INTEGRATION_ENABLED=false EDGES_ENABLED=false \
  dotnet src/Api/bin/Release/net10.0/Perf.Api.dll >"$DATA.log" 2>&1 & PID=$!
# SIGTERM, then up to 10 s for the shutdown checkpoint before the data directory goes (removing it under a
# server still shutting down left servers hanging), then SIGKILL.
stop() { kill $PID 2>/dev/null || true; for _ in $(seq 100); do kill -0 $PID 2>/dev/null || break; sleep 0.1; done; kill -9 $PID 2>/dev/null || true; rm -rf "$DATA" "$DATA.log"; }
trap stop EXIT
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null && break; sleep 0.1; done
allocated() { curl -s "$API/health/runtime" | grep -o '"allocatedBytes":[0-9]*' | cut -d: -f2; }
"${LOAD[@]}" mqtt-connect --port "$MQTT_PORT" --connections 1 --duration 1s --settle 0s --provision 100 --api "$API" >/dev/null 2>&1
publish() { "${LOAD[@]}" mqtt-publish --port "$MQTT_PORT" --connections 100 --qos 1 --window 32 --payload 64 \
  --payload-kind "$KIND" --duration "$1" --server-pid "$PID" 2>/dev/null; }
publish "$WARMUP" >/dev/null
for run in $(seq "$ROUNDS"); do
  before=$(allocated)
  out=$(publish "$DURATION")
  after=$(allocated)
  acked=$(echo "$out" | grep -E '^\s+acked\s' | head -1 | awk '{print $2}' | tr -d ,)
  rate=$(echo "$out" | grep -E 'acked msgs/s' | awk '{print $3}')
  echo "$KIND run $run: $(echo "scale=1; ($after - $before) / $acked" | bc) B/msg ($acked acked, $rate msgs/s, load $(cut -d' ' -f1 /proc/loadavg))"
done
