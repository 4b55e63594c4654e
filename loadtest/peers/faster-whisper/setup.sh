#!/usr/bin/env bash
# faster-whisper (PyPI, on CTranslate2: the very weights Vitrine converts) in a virtual
# environment of its own; prints its python. Idempotent.
set -euo pipefail
venv=${FASTER_WHISPER_VENV:-$HOME/.cache/vitrine/faster-whisper-venv}
if ! "$venv/bin/python" -c 'import faster_whisper' 2>/dev/null; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q -r "$(dirname "$0")/requirements.txt" >&2
fi
echo "$venv/bin/python"
