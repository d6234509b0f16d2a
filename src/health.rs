//! `/healthz` and `/readyz` on a small HTTP port, for the kubelet's probes. The pipe publishes
//! its state after every interval; the server only reads it, so a slow client never touches
//! the pipe.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// What the pipe last said about itself.
#[derive(Debug, Clone, Default)]
pub struct PipeState {
    /// When the pipe last ran an interval; `None` before the first.
    pub last_tick: Option<Instant>,
    /// What works less than it should, one line each (see [`degraded`]).
    pub degraded: Vec<String>,
}

/// What the pipe knows about its parts, to say what is degraded.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    /// The probe's programs are attached to the NFS client.
    pub attached: bool,
    /// Why they are not, when an attach failed (else: waiting for the nfs module).
    pub attach_error: Option<String>,
    /// Whether the agent exports OTLP at all.
    pub exporting: bool,
    /// When an export last succeeded; `None` before the first one.
    pub last_export: Option<Instant>,
    /// Failed export attempts so far.
    pub export_failures: u64,
    /// Whether the last kubelet poll failed.
    pub kubelet_down: bool,
    /// Fill of each kernel map that has a bound: (name, used, capacity).
    pub maps: Vec<(&'static str, u64, u64)>,
    /// Optional programs that could not be loaded or attached, with the reason.
    pub failed_programs: Vec<(&'static str, String)>,
}

/// A map this full is near full: the next new series may be dropped.
const NEAR_FULL_PERCENT: u64 = 90;

/// The degraded states, each a stable name then a reason: waiting for the nfs module (or an
/// attach failure), the collector failing, the kubelet failing, optional programs the kernel
/// refused, kernel maps near full.
#[must_use]
pub fn degraded(c: &Conditions, interval: Duration, now: Instant) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if !c.attached {
        let why = c.attach_error.clone().unwrap_or_else(|| "the nfs module is not loaded yet".into());
        out.push(("not_attached", why));
    }
    let recent = c.last_export.is_some_and(|t| now.saturating_duration_since(t) <= interval * 3);
    if c.exporting && !recent && c.export_failures > 0 {
        out.push(("collector_failing", "no OTLP export succeeded in the last 3 intervals".into()));
    }
    if c.kubelet_down {
        out.push(("kubelet_failing", "the last kubelet /pods poll failed: pods are named by container id".into()));
    }
    if !c.failed_programs.is_empty() {
        let list: Vec<String> = c.failed_programs.iter().map(|(p, why)| format!("{p} ({why})")).collect();
        out.push(("programs_missing", format!("not attached: {}", list.join("; "))));
    }
    for (name, used, cap) in &c.maps {
        if *cap > 0 && used * 100 >= cap * NEAR_FULL_PERCENT {
            out.push(("maps_near_full", format!("{name}: {used} of {cap} entries")));
        }
    }
    out
}

/// The state the pipe writes and the server reads.
#[derive(Debug, Clone, Default)]
pub struct SharedState(Arc<Mutex<PipeState>>);

impl SharedState {
    /// Replaces the published state.
    pub fn publish(&self, f: impl FnOnce(&mut PipeState)) {
        let mut g = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g);
    }

    fn get(&self) -> PipeState {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// The answer to one probe path: status code and its body.
///
/// - `/healthz`: alive while the pipe runs its intervals (a stalled pipe is worth a restart);
///   the body lists what is degraded.
/// - `/readyz`: ready once the pipe runs with a valid configuration. It never waits for the
///   nfs module, the collector or the kubelet: a node without NFS or a collector outage must
///   not stall a rollout. Degraded states are in `/healthz` and in self-telemetry.
#[must_use]
pub fn answer(path: &str, state: &PipeState, interval: Duration, now: Instant) -> (u16, String) {
    let stalled =
        state.last_tick.is_some_and(|t| now.saturating_duration_since(t) > interval * 3 + Duration::from_secs(30));
    match path {
        "/healthz" if stalled => (503, "the pipe has not run an interval for 3 intervals and 30 s".into()),
        "/healthz" if state.degraded.is_empty() => (200, "ok".into()),
        "/healthz" => (200, format!("ok, degraded:\n{}", state.degraded.join("\n"))),
        "/readyz" if state.last_tick.is_none() => (503, "starting: no interval has run yet".into()),
        "/readyz" => (200, "ready".into()),
        _ => (404, "not found: /healthz or /readyz".into()),
    }
}

/// Connections served at once; more are closed without an answer.
const MAX_CONNECTIONS: usize = 16;
/// Longest a client may take to send its request and read the answer.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause after a failed `accept` (out of file descriptors, ...), so it does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Serves the probes on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, state: SharedState, interval: Duration) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "health endpoints: /healthz, /readyz");
    accept_loop(listener, "health", CLIENT_TIMEOUT, move |path| {
        let (code, body) = answer(path, &state.get(), interval, Instant::now());
        (code, body, "text/plain")
    });
    Ok(())
}

