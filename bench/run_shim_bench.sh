#!/usr/bin/env bash
# The kernel shim's data path, natively, against the disk read a cleancache hit saves.
#
#   bench/run_shim_bench.sh [--quick]
#
# shim: the module's core logic in-process (kshim/relay/fake_shim.h) -> ring -> tmem-shimd's
# Relay -> libtmemclient -> a tmemd process on loopback (file device under TMEM_BENCH_DIR).
# peer: fio on a file in the same directory with O_DIRECT: 4 KiB random reads at queue depth 1
# (what a cleancache hit replaces for a random read) and 128 KiB sequential reads (readahead).
# Ratios above 1 mean the shim is faster than the disk. The same random gets are also timed
# straight through libtmemclient, so that the shim's own cost shows apart from the transport's.
# A second peer is the same disk slowed to a network volume's latency: nbdkit's delay filter
# (1 ms per read) over the file, read by fio's nbd engine at queue depth 1.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${TMEM_BENCH_DIR:-/var/tmp/tmem-bench}
PAGES=50000; SECS=10
[ "${1:-}" = "--quick" ] && { PAGES=10000; SECS=4; }
scripts/setup.sh >/dev/null
bazel build //server/main:tmemd //bench:shim_bench 2>&1 | grep -E 'ERROR|error:' && exit 1 || true
mkdir -p "$DIR"
rm -rf "$DIR/shim-dev.img" "$DIR/shim-dev.img.index"
PORT=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
bazel-bin/server/main/tmemd --device="$DIR/shim-dev.img" --device-size=2G --listen="127.0.0.1:$PORT" \
  --metrics-listen= 2> "$DIR/shim_tmemd.log" &
TD=$!
trap 'kill $TD 2>/dev/null || true' EXIT
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done
SHIM=$(bazel-bin/bench/shim_bench --server="127.0.0.1:$PORT" --pages=$PAGES)
echo "$SHIM"
fio --name=fill --filename="$DIR/shim-disk.img" --rw=write --bs=1M --size=1G --ioengine=psync --direct=1 \
  --end_fsync=1 >/dev/null
fio_json() { fio --output-format=json --filename="$DIR/shim-disk.img" --size=1G --ioengine=psync --direct=1 \
  --time_based --runtime=$SECS "$@"; }
RR=$(fio_json --name=rr --rw=randread --bs=4k --iodepth=1)
SR=$(fio_json --name=sr --rw=read --bs=128k --iodepth=1)
SOCK="$DIR/shim-slow.sock"
rm -f "$SOCK"
nbdkit --unix "$SOCK" --exit-with-parent --foreground --filter=delay file "$DIR/shim-disk.img" rdelay=1ms &
NK=$!
trap 'kill $TD $NK 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
SLOW=$(fio --output-format=json --name=slow --ioengine=nbd --uri="nbd+unix:///?socket=$SOCK" --rw=randread \
  --bs=4k --iodepth=1 --size=1G --time_based --runtime=$SECS | sed -n '/^{/,$p')  # fio's nbd engine says hello first
kill $NK 2>/dev/null || true
/usr/bin/python3 - "$SHIM" "$RR" "$SR" "$SLOW" <<'PY'
import json, re, sys
shim, rr, sr, slow = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), json.loads(sys.argv[4])
def field(name, key):
    m = re.search(rf"^{name} .*?\b{key}=([0-9.]+)", shim, re.M)
    return float(m.group(1))
rand_us = field("get_hit_us_random", "mean")
rand_p99 = field("get_hit_us_random", "p99")
seq_mib = float(re.search(r"seq_mib_per_s=([0-9.]+)", shim).group(1))
puts = float(re.search(r"queued_per_s=([0-9.]+)", shim).group(1))
disk_us = rr["jobs"][0]["read"]["clat_ns"]["mean"] / 1000
disk_p99 = rr["jobs"][0]["read"]["clat_ns"]["percentile"]["99.000000"] / 1000
disk_seq = sr["jobs"][0]["read"]["bw"] / 1024
client_us = field("client_get_hit_us_random", "mean")
print(f"shim get hit, random 4 KiB: mean {rand_us:.1f} us, p99 {rand_p99:.1f} us | disk O_DIRECT 4 KiB random read QD1: mean {disk_us:.1f} us, p99 {disk_p99:.1f} us | ratio (disk/shim) {disk_us / rand_us:.2f}")
print(f"the same gets straight through libtmemclient: mean {client_us:.1f} us | the shim's own share (ring, relay, module logic): {rand_us - client_us:.1f} us | ratio (client/shim) {client_us / rand_us:.2f}")
print(f"shim sequential file read through cleancache: {seq_mib:.1f} MiB/s | disk 128 KiB sequential read: {disk_seq:.1f} MiB/s | ratio (shim/disk) {seq_mib / disk_seq:.2f}")
print(f"shim puts taken by the relay: {puts:.0f} pages/s ({puts * 4096 / 2**20:.1f} MiB/s)")
slow_us = slow["jobs"][0]["read"]["clat_ns"]["mean"] / 1000
print(f"against a network-latency disk (nbdkit delay filter, 1 ms per read, QD1): mean {slow_us:.1f} us | "
      f"ratio (slow disk/shim) {slow_us / rand_us:.2f} | the shim's hits faster: {'yes' if rand_us < slow_us else 'NO'}")
PY
