#!/usr/bin/env bash
# Starts a private nginx + Nchan on 127.0.0.1:PORT under PREFIX (daemonised; pid in
# PREFIX/nginx.pid), configured as the benchmarks file describes: 2 workers, reuseport, a large
# keepalive_requests (the default 1000 would close a pipelining publisher), raised file limits.
#   run.sh PORT PREFIX
# Publish: POST /pub/{channel} (HTTP) or a websocket to /pub/{channel}; subscribe: a websocket to
# /sub/{channel}, which receives each message body as one text frame.
set -euo pipefail
port=${1:?usage: run.sh PORT PREFIX}
prefix=${2:?usage: run.sh PORT PREFIX}
mkdir -p "$prefix/logs" "$prefix/tmp"
module=/usr/lib/nginx/modules/ngx_nchan_module.so
cat >"$prefix/nginx.conf" <<CONF
load_module $module;
worker_processes 2;
worker_rlimit_nofile 65536;
pid $prefix/nginx.pid;
error_log $prefix/logs/error.log warn;
events { worker_connections 32768; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $prefix/tmp/body;
  proxy_temp_path $prefix/tmp/proxy;
  fastcgi_temp_path $prefix/tmp/fastcgi;
  uwsgi_temp_path $prefix/tmp/uwsgi;
  scgi_temp_path $prefix/tmp/scgi;
  # Messages kept per channel (like Vitrine's room log, for late subscribers and resume).
  nchan_message_buffer_length 1000;
  server {
    listen 127.0.0.1:$port reuseport;
    location ~ ^/pub/(\w+)$ { nchan_publisher http websocket; nchan_channel_id \$1; }
    location ~ ^/sub/(\w+)$ { nchan_subscriber websocket; nchan_channel_id \$1; }
    location = /healthz { return 200 "ok"; }
  }
}
CONF
nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log"
for _ in $(seq 1 50); do
  curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && exit 0
  sleep 0.1
done
echo "nchan peer did not start; see $prefix/logs/error.log" >&2
exit 1
