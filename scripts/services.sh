#!/usr/bin/env bash
# Makes PostgreSQL, Redis and a TURN server (coturn) available on loopback for the tests, as a
# new machine needs: installs Debian's packages where missing, starts the servers where not
# running, and creates the test role. Prints the environment the tests read;
# `scripts/services.sh stop` stops only what this script started (it records that under
# target/services/).
# Usage: eval "$(scripts/services.sh start)"; ...; scripts/services.sh stop
set -euo pipefail
cd "$(dirname "$0")/.."
state=target/services
mkdir -p "$state"
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
PG_ROLE=vitrine_test
PG_PASSWORD=vitrine_test
REDIS_PORT=6379
# coturn for the relay-only WebRTC test: its own port, a test-only shared secret.
TURN_PORT=3479
TURN_RELAY_PORTS=(49160 49259)
TURN_SECRET=vitrine-test-turn-secret
# An S3-compatible object store (moto's server, from the test tools' virtual environment that
# scripts/setup.sh installs): HLS origins share their media through it.
S3_PORT=5055
PYENV=${VITRINE_PYENV:-$HOME/.cache/vitrine/pyenv}

as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

start() {
  local need=()
  command -v pg_ctlcluster >/dev/null || need+=(postgresql)
  command -v redis-server >/dev/null || need+=(redis-server)
  command -v turnserver >/dev/null || need+=(coturn)
  # nginx: the load balancer in front of a cluster in the browser failover test.
  command -v nginx >/dev/null || need+=(nginx)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}" >&2
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi

  local version
  version=$(ls /etc/postgresql | sort -V | tail -1)
  if ! pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2
    echo "$version" > "$state/postgres-started"
  fi
  local port
  port=$(pg_lsclusters -h | awk -v v="$version" '$1 == v && $2 == "main" {print $3}')
  for _ in $(seq 1 50); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 0.2
  done
  as_postgres psql -q -p "$port" -v ON_ERROR_STOP=1 >/dev/null <<SQL
DO \$\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_ROLE') THEN
    CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
  END IF;
END \$\$;
SQL
  # Databases left by earlier test runs (each test creates its own, named vt_<random>).
  as_postgres psql -q -p "$port" -At -c \
    "SELECT datname FROM pg_database WHERE datname LIKE 'vt\_%'" | while read -r db; do
    as_postgres psql -q -p "$port" -c "DROP DATABASE IF EXISTS $db" >/dev/null
  done

  if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" \
      --appendonly no --pidfile "$PWD/$state/redis.pid" --logfile "$PWD/$state/redis.log" >&2
    touch "$state/redis-started"
    for _ in $(seq 1 50); do
      redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  fi

  start_turn
  start_s3

  echo "export VITRINE_TEST_POSTGRES_URL=postgres://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$port/postgres"
  echo "export VITRINE_TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT"
  echo "export VITRINE_TEST_TURN_URL='turn:127.0.0.1:$TURN_PORT?transport=udp'"
  echo "export VITRINE_TEST_TURN_SECRET_FILE=$PWD/$state/turn-secret"
  echo "export VITRINE_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT"
}

# moto in server mode on loopback (keeps objects in its process; each test makes its own bucket).
start_s3() {
  if curl -fs -o /dev/null "http://127.0.0.1:$S3_PORT/"; then
    return
  fi
  "$PYENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$state/s3.log" 2>&1 &
  echo $! > "$state/s3.pid"
  for _ in $(seq 1 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$S3_PORT/" && return
    sleep 0.1
  done
  echo "the S3 test server did not start: $(tail -5 "$state/s3.log")" >&2
  exit 1
}

# coturn on loopback with the TURN REST API secret. Loopback peers must be allowed: the test's
# server is on 127.0.0.1, which coturn refuses to relay to by default.
start_turn() {
  printf '%s\n' "$TURN_SECRET" > "$state/turn-secret"
  if [ -f "$state/turn.pid" ] && kill -0 "$(cat "$state/turn.pid")" 2>/dev/null; then
    return
  fi
  turnserver --daemon --listening-ip 127.0.0.1 --relay-ip 127.0.0.1 \
    --listening-port "$TURN_PORT" --min-port "${TURN_RELAY_PORTS[0]}" \
    --max-port "${TURN_RELAY_PORTS[1]}" --use-auth-secret --static-auth-secret "$TURN_SECRET" \
    --realm vitrine.test --allow-loopback-peers --fingerprint --no-tls --no-dtls --no-cli \
    --pidfile "$PWD/$state/turn.pid" >&2
  for _ in $(seq 1 50); do
    [ -s "$state/turn.pid" ] && { ! command -v ss >/dev/null || ss -lun | grep -q ":$TURN_PORT "; } && break
    sleep 0.1
  done
}

stop() {
  if [ -f "$state/s3.pid" ]; then
    kill "$(cat "$state/s3.pid")" 2>/dev/null || true
    rm -f "$state/s3.pid"
  fi
  if [ -f "$state/turn.pid" ]; then
    kill "$(cat "$state/turn.pid")" 2>/dev/null || true
    rm -f "$state/turn.pid"
  fi
  if [ -f "$state/redis-started" ]; then
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    rm -f "$state/redis-started"
  fi
  if [ -f "$state/postgres-started" ]; then
    $SUDO pg_ctlcluster --skip-systemctl-redirect "$(cat "$state/postgres-started")" main stop || true
    rm -f "$state/postgres-started"
  fi
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
