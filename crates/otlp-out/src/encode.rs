//! Snapshots and names to OTLP requests, through a series registry that owns start times,
//! delta baselines, the series budget and series lifecycle.
//!
//! Histograms carry the kernel's log2 slots as they are: no sample is re-recorded. Slot `s`
//! (s >= 1) holds latencies in (2^(s-31), 2^(s-30)] seconds, which is exactly OTLP's
//! exponential bucket `s - 31` at scale 0; slot 0 (at most 2^-30 s) is the zero bucket.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use nasflow_enrich::{errno::errno_name, names::Names};
use nasflow_probe::{Operation, Snapshot, LATENCY_SLOTS};
use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue},
    metrics::v1::{
        exponential_histogram_data_point::Buckets, metric, number_data_point, AggregationTemporality,
        ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram, HistogramDataPoint, Metric,
        NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    },
    resource::v1::Resource,
};

use crate::schema;

/// How latency histograms are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistogramKind {
    /// ExponentialHistogram at scale 0: kernel slots one to one.
    Exponential,
    /// Histogram with explicit bounds at the same powers of two.
    Explicit,
}

/// Aggregation temporality of the NFS metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    /// Values since the series' start (default).
    Cumulative,
    /// Values since the last export the collector accepted.
    Delta,
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
}

/// The agent's own counters, exported under [`schema::SELF_SCOPE`].
#[derive(Debug, Clone, Default)]
pub struct SelfStats {
    /// Failed export attempts so far.
    pub export_failures: u64,
    /// Probe health counters, by reason.
    pub probe_drops: Vec<(&'static str, u64)>,
    /// Naming misses so far.
    pub enrich_misses: u64,
    /// Kubelet pod tables loaded so far.
    pub kubelet_refreshes: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SeriesKey {
    Count { cgroup: u64, dev: u32, op: Operation, err: u16 },
    Io { cgroup: u64, dev: u32, op: Operation },
    Duration { cgroup: u64, dev: u32, op: Operation },
    Overflow(Kind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Count,
    Io,
    Duration,
}

impl SeriesKey {
    fn kind(self) -> Kind {
        match self {
            Self::Count { .. } => Kind::Count,
            Self::Io { .. } => Kind::Io,
            Self::Duration { .. } => Kind::Duration,
            Self::Overflow(k) => k,
        }
    }

    fn origin(self) -> Option<(u64, u32)> {
        match self {
            Self::Count { cgroup, dev, .. } | Self::Io { cgroup, dev, .. } | Self::Duration { cgroup, dev, .. } => {
                Some((cgroup, dev))
            }
            Self::Overflow(_) => None,
        }
    }
}

/// A latency histogram in kernel slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hist {
    /// Samples.
    pub count: u64,
    /// Sum of samples, ns.
    pub sum_ns: u64,
    /// Kernel slots.
    pub slots: [u64; LATENCY_SLOTS],
}

impl Hist {
    fn zero() -> Self {
        Self { count: 0, sum_ns: 0, slots: [0; LATENCY_SLOTS] }
    }

    fn add(&mut self, o: &Self) {
        self.count += o.count;
        self.sum_ns += o.sum_ns;
        for (a, b) in self.slots.iter_mut().zip(o.slots) {
            *a += b;
        }
    }

    /// `self - o`, or `None` when any part went down (a reset).
    fn minus(&self, o: &Self) -> Option<Self> {
        let mut slots = [0; LATENCY_SLOTS];
        for (i, s) in slots.iter_mut().enumerate() {
            *s = self.slots[i].checked_sub(o.slots[i])?;
        }
        Some(Self { count: self.count.checked_sub(o.count)?, sum_ns: self.sum_ns.checked_sub(o.sum_ns)?, slots })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Sum(u64),
    Hist(Box<Hist>),
}

impl Value {
    fn zero_like(&self) -> Self {
        match self {
            Self::Sum(_) => Self::Sum(0),
            Self::Hist(_) => Self::Hist(Box::new(Hist::zero())),
        }
    }

    fn minus(&self, o: &Self) -> Option<Self> {
        match (self, o) {
            (Self::Sum(a), Self::Sum(b)) => a.checked_sub(*b).map(Self::Sum),
            (Self::Hist(a), Self::Hist(b)) => a.minus(b).map(|h| Self::Hist(Box::new(h))),
            _ => None,
        }
    }

    fn add(&mut self, o: &Self) {
        match (self, o) {
            (Self::Sum(a), Self::Sum(b)) => *a += b,
            (Self::Hist(a), Self::Hist(b)) => a.add(b),
            _ => {}
        }
    }
}

#[derive(Debug)]
struct SeriesState {
    start: u64,
    admitted: bool,
    /// Delta: the value and time of the last export the collector accepted.
    baseline: Option<(Value, u64)>,
    /// Overflowed series: the value already folded into the overflow series.
    folded: Option<Value>,
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn kv(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(any_value::Value::StringValue(value.into())) }),
        key_strindex: 0,
    }
}

/// Upper bound, in seconds, of kernel latency slot `s`.
#[must_use]
pub fn slot_upper_bound_s(slot: usize) -> f64 {
    #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)] // slot < 40
    2f64.powi(slot as i32 - 30)
}

/// Builds OTLP requests from snapshots; one per interval.
pub struct Encoder {
    opts: EncodeOptions,
    series: HashMap<SeriesKey, SeriesState>,
    admitted: usize,
    overflowed_total: u64,
    overflow: HashMap<Kind, Value>,
    /// Delta: values of recent requests, until the exporter says which one was accepted.
    pending: VecDeque<PendingValues>,
    seq: u64,
    started: u64,
}

/// Data points per metric: counts, io bytes, exponential and explicit histograms.
type DataPoints =
    (Vec<NumberDataPoint>, Vec<NumberDataPoint>, Vec<ExponentialHistogramDataPoint>, Vec<HistogramDataPoint>);

/// A request's sequence number, time and the values it carried (delta temporality).
type PendingValues = (u64, u64, Vec<(SeriesKey, Value)>);

/// Requests whose values are kept for delta baselines, waiting for an acknowledgement.
const PENDING_REQUESTS: usize = 4;

impl Encoder {
    /// A new encoder; series start when first seen.
    #[must_use]
    pub fn new(opts: EncodeOptions) -> Self {
        Self {
            opts,
            series: HashMap::new(),
            admitted: 0,
            overflowed_total: 0,
            overflow: HashMap::new(),
            pending: VecDeque::new(),
            seq: 0,
            started: nanos(SystemTime::now()),
        }
    }

