#!/usr/bin/env bash
# The writeback cache against nbdkit's cache filter and the bare backing store, in one run.
# The backing store for all three is one slow disk arm: nbdkit's memory plugin (1 GiB) behind
# its delay filter (2 ms per read and per write) and its noparallel filter (one request at a
# time), about 500 IOPS. Configurations:
#   tmemd    a tmemd cached export over that store (cache file on local disk, and a RAM tier
#            as large as the export: nbdkit's cache file lives in the page cache, so both keep
#            the hot data in RAM; RAM=0 runs without the tier)
#   nbdkit   nbdkit's cache filter, cache=writeback, 4 KiB blocks, over the same store
#   backing  the store alone
# Jobs (fio's nbd engine, 1 GiB export):
#   A  4 KiB randwrite, iodepth 32, a FLUSH every 256 writes (database-like)
#   B  4 KiB randwrite, iodepth 32, no flushes
#   S  1 MiB sequential writes, iodepth 8 (for the cached export: against fio's 1 MiB
#      sequential writes on the cache device's file itself); it also fills the whole export
#   C  4 KiB randread of what was just written
# Each configuration starts fresh twice (see run_first / run_second below).
#   bench/run_cache_bench.sh [--quick]     (--quick: 10 s jobs instead of 30 s)
# Environment: TMEM_BENCH_DIR (default /var/tmp/tmem-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${TMEM_BENCH_DIR:-/var/tmp/tmem-bench}
SECS=30
[ "${1:-}" = "--quick" ] && SECS=10
RAM=${RAM:-1G}
scripts/setup.sh
bazel build //server/main:tmemd 2>&1 | grep -E 'ERROR|error:' && exit 1 || true
mkdir -p "$DIR"
S=$(mktemp -d /tmp/tmem-cb.XXXXXX)
source tests/testing/testlib.sh   # port, wait_port, fail
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; rm -rf "$S" "$DIR/cb-cache.img" "$DIR/cb-pages.img" "$DIR/cb-pages.img.index" "$DIR/cb-seq.img"; }
trap cleanup EXIT

slow_store() {  # socket: a fresh slow disk arm
  nbdkit -f --exit-with-parent -U "$1" --filter=noparallel --filter=delay memory 1G \
    rdelay=2ms wdelay=2ms serialize=all-requests 2>> "$DIR/cb-nbdkit.log" &
  SP=$!
  PIDS+=($SP)
  for _ in $(seq 100); do [ -S "$1" ] && break; sleep 0.05; done
}
fio_job() {  # name uri rw bs iodepth [extra...]
  local name=$1 uri=$2 rw=$3 bs=$4 qd=$5; shift 5
  fio --name="$name" --ioengine=nbd --uri="$uri" --rw="$rw" --bs="$bs" --iodepth="$qd" --size=1G \
    --time_based --runtime=$SECS --output-format=json "$@" 2>/dev/null > "$DIR/cb_$name.json"
}
# Each configuration runs twice from a fresh start (a fresh store, a fresh cache): A, then B
# again on what A left (no target: after A, tmemd's log is full of A's flush-sealed segments and B
# pays for cleaning them, while nbdkit's cache took in only A's few hundred writes a second);
# then B, S and C. So B's target compares the two caches from the same state.
run_first() {  # prefix uri
  echo "== $1, fresh: A (randwrite, FLUSH every 256), then B (randwrite) on what A left, ${SECS} s each"
  fio_job "$1_A" "$2" randwrite 4k 32 --fsync=256
  fio_job "$1_AB" "$2" randwrite 4k 32
}
run_second() {  # prefix uri
  echo "== $1, fresh: B (randwrite), S (1 MiB sequential writes), C (randread), ${SECS} s each"
  fio_job "$1_B" "$2" randwrite 4k 32
  # S writes the whole export (the random jobs leave part of it unwritten), so that C reads
  # only what was just written, on every configuration.
  fio_job "$1_S" "$2" write 1M 8
  fio_job "$1_C" "$2" randread 4k 32
}
stop() { kill -TERM "$1"; wait "$1" || true; }

# (1) tmemd with a cached export; the cache file is 4 GiB, four times the export; RAM tier $RAM.
start_tmemd() {  # socket name; sets TD and URI
  slow_store "$S/$1.sock"
  TP=$(port); GP=$(port)
  rm -rf "$DIR/cb-cache.img" "$DIR/cb-pages.img" "$DIR/cb-pages.img.index"
  bazel-bin/server/main/tmemd --device="$DIR/cb-pages.img" --device-size=64M --listen="127.0.0.1:$GP" \
    --metrics-listen= --nbd-listen="127.0.0.1:$TP" --export="c=nbd+unix:///?socket=$S/$1.sock" \
    --export-cache="$DIR/cb-cache.img:4G" --export-cache-ram="$RAM" 2>> "$DIR/cb-tmemd.log" &
  TD=$!
  PIDS+=($TD)
  URI="nbd://127.0.0.1:$TP/c"
  wait_nbd "$URI" || fail "no NBD server at $URI"
}
: > "$DIR/cb-tmemd.log"
start_tmemd t1; run_first tmemd "$URI"; stop $TD; stop $SP
start_tmemd t2; run_second tmemd "$URI"; stop $TD; stop $SP

