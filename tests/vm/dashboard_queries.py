#!/usr/bin/python3
"""Asks a Prometheus every query of the dashboards, as Grafana would with every variable at
"All", and prints what came back as JSON (one entry per panel query and per variable).
  dashboard_queries.py DASHBOARD_DIR PROMETHEUS_URL"""
import json
import pathlib
import re
import sys
import urllib.parse
import urllib.request

folder, base = pathlib.Path(sys.argv[1]), sys.argv[2].rstrip("/")


def concrete(expr):
    return re.sub(r"\$\{?([A-Za-z_]+)\}?", lambda m: "5m" if m.group(1) == "__rate_interval" else ".*", expr)


def get(path, params):
    url = f"{base}{path}?{urllib.parse.urlencode(params, doseq=True)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return json.load(r)
    except Exception as e:  # an HTTP error carries Prometheus' reason in its body
        body = getattr(e, "read", lambda: b"")()
        return {"status": "error", "error": f"{e} {body[:500]!r}"}


out = []
for board in sorted(folder.glob("nasflow-*.json")):
    d = json.loads(board.read_text())
    for p in d["panels"]:
        for t in p["targets"]:
            r = get("/api/v1/query", {"query": concrete(t["expr"])})
            result = r.get("data", {}).get("result", [])
            out.append({
                "dashboard": board.name, "panel": p["title"], "ref": t["refId"], "status": r["status"],
                "error": r.get("error"), "series": len(result),
                "values": [x["value"][1] for x in result][:20],
                "labels": [x["metric"] for x in result][:20],
            })
    for v in d["templating"]["list"]:
        if v["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+), ([a-z0-9_]+)\)", v["query"]["query"])
        r = get(f"/api/v1/label/{m.group(2)}/values", {"match[]": concrete(m.group(1))})
        values = r.get("data", [])
        out.append({
            "dashboard": board.name, "panel": f"${v['name']}", "ref": "variable", "status": r["status"],
            "error": r.get("error"), "series": len(values), "values": values[:20], "labels": [],
        })
json.dump(out, sys.stdout, indent=1)
