#!/usr/bin/env bash
# The systemd units under a real systemd: the runtime image's root (deploy/docker/runtime-root.sh)
# plus systemd, booted with systemd-nspawn, runs deploy/systemd/tmemd.service and
# tmem-shimd.service exactly as shipped, with all their hardening (system-call filters, no
# capabilities, private users and devices, read-only system). A driver unit inside checks that
# tmemd serves as user tmem with no capabilities, keeps a page across `systemctl restart`
# (clean stop), stops with status 0, and that tmem-shimd runs and exports its metrics while no
# shim module exists; it writes PASS/FAIL lines and powers the container off.
#   tests/deploy/systemd_lab.sh          (root; Debian mirror; ~1 min after the first run)
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/docker/runtime-root.sh
runtime_root_init systemd-lab
command -v systemd-nspawn >/dev/null || {
  step "installing systemd-container (systemd-nspawn)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd-container >/dev/null
}
runtime_root_make systemd systemd-sysv
runtime_root_unbind

install -m 0644 deploy/systemd/tmemd.service deploy/systemd/tmem-shimd.service "$ROOT/etc/systemd/system/"
mkdir -p "$ROOT/etc/tmem"
cat > "$ROOT/etc/tmem/tmemd.yaml" <<'EOF'
device: {path: /var/lib/tmem/cache.img, size: 64M}
listen: ["127.0.0.1:17171"]
metrics_listen: 127.0.0.1:19191
EOF
cat > "$ROOT/etc/default/tmem-shimd" <<'EOF'
TMEM_SERVERS=127.0.0.1:17171
TMEM_SHIMD_METRICS=127.0.0.1:19292
EOF
# The container has its own network namespace: nothing it listens on meets the host's.
cat > "$ROOT/etc/systemd/system/tmem-lab.service" <<'EOF'
[Unit]
Description=tmem systemd lab driver
After=multi-user.target
[Service]
Type=oneshot
ExecStart=/bin/bash /usr/local/sbin/tmem-lab-driver
StandardOutput=file:/var/log/tmem-lab
StandardError=file:/var/log/tmem-lab.err
ExecStopPost=/bin/systemctl --no-block poweroff
[Install]
WantedBy=multi-user.target
EOF
cat > "$ROOT/usr/local/sbin/tmem-lab-driver" <<'EOF'
#!/bin/bash
pass() { echo "PASS $*"; }
fail() { echo "FAIL $*"; }
CTL="tmemctl --server=127.0.0.1:17171 --timeout-ms=2000"
serving() { for _ in $(seq 100); do [ "$($CTL health 2>/dev/null)" = SERVING ] && return 0; sleep 0.1; done; return 1; }
field() { systemctl show -p "$2" --value "$1"; }
metrics() {  # metrics PORT: GET /metrics without curl
  exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
  printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
  cat <&3
  exec 3<&-
}

systemctl start tmemd && serving && pass "tmemd.service starts and answers the health check" ||
  { fail "tmemd.service did not start"; journalctl -u tmemd --no-pager | tail -20; }
pid=$(field tmemd MainPID)
uid=$(awk '/^Uid:/ {print $2}' /proc/$pid/status)
[ "$uid" = "$(id -u tmem)" ] && pass "tmemd runs as user tmem" || fail "tmemd runs as uid $uid"
capeff=$(awk '/^CapEff:/ {print $2}' /proc/$pid/status)
[ "$capeff" = 0000000000000000 ] && pass "tmemd has no capabilities" || fail "tmemd's CapEff is $capeff"
grep -q '^Seccomp:[[:space:]]*2' /proc/$pid/status && pass "tmemd runs under a system-call filter" ||
  fail "no seccomp filter on tmemd"
pool=$($CTL create-pool --shared-uuid=00112233445566778899aabbccddeeff)
echo "kept across a restart" | $CTL put --pool="$pool" --object=o 2>/dev/null
systemctl restart tmemd && serving || fail "tmemd did not come back after a restart"
pool=$($CTL create-pool --shared-uuid=00112233445566778899aabbccddeeff)
got=$($CTL get --pool="$pool" --object=o 2>/dev/null | tr -d '\0')
[ "$got" = "kept across a restart" ] && pass "a page put before systemctl restart is there after it" ||
  { fail "after a restart the page reads '$got'"; journalctl -u tmemd --no-pager | tail -20; }

systemctl start tmem-shimd
sleep 2
m=$(metrics 19292)
[ "$(field tmem-shimd ActiveState)" = active ] && grep -q '^tmem_shimd_attached 0' <<< "$m" &&
  pass "tmem-shimd.service runs without the module and says it is detached" ||
  { fail "tmem-shimd: $(field tmem-shimd ActiveState)"; journalctl -u tmem-shimd --no-pager | tail -20; }
systemctl stop tmem-shimd
[ "$(field tmem-shimd Result)" = success ] && pass "tmem-shimd.service stops cleanly" ||
  fail "tmem-shimd stop: $(field tmem-shimd Result)"

systemctl stop tmemd
[ "$(field tmemd Result)" = success ] && [ "$(field tmemd ExecMainStatus)" = 0 ] &&
  journalctl -u tmemd --no-pager | grep -q "stopped cleanly" &&
  pass "systemctl stop tmemd: a clean stop, status 0" ||
  { fail "tmemd stop: $(field tmemd Result) status $(field tmemd ExecMainStatus)"; journalctl -u tmemd --no-pager | tail -5; }
echo DONE
EOF
chmod +x "$ROOT/usr/local/sbin/tmem-lab-driver"
chroot "$ROOT" systemctl enable tmem-lab.service >/dev/null 2>&1

step "booting the root with systemd-nspawn"
timeout 300 systemd-nspawn -D "$ROOT" --boot --register=no --keep-unit --private-network --quiet \
  > "$WORK/nspawn.log" 2>&1 || true
[ -f "$ROOT/var/log/tmem-lab" ] || { tail -20 "$WORK/nspawn.log"; fail "the driver did not run"; }
cat "$ROOT/var/log/tmem-lab"
grep -q '^DONE' "$ROOT/var/log/tmem-lab" || { cat "$ROOT/var/log/tmem-lab.err"; fail "the driver did not finish"; }
passed=$(grep -c '^PASS' "$ROOT/var/log/tmem-lab" || true)
failed=$(grep -c '^FAIL' "$ROOT/var/log/tmem-lab" || true)
echo "systemd-lab: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -ge 8 ]
