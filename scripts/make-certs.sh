#!/usr/bin/env bash
# Makes the certificates tmem's TLS needs with the openssl CLI (docs/trust.md): a CA, a server
# certificate for tmemd and one client certificate per tenant, plus a PSK file for NBD clients.
#
#   scripts/make-certs.sh [--days=N] [--server-names=NAME,...] DIR [TENANT...]
#
# DIR/ca.crt, DIR/ca.key     the CA (made once: kept when present, so later calls add clients)
# DIR/server.crt, .key       tmemd's certificate; its SANs are localhost, 127.0.0.1, ::1 and every
#                            --server-names entry (node names, the headless Service's names)
# DIR/TENANT.crt, .key       a client certificate whose subject CN (and DNS SAN) is TENANT
# DIR/keys.psk               TENANT:hexkey lines (nbdkit's and libnbd's PSK file format)
#
# Keys are ECDSA P-256; private keys are mode 0600. --days (default 365) is each certificate's
# lifetime (-1 makes one that has already expired, for tests).
set -euo pipefail

days=365
server_names=""
while [ $# -gt 0 ]; do
  case "$1" in
    --days=*) days="${1#--days=}" ;;
    --server-names=*) server_names="${1#--server-names=}" ;;
    --help|-h) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --*) echo "make-certs: unknown flag $1" >&2; exit 2 ;;
    *) break ;;
  esac
  shift
done
[ $# -ge 1 ] || { echo "usage: make-certs.sh [--days=N] [--server-names=NAME,...] DIR [TENANT...]" >&2; exit 2; }
dir="$1"
shift
command -v openssl >/dev/null || { echo "make-certs: openssl is not installed (apt-get install openssl)" >&2; exit 1; }
mkdir -p "$dir"
umask 077

newkey() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

if [ ! -s "$dir/ca.crt" ] || [ ! -s "$dir/ca.key" ]; then
  newkey "$dir/ca.key"
  openssl req -x509 -new -key "$dir/ca.key" -subj "/CN=tmem CA" -days 3650 -sha256 \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -out "$dir/ca.crt" 2>/dev/null
fi

# sign NAME SUBJECT EXTFILE-TEXT
sign() {
  local name="$1" subject="$2" ext="$3"
  newkey "$dir/$name.key"
  openssl req -new -key "$dir/$name.key" -subj "$subject" -out "$dir/$name.csr" 2>/dev/null
  printf '%s\n' "$ext" >"$dir/$name.ext"
  openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
    -days "$days" -sha256 -extfile "$dir/$name.ext" -out "$dir/$name.crt" 2>/dev/null
  rm -f "$dir/$name.csr" "$dir/$name.ext"
  chmod 0644 "$dir/$name.crt"
}

if [ ! -s "$dir/server.crt" ]; then
  sans="DNS:localhost,IP:127.0.0.1,IP:::1"
  IFS=',' read -r -a extra <<<"$server_names"
  for n in "${extra[@]}"; do
    [ -n "$n" ] || continue
    if [[ "$n" =~ ^[0-9.]+$ || "$n" == *:* ]]; then sans="$sans,IP:$n"; else sans="$sans,DNS:$n"; fi
  done
  sign server "/CN=tmemd" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=$sans"
fi

for tenant in "$@"; do
  sign "$tenant" "/CN=$tenant" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
subjectAltName=DNS:$tenant"
  touch "$dir/keys.psk"
  grep -v "^$tenant:" "$dir/keys.psk" >"$dir/keys.psk.new" || true
  echo "$tenant:$(openssl rand -hex 32)" >>"$dir/keys.psk.new"
  mv "$dir/keys.psk.new" "$dir/keys.psk"
done
chmod 0644 "$dir/ca.crt"
echo "make-certs: CA, server and ${#} client certificate(s) in $dir" >&2
