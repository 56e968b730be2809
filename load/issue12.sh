#!/usr/bin/env bash
# Issue 12, rows 1, 2, 5, 6 and 7 in one session on this machine: our server (Release, durable QoS 1),
# Debian mosquitto (persistence off) and load/'s bare-server (the Kestrel ceiling), measured alternately with
# the same client settings. Rows 1 and 5 with the native client also run against three durable ceilings, servers
# that send a PUBACK only after a write-through write of the packets and do nothing else: bare-server --durable
# (inside Kestrel), load/'s durable-loop (one .NET thread, no hand-off) and load/native/durable-sink.c (the same
# loop in C; with gcc).
# Row 3 (memory per idle connection) is load/idle-memory.sh (a fresh server per target); row 4 (allocation per
# message) is /health/runtime around a run (docs/PERFORMANCE.md).
#   rows 1-2: mqtt-publish QoS 1, WINDOW in flight, PAYLOAD-byte JSON, DURATION, for each count in CONNS.
#   row 5:    ours at half of its row-1 rate (100 connections): PUBACK p99 / p99.9.
#   row 6:    mqtt-connect CONNECTS connections at full speed against each server: connects/s, CONNACK p99.
#   row 7:    rpc (REST two-way -> MQTT device -> REST) at max, then paced at RPC_RATE.
#   With gcc installed, rows 1, 5, 6 and 7 again with load/native's C clients (pre-encoded publisher, connect storm,
#   two-way RPC: load/rpc-native.sh against this server).
# Usage: bash load/issue12.sh [out-dir]   (env: CONNS="100 1000 10000" DURATION=20s WINDOW=32 PAYLOAD=64
#        ROUNDS=1 CONNECTS=9000 RPC_RATE=5000; any other environment reaches our server unchanged)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-load/results/issue12-$(date -u +%Y%m%dT%H%M%SZ)}
CONNS=${CONNS:-"100 1000 10000"} DURATION=${DURATION:-20s} WINDOW=${WINDOW:-32} PAYLOAD=${PAYLOAD:-64}
ROUNDS=${ROUNDS:-1} CONNECTS=${CONNECTS:-9000} RPC_RATE=${RPC_RATE:-5000}
HTTP_PORT=${HTTP_PORT:-28880} MQTT_PORT=${MQTT_PORT:-28883} MOSQ_PORT=${MOSQ_PORT:-28884} BARE_PORT=${BARE_PORT:-28885}
DURABLE_PORT=${DURABLE_PORT:-28886} DURABLE_NATIVE_PORT=${DURABLE_NATIVE_PORT:-28887} DURABLE_LOOP_PORT=${DURABLE_LOOP_PORT:-28888}
mkdir -p "$OUT"
command -v mosquitto >/dev/null || { echo "mosquitto missing: apt-get install -y mosquitto" >&2; exit 2; }
dotnet build -c Release load -v q -nologo >/dev/null
dotnet build -c Release src/Api -v q -nologo >/dev/null
LOAD=(dotnet load/bin/Release/net10.0/Perf.Load.dll)
API="http://127.0.0.1:$HTTP_PORT"

PIDS=() DIRS=()
# Stops the servers, then removes their data (our data directory and the durable ceiling's segments).
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  for d in "${DIRS[@]}"; do rm -rf "$d"; done
}
trap cleanup EXIT
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not open" >&2; exit 1; }
for port in "$HTTP_PORT" "$MQTT_PORT" "$MOSQ_PORT" "$BARE_PORT" "$DURABLE_PORT" "$DURABLE_NATIVE_PORT" "$DURABLE_LOOP_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port is already in use" >&2; exit 1; fi
done

