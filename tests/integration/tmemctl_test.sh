#!/usr/bin/env bash
# tmemctl against a real tmemd on loopback: file round trip, flushes, stats, pools, exit codes.
set -uo pipefail
source "$TEST_SRCDIR/tmem/tests/testing/testlib.sh"
TMEMD="$R/server/main/tmemd"
CTL_BIN="$R/client/tmemctl"
P=$(port)
CTL="$CTL_BIN --server=127.0.0.1:$P --timeout-ms=3000"

"$TMEMD" --device="$T/c.img" --device-size=64M --listen="127.0.0.1:$P" --metrics-listen= 2> "$T/tmemd.log" &
D=$!
trap 'kill -KILL $D 2>/dev/null' EXIT
for _ in $(seq 100); do $CTL info >/dev/null 2>&1 && break; sleep 0.05; done

$CTL info | grep -q "instance    1" && ok "info" || bad "info"
# The standard health service, as Kubernetes' gRPC probes ask it.
[ "$($CTL health)" = "SERVING" ] && ok "health: serving" || bad "health: $($CTL health)"
[ "$($CTL health --service=tmem.v1.PagePool)" = "SERVING" ] && ok "health of tmem.v1.PagePool" || bad "health of PagePool"
out=$($CTL health --service=tmem.v1.Nothing); rc=$?
[ "$out" = "SERVICE_UNKNOWN" ] && [ $rc -eq 1 ] && ok "health of an unknown service: exit 1" || bad "unknown service: '$out' rc=$rc"
POOL=$($CTL create-pool --shared-uuid=00112233-4455-6677-8899-aabbccddeeff --page-size=1024)
[ "$POOL" = "1" ] && ok "create-pool prints the id" || bad "create-pool: '$POOL'"
[ "$($CTL create-pool --shared-uuid=00112233445566778899aabbccddeeff --page-size=1024)" = "$POOL" ] \
  && ok "same UUID, same pool" || bad "same UUID, same pool"
head -c 10000 /dev/urandom > "$T/in"
$CTL put --pool="$POOL" --object=f --file="$T/in" 2> "$T/put.err" && grep -q "put 10 pages of 1024 bytes" "$T/put.err" \
  && ok "put splits into pages" || bad "put: $(cat "$T/put.err")"
$CTL get --pool="$POOL" --object=f --count=10 --file="$T/out" 2> "$T/get.err"
grep -q "10 hits, 0 misses" "$T/get.err" && ok "get hits" || bad "get: $(cat "$T/get.err")"
cmp -n 10000 "$T/in" "$T/out" && ok "round trip is bit-exact" || bad "round trip differs"
$CTL flush --pool="$POOL" --object=f --index=4 && $CTL get --pool="$POOL" --object=f --index=4 2>&1 >/dev/null \
  | grep -q "0 hits, 1 misses" && ok "flush page" || bad "flush page"
$CTL flush --pool="$POOL" --object=f && $CTL get --pool="$POOL" --object=f --count=10 2>&1 >/dev/null \
  | grep -q "0 hits, 10 misses" && ok "flush object" || bad "flush object"
$CTL stats --pool="$POOL" | grep -qE "^puts +10$" && ok "stats" || bad "stats: $($CTL stats --pool="$POOL")"
$CTL pools | grep -qE "^$POOL +shared +1024" && ok "pools" || bad "pools: $($CTL pools)"

