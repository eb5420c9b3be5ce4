#!/usr/bin/env bash
# Install Debian's docker.io (the Docker CLI, and dockerd for the engine benchmark) WITHOUT
# starting its services: labkit's tests and benchmarks start dockerd themselves, only inside a
# network namespace they made.  A policy-rc.d that exits 101 tells invoke-rc.d that no
# service may start during this install (Debian Policy 9.3.3.1, invoke-rc.d(8)); it is removed
# afterwards unless it was there before.  systemd hosts: the unit is masked for this install
# with a runtime mask, then unmasked, so it stays as the admin had it.
set -euo pipefail
if command -v dockerd >/dev/null && command -v docker >/dev/null; then exit 0; fi
[ "$(id -u)" = 0 ] || { echo "install-docker-io: run as root" >&2; exit 1; }
policy=/usr/sbin/policy-rc.d
made=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 0755 "$policy"; made=1
fi
masked=()
if [ -d /run/systemd/system ]; then
  for u in docker.service docker.socket containerd.service; do
    systemctl is-enabled "$u" >/dev/null 2>&1 || { systemctl mask --runtime "$u" >/dev/null 2>&1 && masked+=("$u"); } || true
  done
fi
cleanup() {
  [ "$made" = 1 ] && rm -f "$policy"
  for u in "${masked[@]}"; do systemctl unmask --runtime "$u" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends docker.io >/dev/null \
  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker.io >/dev/null; }
