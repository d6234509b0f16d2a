//! OTLP transports: gRPC (tonic) and HTTP/protobuf (reqwest), with headers, gzip, timeout
//! and TLS (CA bundle, client certificate).

use std::{io::Write, path::PathBuf, sync::Arc, time::Duration};

use bytes::BufMut;
use nasflow_enrich::error_chain as chain;
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use prost::Message;
use tonic::{
    codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::http::uri::PathAndQuery,
    metadata::{MetadataKey, MetadataMap, MetadataValue},
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
    Status,
};

/// Longest wait for a connection to the collector.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The OTLP metrics export method.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// Sends an already encoded `ExportMetricsServiceRequest` as is and decodes the response.
#[derive(Debug, Clone, Copy, Default)]
struct EncodedExportCodec;

#[derive(Debug)]
struct PassThrough;

#[derive(Debug)]
struct ResponseDecoder;

impl Encoder for PassThrough {
    type Item = Arc<Vec<u8>>;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportMetricsServiceResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        Message::decode(src).map(Some).map_err(|e| Status::internal(format!("bad export response: {e}")))
    }
}

impl Codec for EncodedExportCodec {
    type Encode = Arc<Vec<u8>>;
    type Decode = ExportMetricsServiceResponse;
    type Encoder = PassThrough;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> PassThrough {
        PassThrough
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

/// What the collector said to a request it answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// Data points it rejected (OTLP `partial_success.rejected_data_points`).
    pub rejected: i64,
    /// Why, as it said (`partial_success.error_message`).
    pub message: String,
}

/// A request that was not accepted, classified as the OTLP specification says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth sending again: the collector was unreachable, overloaded or timed out.
    #[error("{detail}")]
    Retryable {
        /// What happened.
        detail: String,
        /// How long the collector asked to wait (gRPC `RetryInfo`, HTTP `Retry-After`).
        after: Option<Duration>,
    },
    /// Refused for good (malformed, too large, unauthorised, redirected): sending the same
    /// again cannot succeed.
    #[error("{detail}")]
    Permanent {
        /// A short stable name for telemetry (`invalid_argument`, `http_413`, ...).
        reason: String,
        /// What happened.
        detail: String,
    },
}

/// How the OTLP specification classes a gRPC status: retryable, with the server's delay when
/// it gave one. `RESOURCE_EXHAUSTED` is retryable only with a `RetryInfo`.
#[must_use]
pub fn classify_grpc(code: tonic::Code, retry_info: Option<Duration>) -> Option<Option<Duration>> {
    use tonic::Code;
    match code {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::Cancelled
        | Code::OutOfRange
        | Code::DataLoss => Some(retry_info),
        Code::ResourceExhausted if retry_info.is_some() => Some(retry_info),
        _ => None,
    }
}

/// Whether an HTTP status is worth retrying (429, 502, 503, 504).
#[must_use]
pub fn retryable_http(status: u16) -> bool {
    matches!(status, 429 | 502 | 503 | 504)
}

/// A `Retry-After` value: delay seconds or an HTTP date.
#[must_use]
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn grpc_reason(code: tonic::Code) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// The configuration cannot work (bad endpoint, unreadable certificate, bad header).
    #[error("OTLP configuration: {0}")]
    Config(String),
    /// The collector could not be reached, or refused the request.
    #[error("OTLP export to {endpoint}: {detail}")]
    Export {
        /// Where to.
        endpoint: String,
        /// What happened.
        detail: String,
    },
}

/// OTLP protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC (default port 4317).
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318, path `/v1/metrics`).
    HttpProtobuf,
}

