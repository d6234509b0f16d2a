//! Snapshots and names to intervals: for each metric of the schema, the values its source
//! gives per (cgroup, device, operation), through the series registry, with their attributes
//! encoded once. Delivery frames them into requests (`parts.rs`).

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use nasflow_enrich::{exports::ExportTable, names::Names};
use nasflow_probe::{
    server::{status_name, ServerSnapshot},
    Histogram, Inflight, IoRow, Operation, Snapshot,
};
use opentelemetry_proto::tonic::{
    common::v1::InstrumentationScope,
    metrics::v1::{exemplar, Exemplar},
    resource::v1::Resource,
};

use crate::{
    attrs::{kv, AttrCache, Own},
    interval::SeriesPoint,
    parts::Framing,
    points::{self, Value},
    schema::{self, Source, METRICS},
    series::{Origin, Registry, SeriesKey},
    spans::SpanLink,
    telemetry::{self, SeriesStats},
    wire,
};
pub use crate::{interval::Interval, points::HistogramKind, series::Temporality, telemetry::SelfStats};

/// One NAS export's anomaly score for one signal (plain data from the detector).
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyScore {
    /// `server.address`.
    pub server: String,
    /// `nfs.export.path`.
    pub export: String,
    /// `nfs.anomaly.signal`.
    pub signal: &'static str,
    /// `-log10 p`.
    pub score: f64,
}

/// Encoding settings.
#[derive(Debug, Clone)]
pub struct EncodeOptions {
    /// Histogram encoding.
    pub histogram: HistogramKind,
    /// Temporality.
    pub temporality: Temporality,
    /// Series one node sends at most; what exceeds folds into overflow series.
    pub max_series: usize,
    /// Resource attributes (service.name, host.name, k8s.node.name, `OTEL_RESOURCE_ATTRIBUTES`, ...).
    pub resource: Vec<(String, String)>,
    /// Instrumentation scope version.
    pub scope_version: String,
    /// Largest request, encoded and before compression: an interval is split into parts
    /// below it (the OpenTelemetry Collector refuses more than 4 MiB by default).
    pub max_request_bytes: usize,
}

/// Default of [`EncodeOptions::max_request_bytes`]: 3 MiB, under the Collector's 4 MiB.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 3 << 20;

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// What `source` gives for the rows of one (cgroup, device, operation): one value per
/// outcome (errno) for per-outcome sources, else at most one (errno 0). Empty when the source
/// has nothing for this operation.
fn source_values(source: Source, op: Operation, group: &[IoRow]) -> Vec<(u16, Value)> {
    let completed = || group.iter().filter_map(|r| r.completed.as_ref());
    let rpc = op.is_rpc();
    match source {
        Source::CompletedOps if rpc => {
            group.iter().filter_map(|r| r.completed.as_ref().map(|c| (r.err, Value::Sum(c.ops)))).collect()
        }
        Source::WireBytes if matches!(op, Operation::Read | Operation::Write) => {
            vec![(0, Value::Sum(completed().map(|c| c.bytes).sum()))]
        }
        Source::AppBytes if !rpc => vec![(0, Value::Sum(completed().map(|c| c.bytes).sum()))],
        Source::Latency if rpc && completed().next().is_some() => {
            let mut h = Histogram::default();
            completed().for_each(|c| h.add(&c.latency));
            // No sample yet (latency switched off, or only completions seen without a start).
            if h.count() == 0 {
                return Vec::new();
            }
            vec![(0, Value::Hist(Box::new(h)))]
        }
        Source::Rtt if rpc && group.iter().any(|r| r.rtt.is_some()) => {
            let mut h = Histogram::default();
            group.iter().filter_map(|r| r.rtt.as_ref()).for_each(|r| h.add(r));
            vec![(0, Value::Hist(Box::new(h)))]
        }
        Source::Retransmits if rpc => {
            let n: u64 = group.iter().map(|r| r.retransmits).sum();
            if n > 0 {
                vec![(0, Value::Sum(n))]
            } else {
                vec![]
            }
        }
        _ => vec![],
    }
}

/// What the NFS server served, with the table that names its exports: the server series of
/// an interval ([`Encoder::interval_with_server`]).
#[derive(Debug, Clone, Copy)]
pub struct Served<'a> {
    /// The server probe's cumulative rows.
    pub snap: &'a ServerSnapshot,
    /// fsid to export path.
    pub exports: &'a ExportTable,
}

/// What one server series stands for: the export (its path, or its fsid when no export
/// names it; neither for operations without a file handle), the client, version and
/// operation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ServerSeries {
    export: Option<String>,
    fsid: Option<String>,
    client: String,
    vers: u8,
    op: String,
    direction: Option<&'static str>,
}

/// Server series by id ([`Origin::Server`]), and their encoded attributes.
#[derive(Debug, Default)]
struct ServerTable {
    ids: HashMap<ServerSeries, u32>,
    series: HashMap<u32, ServerSeries>,
    next: u32,
    /// The server probe load the ids count from: a reload restarts its counters, so its
    /// series start anew under new ids.
    generation: u64,
    attrs: HashMap<(u32, u16, usize, u32), Arc<[u8]>>,
}

impl ServerTable {
    fn intern(&mut self, s: ServerSeries) -> u32 {
        if let Some(id) = self.ids.get(&s) {
            return *id;
        }
        self.next += 1;
        self.ids.insert(s.clone(), self.next);
        self.series.insert(self.next, s);
        self.next
    }

    /// Every attribute of one server series' point: export, client, and the metric's own.
    fn attributes(&mut self, id: u32, status: u16, metric: usize, tag: u32) -> Arc<[u8]> {
        let Some(s) = self.series.get(&id) else { return Arc::from(Vec::new()) };
        let bytes = self.attrs.entry((id, status, metric, tag)).or_insert_with(|| {
            let mut kvs = Vec::new();
            if let Some(path) = &s.export {
                kvs.push(kv(schema::ATTR_EXPORT_PATH, path.clone()));
            } else if let Some(fsid) = &s.fsid {
                kvs.push(kv(schema::ATTR_EXPORT_FSID, fsid.clone()));
            }
            kvs.push(kv(schema::ATTR_CLIENT_ADDRESS, s.client.clone()));
            for a in METRICS[metric].attributes {
                match *a {
                    schema::ATTR_OPERATION => kvs.push(kv(a, s.op.clone())),
                    schema::ATTR_RPC_VERSION => kvs.push(int_kv(a, i64::from(s.vers))),
                    schema::ATTR_ERROR_TYPE => {
                        if let Some(name) = status_name(s.vers, status) {
                            kvs.push(kv(a, name));
                        }
                    }
                    schema::ATTR_IO_DIRECTION => {
                        if let Some(d) = s.direction {
                            kvs.push(kv(a, d));
                        }
                    }
                    _ => {}
                }
            }
            let mut buf = Vec::new();
            for a in &kvs {
                prost::encoding::message::encode(tag, a, &mut buf);
            }
            buf.into()
        });
        Arc::clone(bytes)
    }

