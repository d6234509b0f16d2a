"""Assertions on one VM run (tests/vm/run.sh): what the workloads did, recorded by the guest
in expect.txt, against what nasflow printed as JSON lines. Byte counts must match exactly.

The guest runs in phases (tests/vm/guest.sh) and records how each ended. A test names the
phases its data comes from (`needs`): when one of them failed, the test fails with that
phase's name, why, and the tail of its log, while tests of the other phases run as usual."""

import functools
import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

R = Path(os.environ.get("NASFLOW_VM_RESULTS", Path(__file__).resolve().parents[2] / "target" / "vm-results"))

# A partial buffered read may pull in up to one readahead window more than the app asked
# for: NFS sets it to 15 x rsize (rsize=64 KiB in the guest), plus page rounding.
READAHEAD_SLACK = 15 * 65536 + 4096


@functools.cache
def load_expect():
    path = R / "expect.txt"
    if not path.exists():
        pytest.fail(f"{path} missing: the VM run did not get far (see {R}/vng.log, {R}/guest.log)")
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def check_phase(name):
    """Fails unless the guest's phase `name` ran and ended well."""
    rows = load_expect()
    ended = [r for r in rows if r[0] == "phase" and r[1] == name]
    if not ended:
        pytest.fail(f"phase {name} never ran: the guest stopped before it (see {R}/guest.log, {R}/vng.log)", pytrace=False)
    _, _, status, rc, seconds = ended[-1][:5]
    if status == "ok":
        return
    if status == "skipped":
        pytest.skip(f"phase {name} is not run on this kernel")
    why = [" ".join(r[2:]) for r in rows if r[0] in ("timeout", "failure") and r[1] == name]
    log = R / f"phase-{name}.log"
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:]) if log.exists() else "(no log)"
    pytest.fail(
        f"phase {name} failed (exit status {rc} after {seconds} s)" + "".join(f"\n  {w}" for w in why)
        + f"\n--- tail of {log}:\n{tail}",
        pytrace=False,
    )


def needs(*phases):
    """The guest phases a test's data comes from."""

    def mark(test):
        test.phases = phases
        return test

    return mark


# Every test of the v2 agent needs it started, the NFS mounts and its last interval; the v1
# agent runs start to end in one phase.
V2 = ("services", "v2-start", "nfs", "v2-stop")
V1 = ("services", "nfs", "v1")


@pytest.fixture(autouse=True)
def phases_ended_well(request):
    # Autouse, so it runs before the fixtures that load the phases' files.
    for name in getattr(request.function, "phases", ()):
        check_phase(name)


def load_jsonl(name):
    path = R / f"{name}.jsonl"
    assert path.exists(), f"{path} missing"
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [l for l in lines if l["kind"] == "io"], [l for l in lines if l["kind"] == "health"]


class Run:
    """The last (cumulative) value of each series of one agent run."""

    def __init__(self, name, devs):
        self.io, self.health = load_jsonl(name)
        self.devs = devs
        self.last = {}
        for l in self.io:
            self.last[(l["cgroup_id"], l["dev"], l["op"], l.get("directory"))] = l

    def series(self, cgroup, dev_name, op):
        dev = self.devs[dev_name]
        found = [l for (_, d, o, _), l in self.last.items() if l["cgroup"] == cgroup and d == dev and o == op]
        return found

    def bytes(self, cgroup, dev_name, op):
        return sum(l["bytes"] for l in self.series(cgroup, dev_name, op))

    def cgroups(self):
        return {l["cgroup"] for l in self.io}


def load_devs():
    return {r[1]: r[2] for r in load_expect() if r[0] == "dev"}


@functools.cache
def load_run(name):
    return Run(name, load_devs())


# Function-scoped (loading is cached), so that the phase check runs first.
@pytest.fixture
def expect():
    return load_expect()


@pytest.fixture
def devs(expect):
    return load_devs()


@pytest.fixture
def v2():
    return load_run("v2")


@pytest.fixture
def v1():
    return load_run("v1")


def test_guest_finished_and_agents_exited_cleanly(expect):
    assert ["done"] in expect, "guest script did not reach its end"
    exits = [r[1] for r in expect if r[0] == "agent_exit"]
    ran = [
        r[1]
        for r in expect
        if r[0] == "phase" and r[1] in ("full", "v2-stop", "features", "slow", "server", "dirs", "anomaly", "v1", "pin")
            and r[2] != "skipped"
    ]
    # The dirs phase runs two agents.
    ran += [r for r in ran if r == "dirs"]
    assert len(exits) == len(ran) and all(e == "0" for e in exits), f"agent exit codes {exits} of {ran}"


def test_every_phase_ended_well(expect):
    failed = [" ".join(r[1:]) for r in expect if r[0] == "phase" and r[2] not in ("ok", "skipped")]
    assert not failed, f"failed phases (name, status, exit status, seconds): {failed}"


@needs(*V2)
def test_started_before_nfs_modules_and_attached_within_5s(expect, v2):
    assert ["unattached_before_modules", "1"] in expect
    assert v2.health[0]["attached"] is False
    attach_ms = int(next(r[1] for r in expect if r[0] == "attach_ms"))
    assert attach_ms <= 5000, f"attached {attach_ms} ms after the nfs module loaded"
    assert v2.health[-1]["attached"] is True
    assert v2.health[-1]["write_attribution"] is True


@needs("nfs", "errors", "netem")
def test_distinct_nfs_devices(devs):
    assert set(devs) == {"nas-a", "nas-b", "nas-s", "nas-slow"}
    assert len(set(devs.values())) == 4


@needs(*V2, "v2-io", "gone")
@pytest.mark.parametrize("kind,op", [("write", "WRITE"), ("read", "READ")])
def test_exact_bytes_per_cgroup_v2(expect, v2, kind, op):
    cases = [r for r in expect if r[0] == kind]
    assert cases
    # A cgroup may move several files on one NAS (the root does): compare the sums.
    totals = defaultdict(int)
    for _, cgroup, dev, n in cases:
        totals[(cgroup, dev)] += int(n)
    for (cgroup, dev), n in totals.items():
        got = v2.bytes(cgroup, dev, op)
        assert got == int(n), f"{op} bytes of {cgroup} on {dev}: got {got}, the workload moved {n}"
        # Ops of WRITEs shared by several dirtiers follow the byte shares: anyone who moved
        # two wsize (64 KiB) worth carries at least one op.
        ops = sum(l["ops"] for l in v2.series(cgroup, dev, op))
        if int(n) >= 2 * 65536:
            assert ops >= 1, f"{op} of {cgroup}: {n} bytes but no op"


@needs(*V2, "v2-io")
def test_readahead_slack_is_bounded(expect, v2):
    for _, cgroup, dev, n in [r for r in expect if r[0] == "read_at_least"]:
        got = v2.bytes(cgroup, dev, "READ")
        assert int(n) <= got <= int(n) + READAHEAD_SLACK, f"{cgroup} read {n}, charged {got}"


@needs(*V2, "v2-io", "idle")
def test_cgroups_without_nfs_io_have_no_series(expect, v2):
    for _, cgroup in [r for r in expect if r[0] == "absent"]:
        assert cgroup not in v2.cgroups(), f"{cgroup} has series: {[l for l in v2.io if l['cgroup'] == cgroup][:2]}"


@needs(*V2, "v2-io")
def test_writes_flushed_by_others_are_not_charged_to_the_root(expect, v2):
    # Root's own direct writes are expected (asserted above); nothing else may land there.
    for dev in ("nas-a", "nas-b"):
        own = sum(int(r[3]) for r in expect if r[0] == "write" and r[1] == "/" and r[2] == dev)
        assert v2.bytes("/", dev, "WRITE") == own
    counters = v2.health[-1]["counters"]
    assert counters["write_bytes_unowned"] == 0
    assert counters["unmatched_completions"] == 0
    assert counters["counters_map_full"] == 0


