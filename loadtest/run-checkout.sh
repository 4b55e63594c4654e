#!/usr/bin/env bash
# Checkout benchmark: orders per second through Vitrine's HTTP API and through the chat, next
# to the database's own ceiling for the very conditional UPDATE the order path reserves stock
# with, on SQLite and on PostgreSQL, alternately (A B C A B C ...) in one run.
#   CONCURRENCY=8,32  ROUNDS=2  STEP_SECONDS=10  OUT=loadtest/results/checkout
#   DB_CONNECTIONS=8 sizes Vitrine's pool (--database-max-connections; default 16 on PostgreSQL,
#   4 on SQLite)   BACKENDS="sqlite postgres" picks the engines (both by default)
# The sandbox card processor answers at once here (sandbox_latency_ms = 0) so that the figures
# are the server's and the database's, not a simulated processor delay.
set -euo pipefail
cd "$(dirname "$0")/.."
concurrency=${CONCURRENCY:-8,32}
rounds=${ROUNDS:-2}
step=${STEP_SECONDS:-10}
out=${OUT:-loadtest/results/checkout}
mkdir -p "$(dirname "$out")"
rm -f "$out.jsonl" "$out-breakdown.jsonl"

scripts/setup.sh
eval "$(scripts/services.sh start)"
cargo build --release -p vitrine -p vitrine-loadtest
lt=target/release/vitrine-loadtest
source loadtest/lib.sh
cleanup_extra() {
  scripts/services.sh stop
}

cat >"$dir/bench.toml" <<TOML
[checkout]
sandbox_latency_ms = 0
[chat]
frame_burst = 100000
frame_per_second = 100000.0
TOML

