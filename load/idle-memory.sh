#!/usr/bin/env bash
# Issue 12 target 3: server RSS per idle authenticated MQTT connection, on a freshly started server.
#   TARGET=ours (default): our host (Release build) with a fresh data directory, N devices provisioned over
#           REST, N connections each authenticated with its own token. Any extra environment you set (GC
#           knobs such as DOTNET_GCgen0size, Kestrel/MQTT settings) reaches the server unchanged.
#   TARGET=bare: load/'s bare-server (Kestrel, fixed-header parser only).  TARGET=mosquitto: Debian mosquitto.
# Prints the mqtt-connect summary, the load average, the server's RssAnon/RssFile before and after and, for
# ours, /health/runtime before and after (and /health/heap when PERF_DIAGNOSTICS=true).
# Usage: N=9000 TARGET=ours bash load/idle-memory.sh [out-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-9000} TARGET=${TARGET:-ours} CONCURRENCY=${CONCURRENCY:-1000} HOLD=${HOLD:-5s} SETTLE=${SETTLE:-2s}
OUT=${1:-load/results/idle-$(date -u +%Y%m%dT%H%M%SZ)-$TARGET}
HTTP_PORT=${HTTP_PORT:-28980} MQTT_PORT=${MQTT_PORT:-28983}
mkdir -p "$OUT"
if [ -z "${NO_BUILD:-}" ]; then
  dotnet build -c Release load -v q -nologo >/dev/null
  [ "$TARGET" = ours ] && dotnet build -c Release src/Api -v q -nologo >/dev/null
  [ -n "${CENSUS:-}" ] && dotnet build -c Release samples/HeapCensus -v q -nologo >/dev/null
fi
LOAD=(dotnet load/bin/Release/net10.0/Perf.Load.dll)
PID=
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null || true; [ -n "$PID" ] && wait "$PID" 2>/dev/null || true; }
trap cleanup EXIT
wait_port() { for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 not open" >&2; exit 1; }
rss() { grep -E '^(VmRSS|RssAnon|RssFile|Threads)' "/proc/$PID/status" | tr -s ' \t' ' ' | tr '\n' ' '; echo; }

EXTRA=()
case "$TARGET" in
  ours)
    DATA=$(mktemp -d)
    DATA_DIR=$DATA BIND_ADDRESS=127.0.0.1 HTTP_BIND_PORT=$HTTP_PORT MQTT_BIND_PORT=$MQTT_PORT COAP_ENABLED=false \
      TCP_INTEGRATION_ENABLED=false EDGES_ENABLED=false dotnet src/Api/bin/Release/net10.0/Perf.Api.dll >"$OUT/server.log" 2>&1 & PID=$!
    wait_port "$HTTP_PORT"; wait_port "$MQTT_PORT"
    # Provision first (a separate run with no connections held), so the measured run starts from a warm REST path.
    "${LOAD[@]}" mqtt-connect --port "$MQTT_PORT" --connections 1 --duration 1s --settle 0s --provision "$N" \
      --api "http://127.0.0.1:$HTTP_PORT" >"$OUT/provision.txt" 2>&1
    EXTRA=(--token-prefix load-token-)
    ;;
  bare)
    "${LOAD[@]}" bare-server --port "$MQTT_PORT" >"$OUT/server.log" 2>&1 & PID=$!; wait_port "$MQTT_PORT" ;;
  mosquitto)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_connections -1\nlog_dest stderr\nlog_type error\n' "$MQTT_PORT" > "$OUT/mosquitto.conf"
    mosquitto -c "$OUT/mosquitto.conf" >"$OUT/server.log" 2>&1 & PID=$!; wait_port "$MQTT_PORT" ;;
  *) echo "TARGET must be ours, bare or mosquitto" >&2; exit 2 ;;
esac
sleep 2
diag() { [ "$TARGET" = ours ] || return 0; curl -s "http://127.0.0.1:$HTTP_PORT/health/runtime"; echo;
         [ "${PERF_DIAGNOSTICS:-}" = true ] && { curl -s "http://127.0.0.1:$HTTP_PORT/health/heap"; echo; }; return 0; }
# CENSUS=1 (ours, with PERF_DIAGNOSTICS=true): a ClrMD heap census (samples/HeapCensus) after the forced GC of
# /health/heap, before and while the connections are held; the second prints live objects per connection.
# OWNERS=TYPE (with CENSUS=1) also prints which types reference the objects of TYPE (e.g. System.Threading.Lock).
CENSUS_TOOL=(dotnet samples/HeapCensus/bin/Release/net10.0/Perf.HeapCensus.dll)
census() { [ -n "${CENSUS:-}" ] || return 0; "${CENSUS_TOOL[@]}" "$PID" --top "${TOP:-40}" ${OWNERS:+--owners "$OWNERS"} "$@"; }
{ echo "target=$TARGET n=$N loadavg-start=$(cut -d' ' -f1-3 /proc/loadavg)"; echo "before: $(rss)"; diag; census --save "$OUT/census-before.tsv" >"$OUT/census-before.txt"; } >"$OUT/before.txt"
"${LOAD[@]}" mqtt-connect --port "$MQTT_PORT" --connections "$N" --connect-rate 0 --concurrency "$CONCURRENCY" \
  --duration "$HOLD" --settle "$SETTLE" --server-pid "$PID" "${EXTRA[@]}" --json "$OUT/connect.json" >"$OUT/connect.txt" 2>"$OUT/connect.err" &
CLIENT=$!
# While the connections are held (after the connect phase and settle), a second snapshot.
while ! grep -q 'connect phase' "$OUT/connect.err" 2>/dev/null; do sleep 0.2; done
sleep 2.5
{ echo "held: $(rss)"; echo "loadavg-held=$(cut -d' ' -f1-3 /proc/loadavg)"; diag; echo "after forced GC: $(rss)"; census --diff "$OUT/census-before.tsv" --per "$N" --save "$OUT/census-held.tsv"; } >"$OUT/held.txt"
wait "$CLIENT"
cat "$OUT/before.txt" "$OUT/held.txt"
grep -E 'connect phase' "$OUT/connect.err"
grep -E 'RSS|connects/s|connected|failed|dropped' "$OUT/connect.txt"