    /// Current values of every server series, the series of one (export, client, version,
    /// operation) next to each other.
    fn values(&mut self, served: &Served<'_>) -> Vec<(SeriesKey, Value)> {
        if served.snap.load_generation != self.generation {
            self.generation = served.snap.load_generation;
            self.ids.clear();
        }
        let mut out = Vec::new();
        let rows = &served.snap.rows;
        for group in rows.chunk_by(|a, b| (&a.fsid, &a.client, a.vers, &a.op) == (&b.fsid, &b.client, b.vers, &b.op)) {
            let first = &group[0];
            let export = first.fsid.as_ref().and_then(|(t, h)| served.exports.path(*t, h)).map(str::to_owned);
            let fsid = if export.is_none() { first.fsid.as_ref().map(|(t, h)| format!("{t}:{h}")) } else { None };
            let id = self.intern(ServerSeries {
                export,
                fsid,
                client: first.client.clone(),
                vers: first.vers,
                op: first.op.clone(),
                direction: first.direction(),
            });
            for (metric, m) in METRICS.iter().enumerate() {
                let origin = |status| Some(Origin::Server { id, status });
                match m.source {
                    Source::ServerOps => {
                        for r in group {
                            out.push((SeriesKey { metric, origin: origin(r.status_code) }, Value::Sum(r.ops)));
                        }
                    }
                    Source::ServerBytes if first.direction().is_some() => {
                        let bytes = group.iter().map(|r| r.bytes).sum();
                        out.push((SeriesKey { metric, origin: origin(0) }, Value::Sum(bytes)));
                    }
                    Source::ServerLatency => {
                        let mut h = Histogram::default();
                        for r in group {
                            h.add(&r.latency);
                        }
                        if h.count() > 0 {
                            out.push((SeriesKey { metric, origin: origin(0) }, Value::Hist(Box::new(h))));
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }

    /// Forgets what the last interval did not use.
    fn retain(&mut self, used: &HashSet<u32>) {
        self.series.retain(|id, _| used.contains(id));
        self.ids.retain(|_, id| used.contains(id));
        self.attrs.retain(|(id, ..), _| used.contains(id));
    }
}

/// An integer attribute.
fn int_kv(key: &str, value: i64) -> opentelemetry_proto::tonic::common::v1::KeyValue {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::IntValue(value)) }),
        key_strindex: 0,
    }
}

/// Exemplars a latency point carries at most: the interval's slowest operations in it.
pub const MAX_EXEMPLARS: usize = 3;

/// The exemplars of each latency series, keyed by (cgroup, device, operation, directory):
/// its slowest operations' spans, slowest first.
fn exemplars_by_series(mut links: Vec<SpanLink>) -> HashMap<(u64, u32, Operation, u16), Vec<Exemplar>> {
    links.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    let mut out: HashMap<(u64, u32, Operation, u16), Vec<Exemplar>> = HashMap::new();
    for l in links {
        let slot = out.entry((l.cgroup, l.dev, l.op, l.dir)).or_default();
        if slot.len() < MAX_EXEMPLARS {
            slot.push(Exemplar {
                filtered_attributes: vec![],
                time_unix_nano: nanos(l.at),
                span_id: l.span_id.to_vec(),
                trace_id: l.trace_id.to_vec(),
                value: Some(exemplar::Value::AsDouble(l.seconds)),
            });
        }
    }
    out
}

/// Turns snapshots into intervals; one per tick.
pub struct Encoder {
    registry: Registry,
    max_series: usize,
    /// The probe load the series count from.
    load_generation: u64,
    framing: Framing,
    seq: u64,
    started: u64,
    attrs: AttrCache,
    server: ServerTable,
    /// The scores for the next interval.
    anomaly_scores: Vec<AnomalyScore>,
    /// The slow operations' spans for the next interval's exemplars.
    span_links: Vec<SpanLink>,
}

impl Encoder {
    /// A new encoder; series start when first seen.
    #[must_use]
    pub fn new(opts: EncodeOptions) -> Self {
        let version = opts.scope_version;
        let scope = |name: &str| InstrumentationScope {
            name: name.to_owned(),
            version: version.clone(),
            attributes: vec![],
            dropped_attributes_count: 0,
        };
        let framing = Framing {
            resource: Resource {
                attributes: opts.resource.into_iter().map(|(k, v)| kv(&k, v)).collect(),
                dropped_attributes_count: 0,
                entity_refs: vec![],
            },
            scope: scope(schema::SCOPE),
            self_scope: scope(schema::SELF_SCOPE),
            histogram: opts.histogram,
            temporality: opts.temporality,
            max_bytes: opts.max_request_bytes,
        };
        Self {
            registry: Registry::new(opts.max_series),
            max_series: opts.max_series,
            load_generation: 0,
            framing,
            seq: 0,
            started: nanos(SystemTime::now()),
            attrs: AttrCache::default(),
            server: ServerTable::default(),
            anomaly_scores: Vec::new(),
            span_links: Vec::new(),
        }
    }

    /// How delivery frames this encoder's intervals.
    pub(crate) fn framing(&self) -> Framing {
        self.framing.clone()
    }

    /// The requests delivery would send for `interval` to a collector that answered nothing
    /// yet (the interval's ended series included), each under the size bound. For tools,
    /// tests and benchmarks; the agent sends through [`crate::delivery::Delivery`].
    #[must_use]
    pub fn requests(&self, interval: &Interval) -> Vec<std::sync::Arc<Vec<u8>>> {
        let ended: Vec<&SeriesPoint> = interval.points.iter().filter(|p| p.ended).collect();
        let answered = crate::parts::Answered::new();
        self.framing.parts(interval, ended.into_iter(), &answered).into_iter().map(|p| p.body).collect()
    }

    /// Series admitted (within the budget) now.
    #[must_use]
    pub fn series_count(&self) -> usize {
        self.registry.admitted()
    }

