#!/usr/bin/env bash
# gRPC trust against a real tmemd with TLS (certificates made here by scripts/make-certs.sh):
# mutual TLS refuses every peer that does not prove a configured tenant; tenants reach only their
# own pools; admin calls need the admin role; plaintext is loopback-only unless the operator
# writes insecure_plaintext.
set -uo pipefail
source "$TEST_SRCDIR/tmem/tests/testing/testlib.sh"
TMEMD="$R/server/main/tmemd"
CTL_BIN="$R/client/tmemctl"
need openssl openssl
C="$T/certs"
"$R/scripts/make-certs.sh" "$C" alice bob ops carol dave 2>/dev/null || fail "make-certs"
"$R/scripts/make-certs.sh" "$T/other" mallory 2>/dev/null || fail "make-certs (another CA)"
"$R/scripts/make-certs.sh" --days=-1 "$T/expired" 2>/dev/null || fail "make-certs (expired)"
# An expired certificate for a configured tenant, from the right CA.
cp "$C/ca.crt" "$C/ca.key" "$T/expired/" && rm -f "$T/expired/server.crt"
"$R/scripts/make-certs.sh" --days=-1 "$T/expired" alice 2>/dev/null || fail "make-certs (expired alice)"

P=$(port)
PL=$(port)
MP=$(port)
cat > "$T/tmemd.yaml" <<YAML
device:
  path: $T/c.img
  size: 64M
listen: ["127.0.0.1:$P"]
plaintext_listen: ["127.0.0.1:$PL"]
metrics_listen: "127.0.0.1:$MP"
tls:
  cert: $C/server.crt
  key: $C/server.key
  ca: $C/ca.crt
tenants:
  - name: alice
  - name: bob
    max_pools: 2
  - name: ops
    roles: [admin]
  - name: dave
    roles: []
YAML
start_tmemd --config="$T/tmemd.yaml"
trap 'kill -KILL $D 2>/dev/null' EXIT
as() {  # as TENANT-DIR NAME tmemctl-args...
  local dir="$1" name="$2"
  shift 2
  "$CTL_BIN" --server="127.0.0.1:$P" --timeout-ms=3000 --tls-ca="$C/ca.crt" --tls-cert="$dir/$name.crt" \
    --tls-key="$dir/$name.key" "$@"
}
A() { as "$C" alice "$@"; }
B() { as "$C" bob "$@"; }
until_ok A info >/dev/null 2>&1 || fail "tmemd with TLS did not come up: $(cat "$T/tmemd.log")"
grep -q "(TLS)" "$T/tmemd.log" && ok "tmemd says its gRPC listener speaks TLS" || bad "log: $(cat "$T/tmemd.log")"

# --- mutual TLS: who may connect ---
"$CTL_BIN" --server="127.0.0.1:$P" --timeout-ms=2000 info >/dev/null 2>&1 \
  && bad "a plaintext client reached the TLS listener" || ok "plaintext client refused by the TLS listener"
"$CTL_BIN" --server="127.0.0.1:$P" --timeout-ms=2000 --tls-ca="$C/ca.crt" info >/dev/null 2>&1 \
  && bad "a client without a certificate was served" || ok "no client certificate: refused"
as "$T/other" mallory --tls-ca="$C/ca.crt" info >/dev/null 2>&1 \
  && bad "a certificate of another CA was served" || ok "certificate from another CA: refused"
as "$T/expired" alice info >/dev/null 2>&1 && bad "an expired certificate was served" || ok "expired certificate: refused"
out=$(as "$C" carol info 2>&1) && bad "carol (no tenant) was served" || {
  echo "$out" | grep -q "names no configured tenant" && ok "certificate of no configured tenant: UNAUTHENTICATED" \
    || bad "carol: $out"
}
A info | grep -q "instance" && ok "alice's certificate is served" || bad "alice info"
as "$C" server info >/dev/null 2>&1 && bad "tmemd's own (server-only) certificate was served as a client" \
  || { grep -qi "refused grpc peer (tls): client certificate .*purpose" "$T/tmemd.log" \
    && ok "a certificate for servers only (no clientAuth): refused for its purpose" || bad "purpose: $(grep refused "$T/tmemd.log")"; }
