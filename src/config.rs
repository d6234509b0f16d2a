//! Command line, environment and the optional YAML config file, merged into one [`RunConfig`].
//! Precedence: flag or environment variable, then the config file, then the default.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use nasflow_enrich::kubelet::KubeletConfig;
use nasflow_otlp_out::{
    encode::{EncodeOptions, HistogramKind, Temporality},
    transport::{Protocol, TransportConfig},
};
use serde::Deserialize;

/// nasflow: which pod, task and process drives the traffic on your NFS storage.
#[derive(Debug, Parser)]
#[command(name = "nasflow", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace the NFS client and report per cgroup, device and operation.
    Run(Box<RunArgs>),
    /// Check this node: print each requirement with OK, WARN or FAIL and the fix; exits
    /// non-zero when something blocks running. Reads the same flags, variables and config
    /// file as `run`, so `kubectl exec ds/nasflow -- nasflow check` checks the agent's setup.
    Check(CheckArgs),
}

/// How `nasflow check` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Report {
    /// One line per requirement.
    #[default]
    Text,
    /// A JSON array of {name, status, detail, fix}.
    Json,
}

/// Flags of `nasflow check`: those of `run` that say where things are.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = Report::Text)]
    pub output: Report,
    /// Config file and node settings, as for `run`.
    #[command(flatten)]
    pub node: NodeArgs,
    /// OTLP collector URL (or `OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT`).
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
}

impl CheckArgs {
    /// The run configuration these flags describe (no output required).
    pub fn resolve(self) -> anyhow::Result<RunConfig> {
        RunArgs {
            node: self.node,
            output: Some(Output::Jsonl),
            otlp_endpoint: self.otlp_endpoint,
            ..RunArgs::default()
        }
        .resolve()
    }
}

/// Where snapshots go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// One JSON object per (cgroup, device, operation) and interval on standard output.
    Jsonl,
}

/// Where the host's things are and how to reach the kubelet: shared by `run` and `check`.
#[derive(Debug, Default, Args)]
pub struct NodeArgs {
    /// YAML config file (keys as the long flags, with underscores).
    #[arg(long, env = "NASFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// The host's cgroup mount (a hostPath mount of /sys/fs/cgroup inside a container).
    #[arg(long, env = "NASFLOW_CGROUP_ROOT")]
    pub cgroup_root: Option<PathBuf>,
    /// The host's /proc (`/host/proc` in a container); mountinfo comes from `<it>/1/mountinfo`.
    #[arg(long, env = "NASFLOW_PROC_ROOT")]
    pub proc_root: Option<PathBuf>,
    /// This node's name (downward API `spec.nodeName`); enables the kubelet at `https://<it>:10250`.
    #[arg(long, env = "K8S_NODE_NAME")]
    pub node_name: Option<String>,
    /// Kubelet base URL, e.g. `https://10.0.0.4:10250` or the read-only `http://127.0.0.1:10255`.
    #[arg(long, env = "NASFLOW_KUBELET_URL")]
    pub kubelet_url: Option<String>,
    /// Bearer token file for the kubelet (default: the pod's service account token).
    #[arg(long, env = "NASFLOW_KUBELET_TOKEN_FILE")]
    pub kubelet_token_file: Option<PathBuf>,
    /// CA bundle for the kubelet's serving certificate (default: the service account CA).
    #[arg(long, env = "NASFLOW_KUBELET_CA_FILE")]
    pub kubelet_ca_file: Option<PathBuf>,
    /// Accept any kubelet serving certificate (self-signed kubelet certificates).
    #[arg(long, env = "NASFLOW_KUBELET_INSECURE_SKIP_TLS_VERIFY")]
    pub kubelet_insecure_skip_tls_verify: bool,
}

