//! `--output jsonl`: one JSON object per (cgroup, device, operation) and interval, plus one
//! health object per interval. The probe's test surface, and a debug/pipe mode.

use std::{collections::BTreeMap, io::Write};

use nasflow_detect::{events, AnomalyEvent};
use nasflow_enrich::{errno::errno_name, exports::ExportTable, names::Names};
use nasflow_probe::{dev_string, latency_slot_upper_bound_s, server::ServerSnapshot, Histogram, Snapshot};
use serde::{Serialize, Serializer};

/// One latency slot with samples.
#[derive(Debug, Serialize, PartialEq)]
pub struct Bucket {
    /// Kernel slot number.
    pub slot: usize,
    /// Upper bound in seconds: 2^(slot-30).
    pub le_s: f64,
    /// Samples in the slot.
    pub count: u64,
}

/// How a histogram is printed: its count, its sum in seconds and its non-empty slots.
#[derive(Debug, Serialize, PartialEq)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Sum of the samples, seconds.
    pub sum_s: f64,
    /// Non-empty slots.
    pub buckets: Vec<Bucket>,
}

impl From<&Histogram> for Latency {
    fn from(h: &Histogram) -> Self {
        let buckets = h
            .slots
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(slot, &count)| Bucket { slot, le_s: latency_slot_upper_bound_s(slot), count })
            .collect();
        Self { count: h.count(), sum_s: h.sum_ns as f64 / 1e9, buckets }
    }
}

fn histogram<S: Serializer>(h: &Histogram, s: S) -> Result<S::Ok, S::Error> {
    Latency::from(h).serialize(s)
}

#[allow(clippy::ref_option)] // the signature serde's `serialize_with` calls
fn optional_histogram<S: Serializer>(h: &Option<Histogram>, s: S) -> Result<S::Ok, S::Error> {
    h.as_ref().map(Latency::from).serialize(s)
}

/// One (cgroup, device, operation) line.
#[derive(Debug, Serialize, PartialEq)]
pub struct IoLine {
    /// Always `io`.
    pub kind: &'static str,
    /// Interval number since start.
    pub seq: u64,
    /// When the maps were read, Unix ms.
    pub ts_ms: u128,
    /// cgroup id.
    pub cgroup_id: u64,
    /// cgroup path, when known.
    pub cgroup: Option<String>,
    /// Workload attributes (pod, container, owner, task; or container id / cgroup path).
    pub workload: BTreeMap<&'static str, String>,
    /// NAS attributes (server, export, version, mount point, volume).
    pub nas: BTreeMap<&'static str, String>,
    /// The cgroup is gone: this is the series' last line.
    pub cgroup_gone: bool,
    /// `major:minor`.
    pub dev: String,
    /// Operation name (`READ`, `WRITE`, `COMMIT`, `APP_READ`, `APP_WRITE`, or an RPC procedure).
    pub op: String,
    /// The watched directory the operations' files are in (`--directories`), as configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// Completed operations, failed ones included.
    pub ops: u64,
    /// Bytes (READ received, WRITE sent).
    pub bytes: u64,
    /// Failed operations.
    pub errors: u64,
    /// Failed operations by errno name.
    pub errors_by_type: BTreeMap<String, u64>,
    /// Latency of all completed operations.
    #[serde(serialize_with = "histogram")]
    pub latency: Histogram,
    /// Retransmissions.
    pub retransmits: u64,
    /// Round-trip times (request sent to reply received), when timed.
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "optional_histogram")]
    pub rtt: Option<Histogram>,
}

/// Attribute names and values, as a line prints them.
type Attributes = BTreeMap<&'static str, String>;

/// How every line names who and where: the cgroup path, the workload's attributes and the
/// NAS's (empty when not known).
fn named(names: &Names, cgroup: u64, dev: u32) -> (Option<String>, Attributes, Attributes) {
    let w = names.workloads.get(&cgroup);
    (
        w.and_then(|w| w.cgroup_path.as_deref().map(str::to_owned)),
        w.map(|w| w.attributes().into_iter().collect()).unwrap_or_default(),
        names.nas_of(dev, cgroup).map(|n| n.attributes().into_iter().collect()).unwrap_or_default(),
    )
}

