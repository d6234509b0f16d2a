//! Protobuf framing of the OTLP request, written by hand around prost-encoded leaves so the
//! big repeated fields are copied once and attribute sets are not rebuilt per data point.

use opentelemetry_proto::tonic::{common::v1::InstrumentationScope, metrics::v1::ScopeMetrics, resource::v1::Resource};
use prost::{
    encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType},
    Message,
};

/// `NumberDataPoint.attributes`.
pub(crate) const NUMBER_POINT_ATTRS: u32 = 7;
/// `HistogramDataPoint.attributes`.
pub(crate) const HIST_POINT_ATTRS: u32 = 9;
/// `ExponentialHistogramDataPoint.attributes`.
pub(crate) const EXP_HIST_POINT_ATTRS: u32 = 1;
/// `Sum`/`Histogram`/`ExponentialHistogram.data_points`.
pub(crate) const DATA_POINTS: u32 = 1;
/// `Metric.gauge`.
pub(crate) const METRIC_GAUGE: u32 = 5;
/// `Metric.sum`.
pub(crate) const METRIC_SUM: u32 = 7;
/// `Metric.histogram`.
pub(crate) const METRIC_HISTOGRAM: u32 = 9;
/// `Metric.exponential_histogram`.
pub(crate) const METRIC_EXP_HISTOGRAM: u32 = 10;

/// Appends a message (never fails on a `Vec`).
pub(crate) fn encode(m: &impl Message, buf: &mut Vec<u8>) {
    buf.reserve(m.encoded_len());
    if m.encode(buf).is_err() {
        unreachable!("a Vec grows as needed");
    }
}

/// Bytes field `tag` takes around a body of `len` bytes.
pub(crate) fn len_delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

fn put_header(buf: &mut Vec<u8>, tag: u32, len: usize) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

/// Appends field `tag` holding already encoded message bytes.
pub(crate) fn put_message(buf: &mut Vec<u8>, tag: u32, body: &[u8]) {
    put_header(buf, tag, body.len());
    buf.extend_from_slice(body);
}

/// One `Metric`: its strings, and its data field around encoded data points.
pub(crate) struct MetricParts<'a> {
    head: Vec<u8>,
    data_field: u32,
    points: &'a [u8],
    tail: Vec<u8>,
}

impl<'a> MetricParts<'a> {
    /// `(name, description, unit)`, the data field, the data points and the data's
    /// temporality (none for gauges) and monotonicity (sums only).
    pub(crate) fn new(
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
/// and the self-telemetry scope when given.
pub(crate) fn request(
    resource: &Resource,
    scope: &InstrumentationScope,
    metrics: &[MetricParts<'_>],
    self_scope: Option<&ScopeMetrics>,
) -> Vec<u8> {
    let scope_len = scope.encoded_len();
    let nfs_len =
        len_delimited_len(1, scope_len) + metrics.iter().map(|m| len_delimited_len(2, m.body_len())).sum::<usize>();
    let self_len = self_scope.map(Message::encoded_len);
    let rm_len = len_delimited_len(1, resource.encoded_len())
        + len_delimited_len(2, nfs_len)
        + self_len.map_or(0, |l| len_delimited_len(2, l));
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
    if let (Some(s), Some(len)) = (self_scope, self_len) {
        put_header(&mut buf, 2, len);
        encode(s, &mut buf);
    }
    buf
}
