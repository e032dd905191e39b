#!/usr/bin/env bash
# Every metric the alert rules and the Grafana dashboard read is exported by a live tmemd (with
# page pools, an NBD export and a cached export in use) or a live tmem-shimd; every label they
# match on is one the metric carries; promtool accepts both /metrics outputs. The dashboard file
# is what its generator writes, and tmemd --version agrees with tmem_build_info.
set -uo pipefail
source "$TEST_SRCDIR/tmem/tests/testing/testlib.sh"
P=$(port); M=$(port); N=$(port); S=$(port)
CTL="$R/client/tmemctl --server=127.0.0.1:$P"

cat > "$T/tmemd.yaml" <<YML
device: {path: $T/c.img, size: 64M}
listen: ["127.0.0.1:$P"]
metrics_listen: 127.0.0.1:$M
nbd: {listen: ["127.0.0.1:$N"]}
exports:
  - {name: plain, backend: $T/plain.img, size: 8M}
  - {name: db, backend: $T/db.img, size: 16M, cache: {device: $T/db-cache.img, size: 32M}}
YML
"$R/server/main/tmemd" --config="$T/tmemd.yaml" 2> "$T/tmemd.log" &
D=$!
"$R/kshim/core/print_stats" > "$T/module-stats"
"$R/kshim/relay/tmem-shimd" --servers="127.0.0.1:$P" --device="$T/no-shim-here" --retry-ms=100 \
  --module-stats="$T/module-stats" --metrics-listen="127.0.0.1:$S" 2> "$T/shimd.log" &
RL=$!
trap 'kill $D $RL 2>/dev/null; wait' EXIT
until_ok $CTL info
$CTL info >/dev/null || fail "tmemd did not start: $(tail -3 "$T/tmemd.log")"

# Use every part once, so that labelled series exist.
POOL=$($CTL create-pool) || fail "create-pool"
head -c $((4096 * 4)) /dev/urandom | $CTL put --pool="$POOL" --object=f >/dev/null || fail "put"
$CTL get --pool="$POOL" --object=f --index=0 >/dev/null || fail "get"
$CTL get --pool="$POOL" --object=f --index=9 >/dev/null 2>&1
$CTL flush --pool="$POOL" --object=f --index=1 >/dev/null 2>&1
head -c $((1 << 20)) /dev/urandom > "$T/data"
for x in plain db; do
  nbdcopy "$T/data" "nbd://127.0.0.1:$N/$x" || fail "nbdcopy to $x"
  nbdcopy "nbd://127.0.0.1:$N/$x" "$T/back-$x" || fail "nbdcopy from $x"
done

curl -sf "http://127.0.0.1:$M/metrics" > "$T/tmemd.metrics" || fail "scrape tmemd"
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$S/metrics" > "$T/shimd.metrics" && break; sleep 0.05; done
[ -s "$T/shimd.metrics" ] || fail "scrape tmem-shimd: $(tail -3 "$T/shimd.log")"
grep -q '^tmem_log_crc_failures_total{export="db"}' "$T/tmemd.metrics" || fail "no cache device log metrics for export db"
grep -q '^tmem_shim_puts_dropped_full_total ' "$T/shimd.metrics" || fail "module counters not exported by tmem-shimd"
grep -q '^tmem_shimd_attached 0' "$T/shimd.metrics" || fail "tmem-shimd without a shim does not say it is detached"

for f in tmemd shimd; do
  promtool check metrics < "$T/$f.metrics" > "$T/promtool-$f.txt" 2>&1 ||
    fail "promtool check metrics on $f's /metrics: $(cat "$T/promtool-$f.txt")"
done
echo "ok   promtool accepts tmemd's and tmem-shimd's /metrics"
/usr/bin/python3 "$R/tests/deploy/promql_names.py" --exposed "$T/tmemd.metrics" --exposed "$T/shimd.metrics" \
  --rules "$R/deploy/prometheus/tmem-rules.yml" --dashboard "$R/deploy/grafana/tmem.json" || fail "rules or dashboard"
echo "ok   every metric and label in the rules and the dashboard is exported"

# The checker catches a panel reading a metric nobody exports.
sed 's/tmem_pool_puts_total/tmem_pool_putz_total/' "$R/deploy/grafana/tmem.json" > "$T/bad.json"
if /usr/bin/python3 "$R/tests/deploy/promql_names.py" --exposed "$T/tmemd.metrics" --dashboard "$T/bad.json" > "$T/bad.out"; then
  fail "a dashboard reading tmem_pool_putz_total passed"
fi
grep -q "unknown metric tmem_pool_putz_total" "$T/bad.out" || fail "the checker did not name the unknown metric"
echo "ok   a misspelt metric is caught"

/usr/bin/python3 "$R/deploy/grafana/dashboard.py" --print > "$T/dashboard.json"
cmp -s "$T/dashboard.json" "$R/deploy/grafana/tmem.json" || fail "deploy/grafana/tmem.json is not what dashboard.py writes; run it"
echo "ok   tmem.json is current"

v=$("$R/server/main/tmemd" --version) || fail "tmemd --version"
build=$(sed -n 's/^tmem_build_info{version="\([^"]*\)"} 1$/\1/p' "$T/tmemd.metrics")
case "$v" in "tmemd $build "*) echo "ok   $v";; *) fail "tmemd --version says '$v', /metrics says $build";; esac
