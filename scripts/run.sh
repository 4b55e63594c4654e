#!/usr/bin/env bash
# Builds and runs the server on its embedded defaults (SQLite and local disk under ./data) with a
# demo seller and stream, and prints the studio and watch URLs. Extra flags go to `vitrine serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release -p vitrine
exec target/release/vitrine serve --demo "$@"
