//! The metric schema as data: one descriptor per metric (name, unit, instrument, description,
//! its own attributes, and which field of the probe's rows feeds it). The encoder iterates it,
//! and a test holds docs/metrics.md to it. Names extend the OpenTelemetry NFS semantic
//! conventions.

/// How a metric is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instrument {
    /// A monotonic Sum (cumulative or delta, as configured).
    Counter,
    /// A latency histogram in the kernel's log2 slots (exponential or explicit, as configured).
    Histogram,
    /// A Gauge: the value now.
    Gauge,
}

/// Which part of a snapshot feeds a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// `Completed::bytes` of READ and WRITE rows, summed over outcomes, by direction.
    WireBytes,
    /// `Completed::ops` of every RPC row, one series per outcome (errno).
    CompletedOps,
    /// `Completed::latency` of every RPC row, summed over outcomes.
    Latency,
    /// `Completed::bytes` of the `APP_READ`/`APP_WRITE` rows, by direction.
    AppBytes,
    /// `IoRow::rtt` of every RPC row, summed over outcomes.
    Rtt,
    /// `IoRow::retransmits` of every RPC row, present once non-zero.
    Retransmits,
    /// `Snapshot::inflight`: the oldest RPC in flight per mounted NAS (NAS attributes only).
    InflightMaxAge,
    /// `ServerRow::bytes` of READ and WRITE rows, summed over statuses, by direction.
    ServerBytes,
    /// `ServerRow::ops`, one series per NFS status.
    ServerOps,
    /// `ServerRow::latency`, summed over statuses.
    ServerLatency,
    /// The anomaly detector's score per NAS export and signal (NAS attributes only).
    AnomalyScore,
}

/// One metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// OTLP name.
    pub name: &'static str,
    /// UCUM unit.
    pub unit: &'static str,
    /// Instrument.
    pub instrument: Instrument,
    /// Description sent with the metric.
    pub description: &'static str,
    /// Attributes of its own, beside the workload and NAS attributes every series carries.
    pub attributes: &'static [&'static str],
    /// What feeds it.
    pub source: Source,
}

/// `read` or `write`, on [`IO`] and [`APP_IO`].
pub const ATTR_IO_DIRECTION: &str = "nfs.io.direction";
/// Operation name as the kernel spells it (`READ`, `WRITE`, `COMMIT`, ...).
pub const ATTR_OPERATION: &str = "nfs.operation.name";
/// errno name of a failed operation (`EIO`, `EACCES`, `ESTALE`, ...), on [`OPERATION_COUNT`];
/// absent on successes.
pub const ATTR_ERROR_TYPE: &str = "error.type";
/// `major:minor` of an NFS device no mount names (`0:0`: an RPC whose mount is not known),
/// in place of the NAS attributes, so such series stay apart.
pub const ATTR_DEVICE: &str = "nfs.device";
/// The watched directory (`--directories`, as configured) a client operation's file is in.
pub const ATTR_DIRECTORY: &str = "nfs.directory";
/// The exported path of a server series (as the server's export table names it).
pub const ATTR_EXPORT_PATH: &str = "nfs.export.path";
/// `type:hex` of a file handle fsid no export names (yet), in place of [`ATTR_EXPORT_PATH`].
pub const ATTR_EXPORT_FSID: &str = "nfs.export.fsid";
/// The NFS client's address, on server series.
pub const ATTR_CLIENT_ADDRESS: &str = "client.address";
/// NFS version (2, 3, 4) of a server series, an integer.
pub const ATTR_RPC_VERSION: &str = "onc_rpc.version";
/// The signal an anomaly score judges: `operations`, `bytes`, `errors`, `latency`.
pub const ATTR_ANOMALY_SIGNAL: &str = "nfs.anomaly.signal";
/// Marks the series that hold what exceeded the series budget.
pub const ATTR_OVERFLOW: &str = "otel.metric.overflow";

