#!/usr/bin/env python3
"""Writes deploy/grafana/tmem.json, the tmem Grafana dashboard.

The dashboard is generated so that its panels stay uniform; edit this file and run
    python3 deploy/grafana/dashboard.py
tests/deploy checks that tmem.json is what this script writes and that every metric a panel
queries is exported by a live tmemd or tmem-shimd.
"""
import json
import os
import sys

DS = {"type": "prometheus", "uid": "${datasource}"}
NODE = 'instance=~"$instance"'
POOL = NODE + ',pool=~"$pool"'
EXPORT = NODE + ',export=~"$export"'
CLIENT = 'instance=~"$client"'
RATE = "[$__rate_interval]"


class Layout:
    """Places panels left to right in rows of 24 grid units."""

    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.row_height = 0
        self.next_id = 1

    def _id(self):
        self.next_id += 1
        return self.next_id - 1

    def row(self, title):
        self.newline()
        self.panels.append({"type": "row", "title": title, "id": self._id(), "collapsed": False,
                            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y}, "panels": []})
        self.y += 1

    def newline(self):
        if self.x:
            self.y += self.row_height
            self.x = 0
            self.row_height = 0

    def panel(self, kind, title, targets, unit="short", w=8, h=8, description="", **options):
        if self.x + w > 24:
            self.newline()
        p = {
            "type": kind,
            "title": title,
            "id": self._id(),
            "datasource": DS,
            "description": description,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
            "targets": [
                {"datasource": DS, "refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
                for i, (expr, legend) in enumerate(targets)
            ],
        }
        if kind == "timeseries":
            p["options"] = {"legend": {"displayMode": "list", "placement": "bottom"},
                            "tooltip": {"mode": "multi"}}
        if kind == "stat":
            p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "value"}
        p["fieldConfig"]["defaults"].update(options)
        self.panels.append(p)
        self.x += w
        self.row_height = max(self.row_height, h)


def variable(name, label, query, multi=True):
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": {"query": query, "refId": name},
        "definition": query,
        "refresh": 2,
        "includeAll": multi,
        "multi": multi,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"} if multi else {},
        "sort": 1,
    }


