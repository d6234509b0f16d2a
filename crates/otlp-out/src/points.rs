//! Series values and the OTLP data points they become. Histograms carry the kernel's log2
//! slots as they are: no sample is re-recorded. Slot `s` (s >= 1) holds latencies in
//! (2^(s-31), 2^(s-30)] seconds, which is exactly OTLP's exponential bucket `s - 31` at scale
//! 0; slot 0 (at most 2^-30 s) is the zero bucket.

use nasflow_probe::{latency_slot_upper_bound_s, Histogram, LATENCY_SLOTS};
use opentelemetry_proto::tonic::{
    common::v1::KeyValue,
    metrics::v1::{
        exponential_histogram_data_point::Buckets, number_data_point, Exemplar, ExponentialHistogramDataPoint,
        HistogramDataPoint, NumberDataPoint,
    },
};

/// How latency histograms are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistogramKind {
    /// ExponentialHistogram at scale 0: kernel slots one to one.
    Exponential,
    /// Histogram with explicit bounds at the same powers of two.
    Explicit,
}

/// The value of one series at one time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// A counter.
    Sum(u64),
    /// A latency histogram.
    Hist(Box<Histogram>),
}

impl Value {
    pub(crate) fn zero_like(&self) -> Self {
        match self {
            Self::Sum(_) => Self::Sum(0),
            Self::Hist(_) => Self::Hist(Box::default()),
        }
    }

    /// `self - o`, or `None` when it went down (a reset).
    pub(crate) fn minus(&self, o: &Self) -> Option<Self> {
        match (self, o) {
            (Self::Sum(a), Self::Sum(b)) => a.checked_sub(*b).map(Self::Sum),
            (Self::Hist(a), Self::Hist(b)) => a.minus(b).map(|h| Self::Hist(Box::new(h))),
            _ => None,
        }
    }

    pub(crate) fn add(&mut self, o: &Self) {
        match (self, o) {
            (Self::Sum(a), Self::Sum(b)) => *a += b,
            (Self::Hist(a), Self::Hist(b)) => a.add(b),
            _ => {}
        }
    }
}

/// An integer sum or gauge point.
pub(crate) fn number(attributes: Vec<KeyValue>, start: u64, now: u64, v: u64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        exemplars: vec![],
        flags: 0,
        value: Some(number_data_point::Value::AsInt(i64::try_from(v).unwrap_or(i64::MAX))),
    }
}

/// A floating-point gauge point.
pub(crate) fn gauge(attributes: Vec<KeyValue>, now: u64, v: f64) -> NumberDataPoint {
    NumberDataPoint {
        attributes,
        start_time_unix_nano: 0,
        time_unix_nano: now,
        exemplars: vec![],
        flags: 0,
        value: Some(number_data_point::Value::AsDouble(v)),
    }
}

/// The kernel slots as an exponential histogram at scale 0.
pub(crate) fn exponential(
    attributes: Vec<KeyValue>,
    start: u64,
    now: u64,
    h: &Histogram,
    exemplars: Vec<Exemplar>,
) -> ExponentialHistogramDataPoint {
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
        count: h.count(),
        sum: Some(h.sum_ns as f64 / 1e9),
        scale: 0,
        zero_count: h.slots[0],
        positive,
        negative: None,
        flags: 0,
        exemplars,
        min: None,
        max: None,
        zero_threshold: latency_slot_upper_bound_s(0),
    }
}

/// The kernel slots as a classic histogram with power-of-two bounds.
pub(crate) fn explicit(
    attributes: Vec<KeyValue>,
    start: u64,
    now: u64,
    h: &Histogram,
    exemplars: Vec<Exemplar>,
) -> HistogramDataPoint {
    let mut bucket_counts = h.slots.to_vec();
    bucket_counts.push(0);
    HistogramDataPoint {
        attributes,
        start_time_unix_nano: start,
        time_unix_nano: now,
        count: h.count(),
        sum: Some(h.sum_ns as f64 / 1e9),
        bucket_counts,
        explicit_bounds: (0..LATENCY_SLOTS).map(latency_slot_upper_bound_s).collect(),
        exemplars,
        flags: 0,
        min: None,
        max: None,
    }
}