/// The last interval in the Prometheus text format, as the pipe published it.
#[derive(Debug, Clone, Default)]
pub struct MetricsText(Arc<Mutex<Option<Arc<String>>>>);

impl MetricsText {
    /// Replaces the published text.
    pub fn publish(&self, text: String) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(text));
    }

    fn get(&self) -> Option<Arc<String>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

/// Serves `/metrics` (the Prometheus text format) on `addr` until the process ends: what the
/// last interval exported over OTLP, under Prometheus names. Before the first interval it
/// answers 503.
pub async fn serve_metrics(addr: SocketAddr, text: MetricsText) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "Prometheus endpoint: /metrics");
    accept_loop(listener, "metrics", SCRAPE_TIMEOUT, move |path| match (path, text.get()) {
        ("/metrics", Some(t)) => (200, t.as_str().to_owned(), "text/plain; version=0.0.4; charset=utf-8"),
        ("/metrics", None) => (503, "starting: no interval has run yet".into(), "text/plain"),
        _ => (404, "not found: /metrics".into(), "text/plain"),
    });
    Ok(())
}

/// Longest a scrape may take to read `/metrics`: tens of MB on a node with many series.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(60);

/// Accepts connections on its own task, a bounded number at once, each answered by `answer`
/// (status, body, content type) and cut after `timeout`.
fn accept_loop<F>(listener: TcpListener, what: &'static str, timeout: Duration, answer: F)
where
    F: Fn(&str) -> (u16, String, &'static str) + Send + Sync + 'static,
{
    let answer = Arc::new(answer);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        let mut said = false;
        loop {
            let conn = match listener.accept().await {
                Ok((conn, _)) => conn,
                Err(e) => {
                    if !said {
                        tracing::warn!(endpoint = what, error = %e, "accept failed; pausing");
                        said = true;
                    }
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            };
            said = false;
            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                drop(conn);
                continue;
            };
            let answer = Arc::clone(&answer);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(timeout, respond(conn, answer.as_ref())).await;
                drop(permit);
            });
        }
    });
}