@needs(*V2, "v2-io")
def test_shared_file_ops_follow_byte_shares(expect, v2):
    sharers = [r for r in expect if r[0] == "write" and r[1].startswith("/share-")]
    ops = {r[1]: sum(l["ops"] for l in v2.series(r[1], r[2], "WRITE")) for r in sharers}
    total_ops = sum(ops.values())
    total_bytes = sum(int(r[3]) for r in sharers)
    for _, cgroup, _, n in sharers:
        expected = total_ops * int(n) / total_bytes
        assert abs(ops[cgroup] - expected) <= 1.5, f"{cgroup}: {ops[cgroup]} of {total_ops} ops for {n} of {total_bytes} bytes"


@needs(*V2, "v2-io")
def test_commits_follow_the_writer(expect, v2):
    # More than one WRITE RPC (wsize 64 KiB) goes out UNSTABLE and is followed by a COMMIT,
    # also when the COMMIT is sent from a workqueue (O_DIRECT) or a flusher (buffered). A
    # single-RPC O_DIRECT write is sent FILE_SYNC and has none.
    writers = [r for r in expect if r[0] == "write" and r[1] in ("/bw-a", "/bw-b", "/dw-a", "/dw-b")]
    assert len(writers) == 4
    for _, cgroup, dev, n in writers:
        commits = sum(l["ops"] for l in v2.series(cgroup, dev, "COMMIT"))
        if int(n) > 2 * 65536:
            assert commits >= 1, f"no COMMIT for {cgroup} after {n} bytes"


@needs(*V2)
def test_histograms_are_consistent(v2):
    # Every snapshot: a histogram's count is its bucket total. The final snapshot (no I/O in
    # flight) also has one latency sample per completed operation.
    for l in v2.last.values():
        if l["op"].startswith("APP_"):
            assert l["latency"]["count"] == 0, l
            continue
        assert l["latency"]["count"] == l["ops"], l
    for l in v2.io:
        lat = l["latency"]
        assert sum(b["count"] for b in lat["buckets"]) == lat["count"], l
        for b in lat["buckets"]:
            assert b["le_s"] == 2.0 ** (b["slot"] - 30)
        if lat["count"]:
            lo = min(b["le_s"] for b in lat["buckets"]) / 2
            hi = max(b["le_s"] for b in lat["buckets"])
            assert lo * lat["count"] <= lat["sum_s"] <= hi * lat["count"], l


@needs(*V2, "gone")
def test_removed_cgroup_is_exported_once_more_then_dropped(expect, v2):
    for _, cgroup in [r for r in expect if r[0] == "gone"]:
        lines = [l for l in v2.io if l["cgroup"] == cgroup]
        assert lines, f"no series for {cgroup}"
        gone = [l for l in lines if l["cgroup_gone"]]
        assert gone, f"{cgroup} never marked gone"
        seq = gone[0]["seq"]
        ids = {l["cgroup_id"] for l in lines}
        later = [l for l in v2.io if l["cgroup_id"] in ids and l["seq"] > seq]
        assert later == [], f"{cgroup} still exported after it was gone"
        assert all(l["seq"] == seq for l in gone)


def kv(pairs):
    return dict(p.split("=", 1) for p in pairs)


def check_attrs(run, cgroup, want, field="workload", dev=None):
    lines = [l for l in run.io if l["cgroup"] == cgroup and (dev is None or l["dev"] == dev)]
    assert lines, f"no series for {cgroup}"
    # Every line, the first export included: a pod is named from its first I/O on.
    for l in lines:
        got = {k: l[field].get(k) for k in want}
        assert got == want, f"{cgroup} seq {l['seq']} {l['op']}: {field} {l[field]}"
    if field == "workload":
        assert "k8s.pod.name" in want or "k8s.pod.name" not in lines[0][field]


@needs(*V2, "v2-io")
def test_pods_are_named_from_their_first_export_v2(expect, v2):
    cases = [r for r in expect if r[0] == "attrs"]
    assert len(cases) == 3
    for r in cases:
        check_attrs(v2, r[1], kv(r[2:]))


@needs(*V2, "v2-io")
def test_nas_attributes(expect, v2, devs):
    cases = [r for r in expect if r[0] == "nas"]
    assert len(cases) == 2
    for r in cases:
        check_attrs(v2, r[1], kv(r[3:]), field="nas", dev=devs[r[2]])


@needs(*V2, "v2-io")
def test_host_cgroups_carry_their_path_and_no_pod(expect, v2):
    for r in [r for r in expect if r[0] == "host_attrs"]:
        for l in [l for l in v2.io if l["cgroup"] == r[1]]:
            assert l["workload"] == {"process.linux.cgroup": r[1]}, l["workload"]
            assert l["nas"]["nfs.mount.point"].startswith("/srv/nas-"), "a host mount, not a pod volume"


@needs(*V1)
def test_cgroup_v1_attribution(expect, v1):
    cases = [r for r in expect if r[0] == "v1write"]
    assert cases
    for _, cgroup, dev, n in cases:
        got = v1.bytes(cgroup, dev, "WRITE")
        assert got == int(n), f"v1 WRITE bytes of {cgroup} on {dev}: got {got}, the workload wrote {n}"
    for _, cgroup in [r for r in expect if r[0] == "v1absent"]:
        assert cgroup not in v1.cgroups()
    assert v1.health[-1]["counters"]["write_bytes_unowned"] == 0


def load_spans(phase):
    """The spans the collector passed on from one agent."""
    path = R / "otlp-traces.jsonl"
    assert path.exists(), f"{path} missing"
    spans = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    return [s for s in spans if s["resource"].get("nasflow.test.phase") == phase]


@needs(*V2, "netem", "collect")
def test_slow_operations_reach_the_collector_as_spans_the_latency_points_link_to(expect, v2):
    # The v2 agent (default 500 ms threshold) over rotel: the O_DIRECT READ that waited out
    # the netem outage on the slow mount is a span named like its metrics, with its pod, NAS,
    # file id and xid; the same READ through the fast mount, at the same time, is none.
    slow_read, fast_read = ([r for r in expect if r[:2] == ["direct_read", which]][0] for which in ("slow", "fast"))
    spans = load_spans("v2")
    assert spans, "no span from the v2 agent reached the sink"
    # Every span is a slow operation the agent printed, with the same times; the netem
    # phase's (the outage's stat and READ) each arrived once. (A span of an operation that
    # ended while the collector was stopped in the outage phase is lost, counted as failed.)
    printed = [(l["start_unix_ns"], round(l["duration_s"] * 1e9), l["cgroup"]) for l in slow_op_lines("v2")]
    def same(s, p):
        return abs(s["start"] - p[0]) <= 1000 and abs(s["end"] - s["start"] - p[1]) <= 1000
    assert all(sum(1 for p in printed if same(s, p)) == 1 for s in spans), "a span no slow_op line has"
    outage = [p for p in printed if p[2] in ("/hung-reader", slow_read[2])]
    assert outage and all(sum(1 for s in spans if same(s, p)) == 1 for p in outage), outage
    assert slow_read[4] == fast_read[4], "one file, through two mounts"
    assert all(s["end"] - s["start"] >= 500_000_000 for s in spans), [s for s in spans if s["end"] - s["start"] < 5e8]
    assert all(s["kind"] == 3 and s["scope"] == "nasflow.slow_ops" and s["parent_span_id"] == "" for s in spans), spans[0]
    assert all(s["name"] == "NFS " + s["attrs"]["nfs.operation.name"] for s in spans), spans[0]
    pods = {s["attrs"].get("k8s.pod.name") for s in spans}
    assert "fast-nas-reader-0" not in pods, pods
    reads = [s for s in spans if s["attrs"].get("k8s.pod.name") == "slow-nas-reader-0"]
    assert [s["name"] for s in reads] == ["NFS READ"], [(s["name"], s["end"] - s["start"]) for s in reads]
    read = reads[0]
    a = read["attrs"]
    assert (a["k8s.namespace.name"], a["nasflow.task"], a["server.address"]) == ("ml", "slow-nas-reader", "127.0.0.3"), a
    assert a["nfs.export.path"] == "/srv/v4/exa" and a["nfs.file.id"] == int(slow_read[4]), (a, slow_read)
    assert (a["nfs.file.offset"], a["nfs.io.bytes"]) == (0, 65536), a
    assert isinstance(a.get("nfs.rpc.xid"), int), a
    assert read["end"] - read["start"] >= 3_000_000_000, read
    # The READ's latency point on the slow NAS carries it as an exemplar, and every exemplar of
    # the agent names a span the collector received.
    by_id = {(s["trace_id"], s["span_id"]): s for s in spans}
    points = [p for p in load_otlp("v2") if p["metric"] == "nfs.client.operation.duration"]
    linked = [(p, x) for p in points for x in p.get("exemplars", [])]
    assert linked, "no duration point carried an exemplar"
    for p, x in linked:
        s = by_id.get((x["trace_id"], x["span_id"]))
        assert s is not None, f"exemplar {x} names no span the collector received"
        assert abs(x["value"] - (s["end"] - s["start"]) / 1e9) < 1e-6 and x["time"] == s["end"], (x, s)
        assert p["attrs"].get("k8s.pod.uid") == s["attrs"].get("k8s.pod.uid"), (p["attrs"], s["attrs"])
        assert p["attrs"]["nfs.operation.name"] == s["attrs"]["nfs.operation.name"], (p["attrs"], s["attrs"])
    assert any(s is read for p, x in linked for s in [by_id[(x["trace_id"], x["span_id"])]]), "the READ is no exemplar"
    # The agent's own count (as of its last export; the SDK exports a second after a span
    # ends): nothing dropped, and no more exported or failed than reported.
    counts = {}
    for p in load_otlp("v2"):
        if p["metric"] == "nasflow.spans" and p["time"] >= counts.get(p["attrs"]["outcome"], (0, 0))[0]:
            counts[p["attrs"]["outcome"]] = (p["time"], p["value"])
    counts = {k: v for k, (_, v) in counts.items()}
    assert counts["dropped"] == 0 and counts["exported"] >= len(outage), counts
    assert counts["exported"] + counts["failed"] <= len(printed), (counts, len(printed))


