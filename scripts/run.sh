#!/usr/bin/env bash
# The run command (README): installs what is missing, builds, makes a CA and certificates on
# first use (scripts/make-certs.sh, in $TMEM_DATA_DIR/tls), starts tmemd with TLS on a default
# file-backed cache device (created and formatted on first use) with one TLS-only NBD export on
# a 256 MiB file, demonstrates page pools through tmemctl over mutual TLS as tenant "demo", the
# export through nbdinfo and nbdcopy over TLS, a second tenant that cannot see the first one's
# pool, and the metrics endpoint, then stops tmemd cleanly with SIGTERM (its pages are kept).
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
TLS="$DATA/tls"
[ -s "$TLS/demo.crt" ] || scripts/make-certs.sh "$TLS" demo other
CTL="bazel-bin/client/tmemctl --server=127.0.0.1:$PORT --tls-ca=$TLS/ca.crt --tls-cert=$TLS/demo.crt --tls-key=$TLS/demo.key"
OTHER="bazel-bin/client/tmemctl --server=127.0.0.1:$PORT --tls-ca=$TLS/ca.crt --tls-cert=$TLS/other.crt --tls-key=$TLS/other.key"
# libnbd's certificate directory for the NBD client.
mkdir -p "$TLS/nbd-demo"
cp "$TLS/ca.crt" "$TLS/nbd-demo/ca-cert.pem"
cp "$TLS/demo.crt" "$TLS/nbd-demo/client-cert.pem"
cp "$TLS/demo.key" "$TLS/nbd-demo/client-key.pem"
NBD="nbds://127.0.0.1:$NPORT/demo?tls-certificates=$TLS/nbd-demo"
cat > "$DATA/tmemd.yaml" <<YAML
device: {path: $DATA/cache.img, size: $SIZE}
metadata_dir: $DATA/index
listen: ["127.0.0.1:$PORT"]
metrics_listen: 127.0.0.1:$MPORT
tls: {cert: $TLS/server.crt, key: $TLS/server.key, ca: $TLS/ca.crt}
tenants:
  - {name: demo, roles: [pages, admin]}
  - {name: other}
nbd: {listen: ["127.0.0.1:$NPORT"]}
exports:
  - {name: demo, backend: $DATA/demo-disk.img, size: 256M, tls: require, allow: [demo]}
YAML

bazel-bin/server/main/tmemd --config="$DATA/tmemd.yaml" 2> "$DATA/tmemd.log" &
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
echo; echo "== tenant 'other' (its own certificate) sees none of it"
$OTHER pools
$OTHER get --pool="$POOL" --object=demo-file --count=1 || echo "(pool $POOL is NOT_FOUND for tenant 'other')"
echo; echo "== a TLS-only NBD export: nbds://127.0.0.1:$NPORT/demo"
$CTL exports
nbdinfo "$NBD" | grep -E 'export-size|can_flush|can_multi_conn|block_size_maximum'
nbdinfo "nbd://127.0.0.1:$NPORT/demo" > /dev/null 2>&1 || echo "(a plaintext client is refused: the export is TLS-only)"
head -c 16M /dev/urandom > "$DATA/demo-16M.in"
nbdcopy "$DATA/demo-16M.in" "$NBD"
nbdcopy "$NBD" "$DATA/demo-disk.out"
cmp -n 16777216 "$DATA/demo-disk.out" "$DATA/demo-16M.in" && echo "nbdcopy wrote 16 MiB over TLS and read them back bit-exact"
rm -f "$DATA/demo-disk.out"
echo; echo "== metrics: http://127.0.0.1:$MPORT/metrics"
curl -s "http://127.0.0.1:$MPORT/metrics" \
  | grep -E '^tmem_pool_(puts|gets)_total|^tmem_log_free_segments|^tmem_nbd_(read|written)_bytes_total' || true
echo; echo "== stopping tmemd (SIGTERM: clean stop, pages kept)"
kill -TERM $TMEMD; wait $TMEMD; trap - EXIT
tail -n 2 "$DATA/tmemd.log"
