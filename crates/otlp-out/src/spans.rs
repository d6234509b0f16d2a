//! Slow operations as spans (kind CLIENT, `NFS WRITE`), sent by the OpenTelemetry SDK's
//! batch processor and OTLP exporter to the collector, with the pod, task and NAS attributes
//! of the metrics. Each span's ids go back to the encoder as an exemplar of its
//! `nfs.client.operation.duration` series, so a latency spike links to its calls.

use std::{
    borrow::Cow,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use nasflow_enrich::{errno::errno_name, names::Names};
use nasflow_probe::{dev_string, Operation, SlowOp};
use opentelemetry::{
    trace::{Span as _, SpanBuilder, SpanKind, Status, Tracer as _, TracerProvider as _},
    Context, InstrumentationScope, KeyValue,
};
use opentelemetry_sdk::{
    error::OTelSdkResult,
    runtime::Tokio,
    trace::{
        span_processor_with_async_runtime::BatchSpanProcessor, BatchConfigBuilder, Sampler, SdkTracer,
        SdkTracerProvider, SpanData, SpanExporter,
    },
    Resource,
};

use crate::{schema, transport::Transport};

/// Why spans cannot be sent.
#[derive(Debug, thiserror::Error)]
pub enum SpansError {
    /// The OTLP span exporter could not be built.
    #[error("building the OTLP span exporter for {endpoint}: {detail}")]
    Exporter {
        /// Where the spans would go.
        endpoint: String,
        /// Why not.
        detail: String,
    },
}

/// A slow operation's span, as the encoder links it from its duration series: which series,
/// the span's ids, its duration and when it ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpanLink {
    /// The series' cgroup.
    pub cgroup: u64,
    /// The series' device.
    pub dev: u32,
    /// The series' operation.
    pub op: Operation,
    /// The series' watched directory (0 for none).
    pub dir: u16,
    /// The span's trace id.
    pub trace_id: [u8; 16],
    /// The span's id.
    pub span_id: [u8; 8],
    /// The operation's duration, seconds: the exemplar's value.
    pub seconds: f64,
    /// When it ended: the exemplar's time.
    pub at: SystemTime,
}

/// What became of the spans so far (`nasflow.spans`).
#[derive(Debug, Default)]
pub struct SpanCounts {
    /// Handed to the SDK.
    handed: AtomicU64,
    /// The collector took them.
    exported: AtomicU64,
    /// Their export failed.
    failed: AtomicU64,
    /// Not handed over: the SDK's queue would have been full.
    dropped: AtomicU64,
}

impl SpanCounts {
    /// `(outcome, spans)` for the self-telemetry.
    #[must_use]
    pub fn outcomes(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("exported", self.exported.load(Ordering::Relaxed)),
            ("failed", self.failed.load(Ordering::Relaxed)),
            ("dropped", self.dropped.load(Ordering::Relaxed)),
        ]
    }

    /// Spans handed over whose export has not ended yet.
    fn queued(&self) -> u64 {
        let ended = self.exported.load(Ordering::Relaxed) + self.failed.load(Ordering::Relaxed);
        self.handed.load(Ordering::Relaxed).saturating_sub(ended)
    }
}

/// The SDK's exporter, counting what each export did with its spans.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    counts: Arc<SpanCounts>,
}

/// One export's spans: failed unless the export says otherwise, also when the batch
/// processor gives up on it (drops the export's future at its own timeout).
struct InExport<'a> {
    counts: &'a SpanCounts,
    spans: u64,
    exported: bool,
}

