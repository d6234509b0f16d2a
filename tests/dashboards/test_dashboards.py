"""The Grafana dashboards: generated from dashboards/generate.py and shipped unchanged in the
chart, valid JSON that uses only the template variables it defines, every query valid PromQL
(promtool), and each dashboard shows what docs/dashboards.md promises. Metric and label names
are held to the schema by crates/otlp-out's schema test; that every query returns data through
a real Prometheus is tests/vm (test_every_dashboard_query_returns_data_from_prometheus)."""

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "dashboards"
CHART = ROOT / "charts" / "nasflow"
NAMES = ["nasflow-nas.json", "nasflow-task.json", "nasflow-pod.json", "nasflow-server.json"]
# Grafana's own variables.
BUILTIN = {"__rate_interval", "__interval", "__range", "__all"}


def generator():
    spec = importlib.util.spec_from_file_location("generate", DASHBOARDS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load(name):
    return json.loads((DASHBOARDS / name).read_text())


def queries(board):
    """(panel title, expr) of every target."""
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p["targets"]]


def test_the_json_is_what_the_generator_writes_and_the_chart_ships_it_unchanged():
    rendered = generator().render()
    assert sorted(rendered) == sorted(NAMES)
    for name, text in rendered.items():
        assert (DASHBOARDS / name).read_text() == text, f"{name} differs: run python3 dashboards/generate.py"
        assert (CHART / "dashboards" / name).read_text() == text, f"chart copy of {name} differs: run generate.py"
    rules = (DASHBOARDS / "rules" / "nasflow-alerts.yaml").read_text()
    assert (CHART / "rules" / "nasflow-alerts.yaml").read_text() == rules, "chart copy of the rules differs"


def test_every_dashboard_parses_and_has_unique_panels_and_refs():
    uids = set()
    for name in NAMES:
        board = load(name)
        assert board["uid"] not in uids and board["title"].startswith("nasflow / ")
        uids.add(board["uid"])
        titles = [p["title"] for p in board["panels"]]
        assert len(titles) == len(set(titles)) and len(titles) >= 6, titles
        for p in board["panels"]:
            refs = [t["refId"] for t in p["targets"]]
            assert refs and len(refs) == len(set(refs)), p["title"]
            assert p["datasource"]["uid"] == "${datasource}" and p["description"]


def test_dashboards_use_only_the_variables_they_define():
    for name in NAMES:
        board = load(name)
        defined = {v["name"] for v in board["templating"]["list"]}
        text = json.dumps(board)
        used = set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))
        # Legends ({{label}}) are not variables; $labels does not occur in dashboards.
        assert used - BUILTIN <= defined, f"{name}: undefined variables {used - BUILTIN - defined}"
        assert "cluster" in defined, name
        # Every variable but the data source narrows something.
        for v in defined - {"datasource"}:
            assert f'"${v}"' in text.replace('\\"', '"'), f"{name}: ${v} is defined but no query uses it"


def test_each_dashboard_has_the_promised_variables_and_signals():
    want = {
        "nasflow-nas.json": (
            {"cluster", "server", "export"},
            [
                "nfs_client_io_bytes_total",
                "nfs_client_operation_count_total",
                "nfs_client_operation_duration_seconds_bucket",
                "nfs_client_rpc_rtt_seconds_bucket",
                "nfs_client_rpc_retransmit_count_total",
                "nfs_client_rpc_inflight_max_age_seconds",
                "nfs_client_anomaly_score",
                "nfs_client_operation_duration_seconds_sum",
                "nasflow_task",
                "k8s_pod_name",
                'error_type!=""',
                "histogram_quantile(0.5,",
                "histogram_quantile(0.95,",
                "histogram_quantile(0.99,",
            ],
        ),
        "nasflow-task.json": (
            {"cluster", "namespace", "task"},
            ["nfs_client_io_bytes_total", "nfs_client_operation_count_total", "nfs_client_operation_duration_seconds",
             'error_type!=""', "by (k8s_namespace_name, k8s_pod_name)", "by (server_address, nfs_export_path"],
        ),
        "nasflow-pod.json": (
            {"cluster", "namespace", "task", "pod"},
            ["nfs_client_app_io_bytes_total", "nfs_client_io_bytes_total", "nfs_operation_name", 'error_type!=""'],
        ),
        "nasflow-server.json": (
            {"cluster", "export", "client"},
            ["nfs_server_io_bytes_total", "nfs_server_operation_count_total", "nfs_server_operation_duration_seconds",
             "client_address", 'error_type!=""'],
        ),
    }
    for name, (variables, needles) in want.items():
        board = load(name)
        defined = {v["name"] for v in board["templating"]["list"]}
        assert variables <= defined, f"{name}: variables {variables - defined} missing"
        text = "\n".join(e for _, e in queries(board))
        for n in needles:
            assert n in text, f"{name}: no query uses {n}"


def concrete(expr):
    """A query as Prometheus receives it from Grafana, with every variable set to "All"."""
    return re.sub(r"\$\{?([A-Za-z_]+)\}?", lambda m: "5m" if m.group(1) == "__rate_interval" else ".*", expr)


def variable_selectors():
    """The selectors inside the variables' label_values(...) queries."""
    out = []
    for name in NAMES:
        for v in load(name)["templating"]["list"]:
            if v["type"] == "query":
                m = re.fullmatch(r"label_values\((.+), ([a-z0-9_]+)\)", v["query"]["query"])
                assert m, f"{name}: ${v['name']}: {v['query']['query']}"
                out.append((f"{name} ${v['name']}", m.group(1)))
    return out


def test_every_query_is_valid_promql(tmp_path):
    if not shutil.which("promtool"):
        pytest.fail("promtool missing: run scripts/setup.sh")
    rules = []
    for name in NAMES:
        for title, expr in queries(load(name)):
            rules.append({"record": f"q:{len(rules)}", "expr": concrete(expr), "labels": {"panel": f"{name} {title}"}})
    for where, sel in variable_selectors():
        rules.append({"record": f"q:{len(rules)}", "expr": concrete(sel), "labels": {"panel": where}})
    assert len(rules) > 30
    f = tmp_path / "queries.yaml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    check = subprocess.run(["promtool", "check", "rules", str(f)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_chart_ships_the_dashboards_and_rules_it_has():
    dashboards = (CHART / "templates" / "dashboards.yaml").read_text()
    assert '.Files.Glob "dashboards/*.json"' in dashboards and "{{- if .Values.dashboards.enabled }}" in dashboards
    assert "{{ .Values.dashboards.sidecarLabel }}: {{ .Values.dashboards.sidecarLabelValue | quote }}" in dashboards
    rule = (CHART / "templates" / "prometheusrule.yaml").read_text()
    assert '.Files.Get "rules/nasflow-alerts.yaml"' in rule and "kind: PrometheusRule" in rule
    # The rule file's top level is what a PrometheusRule's spec holds.
    spec = yaml.safe_load((CHART / "rules" / "nasflow-alerts.yaml").read_text())
    assert set(spec) == {"groups"} and all(g["rules"] for g in spec["groups"])