/// Flags of `nasflow run`; each is also an environment variable.
#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// Config file and node settings.
    #[command(flatten)]
    pub node: NodeArgs,
    /// Output mode.
    #[arg(long, env = "NASFLOW_OUTPUT", value_enum)]
    pub output: Option<Output>,
    /// Time between snapshots (e.g. `2s`, `500ms`).
    #[arg(long, env = "NASFLOW_INTERVAL", value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,
    /// Max (cgroup, device, operation, errno) series the kernel maps hold.
    #[arg(long, env = "NASFLOW_MAX_KERNEL_SERIES")]
    pub max_kernel_series: Option<u32>,
    /// Kubelet poll period; an unknown container triggers a poll sooner (at most 1/s).
    #[arg(long, env = "NASFLOW_KUBELET_REFRESH", value_parser = humantime::parse_duration)]
    pub kubelet_refresh: Option<Duration>,
    /// Pod labels that name the task (`nasflow.task`), first present wins, comma-separated.
    #[arg(long, env = "NASFLOW_TASK_LABELS", value_delimiter = ',')]
    pub task_labels: Option<Vec<String>>,
    /// OTLP collector URL (env `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`, used as is, or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`); for http/protobuf `/v1/metrics` is added to a bare URL.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http/protobuf` (env `OTEL_EXPORTER_OTLP_[METRICS_]PROTOCOL`).
    #[arg(long)]
    pub otlp_protocol: Option<String>,
    /// Extra header `key=value`, repeatable (env `OTEL_EXPORTER_OTLP_[METRICS_]HEADERS`, comma-separated).
    #[arg(long = "otlp-header", value_name = "KEY=VALUE")]
    pub otlp_headers: Vec<String>,
    /// `gzip` or `none` (env `OTEL_EXPORTER_OTLP_[METRICS_]COMPRESSION`); default gzip.
    #[arg(long)]
    pub otlp_compression: Option<String>,
    /// Per-export timeout, e.g. `10s` (env `OTEL_EXPORTER_OTLP_[METRICS_]TIMEOUT` in ms).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub otlp_timeout: Option<Duration>,
    /// CA bundle to verify the collector (env `OTEL_EXPORTER_OTLP_[METRICS_]CERTIFICATE`).
    #[arg(long)]
    pub otlp_certificate: Option<PathBuf>,
    /// Client certificate for mTLS (env `OTEL_EXPORTER_OTLP_[METRICS_]CLIENT_CERTIFICATE`).
    #[arg(long)]
    pub otlp_client_certificate: Option<PathBuf>,
    /// Client key for mTLS (env `OTEL_EXPORTER_OTLP_[METRICS_]CLIENT_KEY`).
    #[arg(long)]
    pub otlp_client_key: Option<PathBuf>,
    /// `exponential` (scale 0, kernel buckets one to one) or `explicit` (same bounds).
    #[arg(long, env = "NASFLOW_HISTOGRAM")]
    pub histogram: Option<String>,
    /// `cumulative` or `delta` (env `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`).
    #[arg(long)]
    pub temporality: Option<String>,
    /// Series one node sends at most; the rest fold into `otel.metric.overflow` series.
    #[arg(long, env = "NASFLOW_MAX_SERIES")]
    pub max_series: Option<usize>,
    /// Serve `/healthz` and `/readyz` on this address (e.g. `0.0.0.0:9808`); off by default.
    #[arg(long, env = "NASFLOW_HEALTH_LISTEN")]
    pub health_listen: Option<std::net::SocketAddr>,
}

/// The config file: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    output: Option<Output>,
    #[serde(default, with = "humantime_serde_opt")]
    interval: Option<Duration>,
    cgroup_root: Option<PathBuf>,
    max_kernel_series: Option<u32>,
    proc_root: Option<PathBuf>,
    node_name: Option<String>,
    kubelet_url: Option<String>,
    kubelet_token_file: Option<PathBuf>,
    kubelet_ca_file: Option<PathBuf>,
    #[serde(default)]
    kubelet_insecure_skip_tls_verify: bool,
    #[serde(default, with = "humantime_serde_opt")]
    kubelet_refresh: Option<Duration>,
    task_labels: Option<Vec<String>>,
    otlp_endpoint: Option<String>,
    otlp_protocol: Option<String>,
    otlp_headers: Option<Vec<String>>,
    otlp_compression: Option<String>,
    #[serde(default, with = "humantime_serde_opt")]
    otlp_timeout: Option<Duration>,
    otlp_certificate: Option<PathBuf>,
    otlp_client_certificate: Option<PathBuf>,
    otlp_client_key: Option<PathBuf>,
    histogram: Option<String>,
    temporality: Option<String>,
    max_series: Option<usize>,
    health_listen: Option<std::net::SocketAddr>,
}

mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom)).transpose()
    }
}

