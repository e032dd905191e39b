#!/usr/bin/env bash
# tmem-admin end to end on a real O_DIRECT file: format, refusals, inspect, demo, bad input.
set -uo pipefail
ADMIN="$TEST_SRCDIR/tmem/server/tools/tmem-admin"
[ -x "$ADMIN" ] || ADMIN="$(dirname "$0")/tmem-admin"
T="$TEST_TMPDIR"
fails=0
check() {  # check NAME EXPECTED_RC PATTERN -- command...
  local name=$1 want_rc=$2 pattern=$3; shift 4
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -ne "$want_rc" ] || ! grep -qE -- "$pattern" <<<"$out"; then
    echo "FAIL $name: rc=$rc (want $want_rc), output:"; echo "$out" | sed 's/^/    /'
    fails=$((fails + 1))
  else
    echo "ok   $name"
  fi
}

check "format creates a file-backed log" 0 "formatted .*segments of 1048576 bytes" -- \
  "$ADMIN" format --device="$T/cache.img" --size=64M
check "format refuses an existing log" 1 "already holds a tmem log; pass --force" -- \
  "$ADMIN" format --device="$T/cache.img"
check "inspect shows the geometry" 0 "segments +63 x 1048576 bytes" -- "$ADMIN" inspect --device="$T/cache.img"
check "demo runs the engine" 0 "shared get inode-7/6 after restart: hit" -- \
  "$ADMIN" demo --device="$T/cache.img" --metadata-dir="$T/meta"
check "demo second run keeps shared pool id and pages" 0 "pages kept from the previous run" -- \
  "$ADMIN" demo --device="$T/cache.img" --metadata-dir="$T/meta"
check "inspect after a clean stop" 0 "stopped cleanly" -- "$ADMIN" inspect --device="$T/cache.img"

head -c 64M /dev/urandom > "$T/foreign.img"
sum_before=$(md5sum < "$T/foreign.img")
check "format refuses foreign data" 1 "holds other data .*--force" -- "$ADMIN" format --device="$T/foreign.img"
check "demo refuses foreign data" 1 "foreign data, not a tmem log" -- \
  "$ADMIN" demo --device="$T/foreign.img" --metadata-dir="$T/meta2"
if [ "$(md5sum < "$T/foreign.img")" != "$sum_before" ]; then echo "FAIL foreign device was modified"; fails=$((fails+1)); else echo "ok   foreign device untouched"; fi

cp "$T/cache.img" "$T/corrupt.img"
printf '\x55' | dd of="$T/corrupt.img" bs=1 seek=40 conv=notrunc status=none
check "inspect refuses a corrupt superblock" 1 "superblock .* is corrupt" -- "$ADMIN" inspect --device="$T/corrupt.img"
check "demo refuses metadata of another device" 1 "belongs to another device" -- \
  bash -c "'$ADMIN' format --device='$T/other.img' --size=64M >/dev/null && '$ADMIN' demo --device='$T/other.img' --metadata-dir='$T/meta'"
check "format --force with --metadata-dir starts over" 0 "formatted" -- \
  "$ADMIN" format --device="$T/cache.img" --metadata-dir="$T/meta" --force
check "too small a device" 1 "needs at least" -- "$ADMIN" format --device="$T/tiny.img" --size=4M
check "unknown flag" 2 "unknown flag --devise" -- "$ADMIN" format --devise=/x
check "bad size" 2 "unknown unit" -- "$ADMIN" format --device="$T/x.img" --size=10Q
check "missing device" 2 "--device is required" -- "$ADMIN" inspect
check "unknown command" 2 "unknown command 'frobnicate'" -- "$ADMIN" frobnicate
check "missing file" 1 "No such file" -- "$ADMIN" inspect --device="$T/none.img"

[ "$fails" -eq 0 ] || { echo "$fails checks failed"; exit 1; }
