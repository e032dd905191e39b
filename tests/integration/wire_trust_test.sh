#!/usr/bin/env bash
# The page wire protocol's trust rules against a real tmemd with TLS (certificates made here by
# scripts/make-certs.sh); the checks are in wire_trust_test.py. Also: a non-loopback wire
# listener without TLS refuses to start unless insecure_plaintext is written.
set -uo pipefail
source "$TEST_SRCDIR/tmem/tests/testing/testlib.sh"
TMEMD="$R/server/main/tmemd"
need openssl openssl
C="$T/certs"
"$R/scripts/make-certs.sh" "$C" alice bob carol dave 2>/dev/null || fail "make-certs"
"$R/scripts/make-certs.sh" "$T/other" mallory 2>/dev/null || fail "make-certs (another CA)"
mkdir -p "$T/expired" && cp "$C/ca.crt" "$C/ca.key" "$T/expired/"
"$R/scripts/make-certs.sh" --days=-1 "$T/expired" alice 2>/dev/null || fail "make-certs (expired alice)"

# Safe defaults first: plaintext off loopback is refused, and allowed only when written.
"$TMEMD" --device="$T/s.img" --device-size=64M --listen=127.0.0.1:0 --metrics-listen= \
  --wire-listen=0.0.0.0:0 2> "$T/refused.log" && fail "a plaintext wire listener on 0.0.0.0 started"
grep -q "wire listener 0.0.0.0:0" "$T/refused.log" && grep -q "insecure_plaintext" "$T/refused.log" \
  && ok "a plaintext wire listener off loopback refuses to start, naming the fix" \
  || bad "refusal: $(cat "$T/refused.log")"

P=$(port); PL=$(port); MP=$(port)
HANDSHAKE_S=2
cat > "$T/tmemd.yaml" <<YAML
device: {path: $T/c.img, size: 128M}
listen: ["127.0.0.1:$P"]
plaintext_listen: ["127.0.0.1:$PL"]
metrics_listen: "127.0.0.1:$MP"
wire: {listen: ["127.0.0.1:0"], plaintext_listen: ["127.0.0.1:0"], handshake_timeout_ms: $((HANDSHAKE_S * 1000)),
       max_pending_reply_bytes: 1M, threads: 2}
tls: {cert: $C/server.crt, key: $C/server.key, ca: $C/ca.crt}
tenants:
  - name: alice
  - name: bob
  - name: dave
    roles: []
YAML
start_tmemd --config="$T/tmemd.yaml"
trap 'kill -KILL $D 2>/dev/null' EXIT
wait_port "$P" || fail "tmemd did not come up: $(cat "$T/tmemd.log")"
line=$(grep -o "page wire protocol on port [0-9]* (TLS) and [0-9]* (plaintext)" "$T/tmemd.log") \
  || fail "tmemd does not say where the wire protocol listens: $(cat "$T/tmemd.log")"
WP=$(echo "$line" | awk '{print $6}'); WPL=$(echo "$line" | awk '{print $9}')
ok "wire listeners: TLS on $WP, plaintext on $WPL"
# A client that prefers AES-256-GCM (GnuTLS's NORMAL order) gets AES-128-GCM: the server's order
# wins, and it puts the suite that costs pages least first. The NBD server opens the same sessions.
need gnutls-cli gnutls-bin
desc=$(timeout 20 gnutls-cli --priority=NORMAL --x509cafile="$C/ca.crt" --x509certfile="$C/alice.crt" \
  --x509keyfile="$C/alice.key" --port="$WP" 127.0.0.1 < /dev/null 2>&1 | grep "Description:")
[[ "$desc" == *"(AES-128-GCM)"* ]] && ok "the wire listener picks AES-128-GCM for a client preferring AES-256-GCM" \
  || bad "cipher picked: ${desc:-no handshake}"
export R T C P PL MP WP WPL D HANDSHAKE_S CTL="$R/client/tmemctl"
$PY "$R/tests/integration/wire_trust_test.py" || bad "wire trust checks (above)"
finish "$T/tmemd.log"
