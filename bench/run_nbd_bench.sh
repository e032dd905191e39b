#!/usr/bin/env bash
# tmemd's NBD server (file backend) vs nbdkit's file plugin on the same file, with the same fio
# jobs (fio's nbd engine): 4 KiB random reads and writes at iodepth 32, 1 MiB sequential writes;
# and the same jobs on tmemd over TLS (X.509 with a client certificate): the TLS column is
# TLS / plaintext, same process, same rounds.
#   bench/run_nbd_bench.sh [--quick]
# Environment: TMEM_BENCH_DIR (default /var/tmp/tmem-bench), TMEM_BENCH_TLS_RECORDS (tls.records for the TLS
# column: tmem, the default, or gnutls, to compare the two record layers).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${TMEM_BENCH_DIR:-/var/tmp/tmem-bench}
SECS=${TMEM_BENCH_SECS:-10}; SIZE=2G; ROUNDS=${TMEM_BENCH_ROUNDS:-5}
[ "${1:-}" = "--quick" ] && { SECS=5; SIZE=1G; ROUNDS=1; }
scripts/setup.sh
bazel build //server/main:tmemd 2>&1 | grep -E 'ERROR|error:' && exit 1 || true
mkdir -p "$DIR"
source tests/testing/testlib.sh   # port, wait_port, fail
IMG="$DIR/nbd-bench.img"
rm -rf "$IMG" "$DIR/nbd-cache.img" "$DIR/nbd-cache.img.index"
# A file full of data, so that reads are real reads. Written with O_DIRECT, so that the page
# cache starts without the file: a buffered 1 MiB fill leaves it in large folios, and 4 KiB
# writes into those run at a quarter of the speed for any server (21-23k IOPS for both tmemd and
# nbdkit on this machine, 85-90k once the cache was dropped): the job would measure the kernel.
fio --name=fill --filename="$IMG" --rw=write --bs=1M --size=$SIZE --ioengine=psync --direct=1 --end_fsync=1 >/dev/null
TP=$(port); KP=$(port); GP=$(port)
TLS="$DIR/tls"
[ -s "$TLS/bench.crt" ] || scripts/make-certs.sh "$TLS" bench 2>/dev/null
# fio's nbd engine may not name local files in its URI (tls-certificates, tls-psk-file), and
# libnbd's default certificate directory for root is the system's /etc/pki/libnbd: so the TLS
# jobs run X.509 TLS without a client certificate and without checking the server's
# (tls-verify-peer=false), which costs the same encryption; the export allows "*" for them.
cat > "$DIR/nbd_tmemd.yaml" <<YAML
device: {path: $DIR/nbd-cache.img, size: 256M}
listen: ["127.0.0.1:$GP"]
metrics_listen: ""
tls: {cert: $TLS/server.crt, key: $TLS/server.key, ca: $TLS/ca.crt, client_auth: optional, records: ${TMEM_BENCH_TLS_RECORDS:-tmem}}
tenants: [{name: bench}]
nbd: {listen: ["127.0.0.1:$TP"]}
exports: [{name: bench, backend: $IMG, allow: ["*"]}]
YAML
bazel-bin/server/main/tmemd --config="$DIR/nbd_tmemd.yaml" 2> "$DIR/nbd_tmemd.log" &
TD=$!
nbdkit -f --exit-with-parent -p "$KP" -i 127.0.0.1 file "$IMG" 2> "$DIR/nbd_nbdkit.log" &
NK=$!
trap 'kill $TD $NK 2>/dev/null || true' EXIT
for p in $TP $KP; do
  wait_nbd "nbd://127.0.0.1:$p/" || fail "no NBD server on port $p"
