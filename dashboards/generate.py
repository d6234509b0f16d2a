#!/usr/bin/env python3
"""Writes the Grafana dashboards (nasflow-nas.json, nasflow-task.json, nasflow-pod.json,
nasflow-server.json) and the chart's copies of them and of the alert rules.

The dashboards are generated so that every panel is built the same way (one selector per
dashboard, the same rate window, latency that works with classic and native histograms) and
so that tests can list every query. Edit this file, not the JSON:
    python3 dashboards/generate.py
tests/dashboards/test_dashboards.py fails when the JSON differs from what this writes.
"""
import json
import pathlib
import shutil

HERE = pathlib.Path(__file__).resolve().parent
CHART = HERE.parent / "charts" / "nasflow"
RATE = "$__rate_interval"

# Template variables. `cluster` is the label a multi-cluster Prometheus or Mimir adds
# (external_labels, or the collector's resource attributes promoted to labels); where there
# is none, "All" matches series without it.
DATASOURCE = {
    "name": "datasource",
    "type": "datasource",
    "query": "prometheus",
    "label": "Data source",
    "current": {},
    "hide": 0,
}


def query_var(name, label, query, multi=True):
    """A template variable listing the values of a label, "All" (any value, or none) first."""
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "query": {"query": query, "refId": f"{name}-values"},
        "definition": query,
        "refresh": 2,
        "includeAll": True,
        "allValue": ".*",
        "multi": multi,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
        "hide": 0,
    }


CLIENT = "nfs_client_operation_count_total"
SERVER = "nfs_server_operation_count_total"
CLUSTER = query_var("cluster", "Cluster", f"label_values({CLIENT}, cluster)")
NAMESPACE = query_var("namespace", "Namespace", f'label_values({CLIENT}{{cluster=~"$cluster"}}, k8s_namespace_name)')
TASK = query_var(
    "task", "Task", f'label_values({CLIENT}{{cluster=~"$cluster", k8s_namespace_name=~"$namespace"}}, nasflow_task)'
)
POD_VAR = query_var(
    "pod",
    "Pod",
    f'label_values({CLIENT}{{cluster=~"$cluster", k8s_namespace_name=~"$namespace", nasflow_task=~"$task"}}, k8s_pod_name)',
)
NAS_SERVER = query_var("server", "NAS server", f'label_values({CLIENT}{{cluster=~"$cluster"}}, server_address)')
NAS_EXPORT = query_var(
    "export", "NAS export", f'label_values({CLIENT}{{cluster=~"$cluster", server_address=~"$server"}}, nfs_export_path)'
)
SERVED_EXPORT = query_var("export", "Export", f'label_values({SERVER}{{cluster=~"$cluster"}}, nfs_export_path)')
SERVED_CLIENT = query_var(
    "client", "Client", f'label_values({SERVER}{{cluster=~"$cluster", nfs_export_path=~"$export"}}, client_address)'
)

NAS_SEL = 'cluster=~"$cluster", server_address=~"$server", nfs_export_path=~"$export"'
TASK_SEL = 'cluster=~"$cluster", k8s_namespace_name=~"$namespace", nasflow_task=~"$task"'
POD_SEL = 'cluster=~"$cluster", k8s_namespace_name=~"$namespace", nasflow_task=~"$task", k8s_pod_name=~"$pod"'
SERVED_SEL = 'cluster=~"$cluster", nfs_export_path=~"$export", client_address=~"$client"'


def rate(metric, sel, by, extra=""):
    """sum by (BY) (rate(METRIC{SEL}[window]))"""
    inner = sel + (", " + extra if extra else "")
    return f"sum by ({by}) (rate({metric}{{{inner}}}[{RATE}]))"


def quantile(q, histogram, sel, by):
    """A latency quantile from classic buckets, or from a native histogram."""
    return (
        f"histogram_quantile({q}, sum by (le, {by}) (rate({histogram}_bucket{{{sel}}}[{RATE}])))"
        f" or histogram_quantile({q}, sum by ({by}) (rate({histogram}{{{sel}}}[{RATE}])))"
    )


def time_spent(histogram, sel, by):
    """Seconds of operations per second: the histogram's sum, classic or native."""
    return (
        f"sum by ({by}) (rate({histogram}_sum{{{sel}}}[{RATE}]))"
        f" or sum by ({by}) (histogram_sum(rate({histogram}{{{sel}}}[{RATE}])))"
    )


