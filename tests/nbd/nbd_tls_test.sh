#!/usr/bin/env bash
# NBD over TLS with Debian's real clients (nbdinfo, nbdcopy, qemu-img; certificates and PSK keys
# made here by scripts/make-certs.sh): X.509 with and without client certificates and
# tls-verify-peer, TLS-PSK, TLS-only exports, allow lists per tenant (read-write or read-only),
# NBD_OPT_LIST filtered, TLS-only mode for remote plaintext peers, and idle connections that
# cannot lock real clients out.
set -uo pipefail
source "$TEST_SRCDIR/tmem/tests/testing/testlib.sh"
TMEMD="$R/server/main/tmemd"
export PATH="/usr/bin:$PATH"
need openssl openssl
need nbdinfo libnbd-bin
need qemu-img qemu-utils
# A non-loopback address of this machine: a peer connecting through it is not local.
IP=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -E '^[0-9]+\.' | grep -v '^127\.' | head -1)
[ -n "$IP" ] || fail "this test needs a non-loopback IPv4 address (hostname -I shows none)"
C="$T/certs"
"$R/scripts/make-certs.sh" --server-names="$IP" "$C" alice bob carol 2>/dev/null || fail "make-certs"
"$R/scripts/make-certs.sh" "$T/other" alice 2>/dev/null || fail "make-certs (another CA)"
# libnbd's and qemu's certificate directories: ca-cert.pem, client-cert.pem, client-key.pem.
xdir() {  # xdir NAME CERTDIR TENANT|-
  mkdir -p "$T/x-$1"
  cp "$C/ca.crt" "$T/x-$1/ca-cert.pem"
  if [ "$3" != "-" ]; then cp "$2/$3.crt" "$T/x-$1/client-cert.pem"; cp "$2/$3.key" "$T/x-$1/client-key.pem"; fi
}
xdir alice "$C" alice; xdir bob "$C" bob; xdir carol "$C" carol; xdir anon "$C" -; xdir foreign "$T/other" alice
xdir server "$C" server  # tmemd's own certificate (extended key usage serverAuth only)
mkdir -p "$T/x-wrongca" && cp "$T/other/ca.crt" "$T/x-wrongca/ca-cert.pem"
grep -v '^alice:' "$C/keys.psk" > /dev/null
echo "alice:$(openssl rand -hex 32)" > "$T/wrong.psk"

NP=$(port); MP=$(port)
head -c 8M /dev/urandom > "$T/data"
cat > "$T/tmemd.yaml" <<YAML
device:
  path: $T/cache.img
  size: 64M
listen: ["127.0.0.1:$(port)"]
metrics_listen: 127.0.0.1:$MP
nbd:
  listen: ["0.0.0.0:$NP"]
  max_connections: 16
tls:
  cert: $C/server.crt
  key: $C/server.key
  ca: $C/ca.crt
  psk_file: $C/keys.psk
  client_auth: optional
  handshake_timeout_ms: 1500
tenants:
  - name: alice
    psk_identity: alice
  - name: bob
  - name: carol
exports:
  - name: secret
    backend: $T/secret.img
    size: 16M
    tls: require
    allow: [alice, "bob:ro"]
  - name: open
    backend: $T/open.img
    size: 4M
    allow: ["*:ro", alice]
YAML
start_tmemd --config="$T/tmemd.yaml"
trap 'kill -KILL $D 2>/dev/null' EXIT
X() { echo "nbds://127.0.0.1:$NP/$1?tls-certificates=$T/x-$2${3:+&$3}"; }
until_ok nbdinfo "$(X secret alice)" || fail "tmemd did not serve NBD over TLS: $(cat "$T/tmemd.log")"

# --- X.509 ---
nbdinfo "$(X secret alice)" > "$T/i1" 2>&1 && grep -q "export-size: 16777216" "$T/i1" \
  && grep -q "is_read_only: false" "$T/i1" && ok "nbdinfo over X.509 with alice's certificate" || bad "nbdinfo alice: $(cat "$T/i1")"
