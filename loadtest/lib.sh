# Shared by the benchmark scripts (sourced, not run): a scratch folder, waiting for a server, a
# seller token, and stopping the processes a script started.

# Processes to stop at exit; scripts append the PIDs they start.
pids=()

stop_started() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

# The run's scratch folder. At exit the started processes are stopped, then `cleanup_extra`
# runs if the script defined one, then the folder is removed (KEEP=1 keeps it to look at).
dir=$(mktemp -d)
on_exit() {
  stop_started
  if declare -F cleanup_extra >/dev/null; then cleanup_extra; fi
  [ -n "${KEEP:-}" ] || rm -rf "$dir"
}
trap on_exit EXIT

# wait_healthy URL: waits up to 20 s for URL to answer with a 2xx.
wait_healthy() {
  for _ in $(seq 1 200); do
    curl -sf "$1" >/dev/null && return 0
    sleep 0.1
  done
  echo "no answer from $1" >&2
  return 1
}

# seller_token DATA_DIR [DATABASE_URL]: creates a seller and prints its API token.
seller_token() {
  target/release/vitrine sellers create --name loadtest --data-dir "$1" ${2:+--database-url "$2"} |
    python3 -c 'import sys, json; print(json.load(sys.stdin)["api_token"])'
}

# serve_whep PORT DATA_DIR [FLAGS...]: starts the release Vitrine for a WHEP fan-out on loopback
# (every simulated viewer comes from 127.0.0.1, so the per-address limit on pending viewers is
# lifted), waits until it answers, and sets served_pid. Its log is DATA_DIR/vitrine.log.
serve_whep() {
  local port=$1 data=$2
  shift 2
  mkdir -p "$data"
  target/release/vitrine serve --listen "127.0.0.1:$port" --data-dir "$data" --ice-bind 127.0.0.1 \
    --whep-pending-per-ip 100000 "$@" >"$data/vitrine.log" 2>&1 &
  served_pid=$!
  pids+=("$served_pid")
  wait_healthy "http://127.0.0.1:$port/healthz"
}
