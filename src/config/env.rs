//! The environment layer: the variables nasflow reads, turned into one partial [`Settings`].
//! Read here, not by clap's `env` attribute, because clap would rank a variable with the
//! flags; this layer sits between the config file and the flags.

use std::collections::HashMap;

use anyhow::{anyhow, Result};

use super::{
    settings::Settings,
    values::{self, Endpoint},
};

/// Puts a variable's value into the settings.
type Apply = fn(&mut Settings, &str) -> Result<(), String>;

/// One variable nasflow reads.
pub struct Var {
    /// The variable's name.
    pub name: &'static str,
    /// The setting it sets: a [`Settings`] field, which is also the file key.
    pub setting: &'static str,
    apply: Apply,
    /// Whether the value may hold a secret (headers), and so is kept out of error messages.
    secret: bool,
}

const fn var(name: &'static str, setting: &'static str, apply: Apply) -> Var {
    Var { name, setting, apply, secret: false }
}

const fn secret(name: &'static str, setting: &'static str, apply: Apply) -> Var {
    Var { name, setting, apply, secret: true }
}

fn put<T>(slot: &mut Option<T>, value: Result<T, String>) -> Result<(), String> {
    *slot = Some(value?);
    Ok(())
}

/// Every variable, lowest priority first: where several set one setting, the later wins. So a
/// `OTEL_EXPORTER_OTLP_METRICS_*` variable beats its generic `OTEL_EXPORTER_OTLP_*` one, and
/// `NASFLOW_INTERVAL` beats `OTEL_METRIC_EXPORT_INTERVAL`.
pub const VARS: &[Var] = &[
    // The standard OpenTelemetry exporter variables, generic then metrics-specific.
    var("OTEL_EXPORTER_OTLP_ENDPOINT", "otlp_endpoint", |s, v| put(&mut s.otlp_endpoint, values::endpoint(v))),
    var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "otlp_endpoint", |s, v| {
        put(&mut s.otlp_endpoint, Ok(Endpoint { url: v.to_owned(), exact: true }))
    }),
    var("OTEL_EXPORTER_OTLP_PROTOCOL", "otlp_protocol", |s, v| put(&mut s.otlp_protocol, values::choice(v))),
    var("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "otlp_protocol", |s, v| put(&mut s.otlp_protocol, values::choice(v))),
    secret("OTEL_EXPORTER_OTLP_HEADERS", "otlp_headers", |s, v| put(&mut s.otlp_headers, values::key_values(v))),
    secret("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "otlp_headers", |s, v| {
        put(&mut s.otlp_headers, values::key_values(v))
    }),
    var("OTEL_EXPORTER_OTLP_COMPRESSION", "otlp_compression", |s, v| put(&mut s.otlp_compression, values::choice(v))),
    var("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "otlp_compression", |s, v| {
        put(&mut s.otlp_compression, values::choice(v))
    }),
    var("OTEL_EXPORTER_OTLP_TIMEOUT", "otlp_timeout", |s, v| put(&mut s.otlp_timeout, values::millis(v))),
    var("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "otlp_timeout", |s, v| put(&mut s.otlp_timeout, values::millis(v))),
    var("OTEL_EXPORTER_OTLP_CERTIFICATE", "otlp_certificate", |s, v| put(&mut s.otlp_certificate, Ok(v.into()))),
    var("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", "otlp_certificate", |s, v| {
        put(&mut s.otlp_certificate, Ok(v.into()))
    }),
    var("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "otlp_client_certificate", |s, v| {
        put(&mut s.otlp_client_certificate, Ok(v.into()))
    }),
    var("OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE", "otlp_client_certificate", |s, v| {
        put(&mut s.otlp_client_certificate, Ok(v.into()))
    }),
    var("OTEL_EXPORTER_OTLP_CLIENT_KEY", "otlp_client_key", |s, v| put(&mut s.otlp_client_key, Ok(v.into()))),
    var("OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY", "otlp_client_key", |s, v| put(&mut s.otlp_client_key, Ok(v.into()))),
    // The spans' own, over the generic ones above (which they share otherwise); the generic
    // endpoint also kept apart, for spans when the metrics go to their own.
    var("OTEL_EXPORTER_OTLP_ENDPOINT", "otlp_generic_endpoint", |s, v| {
        put(&mut s.otlp_generic_endpoint, values::endpoint(v))
    }),
    var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "otlp_traces_endpoint", |s, v| {
        put(&mut s.otlp_traces_endpoint, Ok(Endpoint { url: v.to_owned(), exact: true }))
    }),
    var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "otlp_traces_protocol", |s, v| {
        put(&mut s.otlp_traces_protocol, values::choice(v))
    }),
    secret("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "otlp_traces_headers", |s, v| {
        put(&mut s.otlp_traces_headers, values::key_values(v))
    }),
    var("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "otlp_traces_compression", |s, v| {
        put(&mut s.otlp_traces_compression, values::choice(v))
    }),
    var("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "otlp_traces_timeout", |s, v| {
        put(&mut s.otlp_traces_timeout, values::millis(v))
    }),
    var("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "temporality", |s, v| {
        put(&mut s.temporality, values::otel_temporality(v))
    }),
    var("OTEL_METRIC_EXPORT_INTERVAL", "interval", |s, v| put(&mut s.interval, values::interval_millis(v))),
    var("OTEL_RESOURCE_ATTRIBUTES", "resource_attributes", |s, v| {
        put(&mut s.resource_attributes, values::key_values(v))
    }),
    var("OTEL_SERVICE_NAME", "service_name", |s, v| put(&mut s.service_name, Ok(v.to_owned()))),
    // The downward API's node name, by the name Kubernetes tooling uses for it.
    var("K8S_NODE_NAME", "node_name", |s, v| put(&mut s.node_name, Ok(v.to_owned()))),
    // nasflow's own.
    var("NASFLOW_CONFIG", "config", |s, v| put(&mut s.config, Ok(v.into()))),
    var("NASFLOW_OUTPUT", "output", |s, v| put(&mut s.output, values::choice(v))),
    var("NASFLOW_INTERVAL", "interval", |s, v| put(&mut s.interval, values::interval(v))),
    var("NASFLOW_CGROUP_ROOT", "cgroup_root", |s, v| put(&mut s.cgroup_root, Ok(v.into()))),
    var("NASFLOW_PROC_ROOT", "proc_root", |s, v| put(&mut s.proc_root, Ok(v.into()))),
    var("NASFLOW_MAX_KERNEL_SERIES", "max_kernel_series", |s, v| put(&mut s.max_kernel_series, values::count(v))),
    var("NASFLOW_APP_BYTES", "app_bytes", |s, v| put(&mut s.app_bytes, values::choice(v))),
    var("NASFLOW_RTT", "rtt", |s, v| put(&mut s.rtt, values::choice(v))),
    var("NASFLOW_LATENCY", "latency", |s, v| put(&mut s.latency, values::choice(v))),
    var("NASFLOW_NFS_SERVER", "nfs_server", |s, v| put(&mut s.nfs_server, values::choice(v))),
    var("NASFLOW_ANOMALY", "anomaly", |s, v| put(&mut s.anomaly, values::choice(v))),
    var("NASFLOW_ANOMALY_WARMUP", "anomaly_warmup", |s, v| put(&mut s.anomaly_warmup, values::duration(v))),
    var("NASFLOW_ANOMALY_THRESHOLD", "anomaly_threshold", |s, v| put(&mut s.anomaly_threshold, values::score(v))),
    var("NASFLOW_SLOW_OP_THRESHOLD", "slow_op_threshold", |s, v| put(&mut s.slow_op_threshold, values::threshold(v))),
    var("NASFLOW_MAX_SLOW_OPS_PER_SECOND", "max_slow_ops_per_second", |s, v| {
        put(&mut s.max_slow_ops_per_second, values::count(v))
    }),
    var("NASFLOW_DIRECTORIES", "directories", |s, v| put(&mut s.directories, Ok(values::list(v)))),
    var("NASFLOW_MAX_DIRECTORIES", "max_directories", |s, v| put(&mut s.max_directories, values::count(v))),
    var("NASFLOW_OPERATIONS", "operations", |s, v| put(&mut s.operations, Ok(values::list(v)))),
    var("NASFLOW_HOST_ROOT", "host_root", |s, v| put(&mut s.host_root, Ok(v.into()))),
    var("NASFLOW_KUBELET_URL", "kubelet_url", |s, v| put(&mut s.kubelet_url, values::http_url(v))),
    var("NASFLOW_KUBELET_TOKEN_FILE", "kubelet_token_file", |s, v| put(&mut s.kubelet_token_file, Ok(v.into()))),
    var("NASFLOW_KUBELET_CA_FILE", "kubelet_ca_file", |s, v| put(&mut s.kubelet_ca_file, Ok(v.into()))),
    var("NASFLOW_KUBELET_INSECURE_SKIP_TLS_VERIFY", "kubelet_insecure_skip_tls_verify", |s, v| {
        put(&mut s.kubelet_insecure_skip_tls_verify, values::boolean(v))
    }),
    var("NASFLOW_KUBELET_REFRESH", "kubelet_refresh", |s, v| put(&mut s.kubelet_refresh, values::duration(v))),
    var("NASFLOW_KUBELET_MAX_BODY_BYTES", "kubelet_max_body_bytes", |s, v| {
        put(&mut s.kubelet_max_body_bytes, values::count(v))
    }),
    var("NASFLOW_TASK_LABELS", "task_labels", |s, v| {
        put(&mut s.task_labels, Ok(v.split(',').map(|l| l.trim().to_owned()).collect()))
    }),
    var("NASFLOW_HISTOGRAM", "histogram", |s, v| put(&mut s.histogram, values::choice(v))),
    var("NASFLOW_MAX_SERIES", "max_series", |s, v| put(&mut s.max_series, values::count(v))),
    var("NASFLOW_OTLP_MAX_REQUEST_BYTES", "otlp_max_request_bytes", |s, v| {
        put(&mut s.otlp_max_request_bytes, values::request_bytes(v))
    }),
    var("NASFLOW_SHUTDOWN_TIMEOUT", "shutdown_timeout", |s, v| put(&mut s.shutdown_timeout, values::duration(v))),
    var("NASFLOW_HEALTH_LISTEN", "health_listen", |s, v| put(&mut s.health_listen, values::socket_addr(v))),
    var("NASFLOW_PROMETHEUS_LISTEN", "prometheus_listen", |s, v| put(&mut s.prometheus_listen, values::socket_addr(v))),
];

