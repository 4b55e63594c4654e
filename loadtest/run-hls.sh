#!/usr/bin/env bash
# LL-HLS serving: a seller publishes from the studio page (headless Chromium, fake camera), the
# server transcodes it (the default ladder for the 640x480 camera: 480p + 360p), and N viewers
# each do what a low-latency player does: a blocking reload for the next part, then the part.
#   VIEWERS=0,100,300,1000  STEP_SECONDS=10  OUT=loadtest/results/hls
# The first step (0 viewers) is the transcoding baseline: the server CPU beyond it is serving.
set -euo pipefail
cd "$(dirname "$0")/.."
viewers=${VIEWERS:-0,100,300,1000}
step=${STEP_SECONDS:-10}
out=${OUT:-loadtest/results/hls}
mkdir -p "$(dirname "$out")"
rm -f "$out.jsonl"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

scripts/setup.sh
cargo build --release -p vitrine -p vitrine-loadtest
(cd tests-browser && npm ci --no-audit --no-fund >/dev/null)
source loadtest/lib.sh

target/release/vitrine serve --listen 127.0.0.1:18082 --data-dir "$dir" --demo >"$dir/vitrine.out" 2>"$dir/vitrine.log" &
pids+=($!)
vitrine_pid=$!
wait_healthy http://127.0.0.1:18082/healthz
for _ in $(seq 1 100); do grep -q "Studio (go live)" "$dir/vitrine.out" && break; sleep 0.1; done
studio=$(grep -o 'Studio (go live): *[^ ]*' "$dir/vitrine.out" | awk '{print $NF}')
master=$(grep -o 'HLS (live): *[^ ]*' "$dir/vitrine.out" | awk '{print $NF}')
node loadtest/publish.mjs "$studio" >"$dir/publish.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do grep -q live "$dir/publish.out" && break; sleep 0.1; done
# The master playlist answers once every rendition has a segment.
curl -sf --max-time 30 "$master" >/dev/null
target/release/vitrine-loadtest hls --master "$master" --viewers "$viewers" --seconds "$step" \
  --server-pid "$vitrine_pid" --out "$out.jsonl"
# Frame-in to part-listed latency, from the server's own histogram.
curl -s http://127.0.0.1:18082/metrics | grep '^vitrine_hls_part_latency_seconds' >"$out-latency.txt" || true
target/release/vitrine-loadtest chart --kind hls --input "$out.jsonl" --png "$out.png"
