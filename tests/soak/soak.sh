#!/usr/bin/env bash
# The soak: tmemd under page and NBD traffic for MINUTES (default 30), restarted again and again,
# every answer checked against a model. Not in the default suite.
#   tests/soak/soak.sh [MINUTES]          (tests/soak/soak.sh 2: a quick check, ~3 minutes)
#
# - tmemd on a temp dir (under $SOAK_DIR, default /var/tmp: O_DIRECT needs a real filesystem):
#   a 256 MiB file-backed page device, a metadata dir, gRPC and NBD in plaintext on loopback
#   (the local tenant), an export "plain" on a 32 MiB file and an export "cached" with a 24 MiB
#   writeback cache (8 MiB RAM tier) in front of a 32 MiB file.
# - $SOAK_CLIENTS (default 3, at least 3) page clients (soak_client.cc, libtmemclient): put, get,
#   flush_page/_object/_pool on a private pool each and one shared pool of all of them, checked
#   against the cleancache model (soak_client.cc says which answers are allowed).
# - One NBD client per export (soak_nbd.py, libnbd): writes (some FUA), reads and flushes, 16 in
#   flight; read-your-writes while connected, and after every restart the whole export against
#   what must have survived.
# - Restarts, alternately SIGTERM (clean stop: pages may be kept; every acknowledged NBD write
#   survives) and kill -9 (pages of every pool dropped, pool definitions kept; NBD writes
#   acknowledged before a completed FLUSH survive), spread over the first two thirds of the run;
#   the last third is one instance, long-lived, for the RSS check. Each restart is logged to
#   restarts.log before the next tmemd starts; the clients read it to know which rules apply.
#   Every restart must bring a new instance id and keep every pool.
# - At the end: clients stop and print their JSON; the cached export is drained and its backing
#   file must equal the export; tmemd stops cleanly (exit 0).
# - RSS (VmRSS of tmemd): "start" after the warm-up on the first instance, "end" on the last
#   instance under the same load right before the clients stop; bound: end <= start + 64 MiB
#   (README "Soak" says why).
# Prints ops (pages and NBD), restarts survived, RSS, every violation; exits 1 on any violation
# or RSS over the bound, 2 if it could not run. SOAK_NO_BUILD=1 skips `bazel build`; TMEMD,
# TMEMCTL and SOAK_CLIENT name other binaries; SOAK_TMEMD_ARGS adds tmemd flags (e.g.
# --index-cache-entries=4096, so that the RAM index cache writes entries back all the time);
# SOAK_KEEP=1 keeps the temp dir (it is always
# kept on failure); an older page returned after a dropped put is a violation (put-put-get; the
# library flushes dropped handles), SOAK_STRICT_PUTS=0 only counts it (soak_client.cc).
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/testing/testlib.sh
MIN=${1:-30}
[[ "$MIN" =~ ^[0-9]+$ ]] && [ "$MIN" -ge 1 ] || { echo "usage: tests/soak/soak.sh [MINUTES]"; exit 2; }
NCLIENTS=${SOAK_CLIENTS:-3}
[ "$NCLIENTS" -ge 3 ] || NCLIENTS=3
RSS_SLACK_MIB=64

if [ "${SOAK_NO_BUILD:-0}" != 1 ]; then
  scripts/setup.sh || exit 2
  bazel build //server/main:tmemd //client:tmemctl //tests/soak:soak_client 2>&1 | grep -E 'ERROR|error:' && exit 2
fi
need nbdinfo libnbd-bin
need nbdcopy libnbd-bin
$PY -c 'import nbd' 2>/dev/null || fail "python3-libnbd is not installed (scripts/setup.sh installs it)"

T=$(mktemp -d "${SOAK_DIR:-/var/tmp}/tmem-soak.XXXXXX")
BIN="$T/bin"
mkdir -p "$BIN"
# Copies: a rebuild during the soak must not change the binary between restarts.
cp "${TMEMD:-bazel-bin/server/main/tmemd}" "$BIN/tmemd" || exit 2
cp "${TMEMCTL:-bazel-bin/client/tmemctl}" "$BIN/tmemctl" || exit 2
cp "${SOAK_CLIENT:-bazel-bin/tests/soak/soak_client}" "$BIN/soak_client" || exit 2
GP=$(port); NP=$(port)
CTL="$BIN/tmemctl --server=127.0.0.1:$GP --timeout-ms=3000"
RLOG="$T/restarts.log"
VIOL="$T/violations.txt"
: > "$RLOG"; : > "$VIOL"
truncate -s 32M "$T/plain.img" "$T/backing.img"
cat > "$T/tmemd.yaml" <<YAML
device: {path: $T/pages.img, size: 256M}
metadata_dir: $T/index
listen: ["127.0.0.1:$GP"]
metrics_listen: ""
# The DRAM tier small enough to fill during the warm-up, so that the RSS bound still means a leak.
ram_cache: 16M
nbd: {listen: ["127.0.0.1:$NP"]}
exports:
  - {name: plain, backend: $T/plain.img}
  - name: cached
    backend: $T/backing.img
    cache: {device: $T/cache.img, size: 24M, ram_cache: 8M}
