#!/usr/bin/env bash
# A cached export (writeback cache on a cache file in front of a backing file) driven by real
# NBD clients:
#  - nbdcopy in and out gives back the same bytes; after a restart the export still reads every
#    write (index rebuilt from the cache file) and migration writes them back;
#  - kill -9 loop: a writer with 32 requests in flight writes versioned blocks and flushes at
#    random points; tmemd is killed at a random moment; after each restart every block reads
#    back whole, as itself, as new as its last flushed version or newer, and never a version that
#    was not sent. CYCLES (default 5) sets the number of kills; the lab runs 50.
#  - bad configurations are refused with a message naming the cause.
set -uo pipefail
source "$TEST_SRCDIR/tmem/tests/testing/testlib.sh"
export PATH="/usr/bin:$PATH"
TMEMD="$R/server/main/tmemd"
CTL="$R/client/tmemctl"
CRASH="$R/tests/nbd/cache_crash.py"
CYCLES=${CYCLES:-5}
GP=$(port); NP=$(port)

truncate -s 64M "$T/backing.img"
cat > "$T/tmemd.yaml" <<YAML
device:
  path: $T/pages.img
  size: 64M
listen: 127.0.0.1:$GP
metrics_listen: ""
nbd:
  listen: 127.0.0.1:$NP
exports:
  - name: cached
    backend: $T/backing.img
    cache:
      device: $T/cache.img
      size: 48M
      migrate_idle_ms: 20
      # Long, so that only FLUSH (not the buffer's own deadline) makes a write durable in time:
      # a flush that returned early would lose data in almost every cycle.
      buffer_deadline_ms: 3000
      # Every check below runs with the RAM tier: it must never serve a lost or older version.
      ram_cache: 24M
YAML
U="nbd://127.0.0.1:$NP/cached"
D=
start() {
  "$TMEMD" --config="$T/tmemd.yaml" 2>> "$T/tmemd.log" &
  D=$!
  for _ in $(seq 300); do
    kill -0 $D 2>/dev/null || { echo "tmemd exited: $(tail -5 "$T/tmemd.log")"; return 1; }
    nbdinfo "$U" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  return 1
}
trap 'kill -KILL $D 2>/dev/null' EXIT

start || { echo "0 passed"; exit 1; }
head -c 16M /dev/urandom > "$T/in"
nbdcopy "$T/in" "$U" && nbdsh -u "$U" -c 'h.flush()' || bad "nbdcopy into the cached export"
nbdcopy "$U" "$T/out" && cmp -s <(head -c 16M "$T/out") "$T/in" && ok "nbdcopy round trip through the cache" \
  || bad "round trip"
"$CTL" --server=127.0.0.1:$GP cache --export=cached > "$T/ram.out" 2>&1
ram_hits=$(sed -n 's/^read_lines .*(\([0-9]*\) from RAM).*/\1/p' "$T/ram.out")
[ "${ram_hits:-0}" -gt 0 ] && grep -q "^ram_tier .* of 25165824 bytes" "$T/ram.out" \
  && ok "reads of just-written lines come from the RAM tier ($ram_hits lines)" || bad "RAM tier: $(cat "$T/ram.out")"
# Stop tmemd cleanly and start it again: the restart rebuilds the index from the cache file and
# serves every write from it at once; migration writes them back in the background.
kill -TERM $D; wait $D
start || bad "restart"
nbdcopy "$U" "$T/out2" && cmp -s <(head -c 16M "$T/out2") "$T/in" && ok "after a restart the export reads every write" \
  || bad "export differs after restart"
for _ in $(seq 200); do
  "$CTL" --server=127.0.0.1:$GP cache --export=cached 2>/dev/null | grep -q "^dirty_bytes *0$" && break
  sleep 0.1
done
cmp -s <(head -c 16M "$T/backing.img") "$T/in" && ok "after a restart migration writes every dirty line back" \
  || bad "backing file differs after restart: $("$CTL" --server=127.0.0.1:$GP cache --export=cached 2>&1 | head -3)"

