"""Checks the Helm chart without Helm (it cannot be installed here): every `.Values` path a
template uses exists in values.yaml and is documented there, the YAML files parse, and the
security settings are what README.md promises."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "nasflow"
TEMPLATES = sorted((CHART / "templates").glob("*"))


def values():
    return yaml.safe_load((CHART / "values.yaml").read_text())


def template_text():
    return "\n".join(t.read_text() for t in TEMPLATES)


def test_yaml_files_parse():
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "nasflow" and chart["version"]
    assert isinstance(values(), dict)
    collector = yaml.safe_load((ROOT / "examples" / "otel-collector.yaml").read_text())
    assert "otlp" in collector["receivers"]
    pipelines = collector["service"]["pipelines"]
    assert pipelines["metrics"]["receivers"] == ["otlp"]
    # Slow operations go to Tempo, anomaly events through a logs pipeline.
    assert pipelines["traces"]["receivers"] == ["otlp"] and "otlp/tempo" in pipelines["traces"]["exporters"]
    assert pipelines["logs"]["receivers"] == ["otlp"]
    assert all(e in collector["exporters"] for p in pipelines.values() for e in p["exporters"])


def used_paths():
    return sorted(set(re.findall(r"\.Values\.([A-Za-z0-9_.]+)", template_text())))


def test_every_value_a_template_uses_exists():
    v = values()
    assert used_paths(), "templates use no values?"
    missing = []
    for path in used_paths():
        node = v
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                missing.append(path)
                break
            node = node[part]
    assert not missing, f"used in templates, absent from values.yaml: {missing}"


def test_every_value_is_documented_and_used():
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][A-Za-z0-9_]*):", line)
        if not m:
            continue
        j = i - 1
        while j >= 0 and lines[j].strip().startswith("#") and not lines[j].strip().startswith("# --"):
            j -= 1
        if j < 0 or not lines[j].strip().startswith("# --"):
            # Keys inside a documented default (resources.requests.cpu) need no comment.
            if len(m.group(1)) == 0 or m.group(2) not in ("requests", "limits", "cpu", "memory", "operator"):
                undocumented.append(m.group(2))
    assert not undocumented, f"values without a '# --' comment: {undocumented}"
    used = {p.split(".")[0] for p in used_paths()}
    unused = set(values()) - used
    assert not unused, f"values no template uses: {unused}"


def test_least_privilege_by_default():
    ds = (CHART / "templates" / "daemonset.yaml").read_text()
    assert values()["privileged"] is False
    # privileged: true only inside the opt-in branch.
    assert ds.count("privileged: true") == 1
    before = ds.partition("privileged: true")[0].rstrip().splitlines()
    assert before[-1].strip().startswith("# Opt-in escape hatch") and before[-2].strip() == "{{- if .Values.privileged }}"
    caps = ds.split("add:\n", 1)[1].split("{{- end }}\n            {{- end }}", 1)[0]
    added = re.findall(r"^\s+- (\w+)$", caps, re.M)
    assert added == ["BPF", "PERFMON", "SYS_RESOURCE", "SYS_ADMIN"], added
    # Only CAP_BPF and CAP_PERFMON unless legacyKernelCapabilities is set.
    default, _, legacy = caps.partition("{{- if .Values.legacyKernelCapabilities }}")
    assert re.findall(r"^\s+- (\w+)$", default, re.M) == ["BPF", "PERFMON"]
    assert re.findall(r"^\s+- (\w+)$", legacy, re.M) == ["SYS_RESOURCE", "SYS_ADMIN"]
    # Each capability carries its reason on the line(s) above it.
    for cap in added:
        above = caps.split(f"- {cap}")[0].rstrip().splitlines()[-1].strip()
        assert above.startswith("#") or above.startswith("{{- if"), cap
    assert 'drop: ["ALL"]' in ds and "readOnlyRootFilesystem: true" in ds and "allowPrivilegeEscalation: false" in ds
    assert "hostNetwork" not in ds


def test_host_mounts_are_read_only_and_explained():
    ds = (CHART / "templates" / "daemonset.yaml").read_text()
    mounts = re.findall(r"- name: ([\w-]+)\n\s+mountPath: (\S+)\n\s+readOnly: (\w+)", ds)
    assert {(n, p) for n, p, _ in mounts} == {
        ("config", "/etc/nasflow"),
        ("proc", "/host/proc"),
        ("cgroup", "/host/sys/fs/cgroup"),
        ("btf", "/sys/kernel/btf"),
        ("tracefs", "/sys/kernel/tracing"),
        ("host-root", "/host/root"),
    }
    # The node's / only when directories are watched (to look them up), never writable.
    before = ds.partition("- name: host-root\n              mountPath")[0].rstrip().splitlines()
    assert "if .Values.directories" in before[-3], before[-3:]
    assert all(ro == "true" for _, _, ro in mounts)
    assert "hostPID" not in ds.replace("No hostPID", ""), "the host's /proc needs no hostPID"


def test_rbac_is_kubelet_pods_only():
    sa = (CHART / "templates" / "serviceaccount.yaml").read_text()
    resources = re.findall(r'resources: \["([^"]+)"\]', sa)
    assert resources == ["nodes/pods", "nodes/proxy"]
    assert re.findall(r'verbs: \["([^"]+)"\]', sa) == ["get", "get"]
    guard = sa.index("{{- if .Values.kubelet.nodesProxy }}")
    assert sa.index('"nodes/pods"') < guard < sa.index('resources: ["nodes/proxy"]') < sa.index("{{- end }}", guard)


def test_probes_and_config_checksum_are_wired():
    ds = (CHART / "templates" / "daemonset.yaml").read_text()
    assert "path: /healthz" in ds and "path: /readyz" in ds
    assert 'value: "0.0.0.0:{{ .Values.healthPort }}"' in ds
    assert 'checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}' in ds
    assert "fieldPath: spec.nodeName" in ds


def test_every_env_var_the_chart_sets_is_one_nasflow_reads():
    ds = (CHART / "templates" / "daemonset.yaml").read_text()
    names = set(re.findall(r"- name: ([A-Z][A-Z0-9_]+)", ds))
    src = "\n".join(p.read_text() for p in (ROOT / "src").rglob("*.rs"))
    for name in names - {"NASFLOW_HOST_IP"}:
        assert f'"{name}"' in src or name.startswith("OTEL_"), f"{name} is not read by nasflow"
        if name.startswith("OTEL_"):
            assert name in src or name.replace("OTEL_EXPORTER_OTLP_", "OTEL_EXPORTER_OTLP_{}") in src or "OTEL_EXPORTER_OTLP" in src


def seconds(text):
    """A Go duration of whole seconds or minutes ("20s", "1m") in seconds."""
    m = re.fullmatch(r"(\d+)(s|m)", str(text))
    assert m, f"unexpected duration {text!r}"
    return int(m.group(1)) * (60 if m.group(2) == "m" else 1)


def test_the_grace_period_outlasts_the_agents_shutdown_deadline():
    v = values()
    assert "terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}" in template_text()
    assert int(v["terminationGracePeriodSeconds"]) > seconds(v["shutdownTimeout"])


def test_requests_stay_under_the_collectors_default_limit():
    assert 64 << 10 <= int(values()["otlp"]["maxRequestBytes"]) < 4 << 20
