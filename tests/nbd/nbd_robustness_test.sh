#!/usr/bin/env bash
# Runs nbd_robustness_test.py with Debian's python (which has the libnbd module).
exec /usr/bin/python3 "$TEST_SRCDIR/tmem/tests/nbd/nbd_robustness_test.py" "$TEST_SRCDIR/tmem/server/main/tmemd" "$TEST_TMPDIR"
