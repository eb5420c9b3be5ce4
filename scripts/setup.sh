#!/usr/bin/env bash
# Bring a fresh Debian 12 / Ubuntu 22.04+ machine to a working labkit: Debian packages,
# kernel headers for bcc, the virtualenv (.venv) with labkit installed editable, bcc
# visible inside it, and the Jupyter kernel.  Idempotent: a second run only checks, in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
TOP=$PWD
VENV=${LABKIT_VENV:-$TOP/.venv}
say() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }

# --- Debian packages -------------------------------------------------------------------
mapfile -t want < <(grep -Ev '^\s*(#|$)' scripts/debian-packages.txt scripts/debian-packages-*.txt 2>/dev/null | sed 's/^[^:]*://' | awk '{print $1}')
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages (${missing[*]}); run as root to install them" >&2; exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Some of these packages ship a service (docker-registry listens on :5000, rsyslog): no
  # service may start during the install (policy-rc.d exits 101: Debian Policy 9.3.3.1,
  # invoke-rc.d(8)); labkit's tests start their own instances on loopback or in a netns.
  policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 0755 "$policy"; made_policy=1; fi
  apt-get update -qq
  rc=0; apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
  [ "$made_policy" = 1 ] && rm -f "$policy"
  [ "$rc" = 0 ] || { echo "setup: apt-get install failed ($rc)" >&2; exit "$rc"; }
fi

# --- the Docker CLI -------------------------------------------------------------------
# The real Docker CLI is one of labkit's test clients (tests/blackbox, notebook 04).  Where a
# machine has none on PATH, Debian's docker.io brings it; its daemon is not started.
command -v docker >/dev/null || { say "installing the Docker CLI (docker.io, daemon not started)"; labkit/measure/install-docker-io.sh; }

# --- kernel headers for bcc ------------------------------------------------------------
scripts/kernel-headers.sh

# --- virtualenv ------------------------------------------------------------------------
stamp="$VENV/.labkit-stamp"
want_stamp=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want_stamp" ]; then
  say "building the virtualenv at $VENV"
  [ -x "$VENV/bin/python" ] || /usr/bin/python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # editable_mode=compat installs a plain path .pth; the default (a finder module) makes
  # every interpreter start import pathlib, re and importlib.util: ~12 ms on each labkit and
  # labkit-runtime command, more than half of runc's whole start-to-exit time.
  "$VENV/bin/python" -m pip install -q -e ".[lab,dev]" --config-settings editable_mode=compat
  # bcc is not on PyPI (the PyPI package named bcc is unrelated): link Debian's build in,
  # and only it, rather than exposing all of dist-packages with --system-site-packages.
  site=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  ln -sfn /usr/lib/python3/dist-packages/bcc "$site/bcc"
  "$VENV/bin/python" -m ipykernel install --sys-prefix --name labkit --display-name "labkit (Python 3)" >/dev/null
  echo "$want_stamp" > "$stamp"
fi
# Compile labkit's bytecode now: where PYTHONDONTWRITEBYTECODE is set (as on these machines)
# imports never write .pyc, and every labkit-runtime start would recompile labkit (~20 ms).
"$VENV/bin/python" -m compileall -q labkit >/dev/null
say "ready: $("$VENV/bin/python" -c 'import labkit, sys; print("labkit", labkit.__version__, "on Python", sys.version.split()[0])')"