@needs(*V1)
def test_cgroup_v1_pods_named(expect, v1):
    cases = [r for r in expect if r[0] == "v1attrs"]
    assert len(cases) == 2
    for r in cases:
        check_attrs(v1, r[1], kv(r[2:]))


def load_otlp(phase):
    path = R / "otlp.jsonl"
    assert path.exists(), f"{path} missing: the collector passed nothing on"
    points = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    return [p for p in points if p["resource"].get("nasflow.test.phase") == phase]


def newest_points(points):
    """The newest data point of each (metric, attribute set)."""
    newest = {}
    for p in points:
        key = (p["metric"], json.dumps(p["attrs"], sort_keys=True))
        if key not in newest or p["time"] >= newest[key]["time"]:
            newest[key] = p
    return newest


def check_otlp_against_jsonl(phase, run, explicit, at_least):
    newest = newest_points(load_otlp(phase))
    assert newest, f"no OTLP data for {phase}"
    checked = 0
    for l in run.last.values():
        base = {**l["workload"], **(l["nas"] or {"nfs.device": l["dev"]})}
        if l.get("directory"):
            base["nfs.directory"] = l["directory"]
        key = lambda metric, extra: (metric, json.dumps({**base, **extra}, sort_keys=True))
        if l["op"].startswith("APP_"):
            direction = "read" if l["op"] == "APP_READ" else "write"
            p = newest.get(key("nfs.client.app.io", {"nfs.io.direction": direction}))
            assert p is not None and p["value"] == l["bytes"], f"{l['cgroup']} {l['op']}"
            continue
        if l["op"] in ("READ", "WRITE"):
            p = newest.get(key("nfs.client.io", {"nfs.io.direction": l["op"].lower()}))
            assert p is not None, f"no nfs.client.io for {l['cgroup']} {l['op']}"
            assert p["value"] == l["bytes"], f"{l['cgroup']} {l['op']}: OTLP {p['value']} bytes, probe {l['bytes']}"
            assert p["unit"] == "By"
        ok = l["ops"] - l["errors"]
        if ok:
            p = newest.get(key("nfs.client.operation.count", {"nfs.operation.name": l["op"]}))
            assert p is not None and p["value"] == ok, f"{l['cgroup']} {l['op']} count"
        h = newest.get(key("nfs.client.operation.duration", {"nfs.operation.name": l["op"]}))
        if not l["latency"]["count"]:
            # Bytes without an op of their own (a writer's share of a WRITE another carried):
            # no histogram of nothing.
            assert h is None, f"an empty duration for {l['cgroup']} {l['op']}"
            continue
        assert h is not None, f"no duration for {l['cgroup']} {l['op']}"
        assert h["count"] == l["latency"]["count"]
        want = {b["slot"]: b["count"] for b in l["latency"]["buckets"]}
        if explicit:
            got = {i: c for i, c in enumerate(h["bucket_counts"]) if c}
            assert h["bounds"][20] == 2.0 ** -10
        else:
            assert h["scale"] == 0
            got = {h["offset"] + i + 31: c for i, c in enumerate(h["buckets"]) if c}
        assert got == want, f"{l['cgroup']} {l['op']}: buckets {got} != kernel slots {want}"
        checked += 1
    assert checked >= at_least


@needs(*V2, "collect")
def test_otlp_through_rotel_grpc_matches_the_probe(v2):
    check_otlp_against_jsonl("v2", v2, explicit=False, at_least=20)


@needs(*V1, "collect")
def test_otlp_through_rotel_http_explicit_histograms(v1):
    check_otlp_against_jsonl("v1", v1, explicit=True, at_least=3)


@needs(*V2, "v2-io", "collect")
def test_otlp_resource_and_pod_labels(expect):
    points = load_otlp("v2")
    resource = points[0]["resource"]
    assert resource["service.name"] == "nasflow" and resource["k8s.node.name"] == "vm"
    pods = {p["attrs"].get("k8s.pod.name") for p in points if p["metric"] == "nfs.client.io"}
    assert {"trainer-7d9f8b6c5-q8z2x", "db-0"} <= pods
    host = [p for p in points if p["attrs"].get("process.linux.cgroup") == "/close-writer"]
    assert host and all("k8s.pod.name" not in p["attrs"] for p in host)
    self_series = [p for p in points if p["scope"] == "nasflow.self" and p["metric"] == "nasflow.series"]
    assert self_series and max(p["value"] for p in self_series) > 10


@needs(*V2, "outage", "collect")
def test_a_pod_that_ends_while_the_collector_is_down_arrives_exactly(expect):
    cases = [r for r in expect if r[0] == "outage_write"]
    assert len(cases) == 1
    _, cgroup, _, n = cases[0]
    points = [
        p
        for p in load_otlp("v2")
        if p["metric"] == "nfs.client.io" and p["attrs"].get("k8s.pod.name") == "short-job-28000000-q7w2e"
    ]
    assert points, "the ended pod's bytes never reached the collector"
    assert max(p["value"] for p in points) == int(n), f"{cgroup}: {[p['value'] for p in points]} != {n}"
    assert all(p["attrs"]["nfs.io.direction"] == "write" and p["attrs"]["k8s.job.name"] == "short-job-28000000" for p in points)


@needs(*V2, "netem", "collect")
def test_inflight_max_age_gauge_per_mounted_nas():
    points = [p for p in load_otlp("v2") if p["metric"] == "nfs.client.rpc.inflight.max_age"]
    servers = {p["attrs"]["server.address"] for p in points}
    assert servers == {"127.0.0.1", "127.0.0.2", "127.0.0.3"}, servers
    assert all(0 <= p["value"] < 60 for p in points), [p["value"] for p in points]
    assert all("k8s.pod.name" not in p["attrs"] for p in points)


def loaded_programs(name):
    """Names of the BPF programs loaded while an agent ran (full names, from their BTF)."""
    return {p.get("name", "") for p in json.loads((R / f"{name}-progs.json").read_text())}


