#!/usr/bin/env bash
# Fuzzes the page wire protocol's request loop with libFuzzer (clang 14, ASan+UBSan) for a
# bounded number of runs; exits non-zero on any crash, invariant failure or sanitizer report.
#   scripts/fuzz_wire.sh [RUNS]     (default 1000000)
# Crashing inputs are written to $TMEM_FUZZ_DIR/wire (default /var/tmp/tmem-fuzz/wire).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1000000}
DIR=${TMEM_FUZZ_DIR:-/var/tmp/tmem-fuzz}/wire
scripts/setup.sh
# Bazel's own status decides (a grep after it must not let a failed build through).
if ! build_log=$(bazel build --config=fuzz //server/wire:wire_fuzzer 2>&1); then
  grep -E 'ERROR|error:' <<<"$build_log" || tail -20 <<<"$build_log"
  echo "building the fuzzer failed"
  exit 1
fi
FUZZER=bazel-out/k8-fastbuildfuzz/bin/server/wire/wire_fuzzer
mkdir -p "$DIR/corpus" "$DIR/crashes"
# The target's own seeds (HELLO, a put, a batch get, another tenant's flush, a flush pool).
TMEM_FUZZ_WRITE_SEEDS="$DIR/corpus" "$FUZZER" -runs=0 "$DIR/corpus" > /dev/null 2>&1 || true
echo "fuzzing the page wire protocol's request loop for $RUNS runs"
rc=0
# Inputs up to 16 KiB reach every verb, a put of a few pages and requests split across reads.
"$FUZZER" -runs="$RUNS" -max_len=16384 -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
  -artifact_prefix="$DIR/crashes/" "$DIR/corpus" > "$DIR/fuzz.log" 2>&1 || rc=$?
grep -E "^#[0-9]+ +DONE|^Done|ERROR|SUMMARY|invariant" "$DIR/fuzz.log" || true
if [ "$rc" -ne 0 ] || grep -q "ERROR: \|SUMMARY: \|invariant failed" "$DIR/fuzz.log"; then
  echo "fuzzer found a problem (exit $rc); see $DIR/fuzz.log and $DIR/crashes/"
  exit 1
fi
echo "no crash in $(grep -o 'stat::number_of_executed_units: [0-9]*' "$DIR/fuzz.log" | awk '{print $2}') runs"