pg_base=${VITRINE_TEST_POSTGRES_URL%/*}
psql_admin() { psql "$VITRINE_TEST_POSTGRES_URL" -q -v ON_ERROR_STOP=1 "$@"; }

start_vitrine() { # $1 database url
  target/release/vitrine serve --no-ip-limits --listen 127.0.0.1:18081 --data-dir "$dir" --config "$dir/bench.toml" \
    --database-url "$1" ${DB_CONNECTIONS:+--database-max-connections "$DB_CONNECTIONS"} >"$dir/vitrine.log" 2>&1 &
  vitrine_pid=$!
  pids+=("$vitrine_pid")
  wait_healthy http://127.0.0.1:18081/healthz
  token=$(seller_token "$dir" "$1")
}

# What one step cost the database and how the order path batched it: transactions committed
# (PostgreSQL's own count) and group-commit batches per step (the server's metrics).
snapshot() { # $1 database url ("" for SQLite)
  local xact=0
  [ -n "$1" ] && xact=$(psql "$1" -Atc "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
  curl -s http://127.0.0.1:18081/metrics | python3 -c '
import re, sys
text = sys.stdin.read()
def m(name, step):
    found = re.search(r"^%s_total\{job=\"%s\"\} (\d+)" % (name, step), text, re.M)
    return int(found.group(1)) if found else 0
def f(name, step):
    found = re.search(r"^%s_total\{job=\"%s\"\} ([0-9.e+-]+)" % (name, step), text, re.M)
    return float(found.group(1)) if found else 0.0
print(" ".join(str(m(n, s)) for s in ("reserve", "settle") for n in ("vitrine_checkout_batches", "vitrine_checkout_batched_requests")), end="")
print("", " ".join(str(f("vitrine_checkout_batch_seconds", s)) for s in ("reserve", "settle")), end="")
'
  echo " $xact"
}

breakdown_row() { # $1 label, $2 snapshot before, $3 snapshot after, $4 result lines before
  python3 - "$1" "$2" "$3" "$out.jsonl" "$4" >>"$out-breakdown.jsonl" <<'PY'
import json, sys
label, before, after, rows, skip = sys.argv[1], sys.argv[2].split(), sys.argv[3].split(), sys.argv[4], int(sys.argv[5])
d = [float(b) - float(a) for a, b in zip(before, after)]
new = [json.loads(l) for l in open(rows).readlines()[skip:]]
orders = sum(r["orders"] for r in new if r["label"] == label)
print(json.dumps({"label": label, "orders": orders,
    "reserve_batch_mean": d[1] / d[0] if d[0] else None,
    "settle_batch_mean": d[3] / d[2] if d[2] else None,
    "reserve_tx_ms": 1000 * d[4] / d[0] if d[0] else None,
    "settle_tx_ms": 1000 * d[5] / d[2] if d[2] else None,
    "db_commits_per_order": d[6] / orders if orders and d[6] else None}))
PY
  tail -1 "$out-breakdown.jsonl"
}

stop_vitrine() {
  kill "$vitrine_pid"; wait "$vitrine_pid" 2>/dev/null || true
}

pgbench_row() { # $1 label, $2 concurrency, $3 url
  cat >"$dir/reserve.sql" <<'SQL'
UPDATE ceiling_products SET stock = stock - 1, updated_at = 0 WHERE id = 'p' AND stock >= 1;
SQL
  psql "$3" -q -c "DROP TABLE IF EXISTS ceiling_products" \
    -c "CREATE TABLE ceiling_products (id TEXT PRIMARY KEY, stock BIGINT NOT NULL, updated_at BIGINT NOT NULL)" \
    -c "INSERT INTO ceiling_products VALUES ('p', 1000000000000, 0)"
  pgbench -n -f "$dir/reserve.sql" -c "$2" -j 2 -T "$step" -r "$3" >"$dir/pgbench.out" 2>&1
  python3 - "$1" "$2" "$step" "$dir/pgbench.out" >>"$out.jsonl" <<'PY'
import json, re, sys
label, c, secs, path = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
text = open(path).read()
tps = float(re.search(r"tps = ([0-9.]+)", text).group(1))
lat = float(re.search(r"latency average = ([0-9.]+) ms", text).group(1))
print(json.dumps({"label": label, "concurrency": c, "seconds": secs, "orders": int(tps * secs),
                  "errors": 0, "orders_per_s": tps, "latency_p50_ms": lat, "latency_p99_ms": None,
                  "server_cpu_per_s": None, "generator_cpu_per_s": None, "note": "pgbench average latency"}))
PY
  tail -1 "$out.jsonl"
}

for backend in ${BACKENDS:-sqlite postgres}; do
  if [ "$backend" = sqlite ]; then
    url="sqlite://$dir/bench.db?mode=rwc"
  else
    psql_admin -c "DROP DATABASE IF EXISTS vitrine_bench" -c "CREATE DATABASE vitrine_bench"
    url="$pg_base/vitrine_bench"
  fi
  start_vitrine "$url"
  for r in $(seq 1 "$rounds"); do
    echo "== $backend round $r"
    pg_url=""; [ "$backend" = postgres ] && pg_url=$url
    for via in http chat; do
      before=$(snapshot "$pg_url"); lines=$(wc -l <"$out.jsonl" 2>/dev/null || echo 0)
      "$lt" checkout --via "$via" --label "$via-$backend" --server http://127.0.0.1:18081 --token "$token" \
        --server-pid "$vitrine_pid" --concurrency "$concurrency" --seconds "$step" --out "$out.jsonl"
      breakdown_row "$via-$backend" "$before" "$(snapshot "$pg_url")" "$lines"
    done
    "$lt" db-ceiling --label "raw-$backend" --url "$url" --concurrency "$concurrency" \
      --seconds "$step" --out "$out.jsonl"
    if [ "$backend" = postgres ]; then
      IFS=, read -ra cs <<<"$concurrency"
      for c in "${cs[@]}"; do pgbench_row "pgbench-postgres" "$c" "$url"; done
    fi
  done
  stop_vitrine
done
"$lt" chart --kind checkout --input "$out.jsonl" --png "$out.png" --subject http-sqlite