nbdcopy "$T/data" "$(X secret alice)" && nbdcopy "$(X secret alice)" "$T/back" \
  && cmp -n 8388608 "$T/data" "$T/back" && ok "nbdcopy round trip over TLS is bit-exact" || bad "nbdcopy over TLS"
nbdinfo "$(X secret bob)" > "$T/i2" 2>&1 && grep -q "is_read_only: true" "$T/i2" \
  && ok "bob:ro on the allow list: read-only" || bad "bob: $(cat "$T/i2")"
nbdcopy "$T/data" "$(X secret bob)" 2>/dev/null && bad "bob wrote to a read-only export" || ok "bob's writes are refused"
out=$(nbdinfo "$(X secret carol)" 2>&1) && bad "carol opened secret" || {
  echo "$out" | grep -qiE "no export named|No such file" && ok "a tenant not on the allow list is refused (as an unknown export)" \
    || bad "carol: $out"
}
nbdinfo --list "nbds://127.0.0.1:$NP/?tls-certificates=$T/x-carol" > "$T/l1" 2>&1
grep -q "export=\"open\"\|export: open\|open" "$T/l1" && ! grep -q "secret" "$T/l1" \
  && ok "NBD_OPT_LIST shows carol only what she may open" || bad "carol's list: $(cat "$T/l1")"
nbdinfo --list "nbds://127.0.0.1:$NP/?tls-certificates=$T/x-alice" 2>&1 | grep -q secret \
  && ok "NBD_OPT_LIST shows alice the TLS-only export she may open" || bad "alice's list"
nbdinfo "$(X open anon)" > "$T/i3" 2>&1 && grep -q "is_read_only: true" "$T/i3" \
  && ok "TLS without a client certificate: \"*:ro\" opens read-only" || bad "anonymous open: $(cat "$T/i3")"
nbdinfo "$(X secret anon)" >/dev/null 2>&1 && bad "an anonymous peer opened secret" || ok "TLS without a certificate: not on secret's list"
nbdinfo "$(X secret foreign)" >/dev/null 2>&1 && bad "a certificate of another CA was served" \
  || ok "a client certificate from another CA: refused"
nbdinfo "$(X open server)" >/dev/null 2>&1 && bad "a server-only certificate was served as a client" \
  || { grep -qi "refused nbd peer (tls): client certificate .*purpose" "$T/tmemd.log" \
    && ok "a certificate for servers only (no clientAuth): refused for its purpose" || bad "purpose: $(grep refused "$T/tmemd.log" | tail -2)"; }
nbdinfo "$(X open wrongca)" >/dev/null 2>&1 && bad "connected to a server of another CA while verifying it" \
  || ok "tls-verify-peer (default): a client that trusts another CA refuses the server"
out=$(nbdsh -c "h.set_tls(nbd.TLS_REQUIRE); h.set_tls_certificates(\"$T/x-wrongca\"); h.set_tls_verify_peer(False); h.set_export_name(\"open\"); h.connect_tcp(\"127.0.0.1\", \"$NP\"); print(\"size\", h.get_size())" 2>&1)
echo "$out" | grep -q "size 4194304" \
  && ok "tls-verify-peer=false: connects without checking the server" || bad "tls-verify-peer=false: $out"
grep -q "refused nbd peer (tls)" "$T/tmemd.log" && ok "the failed handshake is logged" || bad "no TLS refusal in the log"

# --- PSK ---
nbdinfo "nbds://alice@127.0.0.1:$NP/secret?tls-psk-file=$C/keys.psk" 2>&1 | grep -q "is_read_only: false" \
  && ok "nbdinfo over TLS-PSK as alice" || bad "PSK"
nbdinfo "nbds://alice@127.0.0.1:$NP/secret?tls-psk-file=$T/wrong.psk" >/dev/null 2>&1 \
  && bad "a wrong PSK was accepted" || ok "a wrong PSK key: refused"

