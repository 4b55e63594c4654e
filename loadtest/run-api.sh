#!/usr/bin/env bash
# Seller API benchmark. An authenticated, rate-limited read (GET /api/v1/products with a seller
# token: credential lookup, a GCRA check in Redis, the query) from one node, then from two nodes
# sharing PostgreSQL and Redis, alternately (A B A B); next to Redis's own ceiling for one Lua
# call (redis-benchmark EVAL), which every limited request makes once. Then webhook deliveries
# per second to a receiver on loopback while orders pour in, next to what the same receiver
# takes from a plain HTTP client.
#   CONCURRENCY=8,32  ROUNDS=2  STEP_SECONDS=10  OUT=loadtest/results/api
set -euo pipefail
cd "$(dirname "$0")/.."
concurrency=${CONCURRENCY:-8,32}
rounds=${ROUNDS:-2}
step=${STEP_SECONDS:-10}
out=${OUT:-loadtest/results/api}
mkdir -p "$(dirname "$out")"
rm -f "$out.jsonl" "$out-webhooks.jsonl"

scripts/setup.sh
eval "$(scripts/services.sh start)"
cargo build --release -p vitrine -p vitrine-loadtest
lt=target/release/vitrine-loadtest
source loadtest/lib.sh
cleanup_extra() {
  scripts/services.sh stop
}

# A tier far above the load, so every request is checked and none refused: the figures are the
# cost of the check, not the limit.
cat >"$dir/bench.toml" <<TOML
[rate_limits]
account_tier = "bench"
[rate_limits.tiers.bench]
requests_per_second = 100000
burst = 100000
[webhooks]
allow_private_targets = true
[checkout]
sandbox_latency_ms = 0
TOML

pg_base=${VITRINE_TEST_POSTGRES_URL%/*}
psql "$VITRINE_TEST_POSTGRES_URL" -q -v ON_ERROR_STOP=1 \
  -c "DROP DATABASE IF EXISTS vitrine_api_bench" -c "CREATE DATABASE vitrine_api_bench"
url="$pg_base/vitrine_api_bench"

node_pids=()
start_node() { # $1 port, $2 name
  target/release/vitrine serve --no-ip-limits --listen "127.0.0.1:$1" --data-dir "$dir/$2" --config "$dir/bench.toml" \
    --database-url "$url" --redis "$VITRINE_TEST_REDIS_URL" --ice-udp-port 0 --no-hls --no-subtitles >"$dir/$2.log" 2>&1 &
  node_pids+=("$!")
  pids+=("$!")
  wait_healthy "http://127.0.0.1:$1/healthz"
}
mkdir -p "$dir/a" "$dir/b"
# Both nodes seal webhook secrets with the same key.
head -c 32 /dev/urandom >"$dir/a/webhook-secrets.key"
cp "$dir/a/webhook-secrets.key" "$dir/b/webhook-secrets.key"
start_node 18081 a
start_node 18082 b
token=$(seller_token "$dir/cli" "$url")
# A catalog page worth reading.
for i in $(seq 1 20); do
  curl -sf -o /dev/null -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    -d "{\"sku\":\"B-$i\",\"title\":\"Item $i\",\"price\":{\"amount\":1000,\"currency\":\"EUR\"},\"stock\":10}" \
    http://127.0.0.1:18081/api/v1/products
done
pid_list=$(IFS=,; echo "${node_pids[*]}")

redis_row() { # $1 concurrency
  local rps
  rps=$(redis-benchmark -h 127.0.0.1 -p 6379 -q -n 200000 -c "$1" \
    EVAL "local t = redis.call('TIME') return redis.call('SET', KEYS[1], t[1], 'PX', 60000)" 1 bench:rl |
    tr '\r' '\n' | sed -nE 's/.*: ([0-9.]+) requests per second.*/\1/p' | tail -1)
  echo "{\"label\": \"redis-eval\", \"nodes\": 0, \"concurrency\": $1, \"seconds\": 0, \"ok\": 0, \"limited\": 0, \"errors\": 0, \"requests_per_s\": $rps, \"latency_p50_ms\": null, \"latency_p99_ms\": null, \"server_cpu_per_s\": null, \"generator_cpu_per_s\": null}" >>"$out.jsonl"
  tail -1 "$out.jsonl"
}

for r in $(seq 1 "$rounds"); do
  echo "== round $r"
  "$lt" api --label vitrine-1-node --servers http://127.0.0.1:18081 --token "$token" \
    --server-pid "$pid_list" --concurrency "$concurrency" --seconds "$step" --out "$out.jsonl"
  "$lt" api --label vitrine-2-nodes --servers http://127.0.0.1:18081,http://127.0.0.1:18082 \
    --token "$token" --server-pid "$pid_list" --concurrency "$concurrency" --seconds "$step" \
    --out "$out.jsonl"
  IFS=, read -ra cs <<<"$concurrency"
  for c in "${cs[@]}"; do redis_row "$c"; done
done
"$lt" webhooks --server http://127.0.0.1:18081 --token "$token" --seconds "$step" \
  --server-pid "$pid_list" --out "$out-webhooks.jsonl"
"$lt" chart --kind api --input "$out.jsonl" --png "$out.png" --subject vitrine-1-node
