#!/usr/bin/env bash
# WHEP fan-out benchmark on loopback: Vitrine (release build) and the mediasoup peer, measured
# alternately (A B A B ...) with the same load generator: one synthetic ~1.5 Mbit/s VP8
# publisher and N subscribers per step. Prints medians and ratios; writes JSON lines and a PNG.
#   SUBSCRIBERS=50,100,200  ROUNDS=2  STEP_SECONDS=10  OUT=loadtest/results/whep  PEER=mediasoup|none
#   KBPS=1500 (the publisher's video bitrate: lower it to count sessions rather than bandwidth)
#   PORT_PER_SESSION=1 also measures Vitrine with a UDP port per session (--ice-port-range, the
#   mode before one shared port became the default), labelled vitrine-port-per-session.
set -euo pipefail
cd "$(dirname "$0")/.."
subscribers=${SUBSCRIBERS:-50,100,200}
rounds=${ROUNDS:-2}
step=${STEP_SECONDS:-10}
kbps=${KBPS:-1500}
out=${OUT:-loadtest/results/whep}
peer=${PEER:-mediasoup}
port_per_session=${PORT_PER_SESSION:-0}
mkdir -p "$(dirname "$out")"
rm -f "$out.jsonl"

scripts/setup.sh
cargo build --release -p vitrine -p vitrine-loadtest
lt=target/release/vitrine-loadtest
source loadtest/lib.sh

vitrine_url=http://127.0.0.1:18080
serve_whep 18080 "$dir"
vitrine_pid=$served_pid
token=$(seller_token "$dir")
if [ "$port_per_session" = 1 ]; then
  serve_whep 18081 "$dir/ports" --ice-port-range 40000-49999
  ports_pid=$served_pid
  ports_token=$(seller_token "$dir/ports")
fi

if [ "$peer" = mediasoup ]; then
  loadtest/peers/mediasoup/setup.sh
  PORT=18090 node loadtest/peers/mediasoup/server.mjs >"$dir/peer.log" 2>&1 &
  peer_pid=$!
  pids+=("$peer_pid")
  wait_healthy http://127.0.0.1:18090/healthz
  worker_pid=$(grep -o 'worker pid [0-9]*' "$dir/peer.log" | awk '{print $3}')
fi

IFS=, read -ra counts <<<"$subscribers"
for n in "${counts[@]}"; do
  for r in $(seq 1 "$rounds"); do
    echo "== N=$n round $r: vitrine"
    "$lt" whep --label vitrine --server "$vitrine_url" --token "$token" --server-pid "$vitrine_pid" \
      --subscribers "$n" --seconds "$step" --kbps "$kbps" --out "$out.jsonl"
    if [ "$port_per_session" = 1 ]; then
      echo "== N=$n round $r: vitrine, a port per session"
      "$lt" whep --label vitrine-port-per-session --server http://127.0.0.1:18081 --token "$ports_token" \
        --server-pid "$ports_pid" --subscribers "$n" --seconds "$step" --kbps "$kbps" --out "$out.jsonl"
    fi
    if [ "$peer" = mediasoup ]; then
      echo "== N=$n round $r: mediasoup"
      "$lt" whep --label mediasoup --server http://127.0.0.1:18090 --token none \
        --server-pid "$peer_pid,$worker_pid" --subscribers "$n" --seconds "$step" --kbps "$kbps" --out "$out.jsonl"
    fi
  done
done
"$lt" chart --input "$out.jsonl" --png "$out.png" --subject vitrine \
  --title "WHEP fan-out, one ~$kbps kbit/s VP8 publisher"
