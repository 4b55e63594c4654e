#!/usr/bin/env bash
# Glass-to-glass latency, one publisher and one viewer on an otherwise idle machine: the studio
# page publishes a canvas carrying the wall-clock time (1280x720, 30 fps; the default ladder
# for it is 720p/480p/360p), a watch page reads the time back from every frame it presents,
# first over WebRTC, then over LL-HLS in hls.js.
# One server per LL-HLS part length; the report charts glass to glass against it.
#   PARTS=0.25,0.4,0.5,1.0  SECONDS_EACH=30  OUT=loadtest/results/glass
#   BIN=path: another build of the server (an earlier one, to compare with); skips the build.
set -euo pipefail
cd "$(dirname "$0")/.."
each=${SECONDS_EACH:-30}
PARTS=${PARTS:-0.25,0.4,0.5,1.0}
out=${OUT:-loadtest/results/glass}
mkdir -p "$(dirname "$out")"
scripts/setup.sh
bin=${BIN:-target/release/vitrine}
[ -n "${BIN:-}" ] || cargo build --release -p vitrine -p vitrine-loadtest
(cd tests-browser && npm ci --no-audit --no-fund >/dev/null)
source loadtest/lib.sh
rm -f "$out.jsonl"
# One server per LL-HLS part length (PARTS, seconds; the segment stays 2 s).
for part in ${PARTS//,/ }; do
  mkdir -p "$dir/$part"
  printf '[subtitles]\nenabled = false\n[hls]\npart_seconds = %s\n' "$part" >"$dir/$part/vitrine.toml"
  "$bin" serve --listen 127.0.0.1:18083 --data-dir "$dir/$part" --demo --config "$dir/$part/vitrine.toml" \
    >"$dir/$part/vitrine.out" 2>"$dir/$part/vitrine.log" &
  server=$!
  pids+=($server)
  wait_healthy http://127.0.0.1:18083/healthz
  for _ in $(seq 1 100); do grep -q "Watch page" "$dir/$part/vitrine.out" && break; sleep 0.1; done
  studio=$(grep -o 'Studio (go live): *[^ ]*' "$dir/$part/vitrine.out" | awk '{print $NF}')
  watch=$(grep -o 'Watch page: *[^ ]*' "$dir/$part/vitrine.out" | awk '{print $NF}')
  part_ms=$(python3 -c "print(round($part * 1000))")
  node loadtest/glass.mjs "$studio" "$watch" "$each" "{\"part_ms\": $part_ms}" | tee -a "$out.jsonl"
  # Where the server's part of it goes: frame in to the end of each stage.
  curl -s http://127.0.0.1:18083/metrics | grep -E '^vitrine_hls_stage_latency_seconds_(sum|count)' \
    >"$out-stages-$part_ms.txt" || true
  kill "$server"
  wait "$server" 2>/dev/null || true
done
${LOADTEST:-target/release/vitrine-loadtest} chart --kind glass --input "$out.jsonl" --png "$out.png"