/// Groups rows of one (cgroup, dev, op) across their errno variants into lines.
pub fn lines(snap: &Snapshot, seq: u64, names: &Names) -> Vec<IoLine> {
    let ts_ms = snap.taken_at.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_millis());
    let mut out: Vec<IoLine> = Vec::new();
    // Rows come sorted by (cgroup, dev, op, dir, err), so a group is a run of rows.
    for group in snap.rows.chunk_by(|a, b| (a.cgroup, a.dev, a.op, a.dir) == (b.cgroup, b.dev, b.op, b.dir)) {
        let first = &group[0];
        let (cgroup, workload, nas) = named(names, first.cgroup, first.dev);
        let mut line = IoLine {
            kind: "io",
            seq,
            ts_ms,
            cgroup_id: first.cgroup,
            cgroup,
            workload,
            nas,
            cgroup_gone: names.workloads.get(&first.cgroup).is_some_and(|w| w.gone),
            dev: first.dev_string(),
            op: first.op.name().to_owned(),
            directory: names.directory(first.dir).map(str::to_owned),
            ops: 0,
            bytes: 0,
            errors: 0,
            errors_by_type: BTreeMap::new(),
            latency: Histogram::default(),
            retransmits: 0,
            rtt: None,
        };
        for row in group {
            line.ops += row.ops();
            line.bytes += row.bytes();
            if row.err != 0 {
                line.errors += row.ops();
                *line.errors_by_type.entry(errno_name(row.err)).or_default() += row.ops();
            }
            if let Some(c) = &row.completed {
                line.latency.add(&c.latency);
            }
            line.retransmits += row.retransmits;
            if let Some(h) = &row.rtt {
                line.rtt.get_or_insert_with(Histogram::default).add(h);
            }
        }
        out.push(line);
    }
    out
}

/// One operation that took at least `--slow-op-threshold`, named like the counters' lines.
#[derive(Debug, Serialize, PartialEq)]
pub struct SlowOpLine {
    /// Always `slow_op`.
    pub kind: &'static str,
    /// Interval number (the one whose snapshot read it).
    pub seq: u64,
    /// When it started, Unix ns.
    pub start_unix_ns: u128,
    /// How long it took, seconds.
    pub duration_s: f64,
    /// cgroup id.
    pub cgroup_id: u64,
    /// cgroup path, when known.
    pub cgroup: Option<String>,
    /// Workload attributes, as on `io` lines.
    pub workload: BTreeMap<&'static str, String>,
    /// NAS attributes, as on `io` lines.
    pub nas: BTreeMap<&'static str, String>,
    /// `major:minor`.
    pub dev: String,
    /// Operation name.
    pub op: String,
    /// errno name of a failure, `null` for success.
    pub error: Option<String>,
    /// The watched directory of its file, as configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// READ/WRITE payload bytes.
    pub bytes: u64,
    /// File id (inode number on the server), READ, WRITE and COMMIT.
    pub file_id: Option<u64>,
    /// Offset in the file, READ, WRITE and COMMIT.
    pub offset: Option<i64>,
    /// The RPC's transaction id, when the kernel gave it.
    pub xid: Option<u32>,
    /// The RPC's round trip, seconds, when it got a reply.
    pub rtt_s: Option<f64>,
}

