#!/usr/bin/env bash
# Live captions under load: N streams publish the same product pitch (synthetic speech, known
# text, looped) over WHIP in real time; one chat member per stream times each phrase's final
# caption. For each model, a fresh server captions 1, 2, 3, ... streams (HLS off: the Whisper
# pool alone is measured).
#   STREAMS=1,2,3,4 STEP_SECONDS=60 MODELS="tiny.en base" OUT=loadtest/results/captions
# Per step: final-caption latency p50/p95 (end of the phrase as sent -> final received), the
# share of phrases captioned, WER, server CPU, steps the pool lengthened and audio dropped.
set -euo pipefail
cd "$(dirname "$0")/.."
streams=${STREAMS:-1,2,3,4}
step=${STEP_SECONDS:-60}
model_names=${MODELS:-tiny.en base}
out=${OUT:-loadtest/results/captions}
mkdir -p "$(dirname "$out")"
rm -f "$out.jsonl"

scripts/setup.sh
cargo build --release -p vitrine -p vitrine-loadtest
source loadtest/lib.sh
models=${VITRINE_MODELS:-$HOME/.cache/vitrine/models}
python3 loadtest/speech.py "$dir"

for name in $model_names; do
  model=$(loadtest/whisper-model.sh "$name" "$dir")
  data="$dir/data-$name"
  printf '[subtitles]\nmodel = "%s"\nlanguage = "en"\n' "$model" >"$dir/$name.toml"
  target/release/vitrine serve --listen 127.0.0.1:18083 --data-dir "$data" --no-hls \
    --config "$dir/$name.toml" >"$dir/$name.out" 2>"$dir/$name.log" &
  pids+=($!)
  server=$!
  wait_healthy http://127.0.0.1:18083/healthz
  token=$(seller_token "$data")
  target/release/vitrine-loadtest captions --server http://127.0.0.1:18083 --token "$token" \
    --ogg "$dir/pitch.ogg" --phrases "$dir/pitch.json" --streams "$streams" --seconds "$step" \
    --server-pid "$server" --label "vitrine-$name" --out "$out.jsonl"
  kill "$server"
  wait "$server" 2>/dev/null || true
done
target/release/vitrine-loadtest chart --kind captions --input "$out.jsonl" --png "$out.png" \
  --subject "vitrine-tiny.en"