# Each refused handshake is counted and logged with the certificate and the reason (a client may
# try more than once within its deadline: at least one count per client).
curl -sf "http://127.0.0.1:$MP/metrics" -o "$T/m.txt" || bad "no /metrics"
n=$(awk '/^tmem_auth_refused_total\{listener="grpc",reason="tls"\}/ {print $2}' "$T/m.txt")
[ "${n:-0}" -ge 4 ] && ok "refused gRPC handshakes counted ($n)" || bad "grpc tls refusals: $(grep auth_refused "$T/m.txt")"
grep -q "refused grpc peer (tls): the client showed no certificate" "$T/tmemd.log" \
  && grep -q "refused grpc peer (tls): client certificate 'mallory': .*issuer" "$T/tmemd.log" \
  && grep -q "refused grpc peer (tls): client certificate 'alice': .*expired" "$T/tmemd.log" \
  && ok "each refused handshake is logged with its certificate and reason" \
  || bad "refusal log: $(grep 'refused grpc' "$T/tmemd.log")"

# --- isolation: bob against alice's real pool ids and UUID ---
UUID=00112233445566778899aabbccddeeff
PA=$(A create-pool --shared-uuid=$UUID --page-size=4096) || bad "alice create-pool"
PP=$(A create-pool --page-size=4096) || bad "alice private pool"
head -c 16384 /dev/urandom > "$T/a.data"
A put --pool="$PA" --object=f --file="$T/a.data" 2>/dev/null && ok "alice puts 4 pages" || bad "alice put"
A put --pool="$PP" --object=g --file="$T/a.data" 2>/dev/null || bad "alice private put"
not_found() {  # what, then the command
  local what="$1"; shift
  local out
  out=$("$@" 2>&1) && { bad "$what: bob succeeded"; return; }
  if echo "$out" | grep -qE "pool [0-9]+ does not exist"; then ok "$what: NOT_FOUND, as for no pool"; else bad "$what: $out"; fi
}
for pool in "$PA" "$PP"; do
  not_found "bob get from alice's pool $pool" B get --pool="$pool" --object=f --count=4 --file="$T/b.out"
  not_found "bob put to alice's pool $pool" B put --pool="$pool" --object=f --file="$T/a.data"
  not_found "bob flush page of alice's pool $pool" B flush --pool="$pool" --object=f --index=1
  not_found "bob flush object of alice's pool $pool" B flush --pool="$pool" --object=f
  not_found "bob flush pool of alice's pool $pool" B flush --pool="$pool"
  not_found "bob stats of alice's pool $pool" B stats --pool="$pool"
  not_found "bob destroy of alice's pool $pool" B destroy-pool --pool="$pool"
done
# The same message as an id that never existed: no oracle.
out=$(B stats --pool=9999 2>&1)
echo "$out" | grep -q "pool 9999 does not exist" && ok "unknown id answers the same way" || bad "pool 9999: $out"
[ -z "$(B pools | grep -E '^[0-9]')" ] && ok "bob's pool list is empty" || bad "bob sees: $(B pools)"
A pools | grep -qE "^$PA +shared" && A pools | grep -qE "^$PP +private" && ok "alice lists her two pools" || bad "alice pools: $(A pools)"
A get --pool="$PA" --object=f --count=4 --file="$T/a.out" 2>"$T/a.err"
grep -q "4 hits, 0 misses" "$T/a.err" && cmp -s "$T/a.data" "$T/a.out" && ok "every page of alice's is intact" \
  || bad "alice's pages after bob: $(cat "$T/a.err")"
A get --pool="$PP" --object=g --count=4 2>&1 >/dev/null | grep -q "4 hits" && ok "alice's private pages intact" \
  || bad "alice private pages"
PB=$(B create-pool --shared-uuid=$UUID --page-size=4096)
[ -n "$PB" ] && [ "$PB" != "$PA" ] && ok "bob's shared pool of alice's UUID is his own ($PB, not $PA)" || bad "bob uuid pool: $PB"
B get --pool="$PB" --object=f --count=4 2>&1 >/dev/null | grep -q "0 hits, 4 misses" && ok "bob's pool holds none of alice's pages" \
  || bad "bob's pool"
out=$(B create-pool --shared-uuid=$UUID --tenant=alice 2>&1) && bad "bob named tenant alice" || {
  echo "$out" | grep -q "is not the caller's tenant" && ok "a tenant field naming another tenant: PERMISSION_DENIED" \
    || bad "tenant field: $out"
}
B create-pool >/dev/null 2>&1
out=$(B create-pool 2>&1) && bad "bob exceeded max_pools: 2" || {
  echo "$out" | grep -q "quota of 2 pools" && ok "a tenant's pool quota is enforced" || bad "quota: $out"
}

