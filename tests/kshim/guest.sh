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
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 lab "$RUN"   # this run's files, writable
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
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
wait_for() {  # wait_for SECONDS COMMAND...: until the command (run anew each time) succeeds
	local t=$1; shift
	for ((i = 0; i < t * 10; i++)); do "$@" && return 0; sleep 0.1; done
	return 1
}
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
		>> "$RUN/tmemd.log" 2>&1 &
	TMEMD_PID=$!
	wait_for 60 port_open 7070
}
RELAY_PID=
start_relay() {
	"$RUN/bin/tmem-shimd" --servers=127.0.0.1:7070 --tenant=lab --metrics-listen=127.0.0.1:9465 \
		--call-timeout-ms=1000 --retry-ms=200 >> "$RUN/relay.log" 2>&1 &
	RELAY_PID=$!
	wait_for 60 relay_attached
}
relay_attached() { [ "$(shim attached)" = 1 ]; }
pools_announced() { [ "$(msum 9465 tmem_shimd_pools_announced_total)" -ge "$(shim pools)" ]; }

say "guest kernel $(uname -r), $(grep MemTotal /proc/meminfo)"
if [ "${LAB_DEBUG:-0}" = 1 ]; then  # every 10 s: the module's counters and the busiest processes
	( while sleep 10; do
		echo "--- debug $(cut -d' ' -f1 /proc/uptime)s: $(tr '\n' ' ' < /sys/kernel/debug/tmem_shim/stats 2>/dev/null)"
		ps -eo pid,stat,pcpu,rss,wchan:20,args --sort=-pcpu | head -8
	done ) &
fi
info "guest: Linux $(uname -r), ${GUEST_MB} MiB RAM, test file ${FILE_MB} MiB"

# ---- filesystems; the test filesystem is mounted before the module loads -----------------------
mkfs.ext4 -q -F /dev/vdc && mkdir -p /tmp/meta && mount /dev/vdc /tmp/meta
mkfs.ext4 -q -F -b 4096 /dev/vda && mkdir -p /tmp/a && mount /dev/vda /tmp/a
say "copying the ${FILE_MB} MiB test file in"
cp "$RUN/data.bin" /tmp/a/big && sync

# ---- baseline: the same reads without the shim --------------------------------------------------
drop
T_COLD=$(timed_read /tmp/a/big)
drop
T_NOSHIM=$(timed_read /tmp/a/big)
check "the test file reads back intact without the shim" test "$(sha256sum < /tmp/a/big | cut -d' ' -f1)" = "$SHA_ORIG"
say "without shim: cold ${T_COLD}s, second read ${T_NOSHIM}s"

# ---- lazy attach: module, then tmemd and the relay ----------------------------------------------
insmod "$RUN/mod/tmem_shim.ko" get_timeout_ms=2000 || { fail "insmod tmem_shim.ko"; bye; }
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

# ---- cleancache hits: evicted pages come back from tmemd ----------------------------------------
drop
cat /tmp/a/big > /dev/null     # larger than RAM: pages are evicted (put) while it is read
drop
G0=$(cc succ_gets); F0=$(cc failed_gets); H0=$(msum 9464 tmem_pool_gets_total result=hit); TO0=$(shim get_timeouts)
T_SHIM=$(timed_read /tmp/a/big)
G1=$(cc succ_gets); F1=$(cc failed_gets); H1=$(msum 9464 tmem_pool_gets_total result=hit); TO1=$(shim get_timeouts)
SUCC=$((G1 - G0)); FAILED=$((F1 - F0)); HITS=$((H1 - H0)); TOUT=$((TO1 - TO0))
info "second read with shim: ${T_SHIM}s; cleancache succ_gets +$SUCC failed_gets +$FAILED; tmemd hits +$HITS; get timeouts +$TOUT"
check "reading the file again gets cleancache hits (succ_gets +$SUCC)" test "$SUCC" -gt 0
check "tmemd's get hits match the kernel's (tmemd +$HITS, kernel +$SUCC, timed out +$TOUT)" \
	test "$HITS" -ge "$SUCC" -a "$HITS" -le $((SUCC + TOUT))
check "data served from tmemd is the file's (sha256 on a read through cleancache)" \
	test "$(drop; sha256sum < /tmp/a/big | cut -d' ' -f1)" = "$SHA_ORIG"
