#!/usr/bin/env bash
# The kernel lab: tmem_shim.ko in a real Linux 5.10 kernel (CONFIG_CLEANCACHE=y) under QEMU,
# with tmemd and tmem-shimd running inside the guest, checked end to end.
#
#   tests/kshim/lab.sh            build what is missing, boot, run the checks, print PASS/FAIL
#   tests/kshim/lab.sh shell      boot to a shell on the serial console (Ctrl-a x quits)
#
# env: GUEST_MB (guest RAM, default 192), FILE_MB (test file, default 2 x GUEST_MB),
#      TMEM_KLAB_DIR (kernel cache, default /var/cache/tmem-kernlab),
#      TMEM_KLAB_RUN (this run's files, default /var/tmp/tmem-klab)
#
# Everything comes from Debian packages (tests/kshim/kernel.sh fetches linux-source-5.10 from
# bullseye through a private apt configuration). QEMU runs with TCG: /dev/kvm on these hosts
# cannot run this guest. The guest has no network device; its root is the host's / shared
# read-only over 9p (5.10 mounts a 9p root by the tag "/dev/root"), this run's directory is
# shared read-write, and its disks are sparse files:
#   vda  ext4 (4 KiB blocks: ext4 asks cleancache only when block size == page size)
#   vdb  tmemd's page device        vdc  ext4 for tmemd's index      vdd  the NBD export
# Exit status: 0 when every check passed.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
MODE=${1:-run}
GUEST_MB=${GUEST_MB:-192}
FILE_MB=${FILE_MB:-$((2 * GUEST_MB))}
RUN=${TMEM_KLAB_RUN:-/var/tmp/tmem-klab}
log() { echo "lab.sh: $*" >&2; }

KSRC=$(tests/kshim/kernel.sh)
log "kernel: $KSRC/arch/x86/boot/bzImage"
bazel build //server/main:tmemd //kshim/relay:tmem-shimd //kshim/core:print_stats >&2
rm -rf "$RUN"
mkdir -p "$RUN/bin" "$RUN/mod" "$RUN/deploy"
cp -L bazel-bin/server/main/tmemd bazel-bin/kshim/relay/tmem-shimd "$RUN/bin/"
# For the guest's check that the dashboard and the alerts read only what the real module and
# relay export, and that the module prints the core's stats table.
cp tests/deploy/promql_names.py deploy/prometheus/tmem-rules.yml deploy/grafana/tmem.json "$RUN/deploy/"
bazel-bin/kshim/core/print_stats > "$RUN/deploy/core-stats.txt"
kshim/module/build.sh "$KSRC" "$RUN/mod" >&2

# Test data and the digests the guest must see: the big file (its first MID_MB MiB are the
# smaller file), a 4 MiB patch written into the smaller file at MID_PATCH_OFF_MB.
MID_MB=48
MID_PATCH_OFF_MB=16
head -c $((FILE_MB << 20)) /dev/urandom > "$RUN/data.bin"
head -c $((4 << 20)) /dev/urandom > "$RUN/patch.bin"
python3 - "$RUN" "$MID_MB" "$MID_PATCH_OFF_MB" <<'PY'
import hashlib, sys
run, mid, off = sys.argv[1], int(sys.argv[2]) << 20, int(sys.argv[3]) << 20
patch = open(f"{run}/patch.bin", "rb").read()
whole = hashlib.sha256()
with open(f"{run}/data.bin", "rb") as f:
    while chunk := f.read(1 << 20):
        whole.update(chunk)
with open(f"{run}/data.bin", "rb") as f:
    head = f.read(mid)
patched = head[:off] + patch + head[off + len(patch):]
with open(f"{run}/sums.env", "w") as out:
    out.write(f"SHA_ORIG={whole.hexdigest()}\nSHA_MID={hashlib.sha256(head).hexdigest()}\n"
              f"SHA_MID_PATCHED={hashlib.sha256(patched).hexdigest()}\n")
PY
cat > "$RUN/msum.py" <<'PY'
# msum.py PORT NAME [label=value ...]: the sum of a metric's samples on 127.0.0.1:PORT/metrics
import re, sys, urllib.request
port, name, want = sys.argv[1], sys.argv[2], dict(a.split("=", 1) for a in sys.argv[3:])
try:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
except Exception:
    print(-1); sys.exit(0)
total = 0.0
for line in text.splitlines():
    m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$', line)
    if not m or m.group(1) != name:
        continue
    labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(3) or ""))
    if all(labels.get(k) == v for k, v in want.items()):
        total += float(m.group(4))
print(int(total))
PY
cat > "$RUN/lab.env" <<EOF
RUN=$RUN
FILE_MB=$FILE_MB
GUEST_MB=$GUEST_MB
MID_MB=$MID_MB
MID_PATCH_OFF_MB=$MID_PATCH_OFF_MB
LABMODE=$MODE
LAB_DEBUG=${LAB_DEBUG:-0}
EOF
cat "$RUN/sums.env" >> "$RUN/lab.env"
cp tests/kshim/guest.sh "$RUN/guest.sh"
chmod 755 "$RUN/guest.sh"
truncate -s $((FILE_MB * 2 + 512))M "$RUN/vda.img"
truncate -s $((FILE_MB * 2 + 1024))M "$RUN/vdb.img"
truncate -s 512M "$RUN/vdc.img"
truncate -s 128M "$RUN/vdd.img"

log "booting Linux 5.10 under QEMU (TCG, ${GUEST_MB} MiB RAM, ${FILE_MB} MiB test file)"
drives=()
for d in vda vdb vdc vdd; do drives+=(-drive "file=$RUN/$d.img,if=virtio,format=raw,cache=unsafe"); done
qemu=(qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m "$GUEST_MB" -nographic -no-reboot -nic none
  -kernel "$KSRC/arch/x86/boot/bzImage"
  -append "console=ttyS0 root=/dev/root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=65536,cache=loose ro init=$RUN/guest.sh panic=1 labrun=$RUN"
  -fsdev "local,id=rootfs,path=/,security_model=none,readonly=on,multidevs=remap"
  -device "virtio-9p-pci,fsdev=rootfs,mount_tag=/dev/root"
  -fsdev "local,id=labfs,path=$RUN,security_model=none,multidevs=remap"
  -device "virtio-9p-pci,fsdev=labfs,mount_tag=lab"
  -device virtio-rng-pci "${drives[@]}")
if [ "$MODE" = shell ]; then
  exec "${qemu[@]}"
fi
# --foreground: a plain timeout makes its own process group, and killing it would leave QEMU.
set +e
timeout --foreground 3600 "${qemu[@]}" < /dev/null > "$RUN/console.log" 2>&1
rc=$?
set -e
grep -E '^(PASS|FAIL|BENCH|INFO) ' "$RUN/results.txt" 2>/dev/null || true
passed=$(grep -c '^PASS ' "$RUN/results.txt" 2>/dev/null || true)
failed=$(grep -c '^FAIL ' "$RUN/results.txt" 2>/dev/null || true)
if ! grep -q '^DONE' "$RUN/results.txt" 2>/dev/null; then
  log "the guest did not finish (qemu exit $rc); console: $RUN/console.log"
  tail -30 "$RUN/console.log" >&2
  failed=$((failed + 1))
fi
echo "lab: ${passed:-0} passed, ${failed:-0} failed"
[ "${failed:-0}" = 0 ]
