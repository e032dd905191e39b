#!/usr/bin/env bash
# tmemd's NBD exports driven by Debian's real NBD clients: nbdinfo, nbdcopy, nbdsh (python
# libnbd), qemu-img, qemu-io and fio's nbd engine, over TCP and the unix socket.
set -uo pipefail
source "$TEST_SRCDIR/tmem/tests/testing/testlib.sh"
TMEMD="$R/server/main/tmemd"
CTL="$R/client/tmemctl"
export PATH="/usr/bin:$PATH"
GP=$(port); NP=$(port); MP=$(port)
SOCKDIR=$(mktemp -d /tmp/tmem-nbd.XXXXXX)   # unix socket paths have at most 107 bytes
SOCK="$SOCKDIR/nbd.sock"

head -c 16M /dev/urandom > "$T/ro.img"
cat > "$T/tmemd.yaml" <<YAML
device:
  path: $T/cache.img
  size: 256M
listen: 127.0.0.1:$GP
metrics_listen: 127.0.0.1:$MP
nbd:
  listen: 127.0.0.1:$NP
  unix_socket: $SOCK
exports:
  - name: disk0
    backend: $T/disk0.img
    size: 64M
    description: scratch disk for the client tests
  - name: golden
    backend: file:$T/ro.img
    read_only: true
    description: read-only image
YAML
start_tmemd --config="$T/tmemd.yaml"
trap 'kill -KILL $D 2>/dev/null; rm -rf "$SOCKDIR"' EXIT
wait_nbd "nbd://127.0.0.1:$NP/disk0" $D "$T/tmemd.log"
U="nbd://127.0.0.1:$NP/disk0"

# nbdinfo: size, flags, block sizes; --list shows both exports with their descriptions.
nbdinfo "$U" > "$T/info" 2>&1
grep -q "export-size: 67108864" "$T/info" && grep -q "can_multi_conn: true" "$T/info" && grep -q "can_fua: true" "$T/info" \
  && grep -q "block_size_maximum: 33554432" "$T/info" && grep -q "using structured" "$T/info" \
  && ok "nbdinfo" || bad "nbdinfo: $(cat "$T/info")"
nbdinfo --list "nbd://127.0.0.1:$NP" > "$T/list" 2>&1
grep -q 'export="disk0"' "$T/list" && grep -q 'export="golden"' "$T/list" \
  && grep -q "description: read-only image" "$T/list" && grep -q "is_read_only: true" "$T/list" \
  && ok "nbdinfo --list" || bad "nbdinfo --list: $(cat "$T/list")"

# nbdcopy in over TCP, out over the unix socket, compared by checksum.
head -c 64M /dev/urandom > "$T/in"
nbdcopy "$T/in" "$U" && nbdcopy "nbd+unix:///disk0?socket=$SOCK" "$T/out" \
  && [ "$(sha256sum < "$T/in")" = "$(sha256sum < "$T/out")" ] \
  && ok "nbdcopy round trip (TCP in, unix socket out)" || bad "nbdcopy round trip"

# python libnbd: two connections, each with 32 requests in flight at once, writes then reads.
$PY - "$U" > "$T/py.out" 2>&1 <<'PY'
import nbd, os, sys
uri = sys.argv[1]
hs = [nbd.NBD() for _ in range(2)]
for h in hs:
    h.connect_uri(uri)
blocks = {}
peak = []
for ci, h in enumerate(hs):
    bufs = []
    for i in range(32):
        off = (ci * 32 + i) * 65536
        data = os.urandom(65536)
        blocks[off] = data
        h.aio_pwrite(data, off)
    peak.append(h.aio_in_flight())
    while h.aio_in_flight() > 0:
        h.poll(-1)
for h in hs:
    h.flush()
for ci, h in enumerate(hs):
    bufs = []
    for i in range(32):
        off = ((1 - ci) * 32 + i) * 65536   # read what the other connection wrote
        b = nbd.Buffer(65536)
        bufs.append((off, b))
        h.aio_pread(b, off)
    peak.append(h.aio_in_flight())
    while h.aio_in_flight() > 0:
        h.poll(-1)
    for off, b in bufs:
        assert b.to_bytearray() == blocks[off], "mismatch at %d" % off
print("peak in flight", peak)
assert min(peak) >= 16, peak
# FUA write, zero, trim, flush.
h = hs[0]
h.pwrite(b"\x5a" * 4096, 0, nbd.CMD_FLAG_FUA)
assert h.pread(4096, 0) == b"\x5a" * 4096
h.zero(1 << 20, 0)
assert h.pread(1 << 20, 0) == bytes(1 << 20)
h.trim(1 << 20, 8 << 20)
h.flush()
for h in hs:
    h.shutdown()
