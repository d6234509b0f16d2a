//! [`Settings`]: every setting, declared once. The same struct is the command line (clap), the
//! config file (serde) and the environment (built by [`super::env`]); each source yields a
//! partial `Settings` and [`Settings::merge`] layers them.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;
use serde::Deserialize;

use super::values::{
    self, Compression, Endpoint, Header, Histogram, Output, Protocol, ServerMode, Switch, Temporality,
};

/// Every setting, unset (`None`) unless a source gives it. The doc comments are the `--help`
/// text; each names its environment variables, which a test checks against the env layer.
/// File keys are the field names, i.e. the long flags with underscores.
#[allow(clippy::doc_markdown)] // `--help` text: variable names without backticks.
#[derive(Debug, Default, Clone, PartialEq, Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// YAML config file; keys as the long flags, with underscores [env: NASFLOW_CONFIG]
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Where snapshots go besides OTLP (a flag of `run` only, see `RunArgs`).
    #[arg(skip)]
    pub output: Option<Output>,

    /// Time between snapshots, e.g. 2s or 500ms; at least 100ms [default: 10s] [env: NASFLOW_INTERVAL,
    /// OTEL_METRIC_EXPORT_INTERVAL (ms)]
    #[arg(long, value_parser = values::interval)]
    #[serde(deserialize_with = "values::file::interval")]
    pub interval: Option<Duration>,

    /// The host's cgroup mount (a hostPath mount of /sys/fs/cgroup inside a container)
    /// [default: /sys/fs/cgroup] [env: NASFLOW_CGROUP_ROOT]
    #[arg(long)]
    pub cgroup_root: Option<PathBuf>,

    /// The host's /proc (/host/proc in a container); mountinfo comes from `<it>/1/mountinfo`
    /// [default: /proc] [env: NASFLOW_PROC_ROOT]
    #[arg(long)]
    pub proc_root: Option<PathBuf>,

    /// Max (cgroup, device, operation, errno) series the kernel maps hold [default: 10240]
    /// [env: NASFLOW_MAX_KERNEL_SERIES]
    #[arg(long, value_parser = values::count::<u32>)]
    #[serde(deserialize_with = "values::file::count")]
    pub max_kernel_series: Option<u32>,

    /// Application bytes (nfs.client.app.io): a kprobe and a kretprobe on every read() of an NFS
    /// file, page-cache hits included, the one cost on the cache-hit path, and a kretprobe on
    /// every write() [default: off]
    /// [env: NASFLOW_APP_BYTES]
    #[arg(long, value_enum)]
    pub app_bytes: Option<Switch>,

    /// RPC round-trip times (nfs.client.rpc.rtt); off detaches sunrpc:rpc_stats_latency
    /// [default: on] [env: NASFLOW_RTT]
    #[arg(long, value_enum)]
    pub rtt: Option<Switch>,

    /// Operation latency histograms (nfs.client.operation.duration); off skips their kernel work
    /// [default: on] [env: NASFLOW_LATENCY]
    #[arg(long, value_enum)]
    pub latency: Option<Switch>,

    /// NAS directories to watch, comma-separated: a path on the node (/mnt/nas/team-a) or
    /// server:/export/dir (every mount of it); traffic below one carries nfs.directory, the
    /// deepest winning [env: NASFLOW_DIRECTORIES]
    #[arg(long, value_delimiter = ',')]
    pub directories: Option<Vec<String>>,

    /// Most directories --directories may list [default: 64] [env: NASFLOW_MAX_DIRECTORIES]
    #[arg(long, value_parser = values::count::<usize>)]
    #[serde(deserialize_with = "values::file::count")]
    pub max_directories: Option<usize>,

    /// NFS operations counted, comma-separated as the kernel names them (READ,WRITE,COMMIT,
    /// LOOKUP, ...); what is left out attaches nothing of its own [default: all]
    /// [env: NASFLOW_OPERATIONS]
    #[arg(long, value_delimiter = ',')]
    pub operations: Option<Vec<String>>,

    /// The node's / as this process sees it, for --directories given as node paths (/host/root
    /// in a container, a read-only hostPath of / with HostToContainer propagation)
    /// [default: /] [env: NASFLOW_HOST_ROOT]
    #[arg(long)]
    pub host_root: Option<PathBuf>,

    /// Anomaly events (nfs.anomaly, OTLP logs) and scores (nfs.client.anomaly.score) per NAS
    /// export, naming the pods that moved it [default: on] [env: NASFLOW_ANOMALY]
    #[arg(long, value_enum)]
    pub anomaly: Option<Switch>,

    /// History a NAS needs before it is judged, also the baseline's window, e.g. 10m; at least
    /// 8 intervals [default: 10m] [env: NASFLOW_ANOMALY_WARMUP]
    #[arg(long, value_parser = values::duration)]
    #[serde(deserialize_with = "values::file::duration")]
    pub anomaly_warmup: Option<Duration>,

    /// Score (-log10 of the probability under the baseline) at which an anomaly opens; 6 is
    /// p <= 1e-6 [default: 6] [env: NASFLOW_ANOMALY_THRESHOLD]
    #[arg(long, value_parser = values::score)]
    #[serde(deserialize_with = "values::file::score")]
    pub anomaly_threshold: Option<f64>,

    /// Operations at least this long are reported one by one (jsonl `slow_op` lines), e.g.
    /// 500ms; 0 turns it off [default: 500ms] [env: NASFLOW_SLOW_OP_THRESHOLD]
    #[arg(long, value_parser = values::threshold)]
    #[serde(deserialize_with = "values::file::threshold")]
    pub slow_op_threshold: Option<Duration>,

    /// Slow operations reported per second at most; the kernel counts the rest in
    /// nasflow.probe.drops{reason="slow_ops_over_limit"} [default: 50]
    /// [env: NASFLOW_MAX_SLOW_OPS_PER_SECOND]
    #[arg(long, value_parser = values::count::<u32>)]
    #[serde(deserialize_with = "values::file::count")]
    pub max_slow_ops_per_second: Option<u32>,

    /// Trace the kernel NFS server (nfsd): auto attaches whenever the nfsd module is loaded, on
    /// also warns while it is not, off never attaches [default: auto] [env: NASFLOW_NFS_SERVER]
    #[arg(long, value_enum)]
    pub nfs_server: Option<ServerMode>,

    /// This node's name (downward API spec.nodeName); enables the kubelet at `https://<it>:10250`
    /// [env: K8S_NODE_NAME]
    #[arg(long)]
    pub node_name: Option<String>,

    /// Kubelet base URL, e.g. https://10.0.0.4:10250 or the read-only http://127.0.0.1:10255
    /// [env: NASFLOW_KUBELET_URL]
    #[arg(long, value_parser = values::http_url)]
    #[serde(deserialize_with = "values::file::http_url")]
    pub kubelet_url: Option<String>,

    /// Bearer token file for the kubelet [default: the pod's service account token]
    /// [env: NASFLOW_KUBELET_TOKEN_FILE]
    #[arg(long)]
    pub kubelet_token_file: Option<PathBuf>,

    /// CA bundle for the kubelet's serving certificate [default: the service account CA]
    /// [env: NASFLOW_KUBELET_CA_FILE]
    #[arg(long)]
    pub kubelet_ca_file: Option<PathBuf>,

    /// Accept any kubelet serving certificate (self-signed kubelet certificates); `=false` turns
    /// it off again [env: NASFLOW_KUBELET_INSECURE_SKIP_TLS_VERIFY]
    #[arg(
        long,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL",
        value_parser = values::boolean
    )]
    pub kubelet_insecure_skip_tls_verify: Option<bool>,

    /// Kubelet poll period; an unknown container triggers a poll sooner
    /// [default: 10s] [env: NASFLOW_KUBELET_REFRESH]
    #[arg(long, value_parser = values::duration)]
    #[serde(deserialize_with = "values::file::duration")]
    pub kubelet_refresh: Option<Duration>,

    /// Largest kubelet /pods body read, in bytes; a larger one is refused and the last good
    /// pod table kept [default: 67108864] [env: NASFLOW_KUBELET_MAX_BODY_BYTES]
    #[arg(long, value_parser = values::count::<usize>)]
    #[serde(deserialize_with = "values::file::count")]
    pub kubelet_max_body_bytes: Option<usize>,

    /// Pod labels that name the task (nasflow.task), first present wins, comma-separated
    /// [env: NASFLOW_TASK_LABELS]
    #[arg(long, value_delimiter = ',')]
    pub task_labels: Option<Vec<String>>,

    /// OTLP collector URL; for http/protobuf /v1/metrics is added to a bare URL, except from
    /// the METRICS variable [env: OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT]
    #[arg(long, value_parser = values::endpoint)]
    pub otlp_endpoint: Option<Endpoint>,

    /// OTLP protocol [default: grpc] [env: OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    /// OTEL_EXPORTER_OTLP_PROTOCOL]
    #[arg(long, value_enum)]
    pub otlp_protocol: Option<Protocol>,

    /// Extra header KEY=VALUE, repeatable; merged by name with the lower layers' (file key
    /// otlp_headers) [env: OTEL_EXPORTER_OTLP_METRICS_HEADERS, OTEL_EXPORTER_OTLP_HEADERS, as
    /// k1=v1,k2=v2]
    #[arg(long = "otlp-header", value_name = "KEY=VALUE", value_parser = values::header)]
    #[serde(alias = "otlp_header")]
    pub otlp_headers: Option<Vec<Header>>,

    /// OTLP compression [default: gzip] [env: OTEL_EXPORTER_OTLP_METRICS_COMPRESSION,
    /// OTEL_EXPORTER_OTLP_COMPRESSION]
    #[arg(long, value_enum)]
    pub otlp_compression: Option<Compression>,

    /// Per-export timeout, e.g. 10s [default: 10s] [env: OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
    /// OTEL_EXPORTER_OTLP_TIMEOUT (ms)]
    #[arg(long, value_parser = values::duration)]
    #[serde(deserialize_with = "values::file::duration")]
    pub otlp_timeout: Option<Duration>,

    /// CA bundle to verify the collector [default: the system roots]
    /// [env: OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE, OTEL_EXPORTER_OTLP_CERTIFICATE]
    #[arg(long)]
    pub otlp_certificate: Option<PathBuf>,

    /// Client certificate for mTLS [env: OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE,
    /// OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE]
    #[arg(long)]
    pub otlp_client_certificate: Option<PathBuf>,

    /// Client key for mTLS [env: OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY, OTEL_EXPORTER_OTLP_CLIENT_KEY]
    #[arg(long)]
    pub otlp_client_key: Option<PathBuf>,

    /// Where slow-operation spans go, when not to the metrics' collector; for http/protobuf
    /// /v1/traces is added to a bare URL, except from the variable [default: the metrics'
    /// collector, /v1/traces beside /v1/metrics] [env: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT]
    #[arg(long, value_parser = values::endpoint)]
    pub otlp_traces_endpoint: Option<Endpoint>,

    /// OTLP protocol of the spans [default: the metrics'] [env: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL]
    #[arg(long, value_enum)]
    pub otlp_traces_protocol: Option<Protocol>,

    /// Extra header KEY=VALUE of the spans, repeatable; merged by name over the metrics' headers
    /// (file key otlp_traces_headers) [env: OTEL_EXPORTER_OTLP_TRACES_HEADERS, as k1=v1,k2=v2]
    #[arg(long = "otlp-traces-header", value_name = "KEY=VALUE", value_parser = values::header)]
    #[serde(alias = "otlp_traces_header")]
    pub otlp_traces_headers: Option<Vec<Header>>,

    /// OTLP compression of the spans [default: the metrics'] [env: OTEL_EXPORTER_OTLP_TRACES_COMPRESSION]
    #[arg(long, value_enum)]
    pub otlp_traces_compression: Option<Compression>,

    /// Per-export timeout of the spans, e.g. 10s [default: the metrics']
    /// [env: OTEL_EXPORTER_OTLP_TRACES_TIMEOUT (ms)]
    #[arg(long, value_parser = values::duration)]
    #[serde(deserialize_with = "values::file::duration")]
    pub otlp_traces_timeout: Option<Duration>,

    /// Histogram encoding [default: exponential] [env: NASFLOW_HISTOGRAM]
    #[arg(long, value_enum)]
    pub histogram: Option<Histogram>,

    /// Temporality [default: cumulative] [env: OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
    /// case-insensitive, lowmemory means delta]
    #[arg(long, value_enum)]
    pub temporality: Option<Temporality>,

    /// Series one node sends at most; the rest fold into otel.metric.overflow series
    /// [default: 20000] [env: NASFLOW_MAX_SERIES]
    #[arg(long, value_parser = values::count::<usize>)]
    #[serde(deserialize_with = "values::file::count")]
    pub max_series: Option<usize>,

    /// Largest OTLP request in bytes, encoded and before compression: each interval is split
    /// into requests below it (the OpenTelemetry Collector refuses more than 4 MiB); at least
    /// 65536 [default: 3145728] [env: NASFLOW_OTLP_MAX_REQUEST_BYTES]
    #[arg(long, value_parser = values::request_bytes)]
    #[serde(deserialize_with = "values::file::request_bytes")]
    pub otlp_max_request_bytes: Option<usize>,

    /// Longest the agent takes to stop on SIGTERM or SIGINT: one last interval and its export;
    /// a second signal stops it at once [default: 20s] [env: NASFLOW_SHUTDOWN_TIMEOUT]
    #[arg(long, value_parser = values::duration)]
    #[serde(deserialize_with = "values::file::duration")]
    pub shutdown_timeout: Option<Duration>,

    /// Serve /healthz and /readyz on this address, e.g. 0.0.0.0:9808; off by default
    /// [env: NASFLOW_HEALTH_LISTEN]
    #[arg(long, value_parser = values::socket_addr)]
    pub health_listen: Option<SocketAddr>,

    /// Serve /metrics in the Prometheus text format on this address, e.g. 0.0.0.0:9809: the
    /// same series as OTLP under Prometheus names; off by default [env: NASFLOW_PROMETHEUS_LISTEN]
    #[arg(long, value_parser = values::socket_addr)]
    pub prometheus_listen: Option<SocketAddr>,

    /// Resource attributes from `OTEL_RESOURCE_ATTRIBUTES` (environment only).
    #[arg(skip)]
    #[serde(skip)]
    pub resource_attributes: Option<Vec<Header>>,

    /// `OTEL_EXPORTER_OTLP_ENDPOINT` itself (environment only): where the spans go by default
    /// when `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` sends the metrics elsewhere.
    #[arg(skip)]
    #[serde(skip)]
    pub otlp_generic_endpoint: Option<Endpoint>,

    /// `service.name` from `OTEL_SERVICE_NAME` (environment only).
    #[arg(skip)]
    #[serde(skip)]
    pub service_name: Option<String>,
}

