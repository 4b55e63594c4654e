#!/usr/bin/env bash
# Installs the mediasoup benchmark peer (3.8.4: the last release that carries its worker's
# dependencies, so it builds without network access). Its build system needs Python 2 (gyp),
# taken from pyenv's 2.7 when present; one header of its bundled abseil needs a cast to build
# with glibc >= 2.34. Idempotent: does nothing once the worker binary exists.
set -euo pipefail
cd "$(dirname "$0")"
worker=node_modules/mediasoup/worker/out/Release/mediasoup-worker
[ -x "$worker" ] && exit 0
npm install --no-audit --no-fund --ignore-scripts
sed -i 's/std::max(SIGSTKSZ, 65536)/std::max<long>(SIGSTKSZ, 65536)/' \
  node_modules/mediasoup/worker/deps/libwebrtc/deps/abseil-cpp/abseil-cpp/absl/debugging/failure_signal_handler.cc
# A pyenv shim named python2 may exist with no 2.x version selected: ask it to run.
if ! python2 --version >/dev/null 2>&1 && command -v pyenv >/dev/null 2>&1; then
  export PYENV_VERSION
  PYENV_VERSION=$(pyenv versions --bare | grep '^2\.' | head -1)
fi
MEDIASOUP_MAX_CORES=2 make -C node_modules/mediasoup/worker
