//! What the pipe hands to delivery once per interval: every series' cumulative value with its
//! encoded attributes, the gauges and the self-telemetry, all stamped with one time. Delivery
//! turns it into requests; nothing in it depends on what the collector accepted.

use std::sync::Arc;

use opentelemetry_proto::tonic::metrics::v1::{Exemplar, Metric};

use crate::{points::Value, series::SeriesKey};

/// One series at the interval's time.
#[derive(Debug, Clone)]
pub(crate) struct SeriesPoint {
    /// Which series.
    pub(crate) key: SeriesKey,
    /// Its cumulative value.
    pub(crate) value: Value,
    /// When the series started.
    pub(crate) start: u64,
    /// Its attributes, encoded for its metric's data point type: the workload and NAS part
    /// (shared by the series of one cgroup and device) and its own.
    pub(crate) attrs: Vec<Arc<[u8]>>,
    /// The series ends with this value (its cgroup is gone): delivery keeps it as a tombstone
    /// until a request holding it is answered.
    pub(crate) ended: bool,
    /// Slow operations of the interval in this series (latency histograms only), slowest
    /// first, linking the point to their spans.
    pub(crate) exemplars: Vec<Exemplar>,
}

/// One interval's worth of metrics.
#[derive(Debug)]
pub struct Interval {
    /// Interval number, from 1.
    pub(crate) seq: u64,
    /// When the kernel maps were read, Unix ns: every point's time.
    pub(crate) time: u64,
    /// The row-fed series.
    pub(crate) points: Vec<SeriesPoint>,
    /// Encoded gauge data points per metric (index in `schema::METRICS`), sent as they are.
    pub(crate) gauges: Vec<(usize, Vec<u8>)>,
    /// The agent's own metrics, in the first request of the interval.
    pub(crate) self_metrics: Vec<Metric>,
}

impl Interval {
    /// Interval number, from 1.
    #[must_use]
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Series in it.
    #[must_use]
    pub fn series(&self) -> usize {
        self.points.len()
    }
}