/// Where and how to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// Protocol.
    pub protocol: Protocol,
    /// gRPC: the collector's URL. HTTP: the full URL of the metrics path.
    pub endpoint: String,
    /// Extra headers (e.g. authentication).
    pub headers: Vec<(String, String)>,
    /// gzip the requests.
    pub gzip: bool,
    /// Per-request timeout.
    pub timeout: Duration,
    /// CA bundle (PEM) to verify the collector.
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    pub client_key: Option<PathBuf>,
    /// HTTP/2 ping and TCP keepalive period; a ping unanswered for half of it closes the
    /// connection ([`DEFAULT_KEEPALIVE`]).
    pub keepalive: Duration,
}

/// Default [`TransportConfig::keepalive`]: a black-holed collector is noticed within about
/// half a minute.
pub const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(20);

fn read(path: &PathBuf) -> Result<Vec<u8>, OtlpError> {
    std::fs::read(path).map_err(|e| OtlpError::Config(format!("reading {}: {e}", path.display())))
}

/// A connected (lazily) OTLP client.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // one per agent, built once: its size does not matter
pub enum Transport {
    /// OTLP/gRPC.
    Grpc {
        /// The tonic client.
        client: tonic::client::Grpc<Channel>,
        /// Headers as gRPC metadata.
        metadata: MetadataMap,
        /// For messages.
        endpoint: String,
        /// The channel the client uses, for other OTLP signals (anomaly events) to share.
        channel: Channel,
        /// gzip the requests.
        gzip: bool,
        /// Per-request timeout.
        timeout: Duration,
    },
    /// OTLP/HTTP protobuf.
    Http {
        /// The HTTP client.
        client: reqwest::Client,
        /// Full URL.
        url: String,
        /// Extra headers.
        headers: reqwest::header::HeaderMap,
        /// gzip bodies.
        gzip: bool,
    },
}

impl Transport {
    /// Builds the client. Nothing is sent and no connection is made yet, so a collector that
    /// is down at start is not an error.
    pub fn new(cfg: &TransportConfig) -> Result<Self, OtlpError> {
        let https = cfg.endpoint.starts_with("https://");
        if !https && !cfg.endpoint.starts_with("http://") {
            return Err(OtlpError::Config(format!("endpoint {}: give a scheme, http:// or https://", cfg.endpoint)));
        }
        let identity = match (&cfg.client_cert, &cfg.client_key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            (None, None) => None,
            _ => {
                return Err(OtlpError::Config("a client certificate needs its key, and the key its certificate".into()))
            }
        };
        let ca = cfg.ca.as_ref().map(read).transpose()?;
        match cfg.protocol {
            Protocol::Grpc => {
                let mut ep = Endpoint::from_shared(cfg.endpoint.clone())
                    .map_err(|e| OtlpError::Config(format!("endpoint {}: {e}", cfg.endpoint)))?
                    .timeout(cfg.timeout)
                    .connect_timeout(CONNECT_TIMEOUT.min(cfg.timeout))
                    // A collector that stops answering (a dead node, a black-holed route) is
                    // noticed by HTTP/2 pings and TCP keepalive, and the channel reconnects.
                    .http2_keep_alive_interval(cfg.keepalive)
                    .keep_alive_timeout(cfg.keepalive / 2)
                    .keep_alive_while_idle(true)
                    .tcp_keepalive(Some(cfg.keepalive));
                if https {
                    let mut tls = ClientTlsConfig::new().with_native_roots();
                    if let Some(ca) = &ca {
                        tls = tls.ca_certificate(Certificate::from_pem(ca));
                    }
                    if let Some((c, k)) = &identity {
                        tls = tls.identity(Identity::from_pem(c, k));
                    }
                    ep = ep.tls_config(tls).map_err(|e| OtlpError::Config(chain(&e)))?;
                }
                let channel = ep.connect_lazy();
                let mut client = tonic::client::Grpc::new(channel.clone());
                if cfg.gzip {
                    client = client.send_compressed(CompressionEncoding::Gzip);
                }
                let mut metadata = MetadataMap::new();
                for (k, v) in &cfg.headers {
                    let key = MetadataKey::from_bytes(k.to_ascii_lowercase().as_bytes())
                        .map_err(|e| OtlpError::Config(format!("header {k}: {e}")))?;
                    let value = MetadataValue::try_from(v.as_str())
                        .map_err(|e| OtlpError::Config(format!("header {k}: {e}")))?;
                    metadata.insert(key, value);
                }
                Ok(Self::Grpc {
                    client,
                    metadata,
                    endpoint: cfg.endpoint.clone(),
                    channel,
                    gzip: cfg.gzip,
                    timeout: cfg.timeout,
                })
            }
            Protocol::HttpProtobuf => {
                let mut b = reqwest::Client::builder()
                    .timeout(cfg.timeout)
                    .connect_timeout(CONNECT_TIMEOUT.min(cfg.timeout))
                    .tcp_keepalive(cfg.keepalive)
                    // Headers (credentials) must not follow a redirect to another host, and a
                    // 302 would turn the POST into a GET: redirects are errors.
                    .redirect(reqwest::redirect::Policy::none())
                    .use_rustls_tls();
                if let Some(ca) = &ca {
                    for c in reqwest::Certificate::from_pem_bundle(ca)
                        .map_err(|e| OtlpError::Config(format!("CA bundle: {e}")))?
                    {
                        b = b.add_root_certificate(c);
                    }
                }
                if let Some((c, k)) = &identity {
                    let mut pem = c.clone();
                    pem.extend_from_slice(k);
                    b = b.identity(
                        reqwest::Identity::from_pem(&pem)
                            .map_err(|e| OtlpError::Config(format!("client certificate: {e}")))?,
                    );
                }
                let client = b.build().map_err(|e| OtlpError::Config(chain(&e)))?;
                let mut headers = reqwest::header::HeaderMap::new();
                for (k, v) in &cfg.headers {
                    let name = reqwest::header::HeaderName::from_bytes(k.as_bytes())
                        .map_err(|e| OtlpError::Config(format!("header {k}: {e}")))?;
                    let value = reqwest::header::HeaderValue::from_str(v)
                        .map_err(|e| OtlpError::Config(format!("header {k}: {e}")))?;
                    headers.insert(name, value);
                }
                Ok(Self::Http { client, url: cfg.endpoint.clone(), headers, gzip: cfg.gzip })
            }
        }
    }