/// Everything `nasflow run` needs, resolved.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// JSON lines on standard output.
    pub output: Option<Output>,
    /// OTLP push.
    pub otlp: Option<OtlpConfig>,
    /// Snapshot interval.
    pub interval: Duration,
    /// Host cgroup mount.
    pub cgroup_root: PathBuf,
    /// Kernel map capacity in series.
    pub max_kernel_series: u32,
    /// Host /proc.
    pub proc_root: PathBuf,
    /// Node name, when in a cluster.
    pub node_name: Option<String>,
    /// Kubelet access, when in a cluster.
    pub kubelet: Option<KubeletConfig>,
    /// Kubelet poll period.
    pub kubelet_refresh: Duration,
    /// Task labels.
    pub task_labels: Vec<String>,
    /// Where `/healthz` and `/readyz` are served.
    pub health_listen: Option<std::net::SocketAddr>,
}

/// OTLP export settings.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// Where and how to send.
    pub transport: TransportConfig,
    /// How to encode.
    pub encode: EncodeOptions,
    /// Bound of the last export at shutdown.
    pub shutdown_timeout: Duration,
}

/// Environment variables, from the process or (in tests) a map.
pub struct Env(std::collections::HashMap<String, String>);

impl Env {
    /// The process environment.
    pub fn process() -> Self {
        Self(std::env::vars().collect())
    }

    fn get(&self, k: &str) -> Option<String> {
        self.0.get(k).filter(|v| !v.trim().is_empty()).cloned()
    }

    /// `OTEL_EXPORTER_OTLP_METRICS_<name>`, else `OTEL_EXPORTER_OTLP_<name>`; and whether the
    /// metrics-specific one was used.
    fn otlp(&self, name: &str) -> Option<(String, bool)> {
        self.get(&format!("OTEL_EXPORTER_OTLP_METRICS_{name}"))
            .map(|v| (v, true))
            .or_else(|| self.get(&format!("OTEL_EXPORTER_OTLP_{name}")).map(|v| (v, false)))
    }
}

/// Percent-decodes a W3C baggage-style value (`OTEL_RESOURCE_ATTRIBUTES`, headers).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| char::from(c).to_digit(16);
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.extend(u8::try_from(h * 16 + l));
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `k1=v1,k2=v2` lists (headers, resource attributes); malformed items are an error.
fn key_values(s: &str, what: &str) -> Result<Vec<(String, String)>> {
    s.split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), percent_decode(v.trim()))),
            _ => bail!("{what}: `{item}` is not key=value"),
        })
        .collect()
}

/// The resource: `OTEL_RESOURCE_ATTRIBUTES`, then `OTEL_SERVICE_NAME`, then nasflow's own
/// (`service.name`, `service.version`, `host.name`, `k8s.node.name`) where not given.
fn resource(env: &Env, node_name: Option<&str>) -> Result<Vec<(String, String)>> {
    let mut attrs = match env.get("OTEL_RESOURCE_ATTRIBUTES") {
        Some(s) => key_values(&s, "OTEL_RESOURCE_ATTRIBUTES")?,
        None => Vec::new(),
    };
    let mut set = |k: &str, v: String, force: bool| match attrs.iter_mut().find(|(key, _)| key == k) {
        Some(e) if force => e.1 = v,
        Some(_) => {}
        None => attrs.push((k.to_owned(), v)),
    };
    if let Some(name) = env.get("OTEL_SERVICE_NAME") {
        set("service.name", name, true);
    }
    set("service.name", "nasflow".to_owned(), false);
    set("service.version", env!("CARGO_PKG_VERSION").to_owned(), false);
    if let Some(node) = node_name {
        set("k8s.node.name", node.to_owned(), false);
        set("host.name", node.to_owned(), false);
    } else if let Some(host) = hostname() {
        set("host.name", host, false);
    }
    Ok(attrs)
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty())
}

/// For http/protobuf, a collector URL without a path gets `/v1/metrics`.
fn metrics_url(url: &str, exact: bool) -> String {
    if exact {
        return url.to_owned();
    }
    let after_scheme = url.split_once("://").map_or(url, |(_, r)| r);
    match after_scheme.find('/') {
        Some(i) if after_scheme[i..].trim_end_matches('/').is_empty() => {
            format!("{}/v1/metrics", url.trim_end_matches('/'))
        }
        Some(_) => url.to_owned(),
        None => format!("{url}/v1/metrics"),
    }
}