# Exit codes and messages.
$CTL stats --pool=99 2> "$T/e1"; rc=$?
[ $rc -eq 1 ] && grep -q "pool 99 does not exist" "$T/e1" && ok "unknown pool: exit 1" || bad "unknown pool rc=$rc $(cat "$T/e1")"
$CTL put --pool=1 2> "$T/e2"; rc=$?
[ $rc -eq 2 ] && grep -q -- "--object=KEY is required" "$T/e2" && ok "missing flag: exit 2" || bad "missing flag rc=$rc"
$CTL frob 2> /dev/null; [ $? -eq 2 ] && ok "unknown command: exit 2" || bad "unknown command"
$CTL create-pool --shared-uuid=xyz 2> /dev/null; [ $? -eq 2 ] && ok "bad uuid: exit 2" || bad "bad uuid"
$CTL create-pool --page-size=3000 2> "$T/e3"; rc=$?
[ $rc -eq 1 ] && grep -q "3000" "$T/e3" && ok "bad page size from server: exit 1" || bad "bad page size rc=$rc"
$CTL_BIN get --help | grep -q "tmemctl get" && ok "per-command --help" || bad "--help"

# bench: puts, batched gets that all hit and check out, single-get latency.
$CTL bench --threads=2 --batch=16 --pages=2000 --seconds=1 --singles=50 > "$T/bench.out" 2>&1; rc=$?
if [ $rc -eq 0 ] && grep -qE "^put +[1-9][0-9]* pages/s .*\(0 of 2000 dropped\)" "$T/bench.out" \
   && grep -qE "^get +[1-9][0-9]* hits/s .*\(0 misses\)" "$T/bench.out" \
   && grep -qE "^single get +p50 [0-9]+ us +p99 [0-9]+ us" "$T/bench.out"; then
  ok "bench"
else
  bad "bench rc=$rc: $(cat "$T/bench.out")"
fi
$CTL pools > "$T/pools_after_bench"
[ "$(grep -c shared "$T/pools_after_bench")" = "1" ] && ok "bench destroys its pool" \
  || bad "bench left its pool behind: $(cat "$T/pools_after_bench")"
$CTL bench --threads=0 2> "$T/e5"; rc=$?
[ $rc -eq 2 ] && grep -q -- "--threads=0: want 1 to 256" "$T/e5" && ok "bench bad flag: exit 2" || bad "bench bad flag rc=$rc"

# The device is ours alone: a second tmemd and tmem-admin format are refused, naming the holder.
P2=$(port)
$CTL put --pool="$POOL" --object=g --file="$T/in" 2>/dev/null || bad "put g"
"$TMEMD" --device="$T/c.img" --listen="127.0.0.1:$P2" --metrics-listen= 2> "$T/second.log"; rc=$?
[ $rc -eq 1 ] && grep -q "device $T/c.img is in use by pid $D (tmemd)" "$T/second.log" \
  && ok "a second tmemd on the device in use is refused, naming the holder" || bad "second tmemd rc=$rc: $(cat "$T/second.log")"
"$R/server/tools/tmem-admin" format --device="$T/c.img" --force 2> "$T/format.err"; rc=$?
[ $rc -ne 0 ] && grep -q "is in use by pid $D" "$T/format.err" && ok "tmem-admin format of the device in use is refused" \
  || bad "format in use rc=$rc: $(cat "$T/format.err")"
$CTL get --pool="$POOL" --object=g --count=10 2>&1 >/dev/null | grep -q "10 hits, 0 misses" && $CTL info | grep -q "instance    1" \
  && ok "the first tmemd keeps serving, its pages intact" || bad "first tmemd after the refusals"

kill -TERM $D; wait $D; rc=$?
[ $rc -eq 0 ] && ok "tmemd stopped cleanly" || bad "tmemd exit $rc"
$CTL info 2> "$T/e4"; rc=$?
[ $rc -eq 1 ] && grep -q "cannot reach tmemd at 127.0.0.1:$P" "$T/e4" && ok "server down: exit 1" \
  || bad "server down rc=$rc $(cat "$T/e4")"
$CTL health > /dev/null 2>&1 && bad "health answers 0 with the server down" || ok "health, server down: exit 1"

$CTL bench --pages=100 --seconds=1 --singles=1 > /dev/null 2> "$T/e6"; rc=$?
[ $rc -eq 1 ] && grep -q "are the servers up" "$T/e6" && ok "bench, server down: exit 1" || bad "bench down rc=$rc $(cat "$T/e6")"

finish "$T/tmemd.log"