done
uncache() {  # the image out of the page cache, its dirty pages written first
  sync
  /usr/bin/python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$IMG"
}
warmup() {  # rw bs iodepth: the same job for a few seconds through nbdkit, not measured
  # Random reads: the whole image read once first (O_DIRECT, past this machine's page cache),
  # so that whatever caches the disk below this machine holds all of it for both servers; fio
  # repeats its random offsets, and the second server would otherwise read blocks the first
  # one just brought into that cache (2-4k IOPS more for whichever went second).
  [ "$1" = randread ] && dd if="$IMG" of=/dev/null bs=4M iflag=direct status=none
  uncache
  fio --name=warmup --ioengine=nbd --uri="nbd://127.0.0.1:$KP/" --rw="$1" --bs="$2" --iodepth="$3" \
    --size=$SIZE --time_based --runtime=5 >/dev/null 2>&1
}
job() {  # name uri rw bs iodepth
  # Every job starts with none of the file in the page cache (and none of it dirty): otherwise
  # the second server of a pair reads what the first one's job brought in, or finds its pages
  # already allocated, and the order decides the ratio.
  uncache
  fio --name="$1" --ioengine=nbd --uri="$2" --rw="$3" --bs="$4" --iodepth="$5" --size=$SIZE \
    --time_based --runtime=$SECS --ramp_time=1 --output-format=json 2>/dev/null > "$DIR/nbd_$1.json"
}
# Rounds alternate the two servers job by job (and which goes first), so that drift in the
# machine's speed and leftover writeback hit both; the ratios use each side's median.
for round in $(seq $ROUNDS); do
  echo "== round $round of $ROUNDS: randread 4k qd32, randwrite 4k qd32, write 1M qd8 ($SECS s each, both servers)"
  for spec in "randread 4k 32" "randwrite 4k 32" "seqwrite 1M 8"; do
    set -- $spec
    rw=$1; [ "$rw" = seqwrite ] && rw=write
    # The order rotates round by round (tmemd, tmemd over TLS, nbdkit).
    case $((round % 3)) in
      1) order="tmemd tls nbdkit" ;; 2) order="nbdkit tmemd tls" ;; 0) order="tls nbdkit tmemd" ;;
    esac
    # The first job of a kind right after another kind runs in a different kernel state: 1 MiB
    # writes right after the 4 KiB random ones ran at 0.4-1.6 GB/s for either server, the next
    # ones at 1.9-2.5 GB/s, so whichever server went first lost. A short unmeasured run of the
    # same job first, from the same uncached start, puts both measured jobs in the same state.
    warmup "$rw" "$2" "$3"
    for server in $order; do
      case $server in
        tmemd) U="nbd://127.0.0.1:$TP/bench" ;;
        tls) U="nbds://127.0.0.1:$TP/bench?tls-verify-peer=false" ;;
        *) U="nbd://127.0.0.1:$KP/" ;;
      esac
      job "${server}_${1}_$round" "$U" "$rw" "$2" "$3"
    done
  done
done
/usr/bin/python3 - "$DIR" "$ROUNDS" <<'PY'
import json, statistics, sys
d, rounds = sys.argv[1], int(sys.argv[2])
def load(name):
    text = open(f"{d}/nbd_{name}.json").read()
    return json.loads(text[text.index("{"):])  # fio's nbd engine prints a line before the JSON
def get(name, rw, key):
    return statistics.median(load(f"{name}_{r}")["jobs"][0][rw][key] for r in range(1, rounds + 1))
JOBS = [("randread", "read", "iops", "IOPS"), ("randwrite", "write", "iops", "IOPS"), ("seqwrite", "write", "bw", "KiB/s")]
def table(a, b, a_name, b_name, target, jobs_with_target):
    """a's median over b's for every job; `target` applies to the jobs named."""
    print()
    print(f"{'job (median of ' + str(rounds) + ')':28} {a_name:>12} {b_name:>12} {'ratio':>7}  target")
    for job, rw, key, unit in JOBS:
        t, k = get(a + "_" + job, rw, key), get(b + "_" + job, rw, key)
        r = t / k if k else 0
        verdict = f">= {target} {'yes' if r >= target else 'NO'}" if job in jobs_with_target else ""
        print(f"{job + ' (' + unit + ')':28} {t:12.0f} {k:12.0f} {r:7.3f}  {verdict}")
table("tmemd", "nbdkit", "tmemd", "nbdkit", 1.0, ("randread", "randwrite", "seqwrite"))
table("tls", "tmemd", "tmemd TLS", "tmemd", 0.8, ("randread", "randwrite"))
for job, rw in [("randread", "read"), ("randwrite", "write")]:
    for s in ("tmemd", "tls", "nbdkit"):
        p = statistics.median(load(f"{s}_{job}_{r}")["jobs"][0][rw]["clat_ns"]["percentile"]["99.000000"]
                              for r in range(1, rounds + 1)) / 1000
        print(f"  p99 latency {job:10} {s:7} {p:8.0f} us")
PY
kill -TERM $TD; wait $TD || true; kill $NK 2>/dev/null; wait $NK 2>/dev/null || true; trap - EXIT
rm -rf "$IMG" "$DIR/nbd-cache.img" "$DIR/nbd-cache.img.index"
