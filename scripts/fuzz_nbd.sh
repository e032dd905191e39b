#!/usr/bin/env bash
# Fuzzes the NBD server's handshake and request parsing with libFuzzer (clang 14, ASan+UBSan)
# for a bounded number of runs; exits non-zero on any crash, leak or sanitizer report.
#   scripts/fuzz_nbd.sh [RUNS]     (default 1000000; about 6 minutes on 2 cores)
# Crashing inputs are written to $TMEM_FUZZ_DIR (default /var/tmp/tmem-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1000000}
DIR=${TMEM_FUZZ_DIR:-/var/tmp/tmem-fuzz}
scripts/setup.sh
# Bazel's own status decides (with pipefail, a grep after it used to let a failed build through).
if ! build_log=$(bazel build --config=fuzz //server/nbd:nbd_fuzzer 2>&1); then
  grep -E 'ERROR|error:' <<<"$build_log" || tail -20 <<<"$build_log"
  echo "building the fuzzer failed"
  exit 1
fi
FUZZER=bazel-out/k8-fastbuildfuzz/bin/server/nbd/nbd_fuzzer
mkdir -p "$DIR/corpus" "$DIR/crashes"
# Seeds: mode byte (0 raw, 1 after GO, 2 after GO with structured replies) + what follows.
/usr/bin/python3 - "$DIR/corpus" <<'PY'
import struct, sys, os
d = sys.argv[1]
req = lambda cmd, off, ln, flags=0, cookie=1: struct.pack(">IHHQQI", 0x25609513, flags, cmd, cookie, off, ln)
opt = lambda o, data=b"": struct.pack(">QII", 0x49484156454F5054, o, len(data)) + data
seeds = {
    "handshake_go": b"\x00" + struct.pack(">I", 3) + opt(8) + opt(7, struct.pack(">I", 5) + b"disk0" + b"\x00\x00"),
    "handshake_list_info": b"\x00" + struct.pack(">I", 1) + opt(3) + opt(6, struct.pack(">I", 2) + b"ro" + struct.pack(">HHH", 2, 1, 2)) + opt(2),
    "export_name": b"\x00" + struct.pack(">I", 0) + opt(1, b"disk0") + req(0, 0, 512),
    "requests": b"\x01" + req(1, 4096, 512) + b"\xab" * 512 + req(0, 4096, 512, cookie=2) + req(3, 0, 0) + req(4, 0, 4096) + req(6, 8192, 4096, 2) + req(2, 0, 0),
    "structured": b"\x02" + req(0, 0, 4096) + req(0, 1 << 20, 512) + req(9, 0, 0) + req(1, 0, 100) + b"x" * 50,
}
for name, data in seeds.items():
    open(os.path.join(d, name), "wb").write(data)
PY
echo "fuzzing the NBD handshake and request loop for $RUNS runs"
rc=0
"$FUZZER" -runs="$RUNS" -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$DIR/crashes/" "$DIR/corpus" > "$DIR/fuzz.log" 2>&1 || rc=$?
grep -E "^#[0-9]+ +DONE|^Done|ERROR|SUMMARY" "$DIR/fuzz.log" || true
if [ "$rc" -ne 0 ] || grep -q "ERROR: \|SUMMARY: " "$DIR/fuzz.log"; then
  echo "fuzzer found a problem (exit $rc); see $DIR/fuzz.log and $DIR/crashes/"
  exit 1
fi
echo "no crash in $(grep -o 'stat::number_of_executed_units: [0-9]*' "$DIR/fuzz.log" | awk '{print $2}') runs"
