#!/usr/bin/env bash
# Runs every test: formatting, the Rust unit and integration tests (real WebRTC on loopback,
# real SQLite), and the browser tests in headless Chromium against the real server binary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo fmt --all -- --check
cargo build --workspace --all-targets
cargo test --workspace
(cd tests-browser && npm ci --no-audit --no-fund && VITRINE_BIN="$PWD/../target/debug/vitrine" npm test)
