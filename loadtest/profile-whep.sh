#!/usr/bin/env bash
# Where a forwarded packet's CPU goes: the WHEP fan-out of run-whep.sh (release build, one
# synthetic ~1.5 Mbit/s VP8 publisher, N subscribers on the shared UDP port) sampled with
# `perf record` (DWARF call graphs from the release build's debug info) while the generator
# holds the load. Writes a flat profile (self time per function), the time per cost group
# (SRTP, RTP/RTCP interceptors, the async runtime, locks, syscalls, allocation) and a
# flamegraph SVG (inferno, installed with cargo when missing).
#   SUBSCRIBERS=300  SECONDS_PROFILED=10  OUT=loadtest/results/profile-whep
set -euo pipefail
cd "$(dirname "$0")/.."
n=${SUBSCRIBERS:-300}
profiled=${SECONDS_PROFILED:-10}
out=${OUT:-loadtest/results/profile-whep}
mkdir -p "$(dirname "$out")"

scripts/setup.sh
command -v perf >/dev/null || { echo "perf is missing (Debian: linux-perf)" >&2; exit 1; }
command -v inferno-flamegraph >/dev/null || cargo install inferno --locked --version 0.12.8
cargo build --release -p vitrine -p vitrine-loadtest
lt=target/release/vitrine-loadtest
source loadtest/lib.sh

url=http://127.0.0.1:18080
serve_whep 18080 "$dir"
pid=$served_pid
token=$(seller_token "$dir")

# The generator measures for longer than perf samples: perf starts once every subscriber
# receives (the generator's "measuring" line) and stops before the window ends.
"$lt" whep --label vitrine --server "$url" --token "$token" --server-pid "$pid" \
  --subscribers "$n" --seconds $((profiled + 10)) --out "$dir/whep.jsonl" >"$dir/gen.log" 2>&1 &
gen=$!
pids+=("$gen")
until grep -q "measuring" "$dir/gen.log" 2>/dev/null; do
  kill -0 "$gen" 2>/dev/null || { cat "$dir/gen.log" >&2; exit 1; }
  sleep 0.5
done
perf record -F 299 -g --call-graph dwarf,16384 -p "$pid" -o "$dir/perf.data" -- sleep "$profiled" \
  >/dev/null 2>"$dir/perf.log"
wait "$gen"
cat "$dir/whep.jsonl"

perf report -i "$dir/perf.data" --no-children --sort symbol --stdio -g none --percent-limit 0.5 \
  2>/dev/null | grep -v '^$' >"$out-flat.txt"
perf script -i "$dir/perf.data" 2>/dev/null | inferno-collapse-perf --all >"$dir/folded.txt"
inferno-flamegraph --title "Vitrine WHEP fan-out, $n subscribers" <"$dir/folded.txt" >"$out.svg"
python3 loadtest/profile_groups.py "$dir/folded.txt" >"$out-groups.txt"
cat "$out-groups.txt"
echo "flat profile: $out-flat.txt; flamegraph: $out.svg"
