#!/usr/bin/env bash
# A real Prometheus server loads deploy/prometheus/tmem-rules.yml, scrapes a live tmemd while a
# client gets pages in a fixed pattern (one hit, two misses), and its recording rules evaluate
# to what that pattern implies: a hit ratio of 1/3 and the number of gets made over the 5-minute
# window. Every rule evaluates without error.
set -uo pipefail
R="$TEST_SRCDIR/tmem"
T="$TEST_TMPDIR"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(port); M=$(port); W=$(port)
CTL="$R/client/tmemctl --server=127.0.0.1:$P"
fail() { echo "FAIL $*"; exit 1; }
command -v prometheus >/dev/null || fail "prometheus is not installed (scripts/setup.sh installs it)"

"$R/server/main/tmemd" --device="$T/c.img" --device-size=64M --listen="127.0.0.1:$P" \
  --metrics-listen="127.0.0.1:$M" 2> "$T/tmemd.log" &
D=$!
trap 'kill $D $PR 2>/dev/null; wait' EXIT
for _ in $(seq 200); do $CTL info >/dev/null 2>&1 && break; sleep 0.05; done
# A shared pool: its gets leave the page in place (a private pool's hit takes the page out).
POOL=$($CTL create-pool --shared-uuid=0123456789abcdef0123456789abcdef) || fail "create-pool: $(tail -3 "$T/tmemd.log")"
head -c 4096 /dev/urandom | $CTL put --pool="$POOL" --object=f >/dev/null || fail "put"
one_round() {  # pages 0, 1 and 2 of which only 0 was put: one hit, two misses
  $CTL get --pool="$POOL" --object=f --index=0 --count=3 2>&1 >/dev/null | grep -q "^1 hits, 2 misses" ||
    fail "get: not one hit and two misses"
}
one_round  # the labelled series exist before the first scrape

cp "$R/deploy/prometheus/tmem-rules.yml" "$T/"
cat > "$T/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: ["tmem-rules.yml"]
scrape_configs:
  - job_name: tmemd
    static_configs:
      - targets: ["127.0.0.1:$M"]
YML
prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/tsdb" \
  --web.listen-address="127.0.0.1:$W" > "$T/prometheus.log" 2>&1 &
PR=$!
api() {  # api PATH [curl args...] -> JSON
  local path=$1; shift
  curl -sf -G "http://127.0.0.1:$W/api/v1/$path" "$@"
}
value() {  # value QUERY -> the first sample's value, or nothing
  api query --data-urlencode "query=$1" | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if r else "")' 2>/dev/null
}
# Wait for two scrapes of the seeded series.
for _ in $(seq 120); do
  [ "$(value 'count_over_time(tmem_pool_gets_total{result="hit"}[1m])')" \> 1 ] && break
  sleep 0.25
done
[ "$(value 'count_over_time(tmem_pool_gets_total{result="hit"}[1m])')" \> 1 ] || fail "Prometheus does not scrape tmemd"

rounds=0
end=$((SECONDS + 8))
while [ $SECONDS -lt $end ]; do one_round; rounds=$((rounds + 1)); done
gets=$((rounds * 3))
sleep 4  # a few more scrapes and evaluations

ratio=$(value 'instance:tmem_pool_get_hit_ratio:rate5m')
rate=$(value 'instance:tmem_pool_gets:rate5m')
echo "rounds $rounds ($gets gets): hit ratio $ratio, gets/s over 5m $rate"
python3 - "$ratio" "$rate" "$gets" <<'PY' || fail "recording rules"
import sys
ratio, rate, gets = float(sys.argv[1] or "nan"), float(sys.argv[2] or "nan"), int(sys.argv[3])
ok = True
if not abs(ratio - 1 / 3) < 0.02:
    print(f"hit ratio {ratio}, want 1/3"); ok = False
# rate() over 5 minutes of which about 12 s hold samples: the gets made, over 300 s, extrapolated
# by at most about one scrape interval at each end of the sampled span.
want = gets / 300
if not (0.9 * want <= rate <= 1.3 * want):
    print(f"gets rate {rate}, want about {want:.4f}"); ok = False
sys.exit(0 if ok else 1)
PY
echo "ok   recording rules evaluate to the expected values"

api rules > "$T/rules.json" || fail "GET /api/v1/rules"
python3 - "$T/rules.json" <<'PY' || fail "rule health"
import json, sys
groups = json.load(open(sys.argv[1]))["data"]["groups"]
rules = [r for g in groups for r in g["rules"]]
bad = [f'{r["name"]}: {r.get("lastError")}' for r in rules if r.get("health") != "ok"]
print(f"{len(groups)} groups, {len(rules)} rules loaded")
if len(rules) < 20 or bad:
    print("\n".join(bad)); sys.exit(1)
PY
echo "ok   every rule loaded and evaluates without error"
firing=$(value 'count(ALERTS{alertstate="firing"})')
[ -z "$firing" ] || fail "alerts fire on a healthy tmemd: $(api query --data-urlencode 'query=ALERTS')"
echo "ok   no alert fires on a healthy tmemd"