    /// Series admitted (within the budget) now.
    #[must_use]
    pub fn series_count(&self) -> usize {
        self.admitted
    }

    /// Series folded into overflow series so far.
    #[must_use]
    pub fn overflowed(&self) -> u64 {
        self.overflowed_total
    }

    /// The collector accepted request `seq`: with delta temporality, its values become the
    /// baselines of the next deltas. Unacknowledged requests are superseded, never lost.
    pub fn acknowledge(&mut self, seq: u64) {
        while let Some((s, time, values)) = self.pending.pop_front() {
            if s == seq {
                for (key, v) in values {
                    if let Some(st) = self.series.get_mut(&key) {
                        st.baseline = Some((v, time));
                    }
                }
                return;
            }
            if s > seq {
                self.pending.push_front((s, time, values));
                return;
            }
        }
    }

    /// Current values of every series in the snapshot, the series of one (cgroup, device,
    /// operation) next to each other so the series budget admits or folds them together.
    fn values(snap: &Snapshot) -> Vec<(SeriesKey, Value)> {
        let mut out: Vec<(SeriesKey, Value)> = Vec::with_capacity(snap.rows.len() * 3);
        // Rows are sorted by (cgroup, dev, op, err): a group is a run.
        for group in snap.rows.chunk_by(|a, b| (a.cgroup, a.dev, a.op) == (b.cgroup, b.dev, b.op)) {
            let (cgroup, dev, op) = (group[0].cgroup, group[0].dev, group[0].op);
            let mut bytes = 0;
            let mut hist = Hist::zero();
            for r in group {
                out.push((SeriesKey::Count { cgroup, dev, op, err: r.err }, Value::Sum(r.ops)));
                bytes += r.bytes;
                hist.add(&Hist { count: r.latency_count, sum_ns: r.latency_sum_ns, slots: r.latency_slots });
            }
            if matches!(op, Operation::Read | Operation::Write) {
                out.push((SeriesKey::Io { cgroup, dev, op }, Value::Sum(bytes)));
            }
            out.push((SeriesKey::Duration { cgroup, dev, op }, Value::Hist(Box::new(hist))));
        }
        out
    }

