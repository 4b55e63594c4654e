#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for SECONDS each (default 5: CI's smoke run) and
# fails on the first crash, panic, timeout or out-of-memory, printing the path of the input
# that caused it. cargo-fuzz is installed at the pinned version when missing or different.
# libFuzzer instrumentation needs unstable compiler flags: RUSTC_BOOTSTRAP=1 lets the stable
# toolchain take them (no nightly toolchain needed). New inputs the fuzzer finds go to
# fuzz/target/corpus/<target>/ (git-ignored); the committed seeds in fuzz/corpus/<target>/ are
# only read. A longer run: `scripts/fuzz.sh 600` (see docs/SECURITY.md, "Fuzzing").
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
SECONDS_EACH=${1:-5}
shift || true
# Limits on every input: one allocation of 64 MiB, or a process above 2 GiB (the address
# sanitizer's quarantine and shadow included), counts as unbounded allocation; an input that
# runs 10 s counts as a hang.
LIBFUZZER_FLAGS=(-rss_limit_mb=2048 -malloc_limit_mb=64 -timeout=10)
BUILD_FLAGS=(--debug-assertions --sanitizer=address)

export RUSTC_BOOTSTRAP=1
# cargo-fuzz's own error backtrace says nothing about the input; a panic's backtrace does.
export RUST_LIB_BACKTRACE=0
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}

if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION (found: $(cargo fuzz --version 2>/dev/null || echo none))"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --force
fi

if [[ $# -gt 0 ]]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

started=$(date +%s)
cargo fuzz build "${BUILD_FLAGS[@]}"
echo "fuzz: built ${#targets[@]} targets in $(($(date +%s) - started)) s"

mkdir -p fuzz/target/fuzz-logs
for target in "${targets[@]}"; do
    scratch="fuzz/target/corpus/$target"
    artifacts="fuzz/artifacts/$target"
    log="fuzz/target/fuzz-logs/$target.log"
    mkdir -p "$scratch" "$artifacts"
    before=$(find "$artifacts" -type f | sort)
    # The first corpus folder receives new inputs; the committed seeds are only read.
    if cargo fuzz run "${BUILD_FLAGS[@]}" "$target" "$scratch" "fuzz/corpus/$target" -- \
        -max_total_time="$SECONDS_EACH" "${LIBFUZZER_FLAGS[@]}" >"$log" 2>&1; then
        echo "fuzz: $target: $(grep -o 'Done [0-9]* runs in [0-9]* second(s)' "$log" | tail -1 || true), no crash"
    else
        echo "fuzz: $target FAILED; from its log ($log):"
        grep -E -A1 -m 5 "panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer|SUMMARY" "$log" || tail -n 30 "$log"
        new=$(comm -13 <(echo "$before") <(find "$artifacts" -type f | sort))
        echo "fuzz: $target: crashing input(s):"
        echo "${new:-  (none written: see the log above)}" | sed 's/^/  /'
        echo "fuzz: replay with: RUSTC_BOOTSTRAP=1 cargo fuzz run ${BUILD_FLAGS[*]} $target <input>"
        exit 1
    fi
done
echo "fuzz: ${#targets[@]} targets, ${SECONDS_EACH} s each, no crash ($(($(date +%s) - started)) s in all)"
