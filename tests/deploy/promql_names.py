#!/usr/bin/env python3
"""Lists the metric names PromQL expressions read, and checks them against /metrics outputs.

usage: promql_names.py --exposed FILE [--exposed FILE ...] [--rules FILE ...] [--dashboard FILE ...]
                       [--prometheus-rule FILE ...] [--only PREFIX ...]

Every name an alert, a recording rule or a dashboard panel reads must be a sample name in one
of the --exposed files (a daemon's /metrics), a recording rule's name, or a series Prometheus
makes itself (`up`). Prints each unknown name with where it was used, and exits 1 if any.
--only limits the check to names with one of the given prefixes (the daemons that were run).
"""
import argparse
import json
import re
import sys

import yaml

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
            "bool", "offset", "inf", "nan", "e"}
MADE_BY_PROMETHEUS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def metric_names(expr):
    """The metric names `expr` selects: identifiers that are not functions, keywords, label names
    in grouping clauses or matchers, durations or template variables."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # string literals
    e = re.sub(r"\$\{?\w+\}?", " ", e)                      # Grafana variables
    e = re.sub(r"\{[^}]*\}", " ", e)                        # label matchers
    e = re.sub(r"\[[^\]]*\]", " ", e)                       # ranges and subqueries
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def exposed_names(path, labels):
    """Sample names in a /metrics text; adds each name's label names to `labels`."""
    names = set()
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                m = re.match(r"([A-Za-z_:][\w:]*)(\{[^}]*\})?", line)
                names.add(m.group(1))
                labels.setdefault(m.group(1), set()).update(re.findall(r"(\w+)=", m.group(2) or ""))
    return names


def selector_labels(expr):
    """(metric, label, value) for every label matcher written after a metric name."""
    e = re.sub(r"\$\{?\w+\}?", "v", expr)
    out = []
    for m in re.finditer(r"([A-Za-z_:][\w:]*)\{([^}]*)\}", e):
        for lm in re.finditer(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"', m.group(2)):
            out.append((m.group(1), lm.group(1), lm.group(3)))
    return out


def rule_groups(doc):
    """Groups of a rules file or of a PrometheusRule object."""
    if doc.get("kind") == "PrometheusRule":
        return doc["spec"]["groups"]
    return doc.get("groups", [])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exposed", action="append", default=[])
    ap.add_argument("--rules", action="append", default=[])
    ap.add_argument("--prometheus-rule", action="append", default=[])
    ap.add_argument("--dashboard", action="append", default=[])
    ap.add_argument("--only", action="append", default=[])
    a = ap.parse_args()

    exposed = set(MADE_BY_PROMETHEUS)
    labels = {}
    for p in a.exposed:
        exposed |= exposed_names(p, labels)
    uses = []  # (where, expr)
    recorded = set()
    for p in a.rules + a.prometheus_rule:
        with open(p) as f:
            for doc in yaml.safe_load_all(f):
                if not doc:
                    continue
                for g in rule_groups(doc):
                    for r in g["rules"]:
                        name = r.get("record") or r.get("alert")
                        if "record" in r:
                            recorded.add(r["record"])
                        uses.append((f"{p}: {g['name']}/{name}", r["expr"]))
    for p in a.dashboard:
        with open(p) as f:
            d = json.load(f)
        for panel in d["panels"]:
            for t in panel.get("targets", []):
                uses.append((f"{p}: panel '{panel['title']}'", t["expr"]))
        for v in d.get("templating", {}).get("list", []):
            q = v.get("query")
            if isinstance(q, dict):
                q = q.get("query", "")
            m = re.match(r"label_values\((.*),\s*\w+\)$", q or "")
            if m:
                uses.append((f"{p}: variable ${v['name']}", m.group(1)))

    bad = 0
    checked = set()
    for where, expr in uses:
        names = metric_names(expr)
        if not names:
            print(f"no metric found in {where}: {expr}")
            bad += 1
        for n in sorted(names):
            if a.only and not n.startswith(tuple(a.only)):
                continue
            checked.add(n)
            if n not in exposed and n not in recorded:
                print(f"unknown metric {n} in {where}")
                bad += 1
        # A matcher on a label the metric never carries selects nothing (unless it asks for
        # the label to be empty). instance and job are added by Prometheus.
        for metric, label, value in selector_labels(expr):
            if a.only and not metric.startswith(tuple(a.only)):
                continue
            if metric in labels and label not in labels[metric] | {"instance", "job"} and value != "":
                print(f"metric {metric} has no label {label} (in {where})")
                bad += 1
    print(f"{len(uses)} expressions read {len(checked)} metrics; {bad} problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