DATA=$(mktemp -d) DURABLE_DATA=$(mktemp -d); DIRS+=("$DATA" "$DURABLE_DATA")
DATA_DIR=$DATA BIND_ADDRESS=127.0.0.1 HTTP_BIND_PORT=$HTTP_PORT MQTT_BIND_PORT=$MQTT_PORT COAP_ENABLED=false \
  TCP_INTEGRATION_ENABLED=false EDGES_ENABLED=false dotnet src/Api/bin/Release/net10.0/Perf.Api.dll >"$OUT/ours.log" 2>&1 & OURS=$!; PIDS+=("$OURS")
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\nlog_dest stderr\nlog_type error\n' "$MOSQ_PORT" > "$OUT/mosquitto.conf"
mosquitto -c "$OUT/mosquitto.conf" >"$OUT/mosquitto.log" 2>&1 & MOSQ=$!; PIDS+=("$MOSQ")
"${LOAD[@]}" bare-server --port "$BARE_PORT" >"$OUT/bare-server.log" 2>&1 & BARE=$!; PIDS+=("$BARE")
# The durable ceiling writes its segments on the same disk as our data directory (deleted when it stops).
"${LOAD[@]}" bare-server --port "$DURABLE_PORT" --durable "$DURABLE_DATA" >"$OUT/bare-server-durable.log" 2>&1 & DURABLE=$!; PIDS+=("$DURABLE")
"${LOAD[@]}" durable-loop --port "$DURABLE_LOOP_PORT" --durable "$DURABLE_DATA" >"$OUT/durable-loop.txt" 2>&1 & PIDS+=("$!")
wait_port "$HTTP_PORT"; wait_port "$MQTT_PORT"; wait_port "$MOSQ_PORT"; wait_port "$BARE_PORT"; wait_port "$DURABLE_PORT"; wait_port "$DURABLE_LOOP_PORT"

# Devices load-0..load-(N-1) with tokens load-token-i on our server (the others accept any user name).
max=$CONNECTS; for c in $CONNS; do [ "$c" -gt "$max" ] && max=$c; done
echo "== provisioning $max devices" >&2
"${LOAD[@]}" mqtt-connect --port "$MQTT_PORT" --connections 1 --duration 1s --settle 0s --provision "$max" --api "$API" >"$OUT/provision.txt" 2>&1

target_port() {
  case $1 in ours) echo "$MQTT_PORT" ;; mosquitto) echo "$MOSQ_PORT" ;; bare) echo "$BARE_PORT" ;; durable) echo "$DURABLE_PORT" ;; durable-net) echo "$DURABLE_LOOP_PORT" ;;
    durable-c) echo "$DURABLE_NATIVE_PORT" ;; esac
}
target_pid() { case $1 in ours) echo "$OURS" ;; mosquitto) echo "$MOSQ" ;; bare) echo "$BARE" ;; durable) echo "$DURABLE" ;; esac; }
server_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Warm-up of our server (JIT, pools, FASTER log pages), not reported.
"${LOAD[@]}" mqtt-publish --port "$MQTT_PORT" --connections 100 --qos 1 --window "$WINDOW" --payload "$PAYLOAD" --duration 5s >/dev/null 2>&1 || true

for c in $CONNS; do
  for r in $(seq "$ROUNDS"); do
    for t in ours mosquitto bare; do
      echo "== rows 1-2: $c connections, round $r, $t ($(cut -d' ' -f1-3 /proc/loadavg))" >&2
      "${LOAD[@]}" mqtt-publish --port "$(target_port $t)" --connections "$c" --qos 1 --window "$WINDOW" --payload "$PAYLOAD" \
        --duration "$DURATION" --connect-concurrency 1000 --server-pid "$(target_pid $t)" --json "$OUT/publish-$c-$t-$r.json" >"$OUT/publish-$c-$t-$r.txt" 2>/dev/null || true
    done
  done
done

# Top-level "rate" is indented 2 spaces (the "rate" parameter sits deeper); other keys are unique.
field() { if [ "$2" = rate ]; then grep -m1 -E '^  "rate":' "$1"; else grep -m1 -F "\"$2\":" "$1"; fi | sed -E 's/.*: "?([^",]*)"?,?$/\1/'; }

first=${CONNS%% *}
half=$(printf '%.0f' "$(echo "$(field "$OUT/publish-$first-ours-1.json" rate) / 2" | bc -l)")
echo "== row 5: ours at half its rate, $half msgs/s" >&2
"${LOAD[@]}" mqtt-publish --port "$MQTT_PORT" --connections "$first" --qos 1 --window "$WINDOW" --payload "$PAYLOAD" \
  --duration "$DURATION" --rate "$half" --server-pid "$OURS" --json "$OUT/latency-ours.json" >"$OUT/latency-ours.txt" 2>/dev/null || true

for t in ours mosquitto bare; do
  echo "== row 6: $CONNECTS connects against $t" >&2
  "${LOAD[@]}" mqtt-connect --port "$(target_port $t)" --connections "$CONNECTS" --connect-rate 0 --concurrency 1000 --duration 2s \
    --server-pid "$(target_pid $t)" --json "$OUT/connect-$t.json" >"$OUT/connect-$t.txt" 2>/dev/null || true
done