YAML

violation() { echo "$*" >> "$VIOL"; echo "VIOLATION $*"; }
# The soak cannot go on (tmemd does not come back): the violations so far, then exit 1.
abort() {
  echo "FAIL: the soak stopped early; violations:"; sed 's/^/  /' "$VIOL"
  echo "files: $T"
  exit 1
}
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
log() { echo "[$((SECONDS - T0))s] $*"; }

D=
INSTANCE=0
start_tmemd() {
  "$BIN/tmemd" --config="$T/tmemd.yaml" ${SOAK_TMEMD_ARGS:-} 2>> "$T/tmemd.log" &
  D=$!
  local deadline=$((SECONDS + 120)) out
  until out=$($CTL info 2>/dev/null) && nbdinfo "nbd://127.0.0.1:$NP/cached" >/dev/null 2>&1 \
      && nbdinfo "nbd://127.0.0.1:$NP/plain" >/dev/null 2>&1; do
    if ! kill -0 "$D" 2>/dev/null; then violation "tmemd did not start: $(tail -3 "$T/tmemd.log")"; return 1; fi
    [ $SECONDS -ge $deadline ] && { violation "tmemd did not answer within 120 s"; return 1; }
    sleep 0.1
  done
  local inst
  inst=$(awk '$1 == "instance" {print $2}' <<< "$out")
  if [ -n "$inst" ] && [ "$inst" -le "$INSTANCE" ]; then
    violation "restart $NRESTART: instance id $inst after $INSTANCE (must change on every start)"
  fi
  INSTANCE=${inst:-$INSTANCE}
}
pools() { $CTL pools 2>/dev/null | awk 'NR > 1 {print $1, $2, $3}' | sort; }

PIDS=()
declare -A GONE
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  [ -n "$D" ] && kill -KILL "$D" 2>/dev/null
}
trap cleanup EXIT

TOTAL=$((MIN * 60))
WARMUP=$((TOTAL / 10)); [ $WARMUP -gt 30 ] && WARMUP=30; [ $WARMUP -lt 8 ] && WARMUP=8
WINDOW_END=$((TOTAL * 2 / 3))
NRESTARTS=$(( (WINDOW_END - WARMUP) / 60 )); [ $NRESTARTS -lt 4 ] && NRESTARTS=4
NRESTARTS=$(( (NRESTARTS + 1) / 2 * 2 ))  # as many clean stops as kills
echo "soak: $MIN min, $NCLIENTS page clients, exports plain and cached, $NRESTARTS restarts; in $T"
T0=$SECONDS
NRESTART=0
start_tmemd || exit 2
log "tmemd up (pid $D, instance $INSTANCE)"

for i in $(seq "$NCLIENTS"); do
  "$BIN/soak_client" --server=127.0.0.1:$GP --id="$i" --seed="$RANDOM" --restart-log="$RLOG" \
    --seconds=$((TOTAL + 3600)) --strict-dropped-puts="${SOAK_STRICT_PUTS:-1}" > "$T/page-$i.json" 2> "$T/page-$i.log" &
  PIDS+=($!)
done
eid=0
for e in plain cached; do
  eid=$((eid + 1))
  $PY tests/soak/soak_nbd.py --uri="nbd://127.0.0.1:$NP/$e" --name=$e --id=$eid --seed="$RANDOM" \
    --restart-log="$RLOG" --seconds=$((TOTAL + 3600)) > "$T/nbd-$e.json" 2> "$T/nbd-$e.log" &
  PIDS+=($!)
done

# Waits until the soak's second $1, sampling tmemd's RSS and checking that it and the clients live.
PEAK=0
wait_until() {
  while :; do
    local t=$((SECONDS - T0))
    [ "$t" -ge "$1" ] && return 0
    local r
    r=$(rss_kib "$D"); [ "${r:-0}" -gt "$PEAK" ] && PEAK=$r
    if ! kill -0 "$D" 2>/dev/null; then
      wait "$D"; violation "tmemd exited by itself (status $?) at ${t}s: $(tail -3 "$T/tmemd.log")"
      NRESTART=$((NRESTART + 1)); echo "$NRESTART kill (tmemd died)" >> "$RLOG"
      start_tmemd || return 1
    fi
    for p in "${PIDS[@]}"; do
      [ -n "${GONE[$p]:-}" ] && continue
      kill -0 "$p" 2>/dev/null || { violation "a client (pid $p) exited early"; GONE[$p]=1; }
    done
    sleep 1
  done
}