/// The instrumentation scope of slow-operation spans.
pub const SPAN_SCOPE: &str = "nasflow.slow_ops";
/// A slow operation's RPC transaction id (an int), when the kernel gave it.
pub const ATTR_RPC_XID: &str = "nfs.rpc.xid";
/// A slow operation's RPC round trip in seconds (a double), when it got a reply.
pub const ATTR_RPC_RTT: &str = "nfs.rpc.rtt";
/// The file's id on the server (its inode number; an int), on READ, WRITE and COMMIT spans.
pub const ATTR_FILE_ID: &str = "nfs.file.id";
/// The offset in the file (an int), on READ, WRITE and COMMIT spans.
pub const ATTR_FILE_OFFSET: &str = "nfs.file.offset";
/// Payload bytes of a READ or WRITE span (an int).
pub const ATTR_IO_BYTES: &str = "nfs.io.bytes";

/// Bytes on the wire: READ and WRITE payloads.
pub const IO: Metric = Metric {
    name: "nfs.client.io",
    unit: "By",
    instrument: Instrument::Counter,
    description: "Bytes on the wire: READ payloads received and WRITE payloads sent.",
    attributes: &[ATTR_IO_DIRECTION],
    source: Source::WireBytes,
};
/// Completed operations.
pub const OPERATION_COUNT: Metric = Metric {
    name: "nfs.client.operation.count",
    unit: "{operation}",
    instrument: Instrument::Counter,
    description: "Completed NFS operations, failed ones with error.type.",
    attributes: &[ATTR_OPERATION, ATTR_ERROR_TYPE],
    source: Source::CompletedOps,
};
/// Operation latency, start to completion.
pub const OPERATION_DURATION: Metric = Metric {
    name: "nfs.client.operation.duration",
    unit: "s",
    instrument: Instrument::Histogram,
    description: "NFS operation latency, from the RPC's start to its completion.",
    attributes: &[ATTR_OPERATION],
    source: Source::Latency,
};
/// Bytes applications read and wrote through NFS files, page-cache hits included. Set against
/// [`IO`] per pod it shows cache effectiveness.
pub const APP_IO: Metric = Metric {
    name: "nfs.client.app.io",
    unit: "By",
    instrument: Instrument::Counter,
    description: "Bytes applications read and wrote through NFS files, page-cache hits included.",
    attributes: &[ATTR_IO_DIRECTION],
    source: Source::AppBytes,
};
/// RPC round-trip time: request sent to reply received (network and server), beside
/// [`OPERATION_DURATION`] which adds queueing and client work.
pub const RPC_RTT: Metric = Metric {
    name: "nfs.client.rpc.rtt",
    unit: "s",
    instrument: Instrument::Histogram,
    description: "NFS RPC round-trip time: request sent to reply received (network and server).",
    attributes: &[ATTR_OPERATION],
    source: Source::Rtt,
};
/// RPCs sent again after a timeout.
pub const RPC_RETRANSMIT_COUNT: Metric = Metric {
    name: "nfs.client.rpc.retransmit.count",
    unit: "{retransmission}",
    instrument: Instrument::Counter,
    description: "NFS RPCs sent again after a timeout.",
    attributes: &[ATTR_OPERATION],
    source: Source::Retransmits,
};
/// Age of the oldest RPC in flight, per NAS device; 0 when nothing is in flight.
pub const RPC_INFLIGHT_MAX_AGE: Metric = Metric {
    name: "nfs.client.rpc.inflight.max_age",
    unit: "s",
    instrument: Instrument::Gauge,
    description: "Age of the oldest NFS RPC still in flight, per NAS.",
    attributes: &[],
    source: Source::InflightMaxAge,
};

/// How unusual a NAS export's traffic, error ratio or latency is on this node, per signal.
pub const ANOMALY_SCORE: Metric = Metric {
    name: "nfs.client.anomaly.score",
    // An annotation, not "1": Prometheus names a "1" gauge `..._ratio`, and a score is none.
    unit: "{score}",
    instrument: Instrument::Gauge,
    description: "How unusual a NAS export's operations, bytes, error ratio or latency are on this node: -log10 of their probability under the export's recent baseline, 0 when as expected.",
    attributes: &[ATTR_ANOMALY_SIGNAL],
    source: Source::AnomalyScore,
};

