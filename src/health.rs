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
    /// The probe's programs are attached to the NFS client.
    pub attached: bool,
    /// When an export last succeeded; `None` before the first one.
    pub last_export: Option<Instant>,
    /// Whether the agent exports OTLP at all (without it, attached is enough).
    pub exporting: bool,
    /// When the pipe last ran an interval.
    pub last_tick: Option<Instant>,
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

/// The answer to one probe path: status code and a one-line reason.
pub fn answer(path: &str, state: &PipeState, interval: Duration, now: Instant) -> (u16, String) {
    let within = |t: Option<Instant>, limit: Duration| t.is_some_and(|t| now.saturating_duration_since(t) <= limit);
    match path {
        // Alive: the pipe ran an interval lately (a stalled pipe is worth a restart).
        "/healthz" => {
            if state.last_tick.is_none() || within(state.last_tick, interval * 3 + Duration::from_secs(30)) {
                (200, "ok".into())
            } else {
                (503, "the pipe has not run an interval for 3 intervals and 30 s".into())
            }
        }
        "/readyz" => {
            if !state.attached {
                (503, "not attached to the NFS client (nfs module not loaded, or attach failed: see the log)".into())
            } else if state.exporting && !within(state.last_export, interval * 3) {
                (503, "no OTLP export succeeded in the last 3 intervals".into())
            } else {
                (200, "ready".into())
            }
        }
        _ => (404, "not found: /healthz or /readyz".into()),
    }
}

/// Serves the probes on `addr` until the process ends.
pub async fn serve(addr: SocketAddr, state: SharedState, interval: Duration) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "health endpoints: /healthz, /readyz");
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else { continue };
            let state = state.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), respond(conn, &state, interval)).await;
            });
        }
    });
    Ok(())
}

async fn respond(mut conn: TcpStream, state: &SharedState, interval: Duration) -> std::io::Result<()> {
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
    let head = String::from_utf8_lossy(&buf[..len]);
    let (code, body) = match request_path(&head) {
        Some(path) => answer(path, &state.get(), interval, Instant::now()),
        None => (400, "bad request".into()),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        400 => "Bad Request",
        _ => "Service Unavailable",
    };
    let msg = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}\n",
        body.len() + 1
    );
    conn.write_all(msg.as_bytes()).await?;
    conn.shutdown().await
}

/// The path of a `GET` request line, without a query.
fn request_path(head: &str) -> Option<&str> {
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
    fn ready_needs_attach_and_a_recent_export() {
        let now = Instant::now();
        let mut s = PipeState { exporting: true, last_tick: Some(now), ..PipeState::default() };
        assert_eq!(answer("/readyz", &s, IV, now).0, 503);
        s.attached = true;
        let (code, why) = answer("/readyz", &s, IV, now);
        assert_eq!(code, 503, "never exported");
        assert!(why.contains("3 intervals"));
        s.last_export = Some(now.checked_sub(Duration::from_secs(29)).expect("clock"));
        assert_eq!(answer("/readyz", &s, IV, now).0, 200);
        s.last_export = Some(now.checked_sub(Duration::from_secs(31)).expect("clock"));
        assert_eq!(answer("/readyz", &s, IV, now).0, 503, "31 s > 3 x 10 s");
        s.exporting = false;
        assert_eq!(answer("/readyz", &s, IV, now).0, 200, "jsonl only: attached is enough");
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
            s.attached = true;
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
