#!/usr/bin/env bash
# Issue 12 target 5's floor on this machine: what a durable write costs while the row-5 load runs, with no server
# of ours involved. load/'s bare-server (the Kestrel ceiling: parses the fixed header, answers PUBACK, stores
# nothing) takes load/native/mqtt-publish.c's paced load (100 connections, window 32, 64 B, RATE msgs/s), and
# load/native/disk-write.c times write-through writes of BLOCK bytes beside it, in the log's own mode (append,
# O_SYNC) and in the fastest durable mode this disk has (direct: O_DIRECT|O_DSYNC over a preallocated, synced file).
# Each is also run on the quiet machine first. A durable PUBACK waits for at least one such write after its
# message arrived, so the write's tail under this load bounds row 5's p99 from below whatever the server does.
# Then the same load goes to three durable ceilings, servers that do nothing but send each PUBACK after a
# write-through write of the packets: bare-server --durable (a group commit inside Kestrel, acknowledgements on the
# thread pool), load/'s durable-loop (one .NET thread and one epoll set: read, write, answer; no hand-off) and
# load/native/durable-sink.c (the same loop in C).
# Usage: bash load/disk-floor.sh [out-dir]   (env: RATE=185000 DURATION=15 COUNT=4000 BLOCK=73728 BARE_PORT=23890
#        ROUNDS=2; the file is written in DISK_DIR, default load/results, on the data disk)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-load/results/disk-floor-$(date -u +%Y%m%dT%H%M%SZ)}
RATE=${RATE:-185000} DURATION=${DURATION:-15} COUNT=${COUNT:-4000} BLOCK=${BLOCK:-73728} ROUNDS=${ROUNDS:-2}
BARE_PORT=${BARE_PORT:-23890} DISK_DIR=${DISK_DIR:-load/results}
DURATION=${DURATION%s}
mkdir -p "$OUT" "$DISK_DIR" load/bin
command -v gcc >/dev/null || { echo "gcc missing: apt-get install -y gcc" >&2; exit 2; }
dotnet build -c Release load -v q -nologo >/dev/null
gcc -O2 -Wall -Wextra -o load/bin/mqtt-publish-native load/native/mqtt-publish.c
gcc -O2 -Wall -Wextra -o load/bin/disk-write-native load/native/disk-write.c
gcc -O2 -Wall -Wextra -o load/bin/durable-sink-native load/native/durable-sink.c
PUBLISH=load/bin/mqtt-publish-native DISK=load/bin/disk-write-native

DURABLE_PORT=$((BARE_PORT + 1)) NATIVE_PORT=$((BARE_PORT + 2)) LOOP_PORT=$((BARE_PORT + 3)) SINK_DIR="$DISK_DIR/disk-floor-sink-$$"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$SINK_DIR"
  rm -f "$DISK_DIR/disk-floor-native-$$.bin"
}
trap cleanup EXIT
for port in "$BARE_PORT" "$DURABLE_PORT" "$NATIVE_PORT" "$LOOP_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port is already in use" >&2; exit 1; fi
done
dotnet load/bin/Release/net10.0/Perf.Load.dll bare-server --port "$BARE_PORT" >"$OUT/bare-server.log" 2>&1 & PIDS+=("$!")
# The durable ceiling: bare-server that sends each PUBACK only after a write-through group commit of the packets.
dotnet load/bin/Release/net10.0/Perf.Load.dll bare-server --port "$DURABLE_PORT" --durable "$SINK_DIR" >"$OUT/bare-server-durable.log" 2>&1 & PIDS+=("$!")
# These two stop on SIGTERM at the end (cleanup), and then print their writes' latencies.
load/bin/durable-sink-native "$NATIVE_PORT" "$DISK_DIR/disk-floor-native-$$.bin" 86400 >"$OUT/durable-sink-native.txt" 2>&1 & PIDS+=("$!")
dotnet load/bin/Release/net10.0/Perf.Load.dll durable-loop --port "$LOOP_PORT" --durable "$SINK_DIR" >"$OUT/durable-loop.txt" 2>&1 & PIDS+=("$!")
for port in "$BARE_PORT" "$DURABLE_PORT" "$NATIVE_PORT" "$LOOP_PORT"; do
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
done

disk() { "$DISK" "$DISK_DIR/disk-floor-$$.bin" "$COUNT" "$BLOCK" "$1"; }
{
  echo "== quiet machine ($(cut -d' ' -f1-3 /proc/loadavg))"
  disk append; disk direct
  # Warm-up at full speed, then the paced runs.
  "$PUBLISH" 127.0.0.1 "$BARE_PORT" 100 32 64 3 0 load-token- >/dev/null
  "$PUBLISH" 127.0.0.1 "$DURABLE_PORT" 100 32 64 3 0 load-token- >/dev/null
  "$PUBLISH" 127.0.0.1 "$NATIVE_PORT" 100 32 64 3 0 load-token- >/dev/null
  "$PUBLISH" 127.0.0.1 "$LOOP_PORT" 100 32 64 3 0 load-token- >/dev/null
  for r in $(seq "$ROUNDS"); do
    for mode in none append direct; do
      echo "== round $r: bare-server at $RATE msgs/s, beside it: $mode"
      "$PUBLISH" 127.0.0.1 "$BARE_PORT" 100 32 64 "$DURATION" "$RATE" load-token- >"$OUT/publish-$r-$mode.txt" & pub=$!
      if [ "$mode" != none ]; then sleep 1; disk "$mode"; fi
      wait "$pub"
      grep -E '^(acked msgs/s|PUBACK ms)' "$OUT/publish-$r-$mode.txt"
    done
    echo "== round $r: bare-server --durable (PUBACK after a write-through group commit) at $RATE msgs/s"
    "$PUBLISH" 127.0.0.1 "$DURABLE_PORT" 100 32 64 "$DURATION" "$RATE" load-token- >"$OUT/publish-$r-durable.txt"
    grep -E '^(acked msgs/s|PUBACK ms)' "$OUT/publish-$r-durable.txt"
    echo "== round $r: durable-loop (one .NET thread, no hand-off) at $RATE msgs/s"
    "$PUBLISH" 127.0.0.1 "$LOOP_PORT" 100 32 64 "$DURATION" "$RATE" load-token- >"$OUT/publish-$r-durable-loop.txt"
    grep -E '^(acked msgs/s|PUBACK ms)' "$OUT/publish-$r-durable-loop.txt"
    echo "== round $r: load/native/durable-sink.c (the same loop in C) at $RATE msgs/s"
    "$PUBLISH" 127.0.0.1 "$NATIVE_PORT" 100 32 64 "$DURATION" "$RATE" load-token- >"$OUT/publish-$r-durable-native.txt"
    grep -E '^(acked msgs/s|PUBACK ms)' "$OUT/publish-$r-durable-native.txt"
  done
} | tee "$OUT/summary.txt"
