#!/usr/bin/env bash
# bcc compiles its programs against the running kernel's headers at /lib/modules/$(uname -r)/build.
# Use the matching Debian/Ubuntu package when there is one; otherwise link the nearest
# linux-headers Debian has (tracepoint programs only need the stable uapi and the tracepoint
# formats, which the kernel describes itself in tracefs).  `labkit doctor` reports which.
set -euo pipefail
rel=$(uname -r)
mod=/lib/modules/$rel
if [ -e "$mod/build/Makefile" ]; then exit 0; fi
[ "$(id -u)" = 0 ] || { echo "kernel-headers: not root, leaving $mod/build alone" >&2; exit 0; }
export DEBIAN_FRONTEND=noninteractive
if apt-cache show "linux-headers-$rel" >/dev/null 2>&1; then
  apt-get install -y -qq "linux-headers-$rel" >/dev/null && exit 0
fi
arch=$(dpkg --print-architecture)
if ! ls -d /usr/src/linux-headers-*-"$arch" >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends "linux-headers-$arch" >/dev/null
fi
build=$(ls -d /usr/src/linux-headers-*-"$arch" | sort -V | tail -n 1)
common=${build%-"$arch"}-common
[ -d "$common" ] || common=$build
mkdir -p "$mod"
ln -sfn "$build" "$mod/build"
ln -sfn "$common" "$mod/source"
# A marker that labkit doctor reads: these headers are not the running kernel's own.
echo "$(basename "$build")" > "$mod/.labkit-nearest-headers"
echo "kernel-headers: no headers for $rel; linked nearest $(basename "$build")" >&2
