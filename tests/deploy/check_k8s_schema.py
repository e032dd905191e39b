#!/usr/bin/env python3
"""Checks rendered Kubernetes objects against the API's own types: every field must be one the
object's type has (a misspelt or misplaced field is an error, which `kubectl kustomize` lets
through and the API server would drop or refuse) and every value must have the field's type.

usage: check_k8s_schema.py RENDERED.yaml

The types come from the Kubernetes Python client's generated models (Debian's
python3-kubernetes, API 1.22). Fields newer than those models are listed in NEWER with the
version that added them and are checked by tests/deploy/check_k8s.py instead. Custom resources
(ServiceMonitor, PrometheusRule) have no model here and are also left to check_k8s.py.
"""
import sys

import yaml
from kubernetes.client import models

MODELS = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ConfigMap"): "V1ConfigMap",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "DaemonSet"): "V1DaemonSet",
}
CUSTOM = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
# (model, field): Kubernetes version that added it (beta, on by default).
NEWER = {("V1Probe", "grpc"): "1.24"}
SCALARS = {"str": (str,), "int": (int,), "float": (int, float), "bool": (bool,)}


def walk(value, typ, path, problems):
    if typ.startswith("list["):
        if not isinstance(value, list):
            problems.append(f"{path}: want a list ({typ})")
            return
        for i, v in enumerate(value):
            walk(v, typ[5:-1], f"{path}[{i}]", problems)
    elif typ.startswith("dict("):
        if not isinstance(value, dict):
            problems.append(f"{path}: want a map ({typ})")
            return
        inner = typ[typ.index(",") + 1:-1].strip()
        for k, v in value.items():
            walk(v, inner, f"{path}.{k}", problems)
    elif typ in SCALARS:
        ok = isinstance(value, SCALARS[typ]) and not (typ != "bool" and isinstance(value, bool))
        if not ok:
            problems.append(f"{path}: {value!r} is not a {typ}")
    elif typ in ("object", "datetime", "date"):
        return  # int-or-string, raw extensions, times: anything YAML gives
    else:
        cls = getattr(models, typ)
        if not isinstance(value, dict):
            problems.append(f"{path}: want an object ({typ})")
            return
        by_json = {j: a for a, j in cls.attribute_map.items()}
        for k, v in value.items():
            if k not in by_json:
                if (typ, k) not in NEWER:
                    problems.append(f"{path}.{k}: {typ} has no field {k}")
                continue
            walk(v, cls.openapi_types[by_json[k]], f"{path}.{k}", problems)


def main():
    problems = []
    checked = 0
    with open(sys.argv[1]) as f:
        for doc in yaml.safe_load_all(f):
            if not doc:
                continue
            key = (doc.get("apiVersion"), doc.get("kind"))
            where = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            if key in CUSTOM:
                continue
            if key not in MODELS:
                problems.append(f"{where}: no model for {key}")
                continue
            walk(doc, MODELS[key], where, problems)
            checked += 1
    for p in problems:
        print("problem:", p)
    print(f"{checked} objects checked against the API's types; {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
