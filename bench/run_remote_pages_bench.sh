#!/usr/bin/env bash
# tmemd vs memcached for remote 4 KiB pages, in one run on loopback, plus fio 4 KiB random reads
# on tmemd's device (every block written first) at the same depth. tmemd's pages travel on the
# page wire protocol; the same phases run again over mutual TLS (the TLS column: TLS / plaintext,
# same process, same run) and over gRPC Session streams (the second row), and each server's CPU
# per page is read from /proc.
#   bench/run_remote_pages_bench.sh [--quick]
# Environment: TMEM_BENCH_DIR (default /var/tmp/tmem-bench), TMEM_BENCH_BATCH (pages per batch on
# both sides, default 32), TMEM_BENCH_CLIENT (the bench client binary, default the one built here:
# to compare two builds of libtmemclient against the same servers).
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${TMEM_BENCH_DIR:-/var/tmp/tmem-bench}
# The device holds every pool's newest pass (three pools of PAGES pages, each put twice, the
# plaintext pool's second pass before the others'): with less, the plaintext pool's pages are
# reclaimed before its gets and half of them miss.
THREADS=8; BATCH=${TMEM_BENCH_BATCH:-32}; PAGES=400000; SECS=10; DEVICE=8G
[ "${1:-}" = "--quick" ] && { PAGES=100000; SECS=4; DEVICE=2G; }
scripts/setup.sh
bazel build //server/main:tmemd //bench:remote_pages_bench //bench:grpc_sink 2>&1 | grep -E 'ERROR|error:' && exit 1 || true
mkdir -p "$DIR"
source tests/testing/testlib.sh   # port, wait_port, fail
TP=$(port); MP=$(port); SP=$(port); LP=$(port); RP=$(port); MT1=$(port); MT2=$(port)
rm -rf "$DIR/remote.img" "$DIR/remote.img.index" "$DIR/remote_ram.img" "$DIR/remote_ram.img.index"
[ -s "$DIR/tls/bench.crt" ] || scripts/make-certs.sh "$DIR/tls" bench 2>/dev/null
# The device's ceiling for puts: every put ends in a sequential write of its segment (1 MiB,
# two in flight, as tmemd's two flushers write them), so the device's rate for those writes
# bounds tmemd's put rate whatever the rest costs.
echo "== fio: the device's rate for segment writes (1 MiB sequential, iodepth 2)"
fio --name=seg --filename="$DIR/remote_seq.img" --rw=write --bs=1M --iodepth=2 --direct=1 --ioengine=io_uring \
  --size=$DEVICE --loops=2 --output-format=json 2>/dev/null > "$DIR/remote_fio_seq.json"
rm -f "$DIR/remote_seq.img"
memcached -u root -l 127.0.0.1 -p "$MP" -U 0 -t 2 -m $(( PAGES * 6 / 1024 + 256 )) &
MC=$!
# One tmemd: TLS on LP (tenant "bench" by its certificate), plaintext on TP (loopback).
cat > "$DIR/remote_tmemd.yaml" <<YAML
listen: ["127.0.0.1:$LP"]
plaintext_listen: ["127.0.0.1:$TP"]
wire: {listen: ["127.0.0.1:0"], plaintext_listen: ["127.0.0.1:0"]}
ram_cache: 0   # device hits; the DRAM tier is measured on its own tmemd below
tls: {cert: $DIR/tls/server.crt, key: $DIR/tls/server.key, ca: $DIR/tls/ca.crt}
tenants: [{name: bench}]
YAML
bazel-bin/server/main/tmemd --config="$DIR/remote_tmemd.yaml" --device="$DIR/remote.img" --device-size=$DEVICE \
  --metrics-listen="127.0.0.1:$MT1" 2> "$DIR/remote_tmemd.log" &
