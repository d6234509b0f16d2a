//! What the OpenTelemetry SDK's OTLP exporters (anomaly events, slow-operation spans) need
//! from the agent's own transport: its HTTP client, and the URL of each signal beside the
//! metrics one.

/// The agent's HTTP client (reqwest, with its TLS and no redirects) as the SDK's client, so
/// events and spans go out with the same certificates and policy as the metrics.
#[derive(Debug, Clone)]
pub struct SdkHttpClient(pub reqwest::Client);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for SdkHttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let (parts, body) = request.into_parts();
        let mut req = self.0.request(parts.method, parts.uri.to_string()).body(body);
        for (k, v) in &parts.headers {
            req = req.header(k, v);
        }
        let resp = req.send().await?;
        let mut out = http::Response::builder().status(resp.status().as_u16());
        for (k, v) in resp.headers() {
            out = out.header(k.as_str(), v.as_bytes());
        }
        let body = resp.bytes().await?;
        Ok(out.body(body)?)
    }
}

/// The URL of OTLP/HTTP `signal` (`logs`, `traces`) beside a metrics URL: `.../v1/metrics`
/// becomes `.../v1/<signal>`, and a URL without that path gets it added.
#[must_use]
pub fn signal_url(metrics_url: &str, signal: &str) -> String {
    match metrics_url.strip_suffix("/v1/metrics") {
        Some(base) => format!("{base}/v1/{signal}"),
        None => format!("{}/v1/{signal}", metrics_url.trim_end_matches('/')),
    }
}

/// Builds one of the SDK's OTLP exporters (`LogExporter`, `SpanExporter`) over the agent's
/// transport: over gRPC on its channel with its metadata, timeout and compression; over
/// OTLP/HTTP through its client to `url_of(<the transport's URL>)`, as protobuf whatever
/// `OTEL_EXPORTER_OTLP_PROTOCOL` says. Evaluates to the builder's `Result`. (A macro: the
/// exporters' builders share these methods but no trait.)
#[macro_export]
macro_rules! sdk_exporter {
    ($exporter:path, $transport:expr, $url_of:expr) => {{
        use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _, WithTonicConfig as _};
        match $transport {
            $crate::transport::Transport::Grpc { channel, metadata, gzip, timeout, .. } => {
                let mut b = <$exporter>::builder()
                    .with_tonic()
                    .with_channel(channel.clone())
                    .with_metadata(metadata.clone())
                    .with_timeout(*timeout);
                if *gzip {
                    b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
                }
                b.build()
            }
            $crate::transport::Transport::Http { client, url, headers, gzip } => {
                let mut b = <$exporter>::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_http_client($crate::sdk::SdkHttpClient(client.clone()))
                    .with_endpoint(($url_of)(url.as_str()))
                    .with_headers($crate::sdk::header_map(headers));
                if *gzip {
                    b = b.with_compression(opentelemetry_otlp::Compression::Gzip);
                }
                b.build()
            }
        }
    }};
}

/// The transport's headers as the SDK's HTTP exporters take them.
#[must_use]
pub fn header_map(headers: &reqwest::header::HeaderMap) -> std::collections::HashMap<String, String> {
    headers.iter().filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_go_beside_metrics() {
        assert_eq!(signal_url("http://c:4318/v1/metrics", "logs"), "http://c:4318/v1/logs");
        assert_eq!(signal_url("https://c/otlp/", "traces"), "https://c/otlp/v1/traces");
    }
}