/// The process environment. Variables whose name or value is not UTF-8 are not nasflow's
/// concern (all of its values are text) and are skipped rather than aborting the agent.
pub fn process() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
}

/// The settings the given variables carry. An empty (or blank) variable counts as unset, as
/// the OpenTelemetry specification asks; an invalid one is an error naming it.
pub fn layer<K: Into<String>, V: Into<String>>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Settings> {
    let vars: HashMap<String, String> = vars.into_iter().map(|(k, v)| (k.into(), v.into())).collect();
    let mut settings = Settings::default();
    for var in VARS {
        if let Some(value) = vars.get(var.name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
            (var.apply)(&mut settings, value).map_err(|e| {
                let shown = if var.secret { "(not shown)" } else { value };
                anyhow!("{}: {}", var.name, values::invalid(shown, &e))
            })?;
            // Names only: values may be secrets (headers).
            tracing::debug!(variable = var.name, setting = var.setting, "setting from the environment");
        }
    }
    Ok(settings)
}

#[cfg(test)]
mod tests {
    use std::{path::PathBuf, time::Duration};

    use clap::CommandFactory;

    use super::*;
    use crate::config::{
        values::{Compression, Header, Histogram, Protocol, Temporality},
        Cli,
    };

    fn layer_of(vars: &[(&str, &str)]) -> Result<Settings> {
        layer(vars.iter().copied())
    }

