#!/usr/bin/env bash
# Write-back cannot reorder: a write to a remote store (nbdkit) that gets no reply within the
# backend's request timeout is not sent again, answers EIO within the bound, and every later write
# to that store waits until the old connection was closed cleanly after NBD_CMD_DISC (the server
# finished the held write first). The store holds the newest data, for a plain export and for a
# cached one. A store without FLUSH is refused for write-back caching.
set -uo pipefail
source "$TEST_SRCDIR/tmem/tests/testing/testlib.sh"
export PATH="/usr/bin:$PATH"
TMEMD="$R/server/main/tmemd"
CTL="$R/client/tmemctl"
need nbdkit nbdkit
GP=$(port); NP=$(port)
S=$(mktemp -d /tmp/tmem-fence.XXXXXX)
DELAY=5  # the held write takes this long; the backend's request timeout is 1 s

# A file store whose first write after $ARM exists is held $DELAY seconds; every write that lands
# is logged with its first byte, in landing order.
cat > "$T/store.sh" <<'SH'
#!/bin/bash
case "$1" in
  thread_model) echo parallel ;;
  get_size) stat -c %s "$IMG" ;;
  can_write|can_multi_conn) exit 0 ;;
  can_flush) [ -n "$NOFLUSH" ] && exit 3; exit 0 ;;
  can_fua) echo emulate ;;
  pread) dd if="$IMG" skip="$4" count="$3" iflag=count_bytes,skip_bytes status=none ;;
  pwrite)
    buf=$(mktemp "$tmpdir/w.XXXXXX"); cat > "$buf"
    tag=$(head -c 1 "$buf")
    if [ -e "$ARM" ] && mkdir "$tmpdir/taken" 2>/dev/null; then
      echo "hold $4 $tag" >> "$LOG"; sleep "$DELAY"
    fi
    dd if="$buf" of="$IMG" seek="$4" conv=notrunc oflag=seek_bytes status=none; rm -f "$buf"
    echo "land $4 $tag" >> "$LOG" ;;
  flush) sync "$IMG" ;;
  *) exit 2 ;;
esac
SH
chmod +x "$T/store.sh"
start_store() {  # start_store NAME [NOFLUSH]
  truncate -s 4M "$T/$1.img"
  IMG="$T/$1.img" ARM="$T/$1.arm" LOG="$T/$1.log" DELAY=$DELAY NOFLUSH="${2:-}" \
    nbdkit --exit-with-parent -f -U "$S/$1.sock" sh "$T/store.sh" 2> "$T/$1.nbdkit" &
  for _ in $(seq 100); do [ -S "$S/$1.sock" ] && break; sleep 0.05; done
}
start_store plain
start_store cached
cat > "$T/tmemd.yaml" <<YAML
device:
  path: $T/pages.img
  size: 64M
listen: 127.0.0.1:$GP
metrics_listen: ""
health:
  check_interval_ms: 100
nbd:
  listen: 127.0.0.1:$NP
exports:
  - name: plain
    backend: nbd+unix:///?socket=$S/plain.sock
    backend_request_timeout_ms: 1000
  - name: cached
    backend: nbd+unix:///?socket=$S/cached.sock
    backend_request_timeout_ms: 1000
    cache:
      device: $T/cache.img
      size: 32M
      migrate_idle_ms: 600000
YAML
start_tmemd --config="$T/tmemd.yaml"
trap 'kill -KILL $D 2>/dev/null; rm -rf "$S"' EXIT
wait_nbd "nbd://127.0.0.1:$NP/plain" $D "$T/tmemd.log" || fail "tmemd: $(cat "$T/tmemd.log")"

# --- a plain export: B is held by the store past the timeout, then C is written ---
touch "$T/plain.arm"
$PY - "nbd://127.0.0.1:$NP/plain" "$CTL" "127.0.0.1:$GP" > "$T/plain.out" 2>&1 <<'PY'
import nbd, subprocess, sys, time
def health():
    r = subprocess.run([sys.argv[2], "--server=" + sys.argv[3], "health", "--service=nbd:plain"],
                       capture_output=True, text=True)
    return r.stdout.strip()
h = nbd.NBD()
h.connect_uri(sys.argv[1])
t0 = time.time()
try:
    h.pwrite(b"B" * 4096, 0)
    print("B acknowledged")
except nbd.Error as e:
    print("B failed errno", e.errno)
print("B answered in %.1f s" % (time.time() - t0))
time.sleep(0.5)
print("health while held back:", health())
# C is retried until the store takes it (writes are held back while B may still land).
t0 = time.time()
while True:
    try:
        h.pwrite(b"C" * 4096, 0)
        h.flush()
        break
    except nbd.Error as e:
        if time.time() - t0 > 30:
            raise
        time.sleep(0.2)
