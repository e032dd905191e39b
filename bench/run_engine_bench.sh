#!/usr/bin/env bash
# One command for the page pool engine benchmark: fio on the same filesystem and the engine
# in-process, measured in the same run, printed as ratios against the targets.
#   bench/run_engine_bench.sh [--quick]
# Environment: TMEM_BENCH_DIR (default /var/tmp/tmem-bench; must not be tmpfs). Needs about
# 25 GiB free there (a 17 GiB device for 4M pages, removed afterwards); --quick needs ~8 GiB.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${TMEM_BENCH_DIR:-/var/tmp/tmem-bench}
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
scripts/setup.sh
mkdir -p "$DIR"
bazel build //bench:engine_bench //bench:io_engine_bench 2>&1 | grep -E 'ERROR|error:' || true

if [ $QUICK -eq 1 ]; then
  FIO_SIZE=2G; SECONDS_EACH=5; DEVICE_GIB=6; FILL=1000000; RSS_AT=250000; STEADY_GIB=2
else
  FIO_SIZE=8G; SECONDS_EACH=15; DEVICE_GIB=17; FILL=4194304; RSS_AT=1048576; STEADY_GIB=4
fi

fio_json() { fio "$@" --output-format=json 2>/dev/null; }
echo "== fio on $DIR ($(df -T "$DIR" | awk 'NR==2 {print $2}'))"
fio_json --name=seqw --filename="$DIR/fio.dat" --size=$FIO_SIZE --rw=write --bs=1M --iodepth=4 --direct=1 \
  --ioengine=io_uring --loops=3 > "$DIR/fio_seqw.json"
fio_json --name=randr --filename="$DIR/fio.dat" --size=$FIO_SIZE --rw=randread --bs=4k --iodepth=32 --direct=1 \
  --ioengine=io_uring --runtime=$SECONDS_EACH --time_based > "$DIR/fio_randr.json"
rm -f "$DIR/fio.dat"

echo "== I/O engines (FileDevice pread vs io_uring)"
bazel-bin/bench/io_engine_bench "$DIR" 5 | tee "$DIR/io_engine.txt"

echo "== engine"
bazel-bin/bench/engine_bench --dir="$DIR" --device_gib=$DEVICE_GIB --fill_pages=$FILL --rss_at_pages=$RSS_AT \
  --seconds=$SECONDS_EACH --steady_gib=$STEADY_GIB 2>/dev/null | tee "$DIR/engine.txt"

echo "== engine, page indexes without locality (puts and gets only)"
bazel-bin/bench/engine_bench --dir="$DIR" --put_order=random --device_gib=6 --fill_pages=1000000 \
  --rss_at_pages=1000000 --seconds=$SECONDS_EACH --steady_gib=$STEADY_GIB 2>/dev/null | tee "$DIR/engine_random.txt"

# The peer's bandwidth moves with the host's caching; measure it again after the engine and
# divide by the higher of the two figures (the conservative ratio).
echo "== fio again"
fio_json --name=seqw --filename="$DIR/fio.dat" --size=$FIO_SIZE --rw=write --bs=1M --iodepth=4 --direct=1 \
  --ioengine=io_uring --loops=3 > "$DIR/fio_seqw2.json"
fio_json --name=randr --filename="$DIR/fio.dat" --size=$FIO_SIZE --rw=randread --bs=4k --iodepth=32 --direct=1 \
  --ioengine=io_uring --runtime=$SECONDS_EACH --time_based > "$DIR/fio_randr2.json"
rm -f "$DIR/fio.dat"

python3 - "$DIR" <<'PY'
import json, sys
d = sys.argv[1]
seqws = [json.load(open(f"{d}/{n}"))["jobs"][0]["write"]["bw"] * 1024 / 1e6 for n in ("fio_seqw.json", "fio_seqw2.json")]
randrs = [json.load(open(f"{d}/{n}"))["jobs"][0]["read"]["iops"] for n in ("fio_randr.json", "fio_randr2.json")]
seqw, randr = max(seqws), max(randrs)
print(f"fio seq write MB/s: {seqws[0]:.0f} before, {seqws[1]:.0f} after; randread IOPS: {randrs[0]:.0f} before, {randrs[1]:.0f} after")
print("ratios use the higher figure of each pair")
e = dict(l.split() for l in open(f"{d}/engine.txt") if len(l.split()) == 2)
r = dict(l.split() for l in open(f"{d}/engine_random.txt") if len(l.split()) == 2)
f = lambda k: float(e[k])
rss = sorted((int(k.rsplit("_", 1)[1]), float(v)) for k, v in e.items() if k.startswith("rss_bytes_per_page_at_"))
anon = sorted((int(k.rsplit("_", 1)[1]), float(v)) for k, v in e.items() if k.startswith("rss_anon_bytes_per_page_at_"))
rows = [
  ("fill puts (2 writers) / fio seq write", f("fill_put_mb_per_s") / seqw, ">= 0.5", f("fill_put_mb_per_s") / seqw >= 0.5,
   f"{f('fill_put_mb_per_s'):.0f} MB/s vs {seqw:.0f} MB/s"),
  ("steady puts with reclaim / fio seq write", f("steady_put_mb_per_s") / seqw, ">= 0.5", f("steady_put_mb_per_s") / seqw >= 0.5,
   f"{f('steady_put_mb_per_s'):.0f} MB/s vs {seqw:.0f} MB/s, {f('steady_device_capacities_written'):.1f} capacities written"),
  ("random-index puts / fio seq write", float(r["steady_put_mb_per_s"]) / seqw, ">= 0.5",
   float(r["steady_put_mb_per_s"]) / seqw >= 0.5,
   f"{float(r['steady_put_mb_per_s']):.0f} MB/s steady, {float(r['fill_put_mb_per_s']):.0f} MB/s fill"),
  ("get hits (32 readers) / fio randread qd32", f("get_hits_per_s") / randr, ">= 0.8", f("get_hits_per_s") / randr >= 0.8,
   f"{f('get_hits_per_s'):.0f}/s vs {randr:.0f} IOPS, hit ratio {f('get_hit_ratio'):.3f}"),
]
for (n, v), (_, a) in zip(rss, anon):
  rows.append((f"RAM per cached page at {n} pages", v, "<= 32 B", v <= 32, f"RSS growth {v:.1f} B/page (anon {a:.1f})"))
rows.append(("write amplification (log)", f("write_amplification"), "<= 1.05", f("write_amplification") <= 1.05,
             f"steady state {f('steady_write_amplification'):.4f}"))
print()
print(f"{'measure':44} {'value':>8}  {'target':8} {'ok':3}  detail")
for name, val, target, ok, detail in rows:
  print(f"{name:44} {val:8.3f}  {target:8} {'yes' if ok else 'NO':3}  {detail}")
PY