wait_until "$WARMUP" || abort
RSS_START=$(rss_kib "$D")
POOLS0=$(pools)
log "warm-up done: tmemd RSS $((RSS_START / 1024)) MiB, $(wc -l <<< "$POOLS0") pools"

STEP=$(( (WINDOW_END - WARMUP) / NRESTARTS ))
CLEAN=0; KILLS=0; STOP_RSS=()
GAP=$((STEP / 2)); [ $GAP -lt 5 ] && GAP=5  # at least this long between restarts (a clean stop takes a while)
LAST=0
for n in $(seq "$NRESTARTS"); do
  jitter=$(( (RANDOM % (STEP / 2 + 1)) - STEP / 4 ))
  at=$((WARMUP + n * STEP + jitter)); [ $at -lt $((LAST + GAP)) ] && at=$((LAST + GAP))
  wait_until $at || abort
  STOP_RSS+=("$(rss_kib "$D")")
  NRESTART=$n
  if [ $((n % 2)) -eq 1 ]; then
    kill -TERM "$D"
    for _ in $(seq 600); do kill -0 "$D" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$D" 2>/dev/null; then
      violation "restart $n: tmemd still running 60 s after SIGTERM"
      kill -KILL "$D"; wait "$D"; echo "$n kill (SIGTERM hung)" >> "$RLOG"; KILLS=$((KILLS + 1))
    else
      wait "$D"; rc=$?
      [ $rc -eq 0 ] || violation "restart $n: tmemd exited with status $rc on SIGTERM"
      echo "$n term" >> "$RLOG"; CLEAN=$((CLEAN + 1))
    fi
    kind="SIGTERM"
  else
    kill -KILL "$D"; wait "$D" 2>/dev/null
    echo "$n kill" >> "$RLOG"; KILLS=$((KILLS + 1))
    kind="kill -9"
  fi
  # Down for a moment: the clients' puts are dropped, gets miss, flushes are deferred.
  sleep "$($PY -c "import random; print(round(random.uniform(0.2, 2.0), 2))")"
  start_tmemd || abort
  missing=$(comm -23 <(echo "$POOLS0") <(pools))
  [ -z "$missing" ] || violation "restart $n ($kind): pools gone: $(echo $missing)"
  LAST=$((SECONDS - T0))
  log "restart $n ($kind) done: instance $INSTANCE, RSS before the stop $((STOP_RSS[-1] / 1024)) MiB"
done

# The last instance runs at least a third of the soak (restarts that took long push the end out).
END=$((LAST + TOTAL / 3)); [ $END -lt $TOTAL ] && END=$TOTAL
wait_until $((LAST + WARMUP)) || abort
RSS_LAST_START=$(rss_kib "$D")
log "last instance warmed up: tmemd RSS $((RSS_LAST_START / 1024)) MiB"
wait_until "$END" || abort
RSS_END=$(rss_kib "$D")
log "end of traffic: tmemd RSS $((RSS_END / 1024)) MiB; stopping the clients"
for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
for p in "${PIDS[@]}"; do
  for _ in $(seq 1200); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$p" 2>/dev/null && { violation "a client (pid $p) did not stop within 120 s"; kill -KILL "$p"; }
  wait "$p" 2>/dev/null
done
PIDS=()

# The cached export drained: its backing file holds exactly the export.
$CTL cache --export=cached --action=drain > "$T/drain.out" 2>&1 || violation "drain failed: $(cat "$T/drain.out")"
nbdcopy "nbd://127.0.0.1:$NP/cached" "$T/cached.out" && cmp -s "$T/cached.out" "$T/backing.img" \
  || violation "after a drain the cached export's backing file differs from the export"
nbdcopy "nbd://127.0.0.1:$NP/plain" "$T/plain.out" && cmp -s "$T/plain.out" "$T/plain.img" \
  || violation "the plain export differs from its file"
kill -TERM "$D"; wait "$D"; rc=$?; D=
[ $rc -eq 0 ] || violation "final SIGTERM: tmemd exited with status $rc"
grep -E "FATAL|Check failed|terminate called|AddressSanitizer|Segmentation" "$T/tmemd.log" | head -5 \
  | while read -r l; do violation "tmemd log: $l"; done