def target(expr, legend):
    return {"expr": expr, "legendFormat": legend}


def panel(title, unit, targets, description, kind="timeseries", stack=False):
    p = {
        "title": title,
        "type": kind,
        "description": description,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(targets)],
        "options": {"legend": {"displayMode": "table", "placement": "right", "calcs": ["mean", "max"]}},
    }
    if kind == "timeseries":
        p["fieldConfig"]["defaults"]["custom"] = {"stacking": {"mode": "normal" if stack else "none"}, "fillOpacity": 10}
    return p


def dashboard(uid, title, description, variables, panels):
    laid = []
    for i, p in enumerate(panels):
        laid.append(dict(p, id=i + 1, gridPos={"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)}))
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["nasflow", "nfs"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [DATASOURCE] + variables},
        "annotations": {"list": []},
        "links": [
            {"title": "nasflow dashboards", "type": "dashboards", "tags": ["nasflow"], "asDropdown": True}
        ],
        "panels": laid,
    }


DURATION = "nfs_client_operation_duration_seconds"
RTT = "nfs_client_rpc_rtt_seconds"
POD = "k8s_namespace_name, k8s_pod_name"


def nas():
    s = NAS_SEL
    share = f"topk(10, ({time_spent(DURATION, s, POD)}) / scalar(sum({time_spent(DURATION, s, 'server_address')})))"
    return dashboard(
        "nasflow-nas",
        "nasflow / NAS",
        "One NAS server and export, all nodes: load, latency, errors and who causes them.",
        [CLUSTER, NAS_SERVER, NAS_EXPORT],
        [
            panel(
                "Throughput",
                "Bps",
                [target(rate("nfs_client_io_bytes_total", s, "server_address, nfs_export_path, nfs_io_direction"),
                        "{{server_address}}:{{nfs_export_path}} {{nfs_io_direction}}")],
                "READ and WRITE payload bytes on the wire per second.",
            ),
            panel(
                "Operations by type",
                "ops",
                [target(rate(CLIENT, s, "nfs_operation_name"), "{{nfs_operation_name}}")],
                "NFS operations per second, every RPC (metadata included).",
                stack=True,
            ),
            panel(
                "Latency P50 / P95 / P99",
                "s",
                [target(quantile(q, DURATION, s, "server_address, nfs_export_path"),
                        f"P{int(q * 100)} {{{{server_address}}}}:{{{{nfs_export_path}}}}") for q in (0.5, 0.95, 0.99)],
                "Operation latency as the application sees it, from the call to its completion.",
            ),
            panel(
                "Round trip against total latency (P95)",
                "s",
                [
                    target(quantile(0.95, DURATION, s, "nfs_operation_name"), "total {{nfs_operation_name}}"),
                    target(quantile(0.95, RTT, s, "nfs_operation_name"), "rtt {{nfs_operation_name}}"),
                ],
                "When rtt is close to the total, the time goes to the network or the NAS; far below it, "
                "to the client (RPC slot waits, a saturated connection).",
            ),
            panel(
                "Errors by type",
                "ops",
                [target(rate(CLIENT, s, "nfs_operation_name, error_type", 'error_type!=""'),
                        "{{nfs_operation_name}} {{error_type}}")],
                "Failed operations per second. ENOENT on LOOKUP is normal (probing for names).",
                stack=True,
            ),
            panel(
                "Retransmissions",
                "ops",
                [target(rate("nfs_client_rpc_retransmit_count_total", s, "server_address, nfs_export_path"),
                        "{{server_address}}:{{nfs_export_path}}")],
                "RPCs sent again after a timeout: anything above zero means packet loss or a server that is behind.",
            ),
            panel(
                "Oldest RPC in flight",
                "s",
                [target(f"max by (server_address, nfs_export_path) (nfs_client_rpc_inflight_max_age_seconds{{{s}}})",
                        "{{server_address}}:{{nfs_export_path}}")],
                "Age of the oldest unanswered RPC: it climbs while the NAS hangs, before the kernel says so.",
            ),
            panel(
                "Anomaly score",
                "none",
                [target(f"max by (server_address, nfs_export_path, nfs_anomaly_signal) (nfs_client_anomaly_score{{{s}}})",
                        "{{nfs_export_path}} {{nfs_anomaly_signal}}")],
                "-log10 of how likely the interval was under the export's recent normal (6 and up opens an event).",
            ),
            panel(
                "Top pods by bytes",
                "Bps",
                [target(f"topk(10, {rate('nfs_client_io_bytes_total', s, POD)})", "{{k8s_namespace_name}}/{{k8s_pod_name}}")],
                "The ten pods moving most bytes to and from this NAS.",
            ),
            panel(
                "Top pods by operations",
                "ops",
                [target(f"topk(10, {rate(CLIENT, s, POD)})", "{{k8s_namespace_name}}/{{k8s_pod_name}}")],
                "The ten pods sending most operations (metadata storms show here, not in bytes).",
            ),
            panel(
                "Top pods by latency share",
                "percentunit",
                [target(share, "{{k8s_namespace_name}}/{{k8s_pod_name}}")],
                "Each pod's part of the time all operations on this NAS took: who waits most.",
            ),
            panel(
                "Top tasks by bytes and operations",
                "short",
                [
                    target(f"topk(10, {rate('nfs_client_io_bytes_total', s, 'nasflow_task')})", "{{nasflow_task}} bytes/s"),
                    target(f"topk(10, {rate(CLIENT, s, 'nasflow_task')})", "{{nasflow_task}} ops/s"),
                ],
                "The tasks (owning workload or task label) behind the load, across all their pods and nodes.",
            ),
        ],
    )


def traffic_by_nas(s, whose):
    """Throughput and operations of one workload (task or pod), per NAS export."""
    nas_by = "server_address, nfs_export_path"
    return [
        panel(
            "Throughput by NAS",
            "Bps",
            [target(rate("nfs_client_io_bytes_total", s, f"{nas_by}, nfs_io_direction"),
                    "{{server_address}}:{{nfs_export_path}} {{nfs_io_direction}}")],
            f"Payload bytes on the wire of {whose} operations, per NAS export and direction.",
        ),
        panel(
            "Operations by NAS and type",
            "ops",
            [target(rate(CLIENT, s, f"{nas_by}, nfs_operation_name"),
                    "{{server_address}}:{{nfs_export_path}} {{nfs_operation_name}}")],
            f"{whose.capitalize()} operations per second, per NAS export and operation.",
            stack=True,
        ),
    ]


def task():
    s = TASK_SEL
    nas_by = "server_address, nfs_export_path"
    return dashboard(
        "nasflow-task",
        "nasflow / Task",
        "One task (nasflow.task: its owning workload or task label) across all nodes, by NAS and pod.",
        [CLUSTER, NAMESPACE, TASK],
        [
            *traffic_by_nas(s, "the task's"),
            panel(
                "Latency P95 by NAS",
                "s",
                [target(quantile(0.95, DURATION, s, nas_by), "{{server_address}}:{{nfs_export_path}}")],
                "What the task's operations waited, per NAS export.",
            ),
            panel(
                "Errors by type",
                "ops",
                [target(rate(CLIENT, s, f"{nas_by}, error_type", 'error_type!=""'),
                        "{{server_address}}:{{nfs_export_path}} {{error_type}}")],
                "The task's failed operations per second.",
                stack=True,
            ),
            panel(
                "Bytes by pod",
                "Bps",
                [target(f"topk(20, {rate('nfs_client_io_bytes_total', s, POD)})", "{{k8s_namespace_name}}/{{k8s_pod_name}}")],
                "Which of the task's pods move the bytes.",
            ),
            panel(
                "Operations by pod",
                "ops",
                [target(f"topk(20, {rate(CLIENT, s, POD)})", "{{k8s_namespace_name}}/{{k8s_pod_name}}")],
                "Which of the task's pods send the operations.",
            ),
        ],
    )


def pod():
    s = POD_SEL
    nas_by = "server_address, nfs_export_path"
    read = 'nfs_io_direction="read"'
    cache = (
        f"1 - {rate('nfs_client_io_bytes_total', s, nas_by, read)}"
        f" / {rate('nfs_client_app_io_bytes_total', s, nas_by, read)}"
    )
    return dashboard(
        "nasflow-pod",
        "nasflow / Pod",
        "One pod: its NFS traffic per NAS and operation, cache effectiveness and errors.",
        [CLUSTER, NAMESPACE, TASK, POD_VAR],
        [
            *traffic_by_nas(s, "the pod's"),
            panel(
                "Latency P95 by operation",
                "s",
                [target(quantile(0.95, DURATION, s, "nfs_operation_name"), "{{nfs_operation_name}}")],
                "What the pod's operations waited, per operation.",
            ),
            panel(
                "Application against wire bytes",
                "Bps",
                [
                    target(rate("nfs_client_app_io_bytes_total", s, "nfs_io_direction"), "application {{nfs_io_direction}}"),
                    target(rate("nfs_client_io_bytes_total", s, "nfs_io_direction"), "wire {{nfs_io_direction}}"),
                ],
                "What the pod read and wrote through the file API (page-cache hits included) against what "
                "crossed the network. Needs --app-bytes on (chart features.appBytes).",
            ),
            panel(
                "Read cache ratio",
                "percentunit",
                [target(cache, "{{server_address}}:{{nfs_export_path}}")],
                "Share of the bytes the pod read that the page cache served (1 - wire / application). "
                "Needs --app-bytes on.",
            ),
            panel(
                "Errors by operation and type",
                "ops",
                [target(rate(CLIENT, s, "nfs_operation_name, error_type", 'error_type!=""'),
                        "{{nfs_operation_name}} {{error_type}}")],
                "The pod's failed operations per second.",
                stack=True,
            ),
        ],
    )


def server():
    s = SERVED_SEL
    latency = "nfs_server_operation_duration_seconds"
    return dashboard(
        "nasflow-server",
        "nasflow / NFS server",
        "Nodes that serve NFS (the kernel's nfsd): what each export served, to which client.",
        [CLUSTER, SERVED_EXPORT, SERVED_CLIENT],
        [
            panel(
                "Bytes by export",
                "Bps",
                [target(rate("nfs_server_io_bytes_total", s, "nfs_export_path, nfs_io_direction"),
                        "{{nfs_export_path}} {{nfs_io_direction}}")],
                "READ and WRITE payload bytes served per export.",
            ),
            panel(
                "Operations by export and type",
                "ops",
                [target(rate(SERVER, s, "nfs_export_path, nfs_operation_name"),
                        "{{nfs_export_path}} {{nfs_operation_name}}")],
                "Requests served per second.",
                stack=True,
            ),
            panel(
                "Bytes by client",
                "Bps",
                [target(f"topk(20, {rate('nfs_server_io_bytes_total', s, 'client_address, nfs_export_path')})",
                        "{{client_address}} {{nfs_export_path}}")],
                "Which client addresses move the bytes, per export.",
            ),
            panel(
                "Operations by client",
                "ops",
                [target(f"topk(20, {rate(SERVER, s, 'client_address, nfs_export_path')})",
                        "{{client_address}} {{nfs_export_path}}")],
                "Which client addresses send the requests, per export.",
            ),
            panel(
                "Service time P95 by export",
                "s",
                [target(quantile(0.95, latency, s, "nfs_export_path"), "{{nfs_export_path}}")],
                "Time nfsd took per request, from its arrival to the reply.",
            ),
            panel(
                "Errors by export and status",
                "ops",
                [target(rate(SERVER, s, "nfs_export_path, nfs_operation_name, error_type", 'error_type!=""'),
                        "{{nfs_export_path}} {{nfs_operation_name}} {{error_type}}")],
                "Requests answered with an NFS error status.",
                stack=True,
            ),
        ],
    )


DASHBOARDS = {"nasflow-nas.json": nas, "nasflow-task.json": task, "nasflow-pod.json": pod, "nasflow-server.json": server}


def render():
    """File name to JSON text, for every dashboard."""
    return {name: json.dumps(build(), indent=2, sort_keys=True) + "\n" for name, build in DASHBOARDS.items()}


def main():
    (CHART / "dashboards").mkdir(exist_ok=True)
    (CHART / "rules").mkdir(exist_ok=True)
    for name, text in render().items():
        (HERE / name).write_text(text)
        (CHART / "dashboards" / name).write_text(text)
    shutil.copyfile(HERE / "rules" / "nasflow-alerts.yaml", CHART / "rules" / "nasflow-alerts.yaml")


if __name__ == "__main__":
    main()