    /// Encodes one interval. Returns the request's sequence number (for
    /// [`Encoder::acknowledge`]) and the request.
    pub fn encode(&mut self, snap: &Snapshot, names: &Names, stats: &SelfStats) -> (u64, ExportMetricsServiceRequest) {
        self.seq += 1;
        let now = snap.taken_at.map_or_else(|| nanos(SystemTime::now()), nanos);
        let values = Self::values(snap);
        let mut points: Vec<(SeriesKey, Value, u64)> = Vec::with_capacity(values.len());
        let mut seen: std::collections::HashSet<SeriesKey> = std::collections::HashSet::with_capacity(values.len());
        for (key, cur) in values {
            seen.insert(key);
            let st = self.series.entry(key).or_insert_with(|| {
                let admitted = self.admitted < self.opts.max_series;
                if admitted {
                    self.admitted += 1;
                } else {
                    self.overflowed_total += 1;
                }
                SeriesState { start: now, admitted, baseline: None, folded: None }
            });
            if st.admitted {
                points.push((key, cur, st.start));
            } else {
                // Fold what this series gained since it was last folded.
                let gained =
                    st.folded.as_ref().map_or(Some(cur.clone()), |f| cur.minus(f)).unwrap_or_else(|| cur.clone());
                self.overflow.entry(key.kind()).or_insert_with(|| cur.zero_like()).add(&gained);
                st.folded = Some(cur);
            }
        }
        for (kind, v) in &self.overflow {
            let key = SeriesKey::Overflow(*kind);
            seen.insert(key);
            let st = self.series.entry(key).or_insert(SeriesState {
                start: now,
                admitted: true,
                baseline: None,
                folded: None,
            });
            points.push((key, v.clone(), st.start));
        }

        // Temporality: cumulative as is; delta against the last accepted export.
        let mut sent = Vec::new();
        let mut out: Vec<(SeriesKey, Value, u64)> = Vec::with_capacity(points.len());
        for (key, cur, start) in points {
            match self.opts.temporality {
                Temporality::Cumulative => out.push((key, cur, start)),
                Temporality::Delta => {
                    let st = self.series.get(&key);
                    let (base, since) = match st.and_then(|s| s.baseline.as_ref()) {
                        Some((v, t)) => (Some(v), *t),
                        None => (None, start),
                    };
                    let delta = base.map_or(Some(cur.clone()), |b| cur.minus(b));
                    // Went down: the series restarted; count it from zero.
                    let (delta, since) = delta.map_or_else(|| (cur.clone(), start), |d| (d, since));
                    sent.push((key, cur));
                    out.push((key, delta, since));
                }
            }
        }
        if self.opts.temporality == Temporality::Delta {
            self.pending.push_back((self.seq, now, sent));
            while self.pending.len() > PENDING_REQUESTS {
                self.pending.pop_front();
            }
        }

        let request = self.build(&out, names, now, stats);

        // Lifecycle: series not in this snapshot, or of a removed cgroup, go now (the
        // removed ones were just exported once more).
        let gone = |k: &SeriesKey| k.origin().is_some_and(|(cg, _)| names.workloads.get(&cg).is_some_and(|w| w.gone));
        let before = self.series.len();
        let admitted = &mut self.admitted;
        self.series.retain(|k, st| {
            let keep = seen.contains(k) && !gone(k);
            if !keep && st.admitted && !matches!(k, SeriesKey::Overflow(_)) {
                *admitted -= 1;
            }
            keep
        });
        if self.series.len() < before {
            tracing::trace!(dropped = before - self.series.len(), "series dropped");
        }
        (self.seq, request)
    }