    /// Where requests go.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        match self {
            Self::Grpc { endpoint, .. } => endpoint,
            Self::Http { url, .. } => url,
        }
    }

    /// Sends one encoded `ExportMetricsServiceRequest`: what the collector answered, or why
    /// it did not accept the request, classified for retrying.
    pub async fn send(&mut self, req: &Arc<Vec<u8>>) -> Result<Answer, SendError> {
        let retry = |detail: String| SendError::Retryable { detail, after: None };
        let answer = |p: Option<opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess>| {
            p.map_or_else(Answer::default, |p| Answer { rejected: p.rejected_data_points, message: p.error_message })
        };
        match self {
            Self::Grpc { client, metadata, .. } => {
                client.ready().await.map_err(|e| retry(chain(&e)))?;
                let mut r = tonic::Request::new(Arc::clone(req));
                *r.metadata_mut() = metadata.clone();
                let path = PathAndQuery::from_static(EXPORT_PATH);
                match client.unary(r, path, EncodedExportCodec).await {
                    Ok(resp) => Ok(answer(resp.into_inner().partial_success)),
                    Err(s) => {
                        let mut detail = format!("{:?}: {}", s.code(), s.message());
                        if let Some(src) = std::error::Error::source(&s) {
                            detail.push_str(": ");
                            detail.push_str(&chain(src));
                        }
                        // A status with a source error was made by the client from a
                        // connection failure (reset, closed mid-request): no answer came, so it
                        // is retried whatever its code. Only the collector's own statuses are
                        // classed by code.
                        if std::error::Error::source(&s).is_some() {
                            return Err(SendError::Retryable { detail, after: None });
                        }
                        let retry_info = tonic_types::StatusExt::get_details_retry_info(&s).and_then(|r| r.retry_delay);
                        match classify_grpc(s.code(), retry_info) {
                            Some(after) => Err(SendError::Retryable { detail, after }),
                            None => Err(SendError::Permanent { reason: grpc_reason(s.code()), detail }),
                        }
                    }
                }
            }
            Self::Http { client, url, headers, gzip } => {
                let raw: &[u8] = req;
                let mut rb =
                    client.post(url.as_str()).headers(headers.clone()).header("content-type", "application/x-protobuf");
                let body = if *gzip {
                    let mut enc =
                        flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4), flate2::Compression::fast());
                    enc.write_all(raw).map_err(|e| retry(e.to_string()))?;
                    rb = rb.header("content-encoding", "gzip");
                    enc.finish().map_err(|e| retry(e.to_string()))?
                } else {
                    raw.to_vec()
                };
                let resp = rb.body(body).send().await.map_err(|e| retry(chain(&e)))?;
                let status = resp.status();
                if status.is_success() {
                    let body = resp.bytes().await.map_err(|e| retry(chain(&e)))?;
                    // An empty body is full success; a protobuf body may carry partial success.
                    let decoded = ExportMetricsServiceResponse::decode(body.as_ref()).unwrap_or_default();
                    return Ok(answer(decoded.partial_success));
                }
                let after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
                let text = resp.text().await.unwrap_or_default();
                let detail = format!("HTTP {status}: {}", text.chars().take(200).collect::<String>());
                if retryable_http(status.as_u16()) {
                    Err(SendError::Retryable { detail, after })
                } else if status.is_redirection() {
                    Err(SendError::Permanent {
                        reason: "redirect".into(),
                        detail: format!("{detail} (redirects are not followed: set the final URL)"),
                    })
                } else {
                    Err(SendError::Permanent { reason: format!("http_{}", status.as_u16()), detail })
                }
            }
        }
    }
}

