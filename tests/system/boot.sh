#!/usr/bin/env bash
# Boots systemd as PID 1 of its own PID, mount, UTS and cgroup namespaces in the Debian tree ROOT
# (tests/system/machine.py runs it under `unshare --fork --pid --mount --uts`). The network
# namespace is the host's: services inside reach, and answer on, the host's 127.0.0.1.
#
#   boot.sh ROOT CGROUP
#
# 1. Every cgroup hierarchy gets a fresh CGROUP for this machine (its systemd then makes its
#    slices there, not beside the host's or another machine's), then a cgroup namespace starts
#    at it; machine.py removes the folders after the machine is killed.
# 2. ROOT becomes a mount point and the root (pivot_root): under a plain chroot the units'
#    sandboxing fails with 226/NAMESPACE. /dev is a small tmpfs like a container manager's:
#    the harmless host nodes bound in, /dev/console onto /dev/null (nothing reaches the host's
#    console). systemd mounts /sys, /run and the cgroup file systems itself.
set -euo pipefail
root=$1 cgroup=$2

if [ "${BOOT_STAGE:-}" != inside ]; then
  while IFS=: read -r _ controllers path; do
    if [ -z "$controllers" ]; then
      base=/sys/fs/cgroup/unified
      [ -e "$base/cgroup.procs" ] || base=/sys/fs/cgroup
    else
      base=/sys/fs/cgroup/${controllers#name=}
    fi
    [ -d "$base" ] || continue
    dir="$base${path%/}/$cgroup"
    mkdir -p "$dir"
    if [ -e "$dir/cpuset.cpus" ]; then
      cat "$base${path%/}/cpuset.cpus" > "$dir/cpuset.cpus"
      cat "$base${path%/}/cpuset.mems" > "$dir/cpuset.mems"
    fi
    echo $$ > "$dir/cgroup.procs"
  done < /proc/self/cgroup
  BOOT_STAGE=inside exec unshare --cgroup "$0" "$@"
fi

mount --make-rprivate /
mount --bind "$root" "$root"
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=0755,nosuid,size=4m tmpfs "$root/dev"
for node in null zero full random urandom tty; do
  touch "$root/dev/$node"
  mount --bind "/dev/$node" "$root/dev/$node"
done
touch "$root/dev/console"
mount --bind /dev/null "$root/dev/console"
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
# What a container does not need or cannot run: consoles, sysctl (the network namespace and
# /proc/sys are the host's), logind and e2scrub (no seats, no LVM), apt's timers (no downloads
# behind the test's back), udev (no devices of its own), time sync (the host's clock).
for unit in getty@.service serial-getty@.service console-getty.service systemd-sysctl.service \
            systemd-logind.service e2scrub_all.timer e2scrub_reap.service apt-daily.timer \
            apt-daily-upgrade.timer systemd-udevd.service systemd-udev-trigger.service \
            systemd-timesyncd.service systemd-networkd-wait-online.service; do
  ln -sfn /dev/null "$root/etc/systemd/system/$unit"
done
cd "$root"
mkdir -p .host
pivot_root . .host
cd /
umount -l /.host
rmdir /.host
exec /usr/bin/env -i container=other PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  /lib/systemd/systemd --system --show-status=no --log-target=console