@needs(*V2, "v2-io")
def test_default_agent_does_nothing_on_cached_reads(expect, v2):
    # A file read twice, the second time from the page cache: the wire bytes once, and by
    # default no application bytes and no program on nfs_file_read.
    cases = [r for r in expect if r[0] == "no_app_read"]
    assert cases
    for _, cgroup, dev in cases:
        wire = next(int(r[3]) for r in expect if r[0] == "read" and r[1] == cgroup)
        assert v2.bytes(cgroup, dev, "READ") == wire
    assert not [l for l in v2.io if l["op"].startswith("APP_")]
    progs = loaded_programs("v2")
    assert {"nfs_initiate_read", "nfs_fwrite_ent", "rpc_request", "rpc_stats_lat"} <= progs, progs
    # Writes are charged at nfs_file_write's entry: no return probe either.
    assert not progs & {"nfs_fread_ent", "nfs_fread_ret", "nfs_fwrite_ret"}, progs


@pytest.fixture
def feat():
    return load_run("feat")


@needs("services", "nfs", "features")
def test_switches_change_what_is_exported_and_attached(expect, feat):
    # --app-bytes on --rtt off --latency off: application bytes exact (the cached re-read
    # twice, a buffered write once), wire bytes once; no round-trip times, no latency samples; the nfs_file_read
    # probes loaded, rpc_stats_latency's program not.
    (_, cgroup, dev, n), = [r for r in expect if r[0] == "feat_app_read"]
    wire = next(int(r[3]) for r in expect if r[0] == "feat_read")
    assert feat.bytes(cgroup, dev, "APP_READ") == int(n) == 2 * wire
    assert feat.bytes(cgroup, dev, "READ") == wire
    assert feat.series(cgroup, dev, "LOOKUP"), "metadata operations still counted"
    assert all(l.get("rtt") is None for l in feat.io), [l for l in feat.io if l.get("rtt")][:1]
    assert all(l["latency"]["count"] == 0 for l in feat.io), [l for l in feat.io if l["latency"]["count"]][:1]
    (_, wcgroup, wdev, m), = [r for r in expect if r[0] == "feat_app_write"]
    assert feat.bytes(wcgroup, wdev, "APP_WRITE") == int(m)
    assert feat.bytes(wcgroup, wdev, "WRITE") == int(m), "the flushed write charged to its writer"
    # A rewrite in place records no more than the file holds; an appender's flush is its own.
    for kind in ("feat_rewrite", "feat_append"):
        (_, cg, dev, n), = [r for r in expect if r[0] == kind]
        assert feat.bytes(cg, dev, "WRITE") == int(n), kind
    progs = loaded_programs("feat")
    assert {"nfs_fread_ent", "nfs_fread_ret", "nfs_fwrite_ent", "nfs_fwrite_ret", "rpc_request"} <= progs, progs
    assert "rpc_stats_lat" not in progs, progs


# Slot s holds (2^(s-31), 2^(s-30)] s: slot 26 and up are above 2^-5 s = 31.25 ms.
ABOVE_31MS = 26


def rpc_lines(run, cgroup, dev_name):
    dev = run.devs[dev_name]
    return [l for (_, d, _, _), l in run.last.items() if l["cgroup"] == cgroup and d == dev]


@needs(*V2)
def test_every_rpc_is_traced(v2):
    assert v2.health[-1]["rpc_tracing"] is True


@needs(*V2, "metadata")
def test_metadata_storm_is_charged_to_its_pod(expect, v2):
    (_, pod, dev, n), = [r for r in expect if r[0] == "meta"]
    lines = {l["op"]: l for l in rpc_lines(v2, pod, dev)}
    meta = sum(lines[op]["ops"] for op in ("LOOKUP", "GETATTR") if op in lines)
    assert meta >= int(n), f"{n} stats, {meta} LOOKUP/GETATTR: {sorted(lines)}"
    assert not {"READ", "WRITE"} & set(lines), "a stat storm moves no data"
    # Counted per pod: nobody else is charged with the storm's lookups on nas-b.
    others = sum(l["ops"] for l in v2.last.values() if l["op"] == "LOOKUP" and l["dev"] == v2.devs[dev] and l["cgroup"] != pod)
    assert others < int(n), f"{others} LOOKUPs charged elsewhere"
    check_attrs(v2, pod, {"k8s.pod.name": "indexer-5f6d7c8b9-k2m4p", "nasflow.task": "file-indexer"})


@needs(*V2, "errors", "collect")
def test_errors_carry_their_errno_per_pod(expect, v2):
    (_, pod, dev, small, k), = [r for r in expect if r[0] == "errors"]
    seen = json.loads((R / "errors.json").read_text())
    assert seen["eacces_before"] == "ok" and seen["estale_before"] == "ok", seen
    assert seen["eacces"] == "EACCES" and seen["estale"] == "ESTALE", seen
    assert seen["enoent"] == ["ENOENT"] * int(k) and "ENOSPC" in seen["enospc"], seen
    by_op = defaultdict(lambda: defaultdict(int))
    for l in rpc_lines(v2, pod, dev) + rpc_lines(v2, pod, small):
        for name, count in l["errors_by_type"].items():
            by_op[(l["dev"], l["op"])][name] += count
    a, s = v2.devs[dev], v2.devs[small]
    assert by_op[(a, "READ")]["EACCES"] >= 1, dict(by_op)
    assert by_op[(a, "READ")]["ESTALE"] >= 1, dict(by_op)
    assert by_op[(a, "LOOKUP")]["ENOENT"] >= int(k), dict(by_op)
    assert by_op[(s, "WRITE")]["ENOSPC"] >= 1, dict(by_op)
    # Through the collector too, with the pod's name on them.
    points = [p for p in load_otlp("v2") if p["metric"] == "nfs.client.operation.count"
              and p["attrs"].get("k8s.pod.name") == "flaky-etl-6b8c9d7f5-r9t2q"]
    types = {(p["attrs"]["nfs.operation.name"], p["attrs"].get("error.type")) for p in points}
    assert {("READ", "EACCES"), ("READ", "ESTALE"), ("LOOKUP", "ENOENT"), ("WRITE", "ENOSPC")} <= types, types


def slots(latency):
    return {b["slot"]: b["count"] for b in latency["buckets"]}


@needs(*V2, "metadata", "netem", "collect")
def test_slow_link_shows_in_rtt_and_duration_and_retransmits(expect, v2):
    (_, pod, dev, m), = [r for r in expect if r[0] == "slow"]
    lines = {l["op"]: l for l in rpc_lines(v2, pod, dev)}
    lookup = lines.get("LOOKUP")
    assert lookup and lookup["ops"] >= int(m) + 3, sorted(lines)
    for l in lines.values():
        if l["rtt"]:
            assert min(slots(l["rtt"])) >= ABOVE_31MS, f"{l['op']} rtt {slots(l['rtt'])}"
        if l["latency"]["count"]:
            assert min(slots(l["latency"])) >= ABOVE_31MS, f"{l['op']} duration {slots(l['latency'])}"
    assert lookup["rtt"]["count"] >= int(m)
    assert sum(l["retransmits"] for l in lines.values()) >= 1, "RPCs past the 100 ms timeout are retransmitted"
    # The storm pod, on an undelayed mount, is told apart: most of its round trips are faster.
    (_, storm, sdev, _), = [r for r in expect if r[0] == "meta"]
    fast = [l for l in rpc_lines(v2, storm, sdev) if l["rtt"]]
    below = sum(c for l in fast for s, c in slots(l["rtt"]).items() if s < ABOVE_31MS)
    total = sum(l["rtt"]["count"] for l in fast)
    assert total and below * 2 > total, f"{below} of {total} storm round trips under 31 ms"
    assert all(l["retransmits"] == 0 for l in rpc_lines(v2, storm, sdev))
    # The collector has the same round trips and retransmissions for the pod.
    newest = newest_points(load_otlp("v2"))
    mine = [p for p in newest.values() if p["attrs"].get("k8s.pod.name") == "remote-reader-0"]
    rtt = [p for p in mine if p["metric"] == "nfs.client.rpc.rtt" and p["attrs"]["nfs.operation.name"] == "LOOKUP"]
    assert rtt and rtt[0]["count"] == lookup["rtt"]["count"]
    rtx = sum(p["value"] for p in mine if p["metric"] == "nfs.client.rpc.retransmit.count")
    assert rtx == sum(l["retransmits"] for l in lines.values())