    fn build(
        &self,
        points: &[(SeriesKey, Value, u64)],
        names: &Names,
        now: u64,
        stats: &SelfStats,
    ) -> ExportMetricsServiceRequest {
        let temporality = match self.opts.temporality {
            Temporality::Cumulative => AggregationTemporality::Cumulative,
            Temporality::Delta => AggregationTemporality::Delta,
        } as i32;
        let (count_points, io_points, exp_points, hist_points) = self.data_points(points, names, now);
        let metric = |name: &'static str, data: metric::Data| {
            let (_, description, unit) =
                schema::METRICS.iter().find(|m| m.0 == name).copied().unwrap_or((name, "", ""));
            Metric {
                name: name.to_owned(),
                description: description.to_owned(),
                unit: unit.to_owned(),
                metadata: vec![],
                data: Some(data),
            }
        };
        let sum = |data_points| {
            metric::Data::Sum(Sum { data_points, aggregation_temporality: temporality, is_monotonic: true })
        };
        let mut metrics = vec![metric(schema::IO, sum(io_points)), metric(schema::OPERATION_COUNT, sum(count_points))];
        metrics.push(match self.opts.histogram {
            HistogramKind::Exponential => metric(
                schema::OPERATION_DURATION,
                metric::Data::ExponentialHistogram(ExponentialHistogram {
                    data_points: exp_points,
                    aggregation_temporality: temporality,
                }),
            ),
            HistogramKind::Explicit => metric(
                schema::OPERATION_DURATION,
                metric::Data::Histogram(Histogram { data_points: hist_points, aggregation_temporality: temporality }),
            ),
        });

