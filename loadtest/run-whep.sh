#!/usr/bin/env bash
# WHEP fan-out benchmark on loopback: a release server, one synthetic ~1.5 Mbit/s publisher and
# N subscribers per step (SUBSCRIBERS, default 50,100,200). Writes the JSON report to OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p vitrine -p vitrine-loadtest
port=${PORT:-18080}
dir=$(mktemp -d)
target/release/vitrine serve --listen "127.0.0.1:$port" --data-dir "$dir" --ice-bind 127.0.0.1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
  sleep 0.1
done
token=$(target/release/vitrine sellers create --name loadtest --data-dir "$dir" |
  python3 -c 'import sys, json; print(json.load(sys.stdin)["api_token"])')
target/release/vitrine-loadtest whep --server "http://127.0.0.1:$port" --token "$token" \
  --server-pid "$pid" --subscribers "${SUBSCRIBERS:-50,100,200}" \
  --seconds "${STEP_SECONDS:-15}" --out "${OUT:-loadtest/whep-report.json}"
