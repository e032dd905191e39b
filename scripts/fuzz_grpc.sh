#!/usr/bin/env bash
# Fuzzes tmemd's gRPC request handlers (tmem.v1.PagePool, tmem.v1.Admin, Session streams) with
# libFuzzer (clang 14, ASan+UBSan) for a bounded number of runs; exits non-zero on any crash,
# hang or sanitizer report (leaks are the ASan suite's: a leak check after each run took 90% of the
# time; and libFuzzer's entropic scheduling is off: its feature-frequency bookkeeping took 43% of
# the time at ~20,000 features, and without it the same machine runs about twice the inputs a
# second). The default suite runs the same target's seeds and 20000
# mutations (//server/grpc:grpc_fuzz_test).
#   scripts/fuzz_grpc.sh [RUNS]     (default 1000000)
# Crashing inputs are written to $TMEM_FUZZ_DIR (default /var/tmp/tmem-fuzz-grpc).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1000000}
DIR=${TMEM_FUZZ_DIR:-/var/tmp/tmem-fuzz-grpc}
scripts/setup.sh
# Bazel's own status decides (with pipefail, a grep after it used to let a failed build through).
if ! build_log=$(bazel build --config=fuzz //server/grpc:grpc_fuzzer 2>&1); then
  grep -E 'ERROR|error:' <<<"$build_log" || tail -20 <<<"$build_log"
  echo "building the fuzzer failed"
  exit 1
fi
FUZZER=bazel-out/k8-fastbuildfuzz/bin/server/grpc/grpc_fuzzer
mkdir -p "$DIR/corpus" "$DIR/crashes"
echo "fuzzing the gRPC handlers for $RUNS runs"
rc=0
# ASAN_OPTIONS detect_leaks=0: the leak check at exit (after 10^6 runs: 240 bytes in 6
# allocations of absl's per-thread state and thread-exit records) is not about any input; leaks
# per call are the ASan suite's (grpc_fuzz_test there runs with the leak check on).
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0} TMEM_FUZZ_WRITE_SEEDS="$DIR/corpus" "$FUZZER" -runs="$RUNS" -max_len=8192 -timeout=20 -rss_limit_mb=3072 \
  -detect_leaks=0 -entropic=0 -print_final_stats=1 -artifact_prefix="$DIR/crashes/" "$DIR/corpus" > "$DIR/fuzz.log" 2>&1 || rc=$?
grep -E "^#[0-9]+ +DONE|^Done|ERROR|SUMMARY" "$DIR/fuzz.log" || true
if [ "$rc" -ne 0 ] || grep -q "ERROR: \|SUMMARY: " "$DIR/fuzz.log"; then
  echo "fuzzer found a problem (exit $rc); see $DIR/fuzz.log and $DIR/crashes/"
  exit 1
fi
echo "no crash in $(grep -o 'stat::number_of_executed_units: [0-9]*' "$DIR/fuzz.log" | awk '{print $2}') runs"
