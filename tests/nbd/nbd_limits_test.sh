#!/usr/bin/env bash
# Memory stays bounded under clients that send maximum-size reads and never read the replies:
# each connection holds at most nbd.max_bytes_in_flight, all of them at most
# nbd.max_total_bytes_in_flight (tmemd's RSS measured here), and a real client still gets served.
set -uo pipefail
source "$TEST_SRCDIR/tmem/tests/testing/testlib.sh"
TMEMD="$R/server/main/tmemd"
export PATH="/usr/bin:$PATH"
need nbdinfo libnbd-bin
NP=$(port)
start_tmemd --device="$T/c.img" --device-size=64M --listen="127.0.0.1:$(port)" --metrics-listen= \
  --nbd-listen="127.0.0.1:$NP" --export="big=$T/big.img:1G" --nbd-max-bytes-in-flight=64M \
  --nbd-max-total-bytes-in-flight=96M
trap 'kill -KILL $D 2>/dev/null; kill $(jobs -p) 2>/dev/null' EXIT
wait_nbd "nbd://127.0.0.1:$NP/big" $D "$T/tmemd.log"
rss() { awk '/^VmRSS/ {print $2 * 1024}' "/proc/$D/status"; }
base=$(rss)
cat > "$T/flood.py" <<'PY'
import socket, struct, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
def rd(k):
    b = b""
    while len(b) < k: b += s.recv(k - len(b))
    return b
rd(18); s.sendall(struct.pack(">I", 3))
name = b"big"
s.sendall(struct.pack(">QII", 0x49484156454F5054, 1, len(name)) + name)  # NBD_OPT_EXPORT_NAME
rd(10)
s.setblocking(False)
sent = 0
for i in range(n):
    req = struct.pack(">IHHQQI", 0x25609513, 0, 0, i, (i * (32 << 20)) % (1 << 30), 32 << 20)  # READ 32M
    try:
        s.send(req); sent += 1
    except BlockingIOError:
        break
open(sys.argv[3], "w").write("%d\n" % sent)
time.sleep(30)  # never reads a reply
PY
$PY "$T/flood.py" "$NP" 200 "$T/f1" & 
$PY "$T/flood.py" "$NP" 200 "$T/f2" &
$PY "$T/flood.py" "$NP" 200 "$T/f3" &
for _ in $(seq 100); do [ -s "$T/f1" ] && [ -s "$T/f2" ] && [ -s "$T/f3" ] && break; sleep 0.05; done
sleep 3
peak=$(rss)
growth=$(( (peak - base) / 1048576 ))
# Three clients x 64M each would be 192M; the total bound is 96M (+ 48M of thread stacks, buffers).
[ "$growth" -lt 144 ] && ok "three clients that never read 200 x 32M reads: RSS grew $growth MiB (bound 96M + 48M)" \
  || bad "RSS grew $growth MiB with the total in-flight bound at 96M"
nbdinfo "nbd://127.0.0.1:$NP/big" 2>&1 | grep -q "export-size: 1073741824" \
  && ok "a real client attaches while they wait" || bad "nbdinfo while flooded"
finish "$T/tmemd.log"