impl Settings {
    /// These settings with every one that `over` sets replaced: `over` is the higher layer.
    /// Headers merge by name instead, so a header from the file survives the environment's
    /// (typically a Secret's) unless the environment names the same header.
    #[must_use]
    // One line per setting, destructured so none is forgotten: long by nature.
    #[allow(clippy::too_many_lines)]
    pub fn merge(self, over: Settings) -> Settings {
        // Destructured, so a new field cannot be forgotten here.
        let Settings {
            config,
            output,
            interval,
            cgroup_root,
            proc_root,
            max_kernel_series,
            app_bytes,
            rtt,
            latency,
            nfs_server,
            anomaly,
            anomaly_warmup,
            anomaly_threshold,
            slow_op_threshold,
            max_slow_ops_per_second,
            directories,
            max_directories,
            operations,
            host_root,
            node_name,
            kubelet_url,
            kubelet_token_file,
            kubelet_ca_file,
            kubelet_insecure_skip_tls_verify,
            kubelet_refresh,
            kubelet_max_body_bytes,
            task_labels,
            otlp_endpoint,
            otlp_protocol,
            otlp_headers,
            otlp_compression,
            otlp_timeout,
            otlp_certificate,
            otlp_client_certificate,
            otlp_client_key,
            otlp_traces_endpoint,
            otlp_traces_protocol,
            otlp_traces_headers,
            otlp_traces_compression,
            otlp_traces_timeout,
            histogram,
            temporality,
            max_series,
            otlp_max_request_bytes,
            shutdown_timeout,
            health_listen,
            prometheus_listen,
            resource_attributes,
            otlp_generic_endpoint,
            service_name,
        } = over;
        Settings {
            config: config.or(self.config),
            output: output.or(self.output),
            interval: interval.or(self.interval),
            cgroup_root: cgroup_root.or(self.cgroup_root),
            proc_root: proc_root.or(self.proc_root),
            max_kernel_series: max_kernel_series.or(self.max_kernel_series),
            app_bytes: app_bytes.or(self.app_bytes),
            rtt: rtt.or(self.rtt),
            latency: latency.or(self.latency),
            nfs_server: nfs_server.or(self.nfs_server),
            anomaly: anomaly.or(self.anomaly),
            anomaly_warmup: anomaly_warmup.or(self.anomaly_warmup),
            anomaly_threshold: anomaly_threshold.or(self.anomaly_threshold),
            slow_op_threshold: slow_op_threshold.or(self.slow_op_threshold),
            max_slow_ops_per_second: max_slow_ops_per_second.or(self.max_slow_ops_per_second),
            directories: directories.or(self.directories),
            max_directories: max_directories.or(self.max_directories),
            operations: operations.or(self.operations),
            host_root: host_root.or(self.host_root),
            node_name: node_name.or(self.node_name),
            kubelet_url: kubelet_url.or(self.kubelet_url),
            kubelet_token_file: kubelet_token_file.or(self.kubelet_token_file),
            kubelet_ca_file: kubelet_ca_file.or(self.kubelet_ca_file),
            kubelet_insecure_skip_tls_verify: kubelet_insecure_skip_tls_verify
                .or(self.kubelet_insecure_skip_tls_verify),
            kubelet_refresh: kubelet_refresh.or(self.kubelet_refresh),
            kubelet_max_body_bytes: kubelet_max_body_bytes.or(self.kubelet_max_body_bytes),
            task_labels: task_labels.or(self.task_labels),
            otlp_endpoint: otlp_endpoint.or(self.otlp_endpoint),
            otlp_protocol: otlp_protocol.or(self.otlp_protocol),
            otlp_headers: merge_headers(self.otlp_headers, otlp_headers),
            otlp_compression: otlp_compression.or(self.otlp_compression),
            otlp_timeout: otlp_timeout.or(self.otlp_timeout),
            otlp_certificate: otlp_certificate.or(self.otlp_certificate),
            otlp_client_certificate: otlp_client_certificate.or(self.otlp_client_certificate),
            otlp_client_key: otlp_client_key.or(self.otlp_client_key),
            otlp_traces_endpoint: otlp_traces_endpoint.or(self.otlp_traces_endpoint),
            otlp_traces_protocol: otlp_traces_protocol.or(self.otlp_traces_protocol),
            otlp_traces_headers: merge_headers(self.otlp_traces_headers, otlp_traces_headers),
            otlp_traces_compression: otlp_traces_compression.or(self.otlp_traces_compression),
            otlp_traces_timeout: otlp_traces_timeout.or(self.otlp_traces_timeout),
            histogram: histogram.or(self.histogram),
            temporality: temporality.or(self.temporality),
            max_series: max_series.or(self.max_series),
            otlp_max_request_bytes: otlp_max_request_bytes.or(self.otlp_max_request_bytes),
            shutdown_timeout: shutdown_timeout.or(self.shutdown_timeout),
            health_listen: health_listen.or(self.health_listen),
            prometheus_listen: prometheus_listen.or(self.prometheus_listen),
            resource_attributes: resource_attributes.or(self.resource_attributes),
            otlp_generic_endpoint: otlp_generic_endpoint.or(self.otlp_generic_endpoint),
            service_name: service_name.or(self.service_name),
        }
    }
}

