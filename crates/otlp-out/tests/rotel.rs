//! Interop with a real OpenTelemetry collector, rotel (from `PyPI`). nasflow pushes to rotel over
//! OTLP/gRPC and OTLP/HTTP, rotel forwards over OTLP/gRPC to a receiver in this test, which
//! records what arrived: the assertions are on what a real collector received and passed on.

use std::{
    net::{SocketAddr, TcpListener as StdListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

use nasflow_enrich::names::{Names, Workload};
use nasflow_otlp_out::{
    delivery::{Delivery, DeliveryStats},
    encode::{EncodeOptions, Encoder, HistogramKind, SelfStats, Temporality, DEFAULT_MAX_REQUEST_BYTES},
    spans::SpanSink,
    transport::{Protocol, Transport, TransportConfig},
};
use nasflow_probe::{Histogram, IoRow, Operation, ProcName, RpcFacts, SlowOp, Snapshot, LATENCY_SLOTS};
use opentelemetry_proto::tonic::{
    collector::metrics::v1::{
        metrics_service_server::{MetricsService, MetricsServiceServer},
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    },
    collector::trace::v1::{
        trace_service_server::{TraceService, TraceServiceServer},
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    },
    common::v1::any_value,
    metrics::v1::{exemplar, metric::Data, number_data_point, Metric},
    trace::v1::{span::SpanKind, status::StatusCode, Span},
};

type Got = Arc<Mutex<Vec<ExportMetricsServiceRequest>>>;

struct Sink(Got);

#[tonic::async_trait]
impl MetricsService for Sink {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().expect("lock").push(req.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: None }))
    }
}

type GotSpans = Arc<Mutex<Vec<ExportTraceServiceRequest>>>;

struct SpanSinkService(GotSpans);

#[tonic::async_trait]
impl TraceService for SpanSinkService {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.lock().expect("lock").push(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

async fn receiver() -> (SocketAddr, Got) {
    let (addr, got, _) = receiver_with_traces().await;
    (addr, got)
}

/// A receiver of what rotel forwards: metrics and traces.
async fn receiver_with_traces() -> (SocketAddr, Got, GotSpans) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let got: Got = Arc::default();
    let spans: GotSpans = Arc::default();
    // rotel batches what it forwards: accept large requests here, the limit under test is
    // rotel's own.
    let svc = MetricsServiceServer::new(Sink(Arc::clone(&got)))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(256 << 20);
    let traces = TraceServiceServer::new(SpanSinkService(Arc::clone(&spans)))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .max_decoding_message_size(256 << 20);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .add_service(traces)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    });
    (addr, got, spans)
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port()
}

fn rotel_binary() -> PathBuf {
    if let Ok(p) = std::env::var("ROTEL_AGENT") {
        return PathBuf::from(p);
    }
    let out = Command::new("python3")
        .args(["-c", "import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))"])
        .output()
        .expect("python3");
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(p.is_file(), "rotel-agent not found: pip install rotel (or set ROTEL_AGENT)");
    p
}

struct Rotel {
    child: Child,
    grpc: u16,
    http: u16,
}

impl Rotel {
    fn start(grpc: u16, http: u16, forward_to: SocketAddr) -> Self {
        Self::start_with(grpc, http, forward_to, &[])
    }

    fn start_with(grpc: u16, http: u16, forward_to: SocketAddr, extra: &[&str]) -> Self {
        let pid = std::env::temp_dir().join(format!("rotel-{grpc}.pid"));
        let child = Command::new(rotel_binary())
            .args([
                "start",
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{grpc}"),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{http}"),
            ])
            .args(["--exporter", "otlp", "--otlp-exporter-endpoint", &format!("http://{forward_to}")])
            .args(extra)
            .args(["--batch-timeout", "100ms", "--pid-file"])
            .arg(pid)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rotel-agent");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", grpc)).is_err() {
            assert!(Instant::now() < deadline, "rotel did not listen on {grpc}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, grpc, http }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        self.stop();
    }
}