@needs("services", "v2-start", "nfs", "v2-ready")
def test_health_endpoints(expect):
    def one(key):
        (value,) = [r[1] for r in expect if r[0] == key]
        return value

    assert one("healthz") == "200"
    assert one("readyz_unattached") == "200", "ready before the nfs module is there: it never waits for it"
    assert "not_attached" in one("healthz_unattached"), "/healthz names what is degraded"
    assert one("readyz_attached") == "200"


@needs("services", "check-before-modules")
def test_ready_without_nfs_module_and_without_collector(expect):
    (readyz,) = [r[1] for r in expect if r[0] == "bare_readyz"]
    assert readyz == "200"
    ((code, body),) = [r[1:3] for r in expect if r[0] == "bare_healthz"]
    assert code == "200" and "not_attached" in body and "collector_failing" in body, body


def kernel_version(expect):
    """(major, minor) of the kernel the guest ran."""
    (release,) = [r[1] for r in expect if r[0] == "kernel"]
    major, minor = release.split(".")[:2]
    return int(major), int(minor)


def load_check(name):
    return {i["name"]: i for i in json.loads((R / f"check-{name}.json").read_text())}


@needs("services", "check-before-modules")
def test_check_before_modules_warns_and_passes(expect):
    assert ["check_exit", "before-modules", "0"] in expect
    items = load_check("before-modules")
    assert items["nfs tracepoints"]["status"] == "WARN" and "not loaded yet" in items["nfs tracepoints"]["detail"]
    assert items["nfs mounts"]["status"] == "WARN"
    # --nfs-server auto: no nfsd is nothing to warn about.
    assert items["nfs server programs"]["status"] == "OK" and "not loaded" in items["nfs server programs"]["detail"]
    assert all(i["status"] != "FAIL" for i in items.values()), items


@needs("services", "nfs", "check-mounted")
def test_check_with_nfs_mounted_is_all_ok(expect):
    assert ["check_exit", "mounted", "0"] in expect
    items = load_check("mounted")
    assert set(items) == {"kernel", "btf", "tracefs", "nfs tracepoints", "sunrpc tracepoints", "cgroups",
                          "bpf programs", "nfs server programs", "capabilities", "kubelet", "collector",
                          "nfs mounts"}
    assert items["nfs server programs"]["detail"] == "6 programs pass the verifier (nfsd is loaded)"
    bad = {n: i for n, i in items.items() if i["status"] != "OK"}
    # The one documented gap: kernels before 5.12 have no sunrpc:xprt_retransmit.
    if kernel_version(expect) < (5, 12):
        gap = bad.pop("sunrpc tracepoints", {})
        assert gap.get("status") == "WARN" and "xprt_retransmit" in gap.get("detail", ""), gap
    assert not bad, bad
    assert items["bpf programs"]["detail"].endswith("programs pass the verifier"), items["bpf programs"]
    assert items["nfs mounts"]["detail"].startswith("2 NFS devices from 127.0.0.1, 127.0.0.2")
    assert "/pods" in items["kubelet"]["detail"]


@needs("v2-stop", "v1")
def test_agent_fits_the_charts_memory_limit(expect):
    import yaml  # the chart's values are the contract

    values = yaml.safe_load((Path(__file__).resolve().parents[2] / "charts/nasflow/values.yaml").read_text())
    limit = values["resources"]["limits"]["memory"]
    assert limit.endswith("Mi")
    rss = [int(r[1]) for r in expect if r[0] == "agent_rss_kb"]
    assert len(rss) >= 3 and all(0 < kb * 1024 < int(limit[:-2]) * 2**20 for kb in rss), rss


@needs(*V2, "netem", "collect")
def test_a_hung_nas_shows_in_the_inflight_age(expect):
    (_, _, server), = [r[:3] for r in expect if r[0] == "hung"]
    points = [p for p in load_otlp("v2") if p["metric"] == "nfs.client.rpc.inflight.max_age"]
    ages = [p["value"] for p in points if p["attrs"]["server.address"] == server]
    others = [p["value"] for p in points if p["attrs"]["server.address"] != server]
    # The call hung for about 6 s; a 2 s interval samples it at least once past 1.5 s.
    assert max(ages) >= 1.5, sorted(ages)[-5:]
    assert max(others) < 1.5, sorted(others)[-5:]


def one(expect, key):
    (value,) = [r[1:] for r in expect if r[0] == key]
    return value


@needs(*V2, "commits")
def test_concurrent_commits_leave_no_phantom_inflight_entry(expect, v2):
    seq = int(one(expect, "commits_done_seq")[0])
    later = [h for h in v2.health if h["seq"] >= seq]
    assert later, f"no health line from interval {seq} on"
    assert later[0]["maps"]["inflight"][0] == 0, f"in-flight entries left: {later[0]['maps']}"
    assert not later[0]["inflight"], later[0]["inflight"]
    commits = sum(l["ops"] for l in v2.last.values() if l["cgroup"] == "/committers" and l["op"] == "COMMIT")
    assert commits >= 2, f"the writers sent {commits} COMMITs"


@needs(*V2, "churn")
def test_churn_returns_maps_series_and_memory_to_their_baseline(expect, v2):
    n = int(one(expect, "churn_cgroups")[0])
    before, after = int(one(expect, "churn_before_seq")[0]), int(one(expect, "churn_after_seq")[0])
    by_seq = {h["seq"]: h for h in v2.health}
    used = lambda seq, m: by_seq[seq]["maps"][m][0]
    # Most churned cgroups live less than an interval: they end before any cgroup walk saw
    # them, so they are named by their id (nasflow.cgroup.id) and end with their final bytes.
    during = [l for l in v2.io if before < l["seq"] <= after]
    ended = {l["cgroup_id"] for l in during if l["cgroup_gone"] and (l["cgroup"] or "/churn/").startswith("/churn/")}
    assert len(ended) >= n, f"{len(ended)} of {n} churned cgroups ended"
    written = sum(l["bytes"] for l in during if l["cgroup_gone"] and l["op"] == "WRITE" and (l["cgroup"] or "/churn/").startswith("/churn/"))
    assert written == 4096 * n, f"{written} bytes written by the churned cgroups, not {4096 * n}"
    for l in during:
        assert l["workload"], f"a series without identity: {l}"
    for m in ("io_counters", "io_hist", "inflight"):
        assert used(after, m) <= used(before, m), f"{m}: {used(before, m)} entries before, {used(after, m)} after"
    lines = lambda seq: sum(1 for l in v2.io if l["seq"] == seq)
    assert lines(after) <= lines(before), f"series: {lines(before)} before, {lines(after)} after"
    rss_before, rss_after = int(one(expect, "churn_before_rss_kb")[0]), int(one(expect, "churn_after_rss_kb")[0])
    # Freed memory may stay with the allocator; the tables themselves are gone.
    assert rss_after <= rss_before * 5 // 4 + 8192, f"RSS {rss_before} kB before, {rss_after} kB after"


@needs("services", "nfs", "full", "collect")
def test_a_full_map_counts_and_exports_its_drops(expect):
    run = load_run("full")
    last = run.health[-1]
    assert last["maps"]["io_counters"] == [8, 8] or last["maps"]["io_counters"][0] <= 8
    dropped = last["counters"]["counters_map_full"]
    assert dropped > 0, last["counters"]
    cgroups = {l["cgroup"] for l in run.io if l["cgroup"] and l["cgroup"].startswith("/full-")}
    assert 0 < len(cgroups) < 24, "some series fit, the others were dropped"
    exported = [p for p in load_otlp("full") if p["metric"] == "nasflow.probe.drops" and p["attrs"].get("reason") == "counters_map_full"]
    assert exported and max(p["value"] for p in exported) == dropped, (dropped, [p["value"] for p in exported])


@needs(*V2, "collect")
def test_no_two_series_share_an_attribute_set():
    seen = {}
    for p in load_otlp("v2"):
        if p["scope"] != "nasflow":
            continue
        key = (p["req"], p["time"], p["metric"], json.dumps(p["attrs"], sort_keys=True))
        assert key not in seen, f"two points with one identity in one request: {key}"
        seen[key] = p