        let scope = |name: &str| InstrumentationScope {
            name: name.to_owned(),
            version: self.opts.scope_version.clone(),
            attributes: vec![],
            dropped_attributes_count: 0,
        };
        let resource = Resource {
            attributes: self.opts.resource.iter().map(|(k, v)| kv(k, v.clone())).collect(),
            dropped_attributes_count: 0,
            entity_refs: vec![],
        };
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource),
                scope_metrics: vec![
                    ScopeMetrics { scope: Some(scope(schema::SCOPE)), metrics, schema_url: String::new() },
                    ScopeMetrics {
                        scope: Some(scope(schema::SELF_SCOPE)),
                        metrics: self.self_metrics(now, stats),
                        schema_url: String::new(),
                    },
                ],
                schema_url: String::new(),
            }],
        }
    }

    /// Data points of the NFS metrics: (operation counts, io bytes, exponential histograms,
    /// explicit histograms).
    fn data_points(&self, points: &[(SeriesKey, Value, u64)], names: &Names, now: u64) -> DataPoints {
        // Attributes shared by the series of one (cgroup, device), built once.
        let mut base: HashMap<(u64, u32), Arc<Vec<KeyValue>>> = HashMap::new();
        let mut base_of = |cg: u64, dev: u32| -> Arc<Vec<KeyValue>> {
            Arc::clone(base.entry((cg, dev)).or_insert_with(|| {
                let mut a: Vec<KeyValue> = Vec::new();
                if let Some(w) = names.workloads.get(&cg) {
                    a.extend(w.attributes().into_iter().map(|(k, v)| kv(k, v)));
                }
                if let Some(n) = names.nas_of(dev, cg) {
                    a.extend(n.attributes().into_iter().map(|(k, v)| kv(k, v)));
                }
                Arc::new(a)
            }))
        };
        let mut count_points = Vec::new();
        let mut io_points = Vec::new();
        let mut exp_points = Vec::new();
        let mut hist_points = Vec::new();
        for (key, value, start) in points {
            let mut attrs: Vec<KeyValue> = match key.origin() {
                Some((cg, dev)) => base_of(cg, dev).as_ref().clone(),
                None => vec![KeyValue {
                    key: schema::ATTR_OVERFLOW.to_owned(),
                    value: Some(AnyValue { value: Some(any_value::Value::BoolValue(true)) }),
                    key_strindex: 0,
                }],
            };
            match (key, value) {
                (SeriesKey::Count { op, err, .. }, Value::Sum(v)) => {
                    attrs.push(kv(schema::ATTR_OPERATION, op.name()));
                    if *err != 0 {
                        attrs.push(kv(schema::ATTR_ERROR_TYPE, errno_name(*err)));
                    }
                    count_points.push(number(attrs, *start, now, *v));
                }
                (SeriesKey::Overflow(Kind::Count), Value::Sum(v)) => count_points.push(number(attrs, *start, now, *v)),
                (SeriesKey::Io { op, .. }, Value::Sum(v)) => {
                    attrs.push(kv(schema::ATTR_IO_DIRECTION, if *op == Operation::Read { "read" } else { "write" }));
                    io_points.push(number(attrs, *start, now, *v));
                }
                (SeriesKey::Overflow(Kind::Io), Value::Sum(v)) => io_points.push(number(attrs, *start, now, *v)),
                (SeriesKey::Duration { .. } | SeriesKey::Overflow(Kind::Duration), Value::Hist(h)) => {
                    if let SeriesKey::Duration { op, .. } = key {
                        attrs.push(kv(schema::ATTR_OPERATION, op.name()));
                    }
                    match self.opts.histogram {
                        HistogramKind::Exponential => exp_points.push(exponential(attrs, *start, now, h)),
                        HistogramKind::Explicit => hist_points.push(explicit(attrs, *start, now, h)),
                    }
                }
                _ => {}
            }
        }
        (count_points, io_points, exp_points, hist_points)
    }

    fn self_metrics(&self, now: u64, stats: &SelfStats) -> Vec<Metric> {
        let cumulative = AggregationTemporality::Cumulative as i32;
        let sum = |name: &str, desc: &str, unit: &str, points: Vec<NumberDataPoint>| Metric {
            name: name.to_owned(),
            description: desc.to_owned(),
            unit: unit.to_owned(),
            metadata: vec![],
            data: Some(metric::Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: cumulative,
                is_monotonic: true,
            })),
        };
        let start = self.started;
        let drops =
            stats.probe_drops.iter().map(|(reason, v)| number(vec![kv("reason", *reason)], start, now, *v)).collect();
        vec![
            sum(
                schema::SELF_EXPORT_FAILURES,
                "Failed OTLP export attempts.",
                "{attempt}",
                vec![number(vec![], start, now, stats.export_failures)],
            ),
            Metric {
                name: schema::SELF_SERIES.to_owned(),
                description: "Series in this export.".to_owned(),
                unit: "{series}".to_owned(),
                metadata: vec![],
                data: Some(metric::Data::Gauge(Gauge {
                    data_points: vec![number(vec![], 0, now, u64::try_from(self.admitted).unwrap_or(u64::MAX))],
                })),
            },
            sum(
                schema::SELF_OVERFLOWED,
                "Series folded into otel.metric.overflow series.",
                "{series}",
                vec![number(vec![], start, now, self.overflowed_total)],
            ),
            sum(schema::SELF_PROBE_DROPS, "What the kernel probe could not count, by reason.", "{event}", drops),
            sum(
                schema::SELF_ENRICH_MISSES,
                "cgroups, containers or devices that could not be named.",
                "{miss}",
                vec![number(vec![], start, now, stats.enrich_misses)],
            ),
            sum(
                schema::SELF_KUBELET_REFRESHES,
                "Pod tables loaded from the kubelet.",
                "{refresh}",
                vec![number(vec![], start, now, stats.kubelet_refreshes)],
            ),
        ]
    }
}

fn number(attributes: Vec<KeyValue>, start: u64, now: u64, v: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        exemplars: vec![],
        flags: 0,
        value: Some(number_data_point::Value::AsInt(i64::try_from(v).unwrap_or(i64::MAX))),
    }
}

fn exponential(attributes: Vec<KeyValue>, start: u64, now: u64, h: &Hist) -> ExponentialHistogramDataPoint {
    let first = h.slots.iter().skip(1).position(|c| *c > 0).map(|p| p + 1);
    let last = h.slots.iter().rposition(|c| *c > 0).filter(|l| *l >= 1);
    let positive = match (first, last) {
        #[allow(clippy::cast_possible_wrap, clippy::cast_possible_truncation)] // slot < 40
        (Some(f), Some(l)) => Some(Buckets { offset: f as i32 - 31, bucket_counts: h.slots[f..=l].to_vec() }),
        _ => None,
    };
    ExponentialHistogramDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        count: h.count,
        sum: Some(h.sum_ns as f64 / 1e9),
        scale: 0,
        zero_count: h.slots[0],
        positive,
        negative: None,
        flags: 0,
        exemplars: vec![],
        min: None,
        max: None,
        zero_threshold: slot_upper_bound_s(0),
    }
}

