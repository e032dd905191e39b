# Sourced by deploy/docker/check-runtime.sh and tests/deploy/systemd_lab.sh: makes the runtime
# image's root file system without a Docker engine. A minimal bookworm is debootstrapped once
# (cached in $TMEM_ROOTFS_CACHE, default /var/cache/tmem-rootfs) and copied for every run; the
# Dockerfile's own runtime-setup.sh prepares the copy; this build's binaries go to /usr/local/bin.
# Needs root and the Debian mirror ($DEBIAN_MIRROR). The caller is in the repository's root.
#
#   runtime_root_init NAME        WORK (a fresh directory), ROOT=$WORK/root, cleanup on exit
#   runtime_root_make [PKG...]    the root, with these packages beyond the runtime list
#   runtime_root_unbind           unmounts /proc, /dev and /dev/pts from the root

CACHE=${TMEM_ROOTFS_CACHE:-/var/cache/tmem-rootfs}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mounted=()

runtime_root_init() {
  STEP_NAME=$1
  [ "$(id -u)" -eq 0 ] || { echo "$STEP_NAME: run as root (debootstrap and chroot)"; exit 1; }
  WORK=$(mktemp -d "/var/tmp/tmem-$STEP_NAME.XXXXXX")
  ROOT="$WORK/root"
  trap runtime_root_cleanup EXIT
}

runtime_root_cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
  rm -rf "$WORK"
}

step() { echo "$STEP_NAME: $*"; }
source tests/testing/testlib.sh  # fail

runtime_root_make() {
  command -v debootstrap >/dev/null || {
    step "installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
  }
  scripts/setup.sh
  step "building tmemd, tmem-shimd and tmemctl"
  bazel build //server/main:tmemd //kshim/relay:tmem-shimd //client:tmemctl 2>&1 | tail -1
  if [ ! -x "$CACHE/bookworm/usr/bin/apt-get" ]; then
    step "debootstrap --variant=minbase bookworm (once, into $CACHE)"
    rm -rf "$CACHE/bookworm.tmp"
    mkdir -p "$CACHE"
    debootstrap --variant=minbase bookworm "$CACHE/bookworm.tmp" "$MIRROR" > "$CACHE/debootstrap.log" 2>&1 ||
      { tail -20 "$CACHE/debootstrap.log"; exit 1; }
    mv "$CACHE/bookworm.tmp" "$CACHE/bookworm"
  fi
  step "copying the base root"
  cp -a "$CACHE/bookworm" "$ROOT"
  # The same suites the build machine uses (bookworm, its updates and security fixes).
  cat > "$ROOT/etc/apt/sources.list" <<SOURCES
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
SOURCES
  cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
  for m in proc dev dev/pts; do
    mount --bind "/$m" "$ROOT/$m"
    mounted+=("$ROOT/$m")
  done
  step "runtime-setup.sh with deploy/docker/runtime-packages.txt${1:+ and $*}"
  cp deploy/docker/runtime-packages.txt deploy/docker/runtime-setup.sh "$ROOT/tmp/"
  for p in "$@"; do echo "$p" >> "$ROOT/tmp/runtime-packages.txt"; done
  chroot "$ROOT" sh /tmp/runtime-setup.sh /tmp/runtime-packages.txt
  rm "$ROOT/tmp/runtime-packages.txt" "$ROOT/tmp/runtime-setup.sh"
  install -m 0755 bazel-bin/server/main/tmemd bazel-bin/kshim/relay/tmem-shimd bazel-bin/client/tmemctl \
    "$ROOT/usr/local/bin/"
}

runtime_root_unbind() {
  for m in dev/pts dev proc; do umount "$ROOT/$m"; done
}
