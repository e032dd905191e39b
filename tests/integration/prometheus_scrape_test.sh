#!/usr/bin/env bash
# A real Prometheus server scrapes tmemd; a PromQL query through its HTTP API returns the number
# of puts this test made, and promtool accepts tmemd's /metrics.
set -uo pipefail
R="$TEST_SRCDIR/tmem"
T="$TEST_TMPDIR"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(port); M=$(port); W=$(port)
CTL="$R/client/tmemctl --server=127.0.0.1:$P"
command -v prometheus >/dev/null || { echo "prometheus is not installed (scripts/setup.sh installs it)"; exit 1; }

"$R/server/main/tmemd" --device="$T/c.img" --device-size=64M --listen="127.0.0.1:$P" \
  --metrics-listen="127.0.0.1:$M" 2> "$T/tmemd.log" &
D=$!
cat > "$T/prometheus.yml" <<YML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: tmemd
    static_configs:
      - targets: ["127.0.0.1:$M"]
YML
prometheus --config.file="$T/prometheus.yml" --storage.tsdb.path="$T/tsdb" \
  --web.listen-address="127.0.0.1:$W" > "$T/prometheus.log" 2>&1 &
PR=$!
trap 'kill $D $PR 2>/dev/null' EXIT
for _ in $(seq 100); do $CTL info >/dev/null 2>&1 && break; sleep 0.05; done

POOL=$($CTL create-pool)
head -c $((4096 * 37)) /dev/zero | $CTL put --pool="$POOL" --object=f 2>/dev/null || { echo "FAIL put"; exit 1; }

# promtool on the live endpoint.
curl -sf "http://127.0.0.1:$M/metrics" > "$T/metrics.txt" || { echo "FAIL scrape by curl"; exit 1; }
if ! promtool check metrics < "$T/metrics.txt" > "$T/promtool.txt" 2>&1; then
  echo "FAIL promtool check metrics:"; cat "$T/promtool.txt"; exit 1
fi
echo "ok   promtool accepts /metrics"

# Prometheus scrapes every second; ask until it has seen all 37 puts (30 s at most).
query='sum(tmem_pool_puts_total{job="tmemd"})'
value=""
for _ in $(seq 60); do
  value=$(curl -sf -G "http://127.0.0.1:$W/api/v1/query" --data-urlencode "query=$query" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null)
  [ "$value" = "37" ] && break
  sleep 0.5
done
if [ "$value" != "37" ]; then
  echo "FAIL PromQL $query returned '$value', want 37"; tail -5 "$T/prometheus.log"; exit 1
fi
echo "ok   PromQL $query = $value"
up=$(curl -sf -G "http://127.0.0.1:$W/api/v1/query" --data-urlencode 'query=up{job="tmemd"}' \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["result"][0]["value"][1])')
[ "$up" = "1" ] && echo "ok   up{job=tmemd} = 1" || { echo "FAIL up = $up"; exit 1; }