# --- certificates reloaded without a restart: a bad file is refused and the old one kept ---
cat > "$T/peer_san.py" <<'PY'
import socket, ssl, struct, sys
port, ca, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = socket.create_connection(("127.0.0.1", port), timeout=5)
def rd(n):
    b = b""
    while len(b) < n: b += s.recv(n - len(b))
    return b
rd(18); s.sendall(struct.pack(">I", 3))
s.sendall(struct.pack(">QII", 0x49484156454F5054, 5, 0))  # NBD_OPT_STARTTLS
_, _, rtype, ln = struct.unpack(">QIII", rd(20)); rd(ln)
assert rtype == 1, rtype
ctx = ssl.create_default_context(cafile=ca)
ctx.check_hostname = False
ctx.load_cert_chain(cert, key)
t = ctx.wrap_socket(s, server_hostname="localhost")
print(" ".join(v for k, v in t.getpeercert().get("subjectAltName", ()) if k == "DNS"))
PY
$PY "$T/peer_san.py" "$NP" "$C/ca.crt" "$C/alice.crt" "$C/alice.key" | grep -qv reloaded.example \
  && ok "the server certificate before the reload" || bad "peer SANs before the reload"
cp "$C/server.crt" "$T/server.crt.good"
echo "not a certificate" > "$C/server.crt"
kill -HUP $D
for _ in $(seq 100); do grep -q "TLS reload refused" "$T/tmemd.log" && break; sleep 0.05; done
grep -q "TLS reload refused, the credentials in use stay" "$T/tmemd.log" && nbdinfo "$(X secret alice)" >/dev/null 2>&1 \
  && ok "a bad certificate file on SIGHUP is refused, says why, and the old one keeps serving" \
  || bad "bad reload: $(grep -i reload "$T/tmemd.log")"
rm -f "$C/server.crt"
"$R/scripts/make-certs.sh" --server-names="$IP,reloaded.example" "$C" 2>/dev/null || bad "make-certs (new server certificate)"
kill -HUP $D
for _ in $(seq 100); do grep -q "TLS credentials reloaded" "$T/tmemd.log" && break; sleep 0.05; done
san=$($PY "$T/peer_san.py" "$NP" "$C/ca.crt" "$C/alice.crt" "$C/alice.key" 2>&1)
echo "$san" | grep -q reloaded.example && ok "a new server certificate is served after SIGHUP, without a restart" \
  || bad "after the reload the server shows: $san"

# --- qemu-img with tls-creds-x509 ---
QOBJ="tls-creds-x509,id=tls0,dir=$T/x-alice,endpoint=client"
QIMG="driver=nbd,server.type=inet,server.host=127.0.0.1,server.port=$NP,export=secret,tls-creds=tls0"
qemu-img info --object "$QOBJ" --image-opts "$QIMG" > "$T/q1" 2>&1 && grep -q "virtual size: 16 MiB" "$T/q1" \
  && ok "qemu-img info over TLS" || bad "qemu-img info: $(cat "$T/q1")"
qemu-img convert -n --object "$QOBJ" -f raw "$T/data" --target-image-opts "$QIMG" 2> "$T/q2" \
  && qemu-img convert --object "$QOBJ" --image-opts "$QIMG" -O raw "$T/q.out" 2>> "$T/q2" \
  && cmp -n 8388608 "$T/data" "$T/q.out" && ok "qemu-img convert to and from the export over TLS" || bad "qemu-img convert: $(cat "$T/q2")"

