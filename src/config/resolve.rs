//! The merged [`Settings`] into what the agent runs with: the built-in defaults for whatever
//! no layer set, the few checks that involve several settings, and the OTLP resource.

use std::{path::PathBuf, time::Duration};

use anyhow::{bail, Context, Result};
use nasflow_enrich::kubelet::KubeletConfig;
use nasflow_otlp_out::{
    encode::{self, EncodeOptions, HistogramKind},
    transport::{self, TransportConfig},
};

use super::{
    settings::Settings,
    values::{Compression, Header, Histogram, Protocol, ServerMode, Switch, Temporality},
    OtlpConfig, RunConfig,
};

/// The built-in defaults: the lowest layer. `--help` states them ("[default: ...]" in the
/// [`Settings`] docs): change both together.
mod default {
    use std::time::Duration;

    pub const INTERVAL: Duration = Duration::from_secs(10);
    pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
    pub const PROC_ROOT: &str = "/proc";
    pub const MAX_KERNEL_SERIES: u32 = 10_240;
    pub const MAX_DIRECTORIES: usize = 64;
    pub const SLOW_OP_THRESHOLD: Duration = Duration::from_millis(500);
    pub const MAX_SLOW_OPS_PER_SECOND: u32 = 50;
    pub const KUBELET_REFRESH: Duration = Duration::from_secs(10);
    pub const OTLP_TIMEOUT: Duration = Duration::from_secs(10);
    pub const MAX_SERIES: usize = 20_000;
    pub const OTLP_MAX_REQUEST_BYTES: usize = nasflow_otlp_out::encode::DEFAULT_MAX_REQUEST_BYTES;
    /// Below the chart's `terminationGracePeriodSeconds` (30 s).
    pub const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
}