TD=$!
bazel-bin/bench/grpc_sink --listen="127.0.0.1:$SP" &
SK=$!
# A second tmemd with the DRAM tier (512 MiB) for the hot set's hits.
bazel-bin/server/main/tmemd --device="$DIR/remote_ram.img" --device-size=1G --listen="127.0.0.1:$RP" \
  --metrics-listen="127.0.0.1:$MT2" --ram-cache=512M 2> "$DIR/remote_ram_tmemd.log" &
RT=$!
trap 'kill $MC $TD $SK $RT 2>/dev/null || true' EXIT
for p in $TP $RP; do wait_port $p || { echo "a tmemd did not come up"; exit 1; }; done
echo "== tmemd and memcached, $THREADS client threads, batches of $BATCH, $PAGES pages of 4 KiB"
"${TMEM_BENCH_CLIENT:-bazel-bin/bench/remote_pages_bench}" --tmemd="127.0.0.1:$TP" --memcached="127.0.0.1:$MP" --sink="127.0.0.1:$SP" --threads=$THREADS \
  --batch=$BATCH --pages=$PAGES --seconds=$SECS --tls-tmemd="127.0.0.1:$LP" --tls-ca="$DIR/tls/ca.crt" \
  --tls-cert="$DIR/tls/bench.crt" --tls-key="$DIR/tls/bench.key" --tmemd-pid=$TD --memcached-pid=$MC \
  --ram-tmemd="127.0.0.1:$RP" --ram-tmemd-pid=$RT --hot-pages=32768 \
  | tee "$DIR/remote.txt"
# Write amplification: bytes the log wrote to the device (pages, segment headers, padding of
# segments sealed by their deadline) over the page bytes clients put, from each tmemd's /metrics.
python3 - "$MT1" "$MT2" >> "$DIR/remote.txt" <<'PY'
import re, sys, urllib.request
for name, port in (("tmemd", sys.argv[1]), ("ram", sys.argv[2])):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    total = lambda metric: sum(float(m.group(1)) for m in re.finditer(rf"^{metric}(?:{{[^}}]*}})? (\S+)$", text, re.M))
    puts, written = total("tmem_pool_puts_total"), total("tmem_log_written_bytes_total")
    print(f"{name}_pages_put {puts:.0f}")
    print(f"{name}_write_amplification {written / (puts * 4096) if puts else float('nan'):.4f}")
    # Write-back: dirty index entries written to RocksDB, and dropped unwritten (reclaimed, flushed).
    print(f"{name}_index_entries_written_back {total('tmem_index_cache_cleaned_total'):.0f}")
    print(f"{name}_index_entries_dropped_unwritten {total('tmem_index_cache_dropped_unwritten_total'):.0f}")
PY
tail -8 "$DIR/remote.txt"
kill -TERM $TD $RT; wait $TD $RT || true; kill $MC $SK; wait $MC $SK 2>/dev/null || true; trap - EXIT
rm -rf "$DIR/remote_ram.img" "$DIR/remote_ram.img.index"
# The peer for reads is the device itself, at the same depth as the clients (threads x batch
# pages in flight). fio reads the whole file, so every block is first written: a hole or an
# unwritten extent of a sparse file reads as zeros without touching the disk (541k "IOPS" on a
# sparse file here against 42k on written blocks), which would make the device look 10x faster.
echo "== fio: the device file written in full, then 4 KiB random reads, $THREADS jobs x iodepth $BATCH"
fio --name=fill --filename="$DIR/remote.img" --rw=write --bs=1M --iodepth=8 --direct=1 \
  --ioengine=io_uring --size=$DEVICE > /dev/null 2>&1
fio --name=rr --filename="$DIR/remote.img" --rw=randread --bs=4k --numjobs=$THREADS --iodepth=$BATCH \
  --group_reporting --direct=1 --ioengine=io_uring --runtime=$SECS --time_based --output-format=json \
  2>/dev/null > "$DIR/remote_fio.json"
# The device's own latency for single reads at the single-get phase's concurrency (one read in
# flight per client thread): the floor under tmemd's single-get p99.
fio --name=lat --filename="$DIR/remote.img" --rw=randread --bs=4k --numjobs=$THREADS --iodepth=1 \
  --group_reporting --direct=1 --ioengine=io_uring --runtime=$SECS --time_based --output-format=json \
  2>/dev/null > "$DIR/remote_fio_lat.json"