    /// Series folded into overflow series so far.
    #[must_use]
    pub fn overflowed(&self) -> u64 {
        self.registry.overflowed()
    }

    /// Current values of every row-fed series of the snapshot, the series of one (cgroup,
    /// device, operation) next to each other so the series budget admits or folds them
    /// together.
    fn values(snap: &Snapshot) -> Vec<(SeriesKey, Value)> {
        let mut out: Vec<(SeriesKey, Value)> = Vec::with_capacity(snap.rows.len() * 3);
        // Rows are sorted by (cgroup, dev, op, dir, err): a group is a run.
        for group in snap.rows.chunk_by(|a, b| (a.cgroup, a.dev, a.op, a.dir) == (b.cgroup, b.dev, b.op, b.dir)) {
            let (cgroup, dev, op, dir) = (group[0].cgroup, group[0].dev, group[0].op, group[0].dir);
            for (metric, m) in METRICS.iter().enumerate() {
                for (err, value) in source_values(m.source, op, group) {
                    let origin = Origin::Client { cgroup, dev, op, err, dir };
                    out.push((SeriesKey { metric, origin: Some(origin) }, value));
                }
            }
        }
        out
    }

    /// One interval: every series' cumulative value with its attributes, the gauges and the
    /// self-telemetry, at the time the snapshot was taken. Series of cgroups `names` marks gone
    /// end with the values in the snapshot (give it their final rows).
    pub fn interval(&mut self, snap: &Snapshot, names: &Names, stats: &SelfStats) -> Interval {
        self.interval_with_server(snap, names, stats, None)
    }

    /// [`Encoder::interval`] with what the NFS server served (`nfs.server.*`).
    pub fn interval_with_server(
        &mut self,
        snap: &Snapshot,
        names: &Names,
        stats: &SelfStats,
        served: Option<Served<'_>>,
    ) -> Interval {
        self.seq += 1;
        let time = snap.taken_at.map_or_else(|| nanos(SystemTime::now()), nanos);
        if snap.health.load_generation != self.load_generation {
            // The probe was loaded anew (after a module reload changed the tracepoints): its
            // counters start at zero, so every series starts anew, with a new start time.
            if self.load_generation != 0 {
                tracing::info!("the probe was reloaded: every series starts anew");
            }
            self.load_generation = snap.health.load_generation;
            self.registry = Registry::new(self.max_series);
        }
        let gone = |cg: u64| names.workloads.get(&cg).is_some_and(|w| w.gone);
        let mut values = Self::values(snap);
        if let Some(s) = &served {
            values.extend(self.server.values(s));
        }
        let current = self.registry.current(time, values, gone);
        let mut exemplars = exemplars_by_series(std::mem::take(&mut self.span_links));
        let mut seen = HashSet::new();
        let mut servers = HashSet::new();
        let mut points = Vec::with_capacity(current.len());
        for c in current {
            let tag = self.framing.attr_tag(c.key.metric);
            let attrs = match c.key.origin {
                Some(Origin::Client { cgroup, dev, op, err, dir }) => {
                    seen.insert((cgroup, dev));
                    let mut a = vec![self.attrs.base(cgroup, dev, names, tag)];
                    if let Some(d) = names.directory(dir) {
                        a.push(self.attrs.directory(tag, dir, d));
                    }
                    a.extend(Self::own_attributes(c.key.metric, op, err).map(|own| self.attrs.own(tag, own)));
                    a
                }
                Some(Origin::Server { id, status }) => {
                    servers.insert(id);
                    vec![self.server.attributes(id, status, c.key.metric, tag)]
                }
                None => vec![self.attrs.own(tag, Own::Overflow)],
            };
            let exemplars = match c.key.origin {
                Some(Origin::Client { cgroup, dev, op, dir, .. })
                    if METRICS[c.key.metric].source == Source::Latency =>
                {
                    exemplars.remove(&(cgroup, dev, op, dir)).unwrap_or_default()
                }
                _ => Vec::new(),
            };
            points.push(SeriesPoint { key: c.key, value: c.value, start: c.start, attrs, ended: c.ended, exemplars });
        }
        self.attrs.retain(&seen);
        self.server.retain(&servers);
        let scores = std::mem::take(&mut self.anomaly_scores);
        let gauges = METRICS
            .iter()
            .enumerate()
            .filter_map(|(i, m)| match m.source {
                Source::InflightMaxAge => Some((i, Self::inflight_points(&snap.inflight, names, time))),
                Source::AnomalyScore if !scores.is_empty() => Some((i, Self::score_points(&scores, time))),
                _ => None,
            })
            .collect();
        let series = SeriesStats { admitted: self.registry.admitted(), overflowed: self.registry.overflowed() };
        let self_metrics = telemetry::metrics(stats, series, self.started, time);
        Interval { seq: self.seq, time, points, gauges, self_metrics }
    }

    /// The slow operations' spans the next interval's `nfs.client.operation.duration` points
    /// link to as exemplars (the slowest [`MAX_EXEMPLARS`] per series).
    pub fn set_span_links(&mut self, links: Vec<SpanLink>) {
        self.span_links = links;
    }

    /// The anomaly scores the next interval carries (`nfs.client.anomaly.score`).
    pub fn set_anomaly_scores(&mut self, scores: Vec<AnomalyScore>) {
        self.anomaly_scores = scores;
    }

    /// One gauge point per NAS export and signal judged.
    fn score_points(scores: &[AnomalyScore], now: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut scratch = Vec::new();
        for s in scores {
            scratch.clear();
            let attributes = vec![
                kv("server.address", s.server.clone()),
                kv(schema::ATTR_EXPORT_PATH, s.export.clone()),
                kv(schema::ATTR_ANOMALY_SIGNAL, s.signal.to_owned()),
            ];
            wire::encode(&points::gauge(attributes, now, s.score), &mut scratch);
            wire::put_message(&mut buf, wire::DATA_POINTS, &scratch);
        }
        buf
    }

    /// One gauge point per mounted NFS device: the age of its oldest RPC in flight, 0 if none.
    fn inflight_points(inflight: &[Inflight], names: &Names, now: u64) -> Vec<u8> {
        let mut devs: Vec<_> = names.devices.iter().collect();
        devs.sort_by_key(|(dev, _)| **dev);
        let mut buf = Vec::new();
        let mut scratch = Vec::new();
        for (dev, nas) in devs {
            let age = inflight.iter().find(|i| i.dev == *dev).map_or(0.0, |i| i.oldest.as_secs_f64());
            scratch.clear();
            let attributes = nas.attributes().into_iter().map(|(k, v)| kv(k, v)).collect();
            wire::encode(&points::gauge(attributes, now, age), &mut scratch);
            wire::put_message(&mut buf, wire::DATA_POINTS, &scratch);
        }
        buf
    }