fn explicit(attributes: Vec<KeyValue>, start: u64, now: u64, h: &Hist) -> HistogramDataPoint {
    let mut bucket_counts = h.slots.to_vec();
    bucket_counts.push(0);
    HistogramDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        count: h.count,
        sum: Some(h.sum_ns as f64 / 1e9),
        bucket_counts,
        explicit_bounds: (0..LATENCY_SLOTS).map(slot_upper_bound_s).collect(),
        exemplars: vec![],
        flags: 0,
        min: None,
        max: None,
    }
}

#[cfg(test)]
// Short names (e, r, p, h, b) read best in these tables of values; the bounds compared are
// powers of two, exact in f64.
#[allow(clippy::many_single_char_names, clippy::float_cmp)]
mod tests {
    use std::collections::HashSet;

    use nasflow_enrich::names::{Names, Workload};
    use nasflow_probe::{IoRow, ProbeHealth};
    use nasflow_probe_bpf::latency_slot;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;

    use super::*;

    fn row(cgroup: u64, op: Operation, err: u16, ops: u64, bytes: u64, samples_ns: &[u64]) -> IoRow {
        let mut latency_slots = [0; LATENCY_SLOTS];
        for ns in samples_ns {
            latency_slots[latency_slot(*ns)] += 1;
        }
        IoRow {
            cgroup,
            dev: 61,
            op,
            err,
            ops,
            bytes,
            latency_count: samples_ns.len() as u64,
            latency_sum_ns: samples_ns.iter().sum(),
            latency_slots,
        }
    }