/// The lower layer's headers whose names the higher layer does not set, then the higher's.
pub(super) fn merge_headers(under: Option<Vec<Header>>, over: Option<Vec<Header>>) -> Option<Vec<Header>> {
    match (under, over) {
        (Some(under), Some(over)) => {
            let mut merged: Vec<Header> =
                under.into_iter().filter(|h| !over.iter().any(|o| o.name.eq_ignore_ascii_case(&h.name))).collect();
            merged.extend(over);
            Some(merged)
        }
        (under, over) => over.or(under),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, value: &str) -> Header {
        Header { name: name.into(), value: value.into() }
    }

    #[test]
    fn the_higher_layer_wins_and_unset_falls_through() {
        let under = Settings {
            interval: Some(Duration::from_secs(5)),
            cgroup_root: Some("/under".into()),
            task_labels: Some(vec!["a".into()]),
            ..Settings::default()
        };
        let over =
            Settings { interval: Some(Duration::from_secs(2)), task_labels: Some(vec![]), ..Settings::default() };
        let merged = under.merge(over);
        assert_eq!(merged.interval, Some(Duration::from_secs(2)));
        assert_eq!(merged.cgroup_root, Some("/under".into()));
        assert_eq!(merged.task_labels, Some(vec![]), "a list is replaced, not appended to");
        assert_eq!(Settings::default().merge(Settings::default()), Settings::default());
    }

    #[test]
    fn headers_merge_by_name() {
        let under = Settings {
            otlp_headers: Some(vec![header("authorization", "secret"), header("x-tenant", "a")]),
            ..Settings::default()
        };
        let over = Settings { otlp_headers: Some(vec![header("X-Tenant", "b")]), ..Settings::default() };
        assert_eq!(
            under.clone().merge(over).otlp_headers,
            Some(vec![header("authorization", "secret"), header("X-Tenant", "b")])
        );
        assert_eq!(under.clone().merge(Settings::default()).otlp_headers, under.otlp_headers);
    }
}
