#!/usr/bin/env bash
# The run command (README): installs what is missing, builds, starts tmemd on a default
# file-backed cache device (created and formatted on first use) with one NBD export on a 256 MiB
# file, demonstrates page pools through tmemctl, the export through nbdinfo and nbdcopy, and the
# metrics endpoint, then stops tmemd cleanly with SIGTERM (its pages are kept for the next start).
#   TMEM_DATA_DIR     device file and page index (default /var/tmp/tmem)
#   TMEM_DEVICE_SIZE  size of the device file when it is created (default 1G)
#   TMEM_PORT / TMEM_METRICS_PORT / TMEM_NBD_PORT  (default 7070 / 9464 / 10809, on 127.0.0.1)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${TMEM_DATA_DIR:-/var/tmp/tmem}
SIZE=${TMEM_DEVICE_SIZE:-1G}
PORT=${TMEM_PORT:-7070}
MPORT=${TMEM_METRICS_PORT:-9464}
NPORT=${TMEM_NBD_PORT:-10809}
scripts/setup.sh
if bazel build //server/main:tmemd //client:tmemctl 2>&1 | grep -E 'ERROR|error:'; then exit 1; fi
mkdir -p "$DATA"
CTL="bazel-bin/client/tmemctl --server=127.0.0.1:$PORT"

bazel-bin/server/main/tmemd --device="$DATA/cache.img" --device-size="$SIZE" --metadata-dir="$DATA/index" \
  --listen="127.0.0.1:$PORT" --metrics-listen="127.0.0.1:$MPORT" \
  --export="demo=$DATA/demo-disk.img:256M" --nbd-listen="127.0.0.1:$NPORT" 2> "$DATA/tmemd.log" &
TMEMD=$!
trap 'kill -TERM $TMEMD 2>/dev/null || true' EXIT
for _ in $(seq 100); do $CTL info >/dev/null 2>&1 && break; sleep 0.1; done
if ! $CTL info; then cat "$DATA/tmemd.log"; exit 1; fi

echo; echo "== a shared pool (the same id on every start for this UUID)"
POOL=$($CTL create-pool --shared-uuid=0123456789abcdef0123456789abcdef --page-size=4096)
echo "pool $POOL"
echo; echo "== put 64 KiB (16 pages) of a file, get them back"
seq 1 20000 > "$DATA/demo.all" && head -c 65536 "$DATA/demo.all" > "$DATA/demo.in"
$CTL put --pool="$POOL" --object=demo-file --file="$DATA/demo.in"
$CTL get --pool="$POOL" --object=demo-file --count=16 --file="$DATA/demo.out"
cmp "$DATA/demo.in" "$DATA/demo.out" && echo "the pages came back bit-exact"
echo; echo "== flush page 3, then get pages 2..4"
$CTL flush --pool="$POOL" --object=demo-file --index=3
$CTL get --pool="$POOL" --object=demo-file --index=2 --count=3 > /dev/null
echo; $CTL stats --pool="$POOL"
echo; echo "== an NBD export: nbd://127.0.0.1:$NPORT/demo"
$CTL exports
nbdinfo "nbd://127.0.0.1:$NPORT/demo" | grep -E 'export-size|can_flush|can_multi_conn|block_size_maximum'
head -c 16M /dev/urandom > "$DATA/demo-16M.in"
nbdcopy "$DATA/demo-16M.in" "nbd://127.0.0.1:$NPORT/demo"
nbdcopy "nbd://127.0.0.1:$NPORT/demo" "$DATA/demo-disk.out"
cmp -n 16777216 "$DATA/demo-disk.out" "$DATA/demo-16M.in" && echo "nbdcopy wrote 16 MiB and read them back bit-exact"
rm -f "$DATA/demo-disk.out"
echo; echo "== metrics: http://127.0.0.1:$MPORT/metrics"
curl -s "http://127.0.0.1:$MPORT/metrics" \
  | grep -E '^tmem_pool_(puts|gets)_total|^tmem_log_free_segments|^tmem_nbd_(read|written)_bytes_total' || true
echo; echo "== stopping tmemd (SIGTERM: clean stop, pages kept)"
kill -TERM $TMEMD; wait $TMEMD; trap - EXIT
tail -n 2 "$DATA/tmemd.log"
