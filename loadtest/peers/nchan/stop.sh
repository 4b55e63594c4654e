#!/usr/bin/env bash
# Stops the private nginx started by run.sh under PREFIX.
set -euo pipefail
prefix=${1:?usage: stop.sh PREFIX}
[ -f "$prefix/nginx.pid" ] || exit 0
nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log" -s quit
