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

  # tmemd with that configuration; only the device and the addresses are made local.
  P=$(port); M=$(port); N=$(port)
  "$R/server/main/tmemd" --config="$T/$name/tmemd.yaml" --device="$T/$name/cache.img" --device-size=64M \
    --metadata-dir="$T/$name/index" --listen="127.0.0.1:$P" --metrics-listen="127.0.0.1:$M" \
    --nbd-listen="127.0.0.1:$N" 2> "$T/$name/tmemd.log" &
  D=$!
  CTL="$R/client/tmemctl --server=127.0.0.1:$P --timeout-ms=1000"
  for _ in $(seq 100); do [ "$($CTL health 2>/dev/null)" = SERVING ] && break; sleep 0.1; done
  [ "$($CTL health 2>&1)" = SERVING ] || { kill $D; fail "tmemd with the $name config: $(tail -3 "$T/$name/tmemd.log")"; }
  kill -TERM $D
  wait $D || fail "tmemd with the $name config did not stop cleanly: $(tail -3 "$T/$name/tmemd.log")"
  echo "ok   tmemd runs with the $name ConfigMap, answers the health probe and stops cleanly"
done

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
