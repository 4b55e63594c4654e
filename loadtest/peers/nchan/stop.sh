#!/usr/bin/env bash
# Stops the private nginx that run.sh started under PREFIX: a graceful quit (open websockets are
# closed after worker_shutdown_timeout, 5 s), then SIGTERM, then SIGKILL if it still runs.
# Returns once the master and its workers are gone. Nothing running under PREFIX: does nothing.
#   stop.sh PREFIX
set -euo pipefail
prefix=${1:?usage: stop.sh PREFIX}
pidfile="$prefix/nginx.pid"
[ -s "$pidfile" ] || exit 0
pid=$(cat "$pidfile")
kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; exit 0; }
workers=$(pgrep -P "$pid" || true)

# gone: true when the master and every worker have exited.
gone() {
  local p
  for p in "$pid" $workers; do kill -0 "$p" 2>/dev/null && return 1; done
  return 0
}
# wait_gone SECONDS
wait_gone() {
  local i
  for i in $(seq 1 $(($1 * 10))); do gone && return 0; sleep 0.1; done
  gone
}

# Graceful quit through nginx itself (same prefix and configuration), or the signal directly.
nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log" -s quit 2>/dev/null ||
  kill -QUIT "$pid" 2>/dev/null || true
wait_gone 8 && exit 0
kill -TERM "$pid" 2>/dev/null || true
wait_gone 3 && exit 0
for p in "$pid" $workers; do kill -KILL "$p" 2>/dev/null || true; done
if ! wait_gone 2; then echo "nginx under $prefix (pid $pid) did not stop" >&2; exit 1; fi
rm -f "$pidfile"
