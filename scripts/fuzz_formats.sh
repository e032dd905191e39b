#!/usr/bin/env bash
# Fuzzes tmemd's on-disk formats and its config file with libFuzzer (clang 14, ASan+UBSan), one
# target after another, each for a bounded number of runs from its built-in seeds (valid
# encodings made by the project's own writers). A crash, hang, sanitizer report or broken
# invariant (a TMEM_FUZZ_CHECK: decoded lengths inside the buffer, decode-encode round trips,
# an independent check of what the format allows) fails the target:
#   log_metadata   superblock and checkpoints (server/log/log_metadata_fuzzer.cc)
#   segment        segment headers and the recovery scan (server/log/segment_fuzzer.cc)
#   cache_record   the block cache's owner record (server/blockcache/cache_record_fuzzer.cc)
#   pool_format    pool records, page index keys and values (server/pool/pool_format_fuzzer.cc)
#   config         tmemd's YAML config file (server/main/config_fuzzer.cc)
# The default suite runs each target's seeds and a few thousand mutations (*_fuzz_test).
#   scripts/fuzz_formats.sh [RUNS]     (default 1000000 runs per target)
# Corpora, logs and crashing inputs: $TMEM_FUZZ_DIR/NAME/ (default /var/tmp/tmem-fuzz-formats).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1000000}
DIR=${TMEM_FUZZ_DIR:-/var/tmp/tmem-fuzz-formats}
# name, Bazel target, largest input (bytes) worth mutating
TARGETS=(
  "log_metadata //server/log:log_metadata_fuzzer 512"
  "segment //server/log:segment_fuzzer 32768"
  "cache_record //server/blockcache:cache_record_fuzzer 256"
  "pool_format //server/pool:pool_format_fuzzer 512"
  "config //server/main:config_fuzzer 8192"
)
scripts/setup.sh
labels=()
for t in "${TARGETS[@]}"; do
  read -r _ label _ <<<"$t"
  labels+=("$label")
done
if ! build_log=$(bazel build --config=fuzz "${labels[@]}" 2>&1); then
  grep -E 'ERROR|error:' <<<"$build_log" || tail -20 <<<"$build_log"
  echo "building the format fuzzers failed"
  exit 1
fi
# UBSan stops at its first report, so that libFuzzer writes the input that caused it.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
failed=()
for t in "${TARGETS[@]}"; do
  read -r name label max_len <<<"$t"
  path=${label#//}
  fuzzer=bazel-out/k8-fastbuildfuzz/bin/${path/://}
  d="$DIR/$name"
  mkdir -p "$d/corpus" "$d/crashes"
  echo "fuzzing $name for $RUNS runs"
  rc=0
  TMEM_FUZZ_WRITE_SEEDS="$d/corpus" "$fuzzer" -runs="$RUNS" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$d/crashes/" "$d/corpus" >"$d/fuzz.log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ] || grep -q "ERROR: \|SUMMARY: " "$d/fuzz.log"; then
    crash=$(grep -o 'Test unit written to .*' "$d/fuzz.log" | tail -1 | sed 's/^Test unit written to //' || true)
    echo "$name: FAILED (exit $rc), crash file ${crash:-(none written)}; log $d/fuzz.log"
    grep -E "fuzz invariant failed|threw|runtime error|ERROR: |SUMMARY: " "$d/fuzz.log" | head -5 | sed 's/^/  /' || true
    failed+=("$name")
  else
    echo "$name: no crash in $(grep -o 'stat::number_of_executed_units: [0-9]*' "$d/fuzz.log" | awk '{print $2}') runs"
  fi
done
if [ "${#failed[@]}" -ne 0 ]; then
  echo "format fuzzers: ${#failed[@]} of ${#TARGETS[@]} failed (${failed[*]}); crashing inputs under $DIR/NAME/crashes/"
  exit 1
fi
echo "format fuzzers: all ${#TARGETS[@]} ran $RUNS runs each without a crash"
