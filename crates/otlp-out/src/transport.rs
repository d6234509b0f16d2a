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
}

fn read(path: &PathBuf) -> Result<Vec<u8>, OtlpError> {
    std::fs::read(path).map_err(|e| OtlpError::Config(format!("reading {}: {e}", path.display())))
}

/// A connected (lazily) OTLP client.
#[derive(Debug, Clone)]
pub enum Transport {
    /// OTLP/gRPC.
    Grpc {
        /// The tonic client.
        client: tonic::client::Grpc<Channel>,
        /// Headers as gRPC metadata.
        metadata: MetadataMap,
        /// For messages.
        endpoint: String,
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
                    .connect_timeout(cfg.timeout);
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
                let mut client = tonic::client::Grpc::new(ep.connect_lazy());
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
                Ok(Self::Grpc { client, metadata, endpoint: cfg.endpoint.clone() })
            }
            Protocol::HttpProtobuf => {
                let mut b = reqwest::Client::builder().timeout(cfg.timeout).use_rustls_tls();
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

    /// Sends one encoded `ExportMetricsServiceRequest`; returns the data points the
    /// collector rejected.
    pub async fn send(&mut self, req: &Arc<Vec<u8>>) -> Result<i64, OtlpError> {
        let endpoint = self.endpoint().to_owned();
        let err = |detail: String| OtlpError::Export { endpoint: endpoint.clone(), detail };
        match self {
            Self::Grpc { client, metadata, .. } => {
                client.ready().await.map_err(|e| err(chain(&e)))?;
                let mut r = tonic::Request::new(Arc::clone(req));
                *r.metadata_mut() = metadata.clone();
                let path = PathAndQuery::from_static(EXPORT_PATH);
                let resp = client.unary(r, path, EncodedExportCodec).await.map_err(|s| {
                    let mut d = format!("{:?}: {}", s.code(), s.message());
                    if let Some(src) = std::error::Error::source(&s) {
                        d.push_str(": ");
                        d.push_str(&chain(src));
                    }
                    err(d)
                })?;
                Ok(resp.into_inner().partial_success.map_or(0, |p| p.rejected_data_points))
            }
            Self::Http { client, url, headers, gzip } => {
                let raw: &[u8] = req;
                let mut rb =
                    client.post(url.as_str()).headers(headers.clone()).header("content-type", "application/x-protobuf");
                let body = if *gzip {
                    let mut enc =
                        flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4), flate2::Compression::fast());
                    enc.write_all(raw).map_err(|e| err(e.to_string()))?;
                    rb = rb.header("content-encoding", "gzip");
                    enc.finish().map_err(|e| err(e.to_string()))?
                } else {
                    raw.to_vec()
                };
                let resp = rb.body(body).send().await.map_err(|e| err(chain(&e)))?;
                let status = resp.status();
                if !status.is_success() {
                    let text = resp.text().await.unwrap_or_default();
                    return Err(err(format!("HTTP {status}: {}", text.chars().take(200).collect::<String>())));
                }
                Ok(0)
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
