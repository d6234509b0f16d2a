//! Delivery against collectors that misbehave the way real ones do: slow, killed, refusing
//! (retryable and for good, with and without retry hints), partly accepting, redirecting, and
//! black-holed. The stand-ins below answer as the OpenTelemetry Collector's OTLP receivers do
//! (gRPC status codes with `google.rpc.RetryInfo`, HTTP statuses with `Retry-After`, partial
//! success bodies); rotel, the real collector of the other tests, cannot be made to misbehave.

use std::{
    collections::VecDeque,
    convert::Infallible,
    io::Read,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use http_body_util::{BodyExt, Full};
use nasflow_enrich::names::{Names, Workload};
use nasflow_otlp_out::{
    delivery::Delivery,
    encode::{EncodeOptions, Encoder, HistogramKind, SelfStats, Temporality, DEFAULT_MAX_REQUEST_BYTES},
    transport::{Protocol, Transport, TransportConfig},
};
use nasflow_probe::{Histogram, IoRow, Operation, Snapshot};
use opentelemetry_proto::tonic::{
    collector::metrics::v1::{
        metrics_service_server::{MetricsService, MetricsServiceServer},
        ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
    },
    metrics::v1::{metric::Data, number_data_point},
};
use prost::Message;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// How a stand-in answers one request.
#[derive(Debug, Clone, Copy)]
enum Reply {
    Accept,
    /// Accept after this long.
    Slow(Duration),
    /// A gRPC error, with a `RetryInfo` delay when given.
    Grpc(tonic::Code, Option<Duration>),
    /// An HTTP status with a `Retry-After` header when given, or `Location` for redirects.
    Http(u16, Option<&'static str>),
    /// Accept, rejecting this many points.
    Partial(i64, &'static str),
}

/// What a stand-in saw: every attempt, and the requests it accepted (recorded only when it
/// answers, so a collector killed mid-request has accepted nothing).
#[derive(Debug, Default)]
struct Seen {
    /// Cleared while the collector is "killed": nothing is recorded then.
    down: AtomicBool,
    attempts: AtomicU64,
    accepted: Mutex<Vec<(Instant, ExportMetricsServiceRequest)>>,
    script: Mutex<VecDeque<Reply>>,
}

impl Seen {
    fn scripted(replies: &[Reply]) -> Arc<Self> {
        Arc::new(Self { script: Mutex::new(replies.iter().copied().collect()), ..Self::default() })
    }

    fn next(&self) -> Reply {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        self.script.lock().expect("lock").pop_front().unwrap_or(Reply::Accept)
    }

    fn accept(&self, r: ExportMetricsServiceRequest) {
        if !self.down.load(Ordering::SeqCst) {
            self.accepted.lock().expect("lock").push((Instant::now(), r));
        }
    }

    fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::SeqCst)
    }

    /// Every accepted `nfs.client.operation.count` value, in order.
    fn counts(&self) -> Vec<i64> {
        let accepted = self.accepted.lock().expect("lock");
        let mut out = Vec::new();
        for (_, r) in accepted.iter() {
            for m in r.resource_metrics.iter().flat_map(|rm| &rm.scope_metrics).flat_map(|sm| &sm.metrics) {
                if m.name != "nfs.client.operation.count" {
                    continue;
                }
                let Some(Data::Sum(s)) = &m.data else { continue };
                for p in &s.data_points {
                    if let Some(number_data_point::Value::AsInt(v)) = p.value {
                        out.push(v);
                    }
                }
            }
        }
        out
    }
}

struct GrpcStandin(Arc<Seen>);

#[tonic::async_trait]
impl MetricsService for GrpcStandin {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let ok = |p: Option<ExportMetricsPartialSuccess>| {
            Ok(tonic::Response::new(ExportMetricsServiceResponse { partial_success: p }))
        };
        match self.0.next() {
            Reply::Accept => {
                self.0.accept(req.into_inner());
                ok(None)
            }
            Reply::Slow(d) => {
                tokio::time::sleep(d).await;
                self.0.accept(req.into_inner());
                ok(None)
            }
            Reply::Partial(n, msg) => {
                self.0.accept(req.into_inner());
                ok(Some(ExportMetricsPartialSuccess { rejected_data_points: n, error_message: msg.into() }))
            }
            Reply::Grpc(code, Some(after)) => Err(<tonic::Status as tonic_types::StatusExt>::with_error_details(
                code,
                "try later",
                tonic_types::ErrorDetails::with_retry_info(Some(after)),
            )),
            Reply::Grpc(code, None) => Err(tonic::Status::new(code, "refused")),
            Reply::Http(..) => Err(tonic::Status::internal("not an HTTP stand-in")),
        }
    }
}