impl RunArgs {
    /// The OTLP settings, or `None` when no endpoint is set anywhere.
    fn otlp(&self, file: &FileConfig, env: &Env) -> Result<Option<OtlpConfig>> {
        let (endpoint, exact) = match self.otlp_endpoint.clone().or_else(|| file.otlp_endpoint.clone()) {
            Some(e) => (e, false),
            None => match env.otlp("ENDPOINT") {
                Some(e) => e,
                None => return Ok(None),
            },
        };
        let protocol = self
            .otlp_protocol
            .clone()
            .or_else(|| file.otlp_protocol.clone())
            .or_else(|| env.otlp("PROTOCOL").map(|p| p.0))
            .unwrap_or_else(|| "grpc".to_owned());
        let protocol = match protocol.as_str() {
            "grpc" => Protocol::Grpc,
            "http/protobuf" => Protocol::HttpProtobuf,
            other => bail!("OTLP protocol `{other}`: use grpc or http/protobuf (http/json is not supported)"),
        };
        let endpoint = match protocol {
            Protocol::Grpc => endpoint,
            Protocol::HttpProtobuf => metrics_url(&endpoint, exact),
        };
        let mut headers = match env.otlp("HEADERS") {
            Some((h, _)) => key_values(&h, "OTEL_EXPORTER_OTLP_HEADERS")?,
            None => Vec::new(),
        };
        let flag_headers: Vec<String> = if self.otlp_headers.is_empty() {
            file.otlp_headers.clone().unwrap_or_default()
        } else {
            self.otlp_headers.clone()
        };
        headers.extend(key_values(&flag_headers.join(","), "--otlp-header")?);
        let compression = self
            .otlp_compression
            .clone()
            .or_else(|| file.otlp_compression.clone())
            .or_else(|| env.otlp("COMPRESSION").map(|c| c.0))
            .unwrap_or_else(|| "gzip".to_owned());
        let gzip = match compression.as_str() {
            "gzip" => true,
            "none" => false,
            other => bail!("OTLP compression `{other}`: use gzip or none"),
        };
        let env_timeout = env.otlp("TIMEOUT").and_then(|t| t.0.parse().ok()).map(Duration::from_millis);
        let timeout = self.otlp_timeout.or(file.otlp_timeout).or(env_timeout).unwrap_or(Duration::from_secs(10));
        let path = |flag: &Option<PathBuf>, file: &Option<PathBuf>, var: &str| {
            flag.clone().or_else(|| file.clone()).or_else(|| env.otlp(var).map(|v| PathBuf::from(v.0)))
        };
        let histogram =
            match self.histogram.clone().or_else(|| file.histogram.clone()).as_deref().unwrap_or("exponential") {
                "exponential" => HistogramKind::Exponential,
                "explicit" => HistogramKind::Explicit,
                other => bail!("--histogram `{other}`: use exponential or explicit"),
            };
        let temporality = self
            .temporality
            .clone()
            .or_else(|| file.temporality.clone())
            .or_else(|| env.get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE"))
            .unwrap_or_else(|| "cumulative".to_owned());
        let temporality = match temporality.to_ascii_lowercase().as_str() {
            "cumulative" => Temporality::Cumulative,
            // Every nasflow instrument is a counter or a histogram: low memory means delta.
            "delta" | "lowmemory" => Temporality::Delta,
            other => bail!("temporality `{other}`: use cumulative or delta"),
        };
        let node = self.node.node_name.clone().or_else(|| file.node_name.clone());
        Ok(Some(OtlpConfig {
            transport: TransportConfig {
                protocol,
                endpoint,
                headers,
                gzip,
                timeout,
                ca: path(&self.otlp_certificate, &file.otlp_certificate, "CERTIFICATE"),
                client_cert: path(&self.otlp_client_certificate, &file.otlp_client_certificate, "CLIENT_CERTIFICATE"),
                client_key: path(&self.otlp_client_key, &file.otlp_client_key, "CLIENT_KEY"),
            },
            encode: EncodeOptions {
                histogram,
                temporality,
                max_series: self.max_series.or(file.max_series).unwrap_or(20_000),
                resource: resource(env, node.as_deref())?,
                scope_version: env!("CARGO_PKG_VERSION").to_owned(),
            },
            shutdown_timeout: timeout,
        }))
    }
}

fn parse_file(path: &Path, text: &str) -> Result<FileConfig> {
    serde_yaml::from_str(text).with_context(|| format!("config file {}", path.display()))
}

impl RunArgs {
    /// Merges flags and environment with the config file and the defaults.
    pub fn resolve(self) -> Result<RunConfig> {
        self.resolve_with(&Env::process())
    }