/// The interval's slow operations, named by the same tables as the counters.
#[must_use]
pub fn slow_op_lines(snap: &Snapshot, seq: u64, names: &Names) -> Vec<SlowOpLine> {
    snap.slow_ops
        .iter()
        .map(|o| {
            let (cgroup, workload, nas) = named(names, o.cgroup, o.dev);
            SlowOpLine {
                kind: "slow_op",
                seq,
                start_unix_ns: o.start.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
                duration_s: o.duration.as_secs_f64(),
                cgroup_id: o.cgroup,
                cgroup,
                workload,
                nas,
                dev: dev_string(o.dev),
                op: o.op.name().to_owned(),
                error: (o.err != 0).then(|| errno_name(o.err)),
                directory: names.directory(o.dir).map(str::to_owned),
                bytes: o.bytes,
                file_id: o.file.map(|f| f.0),
                offset: o.file.map(|f| f.1),
                xid: o.rpc.map(|r| r.xid),
                rtt_s: o.rpc.and_then(|r| r.rtt).map(|d| d.as_secs_f64()),
            }
        })
        .collect()
}

/// What the NFS server served for one (export, client, version, operation, status).
#[derive(Debug, Serialize, PartialEq)]
pub struct ServerLine {
    /// Always `server`.
    pub kind: &'static str,
    /// Interval number.
    pub seq: u64,
    /// The export's path; `null` for operations that used no file handle, or an fsid the
    /// kernel's export caches do not (yet) name.
    pub export: Option<String>,
    /// `type:hex` of the file handles' fsid (`null` without a handle).
    pub fsid: Option<String>,
    /// The client's address.
    pub client: String,
    /// NFS version.
    pub vers: u8,
    /// NFSv2/v3 procedure or NFSv4 operation.
    pub op: String,
    /// NFS status name of failures, `null` for successes.
    pub status: Option<String>,
    /// Operations.
    pub ops: u64,
    /// Payload bytes (READ sent, WRITE received).
    pub bytes: u64,
    /// `read`/`write` for operations that move file data.
    pub direction: Option<&'static str>,
    /// Service time.
    #[serde(serialize_with = "histogram")]
    pub latency: Histogram,
}

/// The server rows, named by the export table.
#[must_use]
pub fn server_lines(snap: &ServerSnapshot, exports: &ExportTable, seq: u64) -> Vec<ServerLine> {
    snap.rows
        .iter()
        .map(|r| ServerLine {
            kind: "server",
            seq,
            export: r.fsid.as_ref().and_then(|(t, h)| exports.path(*t, h)).map(str::to_owned),
            fsid: r.fsid.as_ref().map(|(t, h)| format!("{t}:{h}")),
            client: r.client.clone(),
            vers: r.vers,
            op: r.op.clone(),
            status: r.status.clone(),
            ops: r.ops,
            bytes: r.bytes,
            direction: r.direction(),
            latency: r.latency.clone(),
        })
        .collect()
}

/// The server probe's state in the health line.
#[derive(Debug, Serialize)]
pub struct ServerHealthLine<'a> {
    /// Attached to nfsd.
    pub attached: bool,
    /// Server series in use and capacity.
    pub series: [u64; 2],
    /// Cumulative server health counters.
    pub counters: BTreeMap<&'a str, u64>,
}

/// The per-interval health line.
#[derive(Debug, Serialize)]
pub struct HealthLine<'a> {
    /// Always `health`.
    pub kind: &'static str,
    /// Interval number.
    pub seq: u64,
    /// Programs attached.
    pub attached: bool,
    /// Buffered-write attribution available.
    pub write_attribution: bool,
    /// Whether every NFS RPC is traced through sunrpc (metadata operations, rtt, retransmits).
    pub rpc_tracing: bool,
    /// Kernel series in use.
    pub series_used: u64,
    /// Kernel series capacity.
    pub series_capacity: u32,
    /// Cumulative probe health counters.
    pub counters: BTreeMap<&'a str, u64>,
    /// RPCs in flight per device.
    pub inflight: Vec<InflightLine>,
    /// Fill of the bounded kernel maps: entries in use and capacity.
    pub maps: BTreeMap<&'a str, [u64; 2]>,
    /// The NFS server probe, when tracing the server is not off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerHealthLine<'a>>,
}

/// RPCs in flight on one device.
#[derive(Debug, Serialize)]
pub struct InflightLine {
    /// `major:minor`.
    pub dev: String,
    /// RPCs started and not completed.
    pub count: u64,
    /// Age of the oldest, seconds.
    pub oldest_s: f64,
}