fn rows(scale: u64) -> Snapshot {
    let mut slots = [0u64; LATENCY_SLOTS];
    slots[20] = 3 * scale;
    slots[23] = scale;
    let row = |op, err, ops, bytes, slots: [u64; LATENCY_SLOTS]| {
        let latency = Histogram { slots, sum_ns: slots.iter().sum::<u64>() * 1_500_000 };
        IoRow::new(7, 61, op, err).with_completed(ops, bytes, latency)
    };
    // A metadata RPC timed end to end and on the wire, two of every six sent twice.
    let mut rtt = Histogram::default();
    rtt.slots[19] = 6 * scale;
    rtt.sum_ns = 6 * scale * 800_000;
    let getattr = row(Operation::Rpc(ProcName::new("GETATTR")), 0, 6 * scale, 0, slots).with_wire(2 * scale, Some(rtt));
    Snapshot {
        taken_at: Some(SystemTime::now()),
        rows: vec![
            row(Operation::Read, 0, 4 * scale, 1_048_576 * scale, slots),
            row(Operation::Read, 5, scale, 0, [0; LATENCY_SLOTS]),
            row(Operation::Write, 0, 2 * scale, 4096 * scale + 7, [0; LATENCY_SLOTS]),
            getattr,
        ],
        ..Snapshot::default()
    }
}

fn names() -> Names {
    let mut n = Names::default();
    let w = Workload { cgroup_path: Some(Arc::from("/system.slice/backup.service")), ..Workload::default() };
    n.workloads.insert(7, Arc::new(w));
    n
}

fn encoder_options() -> EncodeOptions {
    EncodeOptions {
        histogram: HistogramKind::Exponential,
        temporality: Temporality::Cumulative,
        max_series: 1000,
        resource: vec![("service.name".into(), "nasflow".into()), ("k8s.node.name".into(), "node-1".into())],
        scope_version: "test".into(),
        max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
    }
}

fn encoder() -> Encoder {
    Encoder::new(encoder_options())
}

fn transport(protocol: Protocol, rotel_grpc: u16, rotel_http: u16) -> Transport {
    transport_with(protocol, rotel_grpc, rotel_http, true)
}

fn transport_with(protocol: Protocol, rotel_grpc: u16, rotel_http: u16, gzip: bool) -> Transport {
    let endpoint = match protocol {
        Protocol::Grpc => format!("http://127.0.0.1:{rotel_grpc}"),
        Protocol::HttpProtobuf => format!("http://127.0.0.1:{rotel_http}/v1/metrics"),
    };
    Transport::new(&TransportConfig {
        protocol,
        endpoint,
        headers: vec![("x-tenant".into(), "team-a".into())],
        gzip,
        timeout: Duration::from_secs(2),
        ca: None,
        client_cert: None,
        client_key: None,
        keepalive: nasflow_otlp_out::transport::DEFAULT_KEEPALIVE,
    })
    .expect("transport")
}

/// The metric named `name` in the newest forwarded request that has it.
fn newest(got: &Got, name: &str) -> Option<Metric> {
    let got = got.lock().expect("lock");
    got.iter()
        .rev()
        .flat_map(|r| r.resource_metrics.iter())
        .flat_map(|rm| rm.scope_metrics.iter())
        .flat_map(|sm| sm.metrics.iter())
        .find(|m| m.name == name)
        .cloned()
}