/// Serves the gRPC stand-in on `listener` until the handle is aborted (a killed collector).
fn serve_grpc(listener: TcpListener, seen: Arc<Seen>) -> tokio::task::JoinHandle<()> {
    let svc = MetricsServiceServer::new(GrpcStandin(seen)).accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await;
    })
}

async fn grpc_standin(seen: Arc<Seen>) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    (addr, serve_grpc(listener, seen))
}

/// The HTTP stand-in: answers `POST /v1/metrics` as scripted (and anything else with 404).
async fn http_standin(seen: Arc<Seen>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = Arc::clone(&seen);
                    async move {
                        let gzip = req.headers().get("content-encoding").is_some_and(|v| v == "gzip");
                        let path = req.uri().path().to_owned();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(http_body_util::Collected::to_bytes)
                            .unwrap_or_default();
                        let mut raw = Vec::new();
                        if gzip {
                            flate2::read::GzDecoder::new(body.as_ref()).read_to_end(&mut raw).expect("gzip");
                        } else {
                            raw = body.to_vec();
                        }
                        let response = |status: u16, body: Vec<u8>| {
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(hyper::body::Bytes::from(body)))
                                .expect("response")
                        };
                        if path != "/v1/metrics" {
                            return Ok::<_, Infallible>(response(404, vec![]));
                        }
                        let r = match seen.next() {
                            Reply::Accept => {
                                seen.accept(ExportMetricsServiceRequest::decode(raw.as_slice()).expect("request"));
                                response(200, vec![])
                            }
                            Reply::Partial(n, msg) => {
                                seen.accept(ExportMetricsServiceRequest::decode(raw.as_slice()).expect("request"));
                                let p =
                                    ExportMetricsPartialSuccess { rejected_data_points: n, error_message: msg.into() };
                                response(200, ExportMetricsServiceResponse { partial_success: Some(p) }.encode_to_vec())
                            }
                            Reply::Http(status, header) => {
                                let mut r = response(status, b"no".to_vec());
                                if let Some(h) = header {
                                    let name = if (300..400).contains(&status) { "location" } else { "retry-after" };
                                    r.headers_mut().insert(name, h.parse().expect("header"));
                                }
                                r
                            }
                            other => panic!("not an HTTP reply: {other:?}"),
                        };
                        Ok(r)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
            });
        }
    });
    addr
}

fn transport(protocol: Protocol, endpoint: String, timeout: Duration, keepalive: Duration) -> Transport {
    Transport::new(&TransportConfig {
        protocol,
        endpoint,
        headers: vec![("authorization".into(), "Bearer secret".into())],
        gzip: true,
        timeout,
        ca: None,
        client_cert: None,
        client_key: None,
        keepalive,
    })
    .expect("transport")
}

fn grpc(addr: SocketAddr) -> Transport {
    transport(Protocol::Grpc, format!("http://{addr}"), Duration::from_secs(5), Duration::from_secs(20))
}

fn http(addr: SocketAddr) -> Transport {
    transport(
        Protocol::HttpProtobuf,
        format!("http://{addr}/v1/metrics"),
        Duration::from_secs(5),
        Duration::from_secs(20),
    )
}

fn encoder(temporality: Temporality) -> Encoder {
    Encoder::new(EncodeOptions {
        histogram: HistogramKind::Exponential,
        temporality,
        max_series: 1000,
        resource: vec![("service.name".into(), "nasflow".into())],
        scope_version: "test".into(),
        max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
    })
}

/// One cgroup's READs: `ops` so far.
fn snapshot(ops: u64) -> (Snapshot, Names) {
    let mut n = Names::default();
    n.workloads.insert(7, Arc::new(Workload { cgroup_path: Some(Arc::from("/pods/a")), ..Workload::default() }));
    let row = IoRow::new(7, 61, Operation::Read, 0).with_completed(ops, 4096 * ops, Histogram::default());
    (Snapshot { taken_at: Some(SystemTime::now()), rows: vec![row], ..Snapshot::default() }, n)
}

