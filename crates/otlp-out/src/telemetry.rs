//! The agent's own metrics (scope `nasflow.self`), from the descriptors in
//! [`schema::SELF_METRICS`](crate::schema::SELF_METRICS).

use opentelemetry_proto::tonic::metrics::v1::{metric, AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum};

use crate::{
    attrs::kv,
    delivery::DeliveryStats,
    points::number,
    schema::{self, Instrument, SelfMetric},
};

/// The agent's own counters, exported under [`schema::SELF_SCOPE`].
#[derive(Debug, Clone, Default)]
pub struct SelfStats {
    /// What delivery did so far.
    pub delivery: DeliveryStats,
    /// Probe health counters, by reason.
    pub probe_drops: Vec<(&'static str, u64)>,
    /// Naming misses so far.
    pub enrich_misses: u64,
    /// Kubelet pod tables loaded so far.
    pub kubelet_refreshes: u64,
    /// Every degraded state the agent knows, and whether it holds now.
    pub degraded: Vec<(&'static str, bool)>,
    /// Fill of the probe's bounded kernel maps: (map, entries, capacity).
    pub maps: Vec<(&'static str, u64, u64)>,
    /// BPF programs attached now.
    pub attached_programs: u64,
    /// Slow-operation spans by outcome (empty when no spans are sent).
    pub spans: Vec<(&'static str, u64)>,
}

/// What the encoder itself knows: series admitted now and folded so far.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeriesStats {
    pub(crate) admitted: usize,
    pub(crate) overflowed: u64,
}

/// The self-telemetry metrics of one request; counters start at `start` (the agent's start).
pub(crate) fn metrics(stats: &SelfStats, series: SeriesStats, start: u64, now: u64) -> Vec<Metric> {
    let one = |v: u64| vec![number(vec![], start, now, v)];
    let gauge = |v: u64| vec![number(vec![], 0, now, v)];
    let d = &stats.delivery;
    let by_reason = |m: &[(String, u64)]| -> Vec<NumberDataPoint> {
        m.iter().map(|(reason, v)| number(vec![kv("reason", reason.as_str())], start, now, *v)).collect()
    };
    let drops: Vec<(String, u64)> = d.drops.iter().map(|(k, v)| (k.clone(), *v)).collect();
    let by = |key: &str, v: &[(&'static str, u64)]| -> Vec<NumberDataPoint> {
        v.iter().map(|(k, v)| number(vec![kv(key, *k)], 0, now, *v)).collect()
    };
    let degraded: Vec<(&'static str, u64)> = stats.degraded.iter().map(|(s, on)| (*s, u64::from(*on))).collect();
    let entries: Vec<(&'static str, u64)> = stats.maps.iter().map(|(m, used, _)| (*m, *used)).collect();
    let capacity: Vec<(&'static str, u64)> = stats.maps.iter().map(|(m, _, cap)| (*m, *cap)).collect();
    let spans = stats.spans.iter().map(|(k, v)| number(vec![kv("outcome", *k)], start, now, *v)).collect();
    let values: [(SelfMetric, Vec<NumberDataPoint>); 18] = [
        (schema::SELF_EXPORT_FAILURES, one(d.failures)),
        (schema::SELF_SERIES, gauge(u64::try_from(series.admitted).unwrap_or(u64::MAX))),
        (schema::SELF_OVERFLOWED, one(series.overflowed)),
        (
            schema::SELF_PROBE_DROPS,
            stats.probe_drops.iter().map(|(reason, v)| number(vec![kv("reason", *reason)], start, now, *v)).collect(),
        ),
        (schema::SELF_ENRICH_MISSES, one(stats.enrich_misses)),
        (schema::SELF_KUBELET_REFRESHES, one(stats.kubelet_refreshes)),
        (schema::SELF_EXPORT_REQUESTS, one(d.requests)),
        (schema::SELF_EXPORT_BYTES, one(d.bytes)),
        (schema::SELF_EXPORT_RETRIES, one(d.retries)),
        (schema::SELF_EXPORT_DROPS, by_reason(&drops)),
        (schema::SELF_EXPORT_REJECTED, one(d.rejected_points)),
        (schema::SELF_EXPORT_PARTS, gauge(d.parts_last_interval)),
        (schema::SELF_EXPORT_TOMBSTONES, gauge(d.tombstones)),
        (schema::SELF_DEGRADED, by("state", &degraded)),
        (schema::SELF_MAP_ENTRIES, by("map", &entries)),
        (schema::SELF_MAP_CAPACITY, by("map", &capacity)),
        (schema::SELF_PROGRAMS, gauge(stats.attached_programs)),
        (schema::SELF_SPANS, spans),
    ];
    values
        .into_iter()
        .map(|(m, data_points)| Metric {
            name: m.name.to_owned(),
            description: m.description.to_owned(),
            unit: m.unit.to_owned(),
            metadata: vec![],
            data: Some(match m.instrument {
                Instrument::Gauge => metric::Data::Gauge(Gauge { data_points }),
                Instrument::Counter | Instrument::Histogram => metric::Data::Sum(Sum {
                    data_points,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
            }),
        })
        .collect()
}
