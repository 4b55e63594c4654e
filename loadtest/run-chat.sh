#!/usr/bin/env bash
# Chat fan-out benchmark on loopback: Vitrine (release build) and the nginx + Nchan peer,
# measured alternately (A B A B ...) with the same load generator: one room, MEMBERS websocket
# members (added step by step), RATE messages per second in from RATE publishers (one message per
# second each). Prints medians and ratios; writes JSON lines and a PNG chart.
#   MEMBERS=1000,2500,5000  RATE=100  ROUNDS=2  STEP_SECONDS=10  OUT=loadtest/results/chat  PEER=nchan|none
set -euo pipefail
cd "$(dirname "$0")/.."
members=${MEMBERS:-1000,2500,5000}
rate=${RATE:-100}
rounds=${ROUNDS:-2}
step=${STEP_SECONDS:-10}
out=${OUT:-loadtest/results/chat}
peer=${PEER:-nchan}
mkdir -p "$(dirname "$out")"
rm -f "$out.jsonl"
# Each member is a socket on both ends: raise the open-file limit as far as allowed.
ulimit -n "$(ulimit -Hn)"

scripts/setup.sh
cargo build --release -p vitrine -p vitrine-loadtest
lt=target/release/vitrine-loadtest
source loadtest/lib.sh
cleanup_extra() {
  [ "$peer" = nchan ] && loadtest/peers/nchan/stop.sh "$dir/nchan" 2>/dev/null || true
}

# Members read only; publishers send one line a second, within the default per-member limits.
target/release/vitrine serve --no-ip-limits --listen 127.0.0.1:18082 --data-dir "$dir" >"$dir/vitrine.log" 2>&1 &
vitrine_pid=$!
pids+=("$vitrine_pid")
wait_healthy http://127.0.0.1:18082/healthz
token=$(seller_token "$dir")

if [ "$peer" = nchan ]; then
  loadtest/peers/nchan/setup.sh
  loadtest/peers/nchan/run.sh 18092 "$dir/nchan"
  # The master and its workers (whose command lines do not name the prefix).
  nchan_master=$(cat "$dir/nchan/nginx.pid")
  nchan_pids="$nchan_master,$(pgrep -d, -P "$nchan_master")"
fi

# One room per server for the whole run, grown step by step; each round is a fresh room.
for r in $(seq 1 "$rounds"); do
  echo "== round $r: vitrine"
  "$lt" chat --target vitrine --label vitrine --server http://127.0.0.1:18082 --token "$token" \
    --server-pid "$vitrine_pid" --members "$members" --rate "$rate" --seconds "$step" --out "$out.jsonl"
  if [ "$peer" = nchan ]; then
    echo "== round $r: nchan"
    "$lt" chat --target nchan --label nchan --server http://127.0.0.1:18092 \
      --server-pid "$nchan_pids" --members "$members" --rate "$rate" --seconds "$step" --out "$out.jsonl"
  fi
done
"$lt" chart --kind chat --input "$out.jsonl" --png "$out.png" --subject vitrine