/// Publishes `intervals` growing intervals every `every`, flushes the last, and returns the
/// kernel's final count.
async fn run_delta(delivery: &Delivery, e: &mut Encoder, intervals: u64, every: Duration) -> u64 {
    let mut ops = 0;
    let mut seq = 0;
    for n in 1..=intervals {
        ops += n;
        let (snap, names) = snapshot(ops);
        let i = e.interval(&snap, &names, &SelfStats::default());
        seq = i.seq();
        delivery.publish(i);
        tokio::time::sleep(every).await;
    }
    assert!(delivery.flush(seq, Duration::from_secs(60)).await, "never delivered: {:?}", delivery.stats());
    ops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_sums_are_exact_with_a_collector_that_answers_late() {
    let seen = Seen::scripted(&[Reply::Slow(Duration::from_millis(900)); 6]);
    let (addr, _server) = grpc_standin(Arc::clone(&seen)).await;
    let mut e = encoder(Temporality::Delta);
    let delivery = Delivery::spawn(grpc(addr), &e);
    let total = run_delta(&delivery, &mut e, 30, Duration::from_millis(100)).await;
    let counts = seen.counts();
    assert!(counts.len() < 30, "late answers: newer intervals superseded older ones ({} requests)", counts.len());
    assert_eq!(counts.iter().sum::<i64>(), i64::try_from(total).expect("small"), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_sums_are_exact_with_a_collector_that_refuses_for_a_while() {
    let refuse = [
        Reply::Grpc(tonic::Code::Unavailable, None),
        Reply::Grpc(tonic::Code::ResourceExhausted, Some(Duration::from_millis(300))),
        Reply::Grpc(tonic::Code::Unavailable, None),
    ];
    let seen = Seen::scripted(&[&[Reply::Accept, Reply::Accept][..], &refuse, &refuse].concat());
    let (addr, _server) = grpc_standin(Arc::clone(&seen)).await;
    let mut e = encoder(Temporality::Delta);
    let delivery = Delivery::spawn(grpc(addr), &e);
    let total = run_delta(&delivery, &mut e, 25, Duration::from_millis(100)).await;
    let counts = seen.counts();
    assert_eq!(counts.iter().sum::<i64>(), i64::try_from(total).expect("small"), "{counts:?}");
    let stats = delivery.stats();
    assert_eq!((stats.failures, stats.retries), (6, 6), "{stats:?}");
    assert!(stats.drops.is_empty(), "retryable refusals drop nothing: {stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_sums_are_exact_with_a_collector_that_is_killed_and_restarted() {
    // Every request is slow, so the kill lands in the middle of one: that one was never
    // answered, nor kept (a dead collector commits nothing), and is sent again.
    let seen = Seen::scripted(&[Reply::Slow(Duration::from_millis(300)); 100]);
    let (backend, _server) = grpc_standin(Arc::clone(&seen)).await;
    let relay = Relay::start(backend).await;
    let mut e = encoder(Temporality::Delta);
    let delivery = Delivery::spawn(grpc(relay.addr), &e);
    let mut ops = 0;
    let mut publish = |n: u64, e: &mut Encoder| {
        ops += n;
        let (snap, names) = snapshot(ops);
        let i = e.interval(&snap, &names, &SelfStats::default());
        let seq = i.seq();
        delivery.publish(i);
        seq
    };
    for n in 1..=5 {
        let seq = publish(n, &mut e);
        assert!(delivery.flush(seq, Duration::from_secs(10)).await);
    }
    publish(6, &mut e);
    tokio::time::sleep(Duration::from_millis(100)).await;
    seen.down.store(true, Ordering::SeqCst);
    relay.kill();
    for n in 7..=12 {
        publish(n, &mut e);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(delivery.stats().failures >= 1, "the collector was down: {:?}", delivery.stats());
    seen.down.store(false, Ordering::SeqCst);
    relay.revive();
    let seq = publish(13, &mut e);
    assert!(delivery.flush(seq, Duration::from_secs(60)).await, "never delivered after the restart");
    let counts = seen.counts();
    assert_eq!(
        counts.iter().sum::<i64>(),
        i64::try_from(ops).expect("small"),
        "{counts:?} {:?} attempts {}",
        delivery.stats(),
        seen.attempts()
    );
}

/// Sends one interval through a scripted stand-in and waits until it was answered.
async fn one_interval(delivery: &Delivery, e: &mut Encoder, ops: u64) {
    let (snap, names) = snapshot(ops);
    let i = e.interval(&snap, &names, &SelfStats::default());
    let seq = i.seq();
    delivery.publish(i);
    assert!(delivery.flush(seq, Duration::from_secs(30)).await, "not answered: {:?}", delivery.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_grpc_refusals_are_dropped_once_and_counted() {
    for (code, reason) in [
        (tonic::Code::InvalidArgument, "invalid_argument"),
        (tonic::Code::ResourceExhausted, "resource_exhausted"),
        (tonic::Code::Unauthenticated, "unauthenticated"),
    ] {
        let seen = Seen::scripted(&[Reply::Grpc(code, None)]);
        let (addr, _server) = grpc_standin(Arc::clone(&seen)).await;
        let mut e = encoder(Temporality::Cumulative);
        let delivery = Delivery::spawn(grpc(addr), &e);
        one_interval(&delivery, &mut e, 3).await;
        assert_eq!(seen.attempts(), 1, "{code:?} is not retried");
        let stats = delivery.stats();
        assert_eq!(stats.drops.get(reason), Some(&1), "{code:?}: {stats:?}");
        assert_eq!(stats.retries, 0);
        // The next interval carries the cumulative value again.
        one_interval(&delivery, &mut e, 5).await;
        assert_eq!(seen.counts(), vec![5], "{code:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_info_sets_the_delay() {
    let seen = Seen::scripted(&[Reply::Grpc(tonic::Code::ResourceExhausted, Some(Duration::from_millis(1500)))]);
    let (addr, _server) = grpc_standin(Arc::clone(&seen)).await;
    let mut e = encoder(Temporality::Cumulative);
    let delivery = Delivery::spawn(grpc(addr), &e);
    let started = Instant::now();
    one_interval(&delivery, &mut e, 3).await;
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1500), "retried after {waited:?}, before the collector's 1.5 s");
    assert_eq!((seen.attempts(), seen.counts()), (2, vec![3]));
    assert!(delivery.stats().drops.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_success_is_counted_and_not_resent() {
    for over_http in [false, true] {
        let seen = Seen::scripted(&[Reply::Partial(1, "bad unit")]);
        let (mut e, delivery) = if over_http {
            let addr = http_standin(Arc::clone(&seen)).await;
            let e = encoder(Temporality::Delta);
            let d = Delivery::spawn(http(addr), &e);
            (e, d)
        } else {
            // The server task outlives this iteration; it ends with the test.
            let (addr, _) = grpc_standin(Arc::clone(&seen)).await;
            let e = encoder(Temporality::Delta);
            let d = Delivery::spawn(grpc(addr), &e);
            (e, d)
        };
        one_interval(&delivery, &mut e, 3).await;
        one_interval(&delivery, &mut e, 5).await;
        assert_eq!(delivery.stats().rejected_points, 1, "http: {over_http}");
        assert_eq!(seen.counts(), vec![3, 2], "accepted in part: the range is not sent again (http: {over_http})");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_statuses_are_classed_and_retry_after_is_honoured() {
    // 400 and 413: dropped for good; 429 with Retry-After: waited, then sent again.
    let seen = Seen::scripted(&[Reply::Http(400, None), Reply::Http(413, None), Reply::Http(429, Some("2"))]);
    let addr = http_standin(Arc::clone(&seen)).await;
    let mut e = encoder(Temporality::Cumulative);
    let delivery = Delivery::spawn(http(addr), &e);
    one_interval(&delivery, &mut e, 1).await;
    one_interval(&delivery, &mut e, 2).await;
    let started = Instant::now();
    one_interval(&delivery, &mut e, 3).await;
    assert!(started.elapsed() >= Duration::from_secs(2), "Retry-After: 2 not honoured ({:?})", started.elapsed());
    let stats = delivery.stats();
    assert_eq!((stats.drops.get("http_400"), stats.drops.get("http_413")), (Some(&1), Some(&1)), "{stats:?}");
    assert_eq!((stats.retries, seen.attempts(), seen.counts()), (1, 4, vec![3]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_not_followed() {
    // The second collector must never see the request (nor its authorization header).
    let elsewhere = Seen::scripted(&[]);
    let other = http_standin(Arc::clone(&elsewhere)).await;
    let location: &'static str = Box::leak(format!("http://{other}/v1/metrics").into_boxed_str());
    let seen = Seen::scripted(&[Reply::Http(302, Some(location)), Reply::Http(307, Some(location))]);
    let addr = http_standin(Arc::clone(&seen)).await;
    let mut e = encoder(Temporality::Cumulative);
    let delivery = Delivery::spawn(http(addr), &e);
    one_interval(&delivery, &mut e, 1).await;
    one_interval(&delivery, &mut e, 2).await;
    assert_eq!(delivery.stats().drops.get("redirect"), Some(&2));
    assert_eq!(elsewhere.attempts(), 0, "a redirect was followed");
    assert!(delivery.last_success().is_none(), "a redirect is no success");
}

/// A TCP relay to `backend` that can turn into a black hole: from then on, its connections
/// (open and new) pass nothing and stay open, as a collector node that died behind a load
/// balancer. `restore` makes new connections work again; the dead ones stay dead.
struct Relay {
    addr: SocketAddr,
    dead: Arc<AtomicBool>,
    generation: Arc<AtomicU64>,
    killed: Arc<AtomicBool>,
}

impl Relay {
    async fn start(backend: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let dead = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(AtomicU64::new(0));
        let killed = Arc::new(AtomicBool::new(false));
        let (d, g, k) = (Arc::clone(&dead), Arc::clone(&generation), Arc::clone(&killed));
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                if k.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                if d.load(Ordering::SeqCst) {
                    held.push(client);
                    continue;
                }
                let born = g.load(Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(backend).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                for (mut from, mut to) in [(cr, sw), (sr, cw)].map(|(r, w)| {
                    (
                        Box::new(r) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                        Box::new(w) as Box<dyn tokio::io::AsyncWrite + Unpin + Send>,
                    )
                }) {
                    let (d, g, k) = (Arc::clone(&d), Arc::clone(&g), Arc::clone(&k));
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 16 << 10];
                        loop {
                            if k.load(Ordering::SeqCst) {
                                return;
                            }
                            // Once dead, a connection of this generation never passes a byte again.
                            while d.load(Ordering::SeqCst) || g.load(Ordering::SeqCst) != born {
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            let read = tokio::time::timeout(Duration::from_millis(100), from.read(&mut buf)).await;
                            let Ok(read) = read else { continue };
                            let Ok(n) = read else { return };
                            if d.load(Ordering::SeqCst) || g.load(Ordering::SeqCst) != born {
                                // Died while this was read: it goes nowhere, and neither does
                                // anything after it.
                                continue;
                            }
                            if n == 0 || to.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
        });
        Self { addr, dead, generation, killed }
    }

    /// A crashed collector: every connection closes, new ones are closed at once.
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }

    /// Restarted.
    fn revive(&self) {
        self.killed.store(false, Ordering::SeqCst);
    }

    fn black_hole(&self) {
        self.dead.store(true, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn restore(&self) {
        self.dead.store(false, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_collector_is_noticed_and_left_for_a_new_connection() {
    let seen = Seen::scripted(&[]);
    let (backend, _server) = grpc_standin(Arc::clone(&seen)).await;
    let relay = Relay::start(backend).await;
    let mut e = encoder(Temporality::Cumulative);
    // Short timeouts so the test is quick; the defaults (10 s timeout, 20 s keepalive) notice
    // a black hole within about half a minute.
    let t = transport(Protocol::Grpc, format!("http://{}", relay.addr), Duration::from_secs(2), Duration::from_secs(2));
    let delivery = Delivery::spawn(t, &e);
    one_interval(&delivery, &mut e, 1).await;
    relay.black_hole();
    let (snap, names) = snapshot(2);
    delivery.publish(e.interval(&snap, &names, &SelfStats::default()));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(delivery.stats().failures >= 1, "the black hole went unnoticed: {:?}", delivery.stats());
    assert_eq!(seen.counts(), vec![1]);
    relay.restore();
    let started = Instant::now();
    one_interval(&delivery, &mut e, 3).await;
    assert_eq!(seen.counts().last(), Some(&3));
    assert!(started.elapsed() < Duration::from_secs(40), "reconnected after {:?}", started.elapsed());
}