# Operations through tmemctl: with background migration held off, writes stay dirty; drain
# writes them all back and leaves the backing file identical to the export.
C() { "$CTL" --server=127.0.0.1:$GP "$@"; }
C cache --export=cached --action=set --migrate-idle-ms=600000 > "$T/set.out" 2>&1 \
  && grep -q "migrate_idle_ms 600000" "$T/set.out" && ok "tmemctl cache set changes a tunable" \
  || bad "cache set: $(cat "$T/set.out")"
head -c 8M /dev/urandom > "$T/in2"
nbdcopy "$T/in2" "$U" || bad "nbdcopy of new data"
C cache --export=cached > "$T/status.out" 2>&1
dirty=$(awk '$1 == "dirty_bytes" {print $2}' "$T/status.out")
[ "${dirty:-0}" -gt 0 ] && ok "tmemctl cache shows $dirty dirty bytes" || bad "cache status: $(cat "$T/status.out")"
cmp -s <(head -c 8M "$T/backing.img") "$T/in2" && bad "the writes went straight to the backing file" \
  || ok "the new data is not in the backing file before the drain"
C cache --export=cached --action=drain > "$T/drain.out" 2>&1
dirty=$(awk '$1 == "dirty_bytes" {print $2}' "$T/drain.out")
nbdcopy "$U" "$T/export.now"
[ "$dirty" = "0" ] && cmp -s "$T/export.now" "$T/backing.img" \
  && ok "after tmemctl cache --action=drain the backing file is byte-identical to the export" \
  || bad "drain: dirty ${dirty:-?}: $(head -3 "$T/drain.out")"
C cache --export=nosuch > "$T/nosuch.out" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "no export named 'nosuch'" "$T/nosuch.out" && ok "an unknown export is named in the error" \
  || bad "unknown export: rc $rc $(cat "$T/nosuch.out")"
C cache --export=cached --action=set --migrate-batch-segments=0 > "$T/bad.out" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "migrate_batch_segments: 0 is outside 1..4096" "$T/bad.out" && ok "a bad tunable is refused" \
  || bad "bad tunable: rc $rc $(cat "$T/bad.out")"
C cache --export=cached --action=set --migrate-idle-ms=20 > /dev/null 2>&1 || bad "restore the idle time"

# kill -9 loop, from a zeroed export.
nbdsh -u "$U" -c 'h.zero(h.get_size(), 0)' -c 'h.flush()' || bad "zeroing the export"
rm -f "$T/state.json"
for cycle in $(seq "$CYCLES"); do
  secs=$($PY -c "import random; print(round(random.uniform(0.5, 2.0), 2))")
  $PY "$CRASH" write "$T/state.json" "$U" 30 "$cycle" 2>> "$T/writer.log" &
  W=$!
  sleep "$secs"
  kill -KILL $D; wait $D 2>/dev/null
  wait $W
  start || { bad "restart after kill -9 (cycle $cycle)"; break; }
  if $PY "$CRASH" verify "$T/state.json" "$U" > "$T/verify.out" 2>&1; then
    :
  else
    bad "cycle $cycle: $(head -5 "$T/verify.out")"
    break
  fi
done
[ "$fails" -eq 0 ] && ok "$CYCLES kill -9 cycles: every block whole, as new as its last flush, never unsent data" \
  && grep "writer:" "$T/writer.log" | tail -2

# Bad configurations are refused, naming the cause.
kill -TERM $D; wait $D
out=$("$TMEMD" --device="$T/pages.img" --listen=127.0.0.1:$GP --metrics-listen= --nbd-listen=127.0.0.1:$NP \
  --export="x=$T/backing.img" --export-cache="$T/pages.img" 2>&1)
rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q "page pool" && ok "the page pool device is refused as a cache" \
  || bad "pool device as a cache: rc $rc: $out"