/// Bytes the NFS server moved: READ payloads sent, WRITE payloads received, per export and
/// client.
pub const SERVER_IO: Metric = Metric {
    name: "nfs.server.io",
    unit: "By",
    instrument: Instrument::Counter,
    description: "Bytes the NFS server moved per export and client: READ payloads sent and WRITE payloads received.",
    attributes: &[ATTR_IO_DIRECTION],
    source: Source::ServerBytes,
};
/// Operations the NFS server served.
pub const SERVER_OPERATION_COUNT: Metric = Metric {
    name: "nfs.server.operation.count",
    unit: "{operation}",
    instrument: Instrument::Counter,
    description: "NFS operations served per export and client, failed ones with error.type (the NFS status).",
    attributes: &[ATTR_OPERATION, ATTR_RPC_VERSION, ATTR_ERROR_TYPE],
    source: Source::ServerOps,
};
/// The server's service time per operation.
pub const SERVER_OPERATION_DURATION: Metric = Metric {
    name: "nfs.server.operation.duration",
    unit: "s",
    instrument: Instrument::Histogram,
    description: "NFS server service time per operation, from the request's (or the previous NFSv4 operation's) start to its end.",
    attributes: &[ATTR_OPERATION, ATTR_RPC_VERSION],
    source: Source::ServerLatency,
};
/// Every NFS metric, in the order a request carries them.
pub const METRICS: [Metric; 11] = [
    IO,
    OPERATION_COUNT,
    OPERATION_DURATION,
    APP_IO,
    RPC_RTT,
    RPC_RETRANSMIT_COUNT,
    RPC_INFLIGHT_MAX_AGE,
    ANOMALY_SCORE,
    SERVER_IO,
    SERVER_OPERATION_COUNT,
    SERVER_OPERATION_DURATION,
];

/// The name Prometheus and Mimir give a metric they ingest over OTLP (and the OpenTelemetry
/// Collector's Prometheus exporters), with suffixes: dots become underscores, the unit is
/// appended in words (`By` bytes, `s` seconds; an annotation such as `{operation}` adds
/// nothing; `1` on a gauge adds `ratio`), and counters end in `_total`. Histograms add
/// `_bucket`, `_sum` and `_count` to it. One set of dashboards and rules then serves every
/// path (docs/prometheus.md).
#[must_use]
pub fn prometheus_name(name: &str, unit: &str, instrument: Instrument) -> String {
    let mut out = name.replace('.', "_");
    let unit_word = match unit {
        "By" => Some("bytes"),
        "s" => Some("seconds"),
        "1" if instrument == Instrument::Gauge => Some("ratio"),
        _ => None,
    };
    if let Some(w) = unit_word {
        if !out.ends_with(&format!("_{w}")) {
            out.push('_');
            out.push_str(w);
        }
    }
    if instrument == Instrument::Counter {
        out.push_str("_total");
    }
    out
}

/// Scope of the NFS metrics.
pub const SCOPE: &str = "nasflow";
/// Scope of the agent's own metrics.
pub const SELF_SCOPE: &str = "nasflow.self";

/// One self-telemetry metric (scope [`SELF_SCOPE`], cumulative sums or gauges).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelfMetric {
    /// OTLP name.
    pub name: &'static str,
    /// UCUM unit.
    pub unit: &'static str,
    /// Counter or gauge.
    pub instrument: Instrument,
    /// Description sent with the metric.
    pub description: &'static str,
    /// Attributes of its own.
    pub attributes: &'static [&'static str],
}

/// Self-telemetry: exports that failed (after retries of one batch, each failure counts).
pub const SELF_EXPORT_FAILURES: SelfMetric = SelfMetric {
    name: "nasflow.export.failures",
    unit: "{attempt}",
    instrument: Instrument::Counter,
    description: "Failed OTLP export attempts.",
    attributes: &[],
};
/// Self-telemetry: series in the last export.
pub const SELF_SERIES: SelfMetric = SelfMetric {
    name: "nasflow.series",
    unit: "{series}",
    instrument: Instrument::Gauge,
    description: "Series in this export.",
    attributes: &[],
};
/// Self-telemetry: series that were folded into overflow series.
pub const SELF_OVERFLOWED: SelfMetric = SelfMetric {
    name: "nasflow.series.overflowed",
    unit: "{series}",
    instrument: Instrument::Counter,
    description: "Series folded into otel.metric.overflow series.",
    attributes: &[],
};
/// Self-telemetry: what the kernel probe could not count, by `reason`.
pub const SELF_PROBE_DROPS: SelfMetric = SelfMetric {
    name: "nasflow.probe.drops",
    unit: "{event}",
    instrument: Instrument::Counter,
    description: "What the kernel probe could not count, by reason.",
    attributes: &["reason"],
};
/// Self-telemetry: cgroups, containers or devices that could not be named.
pub const SELF_ENRICH_MISSES: SelfMetric = SelfMetric {
    name: "nasflow.enrich.misses",
    unit: "{miss}",
    instrument: Instrument::Counter,
    description: "cgroups, containers or devices that could not be named.",
    attributes: &[],
};
/// Self-telemetry: pod tables loaded from the kubelet.
pub const SELF_KUBELET_REFRESHES: SelfMetric = SelfMetric {
    name: "nasflow.kubelet.refreshes",
    unit: "{refresh}",
    instrument: Instrument::Counter,
    description: "Pod tables loaded from the kubelet.",
    attributes: &[],
};

