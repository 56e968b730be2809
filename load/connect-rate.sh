#!/usr/bin/env bash
# Issue 12 target 6 (connect rate) on its own: our server (Release) and load/'s bare-server (Kestrel's
# ceiling) side by side, CONNECTS authenticated MQTT connects at full speed with CONCURRENCY handshakes in
# flight, ROUNDS alternating rounds. Prints connects/s, CONNACK p50/p99, and the CPU each side spent per
# connect (client: the generator's own process; server: /proc/<pid>/stat), which read the same on a busy
# machine when the rates do not. PIN=1 pins the generator to CPU 0 and both servers to CPU 1 (the
# generator's one-core ceiling against the bare sink). Any other environment reaches our server unchanged.
# Usage: bash load/connect-rate.sh [out-dir]   (env: CONNECTS=9000 CONCURRENCY=1000 ROUNDS=3 PIN=0)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-load/results/connect-rate-$(date -u +%Y%m%dT%H%M%SZ)}
CONNECTS=${CONNECTS:-9000} CONCURRENCY=${CONCURRENCY:-1000} ROUNDS=${ROUNDS:-3} PIN=${PIN:-0}
# Outside the ephemeral range (32768-60999 here), where thousands of client sockets may hold a port.
HTTP_PORT=${HTTP_PORT:-18880} MQTT_PORT=${MQTT_PORT:-18883} BARE_PORT=${BARE_PORT:-18885}
mkdir -p "$OUT"
dotnet build -c Release load -v q -nologo >/dev/null
dotnet build -c Release src/Api -v q -nologo >/dev/null
LOAD=(dotnet load/bin/Release/net10.0/Perf.Load.dll)
GEN=() SRV=()
if [ "$PIN" = 1 ]; then GEN=(taskset -c 0) SRV=(taskset -c 1); fi

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not open" >&2; exit 1; }
for port in "$HTTP_PORT" "$MQTT_PORT" "$BARE_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port is already in use" >&2; exit 1; fi
done

DATA=$(mktemp -d)
DATA_DIR=$DATA BIND_ADDRESS=127.0.0.1 HTTP_BIND_PORT=$HTTP_PORT MQTT_BIND_PORT=$MQTT_PORT COAP_ENABLED=false \
  TCP_INTEGRATION_ENABLED=false EDGES_ENABLED=false "${SRV[@]}" dotnet src/Api/bin/Release/net10.0/Perf.Api.dll >"$OUT/ours.log" 2>&1 & OURS=$!; PIDS+=("$OURS")
"${SRV[@]}" "${LOAD[@]}" bare-server --port "$BARE_PORT" >"$OUT/bare-server.log" 2>&1 & BARE=$!; PIDS+=("$BARE")
wait_port "$HTTP_PORT"; wait_port "$MQTT_PORT"; wait_port "$BARE_PORT"

echo "== provisioning $CONNECTS devices" >&2
"${LOAD[@]}" mqtt-connect --port "$MQTT_PORT" --connections 1 --duration 1s --settle 0s --provision "$CONNECTS" --api "http://127.0.0.1:$HTTP_PORT" >"$OUT/provision.txt" 2>&1
# Warm-up (JIT, pools), not reported.
"${LOAD[@]}" mqtt-connect --port "$MQTT_PORT" --connections 2000 --connect-rate 0 --concurrency "$CONCURRENCY" --duration 1s --settle 0s >/dev/null 2>&1 || true

printf '| round | target | connects/s | p50 ms | p99 ms | client CPU us/connect | server CPU us/connect | load average |\n|---:|---|---:|---:|---:|---:|---:|---|\n' | tee "$OUT/table.md"
field() { grep -m1 -F "\"$2\":" "$1" | sed -E 's/.*: "?([^",]*)"?,?$/\1/'; }
for r in $(seq "$ROUNDS"); do
  for t in ours bare; do
    port=$MQTT_PORT pid=$OURS; [ "$t" = bare ] && port=$BARE_PORT pid=$BARE
    sleep 2 # the previous run's closes are handled before this one starts
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    "${GEN[@]}" "${LOAD[@]}" mqtt-connect --port "$port" --connections "$CONNECTS" --connect-rate 0 --concurrency "$CONCURRENCY" \
      --duration 1s --settle 0s --server-pid "$pid" --json "$OUT/connect-$t-$r.json" >"$OUT/connect-$t-$r.txt" 2>/dev/null || true
    j=$OUT/connect-$t-$r.json
    printf '| %s | %s | %.0f | %s | %s | %s | %s | %s |\n' "$r" "$t" "$(grep -m1 -E '^  "rate":' "$j" | sed -E 's/.*: ([0-9.]+).*/\1/')" \
      "$(field "$j" p50)" "$(field "$j" p99)" "$(field "$j" "client CPU us per connect")" "$(field "$j" "server CPU us per connect")" "$load" | tee -a "$OUT/table.md"
  done
done
