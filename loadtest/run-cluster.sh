#!/usr/bin/env bash
# Media cluster benchmark on loopback: three release `vitrine serve` nodes sharing PostgreSQL and
# Redis (the test services), one synthetic ~1.5 Mbit/s VP8 publisher on node A, viewers with the
# same load generator as run-whep.sh. Steps, each measured in the same run:
#   single  N viewers on A alone (the baseline: CPU per subscriber on a node serving its own
#           publisher);
#   edge    N viewers on B, relayed from A (B's CPU per subscriber; delivery; forwarding delay
#           including the relay hop);
#   cluster TOTAL viewers spread over A, B and C (delivery at scale; the generator's CPU).
# Prints medians and ratios (edge against single); writes JSON lines and a PNG.
#   SUBSCRIBERS=100  TOTAL=300  ROUNDS=2  STEP_SECONDS=10  OUT=loadtest/results/cluster
set -euo pipefail
cd "$(dirname "$0")/.."
subscribers=${SUBSCRIBERS:-100}
total=${TOTAL:-300}
rounds=${ROUNDS:-2}
step=${STEP_SECONDS:-10}
out=${OUT:-loadtest/results/cluster}
mkdir -p "$(dirname "$out")"
rm -f "$out.jsonl"

scripts/setup.sh
eval "$(scripts/services.sh start)"
cargo build --release -p vitrine -p vitrine-loadtest
lt=target/release/vitrine-loadtest
source loadtest/lib.sh
db="vitrine_bench_$$"
psql "$VITRINE_TEST_POSTGRES_URL" -qc "CREATE DATABASE $db"
database="${VITRINE_TEST_POSTGRES_URL%/*}/$db"
cleanup_extra() {
  psql "$VITRINE_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
}
head -c 32 /dev/urandom >"$dir/cluster.secret"

declare -A node_pid node_url
port=18180
for node in a b c; do
  port=$((port + 1))
  node_url[$node]=http://127.0.0.1:$port
  # Every simulated viewer comes from 127.0.0.1: lift the per-address limits.
  target/release/vitrine serve --listen 127.0.0.1:$port --data-dir "$dir/$node" \
    --database-url "$database" --redis "$VITRINE_TEST_REDIS_URL" \
    --cluster-secret-file "$dir/cluster.secret" --cluster-name "bench$$" --node-id "$node" \
    --ice-bind 127.0.0.1 --ice-udp-port $((port + 20000)) --whep-pending-per-ip 100000 --no-ip-limits --no-hls --no-subtitles \
    >"$dir/$node.log" 2>&1 &
  node_pid[$node]=$!
  pids+=("${node_pid[$node]}")
  wait_healthy "${node_url[$node]}/healthz"
done
token=$(seller_token "$dir/cli" "$database")

run() { # label viewer-nodes pids subscribers
  "$lt" whep --label "$1" --server "${node_url[a]}" --token "$token" --viewer-servers "$2" \
    --server-pid "$3" --subscribers "$4" --seconds "$step" --out "$out.jsonl"
}
for r in $(seq 1 "$rounds"); do
  echo "== round $r: single node, $subscribers viewers on A"
  run single "${node_url[a]}" "${node_pid[a]}" "$subscribers"
  echo "== round $r: edge node, $subscribers viewers on B relayed from A"
  run edge "${node_url[b]}" "${node_pid[b]}" "$subscribers"
done
echo "== $total viewers over A, B and C"
run cluster "${node_url[a]},${node_url[b]},${node_url[c]}" \
  "${node_pid[a]},${node_pid[b]},${node_pid[c]}" "$total"
echo "relay legs on A: $(curl -s "${node_url[a]}/metrics" | awk '$1 == "vitrine_relay_legs" {print $2}')"
"$lt" chart --input "$out.jsonl" --png "$out.png" --subject edge
