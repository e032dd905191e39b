#!/usr/bin/env bash
# Proves the runtime image's package list is complete without a Docker engine: debootstraps a
# minimal Debian 12 root (cached), prepares it with the Dockerfile's own runtime-setup.sh,
# copies this build's binaries in, and inside it (chroot) checks that every shared library
# resolves, runs `tmemd --version`, and starts tmemd as its unprivileged user on a file device
# with the root file system read-only (as the DaemonSet runs it),
# puts and gets a page through tmemctl and the health service, and stops it cleanly.
#   deploy/docker/check-runtime.sh        (root; downloads packages from the Debian mirror)
# Environment: TMEM_ROOTFS_CACHE (default /var/cache/tmem-rootfs), DEBIAN_MIRROR (runtime-root.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/docker/runtime-root.sh
runtime_root_init check-runtime
runtime_root_make
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
# The image's own configuration (the Dockerfile copies it there); only the size of the device
# file and the addresses are made local.
install -D -m 0644 deploy/k8s/base/tmemd.yaml "$ROOT/etc/tmem/tmemd.yaml"
# The Secret the DaemonSet mounts at /etc/tmem-tls, made here with the openssl CLI.
rm -rf "$WORK/certs" && scripts/make-certs.sh "$WORK/certs" client-1 2>/dev/null
install -d "$ROOT/etc/tmem-tls"
install -m 0440 -o 10001 -g 10001 "$WORK/certs/server.crt" "$ROOT/etc/tmem-tls/tls.crt"
install -m 0440 -o 10001 -g 10001 "$WORK/certs/server.key" "$ROOT/etc/tmem-tls/tls.key"
install -m 0440 -o 10001 -g 10001 "$WORK/certs/ca.crt" "$ROOT/etc/tmem-tls/ca.crt"
Q=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
chroot --userspec=10001:10001 "$RO" tmemd --config=/etc/tmem/tmemd.yaml --device-size=64M \
  --listen="127.0.0.1:$P" --plaintext-listen="127.0.0.1:$Q" --metrics-listen= --nbd-listen= 2> "$WORK/tmemd.log" &
D=$!
CTL="chroot --userspec=10001:10001 $RO tmemctl --server=127.0.0.1:$Q --timeout-ms=1000"
for _ in $(seq 100); do [ "$($CTL health 2>/dev/null)" = SERVING ] && break; sleep 0.1; done
[ "$($CTL health 2>&1)" = SERVING ] || { kill $D; cat "$WORK/tmemd.log"; fail "tmemd did not start in the runtime root"; }
pool=$($CTL create-pool --shared-uuid=00112233445566778899aabbccddeeff)
echo "a page from the runtime root" | $CTL put --pool="$pool" --object=o 2>/dev/null
got=$($CTL get --pool="$pool" --object=o 2>/dev/null | tr -d '\0')
[ "$got" = "a page from the runtime root" ] || fail "the page came back as '$got'"
kill -TERM $D
wait $D || { cat "$WORK/tmemd.log"; fail "tmemd did not stop cleanly"; }
grep -q "stopped cleanly" "$WORK/tmemd.log" || fail "no clean stop in the log"
step "ok   tmemd started with the image's configuration as uid 10001 on a read-only root, kept a page, answered the health check and stopped cleanly"
echo "check-runtime: passed ($(grep -vc '^#' deploy/docker/runtime-packages.txt) runtime packages)"