impl Drop for InExport<'_> {
    fn drop(&mut self) {
        let outcome = if self.exported { &self.counts.exported } else { &self.counts.failed };
        outcome.fetch_add(self.spans, Ordering::Relaxed);
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut settle = InExport { counts: &self.counts, spans: batch.len() as u64, exported: false };
        let result = self.inner.export(batch).await;
        match &result {
            Ok(()) => settle.exported = true,
            Err(e) => tracing::debug!(error = %e, spans = settle.spans, "exporting slow-operation spans failed"),
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Sends slow operations as spans.
#[derive(Debug)]
pub struct SpanSink {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    counts: Arc<SpanCounts>,
    /// Spans handed over and not exported yet at most: the SDK's queue size.
    queue: u64,
}

impl SpanSink {
    /// An SDK tracer provider with a batch processor on the tokio runtime (so export never
    /// blocks the pipe) exporting over `transport` (for OTLP/HTTP its URL is the traces URL).
    /// `queue` bounds the spans waiting for export. Must be called inside the runtime.
    pub fn new(
        transport: &Transport,
        resource: &[(String, String)],
        version: &str,
        queue: usize,
    ) -> Result<Self, SpansError> {
        let err = |detail: String| SpansError::Exporter { endpoint: transport.endpoint().to_owned(), detail };
        // The traces URL is the transport's own (the config derives it).
        let exporter = crate::sdk_exporter!(opentelemetry_otlp::SpanExporter, transport, str::to_owned)
            .map_err(|e| err(e.to_string()))?;
        let counts = Arc::new(SpanCounts::default());
        let exporter = Counted { inner: exporter, counts: Arc::clone(&counts) };
        let resource = Resource::builder_empty()
            .with_attributes(resource.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())))
            .build();
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(queue)
            .with_scheduled_delay(Duration::from_secs(1))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_resource(resource)
            // Every slow operation is already chosen: none is sampled away (whatever
            // OTEL_TRACES_SAMPLER says), or an exemplar would point at nothing.
            .with_sampler(Sampler::AlwaysOn)
            .with_span_processor(BatchSpanProcessor::builder(exporter, Tokio).with_batch_config(batch).build())
            .build();
        let scope = InstrumentationScope::builder(schema::SPAN_SCOPE).with_version(version.to_owned()).build();
        let tracer = provider.tracer_with_scope(scope);
        Ok(Self { provider, tracer, counts, queue: queue as u64 })
    }

    /// What became of the spans so far.
    #[must_use]
    pub fn counts(&self) -> &SpanCounts {
        &self.counts
    }

    /// Hands one span per slow operation to the batch processor (never waits on the
    /// network) and returns their links for the duration series' exemplars. Operations that
    /// find the queue full are counted as dropped.
    #[must_use]
    pub fn record(&self, slow: &[SlowOp], names: &Names) -> Vec<SpanLink> {
        let mut links = Vec::with_capacity(slow.len());
        for o in slow {
            if self.counts.queued() >= self.queue {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let end = o.start + o.duration;
            let builder = SpanBuilder::from_name(span_name(o.op))
                .with_kind(SpanKind::Client)
                .with_start_time(o.start)
                .with_attributes(span_attributes(o, names));
            // A root span each: a slow call is its own trace.
            let mut span = self.tracer.build_with_context(builder, &Context::new());
            span.set_status(status(o.err));
            let ids = span.span_context().clone();
            self.counts.handed.fetch_add(1, Ordering::Relaxed);
            span.end_with_timestamp(end);
            links.push(SpanLink {
                cgroup: o.cgroup,
                dev: o.dev,
                op: o.op,
                dir: o.dir,
                trace_id: ids.trace_id().to_bytes(),
                span_id: ids.span_id().to_bytes(),
                seconds: o.duration.as_secs_f64(),
                at: end,
            });
        }
        links
    }

    /// Sends what is queued and stops (on shutdown; blocks: call it off the runtime).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::debug!(error = %e, "slow-operation spans shutdown");
        }
    }
}

/// `NFS WRITE`, `NFS LOOKUP`, ...: the operation as the metrics name it.
#[must_use]
pub fn span_name(op: Operation) -> String {
    format!("NFS {}", op.name())
}

/// An error status naming the errno of a failed operation; unset for a success.
fn status(err: u16) -> Status {
    if err == 0 {
        Status::Unset
    } else {
        Status::Error { description: Cow::Owned(errno_name(err)) }
    }
}