rm -rf "$DIR/remote.img" "$DIR/remote.img.index"
python3 - "$DIR" <<'PY'
import json, sys
d = sys.argv[1]
e = dict(l.split() for l in open(f"{d}/remote.txt") if len(l.split()) == 2)
f = lambda k: float(e[k])
fio = json.load(open(f"{d}/remote_fio.json"))["jobs"][0]["read"]["iops"]
lat = json.load(open(f"{d}/remote_fio_lat.json"))["jobs"][0]["read"]["clat_ns"]["percentile"]["99.000000"] / 1000
put = f("tmemd_put_pages_per_s") / f("memcached_put_pages_per_s")
peer = min(f("memcached_get_hits_per_s"), fio)
get = f("tmemd_get_hits_per_s") / peer
print()
print(f"{'measure':46} {'value':>8}  {'target':7} ok   detail")
def row(name, value, target, detail):
    ok = "" if target is None else ("yes" if value >= target else "NO ")
    t = "" if target is None else f">= {target}"
    print(f"{name:46} {value:8.3f}  {t:7} {ok:3}  {detail}")
row("puts tmemd / memcached (second pass)", put, 1.0,
    f"{f('tmemd_put_pages_per_s'):.0f} vs {f('memcached_put_pages_per_s'):.0f} pages/s (page wire protocol)")
seq = json.load(open(f"{d}/remote_fio_seq.json"))["jobs"][0]["write"]["bw_bytes"] / 4096
first = f('tmemd_put_first_pass_pages_per_s') / f('memcached_put_first_pass_pages_per_s')
row("  first pass (memcached touching new memory)", first, None,
    f"{f('tmemd_put_first_pass_pages_per_s'):.0f} vs {f('memcached_put_first_pass_pages_per_s'):.0f} pages/s")
if "sink_put_pages_per_s" in e:
    sink = f("sink_put_pages_per_s")
    row("  gRPC's own ceiling (sink) / memcached", sink / f("memcached_put_pages_per_s"), None,
        f"{sink:.0f} pages/s through gRPC storing nothing")
row("  device segment writes (fio) / memcached", seq / f("memcached_put_pages_per_s"), None,
    f"{seq:.0f} pages/s; tmemd reaches {f('tmemd_put_pages_per_s') / seq:.3f} of the device's rate")
row("get hits tmemd / fio at the same depth", f("tmemd_get_hits_per_s") / fio, 0.9,
    f"{f('tmemd_get_hits_per_s'):.0f}/s vs fio {fio:.0f} IOPS (pages on the device: this tmemd runs without the DRAM tier)")
row("get hits tmemd / memcached", f("tmemd_get_hits_per_s") / f("memcached_get_hits_per_s"), None,
    f"memcached {f('memcached_get_hits_per_s'):.0f}/s")
print(f"{'single get p50 / p99, microseconds':46} {'':8}  {'':7}      tmemd {f('tmemd_single_get_p50_us'):.0f} / "
      f"{f('tmemd_single_get_p99_us'):.0f}, memcached {f('memcached_single_get_p50_us'):.0f} / "
      f"{f('memcached_single_get_p99_us'):.0f}, device read p99 (fio) {lat:.0f}")
row("  p99: (memcached + device) / tmemd", (f("memcached_single_get_p99_us") + lat) / f("tmemd_single_get_p99_us"),
    1.0, "tmemd's device hits within memcached's latency plus the device's own")