# Rows 1 and 5 again with load/native/mqtt-publish.c (pre-encoded, pipelined, one epoll thread: about 0.4 µs
# of client CPU per message at full speed, so the servers get most of the 2 cores), when gcc is there.
PUBLISH_NATIVE=load/bin/mqtt-publish-native
secs=${DURATION%s}
if command -v gcc >/dev/null && gcc -O2 -o "$PUBLISH_NATIVE" load/native/mqtt-publish.c && gcc -O2 -o load/bin/durable-sink-native load/native/durable-sink.c; then
  # Stops on SIGTERM (cleanup); its file is in DURABLE_DATA.
  load/bin/durable-sink-native "$DURABLE_NATIVE_PORT" "$DURABLE_DATA/durable-sink-native.bin" 86400 >"$OUT/durable-sink-native.txt" 2>&1 & PIDS+=("$!")
  wait_port "$DURABLE_NATIVE_PORT"
  for t in ours mosquitto bare durable durable-net durable-c; do
    echo "== row 1 (native client): $first connections against $t" >&2
    "$PUBLISH_NATIVE" 127.0.0.1 "$(target_port $t)" "$first" "$WINDOW" "$PAYLOAD" "$secs" 0 load-token- >"$OUT/publish-native-$t.txt" 2>&1 || true
  done
  for t in ours bare durable durable-net durable-c; do
    rate=$(sed -n 's/^acked msgs\/s: //p' "$OUT/publish-native-ours.txt"); half_native=$(( ${rate:-0} / 2 ))
    [ "$half_native" -gt 0 ] || continue
    echo "== row 5 (native client): $t at $half_native msgs/s" >&2
    # With a timeline of 100 ms windows: when in the run the PUBACKs over 5 ms came (the file's "window" lines).
    "$PUBLISH_NATIVE" 127.0.0.1 "$(target_port $t)" "$first" "$WINDOW" "$PAYLOAD" "$secs" "$half_native" load-token- 100 >"$OUT/latency-native-$t.txt" 2>&1 || true
  done
fi

# Row 6 again with load/native/mqtt-connect.c (same job in C, about half the client CPU per connect of the
# .NET generator; the issue's peer figures were taken with a C client), when gcc is there.
NATIVE=load/bin/mqtt-connect-native
if command -v gcc >/dev/null && gcc -O2 -o "$NATIVE" load/native/mqtt-connect.c; then
  for t in ours mosquitto bare; do
    echo "== row 6 (native client): $CONNECTS connects against $t" >&2
    sleep 2 # the previous run's closes are handled first
    before=$(server_ticks "$(target_pid $t)")
    "$NATIVE" 127.0.0.1 "$(target_port $t)" "$CONNECTS" 1000 load-token- >"$OUT/connect-native-$t.txt" 2>&1 || true
    # The server's own CPU per connect (user + system, storm only): what the figure needs of the server, whatever
    # the host gives the client in that minute.
    echo "server CPU us per connect: $(( ($(server_ticks "$(target_pid $t)") - before) * 1000000 / $(getconf CLK_TCK) / CONNECTS ))" >>"$OUT/connect-native-$t.txt"
  done
fi

echo "== row 7: rpc at max, then at $RPC_RATE/s" >&2
"${LOAD[@]}" rpc --port "$MQTT_PORT" --api "$API" --devices 10 --concurrency 64 --duration "$DURATION" --json "$OUT/rpc-max.json" >"$OUT/rpc-max.txt" 2>/dev/null || true
"${LOAD[@]}" rpc --port "$MQTT_PORT" --api "$API" --devices 32 --concurrency 256 --rate "$RPC_RATE" --duration "$DURATION" --json "$OUT/rpc-rate.json" >"$OUT/rpc-rate.txt" 2>/dev/null || true

# Row 7 again with load/native/rpc.c (one epoll thread in C: no GC pause or thread-pool hop of the client inside
# the measured latency, paced calls timed from their due time), same server, devices and settings, when gcc is there.
if command -v gcc >/dev/null; then
  echo "== row 7 (native client): rpc at max, then at $RPC_RATE/s" >&2
  START=0 DOTNET=0 HTTP_PORT=$HTTP_PORT MQTT_PORT=$MQTT_PORT DURATION=$secs RATE=$RPC_RATE bash load/rpc-native.sh "$OUT/rpc-native" >/dev/null 2>&1 || true
fi