# --- roles ---
out=$(A exports 2>&1) && bad "alice listed exports" || {
  echo "$out" | grep -q "needs the admin role" && ok "ListExports by a non-admin: PERMISSION_DENIED" || bad "exports: $out"
}
out=$(A cache --export=x --action=drain 2>&1) && bad "alice drained" || {
  echo "$out" | grep -q "needs the admin role" && ok "ExportControl by a non-admin: PERMISSION_DENIED" || bad "cache: $out"
}
n=$(as "$C" ops pools | grep -cE '^[0-9]')
[ "$n" = "4" ] && ok "an admin lists every tenant's pools ($n)" || bad "ops pools: $(as "$C" ops pools)"
as "$C" ops stats --pool="$PA" | grep -qE "^puts +4$" && ok "an admin reads any tenant's pool stats" || bad "ops stats"
out=$(as "$C" dave create-pool 2>&1)
[ $? -ne 0 ] && echo "$out" | grep -q "needs the pages role" && ok "a tenant without roles: PERMISSION_DENIED" || bad "dave: $out"

# --- plaintext: loopback only, the local tenant ---
"$CTL_BIN" --server="127.0.0.1:$PL" pools | grep -qE "^$PA " && ok "plaintext loopback listener: the local tenant (admin)" \
  || bad "plaintext listener"
grep -q "refused grpc peer (unknown_tenant)" "$T/tmemd.log" && ok "the refused certificate is logged" || bad "no refusal logged"

# --- SIGHUP reloads the CA that gRPC clients are verified against ---
cat "$C/ca.crt" "$T/other/ca.crt" > "$T/both-ca.crt"
cp "$C/ca.crt" "$T/ca.orig" && cp "$T/both-ca.crt" "$C/ca.crt" && kill -HUP $D
until_ok grep -q "TLS credentials reloaded (SIGHUP)" "$T/tmemd.log" || bad "no reload logged"
out=$(as "$T/other" mallory --tls-ca="$T/ca.orig" info 2>&1)
echo "$out" | grep -q "names no configured tenant" \
  && ok "after SIGHUP a certificate of the added CA passes the handshake (mallory: no tenant)" || bad "mallory: $out"
reloads() { test "$(grep -c 'TLS credentials reloaded (SIGHUP)' "$T/tmemd.log")" -ge "$1"; }
cp "$T/ca.orig" "$C/ca.crt" && kill -HUP $D
until_ok reloads 2 || bad "no second reload: $(grep -E 'TLS|SIGHUP|reload' "$T/tmemd.log" | tail -5)"
before=$(grep -c "refused grpc peer (tls): client certificate 'mallory'" "$T/tmemd.log")
out=$(as "$T/other" mallory --tls-ca="$T/ca.orig" info 2>&1)
after=$(grep -c "refused grpc peer (tls): client certificate 'mallory'" "$T/tmemd.log")
! echo "$out" | grep -q "names no configured tenant" && [ "$after" -gt "$before" ] \
  && ok "after SIGHUP the removed CA is refused again (at the handshake)" || bad "mallory after the CA was removed: $out"

# --- safe defaults ---
Q=$(port)
"$TMEMD" --device="$T/d.img" --device-size=64M --listen="0.0.0.0:$Q" --metrics-listen= 2> "$T/open.log"; rc=$?
[ $rc -eq 2 ] && grep -q "is not a loopback address and TLS is not configured" "$T/open.log" \
  && grep -q "insecure_plaintext: true" "$T/open.log" && ok "a non-loopback plaintext listener refuses to start" \
  || bad "non-loopback plaintext rc=$rc: $(cat "$T/open.log")"
M=$(port)
"$TMEMD" --device="$T/d.img" --device-size=64M --listen="0.0.0.0:$Q" --metrics-listen="127.0.0.1:$M" \
  --insecure-plaintext=true 2> "$T/insecure.log" &
D2=$!
trap 'kill -KILL $D $D2 2>/dev/null' EXIT
until_ok curl -sf "http://127.0.0.1:$M/metrics" -o "$T/m.txt" || bad "insecure tmemd did not come up"
grep -qE "^tmem_insecure_plaintext_listeners 1" "$T/m.txt" && ok "insecure_plaintext starts and exports the warning metric" \
  || bad "metric: $(grep insecure "$T/m.txt")"
grep -q "insecure_plaintext: gRPC listener 0.0.0.0:$Q" "$T/insecure.log" && ok "insecure_plaintext is logged at start" \
  || bad "insecure log"
kill -TERM $D2
finish
