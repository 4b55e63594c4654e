#!/usr/bin/env bash
# Installs the chat benchmark's peer, nginx with the Nchan pub/sub module, from Debian's
# packages, only when missing. The system nginx service is not used: run.sh starts a private
# instance under its own prefix.
set -euo pipefail
need=()
for pkg in nginx-light libnginx-mod-nchan; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  # A package install may start the system service; the benchmark does not want it.
  if [ -f /run/nginx.pid ]; then $SUDO nginx -s stop 2>/dev/null || true; fi
fi
