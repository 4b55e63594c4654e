#!/usr/bin/env bash
# Whisper on the CPU: Vitrine (whisper-rs, whisper.cpp) against faster-whisper (CTranslate2) on
# the same clips, the same model weights (tiny.en: the CTranslate2 files faster-whisper reads
# and the ggml file Vitrine converts from them, f16 and Q8_0), the same thread count, greedy
# decoding and voice activity filtering on both, alternating A B per round.
#   ROUNDS=3 THREADS=2 OUT=loadtest/results/whisper
# Per run: the real-time factor (transcription seconds / audio seconds; audio decoding and model
# loading not counted) and the word error rate against the known text.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
threads=${THREADS:-2}
out=${OUT:-loadtest/results/whisper}
mkdir -p "$(dirname "$out")"
rm -f "$out.jsonl"

scripts/setup.sh
cargo build --release -p vitrine -p vitrine-loadtest
python=$(loadtest/peers/faster-whisper/setup.sh)
models=${VITRINE_MODELS:-$HOME/.cache/vitrine/models}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

target/release/vitrine subtitles convert-model "$models/tiny.en-ct2" --out "$dir/tiny.en.bin" >/dev/null
target/release/vitrine subtitles convert-model "$models/tiny.en-ct2" --out "$dir/tiny.en-q8_0.bin" \
  --weights q8_0 >/dev/null
python3 loadtest/speech.py "$dir"
cp "$models/jfk.wav" "$dir/jfk.wav"
echo "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country." >"$dir/jfk.txt"

for round in $(seq 1 "$rounds"); do
  for clip in jfk pitch; do
    for weights in f16 q8_0; do
      model="$dir/tiny.en.bin" label=vitrine
      [ "$weights" = q8_0 ] && model="$dir/tiny.en-q8_0.bin" label=vitrine-q8_0
      a=$(target/release/vitrine subtitles transcribe "$dir/$clip.wav" --model "$model" \
        --language en --threads "$threads" --out "$dir/out" --json)
      target/release/vitrine-loadtest whisper-row --label "$label" --clip "$clip" --round "$round" \
        --reference "$dir/$clip.txt" --result "$a" --out "$out.jsonl"
    done
    for compute in int8 float32; do
      b=$("$python" loadtest/peers/faster-whisper/transcribe.py --model "$models/tiny.en-ct2" \
        --clip "$dir/$clip.wav" --threads "$threads" --compute-type "$compute")
      target/release/vitrine-loadtest whisper-row --label "faster-whisper-$compute" --clip "$clip" \
        --round "$round" --reference "$dir/$clip.txt" --result "$b" --out "$out.jsonl"
    done
  done
done
target/release/vitrine-loadtest chart --kind whisper --input "$out.jsonl" --png "$out.png"
