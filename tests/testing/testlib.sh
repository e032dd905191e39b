# The helpers every shell test and bench script shares; source it, do not run it. (The kernel
# lab's guest.sh and the systemd lab's driver run inside a VM or container, without this tree's
# helpers; they keep their own result lines.)
#   Under Bazel (sh_test with //tests/testing:testlib in data): R is the runfiles root
#   (binaries, deploy/), T the test's scratch directory.
#   Elsewhere (bench/, labs): R is the source tree; T is left as the caller set it.
if [ -n "${TEST_SRCDIR:-}" ]; then
  R="$TEST_SRCDIR/tmem"
  T="${TEST_TMPDIR:-$(mktemp -d)}"
else
  R="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  T="${T:-}"
fi
# Debian's python: it has the libnbd module (nbdsh runs "python3" from PATH).
PY=/usr/bin/python3

# Stops the script: FAIL and the reason.
fail() { echo "FAIL $*"; exit 1; }
# Checks that count instead of stopping: ok / bad, then `finish` exits non-zero if any was bad.
fails=0
ok() { echo "ok   $*"; }
bad() { echo "FAIL $*"; fails=$((fails + 1)); }
# finish [LOG]: the verdict of the ok/bad checks (the last lines of LOG on failure).
finish() {
  if [ "$fails" -ne 0 ]; then
    echo "$fails checks failed"
    [ -n "${1:-}" ] && tail -20 "$1"
    exit 1
  fi
}
# A free TCP port on 127.0.0.1.
port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_port PORT [SECONDS]: until something listens on 127.0.0.1:PORT (default 30 s); 1 if not.
wait_port() {
  local deadline=$((SECONDS + ${2:-30}))
  until $PY -c "import socket,sys; socket.create_connection(('127.0.0.1', $1), 0.2)" 2>/dev/null; do
    [ $SECONDS -ge $deadline ] && return 1
    sleep 0.05
  done
}
# wait_nbd URI [PID LOG]: until an NBD server answers at URI (10 s); with PID, stops the script
# when that process exits first (printing LOG). 1 if it never answers.
wait_nbd() {
  for _ in $(seq 200); do
    if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then fail "tmemd exited: $(cat "${3:-/dev/null}")"; fi
    nbdinfo "$1" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  return 1
}
# until_ok COMMAND...: runs it until it succeeds (10 s); 1 if it never does.
until_ok() {
  for _ in $(seq 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
  return 1
}
# start_tmemd ARGS...: $TMEMD in the background, its stderr in $T/tmemd.log; D is its pid.
start_tmemd() {
  "$TMEMD" "$@" 2> "$T/tmemd.log" &
  D=$!
}
# need COMMAND PACKAGE: fails unless scripts/setup.sh installed it.
need() { command -v "$1" >/dev/null || fail "$1 is not installed (scripts/setup.sh installs $2)"; }
