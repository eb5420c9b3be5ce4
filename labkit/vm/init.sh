#!/bin/sh
# PID 1 of labkit's test VM (kernel cmdline init=/usr/local/sbin/labkit-init).  No systemd:
# it would cost seconds of boot under TCG, and the tests want the kernel, not the distro.
# tini reaps orphans (a shell script as PID 1 would leave zombies); we re-exec under it.
if [ "$$" = 1 ]; then exec /usr/bin/tini -s -g -- "$0" "$@"; fi
export PATH=/opt/labkit/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mnt() { mountpoint -q "$3" || mount -t "$1" "$2" "$3" ${4:+-o "$4"}; }
mnt proc proc /proc
mnt sysfs sys /sys
mnt devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm /run /tmp /sys/fs/cgroup /mnt/labkit
mnt devpts devpts /dev/pts
mnt tmpfs shm /dev/shm
mnt tmpfs run /run
mnt tmpfs tmp /tmp
# cgroup v2 only (the unified hierarchy), every controller delegated from the root:
# Documentation/admin-guide/cgroup-v2.rst, "Enabling and Disabling".
mnt cgroup2 cgroup2 /sys/fs/cgroup nsdelegate
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
  echo "+$c" > /sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || true
done
mnt tracefs tracefs /sys/kernel/tracing
mnt debugfs debugfs /sys/kernel/debug
mnt bpf bpf /sys/fs/bpf
[ -d /sys/kernel/config ] && mnt configfs configfs /sys/kernel/config
hostname labkit-vm
ip link set lo up
# Modules the labs expect to find in /proc/filesystems or ready to use (the kernel would
# autoload most on first use; labkit doctor reads what is there now).
for m in virtio_console overlay veth bridge macvlan ipvlan vxlan; do modprobe -q "$m" || true; done
modprobe -q 9pnet_virtio || true
modprobe -q 9p || true
# The repo (mount tag "labkit"), shared read-write from the host over virtio-9p.
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288,cache=mmap labkit /mnt/labkit \
  || echo "labkit-init: no repo share" > /dev/console
echo "labkit-init: ready $(uname -r)" > /dev/console
case " $(cat /proc/cmdline) " in
  *" labkit.shell=1 "*)
    /opt/labkit/venv/bin/python3 /usr/local/lib/labkit/agent.py 2>/dev/null &
    cd /mnt/labkit 2>/dev/null || cd /
    setsid -c /bin/bash -l </dev/ttyS0 >/dev/ttyS0 2>&1 ;;
  *) /opt/labkit/venv/bin/python3 /usr/local/lib/labkit/agent.py ;;
esac
sync
# sysrq "o" powers off asynchronously: wait for it here, or PID 1 would exit first and the
# kernel would panic ("Attempted to kill init") on the way down.  sleep starts first: once
# the disk is going away, no new binary can be read from it.
sleep 30 &
echo o > /proc/sysrq-trigger
wait
