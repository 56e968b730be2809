#!/usr/bin/env bash
# Issue 12 target 7 (two-way RPC: REST -> MQTT device -> REST) with load/native/rpc.c, the one-thread C client:
# at full speed (MAX_DEVICES devices, MAX_CONCURRENCY calls in flight) and paced at RATE round trips/s
# (RATE_DEVICES, RATE_CONCURRENCY), DURATION seconds each, ROUNDS times; with DOTNET=1 load/'s .NET `rpc`
# scenario runs the same two cases right after, for comparison. Prints one table: round trips/s, latency
# p50/p99/p99.9, client CPU µs per round trip, server CPU µs per round trip (/proc/<pid>/stat; START=1 only)
# and the load average before each run (other people share the machine).
# START=1 (default) starts our server (Release) on HTTP_PORT/MQTT_PORT; START=0 uses the server already there
# (as load/issue12.sh does). Devices load-0..load-N-1 (tokens load-token-i) are provisioned or reused by load/'s
# `mqtt-connect --provision`; the JWT (POST /api/auth/login) and the device ids (GET /api/tenant/devices?deviceName=)
# are read with curl and handed to the C program.
# Usage: bash load/rpc-native.sh [out-dir]   (env: DURATION=20 RATE=5000 ROUNDS=1 DOTNET=1 START=1
#        MAX_DEVICES=10 MAX_CONCURRENCY=64 RATE_DEVICES=32 RATE_CONCURRENCY=256 HTTP_PORT=23880 MQTT_PORT=23883
#        USER=tenant@example.com PASSWORD=tenant; any other environment reaches our server unchanged)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-load/results/rpc-native-$(date -u +%Y%m%dT%H%M%SZ)}
DURATION=${DURATION:-20} RATE=${RATE:-5000} ROUNDS=${ROUNDS:-1} DOTNET=${DOTNET:-1} START=${START:-1}
MAX_DEVICES=${MAX_DEVICES:-10} MAX_CONCURRENCY=${MAX_CONCURRENCY:-64} RATE_DEVICES=${RATE_DEVICES:-32} RATE_CONCURRENCY=${RATE_CONCURRENCY:-256}
# Below the ephemeral range (32768-60999 here), where client sockets may hold a port.
HTTP_PORT=${HTTP_PORT:-23880} MQTT_PORT=${MQTT_PORT:-23883}
USER_NAME=${USER_NAME:-tenant@example.com} PASSWORD=${PASSWORD:-tenant}
API="http://127.0.0.1:$HTTP_PORT"
DURATION=${DURATION%s}
mkdir -p "$OUT"
command -v gcc >/dev/null || { echo "gcc missing: apt-get install -y gcc" >&2; exit 2; }
command -v curl >/dev/null || { echo "curl missing: apt-get install -y curl" >&2; exit 2; }
dotnet build -c Release load -v q -nologo >/dev/null
LOAD=(dotnet load/bin/Release/net10.0/Perf.Load.dll)
RPC=load/bin/rpc-native
mkdir -p load/bin
gcc -O2 -Wall -Wextra -o "$RPC" load/native/rpc.c

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not open" >&2; exit 1; }
SERVER=
if [ "$START" = 1 ]; then
  dotnet build -c Release src/Api -v q -nologo >/dev/null
  for port in "$HTTP_PORT" "$MQTT_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port is already in use" >&2; exit 1; fi
  done
  DATA=$(mktemp -d)
  DATA_DIR=$DATA BIND_ADDRESS=127.0.0.1 HTTP_BIND_PORT=$HTTP_PORT MQTT_BIND_PORT=$MQTT_PORT COAP_ENABLED=false \
    TCP_INTEGRATION_ENABLED=false EDGES_ENABLED=false dotnet src/Api/bin/Release/net10.0/Perf.Api.dll >"$OUT/ours.log" 2>&1 & SERVER=$!; PIDS+=("$SERVER")
fi
wait_port "$HTTP_PORT"; wait_port "$MQTT_PORT"

devices=$(( MAX_DEVICES > RATE_DEVICES ? MAX_DEVICES : RATE_DEVICES ))
echo "== provisioning $devices devices" >&2
"${LOAD[@]}" mqtt-connect --port "$MQTT_PORT" --connections 1 --duration 1s --settle 0s --provision "$devices" --api "$API" \
  --user "$USER_NAME" --password "$PASSWORD" >"$OUT/provision.txt" 2>&1
JWT=$(curl -sf -X POST -H 'Content-Type: application/json' -d "{\"username\":\"$USER_NAME\",\"password\":\"$PASSWORD\"}" "$API/api/auth/login" \
  | sed -E 's/.*"token":"([^"]+)".*/\1/')
for i in $(seq 0 $(( devices - 1 ))); do
  curl -sf -H "X-Authorization: Bearer $JWT" "$API/api/tenant/devices?deviceName=load-$i" | sed -E 's/^\{"id":\{[^}]*"id":"([0-9a-f-]{36})".*/\1/'
  echo
done > "$OUT/device-ids.txt"
[ "$(grep -cE '^[0-9a-f-]{36}$' "$OUT/device-ids.txt")" = "$devices" ] || { echo "could not read the ids of load-0..load-$((devices - 1)) (see $OUT/device-ids.txt)" >&2; exit 1; }

