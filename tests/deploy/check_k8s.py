#!/usr/bin/env python3
"""Checks the objects `kubectl kustomize deploy/k8s` (or an overlay) renders.

usage: check_k8s.py RENDERED.yaml RULES.yml OUT_DIR

Prints one line per problem and exits 1 if there is any. Writes tmemd's configuration, as the
DaemonSet mounts it, to OUT_DIR/tmemd.yaml so that the caller can start tmemd with it.
"""
import collections
import os
import sys

import yaml

WANT_KINDS = {"Namespace": 1, "ConfigMap": 2, "Service": 2, "DaemonSet": 2, "ServiceMonitor": 1,
              "PrometheusRule": 1}
problems = []


def check(ok, message):
    if not ok:
        problems.append(message)
    return ok


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def cpu_of(q):
    return float(q[:-1]) / 1000 if str(q).endswith("m") else float(q)


def main():
    rendered, rules_path, out_dir = sys.argv[1:4]
    with open(rendered) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    kinds = collections.Counter(d["kind"] for d in docs)
    check(dict(kinds) == WANT_KINDS, f"kinds {dict(kinds)}, want {WANT_KINDS}")
    by = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    for d in docs:
        if d["kind"] != "Namespace":
            check(d["metadata"].get("namespace") == "tmem", f"{d['kind']}/{d['metadata']['name']} not in namespace tmem")
        check(d["metadata"].get("labels", {}).get("app.kubernetes.io/part-of") == "tmem" or d["kind"] == "ConfigMap",
              f"{d['kind']}/{d['metadata']['name']} lacks app.kubernetes.io/part-of=tmem")
    configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}

    # Every container: an image with a tag, resources, no privilege it does not ask for.
    images = set()
    for ds in (d for d in docs if d["kind"] == "DaemonSet"):
        spec = ds["spec"]["template"]["spec"]
        name = ds["metadata"]["name"]
        check(ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items(),
              f"{name}: selector does not match its pods")
        check(bool(spec.get("nodeSelector")), f"{name}: no nodeSelector")
        check(spec.get("automountServiceAccountToken") is False, f"{name}: mounts a service account token it never uses")
        for c in spec.get("initContainers", []) + spec["containers"]:
            where = f"{name}/{c['name']}"
            images.add(c["image"])
            check(":" in c["image"].rsplit("/", 1)[-1], f"{where}: image {c['image']} has no tag")
            r = c.get("resources", {})
            check("cpu" in r.get("requests", {}) and "memory" in r.get("requests", {}), f"{where}: no cpu/memory requests")
            check("memory" in r.get("limits", {}), f"{where}: no memory limit")
            sc = c.get("securityContext", {})
            check(sc.get("readOnlyRootFilesystem") is True, f"{where}: root filesystem is writable")
            if sc.get("privileged"):
                check(sc.get("allowPrivilegeEscalation") is not False,
                      f"{where}: privileged with allowPrivilegeEscalation false (the API refuses it)")
            for cm in (e["valueFrom"]["configMapKeyRef"] for e in c.get("env", []) if "configMapKeyRef" in e.get("valueFrom", {})):
                check(cm["key"] in configmaps.get(cm["name"], {}).get("data", {}), f"{where}: no ConfigMap key {cm}")
        for v in spec.get("volumes", []):
            if "configMap" in v:
                check(v["configMap"]["name"] in configmaps, f"{name}: volume {v['name']} names a missing ConfigMap")
    check(len(images) == 1, f"containers use several images: {images}")

    # tmemd: ports, probes and the grace period follow its configuration.
    ds = by.get(("DaemonSet", "tmemd"))
    if not check(ds is not None, "no DaemonSet tmemd"):
        return
    spec = ds["spec"]["template"]["spec"]
    c = next(c for c in spec["containers"] if c["name"] == "tmemd")
    cfg_vol = next(v for v in spec["volumes"] if "configMap" in v)
    cfg_mount = next(m for m in c["volumeMounts"] if m["name"] == cfg_vol["name"])
    config_arg = next((a for a in c.get("args", []) if a.startswith("--config=")), "")
    check(os.path.dirname(config_arg[len("--config="):]) == cfg_mount["mountPath"],
          f"tmemd's --config ({config_arg}) is not in the ConfigMap's mount {cfg_mount['mountPath']}")
    key = os.path.basename(config_arg[len("--config="):])
    text = configmaps.get(cfg_vol["configMap"]["name"], {}).get("data", {}).get(key)
    if not check(text is not None, f"ConfigMap {cfg_vol['configMap']['name']} has no {key}"):
        return
    with open(os.path.join(out_dir, "tmemd.yaml"), "w") as f:
        f.write(text)
    cfg = yaml.safe_load(text)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    check(ports.get("grpc") == port_of(cfg["listen"][0]), f"grpc port {ports.get('grpc')} but tmemd listens on {cfg['listen']}")
    check(ports.get("metrics") == port_of(cfg["metrics_listen"]),
          f"metrics port {ports.get('metrics')} but metrics_listen is {cfg['metrics_listen']}")
    check(ports.get("nbd") == port_of(cfg["nbd"]["listen"][0]), f"nbd port {ports.get('nbd')} but nbd.listen is {cfg['nbd']}")
    # Pages travel on the wire protocol: its port is fixed (not 0) where clients on other nodes
    # reach it, and TLS (tls.cert set) covers it.
    wire = cfg.get("wire", {}).get("listen", [])
    check(wire and ports.get("wire") == port_of(wire[0]) and not wire[0].startswith("127."),
          f"wire port {ports.get('wire')} but wire.listen is {wire}")
    check(all(a.startswith("0.0.0.0:") or a.startswith("[::]:") for a in cfg["listen"] + [cfg["metrics_listen"]]),
          "tmemd listens on loopback only: probes and clients cannot reach it")
    # Probes: kubelet's gRPC probes speak no TLS, so they ask the health service on the plaintext
    # loopback listener through tmemctl.
    plain = cfg.get("plaintext_listen", [])
    check(all(a.startswith("127.") or a.startswith("[::1]") for a in plain), f"plaintext_listen off loopback: {plain}")
    # Readiness follows the page service; liveness (and startup) only the process (tmem.v1.Admin).
    want = {"startupProbe": "tmem.v1.Admin", "readinessProbe": "tmem.v1.PagePool", "livenessProbe": "tmem.v1.Admin"}
    for probe, service in want.items():
        p = c.get(probe, {})
        cmd = p.get("exec", {}).get("command", [])
        check(cmd[:1] == ["tmemctl"] and "health" in cmd and
              any(a == f"--server={x}" for a in cmd for x in plain),
              f"tmemd {probe} does not ask grpc.health.v1 on a plaintext_listen address {plain}: {p}")
        check(cmd[-1:] == [f"--service={service}"], f"tmemd {probe} should ask for {service}: {cmd}")
    # TLS: every file of the tls section is on the Secret's mount, and the Secret is the one the
    # cert-manager component (or deploy/README.md's command) makes.
    tls = cfg.get("tls", {})
    if check(all(tls.get(k) for k in ("cert", "key", "ca")), f"tmemd's configuration has no TLS: {tls}"):
        secret_vols = {v["name"]: v["secret"]["secretName"] for v in spec["volumes"] if "secret" in v}
        tls_mounts = [m for m in c["volumeMounts"] if m["name"] in secret_vols]
        for k in ("cert", "key", "ca"):
            check(any(os.path.dirname(tls[k]) == m["mountPath"] for m in tls_mounts),
                  f"tls.{k} {tls[k]} is not on a mounted Secret ({[m['mountPath'] for m in tls_mounts]})")
        check("tmemd-tls" in secret_vols.values(), f"tmemd mounts no Secret tmemd-tls: {secret_vols}")
        with open(os.path.join(out_dir, "tls.txt"), "w") as f:
            f.write("\n".join(tls[k] for k in ("cert", "key", "ca")) + "\n")
    check(bool(cfg.get("tenants")), "tmemd's configuration lists no tenants: every TLS client would be refused")
    grace = spec.get("terminationGracePeriodSeconds", 30)
    check(grace >= cfg.get("shutdown_timeout_ms", 10000) / 1000 + 20,
          f"terminationGracePeriodSeconds {grace} leaves no room for a clean stop after shutdown_timeout_ms")
    # The device and the page index live on the node, not in the container.
    mounts = [m["mountPath"] for m in c["volumeMounts"]]
    for path in (cfg["device"]["path"], cfg.get("metadata_dir", cfg["device"]["path"] + ".index")):
        check(any(path == m or path.startswith(m.rstrip("/") + "/") for m in mounts), f"tmemd's {path} is not on a volume")
    sc = c.get("securityContext", {})
    pod_sc = spec.get("securityContext", {})
    if not sc.get("privileged"):
        check(sc.get("capabilities", {}).get("drop") == ["ALL"], "tmemd keeps capabilities it does not need")
        check(pod_sc.get("runAsNonRoot") is True, "tmemd on a file runs as root")

    # The headless Service exposes what the container serves.
    svc = by.get(("Service", "tmemd"))
    if check(svc is not None, "no Service tmemd"):
        check(svc["spec"].get("clusterIP") == "None", "Service tmemd is not headless")
        check(svc["spec"]["selector"].items() <= ds["spec"]["template"]["metadata"]["labels"].items(),
              "Service tmemd selects no tmemd pod")
        sports = {p["name"]: p for p in svc["spec"]["ports"]}
        check(set(sports) == {"grpc", "wire", "nbd", "metrics"}, f"Service tmemd ports {set(sports)}")
        for n, p in sports.items():
            check(p["port"] == ports.get(n) and p.get("targetPort") in (n, ports.get(n)),
                  f"Service tmemd port {n} ({p}) does not match the container's {ports.get(n)}")

    # The relay: module loading is the init container's only privilege.
    rds = by.get(("DaemonSet", "tmem-shimd"))
    if check(rds is not None, "no DaemonSet tmem-shimd"):
        rspec = rds["spec"]["template"]["spec"]
        init = rspec.get("initContainers", [])
        check(len(init) == 1 and init[0]["command"][:1] == ["modprobe"], "tmem-shimd has no module-loading init container")
        for i in init:
            isc = i.get("securityContext", {})
            check(not isc.get("privileged") and isc.get("capabilities") == {"drop": ["ALL"], "add": ["SYS_MODULE"]},
                  f"module loader asks for more than CAP_SYS_MODULE: {isc}")
        rc = rspec["containers"][0]
        args = " ".join(rc.get("args", []))
        check("--servers=" in args, f"tmem-shimd args lack --servers: {args}")
        check(all(f"--tls-{k}=" in args for k in ("ca", "cert", "key")), f"tmem-shimd does not speak TLS: {args}")
        rvols = {v["name"]: v["secret"]["secretName"] for v in rspec["volumes"] if "secret" in v}
        rmounts = [m["mountPath"] for m in rc["volumeMounts"] if m["name"] in rvols]
        for a in rc.get("args", []):
            if a.startswith("--tls-"):
                check(any(a.split("=", 1)[1].startswith(m.rstrip("/") + "/") for m in rmounts),
                      f"tmem-shimd's {a} is not on a mounted Secret {rmounts}")
        rports = {p["name"]: p["containerPort"] for p in rc["ports"]}
        check(f"--metrics-listen=0.0.0.0:{rports.get('metrics')}" in args, f"relay metrics port {rports} vs {args}")
        rsvc = by.get(("Service", "tmem-shimd"), {"spec": {"ports": []}})
        check([p["port"] for p in rsvc["spec"]["ports"] if p["name"] == "metrics"] == [rports.get("metrics")],
              "Service tmem-shimd does not expose the relay's metrics port")

    # Prometheus operator objects.
    sm = by.get(("ServiceMonitor", "tmem"))
    if check(sm is not None, "no ServiceMonitor"):
        sel = sm["spec"]["selector"]["matchLabels"].items()
        for s in (d for d in docs if d["kind"] == "Service"):
            check(sel <= s["metadata"]["labels"].items(), f"ServiceMonitor does not select Service {s['metadata']['name']}")
            check(any(e["port"] in [p["name"] for p in s["spec"]["ports"]] for e in sm["spec"]["endpoints"]),
                  f"ServiceMonitor's endpoint port is not on Service {s['metadata']['name']}")
    pr = by.get(("PrometheusRule", "tmem"))
    with open(rules_path) as f:
        rules = yaml.safe_load(f)
    if check(pr is not None, "no PrometheusRule"):
        check(pr["spec"]["groups"] == rules["groups"],
              "the PrometheusRule differs from deploy/prometheus/tmem-rules.yml (run deploy/k8s/prometheusrule.py)")


if __name__ == "__main__":
    main()
    for p in problems:
        print("problem:", p)
    print(f"{len(problems)} problems")
    sys.exit(1 if problems else 0)
