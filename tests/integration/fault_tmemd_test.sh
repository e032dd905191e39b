#!/usr/bin/env bash
# Faults inside tmemd, from the outside (a test build whose page device can hang or fail,
# tests/testing/tmemd_fault.cc): the page service's health follows the device for a real gRPC
# health client (tmemctl health) and tmemctl info; puts return within their bound while the
# device hangs and a page still in RAM is served; SIGTERM with the device hung exits within
# stop_timeout_ms, and the next start treats that stop as unclean.
set -uo pipefail
source "$TEST_SRCDIR/tmem/tests/testing/testlib.sh"
TMEMD="$R/tests/testing/tmemd_fault"
CTL_BIN="$R/client/tmemctl"
P=$(port)
CTL() { "$CTL_BIN" --server="127.0.0.1:$P" --timeout-ms=5000 "$@"; }
export TMEM_FAULT_CONTROL="$T/fault"
echo ok > "$TMEM_FAULT_CONTROL"
cat > "$T/tmemd.yaml" <<YAML
device:
  path: $T/c.img
  size: 64M
listen: ["127.0.0.1:$P"]
metrics_listen: ""
shutdown_timeout_ms: 500
stop_timeout_ms: 3000
pool:
  put_wait_ms: 100
health:
  check_interval_ms: 100
  io_deadline_ms: 500
  io_error_threshold: 2
  window_ms: 1000
YAML
start_tmemd --config="$T/tmemd.yaml"
trap 'kill -KILL $D 2>/dev/null' EXIT
until_ok CTL info || fail "tmemd_fault did not come up: $(cat "$T/tmemd.log")"
# waits up to 15 s for `tmemctl health --service=$1` to print $2
await_health() {
  for _ in $(seq 150); do [ "$(CTL health --service="$1" 2>/dev/null)" = "$2" ] && return 0; sleep 0.1; done
  return 1
}
[ "$(CTL health --service=tmem.v1.PagePool)" = SERVING ] && ok "page service SERVING at start" \
  || bad "page service at start: $(CTL health --service=tmem.v1.PagePool)"

POOL=$(CTL create-pool --page-size=4096)
head -c 4096 /dev/urandom > "$T/first"
CTL put --pool="$POOL" --object=first --file="$T/first" 2>/dev/null || bad "put of the first page"

# --- the device hangs ---
echo hang > "$TMEM_FAULT_CONTROL"
head -c $((12 << 20)) /dev/urandom > "$T/big"
start=$SECONDS
for i in 1 2 3; do CTL put --pool="$POOL" --object="big$i" --file="$T/big" 2>/dev/null || bad "put $i failed"; done
took=$((SECONDS - start))
[ "$took" -le 20 ] && ok "36 MiB of puts into a hung device returned in ${took} s (each call within pool.put_wait_ms)" \
  || bad "puts into a hung device took ${took} s"
if await_health tmem.v1.PagePool NOT_SERVING; then ok "hung device: page service NOT_SERVING"; else bad "hung device: still $(CTL health --service=tmem.v1.PagePool)"; fi
[ "$(CTL health)" = NOT_SERVING ] && ok "hung device: the whole server NOT_SERVING" || bad "server: $(CTL health)"
[ "$(CTL health --service=tmem.v1.Admin)" = SERVING ] && ok "hung device: tmem.v1.Admin (liveness) still SERVING" \
  || bad "admin: $(CTL health --service=tmem.v1.Admin)"
CTL info > "$T/info" 2>&1
grep -q "health      tmem.v1.PagePool NOT_SERVING: page device I/O hung" "$T/info" \
  && ok "tmemctl info names the reason" || bad "info: $(cat "$T/info")"
grep -q "tmem.v1.PagePool NOT_SERVING: page device I/O hung" "$T/tmemd.log" && ok "the log names the reason" \
  || bad "log: $(tail -5 "$T/tmemd.log")"
CTL get --pool="$POOL" --object=first --file="$T/first.out" 2> "$T/get.err"
cmp -s "$T/first" "$T/first.out" && ok "a page still in RAM is served while the device hangs" \
  || bad "get from RAM: $(cat "$T/get.err")"

# SIGTERM with the device hung: the stop is bounded, and honestly not clean.
start=$(date +%s%N)
kill -TERM $D
wait $D
rc=$?
ms=$((($(date +%s%N) - start) / 1000000))
[ "$rc" -eq 1 ] && ok "SIGTERM with the device hung: exit 1 (not a clean stop)" || bad "exit status $rc"
[ "$ms" -le 5000 ] && ok "SIGTERM with the device hung: exited in $ms ms (stop_timeout_ms 3000)" \
  || bad "exit took $ms ms"
grep -q "did not finish within stop_timeout_ms" "$T/tmemd.log" && ok "the log says why the stop was not clean" \
  || bad "log: $(tail -5 "$T/tmemd.log")"

# --- the next start: the previous stop was unclean, so no page is kept ---
echo ok > "$TMEM_FAULT_CONTROL"
start_tmemd --config="$T/tmemd.yaml"
until_ok CTL info || fail "tmemd_fault did not come back: $(cat "$T/tmemd.log")"
CTL info | grep -q "warm start  no" && ok "after the bounded stop, the next start keeps no page" \
  || bad "info after restart: $(CTL info)"
[ "$(CTL health --service=tmem.v1.PagePool)" = SERVING ] && ok "page service SERVING after the restart" \
  || bad "after restart: $(CTL health --service=tmem.v1.PagePool)"

# --- the device fails writes, then recovers ---
echo fail > "$TMEM_FAULT_CONTROL"
for i in 1 2; do CTL put --pool="$POOL" --object="f$i" --file="$T/big" 2>/dev/null; done
if await_health tmem.v1.PagePool NOT_SERVING; then ok "failing writes: page service NOT_SERVING"; else bad "failing writes: still $(CTL health --service=tmem.v1.PagePool)"; fi
CTL info | grep -q "page device I/O errors" && ok "tmemctl info: the I/O errors" || bad "info: $(CTL info)"
echo ok > "$TMEM_FAULT_CONTROL"
if await_health tmem.v1.PagePool SERVING; then ok "device healthy again: SERVING"; else bad "still $(CTL health --service=tmem.v1.PagePool)"; fi
CTL put --pool="$POOL" --object=after --file="$T/first" 2>/dev/null
CTL get --pool="$POOL" --object=after --file="$T/after.out" 2>/dev/null
cmp -s "$T/first" "$T/after.out" && ok "puts and gets work again" || bad "put/get after recovery"

# Pages whose writes failed were never on the device: this run cannot vouch for a warm restart.
kill -TERM $D
wait $D
rc=$?
[ "$rc" -eq 1 ] && grep -q "clean stop failed, the next start drops every page: a segment write failed" "$T/tmemd.log" \
  && ok "after lost writes, SIGTERM stops uncleanly and says why" || bad "exit $rc: $(tail -3 "$T/tmemd.log")"
# A run whose device never failed stops cleanly and quickly.
start_tmemd --config="$T/tmemd.yaml"
until_ok CTL info || fail "tmemd_fault did not come back: $(cat "$T/tmemd.log")"
kill -TERM $D
wait $D
rc=$?
[ "$rc" -eq 0 ] && ok "SIGTERM with a healthy device: clean stop (exit 0)" || bad "exit $rc: $(tail -3 "$T/tmemd.log")"
trap - EXIT
finish "$T/tmemd.log"
