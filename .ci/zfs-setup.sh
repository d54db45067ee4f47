#!/usr/bin/env bash
# Real ZFS for the zfs storage plugin's integration tests, without a kernel
# module: installs zfs-fuse, starts its daemon, and makes a file-backed pool.
# Idempotent: run it again and it only checks. Needs root and /dev/fuse.
#
#   eval "$(.ci/zfs-setup.sh)"     # then: go test ./plugins/storage/zfs/...
#
# stdout carries only the export line; everything else goes to stderr.
# Settings (environment): DLS_ZFS_POOL (default dlsci), DLS_ZFS_IMAGE (the
# pool's backing file, default /var/tmp/dls-zfs.img), DLS_ZFS_SIZE (2G).
set -euo pipefail
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

pool="${DLS_ZFS_POOL:-dlsci}"
image="${DLS_ZFS_IMAGE:-/var/tmp/dls-zfs.img}"
size="${DLS_ZFS_SIZE:-2G}"
pidfile=/run/zfs-fuse.pid

log() { echo "zfs-setup: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (zfs-fuse needs /dev/fuse and mounts)"
[ -c /dev/fuse ] || die "/dev/fuse is missing: zfs-fuse cannot run here"

if ! [ -x /usr/sbin/zfs-fuse ] && ! [ -x /sbin/zfs-fuse ]; then
  log "installing zfs-fuse"
  export DEBIAN_FRONTEND=noninteractive
  # The package's service start is refused in containers (policy-rc.d):
  # the daemon is started below either way.
  if ! apt-get install -y -qq zfs-fuse >/dev/null 2>&1; then
    apt-get update -qq >&2
    apt-get install -y -qq zfs-fuse >/dev/null
  fi
fi

# zpool talks to the daemon over a socket: it answers once the daemon is up.
daemon_up() { (zpool list -H -o name) >/dev/null 2>&1; }

running() { [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

if ! daemon_up; then
  if running; then
    # Starting up, or shutting down: wait for it to answer or to exit.
    log "zfs-fuse (pid $(cat "$pidfile")) is running but does not answer yet; waiting"
    for _ in $(seq 1 150); do
      daemon_up || ! running && break
      sleep 0.2
    done
  fi
  if ! daemon_up; then
    # zfs-fuse refuses to start over a pid file left by a daemon that
    # stopped (it leaves one even after a clean SIGTERM).
    rm -f "$pidfile"
    # A daemon that died leaves its mounts behind ("Transport endpoint is
    # not connected"); the new one cannot mount over them.
    awk '$3 == "fuse.zfs" {print $2}' /proc/mounts | while read -r m; do
      log "unmounting $m, left by a zfs-fuse that stopped"
      umount -l "$m" || true
    done
    log "starting zfs-fuse"
    zfs-fuse --pidfile "$pidfile" >&2 || die "zfs-fuse did not start (exit status $?)"
    for _ in $(seq 1 100); do
      daemon_up && break
      sleep 0.2
    done
  fi
  daemon_up || die "zfs-fuse does not answer: zpool list: $(zpool list 2>&1 | head -1)"
fi

if zpool list -H -o name "$pool" >/dev/null 2>&1; then
  log "pool $pool is imported"
elif [ -f "$image" ] && zpool import -d "$(dirname "$image")" "$pool" >&2 2>/dev/null; then
  log "pool $pool imported from $image"
else
  [ -f "$image" ] && die "$image exists but holds no importable pool $pool; remove it to start over"
  log "creating pool $pool on $image ($size, sparse)"
  mkdir -p "$(dirname "$image")"
  truncate -s "$size" "$image"
  zpool create "$pool" "$image" >&2
fi

health="$(zpool list -H -o health "$pool")"
[ "$health" = ONLINE ] || die "pool $pool is $health"
echo "export DLS_ZFS_POOL=$pool"