    /// The attributes of a series' own, as its metric's descriptor lists them.
    fn own_attributes(metric: usize, op: Operation, err: u16) -> impl Iterator<Item = Own> {
        METRICS[metric].attributes.iter().filter_map(move |a| match *a {
            schema::ATTR_OPERATION => Some(Own::Op(op)),
            schema::ATTR_ERROR_TYPE => (err != 0).then_some(Own::Error(err)),
            schema::ATTR_IO_DIRECTION => Some(Own::Direction(op)),
            _ => None,
        })
    }
}

#[cfg(test)]
// Short names (e, r, p, h, b) read best in these tables of values; the bounds compared are
// powers of two, exact in f64.
#[allow(clippy::many_single_char_names, clippy::float_cmp)]
mod tests {
    use std::{collections::HashMap, sync::Arc};

    use nasflow_enrich::names::{Names, NasView, Workload};
    use nasflow_probe::{server::ServerRow, LATENCY_SLOTS};
    use nasflow_probe_bpf::latency_slot;
    use opentelemetry_proto::tonic::{
        collector::metrics::v1::ExportMetricsServiceRequest,
        common::v1::{any_value, KeyValue},
        metrics::v1::{metric::Data, number_data_point, AggregationTemporality, Metric},
    };

    use super::*;
    use crate::parts::{Answered, Part};

    fn row(cgroup: u64, op: Operation, err: u16, ops: u64, bytes: u64, samples_ns: &[u64]) -> IoRow {
        let mut latency = Histogram::default();
        for ns in samples_ns {
            latency.slots[latency_slot(*ns)] += 1;
            latency.sum_ns += ns;
        }
        IoRow::new(cgroup, 61, op, err).with_completed(ops, bytes, latency)
    }

    /// The requests of one interval as delivery builds them: ended series as tombstones,
    /// deltas against `answered`.
    fn parts(e: &mut Encoder, s: &Snapshot, n: &Names, answered: &Answered) -> (Interval, Vec<Part>) {
        let i = e.interval(s, n, &SelfStats::default());
        let tombstones: Vec<SeriesPoint> = i.points.iter().filter(|p| p.ended).cloned().collect();
        let parts = e.framing().parts(&i, tombstones.iter(), answered);
        (i, parts)
    }

    fn decode(p: &Part) -> ExportMetricsServiceRequest {
        crate::transport::decode(&p.body).expect("a valid ExportMetricsServiceRequest")
    }

    fn decoded(e: &mut Encoder, s: &Snapshot, n: &Names, _: &SelfStats) -> (u64, ExportMetricsServiceRequest) {
        let (i, parts) = parts(e, s, n, &Answered::new());
        assert_eq!(parts.len(), 1, "small requests are not split");
        (i.seq(), decode(&parts[0]))
    }

    /// Records a part as answered, as delivery does.
    fn answer(answered: &mut Answered, part: Part, time: u64) {
        for m in part.members {
            answered.insert(m.key, (m.cumulative, time));
        }
    }

    fn snap(rows: Vec<IoRow>) -> Snapshot {
        Snapshot { taken_at: Some(SystemTime::now()), rows, ..Snapshot::default() }
    }

    fn names(gone: &[u64]) -> Names {
        let mut n = Names::default();
        for cg in [7u64, 8, 9] {
            let w = Workload {
                cgroup_path: Some(Arc::from(format!("/cg{cg}").as_str())),
                gone: gone.contains(&cg),
                ..Workload::default()
            };
            n.workloads.insert(cg, Arc::new(w));
        }
        n
    }