server_ticks() { if [ -n "$SERVER" ]; then awk '{print $14 + $15}' "/proc/$SERVER/stat"; else echo 0; fi; }
HZ=$(getconf CLK_TCK)
# run NAME DEVICES CONCURRENCY RATE: one native run; its output in $OUT/NAME.txt, plus the load average and server CPU.
run_native() {
  local load before after
  load=$(cut -d' ' -f1-3 /proc/loadavg); before=$(server_ticks)
  "$RPC" 127.0.0.1 "$HTTP_PORT" "$MQTT_PORT" "$2" "$3" "$DURATION" "$4" load-token- "$JWT" "$OUT/device-ids.txt" >"$OUT/$1.txt" 2>"$OUT/$1.err" || true
  after=$(server_ticks)
  echo "load average: $load" >>"$OUT/$1.txt"
  echo "server CPU ticks: $(( after - before )) (CLK_TCK $HZ)" >>"$OUT/$1.txt"
}
run_dotnet() {
  local load before after rate_opt=()
  [ "$4" != 0 ] && rate_opt=(--rate "$4")
  load=$(cut -d' ' -f1-3 /proc/loadavg); before=$(server_ticks)
  "${LOAD[@]}" rpc --port "$MQTT_PORT" --api "$API" --user "$USER_NAME" --password "$PASSWORD" --devices "$2" --concurrency "$3" "${rate_opt[@]}" \
    --duration "${DURATION}s" --json "$OUT/$1.json" >"$OUT/$1.txt" 2>"$OUT/$1.err" || true
  after=$(server_ticks)
  echo "load average: $load" >>"$OUT/$1.txt"
  echo "server CPU ticks: $(( after - before )) (CLK_TCK $HZ)" >>"$OUT/$1.txt"
}

# Warm-up (JIT, pools), not reported.
"$RPC" 127.0.0.1 "$HTTP_PORT" "$MQTT_PORT" "$MAX_DEVICES" "$MAX_CONCURRENCY" 3 0 load-token- "$JWT" "$OUT/device-ids.txt" >/dev/null 2>&1 || true

for r in $(seq "$ROUNDS"); do
  echo "== round $r: native max ($(cut -d' ' -f1-3 /proc/loadavg))" >&2
  run_native "native-max-$r" "$MAX_DEVICES" "$MAX_CONCURRENCY" 0
  echo "== round $r: native at $RATE/s" >&2
  run_native "native-rate-$r" "$RATE_DEVICES" "$RATE_CONCURRENCY" "$RATE"
  if [ "$DOTNET" = 1 ]; then
    echo "== round $r: .NET max" >&2
    run_dotnet "dotnet-max-$r" "$MAX_DEVICES" "$MAX_CONCURRENCY" 0
    echo "== round $r: .NET at $RATE/s" >&2
    run_dotnet "dotnet-rate-$r" "$RATE_DEVICES" "$RATE_CONCURRENCY" "$RATE"
  fi
done

# One row per run. Native: "round trips: N failures: F seconds: S round trips/s: R", "latency ms: p50 A p90 B p99 C p99.9 D max E".
# .NET: its --json ("rate", "p50", "p99", "p99.9", "errors", "client CPU ..." when reported).
field() { if [ "$2" = rate ]; then grep -m1 -E '^  "rate":' "$1"; else grep -m1 -F "\"$2\":" "$1"; fi | sed -E 's/.*: "?([^",]*)"?,?$/\1/'; }
{
  echo "| run | client | rate asked | round trips/s | failures | p50 ms | p99 ms | p99.9 ms | client CPU us/rt | server CPU us/rt | load average before |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for r in $(seq "$ROUNDS"); do
    for k in max rate; do
      asked=max; [ "$k" = rate ] && asked=$RATE
      f="$OUT/native-$k-$r.txt"
      rt=$(sed -nE 's/^round trips: ([0-9]+).*/\1/p' "$f"); rts=$(sed -nE 's/.*round trips\/s: ([0-9]+).*/\1/p' "$f")
      fails=$(sed -nE 's/.*failures: ([0-9]+).*/\1/p' "$f")
      lat=$(sed -n 's/^latency ms: //p' "$f")
      p50=$(echo "$lat" | sed -nE 's/.*p50 ([0-9.]+).*/\1/p'); p99=$(echo "$lat" | sed -nE 's/.*p99 ([0-9.]+).*/\1/p'); p999=$(echo "$lat" | sed -nE 's/.*p99\.9 ([0-9.]+).*/\1/p')
      ccpu=$(sed -n 's/^client CPU us per round trip: //p' "$f")
      ticks=$(sed -nE 's/^server CPU ticks: ([0-9]+).*/\1/p' "$f")
      scpu=-; [ -n "$SERVER" ] && [ "${rt:-0}" -gt 0 ] && scpu=$(echo "$ticks * 1000000 / $HZ / $rt" | bc)
      echo "| $r | native | $asked | ${rts:-failed} | ${fails:-} | $p50 | $p99 | $p999 | $ccpu | $scpu | $(sed -n 's/^load average: //p' "$f") |"
      if [ "$DOTNET" = 1 ]; then
        j="$OUT/dotnet-$k-$r.json" t="$OUT/dotnet-$k-$r.txt"
        if [ -s "$j" ]; then
          acked=$(field "$j" acked); ticks=$(sed -nE 's/^server CPU ticks: ([0-9]+).*/\1/p' "$t")
          scpu=-; [ -n "$SERVER" ] && [ "${acked:-0}" -gt 0 ] && scpu=$(echo "$ticks * 1000000 / $HZ / $acked" | bc)
          printf '| %s | .NET | %s | %.0f | %s | %s | %s | %s | - | %s | %s |\n' "$r" "$asked" "$(field "$j" rate)" "$(field "$j" errors)" \
            "$(field "$j" p50)" "$(field "$j" p99)" "$(field "$j" p99.9)" "$scpu" "$(sed -n 's/^load average: //p' "$t")"
        else
          echo "| $r | .NET | $asked | failed (see $t) | | | | | | | |"
        fi
      fi
    done
  done
} | tee "$OUT/table.md"
