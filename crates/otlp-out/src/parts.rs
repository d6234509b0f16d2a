//! An interval (and the tombstones of ended series) as requests: values as the configured
//! temporality wants them, measured against what the collector answered, framed into parts
//! that each stay under the size bound. All parts of an interval carry the same time; each
//! repeats the resource and the scope; the first also carries the self-telemetry.

use std::{collections::HashMap, sync::Arc};

use opentelemetry_proto::tonic::{
    common::v1::InstrumentationScope,
    metrics::v1::{AggregationTemporality, ScopeMetrics},
    resource::v1::Resource,
};

use crate::{
    interval::{Interval, SeriesPoint},
    points::{self, HistogramKind, Value},
    schema::{Instrument, METRICS},
    series::{SeriesKey, Temporality},
    wire,
};

/// How requests are framed.
#[derive(Debug, Clone)]
pub(crate) struct Framing {
    /// The resource every request names.
    pub(crate) resource: Resource,
    /// The NFS metrics' scope.
    pub(crate) scope: InstrumentationScope,
    /// The self-telemetry scope.
    pub(crate) self_scope: InstrumentationScope,
    /// Histogram encoding.
    pub(crate) histogram: HistogramKind,
    /// Temporality of the NFS metrics.
    pub(crate) temporality: Temporality,
    /// Largest request, encoded and uncompressed.
    pub(crate) max_bytes: usize,
}

/// A series as one request carries it; recorded as answered with the request.
#[derive(Debug)]
pub(crate) struct Member {
    /// Which series.
    pub(crate) key: SeriesKey,
    /// Its cumulative value in the request (the baseline of the next delta once answered).
    pub(crate) cumulative: Value,
    /// A tombstone: answered, it is forgotten.
    pub(crate) tombstone: bool,
}

/// One request.
#[derive(Debug)]
pub(crate) struct Part {
    /// The encoded `ExportMetricsServiceRequest`.
    pub(crate) body: Arc<Vec<u8>>,
    /// The series it carries.
    pub(crate) members: Vec<Member>,
}

/// What the collector answered last per series: the cumulative value and the interval time.
pub(crate) type Answered = HashMap<SeriesKey, (Value, u64)>;

/// Room kept per metric and wrapper for length prefixes that grow with the bodies.
const SLACK_PER_FIELD: usize = 16;

fn temporality_code(t: Temporality) -> i32 {
    let code = match t {
        Temporality::Cumulative => AggregationTemporality::Cumulative,
        Temporality::Delta => AggregationTemporality::Delta,
    };
    code as i32
}

impl Framing {
    /// The request with these per-metric point buffers (and, for the first part, the
    /// self-telemetry).
    fn request(&self, bufs: &[Vec<u8>], self_scope: Option<&ScopeMetrics>) -> Vec<u8> {
        let temporality = temporality_code(self.temporality);
        let hist_field = match self.histogram {
            HistogramKind::Exponential => wire::METRIC_EXP_HISTOGRAM,
            HistogramKind::Explicit => wire::METRIC_HISTOGRAM,
        };
        let metrics: Vec<wire::MetricParts<'_>> = METRICS
            .iter()
            .zip(bufs)
            .map(|(m, buf)| {
                let (field, temporality, monotonic) = match m.instrument {
                    Instrument::Counter => (wire::METRIC_SUM, Some(temporality), Some(true)),
                    Instrument::Histogram => (hist_field, Some(temporality), None),
                    Instrument::Gauge => (wire::METRIC_GAUGE, None, None),
                };
                wire::MetricParts::new((m.name, m.description, m.unit), field, buf, temporality, monotonic)
            })
            .collect();
        wire::request(&self.resource, &self.scope, &metrics, self_scope)
    }

    /// The field tag of attributes in a data point of `metric`.
    pub(crate) fn attr_tag(&self, metric: usize) -> u32 {
        match METRICS[metric].instrument {
            Instrument::Histogram => match self.histogram {
                HistogramKind::Exponential => wire::EXP_HIST_POINT_ATTRS,
                HistogramKind::Explicit => wire::HIST_POINT_ATTRS,
            },
            Instrument::Counter | Instrument::Gauge => wire::NUMBER_POINT_ATTRS,
        }
    }

    /// One encoded data point: the value (and its range) as the temporality wants it, then
    /// the attributes.
    fn point(&self, p: &SeriesPoint, time: u64, answered: &Answered, out: &mut Vec<u8>) {
        let (value, since) = match self.temporality {
            Temporality::Cumulative => (None, p.start),
            Temporality::Delta => match answered.get(&p.key) {
                // Went down: the series restarted; it counts from its start.
                Some((base, at)) => match p.value.minus(base) {
                    Some(d) => (Some(d), *at),
                    None => (None, p.start),
                },
                None => (None, p.start),
            },
        };
        let value = value.as_ref().unwrap_or(&p.value);
        match value {
            Value::Sum(v) => wire::encode(&points::number(vec![], since, time, *v), out),
            Value::Hist(h) => match self.histogram {
                HistogramKind::Exponential => {
                    wire::encode(&points::exponential(vec![], since, time, h, p.exemplars.clone()), out);
                }
                HistogramKind::Explicit => {
                    wire::encode(&points::explicit(vec![], since, time, h, p.exemplars.clone()), out);
                }
            },
        }
        for a in &p.attrs {
            out.extend_from_slice(a);
        }
    }

    /// The requests for `interval` and the tombstones not answered yet, each within
    /// `max_bytes`.
    pub(crate) fn parts<'a>(
        &self,
        interval: &Interval,
        tombstones: impl Iterator<Item = &'a SeriesPoint>,
        answered: &Answered,
    ) -> Vec<Part> {
        let self_scope = ScopeMetrics {
            scope: Some(self.self_scope.clone()),
            metrics: interval.self_metrics.clone(),
            schema_url: String::new(),
        };
        let empty = vec![Vec::new(); METRICS.len()];
        let mut first = empty.clone();
        for (metric, points) in &interval.gauges {
            first[*metric].extend_from_slice(points);
        }
        let slack = SLACK_PER_FIELD * (METRICS.len() + 4);
        let fixed_first = self.request(&first, Some(&self_scope)).len() + slack;
        let fixed_other = self.request(&empty, None).len() + slack;

        let mut parts = Vec::new();
        let mut bufs = first;
        let mut members: Vec<Member> = Vec::new();
        let mut size = fixed_first;
        let mut scratch = Vec::with_capacity(1024);
        let live = interval.points.iter().filter(|p| !p.ended);
        for p in live.map(|p| (p, false)).chain(tombstones.map(|p| (p, true))) {
            let (p, tombstone) = p;
            scratch.clear();
            self.point(p, interval.time, answered, &mut scratch);
            let len = wire::len_delimited_len(wire::DATA_POINTS, scratch.len());
            if size + len > self.max_bytes && !members.is_empty() {
                let self_part = parts.is_empty().then_some(&self_scope);
                parts.push(Part {
                    body: Arc::new(self.request(&bufs, self_part)),
                    members: std::mem::take(&mut members),
                });
                bufs.clone_from(&empty);
                size = fixed_other;
            }
            wire::put_message(&mut bufs[p.key.metric], wire::DATA_POINTS, &scratch);
            size += len;
            members.push(Member { key: p.key, cumulative: p.value.clone(), tombstone });
        }
        let self_part = parts.is_empty().then_some(&self_scope);
        parts.push(Part { body: Arc::new(self.request(&bufs, self_part)), members });
        parts
    }
}