/// Raw and gzip-compressed size of an encoded request, for the bytes-per-series benchmark.
#[must_use]
pub fn gzip_size(raw: &[u8]) -> (usize, usize) {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let gz = enc.write_all(raw).ok().and_then(|()| enc.finish().ok()).map_or(0, |v| v.len());
    (raw.len(), gz)
}

/// Decodes an encoded request (tests, tools).
pub fn decode(raw: &[u8]) -> Result<ExportMetricsServiceRequest, prost::DecodeError> {
    ExportMetricsServiceRequest::decode(raw)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use tonic::Code;

    use super::*;

    #[test]
    fn grpc_codes_are_classed_as_the_otlp_specification_says() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::Cancelled,
            Code::OutOfRange,
            Code::DataLoss,
        ] {
            assert_eq!(classify_grpc(code, None), Some(None), "{code:?}");
        }
        let hint = Some(Duration::from_secs(3));
        assert_eq!(classify_grpc(Code::ResourceExhausted, hint), Some(hint), "retryable with RetryInfo");
        assert_eq!(classify_grpc(Code::ResourceExhausted, None), None, "permanent without");
        for code in
            [Code::InvalidArgument, Code::Unauthenticated, Code::PermissionDenied, Code::Unknown, Code::Internal]
        {
            assert_eq!(classify_grpc(code, None), None, "{code:?}");
        }
        assert_eq!(grpc_reason(Code::InvalidArgument), "invalid_argument");
        assert_eq!(grpc_reason(Code::ResourceExhausted), "resource_exhausted");
    }

    #[test]
    fn http_statuses_and_retry_after() {
        assert!([429, 502, 503, 504].iter().all(|s| retryable_http(*s)));
        assert!(![400, 401, 403, 404, 413, 500, 302].iter().any(|s| retryable_http(*s)));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now), Some(Duration::ZERO), "in the past");
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
