#!/usr/bin/env bash
# promtool accepts the rules and their unit tests pass (alerts fire when and only when they
# should; recording rules compute the expected values).
set -uo pipefail
R="$TEST_SRCDIR/tmem/deploy/prometheus"
command -v promtool >/dev/null || { echo "promtool is not installed (scripts/setup.sh installs it)"; exit 1; }
promtool check rules "$R/tmem-rules.yml" || { echo "FAIL promtool check rules"; exit 1; }
cd "$R/tests" || exit 1
promtool test rules alerts.test.yml recording.test.yml || { echo "FAIL promtool test rules"; exit 1; }
echo "ok   promtool check rules and test rules"
