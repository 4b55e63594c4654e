#!/usr/bin/env bash
# Translation quality of every backend Vitrine ships, on the product-pitch set
# (loadtest/translate/pitch.tsv, 16 sentences in en, es, de): corpus chrF2.
#  - text: the local model (vitrine-translator, Gemma 3 270M) through its LibreTranslate API,
#    en>es, en>de, es>en, de>en; seconds per sentence with THREADS threads;
#  - speech: the Spanish and German sentences spoken by espeak-ng, then Whisper base's own
#    translate task into English, Vitrine (whisper-rs) against faster-whisper on the same
#    weights and threads; and Whisper's transcript translated by the local model.
# LibreTranslate itself is not measured: its models come from a download index this machine
# cannot reach.
#   THREADS=2 OUT=loadtest/results/translate
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-2}
out=${OUT:-loadtest/results/translate}
port=${PORT:-5105}
mkdir -p "$(dirname "$out")"
rm -f "$out.jsonl"

scripts/setup.sh
cargo build --release -p vitrine -p vitrine-loadtest -p vitrine-translator
python=$(loadtest/peers/faster-whisper/setup.sh)
models=${VITRINE_MODELS:-$HOME/.cache/vitrine/models}
dir=$(mktemp -d)
target/release/vitrine-translator --threads "$threads" serve --listen "127.0.0.1:$port" &
translator=$!
trap 'kill $translator 2>/dev/null; rm -rf "$dir"' EXIT
base=$(loadtest/whisper-model.sh base "$dir")
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break
  kill -0 $translator || exit 1
  sleep 0.2
done

target/release/vitrine-loadtest translate --url "http://127.0.0.1:$port" --label gemma3-270m \
  --out "$out.jsonl"

for lang in es de; do
  python3 loadtest/speech.py "$dir" --set loadtest/translate/pitch.tsv --lang "$lang" 2>/dev/null
  a=$(target/release/vitrine subtitles transcribe "$dir/$lang.wav" --model "$base" --language "$lang" \
    --translate en --threads "$threads" --out "$dir/out" --json)
  target/release/vitrine-loadtest translate-row --label whisper-base-vitrine --source "$lang" \
    --target en --result "$a" --out "$out.jsonl"
  b=$("$python" loadtest/peers/faster-whisper/transcribe.py --model "$models/base-ct2" \
    --clip "$dir/$lang.wav" --threads "$threads" --language "$lang" --task translate)
  target/release/vitrine-loadtest translate-row --label whisper-base-faster-whisper --source "$lang" \
    --target en --result "$b" --text-is-translation --out "$out.jsonl"
  # The cascade: Whisper's transcript, then the local model, into English and the other language.
  other=$([ "$lang" = es ] && echo de || echo es)
  c=$(target/release/vitrine subtitles transcribe "$dir/$lang.wav" --model "$base" --language "$lang" \
    --translate "en,$other" --libretranslate "http://127.0.0.1:$port" --threads "$threads" \
    --out "$dir/out" --json)
  target/release/vitrine-loadtest translate-row --label whisper-base+gemma3-270m --source "$lang" \
    --target "$other" --result "$c" --out "$out.jsonl"
done
target/release/vitrine-loadtest chart --kind translate --input "$out.jsonl" --png "$out.png"