def dashboard():
    L = Layout()

    L.row("Overview")
    L.panel("stat", "tmemd up", [(f'sum(up{{job="tmemd",{NODE}}})', "up")], w=4, h=4,
            description="tmemd instances answering scrapes.")
    L.panel("stat", "Page hit ratio (5m)", [(f"avg(instance:tmem_pool_get_hit_ratio:rate5m{{{NODE}}})", "")],
            unit="percentunit", w=5, h=4, min=0, max=1,
            description="Gets answered with a page, over the last 5 minutes (recording rule).")
    L.panel("stat", "Puts/s", [(f"sum(rate(tmem_pool_puts_total{{{NODE}}}{RATE}))", "")], unit="ops", w=5, h=4)
    L.panel("stat", "Gets/s", [(f"sum(rate(tmem_pool_gets_total{{{NODE}}}{RATE}))", "")], unit="ops", w=5, h=4)
    L.panel("stat", "Pools", [(f"sum(tmem_pools{{{NODE}}})", "")], w=5, h=4)

    L.row("Page pools")
    L.panel("timeseries", "Hit ratio by pool",
            [(f'sum by (instance, pool) (rate(tmem_pool_gets_total{{{POOL},result="hit"}}{RATE}))'
              f" / sum by (instance, pool) (rate(tmem_pool_gets_total{{{POOL}}}{RATE}))", "{{instance}} pool {{pool}}")],
            unit="percentunit", min=0, max=1)
    L.panel("timeseries", "Puts, gets and flushes per second",
            [(f"sum by (instance) (rate(tmem_pool_puts_total{{{POOL}}}{RATE}))", "{{instance}} puts"),
             (f'sum by (instance, result) (rate(tmem_pool_gets_total{{{POOL}}}{RATE}))', "{{instance}} gets {{result}}"),
             (f"sum by (instance, flush) (rate(tmem_pool_flushes_total{{{POOL}}}{RATE}))", "{{instance}} flush {{flush}}")],
            unit="ops")
    L.panel("timeseries", "Puts dropped and pages evicted per second",
            [(f"sum by (instance) (rate(tmem_pool_puts_dropped_total{{{POOL}}}{RATE}))", "{{instance}} puts dropped"),
             (f"sum by (instance) (rate(tmem_pages_evicted_total{{{NODE}}}{RATE}))", "{{instance}} evicted (reclaim)"),
             (f"sum by (instance) (rate(tmem_pages_evicted_compaction_total{{{NODE}}}{RATE}))",
              "{{instance}} stale entries compacted")],
            unit="ops",
            description="Puts tmemd refused, and pages that left the cache to make room.")

    L.row("Latency")
    for q, name in (("0.5", "p50"), ("0.99", "p99")):
        L.panel("timeseries", f"gRPC call latency {name}",
                [(f"histogram_quantile({q}, sum by (instance, method, le) "
                  f"(rate(tmem_request_duration_seconds_bucket{{{NODE}}}{RATE})))", "{{instance}} {{method}}")],
                unit="s")
    L.panel("timeseries", "NBD request latency p99",
            [(f"histogram_quantile(0.99, sum by (instance, export, command, le) "
              f"(rate(tmem_nbd_request_duration_seconds_bucket{{{EXPORT}}}{RATE})))", "{{export}} {{command}}")],
            unit="s")
    L.panel("timeseries", "Page wire protocol latency p99",
            [(f"histogram_quantile(0.99, sum by (instance, verb, le) "
              f"(rate(tmem_wire_request_duration_seconds_bucket{{{NODE}}}{RATE})))", "{{instance}} {{verb}}"),
             (f"histogram_quantile(0.99, sum by (instance, le) "
              f"(rate(tmem_wire_get_device_wait_seconds_bucket{{{NODE}}}{RATE})))", "{{instance}} get: device wait")],
            unit="s",
            description="A request's time in tmemd, from read whole to reply queued; a GET's device wait is "
                        "part of it. Above the device wait: a busy event loop.")

    L.row("Device")
    L.panel("timeseries", "Device usage",
            [(f'1 - tmem_log_free_segments{{{NODE},export=""}} / tmem_log_segments{{{NODE},export=""}}',
              "{{instance}} page store"),
             (f"1 - tmem_log_free_segments{{{EXPORT}}} / tmem_log_segments{{{EXPORT}}}", "{{instance}} cache {{export}}")],
            unit="percentunit", min=0, max=1,
            description="Share of the log's segments holding data. A full page store is normal: it reclaims the oldest.")
    L.panel("timeseries", "Free segments",
            [(f'tmem_log_free_segments{{{NODE},export=""}}', "{{instance}} page store"),
             (f"tmem_log_free_segments{{{EXPORT}}}", "{{instance}} cache {{export}}")])
    L.panel("timeseries", "Device bytes written per second",
            [(f'rate(tmem_log_written_bytes_total{{{NODE},export=""}}{RATE})', "{{instance}} page store"),
             (f"rate(tmem_log_written_bytes_total{{{EXPORT}}}{RATE})", "{{instance}} cache {{export}}")],
            unit="Bps")
    L.panel("timeseries", "Device errors per second",
            [(f"rate(tmem_log_read_errors_total{{{NODE}}}{RATE})", "{{instance}} {{export}} read errors"),
             (f"rate(tmem_log_write_errors_total{{{NODE}}}{RATE})", "{{instance}} {{export}} write errors"),
             (f"rate(tmem_log_crc_failures_total{{{NODE}}}{RATE})", "{{instance}} {{export}} CRC failures"),
             (f"rate(tmem_page_read_errors_total{{{NODE}}}{RATE})", "{{instance}} page read errors")],
            unit="ops")
    L.panel("timeseries", "Page index",
            [(f"tmem_index_estimated_entries{{{NODE}}}", "{{instance}} entries"),
             (f"tmem_index_cache_entries{{{NODE}}}", "{{instance}} cached in RAM")])
    L.panel("timeseries", "Page index RAM cache hit ratio",
            [(f'sum by (instance) (rate(tmem_index_cache_lookups_total{{{NODE},result="hit"}}{RATE}))'
              f" / sum by (instance) (rate(tmem_index_cache_lookups_total{{{NODE}}}{RATE}))", "{{instance}}")],
            unit="percentunit", min=0, max=1)

    L.row("NBD exports and write-back")
    L.panel("timeseries", "Dirty bytes",
            [(f"tmem_blockcache_dirty_bytes{{{EXPORT}}}", "{{instance}} {{export}}")], unit="bytes",
            description="Data written to the cache device and not yet written back to the backing store.")
    L.panel("timeseries", "Write-back (migration) rate",
            [(f"rate(tmem_blockcache_migrated_bytes_total{{{EXPORT}}}{RATE})", "{{instance}} {{export}}"),
             (f"rate(tmem_blockcache_migration_errors_total{{{EXPORT}}}{RATE})", "{{instance}} {{export}} failed batches")],
            unit="Bps")
    L.panel("timeseries", "Oldest dirty data",
            [(f"tmem_blockcache_oldest_dirty_age_seconds{{{EXPORT}}}", "{{instance}} {{export}}")], unit="s")
    L.panel("timeseries", "NBD bytes per second",
            [(f"rate(tmem_nbd_read_bytes_total{{{EXPORT}}}{RATE})", "{{instance}} {{export}} read"),
             (f"rate(tmem_nbd_written_bytes_total{{{EXPORT}}}{RATE})", "{{instance}} {{export}} written")],
            unit="Bps")
    L.panel("timeseries", "Cache read hit ratio",
            [(f"rate(tmem_blockcache_read_lines_hit_total{{{EXPORT}}}{RATE}) / (rate(tmem_blockcache_read_lines_hit_total"
              f"{{{EXPORT}}}{RATE}) + rate(tmem_blockcache_read_lines_missed_total{{{EXPORT}}}{RATE}))",
              "{{instance}} {{export}}")],
            unit="percentunit", min=0, max=1)
    L.panel("timeseries", "NBD connections and errors",
            [(f"tmem_nbd_open_connections{{{EXPORT}}}", "{{instance}} {{export}} open"),
             (f"sum by (instance, export) (rate(tmem_nbd_request_errors_total{{{EXPORT}}}{RATE}))",
              "{{instance}} {{export}} errors/s")])

    L.row("Client nodes (kernel shim and relay)")
    L.panel("stat", "Relays attached", [(f"sum(tmem_shimd_attached{{{CLIENT}}})", "")], w=4, h=8,
            description="Relays holding their node's shim ring.")
    L.panel("timeseries", "Relay get hit ratio",
            [(f"rate(tmem_shimd_get_hits_total{{{CLIENT}}}{RATE}) / rate(tmem_shimd_gets_total{{{CLIENT}}}{RATE})",
              "{{instance}}")],
            unit="percentunit", w=6, min=0, max=1)
    L.panel("timeseries", "Ring drops per second",
            [(f"rate(tmem_shim_puts_dropped_full_total{{{CLIENT}}}{RATE})", "{{instance}} puts dropped (ring full)"),
             (f"rate(tmem_shim_puts_dropped_detached_total{{{CLIENT}}}{RATE})", "{{instance}} puts dropped (no relay)"),
             (f"rate(tmem_shimd_client_puts_dropped_total{{{CLIENT}}}{RATE})", "{{instance}} puts dropped (tmemd)")],
            unit="ops", w=7)
    L.panel("timeseries", "Get timeouts and unreachable servers per second",
            [(f"rate(tmem_shim_get_timeouts_total{{{CLIENT}}}{RATE})", "{{instance}} kernel get timeouts"),
             (f"rate(tmem_shimd_client_gets_unreachable_total{{{CLIENT}}}{RATE})", "{{instance}} gets to an unreachable tmemd")],
            unit="ops", w=7)

    return {
        "title": "tmem",
        "uid": "tmem-overview",
        "description": "tmemd page pools, devices and NBD exports; tmem-shimd on client nodes.",
        "tags": ["tmem", "storage"],
        "timezone": "browser",
        "schemaVersion": 38,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "annotations": {"list": []},
        "templating": {"list": [
            {"name": "datasource", "label": "Data source", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0},
            variable("instance", "tmemd", 'label_values(tmem_build_info{job="tmemd"}, instance)'),
            variable("pool", "Pool", 'label_values(tmem_pool_puts_total{instance=~"$instance"}, pool)'),
            variable("export", "Export", 'label_values(tmem_nbd_export_size_bytes{instance=~"$instance"}, export)'),
            variable("client", "Client node", 'label_values(tmem_shimd_attached{job="tmem-shimd"}, instance)'),
        ]},
        "panels": L.panels,
    }


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tmem.json")
    text = json.dumps(dashboard(), indent=2, sort_keys=True) + "\n"
    if len(sys.argv) > 1 and sys.argv[1] == "--print":
        sys.stdout.write(text)
        return
    with open(out, "w") as f:
        f.write(text)


if __name__ == "__main__":
    main()