{
  echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); results in $OUT"
  echo
  echo "| connections | target | round | acked msgs/s | p50 ms | p99 ms | p99.9 ms | server CPU s | msgs per server CPU s |"
  echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
  for c in $CONNS; do for r in $(seq "$ROUNDS"); do for t in ours mosquitto bare; do
    f="$OUT/publish-$c-$t-$r.json"; [ -s "$f" ] || { echo "| $c | $t | $r | failed (see $OUT/publish-$c-$t-$r.txt) | | | | | |"; continue; }
    printf '| %s | %s | %s | %.0f | %s | %s | %s | %s | %s |\n' "$c" "$t" "$r" "$(field "$f" rate)" "$(field "$f" p50)" "$(field "$f" p99)" \
      "$(field "$f" p99.9)" "$(field "$f" 'server CPU seconds')" "$(field "$f" 'acked msgs per server CPU second')"
  done; done; done
  echo
  for c in $CONNS; do
    o=$(field "$OUT/publish-$c-ours-1.json" rate 2>/dev/null || echo 0); m=$(field "$OUT/publish-$c-mosquitto-1.json" rate 2>/dev/null || echo 0)
    b=$(field "$OUT/publish-$c-bare-1.json" rate 2>/dev/null || echo 0)
    printf 'connections %s: ours/mosquitto %.2fx, ours/bare %.3fx\n' "$c" "$(echo "$o / ($m + 0.000001)" | bc -l)" "$(echo "$o / ($b + 0.000001)" | bc -l)"
  done
  echo
  f="$OUT/latency-ours.json"; [ -s "$f" ] && printf 'row 5: ours at %s msgs/s target: %.0f acked msgs/s, p50 %s ms, p99 %s ms, p99.9 %s ms\n' "$half" "$(field "$f" rate)" "$(field "$f" p50)" "$(field "$f" p99)" "$(field "$f" p99.9)"
  for t in ours mosquitto bare; do
    f="$OUT/connect-$t.json"; [ -s "$f" ] && printf 'row 6: %s: %.0f connects/s, CONNACK p99 %s ms\n' "$t" "$(field "$f" rate)" "$(field "$f" p99)"
  done
  for t in ours mosquitto bare durable durable-net durable-c; do
    f="$OUT/publish-native-$t.txt"; [ -s "$f" ] && printf 'row 1 (native client): %s: %s acked msgs/s, PUBACK %s\n' "$t" \
      "$(sed -n 's/^acked msgs\/s: //p' "$f")" "$(sed -n 's/^PUBACK ms: //p' "$f")"
  done
  for t in ours bare durable durable-net durable-c; do
    f="$OUT/latency-native-$t.txt"; [ -s "$f" ] && printf 'row 5 (native client): %s at half our native rate: %s acked msgs/s, PUBACK %s; %s\n' "$t" \
      "$(sed -n 's/^acked msgs\/s: //p' "$f")" "$(sed -n 's/^PUBACK ms: //p' "$f")" \
      "$(awk '/^window / { n++; a = $5 + 0; k = $NF + 0; slow += k; if (a > 0 && k * 100 > a) hot++ }
        END { printf "over 5 ms: %d PUBACKs, in %d of %d windows of 100 ms with more than 1 %% of theirs", slow, hot, n }' "$f")"
  done
  for t in ours mosquitto bare; do
    f="$OUT/connect-native-$t.txt"; [ -s "$f" ] && printf 'row 6 (native client): %s: %s connects/s, %s, client CPU %s us/connect, server CPU %s us/connect\n' "$t" \
      "$(sed -n 's/^connects\/s: //p' "$f")" "$(sed -n 's/^CONNACK ms: //p' "$f")" "$(sed -n 's/^client CPU us per connect: //p' "$f")" \
      "$(sed -n 's/^server CPU us per connect: //p' "$f")"
  done
  for k in max rate; do
    f="$OUT/rpc-$k.json"; [ -s "$f" ] && printf 'row 7 (%s): %.0f round trips/s, p50 %s ms, p99 %s ms\n' "$k" "$(field "$f" rate)" "$(field "$f" p50)" "$(field "$f" p99)"
  done
  for k in max rate; do
    f="$OUT/rpc-native/native-$k-1.txt"; [ -s "$f" ] && printf 'row 7 (native client, %s): %s; latency ms %s; client CPU %s us/round trip\n' "$k" \
      "$(sed -n 's/^round trips: //p' "$f")" "$(sed -n 's/^latency ms: //p' "$f")" "$(sed -n 's/^client CPU us per round trip: //p' "$f")"
  done
} | tee "$OUT/summary.md"
