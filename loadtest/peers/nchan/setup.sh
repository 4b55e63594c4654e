#!/usr/bin/env bash
# Installs the chat benchmark's peer, nginx with the Nchan pub/sub module, from Debian's
# packages (nginx-light, libnginx-mod-nchan), and only the ones that are missing: a second run
# does nothing. The system nginx service is never wanted: run.sh starts a private instance under
# its own prefix, on its own port. So the install runs with services barred from starting, and
# if the system nginx comes up anyway it is stopped again (port 80 is left as it was).
#   setup.sh
set -euo pipefail

pkgs=(nginx-light libnginx-mod-nchan)
need=()
for pkg in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

# Is the system nginx (Debian's /etc/nginx/nginx.conf, pid in /run/nginx.pid) running already?
# If it is, it is someone else's and stays as it is; if not, it must not be running afterwards.
system_nginx_running() {
  [ -s /run/nginx.pid ] && $SUDO kill -0 "$(cat /run/nginx.pid)" 2>/dev/null
}
was_running=no
system_nginx_running && was_running=yes

# Debian's policy-rc.d hook: exit status 101 tells invoke-rc.d (and so the packages' maintainer
# scripts) not to start services. Containers often ship one already; if there is none, put one
# in place for the install only. Without it, nginx's postinst starts the service on port 80, and
# fails the install when port 80 is taken.
policy=/usr/sbin/policy-rc.d
ours=no
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# Temporary, from loadtest/peers/nchan/setup.sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  ours=yes
fi
cleanup() { if [ "$ours" = yes ]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT

$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

# Belt and braces: if the install started the system nginx anyway (e.g. a systemd unit), stop it.
if [ "$was_running" = no ] && system_nginx_running; then
  $SUDO nginx -s stop 2>/dev/null || $SUDO kill "$(cat /run/nginx.pid)" 2>/dev/null || true
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    $SUDO systemctl stop nginx 2>/dev/null || true
  fi
fi
