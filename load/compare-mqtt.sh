#!/usr/bin/env bash
# Side-by-side MQTT figures on this machine: Debian mosquitto (persistence off) and load/'s bare-server
# (the Kestrel ceiling), measured alternately in one run with the same client settings.
#   publish: QoS 1, CONNECTIONS connections, WINDOW in flight each, PAYLOAD-byte JSON, DURATION per run,
#            ROUNDS rounds of (mosquitto, bare-server); acked msgs/s, PUBACK p50/p99, server CPU.
#   memory:  a fresh server process per target, IDLE idle connections (and IDLE_BIG if set), server RSS
#            growth per connection.
# Usage: bash load/compare-mqtt.sh [out-dir]      (env: ROUNDS DURATION CONNECTIONS WINDOW PAYLOAD IDLE IDLE_BIG)
# Our own server gets a row when the MQTT door lands: start it and run the same mqtt-publish command on 1883.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-load/results/$(date -u +%Y%m%dT%H%M%SZ)}
ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-10s} CONNECTIONS=${CONNECTIONS:-100} WINDOW=${WINDOW:-32} PAYLOAD=${PAYLOAD:-64}
IDLE=${IDLE:-2000} IDLE_BIG=${IDLE_BIG:-}
MOSQ_PORT=${MOSQ_PORT:-18830} BARE_PORT=${BARE_PORT:-18831}
mkdir -p "$OUT"
command -v mosquitto >/dev/null || { echo "mosquitto missing: apt-get install -y mosquitto" >&2; exit 2; }
dotnet build -c Release load -v q -nologo >/dev/null
LOAD=(dotnet load/bin/Release/net10.0/Perf.Load.dll)

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

# Each sets STARTED to the server's pid (no command substitution: a background child would hold its pipe open).
start_mosquitto() { # port
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\nlog_dest stderr\nlog_type error\n' "$1" > "$OUT/mosquitto-$1.conf"
  mosquitto -c "$OUT/mosquitto-$1.conf" >>"$OUT/mosquitto.log" 2>&1 & STARTED=$!; PIDS+=("$STARTED")
}
start_bare() { # port
  "${LOAD[@]}" bare-server --port "$1" >>"$OUT/bare-server.log" 2>&1 & STARTED=$!; PIDS+=("$STARTED")
}
stop_server() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
wait_port() { for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not open" >&2; exit 1; }

for port in "$MOSQ_PORT" "$BARE_PORT" $((MOSQ_PORT + 10)) $((BARE_PORT + 10)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port is already in use" >&2; exit 1; fi
done
start_mosquitto "$MOSQ_PORT"; MOSQ=$STARTED; start_bare "$BARE_PORT"; BARE=$STARTED; wait_port "$MOSQ_PORT"; wait_port "$BARE_PORT"
for r in $(seq "$ROUNDS"); do
  for t in mosquitto bare; do
    if [ $t = mosquitto ]; then port=$MOSQ_PORT pid=$MOSQ; else port=$BARE_PORT pid=$BARE; fi
    echo "== round $r: mqtt-publish against $t" >&2
    "${LOAD[@]}" mqtt-publish --port "$port" --connections "$CONNECTIONS" --qos 1 --window "$WINDOW" --payload "$PAYLOAD" \
      --duration "$DURATION" --server-pid "$pid" --json "$OUT/publish-$t-$r.json" --html "$OUT/publish-$t-$r.html" >"$OUT/publish-$t-$r.txt" 2>/dev/null
  done
done
stop_server "$MOSQ"; stop_server "$BARE"

for n in $IDLE $IDLE_BIG; do
  for t in mosquitto bare; do
    if [ $t = mosquitto ]; then port=$((MOSQ_PORT + 10)); start_mosquitto $port; else port=$((BARE_PORT + 10)); start_bare $port; fi
    pid=$STARTED
    wait_port $port; sleep 1
    echo "== mqtt-connect $n idle connections against fresh $t" >&2
    "${LOAD[@]}" mqtt-connect --port $port --connections "$n" --connect-rate 0 --duration 5s --server-pid "$pid" \
      --json "$OUT/connect-$t-$n.json" --html "$OUT/connect-$t-$n.html" >"$OUT/connect-$t-$n.txt" 2>/dev/null
    stop_server "$pid"
  done
done

# Top-level "rate" is indented 2 spaces (the "rate" parameter sits deeper); other keys are unique.
field() { if [ "$2" = rate ]; then grep -m1 -E '^  "rate":' "$1"; else grep -m1 -F "\"$2\":" "$1"; fi | sed -E 's/.*: "?([^",]*)"?,?$/\1/'; }
echo
echo "| target | run | acked msgs/s | p50 ms | p99 ms | p99.9 ms | server CPU s | msgs per server CPU s |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for f in "$OUT"/publish-*.json; do
  b=$(basename "$f" .json); IFS=- read -r _ t r <<<"$b"
  printf '| %s | %s | %.0f | %s | %s | %s | %s | %s |\n' "$t" "$r" "$(field "$f" rate)" "$(field "$f" p50)" "$(field "$f" p99)" "$(field "$f" p99.9)" \
    "$(field "$f" 'server CPU seconds')" "$(field "$f" 'acked msgs per server CPU second')"
done
echo
echo "| target | idle connections | RSS before KiB | RSS after KiB | bytes per connection | connects/s |"
echo "|---|---:|---:|---:|---:|---:|"
for f in "$OUT"/connect-*.json; do
  b=$(basename "$f" .json); IFS=- read -r _ t n <<<"$b"
  printf '| %s | %s | %s | %s | %s | %.0f |\n' "$t" "$n" "$(field "$f" 'server RSS before (KiB)')" "$(field "$f" 'server RSS after connect (KiB)')" \
    "$(field "$f" 'server RSS per connection (bytes)')" "$(field "$f" rate)"
done
echo
echo "results: $OUT"
