#!/usr/bin/env bash
# Every C and C++ file of the tree is clang-formatted (.clang-format). The tree is the one the
# runfiles link to (Bazel links each data file to its source).
set -uo pipefail
source "$TEST_SRCDIR/tmem/tests/testing/testlib.sh"
root=$(dirname "$(readlink -f "$R/.clang-format")")
[ -d "$root/.git" ] || [ -f "$root/.git" ] || fail "the source tree $root is not a git checkout"
TMEM_SOURCE_ROOT="$root" "$R/scripts/format.sh" --check || fail "unformatted files (run scripts/format.sh)"
echo "ok   every C and C++ file is formatted"