/// Self-telemetry: requests the collector answered.
pub const SELF_EXPORT_REQUESTS: SelfMetric = SelfMetric {
    name: "nasflow.export.requests",
    unit: "{request}",
    instrument: Instrument::Counter,
    description: "OTLP requests the collector answered.",
    attributes: &[],
};
/// Self-telemetry: bytes of the answered requests, before compression.
pub const SELF_EXPORT_BYTES: SelfMetric = SelfMetric {
    name: "nasflow.export.bytes",
    unit: "By",
    instrument: Instrument::Counter,
    description: "Bytes of the OTLP requests the collector answered, before compression.",
    attributes: &[],
};
/// Self-telemetry: attempts made again after a retryable failure.
pub const SELF_EXPORT_RETRIES: SelfMetric = SelfMetric {
    name: "nasflow.export.retries",
    unit: "{attempt}",
    instrument: Instrument::Counter,
    description: "OTLP requests sent again after a retryable failure.",
    attributes: &[],
};
/// Self-telemetry: requests refused for good and dropped, by `reason`.
pub const SELF_EXPORT_DROPS: SelfMetric = SelfMetric {
    name: "nasflow.export.drops",
    unit: "{request}",
    instrument: Instrument::Counter,
    description: "OTLP requests the collector refused for good, dropped, by reason.",
    attributes: &["reason"],
};
/// Self-telemetry: data points the collector rejected in partial successes.
pub const SELF_EXPORT_REJECTED: SelfMetric = SelfMetric {
    name: "nasflow.export.rejected_points",
    unit: "{point}",
    instrument: Instrument::Counter,
    description: "Data points the collector rejected (OTLP partial success).",
    attributes: &[],
};
/// Self-telemetry: requests the last interval was split into.
pub const SELF_EXPORT_PARTS: SelfMetric = SelfMetric {
    name: "nasflow.export.parts",
    unit: "{request}",
    instrument: Instrument::Gauge,
    description: "Requests the last interval was split into.",
    attributes: &[],
};
/// Self-telemetry: ended series whose final values wait for an answered request.
pub const SELF_EXPORT_TOMBSTONES: SelfMetric = SelfMetric {
    name: "nasflow.export.tombstones",
    unit: "{series}",
    instrument: Instrument::Gauge,
    description: "Series of removed cgroups whose final values wait to be accepted.",
    attributes: &[],
};

/// Self-telemetry: 1 while a degraded state holds, 0 otherwise, by `state`.
pub const SELF_DEGRADED: SelfMetric = SelfMetric {
    name: "nasflow.degraded",
    unit: "1",
    instrument: Instrument::Gauge,
    description: "1 while the agent is degraded in this way (not_attached, collector_failing, kubelet_failing, programs_missing, maps_near_full), else 0.",
    attributes: &["state"],
};
/// Self-telemetry: entries in use per bounded kernel map, by `map`.
pub const SELF_MAP_ENTRIES: SelfMetric = SelfMetric {
    name: "nasflow.probe.map.entries",
    unit: "{entry}",
    instrument: Instrument::Gauge,
    description: "Entries in use in the probe's bounded kernel maps, by map.",
    attributes: &["map"],
};
/// Self-telemetry: capacity per bounded kernel map, by `map`.
pub const SELF_MAP_CAPACITY: SelfMetric = SelfMetric {
    name: "nasflow.probe.map.capacity",
    unit: "{entry}",
    instrument: Instrument::Gauge,
    description: "Capacity of the probe's bounded kernel maps, by map.",
    attributes: &["map"],
};

