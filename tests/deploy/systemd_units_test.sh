#!/usr/bin/env bash
# The systemd units: systemd-analyze verify accepts them without a single complaint (an unknown
# or misspelt directive is only a warning to systemd, so any output fails here), their commands
# accept the flags the units pass, and their hardening keeps systemd's exposure score low
# (tmemd: unprivileged, no capabilities; tmem-shimd: root for its device, CAP_SYS_MODULE only).
set -uo pipefail
source "$TEST_SRCDIR/tmem/tests/testing/testlib.sh"
need systemd-analyze systemd
mkdir -p "$T/bin" "$T/units"
ln -sf "$R/server/main/tmemd" "$T/bin/tmemd"
ln -sf "$R/kshim/relay/tmem-shimd" "$T/bin/tmem-shimd"

for unit in tmemd tmem-shimd; do
  # The units name /usr/local/bin; verify them against this build's binaries.
  sed "s#/usr/local/bin/#$T/bin/#g" "$R/deploy/systemd/$unit.service" > "$T/units/$unit.service"
  out=$(cd "$T/units" && systemd-analyze verify "$unit.service" 2>&1) || fail "systemd-analyze verify $unit.service: $out"
  [ -z "$out" ] || fail "systemd-analyze verify $unit.service complains: $out"
  score=$(cd "$T/units" && systemd-analyze security --offline=yes "$unit.service" 2>&1 |
    sed -n 's/.*Overall exposure level for .*: \([0-9.]*\) .*/\1/p')
  limit=$([ "$unit" = tmemd ] && echo 2.0 || echo 3.5)
  python3 -c "import sys; sys.exit(0 if 0 <= float('$score' or 99) <= $limit else 1)" ||
    fail "$unit.service exposure $score, want at most $limit"
  echo "ok   $unit.service verifies; exposure $score (at most $limit)"
done

# A misspelt directive is caught.
sed 's/^ProtectSystem=/ProtectSystm=/' "$T/units/tmemd.service" > "$T/units/bad.service"
out=$(cd "$T/units" && systemd-analyze verify bad.service 2>&1)
[ -n "$out" ] || fail "a misspelt directive went unnoticed"
echo "ok   a misspelt directive is caught"

# The flags in ExecStart are ones the binaries accept (a bad flag exits 2 at once).
exec_of() { sed -n 's/^ExecStart=[^ ]* //p' "$R/deploy/systemd/$1.service"; }
"$R/server/main/tmemd" $(exec_of tmemd | sed "s#--config=[^ ]*#--config=$T/none.yaml#") 2> "$T/tmemd.err"
grep -q "none.yaml" "$T/tmemd.err" || fail "tmemd does not take its unit's flags: $(cat "$T/tmemd.err")"
flags=$(exec_of tmem-shimd | sed 's/\${TMEM_SERVERS}/127.0.0.1:1/; s/\${TMEM_SHIMD_METRICS}/127.0.0.1:0/')
timeout 2 "$R/kshim/relay/tmem-shimd" $flags --device="$T/absent" --retry-ms=100 2> "$T/shimd.err"
[ $? -eq 124 ] || fail "tmem-shimd exits on its unit's flags: $(cat "$T/shimd.err")"
echo "ok   the units' command lines are accepted"