    fn opts(histogram: HistogramKind, temporality: Temporality, max_series: usize) -> EncodeOptions {
        EncodeOptions {
            histogram,
            temporality,
            max_series,
            resource: vec![("service.name".into(), "nasflow".into())],
            scope_version: "test".into(),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }

    fn metric(r: &ExportMetricsServiceRequest, m: schema::Metric) -> &Metric {
        r.resource_metrics[0].scope_metrics[0].metrics.iter().find(|x| x.name == m.name).expect(m.name)
    }

    fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
        attrs.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref()).and_then(|v| v.value.as_ref())
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.to_owned())
    }

    fn ints(m: &Metric) -> Vec<i64> {
        match &m.data {
            Some(Data::Sum(sum)) => sum
                .data_points
                .iter()
                .map(|p| match p.value {
                    Some(number_data_point::Value::AsInt(v)) => v,
                    _ => -1,
                })
                .collect(),
            _ => vec![],
        }
    }

    #[test]
    fn exponential_buckets_are_the_kernel_slots() {
        // Just under 2^-10 s (top of slot 20), just above it and 1 ms (slot 21), 3 ms (slot 22).
        let top_ns: u32 = 976_562; // 2^-10 s = 976562.5 ns
        let rows = vec![row(
            7,
            Operation::Read,
            0,
            4,
            4096,
            &[1_000_000, u64::from(top_ns), u64::from(top_ns) + 2, 3_000_000],
        )];
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Cumulative, 100));
        let (_, r) = decoded(&mut e, &snap(rows), &names(&[]), &SelfStats::default());
        let Some(Data::ExponentialHistogram(h)) = &metric(&r, schema::OPERATION_DURATION).data else { panic!("exp") };
        let p = &h.data_points[0];
        assert_eq!(p.scale, 0);
        assert_eq!(p.count, 4);
        let b = p.positive.as_ref().expect("buckets");
        // Index i holds (2^i, 2^(i+1)] s: 976562 ns in (2^-11, 2^-10] (index -11).
        assert_eq!(b.offset, -11);
        assert_eq!(b.bucket_counts, vec![1, 2, 1]);
        for (i, c) in b.bucket_counts.iter().enumerate() {
            let idx = b.offset + i32::try_from(i).expect("small");
            let (lo, hi) = (2f64.powi(idx), 2f64.powi(idx + 1));
            let samples = [1e-3, f64::from(top_ns) / 1e9, f64::from(top_ns + 2) / 1e9, 3e-3];
            let inside = samples.iter().filter(|v| **v > lo && **v <= hi * (1.0 + 1e-9)).count() as u64;
            assert_eq!(*c, inside, "bucket {idx}");
        }
        assert!((p.sum.expect("sum") - (1e-3 + 2.0 * f64::from(top_ns) / 1e9 + 2e-9 + 3e-3)).abs() < 1e-12);
        assert_eq!(p.zero_count, 0);
    }

    fn served_row(fsid: Option<&str>, vers: u8, op: &str, status: u16, ops: u64, bytes: u64) -> ServerRow {
        let mut latency = Histogram::default();
        latency.slots[20] = ops;
        latency.sum_ns = ops * 1_000_000;
        ServerRow {
            fsid: fsid.map(|h| (1, h.to_owned())),
            client: "10.0.0.7".into(),
            vers,
            op: op.into(),
            status: nasflow_probe::server::status_name(vers, status),
            status_code: status,
            ops,
            bytes,
            latency,
        }
    }

    #[test]
    fn server_series_per_export_client_operation_and_status() {
        let rows = vec![
            served_row(None, 4, "SEQUENCE", 0, 9, 0),
            served_row(Some("00000001"), 3, "WRITE", 0, 3, 300),
            served_row(Some("00000001"), 3, "WRITE", 28, 1, 100),
            served_row(Some("0000000c"), 3, "READ", 0, 2, 50),
        ];
        let first_load = ServerSnapshot { attached: true, load_generation: 1, rows, ..ServerSnapshot::default() };
        let mut exports = ExportTable::default();
        exports.update("* 1 0x00000001 /srv/exa\n", "");
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Cumulative, 100));
        let served = Served { snap: &first_load, exports: &exports };
        let i = e.interval_with_server(&snap(vec![]), &names(&[]), &SelfStats::default(), Some(served));
        let parts = e.framing().parts(&i, std::iter::empty(), &Answered::new());
        let r = decode(&parts[0]);

        let Some(Data::Sum(io)) = &metric(&r, schema::SERVER_IO).data else { panic!("sum") };
        let io: Vec<_> = io
            .data_points
            .iter()
            .map(|p| {
                let a = &p.attributes;
                (
                    attr(a, schema::ATTR_EXPORT_PATH).cloned(),
                    attr(a, schema::ATTR_EXPORT_FSID).cloned(),
                    attr(a, schema::ATTR_IO_DIRECTION).cloned(),
                    p.value,
                )
            })
            .collect();
        let int = |v| Some(number_data_point::Value::AsInt(v));
        assert_eq!(
            io,
            vec![
                (Some(s("/srv/exa")), None, Some(s("write")), int(400)),
                (None, Some(s("1:0000000c")), Some(s("read")), int(50)),
            ],
            "bytes summed over statuses; an unnamed fsid keeps its own series"
        );

        let Some(Data::Sum(ops)) = &metric(&r, schema::SERVER_OPERATION_COUNT).data else { panic!("sum") };
        let ops: Vec<_> = ops
            .data_points
            .iter()
            .map(|p| {
                let a = &p.attributes;
                (
                    attr(a, schema::ATTR_OPERATION).cloned(),
                    attr(a, schema::ATTR_RPC_VERSION).cloned(),
                    attr(a, schema::ATTR_ERROR_TYPE).cloned(),
                    attr(a, schema::ATTR_EXPORT_PATH).is_some(),
                    attr(a, schema::ATTR_CLIENT_ADDRESS).cloned(),
                    p.value,
                )
            })
            .collect();
        let v = |n| Some(any_value::Value::IntValue(n));
        let client = Some(s("10.0.0.7"));
        assert_eq!(
            ops,
            vec![
                (Some(s("SEQUENCE")), v(4), None, false, client.clone(), int(9)),
                (Some(s("WRITE")), v(3), None, true, client.clone(), int(3)),
                (Some(s("WRITE")), v(3), Some(s("NFS3ERR_NOSPC")), true, client.clone(), int(1)),
                (Some(s("READ")), v(3), None, false, client, int(2)),
            ]
        );
        let Some(Data::ExponentialHistogram(h)) = &metric(&r, schema::SERVER_OPERATION_DURATION).data else {
            panic!("exp")
        };
        assert_eq!(h.data_points.iter().map(|p| p.count).collect::<Vec<_>>(), vec![9, 4, 2]);

        // A reload of the server probe restarts its counters: its series start anew.
        let starts = |r: &ExportMetricsServiceRequest| match &metric(r, schema::SERVER_IO).data {
            Some(Data::Sum(s)) => s.data_points.iter().map(|p| p.start_time_unix_nano).collect::<Vec<_>>(),
            _ => vec![],
        };
        let first = starts(&r);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let reloaded = ServerSnapshot { load_generation: 2, ..first_load.clone() };
        let again = Served { snap: &reloaded, exports: &exports };
        let i = e.interval_with_server(&snap(vec![]), &names(&[]), &SelfStats::default(), Some(again));
        let r = decode(&e.framing().parts(&i, std::iter::empty(), &Answered::new())[0]);
        assert!(starts(&r).iter().zip(&first).all(|(a, b)| a > b), "{:?} after {first:?}", starts(&r));
    }

    #[test]
    fn devices_without_a_mount_keep_series_of_their_own() {
        // An unlearned RPC client (dev 0) and a super block that lived only during a mount
        // (0:62): neither has NAS attributes, both must stay distinct series.
        let mut unknown = row(7, Operation::Rpc(nasflow_probe::ProcName::new("FSINFO")), 0, 7, 0, &[]);
        unknown.dev = 0;
        let mut transient = unknown.clone();
        transient.dev = 62;
        transient = transient.with_completed(2, 0, Histogram::default());
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Cumulative, 100));
        let (_, r) = decoded(&mut e, &snap(vec![unknown, transient]), &names(&[]), &SelfStats::default());
        let Some(Data::Sum(sum)) = &metric(&r, schema::OPERATION_COUNT).data else { panic!("sum") };
        let devices: Vec<_> =
            sum.data_points.iter().map(|p| attr(&p.attributes, schema::ATTR_DEVICE).cloned()).collect();
        assert_eq!(devices, vec![Some(s("0:0")), Some(s("0:62"))]);
        assert_eq!(ints(metric(&r, schema::OPERATION_COUNT)), vec![7, 2]);
    }

    #[test]
    fn histograms_without_samples_are_left_out_and_explicit_bounds() {
        // COMMITs counted without a latency sample (`--latency off`, or completions without a
        // start): their count is exported, a histogram of nothing is not.
        let rows = vec![row(7, Operation::Commit, 0, 3, 0, &[]), row(8, Operation::Read, 0, 1, 1, &[1_000_000])];
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Cumulative, 100));
        let (_, r) = decoded(&mut e, &snap(rows.clone()), &names(&[]), &SelfStats::default());
        assert_eq!(ints(metric(&r, schema::OPERATION_COUNT)), vec![3, 1]);
        let Some(Data::ExponentialHistogram(h)) = &metric(&r, schema::OPERATION_DURATION).data else { panic!("exp") };
        assert_eq!(h.data_points.iter().map(|p| p.count).collect::<Vec<_>>(), vec![1]);

        let mut e = Encoder::new(opts(HistogramKind::Explicit, Temporality::Cumulative, 100));
        let (_, r) = decoded(&mut e, &snap(rows), &names(&[]), &SelfStats::default());
        let Some(Data::Histogram(h)) = &metric(&r, schema::OPERATION_DURATION).data else { panic!("explicit") };
        assert_eq!(h.data_points.len(), 1);
        let p = &h.data_points[0];
        assert_eq!(p.explicit_bounds.len(), LATENCY_SLOTS);
        assert_eq!(p.bucket_counts.len(), LATENCY_SLOTS + 1);
        assert_eq!(p.explicit_bounds[20], 2f64.powi(-10));
        assert_eq!(p.bucket_counts[21], 1, "1 ms is in (2^-10, 2^-9] s");
        assert_eq!(p.bucket_counts.iter().sum::<u64>(), p.count);
    }

    #[test]
    fn counts_bytes_and_error_types() {
        let rows = vec![
            row(7, Operation::Read, 0, 10, 40960, &[]),
            row(7, Operation::Read, 5, 2, 0, &[]),
            row(7, Operation::Write, 0, 3, 12288, &[]),
        ];
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Cumulative, 100));
        let (_, r) = decoded(&mut e, &snap(rows), &names(&[]), &SelfStats::default());
        let count = metric(&r, schema::OPERATION_COUNT);
        assert_eq!(ints(count), vec![10, 2, 3]);
        let Some(Data::Sum(sum)) = &count.data else { panic!("sum") };
        assert!(sum.is_monotonic);
        assert_eq!(attr(&sum.data_points[1].attributes, schema::ATTR_ERROR_TYPE), Some(&s("EIO")));
        assert_eq!(attr(&sum.data_points[0].attributes, schema::ATTR_ERROR_TYPE), None);
        assert_eq!(attr(&sum.data_points[0].attributes, "process.linux.cgroup"), Some(&s("/cg7")));
        let io = metric(&r, schema::IO);
        assert_eq!(ints(io), vec![40960, 12288]);
        let Some(Data::Sum(sum)) = &io.data else { panic!("sum") };
        assert_eq!(attr(&sum.data_points[0].attributes, schema::ATTR_IO_DIRECTION), Some(&s("read")));
        assert_eq!(attr(&sum.data_points[1].attributes, schema::ATTR_IO_DIRECTION), Some(&s("write")));
        assert_eq!(r.resource_metrics[0].scope_metrics[0].scope.as_ref().map(|s| s.name.as_str()), Some("nasflow"));
        assert_eq!(
            r.resource_metrics[0].scope_metrics[1].scope.as_ref().map(|s| s.name.as_str()),
            Some("nasflow.self")
        );
    }

    #[test]
    fn a_watched_directory_is_a_series_of_its_own() {
        // One cgroup's WRITEs below two watched directories and below none: three series,
        // each with its bytes, `nfs.directory` as configured on the two.
        let rows = vec![
            row(7, Operation::Write, 0, 3, 12288, &[]),
            row(7, Operation::Write, 0, 1, 4096, &[]).with_dir(1),
            row(7, Operation::Write, 0, 2, 8192, &[]).with_dir(2),
        ];
        let mut n = names(&[]);
        n.directories = vec!["/mnt/nas/team-a".to_owned(), "nas1:/export/b".to_owned()].into();
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Cumulative, 100));
        let (_, r) = decoded(&mut e, &snap(rows), &n, &SelfStats::default());
        let io = metric(&r, schema::IO);
        let Some(Data::Sum(sum)) = &io.data else { panic!("sum") };
        let dirs: Vec<_> =
            sum.data_points.iter().map(|p| attr(&p.attributes, schema::ATTR_DIRECTORY).cloned()).collect();
        assert_eq!(dirs, [None, Some(s("/mnt/nas/team-a")), Some(s("nas1:/export/b"))]);
        assert_eq!(ints(io), vec![12288, 4096, 8192]);
    }

    #[test]
    fn series_over_budget_fold_into_overflow_and_are_counted() {
        // Budget 4: cgroup 7's COMMIT count + duration, cgroup 8's; cgroup 9 overflows.
        let rows = |n: u64| {
            vec![
                row(7, Operation::Commit, 0, n, 0, &[1_000]),
                row(8, Operation::Commit, 0, n, 0, &[1_000]),
                row(9, Operation::Commit, 0, 5 * n, 0, &[1_000]),
            ]
        };
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Cumulative, 4));
        let (_, r) = decoded(&mut e, &snap(rows(1)), &names(&[]), &SelfStats::default());
        assert_eq!(e.series_count(), 4);
        assert_eq!(e.overflowed(), 2);
        let count = metric(&r, schema::OPERATION_COUNT);
        assert_eq!(ints(count), vec![1, 1, 5]);
        let Some(Data::Sum(sum)) = &count.data else { panic!("sum") };
        let overflow = &sum.data_points[2];
        assert_eq!(attr(&overflow.attributes, schema::ATTR_OVERFLOW), Some(&any_value::Value::BoolValue(true)));
        // The overflow series grows by what the folded series gained.
        let (_, r) = decoded(&mut e, &snap(rows(2)), &names(&[]), &SelfStats::default());
        assert_eq!(ints(metric(&r, schema::OPERATION_COUNT)), vec![2, 2, 10]);
        assert_eq!(e.overflowed(), 2, "counted once per series");
    }

    #[test]
    fn start_times_hold_and_removed_cgroups_go_after_one_more_export() {
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Cumulative, 100));
        let (_, r1) =
            decoded(&mut e, &snap(vec![row(7, Operation::Read, 0, 1, 1, &[])]), &names(&[]), &SelfStats::default());
        let start = |r: &ExportMetricsServiceRequest| match &metric(r, schema::OPERATION_COUNT).data {
            Some(Data::Sum(s)) => s.data_points.iter().map(|p| p.start_time_unix_nano).collect::<Vec<_>>(),
            _ => vec![],
        };
        std::thread::sleep(std::time::Duration::from_millis(2));
        let (_, r2) =
            decoded(&mut e, &snap(vec![row(7, Operation::Read, 0, 2, 2, &[])]), &names(&[7]), &SelfStats::default());
        assert_eq!(start(&r1), start(&r2), "same series, same start");
        assert_eq!(ints(metric(&r2, schema::OPERATION_COUNT)), vec![2], "exported once more when gone");
        assert_eq!(e.series_count(), 0, "then dropped");
        // Seen again (entries re-created): a new series with a new start.
        let (_, r3) =
            decoded(&mut e, &snap(vec![row(7, Operation::Read, 0, 1, 1, &[])]), &names(&[]), &SelfStats::default());
        assert!(start(&r3)[0] > start(&r1)[0]);
    }

    #[test]
    fn application_bytes_are_their_own_metric() {
        let rows = vec![
            row(7, Operation::Read, 0, 2, 8192, &[1_000_000, 1_000_000]),
            row(7, Operation::AppRead, 0, 5, 16384, &[]),
            row(7, Operation::AppWrite, 0, 1, 100, &[]),
        ];
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Cumulative, 100));
        let (_, r) = decoded(&mut e, &snap(rows), &names(&[]), &SelfStats::default());
        let app = metric(&r, schema::APP_IO);
        assert_eq!((ints(app), app.unit.as_str()), (vec![16384, 100], "By"));
        let Some(Data::Sum(sum)) = &app.data else { panic!("sum") };
        assert_eq!(attr(&sum.data_points[0].attributes, schema::ATTR_IO_DIRECTION), Some(&s("read")));
        assert_eq!(attr(&sum.data_points[1].attributes, schema::ATTR_IO_DIRECTION), Some(&s("write")));
        // Not RPCs: no operation counts or latencies for them, wire bytes unchanged.
        assert_eq!(ints(metric(&r, schema::OPERATION_COUNT)), vec![2]);
        assert_eq!(ints(metric(&r, schema::IO)), vec![8192]);
        let Some(Data::ExponentialHistogram(h)) = &metric(&r, schema::OPERATION_DURATION).data else { panic!("exp") };
        assert_eq!(h.data_points.len(), 1);
    }

    #[test]
    fn oldest_rpc_in_flight_per_mounted_nas_zero_when_idle() {
        let mut n = names(&[]);
        for (dev, server) in [(61u32, "10.0.0.1"), (63, "10.0.0.2")] {
            let view = NasView {
                server: server.into(),
                export: "/x".into(),
                version: "3".into(),
                mount_point: None,
                volume: None,
            };
            n.devices.insert(dev, Arc::new(view));
        }
        let mut sn = snap(vec![]);
        sn.inflight =
            vec![nasflow_probe::Inflight { dev: 61, count: 3, oldest: std::time::Duration::from_millis(2500) }];
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Cumulative, 100));
        let (_, r) = decoded(&mut e, &sn, &n, &SelfStats::default());
        let Some(Data::Gauge(g)) = &metric(&r, schema::RPC_INFLIGHT_MAX_AGE).data else { panic!("gauge") };
        let by_server: HashMap<String, f64> = g
            .data_points
            .iter()
            .map(|p| {
                let server = match attr(&p.attributes, "server.address") {
                    Some(any_value::Value::StringValue(v)) => v.clone(),
                    _ => String::new(),
                };
                let v = match p.value {
                    Some(number_data_point::Value::AsDouble(v)) => v,
                    _ => -1.0,
                };
                (server, v)
            })
            .collect();
        assert_eq!(by_server, HashMap::from([("10.0.0.1".to_owned(), 2.5), ("10.0.0.2".to_owned(), 0.0)]));
        assert_eq!(metric(&r, schema::RPC_INFLIGHT_MAX_AGE).unit, "s");
    }

    #[test]
    fn delta_is_against_the_last_answered_request() {
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Delta, 100));
        let mut answered = Answered::new();
        let read = |n: u64| snap(vec![row(7, Operation::Read, 0, n, 10 * n, &[])]);
        let (i1, mut p1) = parts(&mut e, &read(10), &names(&[]), &answered);
        assert_eq!(ints(metric(&decode(&p1[0]), schema::OPERATION_COUNT)), vec![10]);
        answer(&mut answered, p1.remove(0), i1.time);
        let (_, p2) = parts(&mut e, &read(15), &names(&[]), &answered);
        assert_eq!(ints(metric(&decode(&p2[0]), schema::OPERATION_COUNT)), vec![5]);
        // p2 was never answered (collector down): the next delta covers both intervals.
        let (i3, mut p3) = parts(&mut e, &read(22), &names(&[]), &answered);
        let r3 = decode(&p3[0]);
        assert_eq!(ints(metric(&r3, schema::OPERATION_COUNT)), vec![12]);
        assert_eq!(ints(metric(&r3, schema::IO)), vec![120]);
        let Some(Data::Sum(sum)) = &metric(&r3, schema::OPERATION_COUNT).data else { panic!("sum") };
        assert_eq!(sum.aggregation_temporality, AggregationTemporality::Delta as i32);
        assert_eq!(sum.data_points[0].start_time_unix_nano, i1.time, "the range starts where the answered one ended");
        answer(&mut answered, p3.remove(0), i3.time);
        let (_, p4) = parts(&mut e, &read(22), &names(&[]), &answered);
        let r4 = decode(&p4[0]);
        assert_eq!(ints(metric(&r4, schema::OPERATION_COUNT)), vec![0]);
        let Some(Data::Sum(sum)) = &metric(&r4, schema::OPERATION_COUNT).data else { panic!("sum") };
        assert_eq!(sum.data_points[0].start_time_unix_nano, i3.time);
    }

    #[test]
    fn a_probe_reload_starts_every_series_anew() {
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Cumulative, 100));
        let load = |n: u64, generation: u64| {
            let mut s = snap(vec![row(7, Operation::Read, 0, n, n, &[])]);
            s.health.load_generation = generation;
            s
        };
        let start = |r: &ExportMetricsServiceRequest| match &metric(r, schema::OPERATION_COUNT).data {
            Some(Data::Sum(s)) => s.data_points[0].start_time_unix_nano,
            _ => 0,
        };
        let (_, r1) = decoded(&mut e, &load(50, 1), &names(&[]), &SelfStats::default());
        std::thread::sleep(std::time::Duration::from_millis(2));
        let (_, r2) = decoded(&mut e, &load(60, 1), &names(&[]), &SelfStats::default());
        assert_eq!(start(&r1), start(&r2));
        std::thread::sleep(std::time::Duration::from_millis(2));
        let (_, r3) = decoded(&mut e, &load(3, 2), &names(&[]), &SelfStats::default());
        assert!(start(&r3) > start(&r2), "counting from zero again needs a new start time");
        assert_eq!(ints(metric(&r3, schema::OPERATION_COUNT)), vec![3]);
    }

    #[test]
    fn intervals_split_under_the_size_bound_with_one_time_and_every_series_once() {
        let mut o = opts(HistogramKind::Exponential, Temporality::Cumulative, 10_000);
        o.max_request_bytes = 16 << 10;
        let mut e = Encoder::new(o);
        let mut n = Names::default();
        let mut rows = Vec::new();
        for cg in 0..300u64 {
            let w = Workload { cgroup_path: Some(Arc::from(format!("/pods/p{cg}").as_str())), ..Workload::default() };
            n.workloads.insert(cg, Arc::new(w));
            rows.push(row(cg, Operation::Read, 0, cg + 1, 4096 * (cg + 1), &[1_000_000]));
        }
        let (i, parts) = parts(&mut e, &snap(rows), &n, &Answered::new());
        assert!(parts.len() > 3, "{} parts", parts.len());
        let mut counts = HashMap::new();
        for (k, p) in parts.iter().enumerate() {
            assert!(p.body.len() <= 16 << 10, "part {k}: {} bytes", p.body.len());
            let r = decode(p);
            assert_eq!(r.resource_metrics.len(), 1);
            assert_eq!(r.resource_metrics[0].resource, Some(e.framing().resource.clone()), "resource in every part");
            let scopes: Vec<_> = r.resource_metrics[0]
                .scope_metrics
                .iter()
                .filter_map(|s| s.scope.as_ref())
                .map(|s| s.name.clone())
                .collect();
            let expected = if k == 0 { vec!["nasflow", "nasflow.self"] } else { vec!["nasflow"] };
            assert_eq!(scopes, expected, "part {k}");
            let Some(Data::Sum(sum)) = &metric(&r, schema::OPERATION_COUNT).data else { panic!("sum") };
            for point in &sum.data_points {
                assert_eq!(point.time_unix_nano, i.time, "one time for every part");
                let cg = match attr(&point.attributes, "process.linux.cgroup") {
                    Some(any_value::Value::StringValue(p)) => p.clone(),
                    _ => String::new(),
                };
                let v = match point.value {
                    Some(number_data_point::Value::AsInt(v)) => v,
                    _ => -1,
                };
                assert!(counts.insert(cg, v).is_none(), "a series in two parts");
            }
        }
        assert_eq!(counts.len(), 300);
        assert!((0..300).all(|cg| counts[&format!("/pods/p{cg}")] == i64::from(cg + 1)));
    }

    #[test]
    fn prometheus_text_has_the_otlp_series_under_prometheus_names() {
        // 1 ms and 3 ms: slots 21 and 22, bounds 2^-9 and 2^-8 s.
        let rows =
            vec![row(7, Operation::Write, 0, 2, 8192, &[1_000_000, 3_000_000]), row(7, Operation::Write, 5, 1, 0, &[])];
        let mut texts = Vec::new();
        for kind in [HistogramKind::Exponential, HistogramKind::Explicit] {
            let mut e = Encoder::new(opts(kind, Temporality::Cumulative, 100));
            let i = e.interval(&snap(rows.clone()), &names(&[]), &SelfStats::default());
            let (text, bad) = crate::prometheus::render(&e.requests(&i));
            assert_eq!(bad, 0);
            texts.push(text);
        }
        let text = &texts[0];
        for line in [
            "target_info{service_name=\"nasflow\"} 1",
            "# TYPE nfs_client_io_bytes_total counter",
            "nfs_client_io_bytes_total{process_linux_cgroup=\"/cg7\",nfs_device=\"0:61\",nfs_io_direction=\"write\"} 8192",
            "nfs_client_operation_count_total{process_linux_cgroup=\"/cg7\",nfs_device=\"0:61\",nfs_operation_name=\"WRITE\"} 2",
            "nfs_client_operation_count_total{process_linux_cgroup=\"/cg7\",nfs_device=\"0:61\",nfs_operation_name=\"WRITE\",error_type=\"EIO\"} 1",
            "# TYPE nfs_client_operation_duration_seconds histogram",
            "nfs_client_operation_duration_seconds_count{process_linux_cgroup=\"/cg7\",nfs_device=\"0:61\",nfs_operation_name=\"WRITE\"} 2",
            "nfs_client_operation_duration_seconds_sum{process_linux_cgroup=\"/cg7\",nfs_device=\"0:61\",nfs_operation_name=\"WRITE\"} 0.004",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        let bucket = |le: &str| {
            format!(
                "nfs_client_operation_duration_seconds_bucket{{process_linux_cgroup=\"/cg7\",nfs_device=\"0:61\",nfs_operation_name=\"WRITE\",le=\"{le}\"}}"
            )
        };
        // Cumulative: the 1 ms sample by 2^-9 s, both by 2^-8 (explicit bounds also list the
        // empty ones below).
        for (le, count) in [("0.001953125", 1), ("0.00390625", 2), ("+Inf", 2)] {
            for t in &texts {
                let want = format!("{} {count}", bucket(le));
                assert!(t.lines().any(|l| l == want), "missing {want}\n{t}");
            }
        }
        let families = |t: &str| t.lines().filter(|l| l.starts_with("# TYPE")).count();
        assert_eq!(families(&texts[0]), families(&texts[1]), "the same families either way");
        // Every series has every bound, whichever encoding: sums by `le` must line up.
        let bounds =
            |t: &str| t.lines().filter(|l| l.starts_with("nfs_client_operation_duration_seconds_bucket")).count();
        assert_eq!(bounds(&texts[0]), bounds(&texts[1]));
        assert_eq!(bounds(&texts[0]), LATENCY_SLOTS + 1, "every slot's bound and +Inf");
        assert!(text.contains("# TYPE nasflow_series gauge"), "self-telemetry too");
    }
}