# --- plaintext: TLS-only export, TLS-only mode off loopback (raw protocol) ---
cat > "$T/raw.py" <<'PY'
import socket, struct, sys
host, port, export = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
s = socket.create_connection((host, port), timeout=5)
def rd(n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c: raise SystemExit("closed")
        b += c
    return b
rd(18)
s.sendall(struct.pack(">I", 3))  # fixed newstyle, no zeroes
def opt(o, data=b""):
    s.sendall(struct.pack(">QII", 0x49484156454F5054, o, len(data)) + data)
    while True:
        magic, ro, rtype, ln = struct.unpack(">QIII", rd(20)); rd(ln)
        if rtype != 2: return rtype  # skip NBD_REP_SERVER entries of a list
print("%x" % opt(6, struct.pack(">I", len(export)) + export + struct.pack(">H", 0)))  # NBD_OPT_INFO
print("%x" % opt(3))  # NBD_OPT_LIST
PY
out=$($PY "$T/raw.py" 127.0.0.1 "$NP" secret)
[ "$(echo "$out" | head -1)" = "80000005" ] && ok "plaintext NBD_OPT_INFO of a TLS-only export: NBD_REP_ERR_TLS_REQD" \
  || bad "TLS-only export: $out"
[ "$(echo "$out" | sed -n 2p)" = "1" ] && ok "a loopback plaintext peer may still list" || bad "loopback list: $out"
out=$($PY "$T/raw.py" "$IP" "$NP" open)
[ "$out" = "$(printf '80000005\n80000005')" ] \
  && ok "a plaintext peer off loopback gets NBD_REP_ERR_TLS_REQD for every option but STARTTLS" || bad "remote plaintext: $out"
nbdinfo "nbd://127.0.0.1:$NP/open" 2>&1 | grep -q "export-size: 4194304" && ok "a loopback plaintext client opens an optional-TLS export" \
  || bad "loopback plaintext"

# --- idle connections do not lock real clients out, and are closed after the handshake timeout ---
cat > "$T/idle.py" <<'PY'
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for _ in range(n):
    s = socket.create_connection((host, port), timeout=10); socks.append(s)
time.sleep(0.3)
open(sys.argv[4], "w").write("ready\n")
time.sleep(3.5)  # past the 1.5 s handshake timeout
closed = 0
for s in socks:
    s.settimeout(0.5)
    try:
        while True:
            b = s.recv(65536)
            if not b: closed += 1; break
    except (socket.timeout, ConnectionResetError):
        if isinstance(sys.exc_info()[1], ConnectionResetError): closed += 1
print(closed)
PY
$PY "$T/idle.py" 127.0.0.1 "$NP" 200 "$T/idle.ready" > "$T/idle.out" &
IDLE=$!
for _ in $(seq 100); do [ -s "$T/idle.ready" ] && break; sleep 0.05; done
start=$(date +%s%N)
nbdinfo "$(X secret alice)" 2>&1 | grep -q "export-size" ; rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
[ $rc -eq 0 ] && [ $ms -lt 2000 ] && ok "200 idle connections: a real client attaches in $ms ms" \
  || bad "client behind 200 idle connections: rc=$rc after $ms ms"
wait $IDLE
[ "$(cat "$T/idle.out")" = "200" ] && ok "every idle connection is closed by the handshake timeout or evicted" \
  || bad "idle connections still open: $((200 - $(cat "$T/idle.out"))) of 200"
curl -sf "http://127.0.0.1:$MP/metrics" > "$T/m.txt"
grep -qE '^tmem_auth_refused_total\{listener="nbd",reason="tls"\} [1-9]' "$T/m.txt" \
  && ok "refused TLS handshakes are counted" || bad "metric: $(grep auth_refused "$T/m.txt")"
# libnbd's sessions (GnuTLS, TLS 1.3) had their records sealed and opened by tmemd's own layer.
grep -qE '^tmem_nbd_tls_sessions_total\{records="tmem"\} [1-9]' "$T/m.txt" \
  && grep -qE '^tmem_nbd_tls_sessions_total\{records="gnutls"\} 0$' "$T/m.txt" \
  && ok "NBD's TLS 1.3 sessions use tmemd's record layer" || bad "metric: $(grep nbd_tls_sessions "$T/m.txt")"
kill -TERM $D
finish