/// Writes one interval: the io lines, the server lines, then the health line.
pub fn write_interval(
    w: &mut impl Write,
    snap: &Snapshot,
    seq: u64,
    io: &[IoLine],
    server: Option<(&ServerSnapshot, &[ServerLine])>,
    anomalies: &[AnomalyLine],
    slow: &[SlowOpLine],
) -> std::io::Result<()> {
    write_lines(w, io)?;
    write_lines(w, slow)?;
    write_lines(w, anomalies)?;
    write_lines(w, server.map(|(_, l)| l).unwrap_or_default())?;
    let h = &snap.health;
    let health = HealthLine {
        kind: "health",
        seq,
        attached: h.attached,
        write_attribution: h.write_attribution,
        rpc_tracing: h.rpc_tracing,
        series_used: h.series_used,
        series_capacity: h.series_capacity,
        counters: h.counters.iter().copied().collect(),
        inflight: snap
            .inflight
            .iter()
            .map(|i| InflightLine { dev: dev_string(i.dev), count: i.count, oldest_s: i.oldest.as_secs_f64() })
            .collect(),
        maps: h.maps.iter().map(|(name, used, cap)| (*name, [*used, *cap])).collect(),
        server: server.map(|(s, _)| ServerHealthLine {
            attached: s.attached,
            series: [s.series.0, s.series.1],
            counters: s.counters.iter().copied().collect(),
        }),
    };
    write_lines(w, &[health])?;
    w.flush()
}

