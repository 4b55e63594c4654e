#!/usr/bin/env bash
# Live-auction benchmark: BIDDERS guest buyers in one room (each a chat member and a bidder)
# bid in one auction at RATE bids per second offered in all, each bid a little over the highest
# announced; bids answered and accepted per second, reply time, and bid-to-broadcast latency
# at every member. Next to it, the database's ceiling for the bid's own conditional UPDATE on
# one auction row (the same statement, 32 connections), on PostgreSQL and SQLite, alternately.
#   BIDDERS=1000  RATE=50,200  ROUNDS=2  STEP_SECONDS=15  OUT=loadtest/results/auction
set -euo pipefail
cd "$(dirname "$0")/.."
bidders=${BIDDERS:-1000}
rate=${RATE:-50,200}
rounds=${ROUNDS:-2}
step=${STEP_SECONDS:-15}
out=${OUT:-loadtest/results/auction}
mkdir -p "$(dirname "$out")"
rm -f "$out.jsonl" "$out-ceiling.jsonl"
ulimit -n "$(ulimit -Hn)"

scripts/setup.sh
eval "$(scripts/services.sh start)"
cargo build --release -p vitrine -p vitrine-loadtest
lt=target/release/vitrine-loadtest
source loadtest/lib.sh
cleanup_extra() {
  scripts/services.sh stop
}

# Members bid and read far beyond a person's pace; the per-buyer bid rate is off with the
# per-address limits (--no-ip-limits) so the load generator is not refused.
cat >"$dir/bench.toml" <<TOML
[checkout]
sandbox_latency_ms = 0
[chat]
frame_burst = 100000
frame_per_second = 100000.0
TOML

pg_base=${VITRINE_TEST_POSTGRES_URL%/*}
for backend in postgres sqlite; do
  if [ "$backend" = sqlite ]; then
    url="sqlite://$dir/bench.db?mode=rwc"
  else
    psql "$VITRINE_TEST_POSTGRES_URL" -q -v ON_ERROR_STOP=1 \
      -c "DROP DATABASE IF EXISTS vitrine_bench" -c "CREATE DATABASE vitrine_bench"
    url="$pg_base/vitrine_bench"
  fi
  target/release/vitrine serve --no-ip-limits --listen 127.0.0.1:18083 --data-dir "$dir" \
    --config "$dir/bench.toml" --database-url "$url" >"$dir/vitrine.log" 2>&1 &
  vitrine_pid=$!
  pids+=("$vitrine_pid")
  wait_healthy http://127.0.0.1:18083/healthz
  token=$(seller_token "$dir" "$url")
  for r in $(seq 1 "$rounds"); do
    echo "== $backend round $r"
    "$lt" auction --label "auction-$backend" --server http://127.0.0.1:18083 --token "$token" \
      --server-pid "$vitrine_pid" --bidders "$bidders" --rate "$rate" --seconds "$step" --out "$out.jsonl"
    "$lt" db-ceiling --statement bid --label "raw-bid-$backend" --url "$url" --concurrency 32 \
      --seconds 10 --out "$out-ceiling.jsonl"
  done
  kill "$vitrine_pid"; wait "$vitrine_pid" 2>/dev/null || true
done
"$lt" chart --kind auction --input "$out.jsonl" --png "$out.png" --subject auction-postgres
# Bids answered per second as a share of the database's ceiling for the bid's UPDATE.
python3 - "$out.jsonl" "$out-ceiling.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ceil = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
for backend in ("postgres", "sqlite"):
    c = statistics.median(r["orders_per_s"] for r in ceil if r["label"] == f"raw-bid-{backend}")
    for rate in sorted({r["offered_per_s"] for r in rows}):
        mine = [r for r in rows if r["label"] == f"auction-{backend}" and r["offered_per_s"] == rate]
        if not mine:
            continue
        answered = statistics.median(r["answered_per_s"] for r in mine)
        accepted = statistics.median(r["accepted_per_s"] for r in mine)
        p99 = statistics.median(r["broadcast_p99_ms"] for r in mine)
        print(f"{backend} offered {rate}/s: answered {answered:.0f}/s, accepted {accepted:.0f}/s, "
              f"bid-to-broadcast p99 {p99:.0f} ms; raw bid UPDATE {c:.0f}/s "
              f"(answered = {100 * answered / c:.1f} % of it)")
PY
