#!/usr/bin/env bash
# LL-HLS serving: a seller publishes from the studio page (headless Chromium, fake camera), the
# server transcodes it (the default ladder for the 640x480 camera: 480p + 360p), and N viewers
# each do what a low-latency player does: a blocking reload for the next part, then the part.
#   VIEWERS=0,100,300,1000  STEP_SECONDS=10  OUT=loadtest/results/hls  CACHE_VIEWERS=100,1000,3000
# The first step (0 viewers) is the transcoding baseline: the server CPU beyond it is serving.
# Then the same viewers go through a caching reverse proxy (nginx proxy_cache with
# proxy_cache_lock, a CDN's stand-in): the origin's own counters say how many part fetches and
# blocking reloads reached it per part it listed (about one per rendition, whatever the
# number of viewers, when the cache collapses them).
set -euo pipefail
cd "$(dirname "$0")/.."
viewers=${VIEWERS:-0,100,300,1000}
step=${STEP_SECONDS:-10}
out=${OUT:-loadtest/results/hls}
mkdir -p "$(dirname "$out")"
rm -f "$out.jsonl"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

scripts/setup.sh
# nginx, the caching proxy of the second half (Debian's package).
if ! command -v nginx >/dev/null; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx >/dev/null
fi
cargo build --release -p vitrine -p vitrine-loadtest
(cd tests-browser && npm ci --no-audit --no-fund >/dev/null)
source loadtest/lib.sh

target/release/vitrine serve --listen 127.0.0.1:18082 --data-dir "$dir" --demo >"$dir/vitrine.out" 2>"$dir/vitrine.log" &
pids+=($!)
vitrine_pid=$!
wait_healthy http://127.0.0.1:18082/healthz
for _ in $(seq 1 100); do grep -q "Studio (go live)" "$dir/vitrine.out" && break; sleep 0.1; done
studio=$(grep -o 'Studio (go live): *[^ ]*' "$dir/vitrine.out" | awk '{print $NF}')
master=$(grep -o 'HLS (live): *[^ ]*' "$dir/vitrine.out" | awk '{print $NF}')
node loadtest/publish.mjs "$studio" >"$dir/publish.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do grep -q live "$dir/publish.out" && break; sleep 0.1; done
# The master playlist answers once every rendition has a segment.
curl -sf --max-time 30 "$master" >/dev/null
target/release/vitrine-loadtest hls --master "$master" --viewers "$viewers" --seconds "$step" \
  --server-pid "$vitrine_pid" --out "$out.jsonl" --origin-metrics http://127.0.0.1:18082/metrics

# The caching proxy: it keeps what the origin marks cacheable (parts and segments for a year,
# blocking-reload answers for six target durations), and lets one request per object through
# while the others wait for it (proxy_cache_lock).
mkdir -p "$dir/nginx"
# Run as root, nginx's workers take an unprivileged user: they need to reach and write here.
chmod 755 "$dir"
chmod 777 "$dir/nginx"
cat >"$dir/nginx/nginx.conf" <<NGINX
worker_processes 2;
daemon off;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $dir/nginx/body;
  proxy_temp_path $dir/nginx/proxy;
  fastcgi_temp_path $dir/nginx/fastcgi;
  uwsgi_temp_path $dir/nginx/uwsgi;
  scgi_temp_path $dir/nginx/scgi;
  proxy_cache_path $dir/nginx/cache levels=1:2 keys_zone=hls:32m max_size=2g inactive=2m use_temp_path=off;
  upstream origin { server 127.0.0.1:18082; keepalive 64; }
  server {
    listen 127.0.0.1:18090;
    location / {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache hls;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 10s;
      proxy_cache_lock_age 10s;
      proxy_read_timeout 30s;
    }
  }
}
NGINX
nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -e stderr &
pids+=($!)
wait_healthy http://127.0.0.1:18090/healthz
cached_master=${master/127.0.0.1:18082/127.0.0.1:18090}
target/release/vitrine-loadtest hls --master "$cached_master" --viewers "${CACHE_VIEWERS:-100,1000,3000}" \
  --seconds "$step" --server-pid "$vitrine_pid" --label vitrine+cache --out "$out.jsonl" \
  --origin-metrics http://127.0.0.1:18082/metrics
# Frame-in to part-listed latency, from the server's own histogram.
curl -s http://127.0.0.1:18082/metrics | grep '^vitrine_hls_part_latency_seconds' >"$out-latency.txt" || true
target/release/vitrine-loadtest chart --kind hls --input "$out.jsonl" --png "$out.png"
