#!/usr/bin/env bash
# Issue 12 target 4, where the bytes come from: like load/alloc-per-message.sh (our host, Release, fresh data
# directory, PERF_DIAGNOSTICS=true, 100 devices, a WARMUP mqtt-publish), then one DURATION run of 100 connections,
# window 32, 64-byte KIND payload while dotnet-trace records the runtime's AllocationTick events with their call
# stacks (`--profile gc-verbose`). Prints B/msg, /health/allocations' top types, and the top types and stacks
# from the trace (samples/AllocStacks). Installs dotnet-trace (a .NET tool, NuGet) into TOOLS once.
# Usage: KIND=numeric DURATION=20s WARMUP=10s OUT=/tmp/alloc bash load/alloc-stacks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${KIND:-numeric} DURATION=${DURATION:-20s} WARMUP=${WARMUP:-10s} OUT=${OUT:-$(mktemp -d)}
HTTP_PORT=${HTTP_PORT:-28990} MQTT_PORT=${MQTT_PORT:-28993}
TOOLS=${TOOLS:-$HOME/.perf-tools} TRACE_VERSION=${TRACE_VERSION:-10.0.750501}
mkdir -p "$OUT"
if [ ! -x "$TOOLS/dotnet-trace" ]; then
  dotnet tool install --tool-path "$TOOLS" dotnet-trace --version "$TRACE_VERSION" >/dev/null
fi
TRACE_EVENT_DIR=$(dirname "$(find "$TOOLS/.store/dotnet-trace" -name Microsoft.Diagnostics.Tracing.TraceEvent.dll | head -1)")
if [ -z "${NO_BUILD:-}" ]; then
  dotnet build -c Release load -v q -nologo >/dev/null
  dotnet build -c Release src/Api -v q -nologo >/dev/null
  dotnet build -c Release samples/AllocStacks -p:TraceEventDir="$TRACE_EVENT_DIR" -v q -nologo >/dev/null
fi
LOAD=(dotnet load/bin/Release/net10.0/Perf.Load.dll)
API="http://127.0.0.1:$HTTP_PORT"
DATA=$(mktemp -d)
PERF_DIAGNOSTICS=true DATA_DIR=$DATA BIND_ADDRESS=127.0.0.1 HTTP_BIND_PORT=$HTTP_PORT MQTT_BIND_PORT=$MQTT_PORT \
  COAP_ENABLED=false TCP_INTEGRATION_ENABLED=false EDGES_ENABLED=false \
  dotnet src/Api/bin/Release/net10.0/Perf.Api.dll >"$OUT/server.log" 2>&1 & PID=$!
# SIGTERM, then up to 10 s for the shutdown checkpoint before the data directory goes (removing it under a
# server still shutting down left servers hanging), then SIGKILL.
stop() { kill $PID 2>/dev/null || true; for _ in $(seq 100); do kill -0 $PID 2>/dev/null || break; sleep 0.1; done; kill -9 $PID 2>/dev/null || true; rm -rf "$DATA"; }
trap stop EXIT
for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null && break; sleep 0.1; done
allocated() { curl -s "$API/health/runtime" | grep -o '"allocatedBytes":[0-9]*' | cut -d: -f2; }
"${LOAD[@]}" mqtt-connect --port "$MQTT_PORT" --connections 1 --duration 1s --settle 0s --provision 100 --api "$API" >/dev/null 2>&1
publish() { "${LOAD[@]}" mqtt-publish --port "$MQTT_PORT" --connections 100 --qos 1 --window 32 --payload 64 \
  --payload-kind "$KIND" --duration "$1" --server-pid "$PID" 2>/dev/null; }
publish "$WARMUP" >/dev/null
curl -s "$API/health/allocations?reset=true" >/dev/null
before=$(allocated)
seconds=${DURATION%s}
"$TOOLS/dotnet-trace" collect -p "$PID" --profile gc-verbose --duration "00:00:00:$((seconds + 2))" -o "$OUT/trace.nettrace" >"$OUT/trace.log" 2>&1 &
TRACE=$!
sleep 1
publish "$DURATION" >"$OUT/publish.txt"
after=$(allocated)
curl -s "$API/health/allocations?top=30" >"$OUT/allocations.json"
wait $TRACE
acked=$(grep -E '^\s+acked\s' "$OUT/publish.txt" | head -1 | awk '{print $2}' | tr -d ,)
rate=$(grep -E 'acked msgs/s' "$OUT/publish.txt" | awk '{print $3}')
echo "$KIND: $(echo "scale=1; ($after - $before) / $acked" | bc) B/msg ($acked acked, $rate msgs/s, load $(cut -d' ' -f1 /proc/loadavg)) while traced; files in $OUT"
dotnet samples/AllocStacks/bin/Release/net10.0/Perf.AllocStacks.dll "$OUT/trace.nettrace" 14 20
