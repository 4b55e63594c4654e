#!/usr/bin/env bash
# Installs what Vitrine needs to build, run and test on Debian 12, idempotently: only what is
# missing is installed. Safe to run again.
set -euo pipefail

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in pkg-config build-essential ca-certificates chromium nodejs npm fonts-dejavu-core curl; do
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
