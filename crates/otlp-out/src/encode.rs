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

use nasflow_enrich::{
    errno::errno_name,
    names::{Names, NasView, Workload},
};
use nasflow_probe::{latency_slot_upper_bound_s, Operation, Snapshot, LATENCY_SLOTS};
use opentelemetry_proto::tonic::{
    common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue},
    metrics::v1::{
        exponential_histogram_data_point::Buckets, metric, number_data_point, AggregationTemporality,
        ExponentialHistogramDataPoint, Gauge, HistogramDataPoint, Metric, NumberDataPoint, ScopeMetrics, Sum,
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
    AppIo { cgroup: u64, dev: u32, op: Operation },
    Rtt { cgroup: u64, dev: u32, op: Operation },
    Retransmits { cgroup: u64, dev: u32, op: Operation },
    Overflow(Kind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Count,
    Io,
    Duration,
    AppIo,
    Rtt,
    Retransmits,
}

impl SeriesKey {
    fn kind(self) -> Kind {
        match self {
            Self::Count { .. } => Kind::Count,
            Self::Io { .. } => Kind::Io,
            Self::Duration { .. } => Kind::Duration,
            Self::AppIo { .. } => Kind::AppIo,
            Self::Rtt { .. } => Kind::Rtt,
            Self::Retransmits { .. } => Kind::Retransmits,
            Self::Overflow(k) => k,
        }
    }

    fn origin(self) -> Option<(u64, u32)> {
        match self {
            Self::Count { cgroup, dev, .. }
            | Self::Io { cgroup, dev, .. }
            | Self::Duration { cgroup, dev, .. }
            | Self::AppIo { cgroup, dev, .. }
            | Self::Rtt { cgroup, dev, .. }
            | Self::Retransmits { cgroup, dev, .. } => Some((cgroup, dev)),
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
    attrs: AttrCache,
}

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
            attrs: AttrCache::default(),
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
            if !op.is_rpc() {
                out.push((SeriesKey::AppIo { cgroup, dev, op }, Value::Sum(group.iter().map(|r| r.bytes).sum())));
                continue;
            }
            let (mut bytes, mut retransmits) = (0, 0);
            let mut hist = Hist::zero();
            let mut rtt: Option<Hist> = None;
            // A row made only of rtt or retransmissions (its outcome not counted yet) is no
            // operation count.
            let wire_only = |r: &nasflow_probe::IoRow| {
                r.ops == 0 && r.bytes == 0 && r.latency_count == 0 && (r.rtt.is_some() || r.retransmits > 0)
            };
            for r in group {
                if !wire_only(r) {
                    out.push((SeriesKey::Count { cgroup, dev, op, err: r.err }, Value::Sum(r.ops)));
                }
                bytes += r.bytes;
                retransmits += r.retransmits;
                hist.add(&Hist { count: r.latency_count, sum_ns: r.latency_sum_ns, slots: r.latency_slots });
                if let Some(h) = &r.rtt {
                    let h = Hist { count: h.slots.iter().sum(), sum_ns: h.sum_ns, slots: h.slots };
                    rtt.get_or_insert_with(Hist::zero).add(&h);
                }
            }
            if matches!(op, Operation::Read | Operation::Write) {
                out.push((SeriesKey::Io { cgroup, dev, op }, Value::Sum(bytes)));
            }
            if !group.iter().all(wire_only) {
                out.push((SeriesKey::Duration { cgroup, dev, op }, Value::Hist(Box::new(hist))));
            }
            if let Some(h) = rtt {
                out.push((SeriesKey::Rtt { cgroup, dev, op }, Value::Hist(Box::new(h))));
            }
            if retransmits > 0 {
                out.push((SeriesKey::Retransmits { cgroup, dev, op }, Value::Sum(retransmits)));
            }
        }
        out
    }

    /// Encodes one interval. Returns the request's sequence number (for
    /// [`Encoder::acknowledge`]) and the encoded `ExportMetricsServiceRequest`.
    pub fn encode(&mut self, snap: &Snapshot, names: &Names, stats: &SelfStats) -> (u64, Vec<u8>) {
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

        let request = self.build(&out, &snap.inflight, names, now, stats);

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

    /// One gauge point per mounted NFS device: the age of its oldest RPC in flight, 0 if none.
    fn inflight_points(inflight: &[nasflow_probe::Inflight], names: &Names, now: u64) -> Vec<u8> {
        let mut devs: Vec<_> = names.devices.iter().collect();
        devs.sort_by_key(|(dev, _)| **dev);
        let mut buf = Vec::new();
        let mut scratch = Vec::new();
        for (dev, nas) in devs {
            let age = inflight.iter().find(|i| i.dev == *dev).map_or(0.0, |i| i.oldest.as_secs_f64());
            scratch.clear();
            let attributes = nas.attributes().into_iter().map(|(k, v)| kv(k, v)).collect();
            let point = NumberDataPoint {
                attributes,
                start_time_unix_nano: 0,
                time_unix_nano: now,
                exemplars: vec![],
                flags: 0,
                value: Some(number_data_point::Value::AsDouble(age)),
            };
            wire::encode(&point, &mut scratch);
            wire::put_message(&mut buf, wire::DATA_POINTS, &scratch);
        }
        buf
    }

    #[allow(clippy::too_many_lines)] // one straight pass over the request's structure
    fn build(
        &mut self,
        points: &[(SeriesKey, Value, u64)],
        snap_inflight: &[nasflow_probe::Inflight],
        names: &Names,
        now: u64,
        stats: &SelfStats,
    ) -> Vec<u8> {
        let temporality = match self.opts.temporality {
            Temporality::Cumulative => AggregationTemporality::Cumulative,
            Temporality::Delta => AggregationTemporality::Delta,
        } as i32;
        let hist_tag = match self.opts.histogram {
            HistogramKind::Exponential => wire::EXP_HIST_POINT_ATTRS,
            HistogramKind::Explicit => wire::HIST_POINT_ATTRS,
        };
        // Data points go straight into one buffer per metric; attributes come from the cache.
        let (mut counts, mut ios, mut hists, mut app_ios) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut rtts, mut retransmits) = (Vec::new(), Vec::new());
        let mut scratch = Vec::with_capacity(1024);
        let mut seen = std::collections::HashSet::new();
        for (key, value, start) in points {
            let (buf, tag) = match key.kind() {
                Kind::Count => (&mut counts, wire::NUMBER_POINT_ATTRS),
                Kind::Io => (&mut ios, wire::NUMBER_POINT_ATTRS),
                Kind::Duration => (&mut hists, hist_tag),
                Kind::AppIo => (&mut app_ios, wire::NUMBER_POINT_ATTRS),
                Kind::Rtt => (&mut rtts, hist_tag),
                Kind::Retransmits => (&mut retransmits, wire::NUMBER_POINT_ATTRS),
            };
            scratch.clear();
            match value {
                Value::Sum(v) => wire::encode(&number(vec![], *start, now, *v), &mut scratch),
                Value::Hist(h) => match self.opts.histogram {
                    HistogramKind::Exponential => wire::encode(&exponential(vec![], *start, now, h), &mut scratch),
                    HistogramKind::Explicit => wire::encode(&explicit(vec![], *start, now, h), &mut scratch),
                },
            }
            match key.origin() {
                Some((cg, dev)) => {
                    seen.insert((cg, dev));
                    scratch.extend_from_slice(self.attrs.base(cg, dev, names, tag));
                }
                None => scratch.extend_from_slice(self.attrs.own(tag, Own::Overflow)),
            }
            match key {
                SeriesKey::Count { op, err, .. } => {
                    scratch.extend_from_slice(self.attrs.own(tag, Own::Op(*op)));
                    if *err != 0 {
                        scratch.extend_from_slice(self.attrs.own(tag, Own::Error(*err)));
                    }
                }
                SeriesKey::Io { op, .. } | SeriesKey::AppIo { op, .. } => {
                    scratch.extend_from_slice(self.attrs.own(tag, Own::Direction(*op)));
                }
                SeriesKey::Duration { op, .. } | SeriesKey::Rtt { op, .. } | SeriesKey::Retransmits { op, .. } => {
                    scratch.extend_from_slice(self.attrs.own(tag, Own::Op(*op)));
                }
                SeriesKey::Overflow(_) => {}
            }
            wire::put_message(buf, wire::DATA_POINTS, &scratch);
        }
        self.attrs.retain(&seen);

        let monotonic = Some(true);
        let (hist_field, hist_monotonic) = match self.opts.histogram {
            HistogramKind::Exponential => (wire::METRIC_EXP_HISTOGRAM, None),
            HistogramKind::Explicit => (wire::METRIC_HISTOGRAM, None),
        };
        let inflight = Self::inflight_points(snap_inflight, names, now);
        let metrics = [
            wire::MetricParts::new(schema::METRICS[0], wire::METRIC_SUM, &ios, Some(temporality), monotonic),
            wire::MetricParts::new(schema::METRICS[1], wire::METRIC_SUM, &counts, Some(temporality), monotonic),
            wire::MetricParts::new(schema::METRICS[2], hist_field, &hists, Some(temporality), hist_monotonic),
            wire::MetricParts::new(schema::METRICS[3], wire::METRIC_SUM, &app_ios, Some(temporality), monotonic),
            wire::MetricParts::new(schema::METRICS[4], hist_field, &rtts, Some(temporality), hist_monotonic),
            wire::MetricParts::new(schema::METRICS[5], wire::METRIC_SUM, &retransmits, Some(temporality), monotonic),
            wire::MetricParts::new(
                (schema::RPC_INFLIGHT_MAX_AGE, "Age of the oldest NFS RPC still in flight, per NAS.", "s"),
                wire::METRIC_GAUGE,
                &inflight,
                None,
                None,
            ),
        ];
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
        let self_scope = ScopeMetrics {
            scope: Some(scope(schema::SELF_SCOPE)),
            metrics: self.self_metrics(now, stats),
            schema_url: String::new(),
        };
        wire::request(&resource, &scope(schema::SCOPE), &metrics, &self_scope)
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
        zero_threshold: latency_slot_upper_bound_s(0),
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
        explicit_bounds: (0..LATENCY_SLOTS).map(latency_slot_upper_bound_s).collect(),
        exemplars: vec![],
        flags: 0,
        min: None,
        max: None,
    }
}