/// Self-telemetry: BPF programs attached now.
pub const SELF_PROGRAMS: SelfMetric = SelfMetric {
    name: "nasflow.probe.programs",
    unit: "{program}",
    instrument: Instrument::Gauge,
    description: "BPF programs attached to the NFS client now.",
    attributes: &[],
};

/// Slow-operation spans by what became of them.
pub const SELF_SPANS: SelfMetric = SelfMetric {
    name: "nasflow.spans",
    unit: "{span}",
    instrument: Instrument::Counter,
    description: "Slow-operation spans by outcome: exported (the collector took them), failed (the exporter's retries within its timeout ran out) or dropped (the SDK's queue was full).",
    attributes: &["outcome"],
};

/// Every self-telemetry metric, in the order a request carries them.
pub const SELF_METRICS: [SelfMetric; 18] = [
    SELF_EXPORT_FAILURES,
    SELF_SERIES,
    SELF_OVERFLOWED,
    SELF_PROBE_DROPS,
    SELF_ENRICH_MISSES,
    SELF_KUBELET_REFRESHES,
    SELF_EXPORT_REQUESTS,
    SELF_EXPORT_BYTES,
    SELF_EXPORT_RETRIES,
    SELF_EXPORT_DROPS,
    SELF_EXPORT_REJECTED,
    SELF_EXPORT_PARTS,
    SELF_EXPORT_TOMBSTONES,
    SELF_DEGRADED,
    SELF_MAP_ENTRIES,
    SELF_MAP_CAPACITY,
    SELF_PROGRAMS,
    SELF_SPANS,
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const DOCS: &str = include_str!("../../../docs/metrics.md");
    const RULES: &str = include_str!("../../../dashboards/rules/nasflow-alerts.yaml");
    const SIGNALS: &str = include_str!("../../../docs/signals.md");
    const RUNBOOK: &str = include_str!("../../../docs/runbook.md");
    const DASHBOARDS: [(&str, &str); 4] = [
        ("dashboards/nasflow-nas.json", include_str!("../../../dashboards/nasflow-nas.json")),
        ("dashboards/nasflow-task.json", include_str!("../../../dashboards/nasflow-task.json")),
        ("dashboards/nasflow-pod.json", include_str!("../../../dashboards/nasflow-pod.json")),
        ("dashboards/nasflow-server.json", include_str!("../../../dashboards/nasflow-server.json")),
    ];

    /// Every Prometheus series name the schema gives (histograms with their three series).
    fn prometheus_series() -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        let all = METRICS
            .iter()
            .map(|m| (m.name, m.unit, m.instrument))
            .chain(SELF_METRICS.iter().map(|m| (m.name, m.unit, m.instrument)));
        for (name, unit, instrument) in all {
            let base = prometheus_name(name, unit, instrument);
            if instrument == Instrument::Histogram {
                for suffix in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{base}{suffix}"));
                }
            }
            out.insert(base);
        }
        out
    }

    /// Every label a series can carry: the metrics' own attributes, the workload's, the NAS's
    /// (enrich names them), the directory, and Prometheus' own (`le`, `job`, `instance`).
    fn prometheus_labels() -> std::collections::BTreeSet<String> {
        let workload_and_nas = [
            "k8s.namespace.name",
            "k8s.pod.name",
            "k8s.pod.uid",
            "k8s.container.name",
            "k8s.deployment.name",
            "k8s.replicaset.name",
            "k8s.statefulset.name",
            "k8s.daemonset.name",
            "k8s.job.name",
            "k8s.cronjob.name",
            "nasflow.task",
            "container.id",
            "process.linux.cgroup",
            "nasflow.cgroup.id",
            "server.address",
            "nfs.version",
            "nfs.mount.point",
            "k8s.volume.name",
        ];
        let own = METRICS
            .iter()
            .flat_map(|m| m.attributes.iter())
            .chain(SELF_METRICS.iter().flat_map(|m| m.attributes.iter()));
        let schema =
            [ATTR_DEVICE, ATTR_DIRECTORY, ATTR_EXPORT_PATH, ATTR_EXPORT_FSID, ATTR_CLIENT_ADDRESS, ATTR_OVERFLOW];
        own.copied()
            .chain(schema)
            .chain(workload_and_nas)
            .map(|a| a.replace('.', "_"))
            .chain(["le", "job", "instance"].map(str::to_owned))
            .collect()
    }

    /// The metric names and label names a text's `PromQL` uses: `nfs_*`/`nasflow_*` words, the
    /// labels of `by (...)`, `on (...)` and `{label op "value"}`, and `$labels.x`.
    fn promql_names(text: &str) -> (Vec<String>, Vec<String>) {
        let words = |s: &str| -> Vec<String> {
            s.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let metrics = words(text).into_iter().filter(|w| w.starts_with("nfs_") || w.starts_with("nasflow_")).collect();
        let mut labels = Vec::new();
        for opener in ["by (", "on (", "without (", "group_left (", "group_right ("] {
            for (at, _) in text.match_indices(opener) {
                // A keyword, not the end of a word ("operation (").
                if text[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    continue;
                }
                if let Some(list) = text[at + opener.len()..].split(')').next() {
                    labels.extend(words(list));
                }
            }
        }
        for part in text.split('{').skip(1) {
            let Some(inner) = part.split('}').next() else { continue };
            if inner.starts_with('{') || inner.starts_with(' ') && inner.contains('$') {
                continue; // a template
            }
            for m in inner.split(',') {
                let name = m.split(['=', '!']).next().unwrap_or("").trim();
                if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    labels.push(name.to_owned());
                }
            }
        }
        for part in text.split("$labels.").skip(1) {
            if let Some(w) = words(part).first() {
                labels.push(w.clone());
            }
        }
        (metrics, labels)
    }

    /// Every query of a dashboard: the panels' targets and the variables' `label_values`.
    fn dashboard_queries(json: &str) -> String {
        let board: serde_json::Value = serde_json::from_str(json).expect("dashboard JSON");
        let mut out = Vec::new();
        for panel in board["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().expect("targets") {
                out.push(target["expr"].as_str().expect("expr").to_owned());
            }
        }
        for variable in board["templating"]["list"].as_array().expect("variables") {
            if let Some(q) = variable["query"]["query"].as_str() {
                // label_values(selector, label): the label is one too.
                let q = q.strip_prefix("label_values(").and_then(|q| q.strip_suffix(')')).expect("label_values");
                let (selector, label) = q.rsplit_once(", ").expect("label_values(selector, label)");
                out.push(format!("{selector} by ({label})"));
            }
        }
        out.join("\n")
    }

    #[test]
    fn dashboards_use_only_names_the_schema_has() {
        let series = prometheus_series();
        // `cluster`: what a multi-cluster backend adds (external labels), not nasflow.
        let labels: std::collections::BTreeSet<String> =
            prometheus_labels().into_iter().chain(["cluster".to_owned()]).collect();
        for (file, json) in DASHBOARDS {
            let text = dashboard_queries(json);
            let (metrics, used) = promql_names(&text);
            assert!(metrics.len() >= 6, "{file}: too few metrics found");
            for m in metrics.into_iter().filter(|m| !labels.contains(m)) {
                assert!(series.contains(&m), "{file}: `{m}` is no series the schema gives; it gives {series:?}");
            }
            assert!(used.len() >= 6, "{file}: too few labels found");
            for l in used {
                assert!(labels.contains(&l), "{file}: label `{l}` is no attribute the schema or enrich gives");
            }
        }
    }

    #[test]
    fn prometheus_names_follow_the_otlp_translation() {
        assert_eq!(prometheus_name(IO.name, IO.unit, IO.instrument), "nfs_client_io_bytes_total");
        assert_eq!(
            prometheus_name(OPERATION_COUNT.name, OPERATION_COUNT.unit, OPERATION_COUNT.instrument),
            "nfs_client_operation_count_total"
        );
        assert_eq!(
            prometheus_name(OPERATION_DURATION.name, OPERATION_DURATION.unit, OPERATION_DURATION.instrument),
            "nfs_client_operation_duration_seconds"
        );
        assert_eq!(
            prometheus_name(RPC_INFLIGHT_MAX_AGE.name, RPC_INFLIGHT_MAX_AGE.unit, RPC_INFLIGHT_MAX_AGE.instrument),
            "nfs_client_rpc_inflight_max_age_seconds"
        );
        assert_eq!(
            prometheus_name(ANOMALY_SCORE.name, ANOMALY_SCORE.unit, ANOMALY_SCORE.instrument),
            "nfs_client_anomaly_score"
        );
        assert_eq!(
            prometheus_name(SELF_DEGRADED.name, SELF_DEGRADED.unit, SELF_DEGRADED.instrument),
            "nasflow_degraded_ratio"
        );
        assert_eq!(
            prometheus_name(SELF_EXPORT_BYTES.name, SELF_EXPORT_BYTES.unit, SELF_EXPORT_BYTES.instrument),
            "nasflow_export_bytes_total"
        );
    }

    #[test]
    fn rules_signals_and_runbook_use_only_names_the_schema_has() {
        let series = prometheus_series();
        let labels = prometheus_labels();
        for (file, text) in [
            ("dashboards/rules/nasflow-alerts.yaml", RULES),
            ("docs/signals.md", SIGNALS),
            ("docs/runbook.md", RUNBOOK),
        ] {
            let (metrics, used) = promql_names(text);
            assert!(!metrics.is_empty(), "{file}: no metric found");
            for m in metrics.into_iter().filter(|m| !labels.contains(m)) {
                assert!(series.contains(&m), "{file}: `{m}` is no series the schema gives; it gives {series:?}");
            }
            for l in used {
                assert!(labels.contains(&l), "{file}: label `{l}` is no attribute the schema or enrich gives");
            }
        }
    }

    /// The first cell (a backquoted name) and the rest of every table row of docs/metrics.md.
    fn documented() -> BTreeMap<String, Vec<String>> {
        DOCS.lines()
            .filter_map(|l| {
                let cells: Vec<String> = l.split('|').map(|c| c.trim().to_owned()).collect();
                let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?.to_owned();
                Some((name, cells[2..].to_vec()))
            })
            .filter(|(name, _)| name.starts_with("nfs.") || name.starts_with("nasflow."))
            .collect()
    }

    fn instrument_word(i: Instrument) -> &'static str {
        match i {
            Instrument::Counter => "Sum",
            Instrument::Histogram => "Histogram",
            Instrument::Gauge => "Gauge",
        }
    }

    #[test]
    fn docs_list_every_metric_as_the_schema_defines_it() {
        let docs = documented();
        for m in METRICS {
            let row = docs.get(m.name).unwrap_or_else(|| panic!("{} is not in docs/metrics.md", m.name));
            assert!(
                row[0].contains(instrument_word(m.instrument)),
                "{}: type {:?} vs docs `{}`",
                m.name,
                m.instrument,
                row[0]
            );
            assert_eq!(row[1], format!("`{}`", m.unit), "{}: unit", m.name);
            for a in m.attributes {
                assert!(row[2].contains(&format!("`{a}`")), "{}: attribute {a} undocumented", m.name);
            }
        }
        for m in SELF_METRICS {
            let row = docs.get(m.name).unwrap_or_else(|| panic!("{} is not in docs/metrics.md", m.name));
            assert!(row[0].starts_with(instrument_word(m.instrument)), "{}: type vs docs `{}`", m.name, row[0]);
            for a in m.attributes {
                assert!(row[0].contains(&format!("`{a}`")), "{}: attribute {a} undocumented", m.name);
            }
        }
        let known: Vec<&str> = METRICS.iter().map(|m| m.name).chain(SELF_METRICS.iter().map(|m| m.name)).collect();
        let extra: Vec<&String> = docs.keys().filter(|n| !known.contains(&n.as_str())).collect();
        assert!(extra.is_empty(), "docs/metrics.md documents metrics the schema does not have: {extra:?}");
    }

    #[test]
    fn names_and_sources_are_unique() {
        for (i, a) in METRICS.iter().enumerate() {
            for b in &METRICS[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.source, b.source, "{} and {} read the same field", a.name, b.name);
            }
        }
    }
}
