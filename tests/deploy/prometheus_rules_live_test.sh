#!/usr/bin/env bash
# A real Prometheus server loads deploy/prometheus/tmem-rules.yml, scrapes a live tmemd while a
# client gets pages in a fixed pattern (one hit, two misses) and puts one page a round, and an
# NBD client writes 4 MiB to the first half of a cached export and reads the whole 8 MiB; the
# recording rules evaluate to what that implies: page hit ratios of 1/3 (node and pool), a cache
# read hit ratio of 1/2, and the gets, puts, NBD bytes written and bytes written back over the
# 5-minute window. Every rule evaluates without error and no alert fires.
set -uo pipefail
source "$TEST_SRCDIR/tmem/tests/testing/testlib.sh"
P=$(port); M=$(port); W=$(port); N=$(port)
CTL="$R/client/tmemctl --server=127.0.0.1:$P"
need prometheus prometheus

"$R/server/main/tmemd" --device="$T/c.img" --device-size=64M --listen="127.0.0.1:$P" \
  --metrics-listen="127.0.0.1:$M" --nbd-listen="127.0.0.1:$N" --export="disk=$T/disk.img:8M" \
  --export-cache="$T/disk-cache.img:32M" \
  2> "$T/tmemd.log" &
D=$!
trap 'kill $D $PR 2>/dev/null; wait' EXIT
until_ok $CTL info
# A shared pool: its gets leave the page in place (a private pool's hit takes the page out).
POOL=$($CTL create-pool --shared-uuid=0123456789abcdef0123456789abcdef) || fail "create-pool: $(tail -3 "$T/tmemd.log")"
head -c 4096 /dev/urandom | $CTL put --pool="$POOL" --object=f >/dev/null || fail "put"
one_round() {  # pages 0, 1 and 2 of which only 0 was put: one hit, two misses; one put elsewhere
  $CTL get --pool="$POOL" --object=f --index=0 --count=3 2>&1 >/dev/null | grep -q "^1 hits, 2 misses" ||
    fail "get: not one hit and two misses"
  head -c 4096 /dev/zero | $CTL put --pool="$POOL" --object=g >/dev/null 2>&1 || fail "put"
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

head -c $((4 << 20)) /dev/urandom > "$T/4m"
rounds=0
end=$((SECONDS + 8))
# At least 8 s and 12 rounds (sanitizer builds run a round in a good part of a second).
while [ $SECONDS -lt $end ] || [ $rounds -lt 12 ]; do
  one_round
  rounds=$((rounds + 1))
  [ $rounds -eq 4 ] && { nbdcopy "$T/4m" "nbd://127.0.0.1:$N/disk" || fail "nbdcopy"; }
  [ $rounds -eq 8 ] && { nbdcopy "nbd://127.0.0.1:$N/disk" "$T/8m" || fail "nbdcopy back"; }
done
gets=$((rounds * 3)) puts=$rounds  # after the first scrape (before it: one put and one round)
# Wait until Prometheus has scraped everything the client did and the written data is written
# back (a loaded machine can delay both), then for two more rule evaluations.
want="$((gets + 3)) $((puts + 2)) $((4 << 20)) $((4 << 20))"
for _ in $(seq 240); do
  have="$(value 'sum(tmem_pool_gets_total)') $(value 'sum(tmem_pool_puts_total)')"
  have="$have $(value 'sum(tmem_nbd_written_bytes_total)') $(value 'sum(tmem_blockcache_migrated_bytes_total)')"
  [ "$have" = "$want" ] && break
  sleep 0.25
done
[ "$have" = "$want" ] || fail "Prometheus has gets, puts, NBD bytes and written-back bytes '$have', want '$want'"
[ "$(value 'up{job="tmemd"}')" = 1 ] || fail "up{job=tmemd} is not 1"
echo "ok   Prometheus scraped every get, put and byte the client made (up = 1)"
sleep 2.5

ratio=$(value 'instance:tmem_pool_get_hit_ratio:rate5m')
grate=$(value 'instance:tmem_pool_gets:rate5m')
prate=$(value 'instance:tmem_pool_puts:rate5m')
brate=$(value 'instance_export:tmem_nbd_written_bytes:rate5m{export="disk"}')
pratio=$(value 'instance_pool:tmem_pool_get_hit_ratio:rate5m{kind="shared"}')
cratio=$(value 'instance_export:tmem_blockcache_read_hit_ratio:rate5m{export="disk"}')
mrate=$(value 'instance_export:tmem_blockcache_migrated_bytes:rate5m{export="disk"}')
cmp -n $((4 << 20)) "$T/4m" "$T/8m" || fail "the export did not read back what was written"
echo "rounds $rounds ($gets gets, $puts puts, 4 MiB written and 8 MiB read over NBD): hit ratio $ratio," \
  "pool $pratio, cache reads $cratio; per second over 5m: gets $grate, puts $prate," \
  "NBD bytes written $brate, written back $mrate"
/usr/bin/python3 - "$ratio" "$grate" "$gets" "$prate" "$puts" "$brate" "$pratio" "$cratio" "$mrate" <<'PY' ||
import sys
a = sys.argv[1:]
f = lambda x: float(x or "nan")
ratio, grate, gets, prate, puts, brate = f(a[0]), f(a[1]), int(a[2]), f(a[3]), int(a[4]), f(a[5])
pratio, cratio, mrate = f(a[6]), f(a[7]), f(a[8])
ok = True
for what, got, want in (("hit ratio", ratio, 1 / 3), ("pool hit ratio", pratio, 1 / 3),
                        ("cache read hit ratio", cratio, 1 / 2)):
    if not abs(got - want) < 0.02:
        print(f"{what} {got}, want {want:.4f}"); ok = False
# rate() over 5 minutes of which about 12 s hold samples: what was done, over 300 s, extrapolated
# by at most about one scrape interval at each end of the sampled span.
for what, got, want in (("gets", grate, gets / 300), ("puts", prate, puts / 300),
                        ("NBD bytes written", brate, (4 << 20) / 300),
                        ("bytes written back", mrate, (4 << 20) / 300)):
    if not (0.95 * want <= got <= 1.2 * want):
        print(f"{what} rate {got}, want about {want:.4f}"); ok = False
sys.exit(0 if ok else 1)
PY
  fail "recording rules"
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