if "ram_get_hits_per_s" in e:
    row("DRAM tier: get hits / memcached", f("ram_get_hits_per_s") / f("memcached_get_hits_per_s"), 1.0,
        f"{f('ram_get_hits_per_s'):.0f}/s over {f('ram_hot_pages'):.0f} hot pages ({f('ram_get_misses'):.0f} misses) "
        f"vs memcached {f('memcached_get_hits_per_s'):.0f}/s")
    row("DRAM tier: single get p50, 1.2 x memcached / tmemd", 1.2 * f("memcached_single_get_p50_us") /
        f("ram_single_get_p50_us"), 1.0, f"tmemd {f('ram_single_get_p50_us'):.0f} us, memcached "
        f"{f('memcached_single_get_p50_us'):.0f} us")
    row("DRAM tier: single get p99, 1.2 x memcached / tmemd", 1.2 * f("memcached_single_get_p99_us") /
        f("ram_single_get_p99_us"), 1.0, f"tmemd {f('ram_single_get_p99_us'):.0f} us, memcached "
        f"{f('memcached_single_get_p99_us'):.0f} us")
if "tmemd_put_cpu_us_per_page" in e:
    print(f"{'server CPU per page, microseconds':46} {'':8}  {'':7}      puts: tmemd "
          f"{f('tmemd_put_cpu_us_per_page'):.2f}, memcached {f('memcached_put_cpu_us_per_page'):.2f}; gets: tmemd "
          f"{f('tmemd_get_cpu_us_per_page'):.2f} (device), "
          f"{f('ram_get_cpu_us_per_page') if 'ram_get_cpu_us_per_page' in e else float('nan'):.2f} (DRAM tier), "
          f"memcached {f('memcached_get_cpu_us_per_page'):.2f}")
if "tmem_client_put_cpu_us_per_page" in e:
    print(f"{'client CPU per put page, microseconds':46} {'':8}  {'':7}      libtmemclient "
          f"{f('tmem_client_put_cpu_us_per_page'):.2f}, libmemcached {f('memcached_client_put_cpu_us_per_page'):.2f} "
          f"(the bench process, same phases)")
if "ram_client_get_cpu_us_per_page" in e:
    print(f"{'client CPU per get hit, microseconds':46} {'':8}  {'':7}      libtmemclient "
          f"{f('ram_client_get_cpu_us_per_page'):.2f} (DRAM tier), libmemcached "
          f"{f('memcached_client_get_cpu_us_per_page'):.2f} (the bench process, same phases)")
if "tmemd_write_amplification" in e:
    print(f"{'write amplification (device bytes / put bytes)':46} {f('tmemd_write_amplification'):8.3f}  {'':7}      "
          f"{f('tmemd_pages_put'):.0f} pages put; DRAM-tier tmemd {f('ram_write_amplification'):.3f} over "
          f"{f('ram_pages_put'):.0f} pages (write-through: every put reaches the log)")
tput = f("tls_put_pages_per_s") / f("tmemd_put_pages_per_s")
tget = f("tls_get_hits_per_s") / f("tmemd_get_hits_per_s")
row("TLS: puts over mutual TLS / plaintext", tput, 0.8,
    f"{f('tls_put_pages_per_s'):.0f} vs {f('tmemd_put_pages_per_s'):.0f} pages/s")
row("TLS: get hits over mutual TLS / plaintext", tget, 0.8,
    f"{f('tls_get_hits_per_s'):.0f} vs {f('tmemd_get_hits_per_s'):.0f} hits/s; p99 single get "
    f"{f('tls_single_get_p99_us'):.0f} vs {f('tmemd_single_get_p99_us'):.0f} us")
if "grpc_put_pages_per_s" in e:
    row("wire / gRPC Session streams: puts", f("tmemd_put_pages_per_s") / f("grpc_put_pages_per_s"), None,
        f"gRPC {f('grpc_put_pages_per_s'):.0f} pages/s "
        f"({f('grpc_put_pages_per_s') / f('memcached_put_pages_per_s'):.3f} of memcached)")
    row("wire / gRPC Session streams: get hits", f("tmemd_get_hits_per_s") / f("grpc_get_hits_per_s"), None,
        f"gRPC {f('grpc_get_hits_per_s'):.0f} hits/s; single get p50 / p99 "
        f"{f('grpc_single_get_p50_us'):.0f} / {f('grpc_single_get_p99_us'):.0f} us")
PY
