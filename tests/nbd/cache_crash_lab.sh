#!/usr/bin/env bash
# The cached export's kill -9 loop at lab length: 50 kills (CYCLES to change it) of tmemd under a
# writer with 32 requests in flight, each followed by the check that every block reads back
# whole, as itself and at least as new as its last flushed version. Not in the default suite.
#   tests/nbd/cache_crash_lab.sh [CYCLES]
set -euo pipefail
cd "$(dirname "$0")/../.."
scripts/setup.sh
bazel test //tests/nbd:nbd_cache_test --test_env=CYCLES="${1:-50}" --test_timeout=3600 --cache_test_results=no
grep -E "^(ok|FAIL)" bazel-testlogs/tests/nbd/nbd_cache_test/test.log
