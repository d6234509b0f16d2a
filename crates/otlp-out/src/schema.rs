//! The metric schema, in one place (documented in docs/metrics.md). Names extend the
//! OpenTelemetry NFS semantic conventions.

/// Bytes on the wire: READ and WRITE payloads. Monotonic sum, `By`.
pub const IO: &str = "nfs.client.io";
/// Completed operations. Monotonic sum, `{operation}`.
pub const OPERATION_COUNT: &str = "nfs.client.operation.count";
/// Operation latency, start to completion. Histogram, `s`.
pub const OPERATION_DURATION: &str = "nfs.client.operation.duration";

/// Bytes applications read and wrote through NFS files, page-cache hits included. Monotonic
/// sum, `By`. Set against [`IO`] per pod it shows cache effectiveness.
pub const APP_IO: &str = "nfs.client.app.io";
/// RPC round-trip time: request sent to reply received (network and server), beside
/// [`OPERATION_DURATION`] which adds queueing and client work. Histogram, `s`.
pub const RPC_RTT: &str = "nfs.client.rpc.rtt";
/// RPCs sent again after a timeout. Monotonic sum, `{retransmission}`.
pub const RPC_RETRANSMIT_COUNT: &str = "nfs.client.rpc.retransmit.count";
/// Age of the oldest RPC in flight, per NAS device. Gauge, `s`; 0 when nothing is in flight.
pub const RPC_INFLIGHT_MAX_AGE: &str = "nfs.client.rpc.inflight.max_age";

/// `read` or `write`, on [`IO`].
pub const ATTR_IO_DIRECTION: &str = "nfs.io.direction";
/// Operation name as the kernel spells it (`READ`, `WRITE`, `COMMIT`, ...).
pub const ATTR_OPERATION: &str = "nfs.operation.name";
/// errno name of a failed operation (`EIO`, `EACCES`, `ESTALE`, ...), on [`OPERATION_COUNT`].
pub const ATTR_ERROR_TYPE: &str = "error.type";
/// `major:minor` of an NFS device no mount names (`0:0`: an RPC whose mount is not known),
/// in place of the NAS attributes, so such series stay apart.
pub const ATTR_DEVICE: &str = "nfs.device";
/// Marks the series that hold what exceeded the series budget.
pub const ATTR_OVERFLOW: &str = "otel.metric.overflow";

/// Scope of the NFS metrics.
pub const SCOPE: &str = "nasflow";
/// Scope of the agent's own metrics.
pub const SELF_SCOPE: &str = "nasflow.self";

/// Self-telemetry: exports that failed (after retries of one batch, each failure counts).
pub const SELF_EXPORT_FAILURES: &str = "nasflow.export.failures";
/// Self-telemetry: series in the last export (gauge).
pub const SELF_SERIES: &str = "nasflow.series";
/// Self-telemetry: series that were folded into overflow series (cumulative).
pub const SELF_OVERFLOWED: &str = "nasflow.series.overflowed";
/// Self-telemetry: what the kernel probe could not count, by `reason` (cumulative).
pub const SELF_PROBE_DROPS: &str = "nasflow.probe.drops";
/// Self-telemetry: cgroups, containers or devices that could not be named (cumulative).
pub const SELF_ENRICH_MISSES: &str = "nasflow.enrich.misses";
/// Self-telemetry: pod tables loaded from the kubelet (cumulative).
pub const SELF_KUBELET_REFRESHES: &str = "nasflow.kubelet.refreshes";

/// (name, description, unit) of each NFS metric.
pub const METRICS: [(&str, &str, &str); 6] = [
    (IO, "Bytes on the wire: READ payloads received and WRITE payloads sent.", "By"),
    (OPERATION_COUNT, "Completed NFS operations, failed ones with error.type.", "{operation}"),
    (OPERATION_DURATION, "NFS operation latency, from the RPC's start to its completion.", "s"),
    (APP_IO, "Bytes applications read and wrote through NFS files, page-cache hits included.", "By"),
    (RPC_RTT, "NFS RPC round-trip time: request sent to reply received (network and server).", "s"),
    (RPC_RETRANSMIT_COUNT, "NFS RPCs sent again after a timeout.", "{retransmission}"),
];