print("C acknowledged after %.1f s" % (time.time() - t0))
time.sleep(0.5)
print("health after:", health())
PY
cat "$T/plain.out"
b_s=$(awk '/B answered in/ {print $4}' "$T/plain.out")
grep -q "B failed errno" "$T/plain.out" && ok "a write that got no reply in time answers EIO" || bad "B: $(cat "$T/plain.out")"
[ -n "$b_s" ] && awk -v s="$b_s" 'BEGIN {exit !(s < 4.0)}' \
  && ok "the EIO came in ${b_s} s, before the held write landed (${DELAY} s)" || bad "B answered in ${b_s:-?} s"
grep -q "health while held back: NOT_SERVING" "$T/plain.out" && grep -q "health after: SERVING" "$T/plain.out" \
  && ok "the plain export is NOT_SERVING while writes are held back, SERVING after" || bad "health: $(grep health "$T/plain.out")"
sleep 1
[ "$(head -c 1 "$T/plain.img")" = C ] && ok "plain export: the store holds the newer write C" \
  || bad "plain export: the store holds '$(head -c 1 "$T/plain.img")'"
grep "^land 0 " "$T/plain.log" | tr '\n' ' ' > "$T/plain.order"
[ "$(cat "$T/plain.order")" = "land 0 B land 0 C " ] && ok "plain export: B landed once, then C (never C before B, B not resent)" \
  || bad "plain export: landing order: $(cat "$T/plain.order")"
grep -q "closed cleanly after NBD_CMD_DISC" "$T/tmemd.log" && ok "the log says when the write in doubt settled" \
  || bad "log: $(grep -i nbd "$T/tmemd.log" | tail -3)"

# --- a cached export: migration writes B, the store holds it; C is written meanwhile ---
U="nbd://127.0.0.1:$NP/cached"
nbdsh -u "$U" -c 'h.pwrite(b"B" * 4096, 0); h.flush()' || bad "write B to the cached export"
touch "$T/cached.arm"
timeout 60 "$CTL" --server=127.0.0.1:$GP cache --export=cached --action=migrate-now > "$T/m1.out" 2>&1 &
M1=$!
for _ in $(seq 100); do grep -q "^hold" "$T/cached.log" 2>/dev/null && break; sleep 0.05; done
grep -q "^hold 0 B" "$T/cached.log" && ok "migration's write of B is held by the store" || bad "no held write: $(cat "$T/cached.log" 2>/dev/null)"
nbdsh -u "$U" -c 'h.pwrite(b"C" * 4096, 0); h.flush()' && ok "the cached export takes C while B is held" || bad "write C"
wait $M1
# A drain fails while write-back is held back (B may still land); it is tried until it goes through.
drained=
for _ in $(seq 60); do
  timeout 60 "$CTL" --server=127.0.0.1:$GP cache --export=cached --action=drain > "$T/drain.out" 2>&1 && { drained=1; break; }
  sleep 0.5
done
[ -n "$drained" ] || bad "drain: $(cat "$T/drain.out")"
dirty=$(awk '$1 == "dirty_bytes" {print $2}' "$T/drain.out")
[ "$dirty" = 0 ] && ok "cached export drained" || bad "drain left ${dirty:-?} dirty bytes: $(head -3 "$T/drain.out")"
[ "$(head -c 1 "$T/cached.img")" = C ] && ok "cached export: after the drain the store holds C" \
  || bad "cached export: the store holds '$(head -c 1 "$T/cached.img")'"
grep "^land 0 " "$T/cached.log" | tail -1 | grep -q "land 0 C" && ok "cached export: C is the last write to land" \
  || bad "cached export: landing order: $(grep '^land 0' "$T/cached.log" | tr '\n' ' ')"
kill -TERM $D; wait $D

# --- a store that cannot FLUSH is refused for write-back caching ---
start_store noflush 1
cat > "$T/noflush.yaml" <<YAML
device:
  path: $T/pages.img
listen: 127.0.0.1:$GP
metrics_listen: ""
nbd:
  listen: 127.0.0.1:$NP
exports:
  - name: cached
    backend: nbd+unix:///?socket=$S/noflush.sock
    cache:
      device: $T/cache2.img
      size: 32M
YAML
"$TMEMD" --config="$T/noflush.yaml" 2> "$T/noflush.err"; rc=$?
[ "$rc" -ne 0 ] && grep -q "cannot FLUSH" "$T/noflush.err" && ok "a store without FLUSH is refused for caching, saying why" \
  || bad "no-FLUSH store: exit $rc: $(tail -2 "$T/noflush.err")"
[ ! -s "$T/cache2.img" ] || [ -z "$(tr -d '\0' < "$T/cache2.img" | head -c 1)" ] \
  && ok "the refused export's cache device was not formatted" || bad "cache2.img was written"
trap - EXIT
rm -rf "$S"
finish "$T/tmemd.log"