@needs("nfs", "pin")
def test_the_nfs_module_cannot_be_removed_under_an_attached_agent(expect):
    assert one(expect, "rmmod_nfs_attached")[0] != "0", "nfs.ko was removed while the agent was attached"
    assert one(expect, "rmmod_nfs_detached")[0] == "0", "nfs.ko stayed after the agent stopped"


# ---------- the NFS server side (phase server) ----------

EXPORTS = {"nas-a": "/srv/v4/exa", "nas-b": "/srv/v4/exb", "nas-t": "/srv/v4/tiny", "nas-e": "/srv/v4/ext"}


@pytest.fixture
def served():
    """The server lines of the srv agent's last interval (cumulative), and its io lines."""
    path = R / "srv.jsonl"
    assert path.exists(), f"{path} missing"
    lines = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    server = [l for l in lines if l["kind"] == "server"]
    assert server, "no server lines"
    last = max(l["seq"] for l in server)
    # The server phase's own mounts (a small export, a UUID export) beside the suite's.
    devs = {**load_devs(), **{r[1]: r[2] for r in load_expect() if r[0] == "srv_dev"}}
    return [l for l in server if l["seq"] == last], Run("srv", devs)


@needs("services", "nfs", "server")
def test_server_bytes_per_export_equal_what_the_clients_moved(expect, served):
    server, run = served
    want = defaultdict(int)
    for _, mount, direction, n in (r for r in expect if r[0] == "srv_io"):
        want[(EXPORTS[mount], direction)] += int(n)
    for (export, direction), n in want.items():
        got = sum(l["bytes"] for l in server if l["export"] == export and l["direction"] == direction and l["client"] == "127.0.0.1")
        assert got == n, f"{export} {direction}: server {got}, clients {n}"
        # The same agent's client side, every cgroup on that mount.
        mount = next(m for m, e in EXPORTS.items() if e == export)
        op = "READ" if direction == "read" else "WRITE"
        client = sum(l["bytes"] for l in run.io if l["dev"] == run.devs[mount] and l["op"] == op and l["seq"] == run.io[-1]["seq"])
        assert got == client, f"{export} {direction}: server {got}, client side {client}"


@needs("services", "nfs", "server")
def test_server_operation_counts_equal_the_kernels_statistics(expect, served):
    server, _ = served
    counters = defaultdict(dict)
    for _, tag, vers, op, n in (r for r in expect if r[0] == "nfsd_ops"):
        counters[(int(vers), op)][tag] = int(n)
    assert counters
    for (vers, op), c in counters.items():
        got = sum(l["ops"] for l in server if l["vers"] == vers and l["op"] == op)
        assert got == c["after"] - c["before"], f"v{vers} {op}: nasflow {got}, /proc/net/rpc/nfsd {c['after'] - c['before']}"
    assert sum(l["ops"] for l in server if l["op"] in ("READ", "READ_PLUS") and l["vers"] == 4) > 0, "v4 reads seen"


@needs("services", "nfs", "server")
def test_server_tells_client_addresses_apart(expect, served):
    server, _ = served
    (_, addr, mount, _, n), = [r for r in expect if r[0] == "srv_client"]
    lines = [l for l in server if l["client"] == addr]
    assert {l["export"] for l in lines if l["op"] == "WRITE"} == {EXPORTS[mount]}
    assert sum(l["bytes"] for l in lines if l["op"] == "WRITE") == int(n)


@needs("services", "nfs", "server")
def test_server_failures_carry_the_nfs_status(served):
    server, _ = served
    nospc = [l for l in server if l["export"] == "/srv/v4/tiny" and l["status"] == "NFS3ERR_NOSPC"]
    assert nospc and nospc[0]["op"] == "WRITE", [(l["op"], l["status"]) for l in server if l["export"] == "/srv/v4/tiny"]
    stale = [l for l in server if l["export"] == "/srv/v4/exa" and l["status"] == "NFS3ERR_STALE"]
    assert stale, sorted({(l["op"], l["status"]) for l in server if l["status"]})


@needs("services", "nfs", "server")
def test_server_latency_and_requests_without_an_export(served):
    server, _ = served
    for l in server:
        assert l["latency"]["count"] == l["ops"], l
        assert l["latency"]["sum_s"] > 0 or l["ops"] == 0, l
    # NFSv4 operations before any file handle (SEQUENCE) are counted apart, with no export.
    seq = [l for l in server if l["op"] == "SEQUENCE"]
    assert seq and all(l["export"] is None and l["fsid"] is None for l in seq)
    # Every handle that was used names its export.
    assert all(l["export"] for l in server if l["fsid"]), [l for l in server if l["fsid"] and not l["export"]][:1]


@needs("services", "nfs", "server", "collect")
def test_server_metrics_through_rotel_match_the_probe(served):
    # nfs.server.* as the collector received them: every series of the agent's last interval,
    # value for value, with its export, client, operation, version and status.
    server, _ = served
    newest = newest_points(load_otlp("srv"))
    checked = 0
    for l in server:
        where = {"client.address": l["client"]}
        if l["export"]:
            where["nfs.export.path"] = l["export"]
        elif l["fsid"]:
            where["nfs.export.fsid"] = l["fsid"]
        key = lambda metric, extra: (metric, json.dumps({**where, **extra}, sort_keys=True))
        op = {"nfs.operation.name": l["op"], "onc_rpc.version": l["vers"]}
        count = newest.get(key("nfs.server.operation.count", {**op, **({"error.type": l["status"]} if l["status"] else {})}))
        assert count is not None and count["value"] == l["ops"], f"{l['export']} {l['op']} {l['status']}: {count}"
        if l["direction"]:
            io = [
                l2["bytes"] for l2 in server
                if (l2["export"], l2["fsid"], l2["client"], l2["vers"], l2["op"]) == (l["export"], l["fsid"], l["client"], l["vers"], l["op"])
            ]
            p = newest.get(key("nfs.server.io", {"nfs.io.direction": l["direction"]}))
            assert p is not None and p["value"] == sum(io) and p["unit"] == "By", f"{l['export']} {l['op']} bytes"
        h = newest.get(key("nfs.server.operation.duration", op))
        assert h is not None and h["scale"] == 0, f"{l['export']} {l['op']} duration"
        checked += 1
    assert checked >= 10


@needs("services", "nfs", "server")
def test_server_names_an_export_by_its_uuid(expect, served):
    # ext4 exported without fsid=: its handles carry the file system's UUID (and the export
    # root's inode), which the kernel's export cache maps back to the path.
    server, _ = served
    (_, uuid), = [r for r in expect if r[0] == "ext_uuid"]
    lines = [l for l in server if l["export"] == "/srv/v4/ext"]
    types = {l["fsid"].split(":")[0] for l in lines}
    assert lines and types <= {"6", "7"} and len(types) == 1, types
    # FSID_UUID16: the 16 UUID bytes (the export is the file system's root); FSID_UUID16_INUM:
    # the export root's 8-byte inode number first. Each 32-bit word is printed in host order.
    fsid_type, fsid = lines[0]["fsid"].split(":")
    raw = b"".join(bytes.fromhex(fsid[i:i + 8])[::-1] for i in range(0, len(fsid), 8))
    assert raw[-16:].hex() == uuid.replace("-", ""), (fsid, uuid)
    assert len(raw) == (16 if fsid_type == "6" else 24)


@needs(*V2)
def test_server_probe_attaches_when_nfsd_loads_late(v2):
    # The v2 agent starts before any NFS module (--nfs-server auto): it attaches to nfsd once
    # the nfs phase loads it.
    assert v2.health[0]["server"]["attached"] is False
    assert v2.health[-1]["server"]["attached"] is True


# ---- directories (--directories, --operations) ----


def dir_devs():
    return {**load_devs(), **{r[1]: r[2] for r in load_expect() if r[0] == "dir_dev"}}


@pytest.fixture
def dirs():
    return Run("dirs", dir_devs())


@pytest.fixture
def ops_run():
    return Run("ops", dir_devs())


def dir_bytes(run, cgroup, dev_name, op, directory):
    """Bytes of one cgroup's operation on one device below `directory` (None: below none)."""
    return sum(l["bytes"] for l in run.series(cgroup, dev_name, op) if l.get("directory") == directory)


