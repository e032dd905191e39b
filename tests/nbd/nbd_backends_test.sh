#!/usr/bin/env bash
# An export whose backend is a remote NBD server (nbdkit, reached through libnbd over a unix
# socket): data goes through to the remote file, the backend reconnects when the remote
# server restarts, and an unreachable backend costs EIO, not a crash. Also the connection
# limit of the NBD listener.
set -uo pipefail
source "$TEST_SRCDIR/tmem/tests/testing/testlib.sh"
export PATH="/usr/bin:$PATH"
TMEMD="$R/server/main/tmemd"
GP=$(port); NP=$(port); MP=$(port)
S=$(mktemp -d /tmp/tmem-nbdb.XXXXXX)

truncate -s 32M "$T/remote.img"
start_nbdkit() { nbdkit --exit-with-parent -f -U "$S/remote.sock" file "$T/remote.img" 2> "$T/nbdkit.log" & NK=$!; 
  for _ in $(seq 100); do [ -S "$S/remote.sock" ] && break; sleep 0.05; done; }
start_nbdkit
cat > "$T/tmemd.yaml" <<YAML
device:
  path: $T/cache.img
  size: 128M
listen: 127.0.0.1:$GP
metrics_listen: 127.0.0.1:$MP
nbd:
  listen: 127.0.0.1:$NP
  max_connections: 3
exports:
  - name: remote
    backend: nbd+unix:///?socket=$S/remote.sock
YAML
start_tmemd --config="$T/tmemd.yaml"
trap 'kill -KILL $D $NK 2>/dev/null; rm -rf "$S"' EXIT
wait_nbd "nbd://127.0.0.1:$NP/remote" $D "$T/tmemd.log"
U="nbd://127.0.0.1:$NP/remote"

nbdinfo "$U" > "$T/info" 2>&1; grep -q "export-size: 33554432" "$T/info" && ok "remote export has the remote size" || bad "remote size"
head -c 32M /dev/urandom > "$T/in"
nbdcopy "$T/in" "$U" && nbdsh -u "$U" -c 'h.flush()' && cmp -s "$T/in" "$T/remote.img" \
  && ok "writes reach the remote server's file" || bad "remote write-through"

# The remote server crashes and comes back: tmemd's backend reconnects, the data is still there.
kill -KILL $NK; wait $NK 2>/dev/null; rm -f "$S/remote.sock"
start_nbdkit
timeout 60 nbdcopy "$U" "$T/out" 2> "$T/copy.err" && cmp -s "$T/in" "$T/out" \
  && ok "backend reconnects after the remote server restarts" || bad "reconnect: $(cat "$T/copy.err")"

# The remote server is gone for good: reads fail with EIO, tmemd keeps running.
kill -KILL $NK; wait $NK 2>/dev/null; rm -f "$S/remote.sock"
$PY - "$U" > "$T/eio.out" 2>&1 <<'PY'
import nbd, sys, errno
h = nbd.NBD()
h.connect_uri(sys.argv[1])
try:
    h.pread(4096, 0)
    print("read succeeded")
except nbd.Error as e:
    print("errno", e.errno)
    assert e.errno in (errno.EIO, "EIO"), e
print("eio ok")
PY
grep -q "eio ok" "$T/eio.out" && ok "unreachable backend: EIO" || bad "unreachable backend: $(cat "$T/eio.out")"
kill -0 $D && ok "tmemd survives its backend going away" || bad "tmemd died"
start_nbdkit

# Connection limit: 3 open connections; a 4th is closed at once and counted.
$PY - "$U" > "$T/limit.out" 2>&1 <<'PY'
import nbd, sys, time
hs = []
for i in range(3):
    h = nbd.NBD(); h.connect_uri(sys.argv[1]); hs.append(h)
try:
    h = nbd.NBD(); h.connect_uri(sys.argv[1])
    print("fourth connected")
except nbd.Error as e:
    print("fourth refused:", e.string)
for h in hs:
    assert len(h.pread(512, 0)) == 512
    h.shutdown()
time.sleep(0.3)
h = nbd.NBD(); h.connect_uri(sys.argv[1]); h.shutdown()
print("limit ok")
PY
grep -q "fourth refused" "$T/limit.out" && grep -q "limit ok" "$T/limit.out" \
  && ok "max_connections: the 4th connection is refused, later ones are served" || bad "limit: $(cat "$T/limit.out")"
curl -s "127.0.0.1:$MP/metrics" > "$T/metrics"   # not piped into grep -q: pipefail and SIGPIPE
grep -qE '^tmem_nbd_connections_refused_total [1-9]' "$T/metrics" \
  && ok "refused connections are counted" || bad "refused counter"

kill -TERM $D; wait $D; rc=$?
[ $rc -eq 0 ] && ok "tmemd stopped cleanly" || bad "tmemd exit $rc: $(tail -5 "$T/tmemd.log")"
finish "$T/tmemd.log"
echo "all checks passed"