async fn respond<F>(mut conn: TcpStream, answer: &F) -> std::io::Result<()>
where
    F: Fn(&str) -> (u16, String, &'static str),
{
    let mut buf = vec![0u8; 2048];
    let mut len = 0;
    while len < buf.len() {
        let n = conn.read(&mut buf[len..]).await?;
        if n == 0 {
            break;
        }
        len += n;
        if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let request = String::from_utf8_lossy(&buf[..len]);
    let (code, mut body, content_type) = match request_path(&request) {
        Some(path) => answer(path),
        None => (400, "bad request".into(), "text/plain"),
    };
    if !body.ends_with('\n') {
        body.push('\n');
    }
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        400 => "Bad Request",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    if !request.starts_with("HEAD ") {
        conn.write_all(body.as_bytes()).await?;
    }
    conn.shutdown().await
}

/// The path of a `GET` request line, without a query.
#[must_use]
pub fn request_path(head: &str) -> Option<&str> {
    let line = head.lines().next()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?, parts.next()?);
    (method == "GET" || method == "HEAD").then(|| target.split('?').next().unwrap_or(target))
}

#[cfg(test)]
mod tests {
    use super::*;

    const IV: Duration = Duration::from_secs(10);

    #[test]
    fn ready_once_the_pipe_runs_whatever_is_degraded() {
        let now = Instant::now();
        let mut s = PipeState::default();
        assert_eq!(answer("/readyz", &s, IV, now).0, 503, "no interval yet");
        s.last_tick = Some(now);
        s.degraded = vec!["not_attached: the nfs module is not loaded yet".into(), "collector_failing: x".into()];
        assert_eq!(answer("/readyz", &s, IV, now).0, 200, "no nfs module, no collector: still ready");
        let (code, body) = answer("/healthz", &s, IV, now);
        assert_eq!(code, 200);
        assert!(body.contains("not_attached") && body.contains("collector_failing"), "{body}");
    }

    #[test]
    fn degraded_states_are_named() {
        let now = Instant::now();
        let mut c = Conditions { attached: true, exporting: true, last_export: Some(now), ..Conditions::default() };
        assert!(degraded(&c, IV, now).is_empty());
        c.attached = false;
        c.attach_error = Some("program nfs_fwrite_ret: verifier refused".into());
        c.last_export = now.checked_sub(Duration::from_secs(31));
        c.export_failures = 4;
        c.kubelet_down = true;
        c.maps = vec![("io_counters", 9300, 10240), ("inflight", 10, 16384)];
        c.failed_programs = vec![("rpc_request", "the verifier refused it".into())];
        let names: Vec<&str> = degraded(&c, IV, now).iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            ["not_attached", "collector_failing", "kubelet_failing", "programs_missing", "maps_near_full"]
        );
        let d = degraded(&c, IV, now);
        assert!(d[0].1.contains("verifier"), "{d:?}");
        assert!(d[3].1.contains("rpc_request (the verifier refused it)"), "{d:?}");
        assert!(d[4].1.contains("io_counters: 9300 of 10240"), "{d:?}");
        c.export_failures = 0;
        c.last_export = None;
        assert!(!degraded(&c, IV, now).iter().any(|(n, _)| *n == "collector_failing"), "starting, nothing failed yet");
    }

    #[test]
    fn alive_until_the_pipe_stalls() {
        let now = Instant::now();
        let mut s = PipeState::default();
        assert_eq!(answer("/healthz", &s, IV, now).0, 200, "starting up");
        s.last_tick = Some(now.checked_sub(Duration::from_secs(59)).expect("clock"));
        assert_eq!(answer("/healthz", &s, IV, now).0, 200);
        s.last_tick = Some(now.checked_sub(Duration::from_secs(61)).expect("clock"));
        assert_eq!(answer("/healthz", &s, IV, now).0, 503);
        assert_eq!(answer("/metrics", &s, IV, now).0, 404);
    }

    #[tokio::test]
    async fn connections_beyond_the_bound_are_closed_and_slow_clients_cut() {
        let state = SharedState::default();
        state.publish(|s| s.last_tick = Some(Instant::now()));
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        serve(addr, state, IV).await.expect("bind");
        // Clients that connect and say nothing hold every slot until the client timeout.
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.expect("connect"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut extra = TcpStream::connect(addr).await.expect("connect");
        let _ = extra.write_all(b"GET /readyz HTTP/1.1\r\n\r\n").await;
        let mut out = String::new();
        let _ = extra.read_to_string(&mut out).await;
        assert_eq!(out, "", "a connection beyond the bound gets no answer");
        // The idle ones are cut after the client timeout; then the endpoint answers again.
        let mut first = idle.remove(0);
        let mut rest = Vec::new();
        let started = Instant::now();
        assert_eq!(first.read_to_end(&mut rest).await.expect("read"), 0);
        assert!(started.elapsed() <= CLIENT_TIMEOUT + Duration::from_secs(1));
        drop(idle);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut c = TcpStream::connect(addr).await.expect("connect");
        c.write_all(b"GET /readyz HTTP/1.1\r\n\r\n").await.expect("write");
        let mut out = String::new();
        c.read_to_string(&mut out).await.expect("read");
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    }

    #[test]
    fn request_lines() {
        assert_eq!(request_path("GET /readyz?verbose HTTP/1.1\r\nHost: x\r\n\r\n"), Some("/readyz"));
        assert_eq!(request_path("POST /readyz HTTP/1.1\r\n"), None);
        assert_eq!(request_path("garbage"), None);
        assert_eq!(request_path(""), None);
    }

    #[tokio::test]
    async fn serves_over_tcp() {
        let state = SharedState::default();
        state.publish(|s| {
            s.last_tick = Some(Instant::now());
        });
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("port").port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
        serve(addr, state, IV).await.expect("bind");
        let get = |path: &'static str| async move {
            let mut c = TcpStream::connect(addr).await.expect("connect");
            c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.expect("write");
            let mut out = String::new();
            c.read_to_string(&mut out).await.expect("read");
            out
        };
        assert!(get("/readyz").await.starts_with("HTTP/1.1 200 OK\r\n"));
        let h = get("/healthz").await;
        assert!(h.starts_with("HTTP/1.1 200 OK\r\n") && h.ends_with("\r\n\r\nok\n"), "{h}");
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
    }
}