    fn snap(rows: Vec<IoRow>) -> Snapshot {
        Snapshot { taken_at: Some(SystemTime::now()), rows, inflight: vec![], health: ProbeHealth::default() }
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
        }
    }

    fn metric<'a>(r: &'a ExportMetricsServiceRequest, name: &str) -> &'a Metric {
        r.resource_metrics[0].scope_metrics[0].metrics.iter().find(|m| m.name == name).expect(name)
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
        let (_, r) = e.encode(&snap(rows), &names(&[]), &SelfStats::default());
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

    #[test]
    fn empty_histogram_and_explicit_bounds() {
        let rows = vec![row(7, Operation::Commit, 0, 0, 0, &[]), row(8, Operation::Read, 0, 1, 1, &[1_000_000])];
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Cumulative, 100));
        let (_, r) = e.encode(&snap(rows.clone()), &names(&[]), &SelfStats::default());
        let Some(Data::ExponentialHistogram(h)) = &metric(&r, schema::OPERATION_DURATION).data else { panic!("exp") };
        assert_eq!((h.data_points[0].count, h.data_points[0].positive.as_ref()), (0, None));

        let mut e = Encoder::new(opts(HistogramKind::Explicit, Temporality::Cumulative, 100));
        let (_, r) = e.encode(&snap(rows), &names(&[]), &SelfStats::default());
        let Some(Data::Histogram(h)) = &metric(&r, schema::OPERATION_DURATION).data else { panic!("explicit") };
        let p = &h.data_points[1];
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
        let (_, r) = e.encode(&snap(rows), &names(&[]), &SelfStats::default());
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
    fn series_over_budget_fold_into_overflow_and_are_counted() {
        // Budget 4: cgroup 7's COMMIT count + duration, cgroup 8's; cgroup 9 overflows.
        let rows = |n: u64| {
            vec![
                row(7, Operation::Commit, 0, n, 0, &[]),
                row(8, Operation::Commit, 0, n, 0, &[]),
                row(9, Operation::Commit, 0, 5 * n, 0, &[]),
            ]
        };
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Cumulative, 4));
        let (_, r) = e.encode(&snap(rows(1)), &names(&[]), &SelfStats::default());
        assert_eq!(e.series_count(), 4);
        assert_eq!(e.overflowed(), 2);
        let count = metric(&r, schema::OPERATION_COUNT);
        assert_eq!(ints(count), vec![1, 1, 5]);
        let Some(Data::Sum(sum)) = &count.data else { panic!("sum") };
        let overflow = &sum.data_points[2];
        assert_eq!(attr(&overflow.attributes, schema::ATTR_OVERFLOW), Some(&any_value::Value::BoolValue(true)));
        // The overflow series grows by what the folded series gained.
        let (_, r) = e.encode(&snap(rows(2)), &names(&[]), &SelfStats::default());
        assert_eq!(ints(metric(&r, schema::OPERATION_COUNT)), vec![2, 2, 10]);
        assert_eq!(e.overflowed(), 2, "counted once per series");
    }

    #[test]
    fn start_times_hold_and_removed_cgroups_go_after_one_more_export() {
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Cumulative, 100));
        let (_, r1) = e.encode(&snap(vec![row(7, Operation::Read, 0, 1, 1, &[])]), &names(&[]), &SelfStats::default());
        let start = |r: &ExportMetricsServiceRequest| match &metric(r, schema::OPERATION_COUNT).data {
            Some(Data::Sum(s)) => s.data_points.iter().map(|p| p.start_time_unix_nano).collect::<Vec<_>>(),
            _ => vec![],
        };
        std::thread::sleep(std::time::Duration::from_millis(2));
        let (_, r2) = e.encode(&snap(vec![row(7, Operation::Read, 0, 2, 2, &[])]), &names(&[7]), &SelfStats::default());
        assert_eq!(start(&r1), start(&r2), "same series, same start");
        assert_eq!(ints(metric(&r2, schema::OPERATION_COUNT)), vec![2], "exported once more when gone");
        assert_eq!(e.series_count(), 0, "then dropped");
        // Seen again (entries re-created): a new series with a new start.
        let (_, r3) = e.encode(&snap(vec![row(7, Operation::Read, 0, 1, 1, &[])]), &names(&[]), &SelfStats::default());
        assert!(start(&r3)[0] > start(&r1)[0]);
    }

    #[test]
    fn delta_is_against_the_last_accepted_export() {
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Delta, 100));
        let (s1, r1) =
            e.encode(&snap(vec![row(7, Operation::Read, 0, 10, 100, &[])]), &names(&[]), &SelfStats::default());
        assert_eq!(ints(metric(&r1, schema::OPERATION_COUNT)), vec![10]);
        e.acknowledge(s1);
        let (_s2, r2) =
            e.encode(&snap(vec![row(7, Operation::Read, 0, 15, 150, &[])]), &names(&[]), &SelfStats::default());
        assert_eq!(ints(metric(&r2, schema::OPERATION_COUNT)), vec![5]);
        // r2 was never accepted (collector down): the next delta covers both intervals.
        let (s3, r3) =
            e.encode(&snap(vec![row(7, Operation::Read, 0, 22, 220, &[])]), &names(&[]), &SelfStats::default());
        assert_eq!(ints(metric(&r3, schema::OPERATION_COUNT)), vec![12]);
        assert_eq!(ints(metric(&r3, schema::IO)), vec![120]);
        let Some(Data::Sum(sum)) = &metric(&r3, schema::OPERATION_COUNT).data else { panic!("sum") };
        assert_eq!(sum.aggregation_temporality, AggregationTemporality::Delta as i32);
        e.acknowledge(s3);
        let (_, r4) =
            e.encode(&snap(vec![row(7, Operation::Read, 0, 22, 220, &[])]), &names(&[]), &SelfStats::default());
        assert_eq!(ints(metric(&r4, schema::OPERATION_COUNT)), vec![0]);
        let points: HashSet<u64> = match &metric(&r4, schema::OPERATION_COUNT).data {
            Some(Data::Sum(s)) => s.data_points.iter().map(|p| p.start_time_unix_nano).collect(),
            _ => HashSet::new(),
        };
        assert_eq!(points.len(), 1);
    }
}
