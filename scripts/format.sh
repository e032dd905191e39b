#!/usr/bin/env bash
# clang-format (Debian's clang-format-14, .clang-format: Google style, 120 columns) over every
# C and C++ file git tracks, kernel C excepted (its folders' .clang-format turn it off).
#   scripts/format.sh           formats them in place
#   scripts/format.sh --check   lists the files that are not formatted; exit 1 if any
# TMEM_SOURCE_ROOT overrides the tree (the format test passes the tree its runfiles come from).
set -euo pipefail
root=${TMEM_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root"
cf=$(command -v clang-format-14 || command -v clang-format || true)
[ -n "$cf" ] || { echo "clang-format is not installed (scripts/setup.sh installs clang-format)"; exit 1; }
mapfile -t files < <(git ls-files '*.cc' '*.h' '*.c' | grep -v '^third_party/')
if [ "${1:-}" = "--check" ]; then
  bad=0
  for f in "${files[@]}"; do
    if ! "$cf" --dry-run --Werror "$f" >/dev/null 2>&1; then
      echo "not formatted: $f (scripts/format.sh formats it)"
      bad=$((bad + 1))
    fi
  done
  echo "${#files[@]} files checked, $bad not formatted"
  [ "$bad" -eq 0 ]
else
  "$cf" -i "${files[@]}"
fi