    /// As [`RunArgs::resolve`], with the given environment.
    pub fn resolve_with(self, env: &Env) -> Result<RunConfig> {
        let file = match &self.node.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
                parse_file(path, &text)?
            }
            None => FileConfig::default(),
        };
        let output = self.output.or(file.output);
        let otlp = self.otlp(&file, env)?;
        if output.is_none() && otlp.is_none() {
            bail!(
                "nowhere to send metrics: set --otlp-endpoint (or OTEL_EXPORTER_OTLP_ENDPOINT), e.g. \
                 http://otel-collector:4317, or pass --output jsonl to print them"
            );
        }
        let otel_interval =
            env.get("OTEL_METRIC_EXPORT_INTERVAL").and_then(|ms| ms.parse().ok()).map(Duration::from_millis);
        let interval = self.interval.or(file.interval).or(otel_interval).unwrap_or(Duration::from_secs(10));
        if interval < Duration::from_millis(100) {
            bail!("--interval {interval:?} is too short: use 100ms or more");
        }
        let node_name = self.node.node_name.or(file.node_name);
        let kubelet_url = self.node.kubelet_url.or(file.kubelet_url);
        let kubelet = match (&kubelet_url, &node_name) {
            (None, None) => None,
            (url, node) => {
                let mut k = KubeletConfig::in_cluster(node.as_deref().unwrap_or("127.0.0.1"));
                if let Some(url) = url {
                    if !url.starts_with("http://") && !url.starts_with("https://") {
                        bail!("--kubelet-url {url}: give a scheme, http:// or https://");
                    }
                    k.url.clone_from(url);
                }
                if let Some(t) = self.node.kubelet_token_file.or(file.kubelet_token_file) {
                    k.token_path = Some(t);
                }
                if let Some(c) = self.node.kubelet_ca_file.or(file.kubelet_ca_file) {
                    k.ca_path = Some(c);
                }
                k.insecure_skip_tls_verify =
                    self.node.kubelet_insecure_skip_tls_verify || file.kubelet_insecure_skip_tls_verify;
                Some(k)
            }
        };
        Ok(RunConfig {
            output,
            otlp,
            interval,
            health_listen: self.health_listen.or(file.health_listen),
            cgroup_root: self.node.cgroup_root.or(file.cgroup_root).unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup")),
            max_kernel_series: self.max_kernel_series.or(file.max_kernel_series).unwrap_or(10_240),
            proc_root: self.node.proc_root.or(file.proc_root).unwrap_or_else(|| PathBuf::from("/proc")),
            node_name,
            kubelet,
            kubelet_refresh: self.kubelet_refresh.or(file.kubelet_refresh).unwrap_or(Duration::from_secs(10)),
            task_labels: self
                .task_labels
                .or(file.task_labels)
                .unwrap_or_default()
                .into_iter()
                .filter(|l| !l.is_empty())
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> RunArgs {
        let mut full = vec!["nasflow", "run"];
        full.extend_from_slice(v);
        match Cli::try_parse_from(full).expect("parse").command {
            Command::Run(a) => *a,
            Command::Check(_) => panic!("run expected"),
        }
    }

    #[test]
    fn check_takes_the_report_format_and_runs_settings() {
        let cli =
            Cli::try_parse_from(["nasflow", "check", "--output", "json", "--kubelet-url", "https://10.0.0.4:10250"])
                .expect("parse");
        let Command::Check(c) = cli.command else { panic!("check expected") };
        assert_eq!(c.output, Report::Json);
        let cfg = c.resolve().expect("resolve");
        assert_eq!(cfg.kubelet.map(|k| k.url).as_deref(), Some("https://10.0.0.4:10250"));
        assert!(Cli::try_parse_from(["nasflow", "check", "--output", "yaml"]).is_err());
    }

    #[test]
    fn flags_win_over_file_and_defaults_fill_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "output: jsonl\ninterval: 5s\ncgroup_root: /host/cgroup\n").expect("write");
        let cfg = args(&["--config", path.to_str().expect("utf8"), "--interval", "2s"])
            .resolve_with(&env(&[]))
            .expect("resolve");
        assert_eq!(cfg.interval, Duration::from_secs(2));
        assert_eq!(cfg.cgroup_root, PathBuf::from("/host/cgroup"));
        assert_eq!(cfg.output, Some(Output::Jsonl));
        assert_eq!(cfg.max_kernel_series, 10_240);
        assert!(cfg.kubelet.is_none(), "no node name, no kubelet URL: not in a cluster");
    }

