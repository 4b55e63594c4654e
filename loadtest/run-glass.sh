#!/usr/bin/env bash
# Glass-to-glass latency, one publisher and one viewer on an otherwise idle machine: the studio
# page publishes a canvas carrying the wall-clock time (1280x720, 30 fps; the default ladder
# for it is 720p/480p/360p), a watch page reads the time back from every frame it presents,
# first over WebRTC, then over LL-HLS in hls.js.
#   SECONDS_EACH=30  OUT=loadtest/results/glass  (extra server settings: HLS_TOML)
set -euo pipefail
cd "$(dirname "$0")/.."
each=${SECONDS_EACH:-30}
out=${OUT:-loadtest/results/glass}
mkdir -p "$(dirname "$out")"
scripts/setup.sh
cargo build --release -p vitrine
(cd tests-browser && npm ci --no-audit --no-fund >/dev/null)
source loadtest/lib.sh
printf '[subtitles]\nenabled = false\n%s\n' "${HLS_TOML:-}" >"$dir/vitrine.toml"
target/release/vitrine serve --listen 127.0.0.1:18083 --data-dir "$dir" --demo --config "$dir/vitrine.toml" \
  >"$dir/vitrine.out" 2>"$dir/vitrine.log" &
pids+=($!)
wait_healthy http://127.0.0.1:18083/healthz
for _ in $(seq 1 100); do grep -q "Studio (go live)" "$dir/vitrine.out" && break; sleep 0.1; done
studio=$(grep -o 'Studio (go live): *[^ ]*' "$dir/vitrine.out" | awk '{print $NF}')
watch=$(grep -o 'Watch page: *[^ ]*' "$dir/vitrine.out" | awk '{print $NF}')
node loadtest/glass.mjs "$studio" "$watch" "$each" | tee "$out.jsonl"
# Where the server's part of it goes: frame in to the end of each stage.
curl -s http://127.0.0.1:18083/metrics | grep -E '^vitrine_hls_stage_latency_seconds_(sum|count)' >"$out-stages.txt" || true
