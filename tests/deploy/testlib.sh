# Sourced by the deployment tests: where their files are, and the helpers they share.
R="$TEST_SRCDIR/tmem"   # the runfiles: binaries and deploy/
T="$TEST_TMPDIR"
fail() { echo "FAIL $*"; exit 1; }
# A free TCP port on 127.0.0.1.
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# need COMMAND PACKAGE: fails unless scripts/setup.sh installed it.
need() { command -v "$1" >/dev/null || fail "$1 is not installed (scripts/setup.sh installs $2)"; }