    #[test]
    fn kubelet_from_node_name_or_url() {
        let cfg = args(&["--output", "jsonl", "--node-name", "node-1", "--task-labels", "team/task,app"])
            .resolve_with(&env(&[]))
            .expect("resolve");
        let k = cfg.kubelet.expect("kubelet");
        assert_eq!(k.url, "https://node-1:10250");
        assert_eq!(cfg.task_labels, ["team/task", "app"]);
        let cfg = args(&[
            "--output",
            "jsonl",
            "--kubelet-url",
            "http://127.0.0.1:10255",
            "--kubelet-insecure-skip-tls-verify",
        ])
        .resolve_with(&env(&[]))
        .expect("resolve");
        let k = cfg.kubelet.expect("kubelet");
        assert_eq!((k.url.as_str(), k.insecure_skip_tls_verify), ("http://127.0.0.1:10255", true));
        assert!(args(&["--output", "jsonl", "--kubelet-url", "10.0.0.1:10250"]).resolve_with(&env(&[])).is_err());
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        let err = parse_file(Path::new("x.yaml"), "output: jsonl\nintervall: 5s\n").expect_err("must fail");
        assert!(format!("{err:#}").contains("unknown field `intervall`"), "{err:#}");
    }

    #[test]
    fn missing_output_says_what_to_do() {
        let err = args(&[]).resolve_with(&env(&[])).expect_err("must fail");
        assert!(
            err.to_string().contains("--output jsonl") && err.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
            "{err}"
        );
    }

    fn env(vars: &[(&str, &str)]) -> Env {
        Env(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
    }

    #[test]
    fn otlp_from_standard_variables_metrics_specific_wins() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc,x-tenant=a"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "Delta"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "15000"),
            ("OTEL_SERVICE_NAME", "nas-agent"),
            ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.name=ignored"),
        ]);
        let cfg = args(&["--node-name", "node-7"]).resolve_with(&e).expect("resolve");
        let o = cfg.otlp.expect("otlp");
        assert_eq!(o.transport.protocol, Protocol::HttpProtobuf);
        assert_eq!(o.transport.endpoint, "http://collector:4318/v1/metrics", "base URL gets the metrics path");
        assert_eq!(
            o.transport.headers,
            vec![("authorization".into(), "Bearer abc".into()), ("x-tenant".into(), "a".into())]
        );
        assert_eq!(o.transport.timeout, Duration::from_millis(2500));
        assert!(o.transport.gzip);
        assert_eq!(o.encode.temporality, Temporality::Delta);
        assert_eq!(o.encode.max_series, 20_000);
        assert_eq!(cfg.interval, Duration::from_secs(15));
        let r: std::collections::HashMap<_, _> = o.encode.resource.into_iter().collect();
        assert_eq!(r["service.name"], "nas-agent");
        assert_eq!(r["deployment.environment"], "prod");
        assert_eq!(r["k8s.node.name"], "node-7");
        assert!(cfg.output.is_none());
    }

    #[test]
    fn metrics_endpoint_is_used_as_is_and_flags_win() {
        let e = env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4317"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://collector/otlp/custom"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ]);
        let o = args(&[]).resolve_with(&e).expect("resolve").otlp.expect("otlp");
        assert_eq!(o.transport.endpoint, "https://collector/otlp/custom");
        let flags = [
            "--otlp-endpoint",
            "http://flag:4317",
            "--otlp-protocol",
            "grpc",
            "--otlp-compression",
            "none",
            "--otlp-header",
            "k=v",
        ];
        let o = args(&flags).resolve_with(&e).expect("resolve").otlp.expect("otlp");
        assert_eq!(
            (o.transport.endpoint.as_str(), o.transport.protocol, o.transport.gzip),
            ("http://flag:4317", Protocol::Grpc, false)
        );
        assert_eq!(o.transport.headers, vec![("k".into(), "v".into())]);
    }

    #[test]
    fn bad_otlp_settings_are_named() {
        let e = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")]);
        for (flags, word) in [
            (vec!["--otlp-protocol", "http/json"], "http/json"),
            (vec!["--otlp-compression", "zstd"], "zstd"),
            (vec!["--histogram", "linear"], "linear"),
            (vec!["--temporality", "sometimes"], "sometimes"),
            (vec!["--otlp-header", "novalue"], "novalue"),
        ] {
            let err = args(&flags).resolve_with(&e).expect_err("must fail").to_string();
            assert!(err.contains(word), "{err}");
        }
        assert_eq!(percent_decode("a%2Cb%zz%"), "a,b%zz%");
        assert_eq!(metrics_url("http://c:4318/", false), "http://c:4318/v1/metrics");
        assert_eq!(metrics_url("http://c:4318/otlp/v1/metrics", false), "http://c:4318/otlp/v1/metrics");
    }
}
