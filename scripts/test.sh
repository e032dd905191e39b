#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, builds everything and runs the
# default test suite. Ends with one line "N passed, N failed[, N skipped]" counting test cases,
# and exits non-zero on any failure.
#   scripts/test.sh                 # default suite
#   scripts/test.sh --config=asan   # the same under AddressSanitizer (or --config=tsan)
set -uo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh || { echo "0 passed, 1 failed"; exit 1; }

bazel test //... --test_tag_filters=-heavy "$@" 2>&1 | grep -vE 'linux-sandbox|^\s*$'
rc=${PIPESTATUS[0]}

# Count test cases from the JUnit XML each test target leaves in bazel-testlogs.
targets=$(bazel query 'tests(//...) except attr(tags, heavy, tests(//...))' 2>/dev/null)
read -r passed failed skipped < <(TARGETS="$targets" python3 - <<'PY'
import os, xml.etree.ElementTree as ET
passed = failed = skipped = 0
for target in os.environ["TARGETS"].split():
    pkg, name = target.lstrip("/").split(":")
    path = os.path.join("bazel-testlogs", pkg, name, "test.xml")
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        failed += 1  # the target did not run or died before writing its report
        continue
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            failed += 1
        elif case.get("result") == "skipped" or case.find("skipped") is not None:
            skipped += 1
        else:
            passed += 1
print(passed, failed, skipped)
PY
)
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi  # a build error or a crashed target
line="$passed passed, $failed failed"
[ "$skipped" -gt 0 ] && line="$line, $skipped skipped"
echo "$line"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
