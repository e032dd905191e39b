#!/usr/bin/env bash
# The runtime image's package list (deploy/docker/runtime-packages.txt) names the Debian package
# of every shared library tmemd, tmem-shimd and tmemctl link against, except those every
# debian:bookworm-slim already has. (deploy/docker/check-runtime.sh proves the same by
# installing the list into a fresh root; this check needs no downloads.)
set -uo pipefail
source "$TEST_SRCDIR/tmem/tests/testing/testlib.sh"
list=$(grep -v '^#' "$R/deploy/docker/runtime-packages.txt")
in_base="libc6 libgcc-s1 libstdc++6"
# Sanitizer builds (scripts/test.sh --config=asan|tsan) link the sanitizer runtimes, which no
# image ships.
sanitizer="libasan8 libtsan2 libubsan1 liblsan0"
missing=0
ldcache=$(ldconfig -p)
declare -A seen
for b in server/main/tmemd kshim/relay/tmem-shimd client/tmemctl; do
  for so in $(readelf -d "$R/$b" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
    [ -n "${seen[$so]:-}" ] && continue
    seen[$so]=1
    path=$(awk -v s="$so" '$1 == s { print $NF; exit }' <<< "$ldcache")
    [ -n "$path" ] || fail "$so (of $b) is not installed here"
    pkg=""
    for p in "$path" "$(readlink -f "$path")" "/usr$path"; do
      pkg=$(dpkg -S "$p" 2>/dev/null | head -1 | cut -d: -f1) && [ -n "$pkg" ] && break
    done
    [ -n "$pkg" ] || fail "no Debian package holds $so"
    if ! grep -qx "$pkg" <<< "$list" && ! grep -qw "$pkg" <<< "$in_base $sanitizer"; then
      echo "missing: $pkg (for $so of $b)"
      missing=$((missing + 1))
    fi
  done
done
[ $missing -eq 0 ] || fail "$missing libraries' packages are not in deploy/docker/runtime-packages.txt"
grep -qx kmod <<< "$list" || fail "kmod (modprobe, for the relay's init container) is not in the list"
grep -q 'runtime-setup.sh /tmp/runtime-packages.txt' "$R/deploy/docker/Dockerfile" ||
  fail "the Dockerfile does not install the list with runtime-setup.sh"
echo "ok   every linked library's package is in the runtime list ($(wc -l <<< "$list") packages)"