impl Settings {
    /// What `nasflow run` runs with; an error when it would have nowhere to send metrics.
    pub fn resolve(self) -> Result<RunConfig> {
        let otlp = self.otlp();
        let interval = self.interval.unwrap_or(default::INTERVAL);
        let anomaly = self.anomaly(interval)?;
        let encode = self.encode_options();
        if self.output.is_none() && otlp.is_none() && self.prometheus_listen.is_none() {
            bail!(
                "nowhere to send metrics: set --otlp-endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT), e.g. \
                 http://otel-collector:4317, or --prometheus-listen 0.0.0.0:9809 to be scraped, or pass \
                 --output jsonl to print them"
            );
        }
        if otlp.is_none() && self.otlp_traces_endpoint.is_some() {
            tracing::warn!(
                "a traces endpoint without --otlp-endpoint: slow-operation spans go out beside OTLP metrics only, so none are sent"
            );
        }
        let kubelet = match (&self.kubelet_url, &self.node_name) {
            (None, None) => None,
            (url, node) => {
                let mut k = KubeletConfig::in_cluster(node.as_deref().unwrap_or("127.0.0.1"));
                if let Some(url) = url {
                    k.url.clone_from(url);
                }
                if let Some(t) = self.kubelet_token_file {
                    k.token_path = Some(t);
                }
                if let Some(c) = self.kubelet_ca_file {
                    k.ca_path = Some(c);
                }
                k.insecure_skip_tls_verify = self.kubelet_insecure_skip_tls_verify.unwrap_or(false);
                if let Some(max) = self.kubelet_max_body_bytes {
                    k.max_body = max;
                }
                Some(k)
            }
        };
        let max_directories = self.max_directories.unwrap_or(default::MAX_DIRECTORIES);
        if max_directories > usize::from(nasflow_probe::MAX_DIRS) {
            bail!("--max-directories {max_directories}: at most {}", nasflow_probe::MAX_DIRS);
        }
        let directories =
            nasflow_enrich::directories::parse(self.directories.as_deref().unwrap_or_default(), max_directories)
                .context("--directories")?;
        let operations = self.operations.as_deref().map(operations).transpose()?;
        let counts = |name: &str| operations.as_ref().is_none_or(|set| set.contains(name));
        Ok(RunConfig {
            output: self.output,
            otlp,
            interval,
            anomaly,
            shutdown_timeout: self.shutdown_timeout.unwrap_or(default::SHUTDOWN_TIMEOUT),
            health_listen: self.health_listen,
            prometheus_listen: self.prometheus_listen,
            encode,
            cgroup_root: self.cgroup_root.unwrap_or_else(|| PathBuf::from(default::CGROUP_ROOT)),
            max_kernel_series: self.max_kernel_series.unwrap_or(default::MAX_KERNEL_SERIES),
            features: {
                let d = nasflow_probe::programs::Features::default();
                nasflow_probe::programs::Features {
                    app_bytes: self.app_bytes.map_or(d.app_bytes, Switch::on),
                    rtt: self.rtt.map_or(d.rtt, Switch::on),
                    latency: self.latency.map_or(d.latency, Switch::on),
                    directories: !directories.is_empty(),
                    reads: counts("READ"),
                    writes: counts("WRITE"),
                    commits: counts("COMMIT"),
                    metadata: operations
                        .as_ref()
                        .is_none_or(|set| set.iter().any(|n| !["READ", "WRITE", "COMMIT"].contains(&n.as_str()))),
                }
            },
            directories,
            operations,
            slow_ops: match self.slow_op_threshold.unwrap_or(default::SLOW_OP_THRESHOLD) {
                t if t.is_zero() => None,
                // Nothing would read the reports (no spans, no jsonl): the kernel does no work.
                _ if self.otlp_endpoint.is_none() && self.output.is_none() => None,
                threshold => Some(nasflow_probe::SlowOpOptions {
                    threshold,
                    per_second: self.max_slow_ops_per_second.unwrap_or(default::MAX_SLOW_OPS_PER_SECOND),
                }),
            },
            host_root: self.host_root.unwrap_or_else(|| PathBuf::from("/")),
            nfs_server: self.nfs_server.map_or(nasflow_probe::server::ServerMode::Auto, ServerMode::probe),
            proc_root: self.proc_root.unwrap_or_else(|| PathBuf::from(default::PROC_ROOT)),
            node_name: self.node_name,
            kubelet,
            kubelet_refresh: self.kubelet_refresh.unwrap_or(default::KUBELET_REFRESH),
            task_labels: self.task_labels.unwrap_or_default().into_iter().filter(|l| !l.is_empty()).collect(),
        })
    }

    /// The anomaly detector's settings, or `None` when switched off.
    fn anomaly(&self, interval: Duration) -> Result<Option<nasflow_detect::DetectConfig>> {
        if self.anomaly.is_some_and(|s| !s.on()) {
            return Ok(None);
        }
        let warmup = self.anomaly_warmup.unwrap_or(nasflow_detect::detector::DEFAULT_WARMUP);
        let intervals = warmup.as_nanos().div_ceil(interval.as_nanos().max(1));
        let min = u128::from(nasflow_detect::detector::MIN_WINDOW);
        let max = u128::from(nasflow_detect::detector::MAX_WINDOW);
        if intervals < min || intervals > max {
            bail!(
                "--anomaly-warmup {}: {intervals} intervals of {}; give {min} to {max} intervals ({} to {})",
                humantime::format_duration(warmup),
                humantime::format_duration(interval),
                humantime::format_duration(interval * nasflow_detect::detector::MIN_WINDOW),
                humantime::format_duration(interval * nasflow_detect::detector::MAX_WINDOW),
            );
        }
        Ok(Some(nasflow_detect::DetectConfig {
            interval,
            warmup: u32::try_from(intervals).unwrap_or(nasflow_detect::detector::MAX_WINDOW),
            threshold: self.anomaly_threshold.unwrap_or(nasflow_detect::detector::DEFAULT_THRESHOLD),
        }))
    }