# (2) nbdkit's cache filter, writeback, 4 KiB blocks, over a fresh slow store.
start_nbdkit() {  # socket name; sets NK and URI
  slow_store "$S/$1.sock"
  KP=$(port)
  nbdkit -f --exit-with-parent -p "$KP" -i 127.0.0.1 --filter=cache nbd socket="$S/$1.sock" \
    cache=writeback cache-min-block-size=4096 2>> "$DIR/cb-nbdkit.log" &
  NK=$!
  PIDS+=($NK)
  URI="nbd://127.0.0.1:$KP/"
  wait_nbd "$URI" || fail "no NBD server at $URI"
}
start_nbdkit k1; run_first nbdkit "$URI"; stop $NK; stop $SP
start_nbdkit k2; run_second nbdkit "$URI"; stop $NK; stop $SP

# (3) the slow store alone (shorter: at ~500 IOPS the rate settles at once; S is left out).
slow_store "$S/b.sock"
SECS_SAVED=$SECS; SECS=$(( SECS < 10 ? SECS : 10 ))
echo "== backing: A, B, C, ${SECS} s each"
fio_job backing_A "nbd+unix:///?socket=$S/b.sock" randwrite 4k 32 --fsync=256
fio_job backing_B "nbd+unix:///?socket=$S/b.sock" randwrite 4k 32
fio_job backing_C "nbd+unix:///?socket=$S/b.sock" randread 4k 32
SECS=$SECS_SAVED

# The cache device's own sequential write rate (same filesystem, O_DIRECT, 1 MiB, iodepth 8),
# sustained as long as job S, over a file as large as the cache.
fio --name=seq --filename="$DIR/cb-seq.img" --rw=write --bs=1M --iodepth=8 --direct=1 --ioengine=io_uring \
  --size=4G --time_based --runtime=$SECS --output-format=json 2>/dev/null > "$DIR/cb_device_S.json"

/usr/bin/python3 - "$DIR" "$RAM" <<'PY'
import json, sys
d = sys.argv[1]
def load(name):
    text = open(f"{d}/cb_{name}.json").read()
    return json.loads(text[text.index("{"):])["jobs"][0]
def iops(name, rw): return load(name)[rw]["iops"]
rows = []
a_t, a_k, a_b = iops("tmemd_A", "write"), iops("nbdkit_A", "write"), iops("backing_A", "write")
b_t, b_k, b_b = iops("tmemd_B", "write"), iops("nbdkit_B", "write"), iops("backing_B", "write")
c_t, c_k, c_b = iops("tmemd_C", "read"), iops("nbdkit_C", "read"), iops("backing_C", "read")
s_t = load("tmemd_S")["write"]["bw_bytes"]
s_d = load("device_S")["write"]["bw_bytes"]
print()
print(f"tmemd's RAM tier: {sys.argv[2]}")
print(f"{'job':44} {'tmemd':>10} {'nbdkit':>10} {'backing':>9}  {'ratio':>7}  target")
def row(name, t, k, b, ratio, target, ok):
    print(f"{name:44} {t:10.0f} {k:10.0f} {b:9.0f}  {ratio:7.2f}  {target} {'yes' if ok else 'NO'}")
row("A randwrite+flush/256 IOPS, vs nbdkit cache", a_t, a_k, a_b, a_t / a_k, ">= 3.0 ", a_t >= 3 * a_k)
row("A                           vs backing", a_t, a_k, a_b, a_t / a_b, ">= 20.0", a_t >= 20 * a_b)
row("B randwrite IOPS, vs nbdkit cache", b_t, b_k, b_b, b_t / b_k, ">= 0.8 ", b_t >= 0.8 * b_k)
ab_t, ab_k = iops("tmemd_AB", "write"), iops("nbdkit_AB", "write")
print(f"{'  B right after A (no target)':44} {ab_t:10.0f} {ab_k:10.0f} {'':9}  {ab_t / ab_k:7.2f}")
row("C randread IOPS, vs nbdkit cache", c_t, c_k, c_b, c_t / c_k, ">= 1.0 ", c_t >= c_k)
s_k = load("nbdkit_S")["write"]["bw_bytes"]
print(f"{'S 1 MiB seq write MB/s, vs the cache device':44} {s_t/1e6:10.0f} {s_k/1e6:10.0f} {'':9}  {s_t / s_d:7.2f}  >= 0.5  "
      f"{'yes' if s_t >= 0.5 * s_d else 'NO'}  (device {s_d/1e6:.0f} MB/s)")
for n in ("A", "B"):
    for s in ("tmemd", "nbdkit"):
        p = load(f"{s}_{n}")["write"]["clat_ns"]["percentile"]["99.000000"] / 1000
        print(f"  p99 write latency job {n} {s:7} {p:10.0f} us")
PY