fn sum_values(m: &Metric) -> Vec<i64> {
    match &m.data {
        Some(Data::Sum(s)) => s
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

async fn wait_for(got: &Got, name: &str, want: Vec<i64>) -> Metric {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(m) = newest(got, name) {
            if sum_values(&m) == want {
                return m;
            }
        }
        assert!(
            Instant::now() < deadline,
            "collector never passed on {name} = {want:?}; last: {:?}",
            newest(got, name).map(|m| sum_values(&m))
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// Short names (t, e, s, p, b) keep the assertions readable.
#[allow(clippy::many_single_char_names)]
async fn through_rotel(protocol: Protocol) {
    let (rx, got) = receiver().await;
    let rotel = Rotel::start(free_port(), free_port(), rx);
    let mut t = transport(protocol, rotel.grpc, rotel.http);
    let mut e = encoder();
    let stats =
        SelfStats { delivery: DeliveryStats { failures: 3, ..DeliveryStats::default() }, ..SelfStats::default() };
    let interval = e.interval(&rows(1), &names(), &stats);
    for req in e.requests(&interval) {
        t.send(&req).await.expect("send");
    }
    let io = wait_for(&got, "nfs.client.io", vec![1_048_576, 4096 + 7]).await;
    assert_eq!(io.unit, "By");
    let count = wait_for(&got, "nfs.client.operation.count", vec![4, 1, 2, 6]).await;
    let Some(Data::Sum(s)) = &count.data else { panic!("sum") };
    let err = s.data_points[1].attributes.iter().find(|a| a.key == "error.type").and_then(|a| a.value.clone());
    assert_eq!(err.and_then(|v| v.value), Some(any_value::Value::StringValue("EIO".into())));
    let cg = s.data_points[0].attributes.iter().find(|a| a.key == "process.linux.cgroup").and_then(|a| a.value.clone());
    assert_eq!(cg.and_then(|v| v.value), Some(any_value::Value::StringValue("/system.slice/backup.service".into())));
    let dur = newest(&got, "nfs.client.operation.duration").expect("duration");
    let Some(Data::ExponentialHistogram(h)) = &dur.data else { panic!("exponential histogram: {:?}", dur.data) };
    let p = &h.data_points[0];
    let b = p.positive.as_ref().expect("buckets");
    assert_eq!((p.scale, p.count, b.offset), (0, 4, -11));
    assert_eq!(b.bucket_counts, vec![3, 0, 0, 1]);
    assert!((p.sum.expect("sum") - 0.006).abs() < 1e-9);
    let rtt = newest(&got, "nfs.client.rpc.rtt").expect("rtt");
    assert_eq!(rtt.unit, "s");
    let Some(Data::ExponentialHistogram(h)) = &rtt.data else { panic!("exponential histogram: {:?}", rtt.data) };
    let p = &h.data_points[0];
    let b = p.positive.as_ref().expect("buckets");
    assert_eq!((p.count, b.offset, b.bucket_counts.clone()), (6, -12, vec![6]), "(2^-12, 2^-11] s");
    let op = p.attributes.iter().find(|a| a.key == "nfs.operation.name").and_then(|a| a.value.clone());
    assert_eq!(op.and_then(|v| v.value), Some(any_value::Value::StringValue("GETATTR".into())));
    let retransmits = wait_for(&got, "nfs.client.rpc.retransmit.count", vec![2]).await;
    assert_eq!(retransmits.unit, "{retransmission}");
    let failures = newest(&got, "nasflow.export.failures").expect("self telemetry");
    assert_eq!(sum_values(&failures), vec![3]);
    let got = got.lock().expect("lock");
    let resource =
        got.iter().rev().find_map(|r| r.resource_metrics.first()).and_then(|rm| rm.resource.clone()).expect("resource");
    assert!(resource.attributes.iter().any(|a| a.key == "k8s.node.name"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_through_rotel() {
    through_rotel(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_through_rotel() {
    through_rotel(Protocol::HttpProtobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_outages_lose_nothing() {
    let (rx, got) = receiver().await;
    let (grpc, http) = (free_port(), free_port());
    let mut e = encoder();
    let delivery = Delivery::spawn(transport(Protocol::Grpc, grpc, http), &e);
    let stats = SelfStats::default();

    // Collector absent at start: delivery retries, the pipe goes on.
    delivery.publish(e.interval(&rows(1), &names(), &stats));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(delivery.stats().failures >= 1, "the first attempts must have failed");
    assert_eq!(delivery.answered(), 0);
    let i2 = e.interval(&rows(2), &names(), &stats);
    let s2 = i2.seq();
    delivery.publish(i2);

    // It comes up: the newest cumulative values arrive.
    let mut rotel = Rotel::start(grpc, http, rx);
    assert!(delivery.flush(s2, Duration::from_secs(40)).await, "never delivered after the collector came up");
    let first = wait_for(&got, "nfs.client.operation.count", vec![8, 2, 4, 12]).await;

    // Killed mid-run, values keep growing, restarted: the values are right afterwards.
    rotel.stop();
    delivery.publish(e.interval(&rows(3), &names(), &stats));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let i4 = e.interval(&rows(5), &names(), &stats);
    let s4 = i4.seq();
    delivery.publish(i4);
    let _rotel = Rotel::start(grpc, http, rx);
    assert!(delivery.flush(s4, Duration::from_secs(40)).await, "never delivered after the restart");
    let last = wait_for(&got, "nfs.client.operation.count", vec![20, 5, 10, 30]).await;
    wait_for(&got, "nfs.client.io", vec![5 * 1_048_576, 5 * 4096 + 7]).await;
    let start = |m: &Metric| match &m.data {
        Some(Data::Sum(s)) => s.data_points[0].start_time_unix_nano,
        _ => 0,
    };
    assert_eq!(start(&first), start(&last), "same series across the outage");
}

/// `pods` pods with long, realistic attribute sets, each with READ, WRITE and COMMIT: eight
/// series a pod (counts, durations, and READ and WRITE bytes). Counts are `pod + scale`.
fn many(pods: u64, scale: u64) -> (Snapshot, Names) {
    let mut n = Names::default();
    let mut rows = Vec::new();
    for pod in 0..pods {
        let cgroup = 1000 + pod;
        let path = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod:08x}_4000_8000.slice/cri-containerd-{pod:064x}.scope");
        n.workloads
            .insert(cgroup, Arc::new(Workload { cgroup_path: Some(Arc::from(path.as_str())), ..Workload::default() }));
        for op in [Operation::Read, Operation::Write, Operation::Commit] {
            let mut latency = Histogram::default();
            latency.slots[20] = pod + scale;
            latency.slots[22] = 1;
            latency.sum_ns = (pod + scale + 1) * 1_000_000;
            rows.push(IoRow::new(cgroup, 61, op, 0).with_completed(pod + scale + 1, 4096 * (pod + scale), latency));
        }
    }
    let snap = Snapshot { taken_at: Some(SystemTime::now()), rows, ..Snapshot::default() };
    (snap, n)
}

/// The newest value of every `nfs.client.operation.count` point that arrived, by cgroup path
/// and operation.
fn counts_by_series(got: &Got) -> std::collections::HashMap<(String, String), i64> {
    let mut out = std::collections::HashMap::new();
    let got = got.lock().expect("lock");
    for m in got
        .iter()
        .flat_map(|r| r.resource_metrics.iter())
        .flat_map(|rm| rm.scope_metrics.iter())
        .flat_map(|sm| sm.metrics.iter())
        .filter(|m| m.name == "nfs.client.operation.count")
    {
        let Some(Data::Sum(s)) = &m.data else { continue };
        for p in &s.data_points {
            let attr = |k: &str| {
                p.attributes.iter().find(|a| a.key == k).and_then(|a| a.value.clone()).and_then(|v| v.value).map(|v| {
                    match v {
                        any_value::Value::StringValue(s) => s,
                        other => format!("{other:?}"),
                    }
                })
            };
            let v = match p.value {
                Some(number_data_point::Value::AsInt(v)) => v,
                _ => -1,
            };
            out.insert(
                (attr("process.linux.cgroup").unwrap_or_default(), attr("nfs.operation.name").unwrap_or_default()),
                v,
            );
        }
    }
    out
}

/// 20,000 series through rotel limited like the OpenTelemetry Collector (4 MiB per gRPC
/// message, checked here before decompression, so nasflow sends uncompressed): every series
/// arrives with its exact value.
async fn twenty_thousand_series(protocol: Protocol) {
    let (rx, got) = receiver().await;
    let (grpc, http) = (free_port(), free_port());
    let _rotel = Rotel::start_with(grpc, http, rx, &["--otlp-grpc-max-recv-msg-size-mib", "4"]);
    let mut e = Encoder::new(EncodeOptions { max_series: 20_000, ..encoder_options() });
    let delivery = Delivery::spawn(transport_with(protocol, grpc, http, false), &e);
    let (snap, names) = many(2500, 1);
    let interval = e.interval(&snap, &names, &SelfStats::default());
    assert_eq!(interval.series(), 20_000);
    let seq = interval.seq();
    delivery.publish(interval);
    assert!(
        delivery.flush(seq, Duration::from_secs(60)).await,
        "20k series were not delivered: {:?}",
        delivery.stats()
    );
    let stats = delivery.stats();
    // Unsplit, this interval would be one request over the limit (refused, and retried
    // forever as OUT_OF_RANGE); split, every request is under it.
    assert!(stats.bytes > 4 << 20, "the interval is {} bytes, not over the limit", stats.bytes);
    assert!(stats.parts_last_interval >= 2, "split into {} requests", stats.parts_last_interval);
    assert_eq!((stats.drops.len(), stats.failures), (0, 0), "{stats:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = counts_by_series(&got);
        if counts.len() == 7500 {
            for pod in 0..2500i64 {
                let path = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod:08x}_4000_8000.slice/cri-containerd-{pod:064x}.scope");
                for op in ["READ", "WRITE", "COMMIT"] {
                    assert_eq!(counts.get(&(path.clone(), op.to_owned())), Some(&(pod + 2)), "{path} {op}");
                }
            }
            break;
        }
        assert!(Instant::now() < deadline, "{} of 7500 operation counts arrived", counts.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_series_over_grpc_under_the_collector_limit() {
    twenty_thousand_series(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_series_over_http_under_the_collector_limit() {
    twenty_thousand_series(Protocol::HttpProtobuf).await;
}

/// Pods end while the collector is down: their final values arrive once it is back, although
/// later intervals no longer hold them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn series_of_removed_cgroups_survive_an_outage() {
    let (rx, got) = receiver().await;
    let (grpc, http) = (free_port(), free_port());
    let mut e = encoder();
    let delivery = Delivery::spawn(transport(Protocol::Grpc, grpc, http), &e);
    let stats = SelfStats::default();
    // Three pods run while the collector is down.
    let (snap, mut names) = many(3, 10);
    delivery.publish(e.interval(&snap, &names, &stats));
    // Pods 1 and 2 end: their keys were deleted with final values (13 and 14 ops, 2 more
    // than read last time, say) and the interval names them gone.
    let (mut last, _) = many(3, 12);
    for cg in [1001, 1002] {
        let w = Workload { gone: true, ..(*names.workloads[&cg]).clone() };
        names.workloads.insert(cg, Arc::new(w));
    }
    delivery.publish(e.interval(&last, &names, &stats));
    // Later intervals hold pod 0 only.
    last.rows.retain(|r| r.cgroup == 1000);
    names.workloads.retain(|cg, _| *cg == 1000);
    for _ in 0..3 {
        delivery.publish(e.interval(&last, &names, &stats));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(delivery.answered(), 0);
    let final_interval = e.interval(&last, &names, &stats);
    let seq = final_interval.seq();
    delivery.publish(final_interval);
    let _rotel = Rotel::start(grpc, http, rx);
    assert!(delivery.flush(seq, Duration::from_secs(40)).await, "never delivered");
    assert_eq!(delivery.stats().tombstones, 0, "answered tombstones are forgotten");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let counts = counts_by_series(&got);
        let ended: Vec<i64> = (1..3)
            .map(|pod: i64| {
                let path = format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod:08x}_4000_8000.slice/cri-containerd-{pod:064x}.scope");
                counts.get(&(path, "READ".to_owned())).copied().unwrap_or(-1)
            })
            .collect();
        if ended == vec![14, 15] {
            break;
        }
        assert!(Instant::now() < deadline, "final values of the ended pods: {ended:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every span the collector passed on.
fn spans_of(got: &GotSpans) -> Vec<Span> {
    let got = got.lock().expect("lock");
    got.iter()
        .flat_map(|r| r.resource_spans.iter())
        .flat_map(|rs| rs.scope_spans.iter())
        .flat_map(|ss| ss.spans.iter().cloned())
        .collect()
}

fn span_attr(s: &Span, key: &str) -> Option<any_value::Value> {
    s.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.clone()).and_then(|v| v.value)
}

fn unix_ns(t: SystemTime) -> u64 {
    u64::try_from(t.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_nanos()).expect("fits")
}

// Short names (t, e, s, p) keep the assertions readable.
#[allow(clippy::many_single_char_names)]
async fn spans_through_rotel(protocol: Protocol) {
    let (rx, got, got_spans) = receiver_with_traces().await;
    let rotel = Rotel::start(free_port(), free_port(), rx);
    let metrics = transport(protocol, rotel.grpc, rotel.http);
    let traces = match protocol {
        Protocol::Grpc => metrics.clone(),
        Protocol::HttpProtobuf => Transport::new(&TransportConfig {
            protocol,
            endpoint: format!("http://127.0.0.1:{}/v1/traces", rotel.http),
            headers: vec![],
            gzip: true,
            timeout: Duration::from_secs(2),
            ca: None,
            client_cert: None,
            client_key: None,
            keepalive: nasflow_otlp_out::transport::DEFAULT_KEEPALIVE,
        })
        .expect("traces transport"),
    };
    let sink = SpanSink::new(&traces, &encoder_options().resource, "test", 2048).expect("span sink");
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let slow = |op, ms: u64, file: Option<(u64, i64)>, err: u16| SlowOp {
        cgroup: 7,
        dev: 61,
        op,
        err,
        dir: 0,
        start,
        duration: Duration::from_millis(ms),
        bytes: if file.is_some() { 65_536 } else { 0 },
        file,
        rpc: Some(RpcFacts { xid: 0x0102_0304, rtt: Some(Duration::from_millis(ms - 1)) }),
    };
    let getattr = Operation::Rpc(ProcName::new("GETATTR"));
    let mut snap = rows(1);
    // Four slow READs (the slowest three become the READ point's exemplars) and a failed
    // GETATTR; none in the WRITE series (it has no samples).
    snap.slow_ops = vec![
        slow(Operation::Read, 700, Some((11, 0)), 0),
        slow(Operation::Read, 2500, Some((12, 4096)), 0),
        slow(Operation::Read, 900, Some((13, 8192)), 0),
        slow(Operation::Read, 600, Some((14, 0)), 0),
        slow(getattr, 1200, None, 13),
    ];
    let links = sink.record(&snap.slow_ops, &names());
    assert_eq!(links.len(), 5);
    let mut e = encoder();
    e.set_span_links(links.clone());
    let delivery = Delivery::spawn(metrics, &e);
    let interval = e.interval(&snap, &names(), &SelfStats::default());
    let seq = interval.seq();
    delivery.publish(interval);
    assert!(delivery.flush(seq, Duration::from_secs(10)).await, "metrics delivered");
    tokio::task::spawn_blocking(move || {
        sink.shutdown();
        sink
    })
    .await
    .map(|sink| assert_eq!(sink.counts().outcomes(), vec![("exported", 5), ("failed", 0), ("dropped", 0)]))
    .expect("shutdown");

    let deadline = Instant::now() + Duration::from_secs(20);
    while spans_of(&got_spans).len() < 5 {
        assert!(Instant::now() < deadline, "collector passed on {} spans of 5", spans_of(&got_spans).len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spans = spans_of(&got_spans);
    assert_eq!(spans.len(), 5, "each slow operation once");
    for (l, o) in links.iter().zip(&snap.slow_ops) {
        let s = spans.iter().find(|s| s.span_id == l.span_id).expect("the link's span arrived");
        assert_eq!(s.trace_id, l.trace_id);
        assert_eq!(s.kind, SpanKind::Client as i32);
        assert_eq!(s.parent_span_id, Vec::<u8>::new(), "a root span");
        assert_eq!((s.start_time_unix_nano, s.end_time_unix_nano), (unix_ns(o.start), unix_ns(o.start + o.duration)));
        assert_eq!(
            span_attr(s, "process.linux.cgroup"),
            Some(any_value::Value::StringValue("/system.slice/backup.service".into()))
        );
        assert_eq!(span_attr(s, "nfs.rpc.xid"), Some(any_value::Value::IntValue(0x0102_0304)));
        if o.op == Operation::Read {
            assert_eq!(s.name, "NFS READ");
            assert_eq!(
                span_attr(s, "nfs.file.id"),
                o.file.map(|f| any_value::Value::IntValue(i64::try_from(f.0).expect("small")))
            );
            assert_eq!(s.status.as_ref().map_or(0, |st| st.code), StatusCode::Unset as i32);
        } else {
            assert_eq!(s.name, "NFS GETATTR");
            assert_eq!(span_attr(s, "error.type"), Some(any_value::Value::StringValue("EACCES".into())));
            assert_eq!(
                s.status.as_ref().map(|st| (st.code, st.message.as_str())),
                Some((StatusCode::Error as i32, "EACCES"))
            );
        }
    }

    assert_exemplars_link(&got, &links);
    drop(rotel);
}

/// An exemplar as compared: trace id, span id, value, time.
type ExemplarIds = (Vec<u8>, Vec<u8>, Option<exemplar::Value>, u64);

/// The duration points link to the spans: READ's three slowest, slowest first; GETATTR's one.
fn assert_exemplars_link(got: &Got, links: &[nasflow_otlp_out::spans::SpanLink]) {
    let duration = newest(got, "nfs.client.operation.duration").expect("duration metric");
    let Some(Data::ExponentialHistogram(h)) = &duration.data else { panic!("exponential histogram") };
    let exemplars_of = |op: &str| {
        h.data_points
            .iter()
            .find(|p| {
                p.attributes.iter().any(|a| {
                    a.key == "nfs.operation.name"
                        && a.value.as_ref().and_then(|v| v.value.clone())
                            == Some(any_value::Value::StringValue(op.into()))
                })
            })
            .map(|p| p.exemplars.clone())
            .unwrap_or_default()
    };
    let read: Vec<ExemplarIds> =
        exemplars_of("READ").into_iter().map(|x| (x.trace_id, x.span_id, x.value, x.time_unix_nano)).collect();
    let want = |i: usize| {
        let l = &links[i];
        (l.trace_id.to_vec(), l.span_id.to_vec(), Some(exemplar::Value::AsDouble(l.seconds)), unix_ns(l.at))
    };
    assert_eq!(read, vec![want(1), want(2), want(0)]);
    let getattr: Vec<Vec<u8>> = exemplars_of("GETATTR").into_iter().map(|x| x.span_id).collect();
    assert_eq!(getattr, vec![links[4].span_id.to_vec()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_operations_reach_the_collector_as_spans_that_the_duration_points_link_to_over_grpc() {
    spans_through_rotel(Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_operations_reach_the_collector_as_spans_that_the_duration_points_link_to_over_http() {
    spans_through_rotel(Protocol::HttpProtobuf).await;
}