    /// The OTLP settings, or `None` when no layer sets an endpoint.
    fn otlp(&self) -> Option<OtlpConfig> {
        let endpoint = self.otlp_endpoint.as_ref()?;
        let protocol = self.otlp_protocol.unwrap_or(Protocol::Grpc);
        let timeout = self.otlp_timeout.unwrap_or(default::OTLP_TIMEOUT);
        let gzip = self.otlp_compression.unwrap_or(Compression::Gzip) == Compression::Gzip;
        let transport = TransportConfig {
            protocol: transport_protocol(protocol),
            endpoint: match protocol {
                Protocol::Grpc => endpoint.url.clone(),
                Protocol::HttpProtobuf => metrics_url(&endpoint.url, endpoint.exact),
            },
            headers: pairs(self.otlp_headers.as_deref().unwrap_or_default()),
            gzip,
            timeout,
            ca: self.otlp_certificate.clone(),
            client_cert: self.otlp_client_certificate.clone(),
            client_key: self.otlp_client_key.clone(),
            keepalive: transport::DEFAULT_KEEPALIVE,
        };
        // The spans share the metrics' collector and settings unless their own say otherwise.
        let traces_protocol = self.otlp_traces_protocol.unwrap_or(protocol);
        // Metrics sent to their own URL (OTEL_EXPORTER_OTLP_METRICS_ENDPOINT): spans go to
        // the generic endpoint when there is one, as the OpenTelemetry variables mean it.
        let generic = self.otlp_generic_endpoint.as_ref().filter(|_| endpoint.exact);
        let traces = TransportConfig {
            protocol: transport_protocol(traces_protocol),
            endpoint: match (traces_protocol, self.otlp_traces_endpoint.as_ref().or(generic)) {
                (Protocol::Grpc, Some(t)) => t.url.clone(),
                (Protocol::Grpc, None) => endpoint.url.clone(),
                (Protocol::HttpProtobuf, Some(t)) => signal_url(&t.url, t.exact, "traces"),
                (Protocol::HttpProtobuf, None) => {
                    nasflow_otlp_out::sdk::signal_url(&metrics_url(&endpoint.url, endpoint.exact), "traces")
                }
            },
            headers: pairs(
                super::settings::merge_headers(self.otlp_headers.clone(), self.otlp_traces_headers.clone())
                    .as_deref()
                    .unwrap_or_default(),
            ),
            gzip: self.otlp_traces_compression.map_or(gzip, |c| c == Compression::Gzip),
            timeout: self.otlp_traces_timeout.unwrap_or(timeout),
            ..transport.clone()
        };
        Some(OtlpConfig { transport, traces, encode: self.encode_options() })
    }

    /// How series are encoded, for OTLP and for `/metrics` alike.
    fn encode_options(&self) -> EncodeOptions {
        EncodeOptions {
            histogram: match self.histogram.unwrap_or(Histogram::Exponential) {
                Histogram::Exponential => HistogramKind::Exponential,
                Histogram::Explicit => HistogramKind::Explicit,
            },
            temporality: match self.temporality.unwrap_or(Temporality::Cumulative) {
                Temporality::Cumulative => encode::Temporality::Cumulative,
                Temporality::Delta => encode::Temporality::Delta,
            },
            max_series: self.max_series.unwrap_or(default::MAX_SERIES),
            resource: self.resource(),
            scope_version: env!("CARGO_PKG_VERSION").to_owned(),
            max_request_bytes: self.otlp_max_request_bytes.unwrap_or(default::OTLP_MAX_REQUEST_BYTES),
        }
    }

