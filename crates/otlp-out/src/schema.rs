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
    unit: "1",
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

/// Every self-telemetry metric, in the order a request carries them.
pub const SELF_METRICS: [SelfMetric; 17] = [
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
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const DOCS: &str = include_str!("../../../docs/metrics.md");

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