/// A span's attributes: the workload and NAS attributes of the metrics (or `nfs.device`
/// when no mount names the device), the operation and its outcome, the watched directory,
/// and what the kernel knew of the call: file, offset, bytes, xid, round trip.
#[must_use]
pub fn span_attributes(o: &SlowOp, names: &Names) -> Vec<KeyValue> {
    let mut a: Vec<KeyValue> = Vec::with_capacity(16);
    if let Some(w) = names.workloads.get(&o.cgroup) {
        a.extend(w.attributes().into_iter().map(|(k, v)| KeyValue::new(k, v)));
    }
    match names.nas_of(o.dev, o.cgroup) {
        Some(nas) => a.extend(nas.attributes().into_iter().map(|(k, v)| KeyValue::new(k, v))),
        None => a.push(KeyValue::new(schema::ATTR_DEVICE, dev_string(o.dev))),
    }
    a.push(KeyValue::new(schema::ATTR_OPERATION, o.op.name().to_owned()));
    if o.err != 0 {
        a.push(KeyValue::new(schema::ATTR_ERROR_TYPE, errno_name(o.err)));
    }
    if let Some(d) = names.directory(o.dir) {
        a.push(KeyValue::new(schema::ATTR_DIRECTORY, d.to_owned()));
    }
    if let Some((fileid, offset)) = o.file {
        a.push(KeyValue::new(schema::ATTR_FILE_ID, i64::try_from(fileid).unwrap_or(i64::MAX)));
        a.push(KeyValue::new(schema::ATTR_FILE_OFFSET, offset));
    }
    if matches!(o.op, Operation::Read | Operation::Write) {
        a.push(KeyValue::new(schema::ATTR_IO_BYTES, i64::try_from(o.bytes).unwrap_or(i64::MAX)));
    }
    if let Some(rpc) = o.rpc {
        a.push(KeyValue::new(schema::ATTR_RPC_XID, i64::from(rpc.xid)));
        if let Some(rtt) = rpc.rtt {
            a.push(KeyValue::new(schema::ATTR_RPC_RTT, rtt.as_secs_f64()));
        }
    }
    a
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use nasflow_enrich::names::{NasView, Workload};
    use nasflow_probe::{ProcName, RpcFacts};
    use opentelemetry::Value;

    use super::*;

    fn slow(op: Operation, err: u16, file: Option<(u64, i64)>) -> SlowOp {
        SlowOp {
            cgroup: 7,
            dev: 61,
            op,
            err,
            dir: 1,
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            duration: Duration::from_millis(1500),
            bytes: 65_536,
            file,
            rpc: Some(RpcFacts { xid: 0x8000_0001, rtt: Some(Duration::from_millis(1400)) }),
        }
    }

    fn names() -> Names {
        let mut n = Names::default();
        n.workloads.insert(7, Arc::new(Workload { cgroup_path: Some(Arc::from("/a")), ..Workload::default() }));
        n.nas.insert(
            (61, 7),
            Arc::new(NasView {
                server: "10.0.0.5".into(),
                export: "/exa".into(),
                version: "4.2".into(),
                mount_point: None,
                volume: None,
            }),
        );
        n.directories = Arc::from(vec!["/mnt/nas/team-a".to_owned()]);
        n
    }

    fn get(a: &[KeyValue], k: &str) -> Option<Value> {
        a.iter().find(|kv| kv.key.as_str() == k).map(|kv| kv.value.clone())
    }

    #[test]
    fn an_export_counts_its_spans_once_also_when_given_up() {
        let counts = SpanCounts::default();
        counts.handed.store(7, Ordering::Relaxed);
        drop(InExport { counts: &counts, spans: 4, exported: true });
        // The batch processor drops the export's future at its timeout: failed.
        drop(InExport { counts: &counts, spans: 2, exported: false });
        assert_eq!(counts.outcomes(), vec![("exported", 4), ("failed", 2), ("dropped", 0)]);
        assert_eq!(counts.queued(), 1);
    }

    #[test]
    fn a_write_span_carries_the_metrics_names_and_the_call() {
        let a = span_attributes(&slow(Operation::Write, 0, Some((77, 4096))), &names());
        assert_eq!(get(&a, "process.linux.cgroup"), Some(Value::from("/a")));
        assert_eq!(get(&a, "server.address"), Some(Value::from("10.0.0.5")));
        assert_eq!(get(&a, "nfs.export.path"), Some(Value::from("/exa")));
        assert_eq!(get(&a, "nfs.operation.name"), Some(Value::from("WRITE")));
        assert_eq!(get(&a, "nfs.directory"), Some(Value::from("/mnt/nas/team-a")));
        assert_eq!(get(&a, "nfs.file.id"), Some(Value::I64(77)));
        assert_eq!(get(&a, "nfs.file.offset"), Some(Value::I64(4096)));
        assert_eq!(get(&a, "nfs.io.bytes"), Some(Value::I64(65_536)));
        assert_eq!(get(&a, "nfs.rpc.xid"), Some(Value::I64(0x8000_0001)));
        assert_eq!(get(&a, "nfs.rpc.rtt"), Some(Value::F64(1.4)));
        assert_eq!(get(&a, "error.type"), None);
        assert_eq!(get(&a, "nfs.device"), None, "the NAS names the device");
        assert_eq!(span_name(Operation::Write), "NFS WRITE");
    }

    #[test]
    fn a_failed_lookup_on_an_unnamed_device_has_no_file_and_an_error() {
        let mut o = slow(Operation::Rpc(ProcName::new("LOOKUP")), 2, None);
        o.dev = 99;
        o.rpc = None;
        let a = span_attributes(&o, &names());
        assert_eq!(get(&a, "error.type"), Some(Value::from("ENOENT")));
        assert_eq!(get(&a, "nfs.device"), Some(Value::from("0:99")));
        for k in ["nfs.file.id", "nfs.io.bytes", "nfs.rpc.xid", "nfs.rpc.rtt", "server.address"] {
            assert_eq!(get(&a, k), None, "{k}");
        }
        assert_eq!(status(2), Status::Error { description: "ENOENT".into() });
        assert_eq!(status(0), Status::Unset);
    }
}