    /// The resource: `OTEL_RESOURCE_ATTRIBUTES`, then `OTEL_SERVICE_NAME`, then nasflow's own
    /// (`service.name`, `service.version`, `host.name`, `k8s.node.name`) where not given.
    fn resource(&self) -> Vec<(String, String)> {
        let mut attrs = pairs(self.resource_attributes.as_deref().unwrap_or_default());
        let mut set = |k: &str, v: String, force: bool| match attrs.iter_mut().find(|(key, _)| key == k) {
            Some(e) if force => e.1 = v,
            Some(_) => {}
            None => attrs.push((k.to_owned(), v)),
        };
        if let Some(name) = &self.service_name {
            set("service.name", name.clone(), true);
        }
        set("service.name", "nasflow".to_owned(), false);
        set("service.version", env!("CARGO_PKG_VERSION").to_owned(), false);
        if let Some(node) = &self.node_name {
            set("k8s.node.name", node.clone(), false);
            set("host.name", node.clone(), false);
        } else if let Some(host) = hostname() {
            set("host.name", host, false);
        }
        attrs
    }
}

fn pairs(headers: &[Header]) -> Vec<(String, String)> {
    headers.iter().map(|h| (h.name.clone(), h.value.clone())).collect()
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty())
}

/// For http/protobuf, a collector URL without a path gets `/v1/metrics`, unless it is `exact`
/// (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, used as given).
pub fn metrics_url(url: &str, exact: bool) -> String {
    signal_url(url, exact, "metrics")
}

/// The OTLP/HTTP URL of `signal`: `url` as given when `exact` or when it has a path, else
/// with `/v1/<signal>` added.
fn signal_url(url: &str, exact: bool, signal: &str) -> String {
    if exact {
        return url.to_owned();
    }
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    match after_scheme.find('/') {
        Some(i) if after_scheme[i..].trim_end_matches('/').is_empty() => {
            format!("{}/v1/{signal}", url.trim_end_matches('/'))
        }
        Some(_) => url.to_owned(),
        None => format!("{url}/v1/{signal}"),
    }
}

fn transport_protocol(p: Protocol) -> transport::Protocol {
    match p {
        Protocol::Grpc => transport::Protocol::Grpc,
        Protocol::HttpProtobuf => transport::Protocol::HttpProtobuf,
    }
}

/// `--operations`: procedure names as the kernel spells them (any case), each one it sends.
fn operations(list: &[String]) -> Result<std::collections::BTreeSet<String>> {
    let known = |n: &str| {
        nasflow_probe::KNOWN_PROCS.contains(&n) || nasflow_probe::PRELOADED_PROCS.iter().any(|(p, _)| *p == n)
    };
    let mut set = std::collections::BTreeSet::new();
    for raw in list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
        let name = raw.to_ascii_uppercase();
        if name == "READ_PLUS" || !known(&name) {
            bail!(
                "--operations: `{raw}` is not an NFS operation the kernel client sends (READ, WRITE, COMMIT, \
                 GETATTR, LOOKUP, ACCESS, CREATE, REMOVE, OPEN, CLOSE, ...; READ covers READ_PLUS)"
            );
        }
        set.insert(name);
    }
    if set.is_empty() {
        bail!("--operations: name at least one operation (READ,WRITE,COMMIT,...), or leave it unset to count all");
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Output;

    #[test]
    fn metrics_path_is_added_to_bare_urls_only() {
        assert_eq!(metrics_url("http://c:4318", false), "http://c:4318/v1/metrics");
        assert_eq!(metrics_url("http://c:4318/", false), "http://c:4318/v1/metrics");
        assert_eq!(metrics_url("http://c:4318/otlp/v1/metrics", false), "http://c:4318/otlp/v1/metrics");
        assert_eq!(metrics_url("http://c:4318", true), "http://c:4318");
    }

    #[test]
    fn defaults_fill_in() {
        let cfg = Settings { output: Some(Output::Jsonl), ..Settings::default() }.resolve().expect("ok");
        assert_eq!(cfg.interval, default::INTERVAL);
        assert_eq!(cfg.cgroup_root, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(cfg.proc_root, PathBuf::from("/proc"));
        assert_eq!(cfg.max_kernel_series, 10_240);
        assert_eq!(cfg.kubelet_refresh, Duration::from_secs(10));
        assert!(cfg.otlp.is_none() && cfg.kubelet.is_none() && cfg.task_labels.is_empty());
    }
}
