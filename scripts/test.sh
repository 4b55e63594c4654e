#!/usr/bin/env bash
# Runs every test: formatting, the Rust unit and integration tests (real WebRTC on loopback,
# real SQLite, PostgreSQL and Redis), and the browser tests in headless Chromium against the
# real server binary. PostgreSQL and Redis are installed and started on loopback where missing,
# and stopped again at the end if this run started them.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
eval "$(scripts/services.sh start)"
trap 'scripts/services.sh stop' EXIT
cargo fmt --all -- --check
cargo build --workspace --all-targets
VITRINE_BIN=target/debug/vitrine scripts/validate-deploy.sh
cargo test --workspace
scripts/fuzz.sh 5
(cd tests-browser && npm ci --no-audit --no-fund && VITRINE_BIN="$PWD/../target/debug/vitrine" npm test)