@needs("services", "nfs", "dirs")
def test_each_watched_directory_gets_exactly_its_bytes(expect, dirs):
    # Nested directories (the deepest wins), one reached through a second mount of the same
    # export, buffered writes flushed by another cgroup, a directory created after start, and
    # unwatched traffic without nfs.directory.
    cases = [r for r in expect if r[0] == "dir_io"]
    assert len(cases) == 7, cases
    for _, cgroup, dev, directory, wrote, read in cases:
        directory = None if directory == "-" else directory
        for op, n in (("WRITE", int(wrote)), ("READ", int(read))):
            got = dir_bytes(dirs, cgroup, dev, op, directory)
            assert got == n, f"{op} bytes of {cgroup} on {dev} below {directory}: got {got}, moved {n}"
            elsewhere = sum(l["bytes"] for l in dirs.series(cgroup, dev, op)) - got
            assert elsewhere == 0, f"{cgroup} {op}: {elsewhere} bytes charged below another directory"
            ops = [l for l in dirs.series(cgroup, dev, op) if l.get("directory") == directory]
            if n:
                assert sum(l["ops"] for l in ops) >= 1 and sum(l["latency"]["count"] for l in ops) >= 1
    # The COMMIT of the buffered write follows its directory.
    (bw,) = [r for r in cases if r[1] == "/dirs-bw"]
    commits = [l for l in dirs.series("/dirs-bw", "nas-a", "COMMIT")]
    assert commits and all(l.get("directory") == bw[3] for l in commits), commits
    assert not [l for l in dirs.io if l["cgroup"] == "/dirs-syncer"], "the flusher is charged nothing"


@needs("services", "nfs", "dirs")
def test_metadata_below_a_watched_directory_carries_it(expect, dirs):
    (team_b,) = [r[1] for r in expect if r[0] == "dir_meta"]
    by_op = defaultdict(lambda: defaultdict(int))
    for l in dirs.last.values():
        if l["cgroup"] == "/dirs-meta-b":
            by_op[l["op"]][l.get("directory")] += l["ops"]
    # Two stats of missing names (and the touch's own lookup before 6.0); the touch's CREATE and SETATTR
    # (its times); the rm.
    assert by_op["LOOKUP"][team_b] >= 2 and None not in by_op["LOOKUP"], dict(by_op["LOOKUP"])
    assert by_op["CREATE"] == {team_b: 1}, dict(by_op["CREATE"])
    assert by_op["REMOVE"] == {team_b: 1}, dict(by_op["REMOVE"])
    assert by_op["SETATTR"] == {team_b: 1}, dict(by_op["SETATTR"])
    other = [l for l in dirs.last.values() if l["cgroup"] == "/dirs-meta-o" and l["op"] == "LOOKUP"]
    assert other and all(l.get("directory") is None for l in other), other


@needs("services", "nfs", "dirs")
def test_operations_and_latency_switches_change_what_is_exported_and_attached(expect, ops_run):
    # --operations WRITE,COMMIT --latency off: only those operations, no latency samples,
    # and none of the READ, hint or directory programs loaded by that agent.
    assert {l["op"] for l in ops_run.io} <= {"WRITE", "COMMIT"}, {l["op"] for l in ops_run.io}
    (a,) = [r for r in expect if r[0] == "dir_io" and r[1] == "/dirs-a"]
    assert dir_bytes(ops_run, "/dirs-a", "nas-a", "WRITE", None) == int(a[4])
    assert all(l["latency"]["count"] == 0 for l in ops_run.io)
    assert all(l.get("directory") is None for l in ops_run.io)
    progs = {p["name"] for p in json.loads((R / "ops-progs.json").read_text())}
    assert {"nfs_initiate_write", "nfs_writeback_done", "nfs_commit_done", "rpc_task_end"} <= progs, progs
    assert not progs & {"nfs_initiate_read", "nfs_readpage_done", "hint_lookup", "dir_read", "dir_write"}, progs
    dir_progs = {p["name"] for p in json.loads((R / "dirs-progs.json").read_text())}
    assert {"dir_read", "dir_write", "dir_lookup", "dir_create", "dir_unlink"} <= dir_progs, dir_progs


@needs("services", "nfs", "dirs", "collect")
def test_otlp_carries_the_directory(dirs):
    check_otlp_against_jsonl("dirs", dirs, explicit=False, at_least=8)
    labelled = {p["attrs"].get("nfs.directory") for p in load_otlp("dirs") if p["metric"] == "nfs.client.io"}
    assert {"/srv/nas-a/proj/team-a", "/srv/nas-a/proj/team-a/sub", "127.0.0.1:/srv/v4/exa/proj/team-b"} <= labelled


def anomaly_events():
    """The anom agent's events as it printed them (jsonl), in order."""
    path = R / "anom.jsonl"
    assert path.exists(), f"{path} missing"
    lines = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    return [l for l in lines if l["kind"] == "anomaly"]


def anomaly_marks(expect):
    one = lambda k: int(next(r[1] for r in expect if r[0] == k))
    return one("anomaly_steady_from"), one("anomaly_burst_after"), one("anomaly_burst_until")


@needs("services", "nfs", "anomaly")
def test_a_burst_opens_one_event_per_signal_naming_the_pod_and_closes(expect):
    _, burst_after, burst_until = anomaly_marks(expect)
    events = anomaly_events()
    steady = [e for e in events if e["seq"] <= burst_after]
    assert not steady, f"events during the steady phase: {[e['message'] for e in steady]}"
    opened = [e for e in events if e["attributes"]["nfs.anomaly.state"] == "open"]
    signals = [e["attributes"]["nfs.anomaly.signal"] for e in opened]
    assert len(signals) == len(set(signals)), f"an anomaly opened twice: {[e['message'] for e in opened]}"
    traffic = [e for e in opened if e["attributes"]["nfs.anomaly.signal"] in ("operations", "bytes")]
    assert traffic, f"no traffic anomaly: {[e['message'] for e in events]}"
    for e in traffic:
        a = e["attributes"]
        assert a["nfs.anomaly.direction"] == "up", e["message"]
        # The burst runs from interval burst_after + 1: named within 3 intervals of it.
        assert burst_after < e["seq"] <= burst_after + 3, (e["seq"], burst_after, e["message"])
        assert a["k8s.pod.name"] == "bursty-loader-0" and a["k8s.namespace.name"] == "batch", e["message"]
        assert a["nasflow.task"] == "bursty" and a["k8s.statefulset.name"] == "bursty-loader", a
        assert a["nfs.anomaly.contributor.share"] > 0.8, a
        assert a["nfs.anomaly.observed"] > 1.5 * a["nfs.anomaly.expected"] and a["nfs.anomaly.score"] >= 6, a
        assert a["server.address"] == "127.0.0.2" and a["nfs.export.path"] == "/exb", a
    for e in opened:
        closes = [c for c in events if c["attributes"]["nfs.anomaly.state"] == "close"
                  and c["attributes"]["nfs.anomaly.signal"] == e["attributes"]["nfs.anomaly.signal"]]
        assert len(closes) == 1, f"{e['message']}: closes {[c['message'] for c in closes]}"
        c = closes[0]
        assert e["seq"] < c["seq"] <= burst_until + 4, (e["seq"], c["seq"], burst_until)
        assert c["attributes"]["nfs.anomaly.start_time"] == e["attributes"]["nfs.anomaly.start_time"]