/// Each line as JSON, one per line.
pub fn write_lines<T: Serialize>(w: &mut impl Write, lines: &[T]) -> std::io::Result<()> {
    for line in lines {
        serde_json::to_writer(&mut *w, line)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// One anomaly event: the attributes and body of the `nfs.anomaly` log record.
#[derive(Debug, Serialize, PartialEq)]
pub struct AnomalyLine {
    /// Always `anomaly`.
    pub kind: &'static str,
    /// Interval number since start.
    pub seq: u64,
    /// The event's attributes, as the log record carries them.
    pub attributes: BTreeMap<&'static str, serde_json::Value>,
    /// The event's body.
    pub message: String,
}

/// The lines of this interval's anomaly events.
#[must_use]
pub fn anomaly_lines(events: &[AnomalyEvent], seq: u64) -> Vec<AnomalyLine> {
    events
        .iter()
        .map(|e| AnomalyLine {
            kind: "anomaly",
            seq,
            attributes: events::attributes(e)
                .into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        events::Value::Str(s) => serde_json::Value::from(s),
                        events::Value::F64(f) => serde_json::Value::from(f),
                        events::Value::List(l) => serde_json::Value::from(l),
                    };
                    (k, v)
                })
                .collect(),
            message: events::message(e),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use nasflow_enrich::names::Workload;
    use nasflow_probe::{IoRow, Operation};

    use super::*;

    fn row(cgroup: u64, op: Operation, err: u16, ops: u64, bytes: u64, slot: usize) -> IoRow {
        let mut latency = Histogram::default();
        latency.slots[slot] = ops;
        latency.sum_ns = ops * 1_000_000;
        IoRow::new(cgroup, (1 << 20) | 0x35, op, err).with_completed(ops, bytes, latency)
    }

    #[test]
    fn groups_errno_rows_and_merges_histograms() {
        let snap = Snapshot {
            taken_at: None,
            rows: vec![
                row(7, Operation::Read, 0, 8, 8 << 20, 20),
                row(7, Operation::Read, 5, 2, 0, 21),
                row(7, Operation::Write, 0, 1, 4096, 20),
                row(9, Operation::Read, 0, 1, 100, 20),
            ],
            ..Snapshot::default()
        };
        let mut names = Names::default();
        let a = Workload { cgroup_path: Some(Arc::from("/a")), ..Workload::default() };
        let gone = Workload { cgroup_path: Some(Arc::from("/b")), gone: true, ..Workload::default() };
        names.workloads.insert(7, Arc::new(a));
        names.workloads.insert(9, Arc::new(gone));
        let out = lines(&snap, 3, &names);
        assert_eq!(out.len(), 3);
        let read = &out[0];
        assert_eq!((read.op.as_str(), read.ops, read.bytes, read.errors), ("READ", 10, 8 << 20, 2));
        assert_eq!(read.errors_by_type.get("EIO"), Some(&2));
        assert_eq!(read.dev, "1:53");
        let latency = Latency::from(&read.latency);
        assert_eq!(latency.count, 10);
        assert_eq!(
            latency.buckets,
            vec![
                Bucket { slot: 20, le_s: 2f64.powi(-10), count: 8 },
                Bucket { slot: 21, le_s: 2f64.powi(-9), count: 2 }
            ]
        );
        assert!((latency.sum_s - 0.010).abs() < 1e-12);
        assert_eq!((out[1].op.as_str(), out[1].bytes, out[1].errors), ("WRITE", 4096, 0));
        assert_eq!((out[2].cgroup.as_deref(), out[2].cgroup_gone), (Some("/b"), true));
        assert_eq!(read.workload.get("process.linux.cgroup").map(String::as_str), Some("/a"));
        assert!(read.nas.is_empty());
    }

    #[test]
    fn a_slow_operation_is_one_line_named_like_the_counters() {
        let start = std::time::UNIX_EPOCH + std::time::Duration::from_nanos(1_800_000_000_123_456_789);
        let op = |op, err, file: Option<(u64, i64)>| nasflow_probe::SlowOp {
            cgroup: 7,
            dev: (1 << 20) | 0x35,
            op,
            err,
            dir: 0,
            start,
            duration: std::time::Duration::from_millis(1500),
            bytes: if file.is_some() { 65_536 } else { 0 },
            file,
            rpc: file.map(|_| nasflow_probe::RpcFacts { xid: 0xbeef, rtt: Some(std::time::Duration::from_millis(3)) }),
        };
        let snap = Snapshot {
            slow_ops: vec![
                op(Operation::Write, 0, Some((77, 4096))),
                op(Operation::Rpc(nasflow_probe::ProcName::new("LOOKUP")), 2, None),
            ],
            ..Snapshot::default()
        };
        let mut names = Names::default();
        names.workloads.insert(7, Arc::new(Workload { cgroup_path: Some(Arc::from("/a")), ..Workload::default() }));
        let out = slow_op_lines(&snap, 4, &names);
        let json: Vec<serde_json::Value> = out.iter().map(|l| serde_json::to_value(l).expect("json")).collect();
        assert_eq!(json[0]["kind"], "slow_op");
        assert_eq!(json[0]["seq"], 4);
        assert_eq!(json[0]["start_unix_ns"], serde_json::json!(1_800_000_000_123_456_789_u64));
        assert_eq!(json[0]["duration_s"], 1.5);
        assert_eq!((json[0]["op"].as_str(), json[0]["error"].is_null()), (Some("WRITE"), true));
        assert_eq!(
            (json[0]["file_id"].as_u64(), json[0]["offset"].as_i64(), json[0]["bytes"].as_u64()),
            (Some(77), Some(4096), Some(65_536))
        );
        assert_eq!((json[0]["cgroup"].as_str(), json[0]["dev"].as_str()), (Some("/a"), Some("1:53")));
        assert_eq!(json[0]["workload"]["process.linux.cgroup"], "/a");
        assert_eq!((json[1]["op"].as_str(), json[1]["error"].as_str()), (Some("LOOKUP"), Some("ENOENT")));
        assert!(json[1]["file_id"].is_null() && json[1].get("directory").is_none());
        assert_eq!((json[0]["xid"].as_u64(), json[0]["rtt_s"].as_f64()), (Some(0xbeef), Some(0.003)));
        assert!(json[1]["xid"].is_null() && json[1]["rtt_s"].is_null());
    }
}
