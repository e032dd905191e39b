#!/usr/bin/env bash
# deploy/k8s renders with kubectl's kustomize (the base and the block-device overlay), passes
# yamllint, every rendered field exists in the Kubernetes API's types with the right type
# (tests/deploy/check_k8s_schema.py), and the objects have the structure tmemd needs
# (tests/deploy/check_k8s.py);
# the PrometheusRule is the promtool-tested rules file; and tmemd starts with each rendered
# ConfigMap's configuration, answers the gRPC health check the probes ask and stops cleanly.
set -uo pipefail
source "$TEST_SRCDIR/tmem/tests/testing/testlib.sh"
need kubectl kubernetes-client
need yamllint yamllint

# kustomize refuses symlinked roots that leave the tree; render a plain copy of deploy/.
cp -rL "$R/deploy" "$T/deploy"
yamllint -c "$T/deploy/.yamllint" "$T/deploy" || fail "yamllint"
echo "ok   yamllint"
/usr/bin/python3 "$R/deploy/k8s/prometheusrule.py" --print > "$T/pr.yaml" 2>&1 || fail "prometheusrule.py"
cmp -s "$T/pr.yaml" "$R/deploy/k8s/base/prometheusrule.yaml" ||
  fail "deploy/k8s/base/prometheusrule.yaml is not what deploy/k8s/prometheusrule.py writes; run it"
echo "ok   the PrometheusRule is current"

for variant in base:. overlay:overlays/block-device; do
  name=${variant%%:*} dir=${variant#*:}
  kubectl kustomize "$T/deploy/k8s/$dir" > "$T/$name.yaml" 2> "$T/$name.err" ||
    fail "kubectl kustomize deploy/k8s/$dir: $(cat "$T/$name.err")"
  mkdir -p "$T/$name"
  /usr/bin/python3 "$R/tests/deploy/check_k8s_schema.py" "$T/$name.yaml" || fail "API types of deploy/k8s/$dir"
  /usr/bin/python3 "$R/tests/deploy/check_k8s.py" "$T/$name.yaml" "$R/deploy/prometheus/tmem-rules.yml" "$T/$name" ||
    fail "structure of deploy/k8s/$dir"
  echo "ok   deploy/k8s/$dir renders $(grep -c '^kind:' "$T/$name.yaml") objects with the expected structure"

  # tmemd with that configuration; only the device, the addresses and the certificate files (the
  # Secret's, made here) are made local.
  P=$(port); M=$(port); N=$(port); L=$(port)
  "$R/scripts/make-certs.sh" "$T/$name/certs" client-1 2>/dev/null || fail "make-certs"
  "$R/server/main/tmemd" --config="$T/$name/tmemd.yaml" --device="$T/$name/cache.img" --device-size=64M \
    --metadata-dir="$T/$name/index" --listen="127.0.0.1:$P" --metrics-listen="127.0.0.1:$M" \
    --plaintext-listen="127.0.0.1:$L" --nbd-listen="127.0.0.1:$N" --tls-cert="$T/$name/certs/server.crt" \
    --tls-key="$T/$name/certs/server.key" --tls-ca="$T/$name/certs/ca.crt" 2> "$T/$name/tmemd.log" &
  D=$!
  CTL="$R/client/tmemctl --server=127.0.0.1:$L --timeout-ms=1000"
  TLSCTL="$R/client/tmemctl --server=127.0.0.1:$P --timeout-ms=1000 --tls-ca=$T/$name/certs/ca.crt"
  TLSCTL="$TLSCTL --tls-cert=$T/$name/certs/client-1.crt --tls-key=$T/$name/certs/client-1.key"
  for _ in $(seq 100); do [ "$($CTL health 2>/dev/null)" = SERVING ] && break; sleep 0.1; done
  [ "$($CTL health 2>&1)" = SERVING ] || { kill $D; fail "tmemd with the $name config: $(tail -3 "$T/$name/tmemd.log")"; }
  $TLSCTL info > /dev/null 2>&1 || { kill $D; fail "a client node's certificate is not served with the $name config"; }
  "$R/client/tmemctl" --server=127.0.0.1:$P --timeout-ms=1000 info > /dev/null 2>&1 &&
    { kill $D; fail "the $name config's gRPC listener answered a plaintext client"; }
  echo "ok   the $name config serves mutual TLS to a listed client node and refuses plaintext"
  kill -TERM $D
  wait $D || fail "tmemd with the $name config did not stop cleanly: $(tail -3 "$T/$name/tmemd.log")"
  echo "ok   tmemd runs with the $name ConfigMap, answers the health probe and stops cleanly"
done

# The cert-manager component: it makes the Secret tmemd mounts, signed by tmem's CA issuer.
kubectl kustomize "$T/deploy/k8s/overlays/cert-manager" > "$T/cm.yaml" 2> "$T/cm.err" ||
  fail "kubectl kustomize deploy/k8s/overlays/cert-manager: $(cat "$T/cm.err")"
/usr/bin/python3 - "$T/cm.yaml" <<'PY' || fail "the cert-manager component"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
certs = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Certificate"}
issuers = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Issuer"}
ds = next(d for d in docs if d["kind"] == "DaemonSet" and d["metadata"]["name"] == "tmemd")
secrets = [v["secret"]["secretName"] for v in ds["spec"]["template"]["spec"]["volumes"] if "secret" in v]
server = [c for c in certs.values() if c["spec"]["secretName"] in secrets]
assert server, f"no Certificate makes tmemd's Secret {secrets}: {list(certs)}"
assert "server auth" in server[0]["spec"]["usages"], server[0]["spec"]
ca = certs["tmem-ca"]["spec"]
assert ca["isCA"] and issuers["tmem-ca"]["spec"]["ca"]["secretName"] == ca["secretName"], "the CA issuer is not the CA"
assert server[0]["spec"]["issuerRef"]["name"] == "tmem-ca", "tmemd's certificate is not signed by tmem's CA"
assert all(d["metadata"].get("namespace") == "tmem" for d in docs if d["kind"] in ("Certificate", "Issuer"))
PY
echo "ok   the cert-manager component makes tmemd's Secret from tmem's CA"

# The checks can fail: a metrics port that no longer matches the configuration is caught.
sed 's/containerPort: 9464/containerPort: 9999/' "$T/base.yaml" > "$T/bad.yaml"
mkdir -p "$T/bad"
if /usr/bin/python3 "$R/tests/deploy/check_k8s.py" "$T/bad.yaml" "$R/deploy/prometheus/tmem-rules.yml" "$T/bad" > "$T/bad.out"; then
  fail "a metrics port of 9999 against metrics_listen :9464 passed"
fi
grep -q "metrics port 9999" "$T/bad.out" || fail "the mismatch was not named: $(cat "$T/bad.out")"
echo "ok   a port that does not match the configuration is caught"
sed 's/readOnlyRootFilesystem:/readOnlyRootFilesytem:/' "$T/base.yaml" > "$T/typo.yaml"
if /usr/bin/python3 "$R/tests/deploy/check_k8s_schema.py" "$T/typo.yaml" > "$T/typo.out"; then
  fail "a misspelt field passed the API type check"
fi
grep -q "has no field readOnlyRootFilesytem" "$T/typo.out" || fail "the misspelt field was not named: $(cat "$T/typo.out")"
echo "ok   a misspelt field is caught"
