#!/usr/bin/env bash
# Validates deploy/ offline: every Kubernetes manifest in deploy/kubernetes against the schemas
# of one fixed Kubernetes version in strict mode, plus what the schemas cannot see (references,
# selectors, named ports, the server's config keys and flags), and deploy/compose.yaml against
# the Compose Specification schema plus the shape of its three-node cluster (deploy/validate.py).
# The validator is installed once into deploy/.venv from deploy/requirements.txt (every package
# pinned by hash), again only when that file changes. The flags the manifests give the server are
# checked against `vitrine serve --help` of $VITRINE_BIN (required to exist when set), else of
# target/debug/vitrine when it was built.
set -euo pipefail
cd "$(dirname "$0")/.."

kubernetes_version=1.33.0
venv=deploy/.venv
if ! cmp -s deploy/requirements.txt "$venv/requirements.txt" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --only-binary=:all: \
    --require-hashes -r deploy/requirements.txt
  cp deploy/requirements.txt "$venv/requirements.txt"
fi

args=(--kubernetes-version "$kubernetes_version")
if [ -n "${VITRINE_BIN:-}" ]; then
  args+=(--vitrine "$VITRINE_BIN")
elif [ -x target/debug/vitrine ]; then
  args+=(--vitrine target/debug/vitrine)
fi
"$venv/bin/python" -B deploy/validate.py "${args[@]}"