print("python ok")
PY
grep -q "python ok" "$T/py.out" && ok "libnbd: 2 connections x 32 requests in flight, cross-connection reads, FUA, zero, trim" \
  || bad "libnbd: $(cat "$T/py.out")"

# nbdsh as a user would run it.
nbdsh -u "$U" -c 'h.pwrite(b"tmem" * 128, 4096); assert h.pread(512, 4096) == b"tmem" * 128' \
  && ok "nbdsh" || bad "nbdsh"

# qemu-img and qemu-io pattern writes and reads.
qemu-img info "$U" > "$T/qinfo" 2>&1; grep -q "virtual size: 64 MiB" "$T/qinfo" && ok "qemu-img info" || bad "qemu-img info"
qemu-io -f raw -c "write -P 0xa5 3M 1M" -c "write -P 0x3c 9M 64k" "$U" > "$T/qw" 2>&1 \
  && qemu-io -f raw -c "read -P 0xa5 3M 1M" -c "read -P 0x3c 9M 64k" "$U" > "$T/qr" 2>&1 \
  && ! grep -q "Pattern verification failed" "$T/qr" && ok "qemu-io -P pattern writes and reads" \
  || bad "qemu-io: $(cat "$T/qw" "$T/qr")"
qemu-io -f raw -c "read -P 0x11 3M 4k" "$U" > "$T/qbad" 2>&1
grep -q "Pattern verification failed" "$T/qbad" && ok "qemu-io notices a wrong pattern" \
  || bad "qemu-io wrong pattern not noticed: $(cat "$T/qbad")"
qemu-img convert -O raw "$U" "$T/qconv" && cmp -s "$T/qconv" <(nbdcopy "$U" - ) \
  && ok "qemu-img convert" || bad "qemu-img convert"

# fio's nbd engine with verification.
fio --name=verify --ioengine=nbd --uri="$U" --rw=randwrite --bs=4k --size=32M --iodepth=16 \
  --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$T/fio.txt" > /dev/null 2>&1 \
  && grep -q "err= 0" "$T/fio.txt" && ok "fio nbd engine --verify" || bad "fio: $(cat "$T/fio.txt")"

# The read-only export refuses writes with EPERM and serves reads.
$PY - "nbd://127.0.0.1:$NP/golden" "$T/ro.img" > "$T/ro.out" 2>&1 <<'PY'
import nbd, sys, errno
h = nbd.NBD()
h.set_strict_mode(0)   # let the write reach the server instead of being refused by libnbd
h.connect_uri(sys.argv[1])
assert h.is_read_only() == 1
want = open(sys.argv[2], "rb").read(65536)
assert h.pread(65536, 0) == want
try:
    h.pwrite(b"x" * 512, 0)
    print("write succeeded")
except nbd.Error as e:
    print("errno", e.errno, e.string)
    assert e.errno in (errno.EPERM, "EPERM"), e
print("ro ok")
PY
grep -q "ro ok" "$T/ro.out" && ok "read-only export: reads served, writes EPERM" || bad "read-only: $(cat "$T/ro.out")"
cmp -s <(head -c 16M "$T/ro.img") "$T/ro.img" && ok "read-only image untouched" || bad "read-only image changed"

# Admin view and metrics.
"$CTL" --server=127.0.0.1:$GP exports > "$T/exports" 2>&1
grep -qE "^disk0 +67108864 +rw" "$T/exports" && grep -qE "^golden +16777216 +ro" "$T/exports" \
  && ok "tmemctl exports" || bad "tmemctl exports: $(cat "$T/exports")"
curl -s "127.0.0.1:$MP/metrics" > "$T/metrics"
grep -qE '^tmem_nbd_requests_total\{export="disk0",command="write"\} [1-9]' "$T/metrics" \
  && grep -qE '^tmem_nbd_request_duration_seconds_bucket\{export="disk0",command="read",le="\+Inf"\} [1-9]' "$T/metrics" \
  && grep -qE '^tmem_nbd_request_errors_total\{export="golden",command="write"\} 1' "$T/metrics" \
  && grep -qE '^tmem_nbd_written_bytes_total\{export="disk0"\} [1-9]' "$T/metrics" \
  && ok "per-export metrics" || bad "metrics: $(grep nbd "$T/metrics" | head -30)"
if command -v promtool > /dev/null; then
  promtool check metrics < "$T/metrics" > "$T/promtool" 2>&1 && ok "promtool accepts the metrics" \
    || bad "promtool: $(cat "$T/promtool")"
fi

kill -TERM $D; wait $D; rc=$?
[ $rc -eq 0 ] && ok "tmemd stopped cleanly" || bad "tmemd exit $rc: $(tail -5 "$T/tmemd.log")"
[ ! -e "$SOCK" ] && ok "unix socket removed at stop" || bad "unix socket left behind"
finish "$T/tmemd.log"
echo "all checks passed"
