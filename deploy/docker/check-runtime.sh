#!/usr/bin/env bash
# Proves the runtime image's package list is complete without a Docker engine: debootstraps a
# minimal Debian 12 root (cached), prepares it with the Dockerfile's own runtime-setup.sh,
# copies this build's binaries in, and inside it (chroot) checks that every shared library
# resolves, runs `tmemd --version`, and starts tmemd as its unprivileged user on a file device
# with the root file system read-only (as the DaemonSet runs it),
# puts and gets a page through tmemctl and the health service, and stops it cleanly.
#   deploy/docker/check-runtime.sh        (root; downloads packages from the Debian mirror)
# Environment: TMEM_ROOTFS_CACHE (default /var/cache/tmem-rootfs), DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "check-runtime: run as root (debootstrap and chroot)"; exit 1; }
CACHE=${TMEM_ROOTFS_CACHE:-/var/cache/tmem-rootfs}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORK=$(mktemp -d /var/tmp/tmem-runtime.XXXXXX)
ROOT="$WORK/root"
mounted=()
cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[$i]}" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { echo "check-runtime: $*"; }
command -v debootstrap >/dev/null || {
  step "installing debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
}
scripts/setup.sh
step "building tmemd, tmem-shimd and tmemctl"
bazel build //server/main:tmemd //kshim/relay:tmem-shimd //client:tmemctl 2>&1 | tail -1

# A minimal bookworm, made once and copied for every run, so each run starts from the base.
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
cat > "$ROOT/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
EOF
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
for m in proc dev dev/pts; do
  mount --bind "/$m" "$ROOT/$m"
  mounted+=("$ROOT/$m")
done

step "runtime-setup.sh with deploy/docker/runtime-packages.txt"
cp deploy/docker/runtime-packages.txt deploy/docker/runtime-setup.sh "$ROOT/tmp/"
chroot "$ROOT" sh /tmp/runtime-setup.sh /tmp/runtime-packages.txt
install -m 0755 bazel-bin/server/main/tmemd bazel-bin/kshim/relay/tmem-shimd bazel-bin/client/tmemctl \
  "$ROOT/usr/local/bin/"

fail() { echo "check-runtime: FAIL $*"; exit 1; }
for b in tmemd tmem-shimd tmemctl; do
  missing=$(chroot "$ROOT" ldd "/usr/local/bin/$b" | grep "not found" || true)
  [ -z "$missing" ] || fail "$b: libraries missing from the runtime packages:
$missing"
done
step "ok   every shared library of the three binaries resolves"
for tool in g++ gcc bazel protoc; do
  ! chroot "$ROOT" sh -c "command -v $tool" >/dev/null || fail "the runtime root holds build tool $tool"
done
step "ok   no build tools in the runtime root"
chroot "$ROOT" modprobe --version >/dev/null || fail "modprobe (kmod) is missing"
v=$(chroot --userspec=10001:10001 "$ROOT" tmemd --version) || fail "tmemd --version"
step "ok   $v"
chroot "$ROOT" tmem-shimd --version >/dev/null || fail "tmem-shimd --version"

# A short start and stop as the image's user, as the DaemonSet runs it: the root file system
# read-only (readOnlyRootFilesystem) but for /var/lib/tmem (the hostPath volume).
RO="$WORK/ro"
mkdir -p "$RO"
mount --bind "$ROOT" "$RO" && mounted+=("$RO")
mount -o remount,bind,ro "$RO"
for m in var/lib/tmem proc dev dev/pts; do
  mount --bind "$ROOT/$m" "$RO/$m" 2>/dev/null || mount --bind "/$m" "$RO/$m"
  mounted+=("$RO/$m")
done
! chroot "$RO" touch /etc/probe 2>/dev/null || fail "the root is not read-only"
P=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chroot --userspec=10001:10001 "$RO" tmemd --device=/var/lib/tmem/cache.img --device-size=64M \
  --listen="127.0.0.1:$P" --metrics-listen= 2> "$WORK/tmemd.log" &
D=$!
CTL="chroot --userspec=10001:10001 $RO tmemctl --server=127.0.0.1:$P --timeout-ms=1000"
for _ in $(seq 100); do [ "$($CTL health 2>/dev/null)" = SERVING ] && break; sleep 0.1; done
[ "$($CTL health 2>&1)" = SERVING ] || { kill $D; cat "$WORK/tmemd.log"; fail "tmemd did not start in the runtime root"; }
pool=$($CTL create-pool --shared-uuid=00112233445566778899aabbccddeeff)
echo "a page from the runtime root" | $CTL put --pool="$pool" --object=o 2>/dev/null
got=$($CTL get --pool="$pool" --object=o 2>/dev/null | tr -d '\0')
[ "$got" = "a page from the runtime root" ] || fail "the page came back as '$got'"
kill -TERM $D
wait $D || { cat "$WORK/tmemd.log"; fail "tmemd did not stop cleanly"; }
grep -q "stopped cleanly" "$WORK/tmemd.log" || fail "no clean stop in the log"
step "ok   tmemd started as uid 10001 on a read-only root, kept a page, answered the health check and stopped cleanly"
echo "check-runtime: passed ($(grep -vc '^#' deploy/docker/runtime-packages.txt) runtime packages)"