    #[test]
    fn each_metrics_variable_wins_over_the_generic_one() {
        let s = layer_of(&[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://m/custom"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "a=1,b=2"),
            ("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "c=3"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "none"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/generic/ca"),
            ("OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE", "/m/ca"),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/generic/crt"),
            ("OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE", "/m/crt"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/generic/key"),
            ("OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY", "/m/key"),
        ])
        .expect("layer");
        assert_eq!(s.otlp_endpoint, Some(Endpoint { url: "https://m/custom".into(), exact: true }));
        assert_eq!(s.otlp_protocol, Some(Protocol::HttpProtobuf));
        assert_eq!(s.otlp_headers, Some(vec![Header { name: "c".into(), value: "3".into() }]), "replaced, not merged");
        assert_eq!(s.otlp_compression, Some(Compression::None));
        assert_eq!(s.otlp_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(s.otlp_certificate, Some(PathBuf::from("/m/ca")));
        assert_eq!(s.otlp_client_certificate, Some(PathBuf::from("/m/crt")));
        assert_eq!(s.otlp_client_key, Some(PathBuf::from("/m/key")));
    }

    #[test]
    fn the_generic_endpoint_is_a_base_url() {
        let s = layer_of(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318")]).expect("layer");
        assert_eq!(s.otlp_endpoint, Some(Endpoint { url: "http://generic:4318".into(), exact: false }));
    }

    #[test]
    fn nasflow_variables_win_over_otel_ones() {
        let s = layer_of(&[("OTEL_METRIC_EXPORT_INTERVAL", "15000")]).expect("layer");
        assert_eq!(s.interval, Some(Duration::from_secs(15)));
        let s = layer_of(&[("OTEL_METRIC_EXPORT_INTERVAL", "15000"), ("NASFLOW_INTERVAL", "3s")]).expect("layer");
        assert_eq!(s.interval, Some(Duration::from_secs(3)));
    }

    #[test]
    fn blank_variables_are_unset_and_others_ignored() {
        let s = layer_of(&[("NASFLOW_HISTOGRAM", " "), ("OTEL_EXPORTER_OTLP_ENDPOINT", ""), ("HOME", "/root")])
            .expect("layer");
        assert_eq!(s, Settings::default());
        let s = layer_of(&[("NASFLOW_HISTOGRAM", " explicit\n")]).expect("layer");
        assert_eq!(s.histogram, Some(Histogram::Explicit));
    }

    #[test]
    fn otel_temporality_ignores_case_and_knows_lowmemory() {
        for (v, t) in
            [("Delta", Temporality::Delta), ("CUMULATIVE", Temporality::Cumulative), ("lowmemory", Temporality::Delta)]
        {
            let s = layer_of(&[("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", v)]).expect(v);
            assert_eq!(s.temporality, Some(t), "{v}");
        }
    }

    #[test]
    fn invalid_values_name_the_variable() {
        for (name, value, says) in [
            (
                "NASFLOW_HISTOGRAM",
                "foo",
                "NASFLOW_HISTOGRAM: invalid value `foo`, expected one of exponential, explicit",
            ),
            ("NASFLOW_OUTPUT", "yaml", "NASFLOW_OUTPUT: invalid value `yaml`, expected one of jsonl"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "expected one of grpc, http/protobuf"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "zstd", "expected one of gzip, none"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "sometimes", "expected one of cumulative, delta"),
            ("NASFLOW_KUBELET_REFRESH", "0s", "NASFLOW_KUBELET_REFRESH: invalid value `0s`, must be more than zero"),
            ("NASFLOW_INTERVAL", "-2s", "NASFLOW_INTERVAL: invalid value `-2s`, must be more than zero"),
            ("NASFLOW_INTERVAL", "10ms", "NASFLOW_INTERVAL: invalid value `10ms`, too short"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "0", "OTEL_METRIC_EXPORT_INTERVAL: invalid value `0`, must be more"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "0", "OTEL_EXPORTER_OTLP_TIMEOUT: invalid value `0`, must be more"),
            ("NASFLOW_MAX_SERIES", "0", "NASFLOW_MAX_SERIES: invalid value `0`, must be more than zero"),
            ("NASFLOW_MAX_KERNEL_SERIES", "0", "NASFLOW_MAX_KERNEL_SERIES: invalid value `0`, must be more"),
            ("NASFLOW_KUBELET_INSECURE_SKIP_TLS_VERIFY", "maybe", "expected true or false"),
            ("NASFLOW_KUBELET_URL", "10.0.0.1:10250", "NASFLOW_KUBELET_URL: invalid value"),
            ("NASFLOW_HEALTH_LISTEN", "9808", "NASFLOW_HEALTH_LISTEN: invalid value"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "novalue",
                "OTEL_EXPORTER_OTLP_HEADERS: invalid value `(not shown)`, `novalue` is not",
            ),
            ("OTEL_RESOURCE_ATTRIBUTES", "a=b,c", "OTEL_RESOURCE_ATTRIBUTES: invalid value `a=b,c`, `c` is not"),
        ] {
            let err = layer_of(&[(name, value)]).expect_err(name).to_string();
            assert!(err.starts_with(name) && err.contains(says), "{name}={value}: {err}");
        }
    }

    #[test]
    fn header_values_stay_out_of_errors() {
        let err = layer_of(&[("OTEL_EXPORTER_OTLP_METRICS_HEADERS", "authorization=Bearer secret,x")])
            .expect_err("malformed")
            .to_string();
        assert!(err.contains("`x` is not key=value") && !err.contains("secret"), "{err}");
    }

    /// `--help` names every variable of a setting, and every variable it names is read.
    #[test]
    fn help_documents_every_variable_and_nothing_else() {
        let cli = Cli::command();
        let run = cli.find_subcommand("run").expect("run");
        let help = |id: &str| {
            run.get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_long_help().or(a.get_help()))
                .map(ToString::to_string)
        };
        let env_only = ["resource_attributes", "service_name", "otlp_generic_endpoint"];
        for var in VARS.iter().filter(|v| !env_only.contains(&v.setting)) {
            let text = help(var.setting).unwrap_or_else(|| panic!("{}: no flag {}", var.name, var.setting));
            assert!(text.contains(var.name), "help of --{} does not name {}: {text}", var.setting, var.name);
        }
        for arg in run.get_arguments().filter(|a| a.get_long().is_some_and(|l| l != "help")) {
            let id = arg.get_id().as_str();
            let text = help(id).unwrap_or_default();
            let (_, documented) = text.split_once("[env: ").unwrap_or_else(|| panic!("--{id} names no variable"));
            for name in documented.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')) {
                if name.len() > 3 {
                    assert!(
                        VARS.iter().any(|v| v.name == name && v.setting == id),
                        "--{id} names {name}, which does not set it"
                    );
                }
            }
        }
    }
}