RSS_START=$RSS_START RSS_LAST_START=$RSS_LAST_START RSS_END=$RSS_END PEAK=$PEAK STOP_RSS="${STOP_RSS[*]}" SLACK=$RSS_SLACK_MIB CLEAN=$CLEAN \
KILLS=$KILLS MIN=$MIN SECS=$((SECONDS - T0)) T="$T" $PY - <<'PY'
import glob, json, os, sys
T = os.environ["T"]
viol = [l.rstrip("\n") for l in open(f"{T}/violations.txt") if l.strip()]
def load(path):
    lines = [l for l in open(path).read().splitlines() if l.startswith("{")]
    if not lines:
        viol.append(f"{os.path.basename(path)}: no report (see {path[:-5]}.log)")
        return None
    r = json.loads(lines[-1])
    if "fatal" in r:
        viol.append(f"{os.path.basename(path)}: client error: {r['fatal']}")
        return None
    for v in r.get("violations", []):
        viol.append(f"{os.path.basename(path)}: {json.dumps(v)}")
    extra = r.get("violation_count", 0) - len(r.get("violations", []))
    if extra > 0:
        viol.append(f"{os.path.basename(path)}: {extra} more violations not listed")
    return r
pages = [r for r in (load(p) for p in sorted(glob.glob(f"{T}/page-*.json"))) if r]
nbds = [r for r in (load(p) for p in sorted(glob.glob(f"{T}/nbd-*.json"))) if r]
S = lambda k: sum(r.get(k, 0) for r in pages)
print(f"\n== soak: {os.environ['MIN']} min asked, {os.environ['SECS']} s run")
print(f"page ops: {S('ops')} calls by {len(pages)} clients: {S('pages_put')} pages put ({S('pages_put_dropped')} dropped), "
      f"{S('pages_got')} gets ({S('hits')} hits, {S('misses')} misses, {S('misses_unreachable')} unreachable), "
      f"{S('flush_page')} flush_page, {S('flush_object')} flush_object, {S('flush_pool')} flush_pool; "
      f"{S('warm_hits')} hits of pages kept across a clean restart, {S('older_hits_after_dropped_put')} older versions "
      f"after a dropped put (allowed), {S('flushes_deferred')} flushes deferred / {S('flushes_replayed')} replayed")
for r in nbds:
    print(f"nbd ops ({r['export']}): {r['writes']} writes ({r['fua_writes']} FUA, {r['bytes_written'] >> 20} MiB), "
          f"{r['reads']} reads ({r['bytes_read'] >> 20} MiB), {r['flushes']} flushes; {r['verifies']} whole-export checks, "
          f"{r['unflushed_lost_after_kill']} unflushed sectors rolled back by kill -9 (allowed)")
print(f"nbd ops total: {sum(r['writes'] + r['reads'] + r['flushes'] for r in nbds)}")
print(f"restarts survived: {os.environ['CLEAN']} clean (SIGTERM), {os.environ['KILLS']} kill -9")
for r in pages + nbds:
    who = f"page client {r['client']}" if "client" in r else f"nbd {r['export']}"
    if r.get("restarts_clean", 0) + r.get("restarts_kill", 0) != int(os.environ["CLEAN"]) + int(os.environ["KILLS"]):
        print(f"  note: {who} saw {r.get('restarts_clean', 0)} clean + {r.get('restarts_kill', 0)} kill restarts")
start, last_start, end, peak = (int(os.environ[k]) for k in ("RSS_START", "RSS_LAST_START", "RSS_END", "PEAK"))
stops = [int(x) for x in os.environ["STOP_RSS"].split()]
bound = start + int(os.environ["SLACK"]) * 1024
print(f"tmemd RSS: start {start / 1024:.1f} MiB (first instance, after warm-up), end {end / 1024:.1f} MiB (last "
      f"instance, under load, before the final stop; {last_start / 1024:.1f} MiB after its own warm-up), "
      f"peak {peak / 1024:.1f} MiB, before each restart max "
      f"{max(stops, default=0) / 1024:.1f} MiB; bound end <= start + {os.environ['SLACK']} MiB = {bound / 1024:.1f} MiB")
if end > bound:
    viol.append(f"RSS over the bound: end {end} KiB > {bound} KiB")
print(f"violations: {len(viol)}")
for v in viol:
    print("  " + v)
print("PASS" if not viol else "FAIL")
sys.exit(1 if viol else 0)
PY
rc=$?
trap - EXIT
if [ $rc -eq 0 ] && [ "${SOAK_KEEP:-0}" != 1 ]; then rm -rf "$T"; else echo "files: $T"; fi
exit $rc
