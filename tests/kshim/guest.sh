#!/bin/bash
# PID 1 of the kernel lab's guest (tests/kshim/lab.sh): runs tmemd, tmem-shimd and tmem_shim.ko
# in Linux 5.10 and writes PASS/FAIL/BENCH lines to $RUN/results.txt.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp LANG=C.UTF-8
RUN=${labrun:?}
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mountpoint -q /dev || mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t 9p -o trans=virtio,version=9p2000.L,msize=65536 lab "$RUN"   # this run's files, writable
. "$RUN/lab.env"
R=$RUN/results.txt
: > "$R"
ip link set lo up 2>/dev/null || busybox ip link set lo up

say() { echo "=== [$(cut -d' ' -f1 /proc/uptime)s] $*"; }
pass() { echo "PASS $*" | tee -a "$R"; }
fail() { echo "FAIL $*" | tee -a "$R"; }
info() { echo "INFO $*" | tee -a "$R"; }
check() { local what=$1; shift; if "$@"; then pass "$what"; else fail "$what"; fi; }
bye() {
	say "powering off"
	pkill tmem-shimd; pkill tmemd; sleep 1
	echo DONE >> "$R"
	sync
	umount "$RUN" 2>/dev/null
	echo o > /proc/sysrq-trigger
	sleep 5
}
cc() { cat /sys/kernel/debug/cleancache/$1; }
shim() {  # one of the module's debugfs counters (no fork: this runs in tight loops)
	local k v
	while read -r k v; do [ "$k" = "$1" ] && { echo "$v"; return; }; done < /sys/kernel/debug/tmem_shim/stats
}
msum() { python3 "$RUN/msum.py" "$@"; }
# Page cache only: dropping inodes too (echo 3) would evict the file's inode, and an evicted
# inode's pages are invalidated in cleancache by design (truncate_inode_pages_final).
drop() { sync; echo 1 > /proc/sys/vm/drop_caches; }
wait_for() {  # wait_for SECONDS COMMAND...: until the command (run anew each time) succeeds
	local end=$((SECONDS + $1))
	shift
	until "$@"; do
		[ "$SECONDS" -ge "$end" ] && return 1
		sleep 0.1
	done
}
# The module idle: every slot answered and no invalidation left in the record (under TCG the relay
# can trail the kernel by seconds; a get that must see the effect of earlier requests waits).
idle() { [ "$(shim free_slots)" = "$(shim slots)" ] && [ "$(shim recorded)" = 0 ]; }
settle() { wait_for 300 idle || info "the module did not settle: $(tr '\n' ' ' < /sys/kernel/debug/tmem_shim/stats)"; }
port_open() { (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null; }
# One timed sequential read: prints seconds.
timed_read() {
	local t0 t1
	t0=$(date +%s.%N); cat "$1" > /dev/null; t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc
}

TMEMD_PID=
start_tmemd() {
	"$RUN/bin/tmemd" --device=/dev/vdb --metadata-dir=/tmp/meta/index --listen=127.0.0.1:7070 \
		--metrics-listen=127.0.0.1:9464 --index-cache-entries=65536 --rpc-threads=4 \
		--export=demo=/dev/vdd --nbd-listen=127.0.0.1:10809 --shutdown-timeout-ms=3000 "$@" \
		>> "$RUN/tmemd.log" 2>&1 7<&- 8<&- &   # not holding the test files open
	TMEMD_PID=$!
	wait_for 60 port_open 7070
}
RELAY_PID=
start_relay() {
	"$RUN/bin/tmem-shimd" --servers=127.0.0.1:7070 --tenant=lab --metrics-listen=127.0.0.1:9465 \
		--call-timeout-ms=1000 --retry-ms=200 >> "$RUN/relay.log" 2>&1 7<&- 8<&- &
	RELAY_PID=$!
	wait_for 60 relay_attached
}
relay_attached() { [ "$(shim attached)" = 1 ]; }
pools_announced() { [ "$(msum 9465 tmem_shimd_pools_announced_total)" -ge "$(shim pools)" ]; }

say "guest kernel $(uname -r), $(grep MemTotal /proc/meminfo)"
if [ "${LAB_DEBUG:-0}" = 1 ]; then  # every 10 s: the module's counters and the busiest processes
	( while sleep 10; do
		echo "--- debug $(cut -d' ' -f1 /proc/uptime)s: $(tr '\n' ' ' < /sys/kernel/debug/tmem_shim/stats 2>/dev/null)"
		echo "--- relay: puts $(msum 9465 tmem_shimd_puts_total) gets $(msum 9465 tmem_shimd_gets_total) hits $(msum 9465 tmem_shimd_get_hits_total) requests $(msum 9465 tmem_shimd_requests_total) client_puts_dropped $(msum 9465 tmem_shimd_client_puts_dropped_total) unreachable $(msum 9465 tmem_shimd_client_gets_unreachable_total); tmemd: puts $(msum 9464 tmem_pool_puts_total) dropped $(msum 9464 tmem_pool_puts_dropped_total) hits $(msum 9464 tmem_pool_gets_total result=hit) misses $(msum 9464 tmem_pool_gets_total result=miss)"
		ps -eo pid,stat,pcpu,rss,wchan:20,args --sort=-pcpu | head -6 | cut -c1-120
	done ) &
fi
info "guest: Linux $(uname -r), ${GUEST_MB} MiB RAM, test file ${FILE_MB} MiB"

# ---- filesystems; the test filesystem is mounted before the module loads -----------------------
# tmemd's index lives on ext4 with 1 KiB blocks, which cleancache leaves alone: in this lab tmemd
# runs in the same kernel as the shim, and its own files must not feed back into it.
mkfs.ext4 -q -F -b 1024 /dev/vdc && mkdir -p /tmp/meta && mount /dev/vdc /tmp/meta
mkfs.ext4 -q -F -b 4096 /dev/vda && mkdir -p /tmp/a && mount /dev/vda /tmp/a
say "copying the ${FILE_MB} MiB test file in"
cp "$RUN/data.bin" /tmp/a/big && sync
# Keep the file open: an inode evicted from the inode cache loses its cleancache pages by design
# (truncate_inode_pages_final invalidates them), and this small guest evicts idle inodes often.
exec 7< /tmp/a/big

# ---- baseline: the same reads without the shim --------------------------------------------------
drop
T_COLD=$(timed_read /tmp/a/big)
drop
T_NOSHIM=$(timed_read /tmp/a/big)
check "the test file reads back intact without the shim" test "$(sha256sum < /tmp/a/big | cut -d' ' -f1)" = "$SHA_ORIG"
say "without shim: cold ${T_COLD}s, second read ${T_NOSHIM}s"

# ---- lazy attach: module, then tmemd and the relay ----------------------------------------------
insmod "$RUN/mod/tmem_shim.ko" get_timeout_ms=2000 slots=1024 || { fail "insmod tmem_shim.ko"; bye; }
info "module: $(tr '\n' ' ' < /sys/kernel/debug/tmem_shim/stats)"
EXT4=$(grep -c ' ext4 ' /proc/mounts)
check "filesystems mounted before the module get pools at once, while detached ($(shim pools) pools, $EXT4 ext4 mounts)" \
	test "$(shim pools)" = "$EXT4" -a "$(shim attached)" = 0
drop   # while detached: puts are dropped
check "while no relay is attached, puts are dropped and counted" test "$(shim puts_dropped_detached)" -gt 0
start_tmemd --format || { fail "tmemd did not start"; tail "$RUN/tmemd.log"; bye; }
start_relay || { fail "the relay did not attach"; tail "$RUN/relay.log"; bye; }
check "the relay attached and announced the pool of the filesystem mounted before it" \
	wait_for 60 pools_announced
if [ "${LAB_DEBUG:-0}" = 1 ]; then
	head -c 65536 "$RUN/patch.bin" > /tmp/a/probe; sync; drop
	G=$(cc succ_gets); sha256sum /tmp/a/probe; say "probe: succ_gets $G -> $(cc succ_gets)"
	say "probe relay: puts $(msum 9465 tmem_shimd_puts_total) gets $(msum 9465 tmem_shimd_gets_total) hits $(msum 9465 tmem_shimd_get_hits_total); tmemd puts $(msum 9464 tmem_pool_puts_total) hits $(msum 9464 tmem_pool_gets_total result=hit) misses $(msum 9464 tmem_pool_gets_total result=miss)"
	python3 -c "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9464/metrics').read().decode())" | grep -E '^tmem_pool_(puts|gets)_total'
fi

# ---- cleancache hits: evicted pages come back from tmemd ----------------------------------------
drop
cat /tmp/a/big > /dev/null     # larger than RAM: pages are evicted (put) while it is read
drop; settle
counters() {  # kernel succ/failed gets, relay hits/prefetch hits/prefetched, tmemd hits, module get timeouts
	echo "$(cc succ_gets) $(cc failed_gets) $(msum 9465 tmem_shimd_get_hits_total) $(msum 9465 tmem_shimd_prefetch_hits_total) $(msum 9465 tmem_shimd_prefetched_pages_total) $(msum 9464 tmem_pool_gets_total result=hit) $(shim get_timeouts)"
}
read -r G0 F0 RH0 PH0 PF0 H0 TO0 <<< "$(counters)"
T_SHIM=$(timed_read /tmp/a/big)
read -r G1 F1 RH1 PH1 PF1 H1 TO1 <<< "$(counters)"
SUCC=$((G1 - G0)); FAILED=$((F1 - F0)); RHITS=$((RH1 - RH0)); PHITS=$((PH1 - PH0)); PFETCH=$((PF1 - PF0))
HITS=$((H1 - H0)); TOUT=$((TO1 - TO0))
info "second read with shim: ${T_SHIM}s; cleancache succ_gets +$SUCC failed_gets +$FAILED; relay hits +$RHITS (of them from pages fetched ahead +$PHITS, fetched ahead +$PFETCH); tmemd hits +$HITS; get timeouts +$TOUT"
check "reading the file again gets cleancache hits (succ_gets +$SUCC)" test "$SUCC" -gt 0
# Every kernel hit is a relay hit (a relay hit may come too late for a get that timed out), and
# every relay hit came from tmemd, directly or through a page fetched ahead.
check "the relay's hits match the kernel's (relay +$RHITS, kernel +$SUCC, timed out +$TOUT)" \
	test "$RHITS" -ge "$SUCC" -a "$RHITS" -le $((SUCC + TOUT))
check "tmemd's get hits match the relay's (tmemd +$HITS = relay +$RHITS - from pages fetched ahead +$PHITS + fetched ahead +$PFETCH)" \
	test "$HITS" = $((RHITS - PHITS + PFETCH))
check "data served from tmemd is the file's (sha256 on a read through cleancache)" \
	test "$(drop; sha256sum < /tmp/a/big | cut -d' ' -f1)" = "$SHA_ORIG"
echo "BENCH second read of a ${FILE_MB} MiB file (2x RAM) after drop_caches: without shim ${T_NOSHIM}s, with shim ${T_SHIM}s; hit ratio $(python3 -c "print(f'{$SUCC / max(1, $SUCC + $FAILED):.3f}')") ($SUCC of $((SUCC + FAILED)) gets)" | tee -a "$R"

# ---- coherency: overwrite, truncate, delete -----------------------------------------------------
# A smaller file for the rest (each read through cleancache is slow under TCG); drop_caches
# still sends every page of it through cleancache.
head -c $((MID_MB << 20)) "$RUN/data.bin" > /tmp/a/mid && sync && drop && settle
exec 8< /tmp/a/mid
# Read from disk, then put: each step starts with the module idle, so that its puts find the
# pool ready (no invalidation of the step before still owed) and the ring empty.
cat /tmp/a/mid > /dev/null && settle && drop && settle
G0=$(cc succ_gets)
check "the smaller file reads back intact through cleancache" \
	test "$(drop; sha256sum < /tmp/a/mid | cut -d' ' -f1)" = "$SHA_MID"
check "...with cleancache hits (succ_gets +$(($(cc succ_gets) - G0)))" test $(($(cc succ_gets) - G0)) -gt 0
dd if="$RUN/patch.bin" of=/tmp/a/mid bs=1M seek="$MID_PATCH_OFF_MB" conv=notrunc status=none
check "an overwrite of a cached file is read back after drop_caches, never the old page" \
	test "$(drop; sha256sum < /tmp/a/mid | cut -d' ' -f1)" = "$SHA_MID_PATCHED"
check "...and again, once its new pages went through cleancache" \
	test "$(drop; sha256sum < /tmp/a/mid | cut -d' ' -f1)" = "$SHA_MID_PATCHED"
settle
FL0=$(msum 9464 tmem_pool_flushes_total); I0=$(shim invalidations)
truncate -s $((FILE_MB / 2))M /tmp/a/big && sync && settle
flushed_since() { [ "$(msum 9464 tmem_pool_flushes_total "$@")" -gt "$FL0" ]; }
wait_for 60 flushed_since
FL1=$(msum 9464 tmem_pool_flushes_total); I1=$(shim invalidations)
check "a truncate reaches tmemd as invalidations (shim +$((I1 - I0)), tmemd flushes +$((FL1 - FL0)))" \
	test $((I1 - I0)) -gt 0 -a $((FL1 - FL0)) -gt 0
FL0=$(msum 9464 tmem_pool_flushes_total flush=object)
exec 7<&-
rm /tmp/a/big && sync && drop && settle
wait_for 60 flushed_since flush=object
OBJ1=$(msum 9464 tmem_pool_flushes_total flush=object)
check "a delete reaches tmemd as an inode invalidation (+$((OBJ1 - FL0)))" test $((OBJ1 - FL0)) -gt 0

# ---- relay and tmemd restarted mid-workload -----------------------------------------------------
head -c $((MID_MB << 20)) "$RUN/data.bin" > /tmp/a/mid && sync && drop && settle   # the same inode, still open
cat /tmp/a/mid > /dev/null && settle && drop && settle
( for i in 1 2 3 4 5 6; do drop; sha256sum < /tmp/a/mid | cut -d' ' -f1; done > /tmp/sums.txt ) &
READER=$!
sleep 4; say "kill -9 tmem-shimd"; kill -9 "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null
sleep 3; say "restart tmem-shimd"; start_relay || fail "the relay did not attach again"
sleep 4; say "kill -9 tmemd"; kill -9 "$TMEMD_PID"; wait "$TMEMD_PID" 2>/dev/null
sleep 3; say "restart tmemd"; start_tmemd || fail "tmemd did not start again"
wait_for 900 test ! -d /proc/$READER
check "reads went on while the relay and tmemd were killed and restarted (no hang)" test ! -d /proc/$READER
check "every read during the restarts saw the file's data ($(sort -u /tmp/sums.txt | wc -l) distinct sums over $(wc -l < /tmp/sums.txt) reads)" \
	test "$(sort -u /tmp/sums.txt)" = "$SHA_MID" -a "$(wc -l < /tmp/sums.txt)" = 6
# Invalidations made while no relay runs are kept and replayed.
settle; cat /tmp/a/mid > /dev/null; settle; drop; settle   # its pages in tmemd again
kill -9 "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null
dd if="$RUN/patch.bin" of=/tmp/a/mid bs=1M seek="$MID_PATCH_OFF_MB" conv=notrunc status=none; sync; drop
REC=$(shim recorded); NEED=$(shim pool_flushes_needed)
start_relay || fail "the relay did not attach again"
check "an overwrite made while the relay was down is read back after it returns (recorded $REC, pool flushes $NEED)" \
	test "$(drop; sha256sum < /tmp/a/mid | cut -d' ' -f1)" = "$SHA_MID_PATCHED"
check "module counters are consistent (attaches $(shim attaches), detaches $(shim detaches), bad answers $(shim bad_responses), ring errors $(shim ring_errors))" \
	test "$(shim attaches)" = 3 -a "$(shim detaches)" = 2 -a "$(shim bad_responses)" = 0 -a "$(shim ring_errors)" = 0
info "module: $(tr '\n' ' ' < /sys/kernel/debug/tmem_shim/stats)"
# What operators see: the module's debugfs names are the core's table, and every relay and
# module metric the dashboard and the alert rules read is exported over the real module.
python3 -c "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9465/metrics').read().decode())" > "$RUN/deploy/shimd.metrics"
check "the module's stats name exactly the core's table" \
	test "$(cut -d' ' -f1 /sys/kernel/debug/tmem_shim/stats)" = "$(cut -d' ' -f1 "$RUN/deploy/core-stats.txt")"
check "every relay and module metric the dashboard and the rules read is exported over the real module" \
	python3 "$RUN/deploy/promql_names.py" --exposed "$RUN/deploy/shimd.metrics" --only tmem_shim \
	--rules "$RUN/deploy/tmem-rules.yml" --dashboard "$RUN/deploy/tmem.json"
info "cleancache: puts $(cc puts) succ_gets $(cc succ_gets) failed_gets $(cc failed_gets) invalidates $(cc invalidates)"

# ---- a tmemd NBD export through the kernel's nbd client -----------------------------------------
if nbd-client -N demo 127.0.0.1 10809 /dev/nbd0 -b 4096 >> "$RUN/nbd.log" 2>&1 ||
   nbd-client -N demo 127.0.0.1 10809 /dev/nbd0 -b 4096 -L >> "$RUN/nbd.log" 2>&1; then
	mkdir -p /tmp/n
	mkfs.ext4 -q -F -b 4096 /dev/nbd0 && mount /dev/nbd0 /tmp/n && cp "$RUN/patch.bin" /tmp/n/p && sync &&
		umount /tmp/n && mount /dev/nbd0 /tmp/n
	check "nbd-client: mkfs, mount, write, unmount, remount and the file is intact" cmp -s "$RUN/patch.bin" /tmp/n/p
	umount /tmp/n; nbd-client -d /dev/nbd0 >> "$RUN/nbd.log" 2>&1
else
	fail "nbd-client could not attach the export (see nbd.log)"
fi
check "no kernel warnings ($(dmesg | grep -c -E 'BUG:|WARNING:|Oops|allocation failure') lines)" \
	test "$(dmesg | grep -c -E 'BUG:|WARNING:|Oops|allocation failure')" = 0
dmesg > "$RUN/dmesg.txt"
bye