echo "BENCH second read of a ${FILE_MB} MiB file (2x RAM) after drop_caches: without shim ${T_NOSHIM}s, with shim ${T_SHIM}s; hit ratio $(python3 -c "print(f'{$SUCC / max(1, $SUCC + $FAILED):.3f}')") ($SUCC of $((SUCC + FAILED)) gets)" | tee -a "$R"

# ---- coherency: overwrite, truncate, delete -----------------------------------------------------
dd if="$RUN/patch.bin" of=/tmp/a/big bs=1M seek="$PATCH_OFF_MB" conv=notrunc status=none
check "an overwrite is read back after drop_caches, never the old page" \
	test "$(drop; sha256sum < /tmp/a/big | cut -d' ' -f1)" = "$SHA_PATCHED"
check "...and again, once its pages went through cleancache" \
	test "$(drop; sha256sum < /tmp/a/big | cut -d' ' -f1)" = "$SHA_PATCHED"
FL0=$(msum 9464 tmem_pool_flushes_total); I0=$(shim invalidations)
truncate -s $((FILE_MB / 2))M /tmp/a/big && sync
FL1=$(msum 9464 tmem_pool_flushes_total); I1=$(shim invalidations)
check "a truncate reaches tmemd as invalidations (shim +$((I1 - I0)), tmemd flushes +$((FL1 - FL0)))" \
	test $((I1 - I0)) -gt 0 -a $((FL1 - FL0)) -gt 0
OBJ0=$(msum 9464 tmem_pool_flushes_total kind=object)
rm /tmp/a/big && sync && drop
OBJ1=$(msum 9464 tmem_pool_flushes_total kind=object)
check "a delete reaches tmemd as an inode invalidation (+$((OBJ1 - OBJ0)))" test $((OBJ1 - OBJ0)) -gt 0

# ---- relay and tmemd restarted mid-workload -----------------------------------------------------
cp "$RUN/data.bin" /tmp/a/big && sync && drop
cat /tmp/a/big > /dev/null && drop
( for i in 1 2 3 4; do drop; sha256sum < /tmp/a/big | cut -d' ' -f1; done > /tmp/sums.txt ) &
READER=$!
sleep 4; say "kill -9 tmem-shimd"; kill -9 "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null
sleep 3; say "restart tmem-shimd"; start_relay || fail "the relay did not attach again"
sleep 4; say "kill -9 tmemd"; kill -9 "$TMEMD_PID"; wait "$TMEMD_PID" 2>/dev/null
sleep 3; say "restart tmemd"; start_tmemd || fail "tmemd did not start again"
T0=$(date +%s)
wait_for 900 test ! -d /proc/$READER
check "reads went on while the relay and tmemd were killed and restarted (no hang)" test ! -d /proc/$READER
check "every read during the restarts saw the file's data ($(sort -u /tmp/sums.txt | wc -l) distinct sums over $(wc -l < /tmp/sums.txt) reads)" \
	test "$(sort -u /tmp/sums.txt)" = "$SHA_ORIG" -a "$(wc -l < /tmp/sums.txt)" = 4
# Invalidations made while no relay runs are kept and replayed.
kill -9 "$RELAY_PID"; wait "$RELAY_PID" 2>/dev/null
cat /tmp/a/big > /dev/null; drop
dd if="$RUN/patch.bin" of=/tmp/a/big bs=1M seek="$PATCH_OFF_MB" conv=notrunc status=none; sync
REC=$(shim recorded); NEED=$(shim pool_flushes_needed)
start_relay || fail "the relay did not attach again"
check "an overwrite made while the relay was down is read back after it returns (recorded $REC, pool flushes $NEED)" \
	test "$(drop; sha256sum < /tmp/a/big | cut -d' ' -f1)" = "$SHA_PATCHED"
check "module counters are consistent (attaches $(shim attaches), detaches $(shim detaches), bad answers $(shim bad_responses), ring errors $(shim ring_errors))" \
	test "$(shim attaches)" = 3 -a "$(shim detaches)" = 2 -a "$(shim bad_responses)" = 0 -a "$(shim ring_errors)" = 0
info "module: $(tr '\n' ' ' < /sys/kernel/debug/tmem_shim/stats)"
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
