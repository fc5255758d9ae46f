#!/usr/bin/env bash
# Builds (once) a Debian bookworm tree with systemd for the system tier and prints the path of
# its tarball: ~/.cache/pi-crawler/rootfs-bookworm-ARCH-HASH.tar.gz, where HASH covers the
# suite, the architecture, the package list and TREE_VERSION (raise it when a change to how
# the tree is made must build a new one). debootstrap from Debian's mirror
# (~75 s and ~300 MB for amd64); the tarball is ~100 MB and unpacks in seconds.
#
#   tests/system/rootfs.sh [amd64|arm64|armhf]
#
# Most packages deploy/install wants (python3-venv, libpq5, prometheus-node-exporter) are in
# the tree already, as on a Pi that has them; curl is left out, so the install adds a package
# of its own (and `deploy/uninstall --purge` must remove it, and only it). procps for the
# tests' `ps`. A foreign ARCH is built with `debootstrap --foreign` and finished under
# qemu-user-static (binfmt_misc).
set -euo pipefail
ARCH="${1:-$(dpkg --print-architecture)}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES=systemd,systemd-sysv,dbus,python3,python3-venv,ca-certificates,libpq5,prometheus-node-exporter,procps
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/pi-crawler"
TREE_VERSION=1
hash="$(printf '%s %s %s %s' "$SUITE" "$ARCH" "$PACKAGES" "$TREE_VERSION" | sha256sum | cut -c1-12)"
tarball="$CACHE/rootfs-$SUITE-$ARCH-$hash.tar.gz"
if [ -s "$tarball" ]; then
  echo "$tarball"
  exit 0
fi
mkdir -p "$CACHE"
work="$(mktemp -d "$CACHE/build.XXXXXX")"
trap 'rm -rf "$work"' EXIT
tree="$work/tree"
foreign=()
if [ "$ARCH" != "$(dpkg --print-architecture)" ]; then
  foreign=(--foreign)
  [ -e /proc/sys/fs/binfmt_misc/status ] ||
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable >/dev/null 2>&1 || true
fi
start=$SECONDS
# --variant=minbase: no standard-priority extras; the included packages pull what they need.
debootstrap --variant=minbase --arch="$ARCH" "${foreign[@]}" --include="$PACKAGES" \
  "$SUITE" "$tree" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
  { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
if [ ${#foreign[@]} -gt 0 ]; then
  # The second stage runs the tree's own binaries: qemu-user-static through binfmt_misc (its
  # F flag opens the interpreter at registration, so no copy of it is needed in the tree).
  # In a mount namespace of its own: the /proc and /sys it mounts go with it, even on failure.
  unshare --mount --propagation private chroot "$tree" /debootstrap/debootstrap --second-stage >>"$work/debootstrap.log" 2>&1 ||
    { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
fi
echo "debootstrap $ARCH: $((SECONDS - start)) s" >&2
rm -rf "$tree"/var/cache/apt/archives/*.deb "$tree"/var/lib/apt/lists/*
tar -C "$tree" --numeric-owner -czf "$tarball.tmp" .
mv "$tarball.tmp" "$tarball"
echo "$tarball"
