#!/usr/bin/env bash
# The soak check: a Release build of the host on loopback (free ports, a temporary DATA_DIR), load/'s
# `soak` scenario against it for SOAK_DURATION (default 10m), then SIGTERM, which must end the host with
# exit code 0. Exit 0 only if the soak passed (no memory growth trend, errors within the limit) and the
# host stopped cleanly. Extra arguments go to the soak scenario (e.g. --samples-csv memory.csv).
set -euo pipefail
cd "$(dirname "$0")/.."

duration="${SOAK_DURATION:-10m}"
work="$(mktemp -d)"
host_pid=""
cleanup() {
  if [ -n "$host_pid" ] && kill -0 "$host_pid" 2>/dev/null; then kill -KILL "$host_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

dotnet build -c Release src/Api -nologo -v q >/dev/null
dotnet build -c Release load -nologo -v q >/dev/null

BIND_ADDRESS=127.0.0.1 DATA_DIR="$work/data" HTTP_BIND_PORT=0 MQTT_BIND_PORT=0 COAP_BIND_PORT=0 \
  TCP_INTEGRATION_ENABLED=false EDGES_ENABLED=false Logging__Console__FormatterOptions__SingleLine=true \
  dotnet src/Api/bin/Release/net10.0/Perf.Api.dll >"$work/host.log" 2>&1 &
host_pid=$!

# Port 0 binds free ports; the host logs each one ("Door mqtt listening on mqtt://127.0.0.1:41234").
port_of() { sed -n "s/.*Door $1 listening on [a-z]*:\/\/[^ ]*:\([0-9]*\).*/\1/p" "$work/host.log" | head -1; }
coap_port() { sed -n 's/.*CoAP listening on udp:\/\/[^ ]*:\([0-9]*\).*/\1/p' "$work/host.log" | head -1; }
for _ in $(seq 1 240); do
  http="$(port_of http)"; mqtt="$(port_of mqtt)"; coap="$(coap_port)"
  if [ -n "$http" ] && [ -n "$mqtt" ] && [ -n "$coap" ] && curl -sf "http://127.0.0.1:$http/ready" >/dev/null; then break; fi
  if ! kill -0 "$host_pid" 2>/dev/null; then echo "soak: the host exited at start-up"; cat "$work/host.log"; exit 1; fi
  sleep 0.5
done
if [ -z "${http:-}" ] || [ -z "${mqtt:-}" ] || [ -z "${coap:-}" ]; then echo "soak: the host did not bind its doors"; cat "$work/host.log"; exit 1; fi
echo "soak: host pid $host_pid, http $http, mqtt $mqtt, coap $coap, duration $duration"

status=0
dotnet run -c Release --no-build --project load -- soak --duration "$duration" --port "$mqtt" --coap-port "$coap" \
  --api "http://127.0.0.1:$http" --server-pid "$host_pid" "$@" || status=$?

kill -TERM "$host_pid"
host_exit=0
wait "$host_pid" || host_exit=$?
host_pid=""
if [ "$host_exit" -ne 0 ]; then
  echo "soak: the host exited with $host_exit after SIGTERM (expected 0)"; tail -20 "$work/host.log"; status=1
fi
if grep -q " fail: \| crit: " "$work/host.log"; then
  echo "soak: the host logged failures:"; grep " fail: \| crit: " "$work/host.log" | head -10
fi
exit "$status"