/// Attribute sets encoded once and reused: per (cgroup, device) while the enricher hands
/// out the same workload and NAS objects, and the few attributes of a series' own.
#[derive(Debug, Default)]
struct AttrCache {
    base: HashMap<(u64, u32), CachedBase>,
    own: HashMap<(u32, Own), Vec<u8>>,
}

#[derive(Debug)]
struct CachedBase {
    workload: Option<Arc<Workload>>,
    nas: Option<Arc<NasView>>,
    /// Encoded attributes, by the field tag of the data point type they go into.
    by_tag: HashMap<u32, Vec<u8>>,
}

/// A series' own attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Own {
    Op(Operation),
    Error(u16),
    Direction(Operation),
    Overflow,
}

fn same<T>(a: Option<&Arc<T>>, b: Option<&Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

impl AttrCache {
    fn base(&mut self, cg: u64, dev: u32, names: &Names, tag: u32) -> &[u8] {
        let workload = names.workloads.get(&cg);
        let nas = names.nas_of(dev, cg);
        let entry = self.base.entry((cg, dev)).or_insert_with(|| CachedBase {
            workload: None,
            nas: None,
            by_tag: HashMap::new(),
        });
        if entry.by_tag.is_empty() || !same(entry.workload.as_ref(), workload) || !same(entry.nas.as_ref(), nas) {
            entry.workload = workload.cloned();
            entry.nas = nas.cloned();
            entry.by_tag.clear();
        }
        entry.by_tag.entry(tag).or_insert_with(|| {
            let mut buf = Vec::new();
            let attrs = workload
                .map(|w| w.attributes())
                .unwrap_or_default()
                .into_iter()
                .chain(nas.map(|n| n.attributes()).unwrap_or_default());
            for (k, v) in attrs {
                prost::encoding::message::encode(tag, &kv(k, v), &mut buf);
            }
            // A device no mount names (an RPC client not learned yet, a super block that
            // lived only during a mount) still gets series of its own.
            if nas.is_none() {
                prost::encoding::message::encode(
                    tag,
                    &kv(schema::ATTR_DEVICE, nasflow_probe::dev_string(dev)),
                    &mut buf,
                );
            }
            buf
        })
    }

    fn own(&mut self, tag: u32, own: Own) -> &[u8] {
        self.own.entry((tag, own)).or_insert_with(|| {
            let a = match own {
                Own::Op(op) => kv(schema::ATTR_OPERATION, op.name()),
                Own::Error(e) => kv(schema::ATTR_ERROR_TYPE, errno_name(e)),
                Own::Direction(op) => {
                    let read = matches!(op, Operation::Read | Operation::AppRead);
                    kv(schema::ATTR_IO_DIRECTION, if read { "read" } else { "write" })
                }
                Own::Overflow => KeyValue {
                    key: schema::ATTR_OVERFLOW.to_owned(),
                    value: Some(AnyValue { value: Some(any_value::Value::BoolValue(true)) }),
                    key_strindex: 0,
                },
            };
            let mut buf = Vec::new();
            prost::encoding::message::encode(tag, &a, &mut buf);
            buf
        })
    }

    /// Keeps only the entries of origins still exported.
    fn retain(&mut self, seen: &std::collections::HashSet<(u64, u32)>) {
        self.base.retain(|k, _| seen.contains(k));
    }
}

/// Protobuf framing of the OTLP request, written by hand around prost-encoded leaves so the
/// big repeated fields are copied once and attribute sets are not rebuilt per data point.
mod wire {
    use opentelemetry_proto::tonic::{
        common::v1::InstrumentationScope, metrics::v1::ScopeMetrics, resource::v1::Resource,
    };
    use prost::{
        encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType},
        Message,
    };

    /// `NumberDataPoint.attributes`.
    pub const NUMBER_POINT_ATTRS: u32 = 7;
    /// `HistogramDataPoint.attributes`.
    pub const HIST_POINT_ATTRS: u32 = 9;
    /// `ExponentialHistogramDataPoint.attributes`.
    pub const EXP_HIST_POINT_ATTRS: u32 = 1;
    /// `Sum`/`Histogram`/`ExponentialHistogram.data_points`.
    pub const DATA_POINTS: u32 = 1;
    /// `Metric.gauge`.
    pub const METRIC_GAUGE: u32 = 5;
    /// `Metric.sum`.
    pub const METRIC_SUM: u32 = 7;
    /// `Metric.histogram`.
    pub const METRIC_HISTOGRAM: u32 = 9;
    /// `Metric.exponential_histogram`.
    pub const METRIC_EXP_HISTOGRAM: u32 = 10;

    /// Appends a message (never fails on a `Vec`).
    pub fn encode(m: &impl Message, buf: &mut Vec<u8>) {
        buf.reserve(m.encoded_len());
        if m.encode(buf).is_err() {
            unreachable!("a Vec grows as needed");
        }
    }

    fn len_delimited_len(tag: u32, len: usize) -> usize {
        key_len(tag) + encoded_len_varint(len as u64) + len
    }

    fn put_header(buf: &mut Vec<u8>, tag: u32, len: usize) {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(len as u64, buf);
    }

    /// Appends field `tag` holding already encoded message bytes.
    pub fn put_message(buf: &mut Vec<u8>, tag: u32, body: &[u8]) {
        put_header(buf, tag, body.len());
        buf.extend_from_slice(body);
    }

    /// One `Metric`: its strings, and its data field around encoded data points.
    pub struct MetricParts<'a> {
        head: Vec<u8>,
        data_field: u32,
        points: &'a [u8],
        tail: Vec<u8>,
    }

    impl<'a> MetricParts<'a> {
        /// `(name, description, unit)`, the data field, the data points and the data's
        /// temporality (none for gauges) and monotonicity (sums only).
        pub fn new(
            meta: (&str, &str, &str),
            data_field: u32,
            points: &'a [u8],
            temporality: Option<i32>,
            monotonic: Option<bool>,
        ) -> Self {
            let mut head = Vec::new();
            for (tag, s) in [(1, meta.0), (2, meta.1), (3, meta.2)] {
                if !s.is_empty() {
                    prost::encoding::string::encode(tag, &s.to_owned(), &mut head);
                }
            }
            let mut tail = Vec::new();
            if let Some(t) = temporality {
                prost::encoding::int32::encode(2, &t, &mut tail);
            }
            if let Some(m) = monotonic {
                prost::encoding::bool::encode(3, &m, &mut tail);
            }
            Self { head, data_field, points, tail }
        }

        fn data_len(&self) -> usize {
            self.points.len() + self.tail.len()
        }

        fn body_len(&self) -> usize {
            self.head.len() + len_delimited_len(self.data_field, self.data_len())
        }

        fn write(&self, buf: &mut Vec<u8>, tag: u32) {
            put_header(buf, tag, self.body_len());
            buf.extend_from_slice(&self.head);
            put_header(buf, self.data_field, self.data_len());
            buf.extend_from_slice(self.points);
            buf.extend_from_slice(&self.tail);
        }
    }

    /// The whole `ExportMetricsServiceRequest`: one resource, the NFS scope with `metrics`,
    /// and the self-telemetry scope.
    pub fn request(
        resource: &Resource,
        scope: &InstrumentationScope,
        metrics: &[MetricParts<'_>],
        self_scope: &ScopeMetrics,
    ) -> Vec<u8> {
        let scope_len = scope.encoded_len();
        let nfs_len =
            len_delimited_len(1, scope_len) + metrics.iter().map(|m| len_delimited_len(2, m.body_len())).sum::<usize>();
        let self_len = self_scope.encoded_len();
        let rm_len = len_delimited_len(1, resource.encoded_len())
            + len_delimited_len(2, nfs_len)
            + len_delimited_len(2, self_len);
        let mut buf = Vec::with_capacity(len_delimited_len(1, rm_len));
        put_header(&mut buf, 1, rm_len);
        put_header(&mut buf, 1, resource.encoded_len());
        encode(resource, &mut buf);
        put_header(&mut buf, 2, nfs_len);
        put_header(&mut buf, 1, scope_len);
        encode(scope, &mut buf);
        for m in metrics {
            m.write(&mut buf, 2);
        }
        put_header(&mut buf, 2, self_len);
        encode(self_scope, &mut buf);
        buf
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
    use opentelemetry_proto::tonic::{collector::metrics::v1::ExportMetricsServiceRequest, metrics::v1::metric::Data};

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
            retransmits: 0,
            rtt: None,
        }
    }

    fn decoded(e: &mut Encoder, s: &Snapshot, n: &Names, st: &SelfStats) -> (u64, ExportMetricsServiceRequest) {
        let (seq, raw) = e.encode(s, n, st);
        (seq, crate::transport::decode(&raw).expect("a valid ExportMetricsServiceRequest"))
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

    #[test]
    fn devices_without_a_mount_keep_series_of_their_own() {
        // An unlearned RPC client (dev 0) and a super block that lived only during a mount
        // (0:62): neither has NAS attributes, both must stay distinct series.
        let mut unknown = row(7, Operation::Rpc(nasflow_probe::ProcName::new("FSINFO")), 0, 7, 0, &[]);
        unknown.dev = 0;
        let mut transient = unknown.clone();
        transient.dev = 62;
        transient.ops = 2;
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Cumulative, 100));
        let (_, r) = decoded(&mut e, &snap(vec![unknown, transient]), &names(&[]), &SelfStats::default());
        let Some(Data::Sum(sum)) = &metric(&r, schema::OPERATION_COUNT).data else { panic!("sum") };
        let devices: Vec<_> =
            sum.data_points.iter().map(|p| attr(&p.attributes, schema::ATTR_DEVICE).cloned()).collect();
        assert_eq!(devices, vec![Some(s("0:0")), Some(s("0:62"))]);
        assert_eq!(ints(metric(&r, schema::OPERATION_COUNT)), vec![7, 2]);
    }

    #[test]
    fn empty_histogram_and_explicit_bounds() {
        let rows = vec![row(7, Operation::Commit, 0, 0, 0, &[]), row(8, Operation::Read, 0, 1, 1, &[1_000_000])];
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Cumulative, 100));
        let (_, r) = decoded(&mut e, &snap(rows.clone()), &names(&[]), &SelfStats::default());
        let Some(Data::ExponentialHistogram(h)) = &metric(&r, schema::OPERATION_DURATION).data else { panic!("exp") };
        assert_eq!((h.data_points[0].count, h.data_points[0].positive.as_ref()), (0, None));

        let mut e = Encoder::new(opts(HistogramKind::Explicit, Temporality::Cumulative, 100));
        let (_, r) = decoded(&mut e, &snap(rows), &names(&[]), &SelfStats::default());
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
    fn delta_is_against_the_last_accepted_export() {
        let mut e = Encoder::new(opts(HistogramKind::Exponential, Temporality::Delta, 100));
        let (s1, r1) =
            decoded(&mut e, &snap(vec![row(7, Operation::Read, 0, 10, 100, &[])]), &names(&[]), &SelfStats::default());
        assert_eq!(ints(metric(&r1, schema::OPERATION_COUNT)), vec![10]);
        e.acknowledge(s1);
        let (_s2, r2) =
            decoded(&mut e, &snap(vec![row(7, Operation::Read, 0, 15, 150, &[])]), &names(&[]), &SelfStats::default());
        assert_eq!(ints(metric(&r2, schema::OPERATION_COUNT)), vec![5]);
        // r2 was never accepted (collector down): the next delta covers both intervals.
        let (s3, r3) =
            decoded(&mut e, &snap(vec![row(7, Operation::Read, 0, 22, 220, &[])]), &names(&[]), &SelfStats::default());
        assert_eq!(ints(metric(&r3, schema::OPERATION_COUNT)), vec![12]);
        assert_eq!(ints(metric(&r3, schema::IO)), vec![120]);
        let Some(Data::Sum(sum)) = &metric(&r3, schema::OPERATION_COUNT).data else { panic!("sum") };
        assert_eq!(sum.aggregation_temporality, AggregationTemporality::Delta as i32);
        e.acknowledge(s3);
        let (_, r4) =
            decoded(&mut e, &snap(vec![row(7, Operation::Read, 0, 22, 220, &[])]), &names(&[]), &SelfStats::default());
        assert_eq!(ints(metric(&r4, schema::OPERATION_COUNT)), vec![0]);
        let points: HashSet<u64> = match &metric(&r4, schema::OPERATION_COUNT).data {
            Some(Data::Sum(s)) => s.data_points.iter().map(|p| p.start_time_unix_nano).collect(),
            _ => HashSet::new(),
        };
        assert_eq!(points.len(), 1);
    }
}