@needs("services", "nfs", "anomaly", "collect")
def test_the_collector_receives_the_events_and_the_scores(expect):
    events = anomaly_events()
    path = R / "otlp-logs.jsonl"
    assert path.exists(), f"{path} missing"
    records = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
    records = [r for r in records if r["resource"].get("nasflow.test.phase") == "anom"]
    assert records, "no log record from the anom agent reached the sink"
    assert all(r["event_name"] == "nfs.anomaly" and r["scope"] == "nasflow.anomaly" for r in records), records[0]
    sent = sorted((r["attrs"]["nfs.anomaly.signal"], r["attrs"]["nfs.anomaly.state"], r["attrs"].get("k8s.pod.name"),
                   r["attrs"]["nfs.anomaly.start_time"]) for r in records)
    printed = sorted((e["attributes"]["nfs.anomaly.signal"], e["attributes"]["nfs.anomaly.state"],
                      e["attributes"].get("k8s.pod.name"), e["attributes"]["nfs.anomaly.start_time"]) for e in events)
    assert sent == printed, (sent, printed)
    opens = [r for r in records if r["attrs"]["nfs.anomaly.state"] == "open"]
    assert all(r["severity"] == "WARN" and "bursty-loader-0" in r["body"] for r in opens if
               r["attrs"]["nfs.anomaly.signal"] in ("operations", "bytes")), opens
    scores = [p for p in load_otlp("anom") if p["metric"] == "nfs.client.anomaly.score"]
    assert {p["attrs"]["nfs.anomaly.signal"] for p in scores} == {"operations", "bytes", "errors", "latency"}
    peak = max(p["value"] for p in scores if p["attrs"]["nfs.anomaly.signal"] == "operations"
               and p["attrs"]["nfs.export.path"] == "/exb")
    assert peak >= 6, peak


@needs("services", "nfs", "dirs")
def test_prometheus_scraping_metrics_gets_the_exact_bytes(expect):
    # A real Prometheus scraped the dirs agent's /metrics: each watched directory's bytes, as
    # Prometheus stored them, are the bytes the workloads moved (and the jsonl and OTLP say).
    result = json.loads((R / "prometheus-io.json").read_text())
    assert result["status"] == "success", result
    series = result["data"]["result"]
    assert series, "Prometheus stored no nfs_client_io_bytes_total"
    assert all(s["metric"]["job"] == "nasflow" for s in series)

    def stored(cgroup, direction, directory):
        return sum(int(float(s["value"][1])) for s in series
                   if s["metric"].get("process_linux_cgroup") == cgroup and s["metric"]["nfs_io_direction"] == direction
                   and s["metric"].get("nfs_directory") == (None if directory == "-" else directory))

    cases = [r for r in expect if r[0] == "dir_io"]
    assert len(cases) == 7, cases
    for _, cgroup, _dev, directory, wrote, read in cases:
        assert stored(cgroup, "write", directory) == int(wrote), (cgroup, directory)
        assert stored(cgroup, "read", directory) == int(read), (cgroup, directory)


@needs("services", "nfs", "dirs")
def test_the_metrics_text_passes_promtool():
    text = (R / "dirs-metrics.txt").read_text()
    assert "# TYPE nfs_client_io_bytes_total counter" in text
    assert "# TYPE nfs_client_operation_duration_seconds histogram" in text
    assert 'le="+Inf"' in text and "target_info{" in text
    import shutil
    import subprocess
    if not shutil.which("promtool"):
        pytest.fail("promtool missing: run scripts/setup.sh")
    lint = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


# Panels a healthy loopback NAS leaves without data: nothing is retransmitted; and no
# series has a cluster label (a multi-cluster backend adds it; "All" matches its absence).
MAY_BE_EMPTY = {("nasflow-nas.json", "Retransmissions")} | {
    (board, "$cluster") for board in ("nasflow-nas.json", "nasflow-task.json", "nasflow-pod.json", "nasflow-server.json")}


@needs("services", "nfs", "dirs")
def test_every_dashboard_query_returns_data_from_prometheus():
    # Every panel's query, with the variables at "All", asked of the Prometheus that scraped
    # the dirs agent while the workloads ran (with --app-bytes on and a short anomaly warm-up).
    answers = json.loads((R / "dashboard-queries.json").read_text())
    boards = {a["dashboard"] for a in answers}
    assert boards == {"nasflow-nas.json", "nasflow-task.json", "nasflow-pod.json", "nasflow-server.json"}, boards
    failed = [a for a in answers if a["status"] != "success"]
    assert not failed, failed
    empty = [(a["dashboard"], a["panel"], a["ref"]) for a in answers
             if a["series"] == 0 and (a["dashboard"], a["panel"]) not in MAY_BE_EMPTY]
    assert not empty, f"queries without data: {empty}"
    # Numbers, not just series: the busiest pod moved bytes, and the read cache ratio is a ratio.
    by_panel = {(a["dashboard"], a["panel"], a["ref"]): a for a in answers}
    top = by_panel[("nasflow-nas.json", "Top pods by bytes", "A")]
    assert max(float(v) for v in top["values"]) > 0, top
    assert {"k8s_namespace_name": "dashboards", "k8s_pod_name": "reader-0"} in top["labels"], top
    ratio = by_panel[("nasflow-pod.json", "Read cache ratio", "A")]
    finite = [float(v) for v in ratio["values"] if v not in ("NaN", "+Inf", "-Inf")]
    assert finite and all(-0.01 <= v <= 1.0001 for v in finite), ratio
    # The pod's second read came from the page cache, in a later scrape than its first.
    assert max(finite) >= 0.99, ratio
    pods = by_panel[("nasflow-pod.json", "$pod", "variable")]
    assert pods["series"] >= 1, pods


def slow_op_lines(name):
    """The slow operations an agent printed, in order."""
    path = R / f"{name}.jsonl"
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [l for l in lines if l["kind"] == "slow_op"]


@needs("services", "nfs", "slow")
def test_a_storm_of_slow_operations_is_capped_and_every_one_accounted(expect):
    # --slow-op-threshold 1ns: every timed operation is slow; 20 a second are reported. What
    # was reported, what the kernel refused over the limit and what found the ring full add
    # up to the operations the latency histograms timed, exactly.
    (_, cgroup, dev_name, n), = [r for r in expect if r[0] == "slow_storm"]
    run = load_run("slow")
    reported = slow_op_lines("slow")
    counters = run.health[-1]["counters"]
    limited, lost = counters["slow_ops_over_limit"], counters["slow_ops_ring_full"]
    timed = sum(l["latency"]["count"] for l in run.last.values())
    assert timed >= int(n), (timed, n)
    assert len(reported) + limited + lost == timed, (len(reported), limited, lost, timed)
    assert limited > 0 and len(reported) >= 20, (len(reported), limited)
    # The cap: the kernel counts per second of its clock, so any one-second window of ends
    # overlaps two of its seconds (and CPUs racing at the edge may each add one).
    ends = sorted(l["start_unix_ns"] + l["duration_s"] * 1e9 for l in reported)
    busiest = max(sum(1 for e in ends[i:] if e < start + 1e9) for i, start in enumerate(ends))
    assert busiest <= 2 * (20 + 2), busiest
    # The storm's own reports: its LOOKUPs of missing names, on nas-a, named as the counters are.
    storm = [l for l in reported if l["cgroup"] == cgroup]
    assert storm, "no slow operation of the storm was reported"
    dev = run.devs[dev_name]
    assert all(l["dev"] == dev for l in storm), {l["dev"] for l in storm}
    lookups = [l for l in storm if l["op"] == "LOOKUP"]
    assert lookups and all(l["error"] == "ENOENT" for l in lookups), lookups[:3]
    assert all(l["nas"].get("server.address") == "127.0.0.1" for l in storm), storm[0]
    assert all(l["duration_s"] > 0 and l["file_id"] is None for l in lookups), lookups[:3]


@needs(*V2, "netem")
def test_an_operation_on_a_hung_nas_is_reported_slow_with_its_cgroup_and_nas(expect, v2):
    # The default threshold (500 ms): the stat that waited out the 3 s netem outage is
    # reported, charged to its cgroup and the slow mount; nothing faster is.
    reported = slow_op_lines("v2")
    assert all(l["duration_s"] >= 0.5 for l in reported), [l for l in reported if l["duration_s"] < 0.5][:3]
    hung = [l for l in reported if l["cgroup"] == "/hung-reader"]
    assert hung, f"no slow operation of /hung-reader among {[(l['cgroup'], l['op']) for l in reported]}"
    slowest = max(hung, key=lambda l: l["duration_s"])
    assert slowest["dev"] == v2.devs["nas-slow"] and slowest["nas"]["server.address"] == "127.0.0.3", slowest
    assert slowest["duration_s"] >= 3.0 and slowest["op"] in ("LOOKUP", "GETATTR", "ACCESS"), slowest