truncate -s 32M "$T/other.img"
out=$("$TMEMD" --device="$T/pages.img" --listen=127.0.0.1:$GP --metrics-listen= --nbd-listen=127.0.0.1:$NP \
  --export="x=$T/other.img" --export-cache="$T/cache.img" --format-export-cache=x 2>&1)
rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q "backing store of" && ok "another store's cache is refused, even with --format" \
  || bad "other store's cache: rc $rc: $out"
out=$("$TMEMD" --config="$T/tmemd.yaml" --export="ro=$T/backing.img:ro" --export-cache="$T/c2.img:8M" 2>&1)
rc=$?
[ $rc -ne 0 ] && echo "$out" | grep -q "read-only export cannot have a writeback cache" \
  && ok "a read-only export with a cache is refused" || bad "read-only cached export: rc $rc: $out"

# The backing store fails (nbdkit's error filter: every write and flush gets EIO while the
# error file exists): migration fails and is retried, nothing dirty is lost, the export stays
# readable; once the store heals, a drain writes everything back.
S=$(mktemp -d /tmp/tmem-nbdc.XXXXXX)
truncate -s 16M "$T/eio-backing.img"
nbdkit --exit-with-parent -f -U "$S/eio.sock" --filter=error file "$T/eio-backing.img" \
  error=EIO error-pwrite-rate=100% error-file="$T/eio-on" 2> "$T/nbdkit-eio.log" &
NK=$!
for _ in $(seq 100); do [ -S "$S/eio.sock" ] && break; sleep 0.05; done
EP=$(port); EG=$(port)
"$TMEMD" --device="$T/eio-pages.img" --device-size=32M --listen=127.0.0.1:$EG --metrics-listen= \
  --nbd-listen=127.0.0.1:$EP --export="e=nbd+unix:///?socket=$S/eio.sock" --export-cache="$T/eio-cache.img:32M" \
  2> "$T/tmemd-eio.log" &
D=$!
EU="nbd://127.0.0.1:$EP/e"
wait_nbd "$EU"
touch "$T/eio-on"
head -c 4M /dev/urandom > "$T/eio-in"
nbdcopy "$T/eio-in" "$EU" && nbdsh -u "$EU" -c 'h.flush()' || bad "writes to the cached export while its store fails"
"$CTL" --server=127.0.0.1:$EG cache --export=e --action=migrate-now > "$T/eio-mig.out" 2>&1; rc=$?
[ $rc -eq 1 ] && grep -q "Input/output error" "$T/eio-mig.out" && ok "migrate-now reports the store's EIO" \
  || bad "migrate-now with a failing store: rc $rc $(cat "$T/eio-mig.out")"
sleep 1
"$CTL" --server=127.0.0.1:$EG cache --export=e > "$T/eio-status.out" 2>&1
errs=$(sed -n 's/^migrated_bytes.*(\([0-9]*\) failed batches)/\1/p' "$T/eio-status.out")
[ "${errs:-0}" -ge 2 ] && grep -q "migration failed, will retry" "$T/tmemd-eio.log" \
  && ok "failed migrations are counted ($errs) and logged, and retried" || bad "errors: $(cat "$T/eio-status.out")"
nbdcopy "$EU" "$T/eio-out" && cmp -s <(head -c 4M "$T/eio-out") "$T/eio-in" \
  && ok "the export stays readable with every write while the store fails" || bad "reads during store failure"
rm -f "$T/eio-on"
"$CTL" --server=127.0.0.1:$EG --timeout-ms=60000 cache --export=e --action=drain > "$T/eio-drain.out" 2>&1 \
  && cmp -s <(head -c 4M "$T/eio-backing.img") "$T/eio-in" \
  && ok "once the store heals, a drain writes every dirty line back" || bad "drain after heal: $(cat "$T/eio-drain.out")"
kill -TERM $D; wait $D; kill $NK; rm -rf "$S"

echo "$fails failed"
[ "$fails" -eq 0 ]
