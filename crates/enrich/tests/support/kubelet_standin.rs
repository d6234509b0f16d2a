//! A kubelet stand-in for tests: serves `GET /pods` from a PodList file (re-read on every
//! request, so a test can add pods) the way a kubelet does. HTTPS on a certificate from its
//! own CA with bearer-token checking (401 without the right token), or plain HTTP like the
//! read-only port. Only the kubelet cannot run here; everything else in the tests is real.

use std::{
    convert::Infallible,
    io,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use http_body_util::Full;
use hyper::{body::Bytes, server::conn::http1, service::service_fn, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// What the stand-in saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// `GET /pods` requests answered 200.
    pub pods_ok: AtomicU64,
    /// Requests refused for their token.
    pub unauthorized: AtomicU64,
    /// The last Authorization header received, if any.
    pub last_auth: Mutex<Option<String>>,
}

/// A running stand-in.
pub struct Standin {
    /// Where it listens.
    pub addr: SocketAddr,
    /// PEM of the CA that signed its serving certificate (HTTPS only).
    pub ca_pem: Option<String>,
    /// What it saw.
    pub seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Standin {
    /// Base URL for nasflow's `--kubelet-url`.
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops serving (the kubelet goes down).
    pub fn stop(&self) {
        self.task.abort();
    }
}

fn tls_acceptor() -> io::Result<(tokio_rustls::TlsAcceptor, String)> {
    let err = |e: rcgen::Error| io::Error::other(e.to_string());
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "kubelet stand-in CA");
    let ca_key = rcgen::KeyPair::generate().map_err(err)?;
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(err)?;
    let params = rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).map_err(err)?;
    let key = rcgen::KeyPair::generate().map_err(err)?;
    let cert = params.signed_by(&key, &ca).map_err(err)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .map_err(io::Error::other)?;
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca.pem()))
}

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    pods: Arc<PathBuf>,
    token: Option<Arc<String>>,
    seen: Arc<Seen>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
    seen.last_auth.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone_from(&auth);
    if let Some(token) = &token {
        if auth.as_deref() != Some(&format!("Bearer {token}")) {
            seen.unauthorized.fetch_add(1, Ordering::SeqCst);
            return Ok(respond(StatusCode::UNAUTHORIZED, "Unauthorized"));
        }
    }
    if req.method() != hyper::Method::GET || req.uri().path() != "/pods" {
        return Ok(respond(StatusCode::NOT_FOUND, "404 page not found"));
    }
    match tokio::fs::read(pods.as_ref()).await {
        Ok(body) => {
            seen.pods_ok.fetch_add(1, Ordering::SeqCst);
            let mut r = respond(StatusCode::OK, body);
            r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
            Ok(r)
        }
        Err(e) => Ok(respond(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// Starts a stand-in on `bind` serving `pods`. With a token: HTTPS and token checks.
pub async fn start(bind: &str, pods: PathBuf, token: Option<String>) -> io::Result<Standin> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let (tls, ca_pem) = match &token {
        Some(_) => {
            let (a, pem) = tls_acceptor()?;
            (Some(a), Some(pem))
        }
        None => (None, None),
    };
    let seen = Arc::new(Seen::default());
    let pods = Arc::new(pods);
    let token = token.map(Arc::new);
    let task_seen = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (pods, token, seen, tls) = (Arc::clone(&pods), token.clone(), Arc::clone(&task_seen), tls.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| handle(req, Arc::clone(&pods), token.clone(), Arc::clone(&seen)));
                let builder = http1::Builder::new();
                let _ = match tls {
                    Some(tls) => match tls.accept(stream).await {
                        Ok(s) => builder.serve_connection(TokioIo::new(s), svc).await,
                        Err(_) => return,
                    },
                    None => builder.serve_connection(TokioIo::new(stream), svc).await,
                };
            });
        }
    });
    Ok(Standin { addr, ca_pem, seen, task })
}
