#!/bin/sh
# Runs INSIDE the freshly debootstrapped Debian 12 root (chroot, private mount namespace) to
# turn it into labkit's test VM: the generic kernel (it has 9p, ipvlan, kprobes, BPF, BTF),
# headers for that exact kernel (bcc compiles against /lib/modules/$(uname -r)/build), bcc,
# tini as PID 1, and a venv with labkit's Python dependencies.  labkit itself is NOT
# installed: the VM imports it from the repo shared over 9p, so it is always the host's code.
# Arguments: $1 = space-separated Python requirements (from pyproject.toml), whose wheels
# the host downloaded into /tmp/wheels; $2 = the Debian packages every labkit host gets
# (scripts/debian-packages.txt: runc, crun, nftables, bcc tools, ...).
set -eu
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8
step() { echo "### $*"; }

# Keep the initrd small (fast to unpack under TCG): only what finds the root disk.
# initramfs-tools(7): MODULES=list takes /etc/initramfs-tools/modules and their deps.
mkdir -p /etc/initramfs-tools/conf.d
echo "MODULES=list" > /etc/initramfs-tools/conf.d/labkit
printf '%s\n' virtio_pci virtio_blk ext4 crc32c_generic > /etc/initramfs-tools/modules

step packages
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  linux-image-amd64 linux-headers-amd64 initramfs-tools \
  python3 python3-venv python3-bpfcc libbpfcc \
  tini kmod iproute2 procps psmisc util-linux busybox-static e2fsprogs ca-certificates \
  make $2 >/dev/null

step venv
python3 -m venv --system-site-packages /opt/labkit/venv
/opt/labkit/venv/bin/pip install -q --disable-pip-version-check --no-cache-dir \
  --no-index --find-links /tmp/wheels $1
rm -rf /tmp/wheels

step trim
apt-get clean
rm -rf /var/lib/apt/lists/* /usr/share/doc/* /usr/share/man/* /usr/share/locale/*
# The headers must match the installed kernel exactly, or bcc refuses to compile.
kver=$(ls /lib/modules | sort -V | tail -n 1)
test -e "/lib/modules/$kver/build/Makefile"
echo "$kver" > /etc/labkit-kernel
echo labkit-vm > /etc/hostname
printf '127.0.0.1\tlocalhost labkit-vm\n' > /etc/hosts
step done
