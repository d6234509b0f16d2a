//! The layers together: command line, environment and config file through
//! [`RunArgs::resolve_with`].

use std::{collections::HashMap, path::PathBuf, time::Duration};

use clap::Parser;
use nasflow_otlp_out::{encode::Temporality, transport::Protocol};

use super::*;

fn args(v: &[&str]) -> RunArgs {
    let mut full = vec!["nasflow", "run"];
    full.extend_from_slice(v);
    match Cli::try_parse_from(full).expect("parse").command {
        Command::Run(a) => *a,
        Command::Check(_) => panic!("run expected"),
    }
}

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// `nasflow run <flags>` with a config file holding `file` (when given) and the variables
/// `vars`; parse errors (flags) and resolve errors (environment, file) alike.
fn layers(file: Option<&str>, vars: &[(&str, &str)], flags: &[&str]) -> anyhow::Result<RunConfig> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.yaml");
    let mut argv = vec!["nasflow".to_owned(), "run".to_owned()];
    if let Some(text) = file {
        std::fs::write(&path, text)?;
        argv.extend(["--config".to_owned(), path.display().to_string()]);
    }
    argv.extend(flags.iter().map(|f| (*f).to_owned()));
    let Command::Run(run) = Cli::try_parse_from(argv)?.command else { anyhow::bail!("run expected") };
    run.resolve_with(env(vars))
}

fn error(file: Option<&str>, vars: &[(&str, &str)], flags: &[&str]) -> String {
    format!("{:#}", layers(file, vars, flags).expect_err("must fail"))
}

// The tests below were written for the old hand-made merge; only `resolve_with`'s argument
// (a list of variables, not an `Env`) and where a bad enumerated value is caught changed.

#[test]
fn check_takes_the_report_format_and_runs_settings() {
    let cli = Cli::try_parse_from(["nasflow", "check", "--output", "json", "--kubelet-url", "https://10.0.0.4:10250"])
        .expect("parse");
    let Command::Check(c) = cli.command else { panic!("check expected") };
    assert_eq!(c.output, Report::Json);
    let cfg = c.resolve().expect("resolve");
    assert_eq!(cfg.kubelet.map(|k| k.url).as_deref(), Some("https://10.0.0.4:10250"));
    assert!(Cli::try_parse_from(["nasflow", "check", "--output", "yaml"]).is_err());
    assert!(Cli::try_parse_from(["nasflow", "check", "--interval", "2s", "--histogram", "explicit"]).is_ok());
}

#[test]
fn flags_win_over_file_and_defaults_fill_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, "output: jsonl\ninterval: 5s\ncgroup_root: /host/cgroup\n").expect("write");
    let cfg =
        args(&["--config", path.to_str().expect("utf8"), "--interval", "2s"]).resolve_with(env(&[])).expect("resolve");
    assert_eq!(cfg.interval, Duration::from_secs(2));
    assert_eq!(cfg.cgroup_root, PathBuf::from("/host/cgroup"));
    assert_eq!(cfg.output, Some(Output::Jsonl));
    assert_eq!(cfg.max_kernel_series, 10_240);
    assert!(cfg.kubelet.is_none(), "no node name, no kubelet URL: not in a cluster");
}

#[test]
fn kubelet_from_node_name_or_url() {
    let cfg = args(&["--output", "jsonl", "--node-name", "node-1", "--task-labels", "team/task,app"])
        .resolve_with(env(&[]))
        .expect("resolve");
    let k = cfg.kubelet.expect("kubelet");
    assert_eq!(k.url, "https://node-1:10250");
    assert_eq!(cfg.task_labels, ["team/task", "app"]);
    let cfg =
        args(&["--output", "jsonl", "--kubelet-url", "http://127.0.0.1:10255", "--kubelet-insecure-skip-tls-verify"])
            .resolve_with(env(&[]))
            .expect("resolve");
    let k = cfg.kubelet.expect("kubelet");
    assert_eq!((k.url.as_str(), k.insecure_skip_tls_verify), ("http://127.0.0.1:10255", true));
    assert!(layers(None, &[], &["--output", "jsonl", "--kubelet-url", "10.0.0.1:10250"]).is_err());
}

#[test]
fn unknown_config_keys_are_refused() {
    let err = error(Some("output: jsonl\nintervall: 5s\n"), &[], &[]);
    assert!(err.contains("unknown field `intervall`"), "{err}");
}

#[test]
fn missing_output_says_what_to_do() {
    let err = args(&[]).resolve_with(env(&[])).expect_err("must fail");
    assert!(
        err.to_string().contains("--output jsonl") && err.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"),
        "{err}"
    );
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
    let cfg = args(&["--node-name", "node-7"]).resolve_with(e).expect("resolve");
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
    let r: HashMap<_, _> = o.encode.resource.into_iter().collect();
    assert_eq!(r["service.name"], "nas-agent");
    assert_eq!(r["deployment.environment"], "prod");
    assert_eq!(r["k8s.node.name"], "node-7");
    assert!(cfg.output.is_none());
}

#[test]
fn metrics_endpoint_is_used_as_is_and_flags_win() {
    let e = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4317"),
        ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://collector/otlp/custom"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
    ];
    let o = args(&[]).resolve_with(env(&e)).expect("resolve").otlp.expect("otlp");
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
    let o = args(&flags).resolve_with(env(&e)).expect("resolve").otlp.expect("otlp");
    assert_eq!(
        (o.transport.endpoint.as_str(), o.transport.protocol, o.transport.gzip),
        ("http://flag:4317", Protocol::Grpc, false)
    );
    assert_eq!(o.transport.headers, vec![("k".into(), "v".into())]);
}

/// Bad enumerated values are now refused by clap while parsing the flags, the rest still
/// while resolving.
#[test]
fn bad_otlp_settings_are_named() {
    let e = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317")];
    for (flags, word) in [
        (vec!["--otlp-protocol", "http/json"], "http/json"),
        (vec!["--otlp-compression", "zstd"], "zstd"),
        (vec!["--histogram", "linear"], "linear"),
        (vec!["--temporality", "sometimes"], "sometimes"),
        (vec!["--otlp-header", "novalue"], "novalue"),
    ] {
        let err = error(None, &e, &flags);
        assert!(err.contains(word), "{err}");
    }
}

// The layering.

/// One setting set by each layer in turn: the file, then a variable, then a flag.
struct Case {
    file: &'static str,
    var: (&'static str, &'static str),
    flag: &'static [&'static str],
    /// Variables every step sets, so the setting shows (an OTLP endpoint, a node name).
    always: &'static [(&'static str, &'static str)],
    get: fn(&RunConfig) -> String,
    /// The value with the defaults only, then with each layer added.
    expect: [&'static str; 4],
}

fn otlp(cfg: &RunConfig) -> &OtlpConfig {
    cfg.otlp.as_ref().expect("otlp")
}

const ENDPOINT: (&str, &str) = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317");

#[test]
fn each_layer_overrides_the_one_below() {
    let cases = [
        Case {
            file: "cgroup_root: /file",
            var: ("NASFLOW_CGROUP_ROOT", "/env"),
            flag: &["--cgroup-root", "/flag"],
            always: &[],
            get: |c| c.cgroup_root.display().to_string(),
            expect: ["/sys/fs/cgroup", "/file", "/env", "/flag"],
        },
        Case {
            file: "kubelet_refresh: 20s",
            var: ("NASFLOW_KUBELET_REFRESH", "30s"),
            flag: &["--kubelet-refresh", "40s"],
            always: &[],
            get: |c| format!("{:?}", c.kubelet_refresh),
            expect: ["10s", "20s", "30s", "40s"],
        },
        Case {
            file: "histogram: explicit",
            var: ("NASFLOW_HISTOGRAM", "exponential"),
            flag: &["--histogram", "explicit"],
            always: &[ENDPOINT],
            get: |c| format!("{:?}", otlp(c).encode.histogram),
            expect: ["Exponential", "Explicit", "Exponential", "Explicit"],
        },
        Case {
            file: "task_labels: [file]",
            var: ("NASFLOW_TASK_LABELS", "env1,env2"),
            flag: &["--task-labels", "flag"],
            always: &[],
            get: |c| c.task_labels.join(","),
            expect: ["", "file", "env1,env2", "flag"],
        },
        Case {
            file: "kubelet_insecure_skip_tls_verify: true",
            var: ("NASFLOW_KUBELET_INSECURE_SKIP_TLS_VERIFY", "false"),
            flag: &["--kubelet-insecure-skip-tls-verify"],
            always: &[("K8S_NODE_NAME", "node-1")],
            get: |c| c.kubelet.as_ref().expect("kubelet").insecure_skip_tls_verify.to_string(),
            expect: ["false", "true", "false", "true"],
        },
        Case {
            file: "max_series: 100",
            var: ("NASFLOW_MAX_SERIES", "200"),
            flag: &["--max-series", "300"],
            always: &[ENDPOINT],
            get: |c| otlp(c).encode.max_series.to_string(),
            expect: ["20000", "100", "200", "300"],
        },
        // The standard OTEL variables rank as environment too: above the file.
        Case {
            file: "otlp_protocol: http/protobuf",
            var: ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            flag: &["--otlp-protocol", "http/protobuf"],
            always: &[ENDPOINT],
            get: |c| format!("{:?}", otlp(c).transport.protocol),
            expect: ["Grpc", "HttpProtobuf", "Grpc", "HttpProtobuf"],
        },
        Case {
            file: "otlp_timeout: 20s",
            var: ("OTEL_EXPORTER_OTLP_TIMEOUT", "30000"),
            flag: &["--otlp-timeout", "40s"],
            always: &[ENDPOINT],
            get: |c| format!("{:?}", otlp(c).transport.timeout),
            expect: ["10s", "20s", "30s", "40s"],
        },
        Case {
            file: "temporality: delta",
            var: ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "cumulative"),
            flag: &["--temporality", "delta"],
            always: &[ENDPOINT],
            get: |c| format!("{:?}", otlp(c).encode.temporality),
            expect: ["Cumulative", "Delta", "Cumulative", "Delta"],
        },
        Case {
            file: "otlp_endpoint: http://file:4317",
            var: ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317"),
            flag: &["--otlp-endpoint", "http://flag:4317"],
            always: &[],
            get: |c| c.otlp.as_ref().map(|o| o.transport.endpoint.clone()).unwrap_or_default(),
            expect: ["", "http://file:4317", "http://env:4317", "http://flag:4317"],
        },
    ];
    for case in &cases {
        for (step, want) in case.expect.iter().enumerate() {
            let file = (step >= 1).then_some(case.file);
            let mut vars = case.always.to_vec();
            if step >= 2 {
                vars.push(case.var);
            }
            let mut flags = vec!["--output", "jsonl"];
            if step >= 3 {
                flags.extend(case.flag);
            }
            let cfg = layers(file, &vars, &flags).unwrap_or_else(|e| panic!("{} step {step}: {e:#}", case.file));
            assert_eq!((case.get)(&cfg), *want, "{} at step {step}", case.file);
        }
    }
}

#[test]
fn otel_then_nasflow_variable_then_flag_over_the_file() {
    let file = Some("output: jsonl\ninterval: 5s\n");
    let otel = ("OTEL_METRIC_EXPORT_INTERVAL", "15000");
    let nasflow = ("NASFLOW_INTERVAL", "20s");
    let interval = |vars: &[(&str, &str)], flags: &[&str]| layers(file, vars, flags).expect("resolve").interval;
    assert_eq!(interval(&[], &[]), Duration::from_secs(5));
    assert_eq!(interval(&[otel], &[]), Duration::from_secs(15));
    assert_eq!(interval(&[otel, nasflow], &[]), Duration::from_secs(20));
    assert_eq!(interval(&[nasflow, otel], &[]), Duration::from_secs(20), "not a matter of order");
    assert_eq!(interval(&[otel, nasflow], &["--interval", "2s"]), Duration::from_secs(2));
}

#[test]
fn metrics_variables_win_over_generic_ones_above_the_file() {
    let file = Some("otlp_endpoint: http://file:4318\notlp_protocol: http/protobuf\n");
    let generic = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318");
    let metrics = ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://metrics:4318/custom");
    let endpoint = |vars: &[(&str, &str)], flags: &[&str]| {
        otlp(&layers(file, vars, flags).expect("resolve")).transport.endpoint.clone()
    };
    assert_eq!(endpoint(&[], &[]), "http://file:4318/v1/metrics");
    assert_eq!(endpoint(&[generic], &[]), "http://generic:4318/v1/metrics");
    assert_eq!(endpoint(&[metrics, generic], &[]), "http://metrics:4318/custom", "used as given");
    assert_eq!(endpoint(&[metrics, generic], &["--otlp-endpoint", "http://flag:4318"]), "http://flag:4318/v1/metrics");
}

#[test]
fn headers_merge_by_name_across_layers() {
    let file = Some("otlp_headers: [x-tenant=file, x-file=1]\n");
    let vars = [ENDPOINT, ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc,x-tenant=env")];
    let headers =
        otlp(&layers(file, &vars, &["--otlp-header", "x-tenant=flag"]).expect("resolve")).transport.headers.clone();
    let want: Vec<(String, String)> = [("x-file", "1"), ("authorization", "Bearer abc"), ("x-tenant", "flag")]
        .map(|(k, v)| (k.into(), v.into()))
        .into();
    assert_eq!(headers, want);
}

#[test]
fn the_config_file_is_named_by_a_flag_or_a_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    std::fs::write(&a, "output: jsonl\nproc_root: /a\n").expect("write");
    std::fs::write(&b, "output: jsonl\nproc_root: /b\n").expect("write");
    let vars = [("NASFLOW_CONFIG", a.to_str().expect("utf8"))];
    assert_eq!(layers(None, &vars, &[]).expect("resolve").proc_root, PathBuf::from("/a"));
    let flags = ["--config", b.to_str().expect("utf8")];
    assert_eq!(layers(None, &vars, &flags).expect("resolve").proc_root, PathBuf::from("/b"));
    let err = error(None, &[("NASFLOW_CONFIG", "/nonexistent/nasflow.yaml")], &[]);
    assert!(err.contains("reading config file /nonexistent/nasflow.yaml"), "{err}");
}

#[test]
fn a_flag_turns_a_lower_layers_boolean_off() {
    let vars = [("K8S_NODE_NAME", "node-1"), ("NASFLOW_KUBELET_INSECURE_SKIP_TLS_VERIFY", "true")];
    let skip = |flags: &[&str]| {
        layers(None, &vars, flags).expect("resolve").kubelet.expect("kubelet").insecure_skip_tls_verify
    };
    assert!(skip(&["--output", "jsonl"]));
    assert!(!skip(&["--output", "jsonl", "--kubelet-insecure-skip-tls-verify=false"]));
}

#[test]
fn invalid_enumerated_values_name_the_setting_and_source() {
    let flag = error(None, &[], &["--output", "jsonl", "--histogram", "foo"]);
    assert!(flag.contains("'foo'") && flag.contains("--histogram") && flag.contains("exponential, explicit"), "{flag}");
    let var = error(None, &[("NASFLOW_HISTOGRAM", "foo")], &["--output", "jsonl"]);
    assert_eq!(var, "NASFLOW_HISTOGRAM: invalid value `foo`, expected one of exponential, explicit");
    let otel = error(None, &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")], &["--output", "jsonl"]);
    assert_eq!(otel, "OTEL_EXPORTER_OTLP_PROTOCOL: invalid value `http/json`, expected one of grpc, http/protobuf");
    let file = error(Some("histogram: foo\n"), &[], &["--output", "jsonl"]);
    assert!(
        file.contains("config.yaml") && file.contains("histogram") && file.contains("invalid value `foo`"),
        "{file}"
    );
    let output = error(None, &[("NASFLOW_OUTPUT", "yaml")], &[]);
    assert!(output.starts_with("NASFLOW_OUTPUT: invalid value `yaml`"), "{output}");
}

#[test]
fn zero_durations_and_sizes_are_refused_by_name() {
    for flag in ["--interval", "--kubelet-refresh", "--otlp-timeout", "--max-series", "--max-kernel-series"] {
        let zero = if flag.ends_with("series") { "0" } else { "0s" };
        let err = error(None, &[], &["--output", "jsonl", flag, zero]);
        assert!(err.contains(flag) && err.contains("must be more than zero"), "{err}");
    }
    for (var, zero) in [
        ("NASFLOW_INTERVAL", "0s"),
        ("NASFLOW_KUBELET_REFRESH", "0ms"),
        ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "0"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "0"),
        ("NASFLOW_MAX_SERIES", "0"),
        ("NASFLOW_MAX_KERNEL_SERIES", "0"),
    ] {
        let err = error(None, &[(var, zero)], &["--output", "jsonl"]);
        assert!(err.starts_with(var) && err.contains("must be more than zero"), "{err}");
    }
    for key in ["interval: 0s", "kubelet_refresh: 0s", "otlp_timeout: 0s", "max_series: 0", "max_kernel_series: 0"] {
        let err = error(Some(key), &[], &["--output", "jsonl"]);
        let name = key.split(':').next().expect("key");
        assert!(err.contains(name) && err.contains("must be more than zero"), "{err}");
    }
    let short = error(None, &[], &["--output", "jsonl", "--interval", "50ms"]);
    assert!(short.contains("--interval") && short.contains("100ms or more"), "{short}");
}

#[test]
fn a_bad_value_is_refused_even_where_a_higher_layer_overrides_it() {
    let err = error(Some("kubelet_refresh: 0s\n"), &[], &["--output", "jsonl", "--kubelet-refresh", "5s"]);
    assert!(err.contains("kubelet_refresh"), "{err}");
}

#[test]
fn directories_and_operations_from_every_layer() {
    use nasflow_enrich::directories::DirSpec;
    let cfg = layers(
        Some("directories: [/mnt/nas/team-a, \"nas1:/export/b/\"]\noperations: [read, WRITE]\n"),
        &[],
        &["--output", "jsonl"],
    )
    .expect("resolve");
    assert_eq!(
        cfg.directories,
        [DirSpec::Node("/mnt/nas/team-a".into()), DirSpec::Export { server: "nas1".into(), path: "/export/b".into() }]
    );
    assert_eq!(
        cfg.operations.as_ref().map(|o| o.iter().cloned().collect::<Vec<_>>()),
        Some(vec!["READ".into(), "WRITE".into()])
    );
    let f = cfg.features;
    assert!(f.directories && f.reads && f.writes && !f.commits && !f.metadata, "{f:?}");
    // The environment outranks the file, the flags the environment.
    let cfg = layers(
        Some("directories: [/a]\n"),
        &[("NASFLOW_DIRECTORIES", "/b, /c"), ("NASFLOW_OPERATIONS", "LOOKUP")],
        &["--output", "jsonl", "--directories", "/d"],
    )
    .expect("resolve");
    assert_eq!(cfg.directories, [DirSpec::Node("/d".into())]);
    assert!(cfg.features.metadata && !cfg.features.reads && !cfg.features.writes);
    let none = layers(None, &[], &["--output", "jsonl"]).expect("resolve");
    assert!(none.directories.is_empty() && !none.features.directories && none.operations.is_none());
    assert!(none.features.reads && none.features.metadata);
}

#[test]
fn bad_directories_and_operations_are_clear_errors() {
    let e = error(None, &[], &["--output", "jsonl", "--directories", "/a,/b,/c", "--max-directories", "2"]);
    assert!(e.contains("3 directories configured, more than --max-directories 2"), "{e}");
    let e = error(None, &[], &["--output", "jsonl", "--directories", "team-a"]);
    assert!(e.contains("--directories") && e.contains("`team-a`: write an absolute path"), "{e}");
    let e = error(None, &[], &["--output", "jsonl", "--operations", "READ,FROB"]);
    assert!(e.contains("`FROB` is not an NFS operation"), "{e}");
    let e = error(None, &[("NASFLOW_OPERATIONS", " , ")], &["--output", "jsonl"]);
    assert!(e.contains("name at least one operation"), "{e}");
    let e = error(None, &[], &["--output", "jsonl", "--max-directories", "5000"]);
    assert!(e.contains("at most 1024"), "{e}");
}

#[test]
fn anomaly_settings_from_every_layer_and_their_errors() {
    let cfg = layers(None, &[], &["--output", "jsonl"]).expect("resolve");
    let a = cfg.anomaly.expect("on by default");
    assert_eq!((a.warmup, a.threshold), (60, 6.0), "10 min of 10 s intervals, p <= 1e-6");
    let cfg = layers(
        Some("anomaly_warmup: 5m\nanomaly_threshold: 9\n"),
        &[("NASFLOW_ANOMALY_THRESHOLD", "8.5")],
        &["--output", "jsonl", "--interval", "5s"],
    )
    .expect("resolve");
    let a = cfg.anomaly.expect("on");
    assert_eq!((a.warmup, a.threshold, a.interval), (60, 8.5, Duration::from_secs(5)));
    let off = layers(Some("anomaly: on\n"), &[("NASFLOW_ANOMALY", "off")], &["--output", "jsonl"]).expect("resolve");
    assert!(off.anomaly.is_none());
    let e = error(None, &[], &["--output", "jsonl", "--anomaly-warmup", "30s"]);
    assert!(e.contains("--anomaly-warmup 30s: 3 intervals of 10s; give 8 to 2048 intervals (1m 20s to"), "{e}");
    let e = error(None, &[("NASFLOW_ANOMALY_THRESHOLD", "0.5")], &["--output", "jsonl"]);
    assert!(e.contains("NASFLOW_ANOMALY_THRESHOLD") && e.contains("must be from 1 to 300"), "{e}");
    let e = error(None, &[], &["--output", "jsonl", "--anomaly-threshold", "p"]);
    assert!(e.contains("expected a number such as 6"), "{e}");
}

#[test]
fn prometheus_listen_from_every_layer_and_alone_is_enough() {
    // Alone it is a destination: neither --output nor an OTLP endpoint is needed.
    let cfg = layers(None, &[], &["--prometheus-listen", "127.0.0.1:9809"]).expect("resolve");
    assert_eq!(cfg.prometheus_listen, Some("127.0.0.1:9809".parse().expect("addr")));
    assert!(layers(None, &[], &["--output", "jsonl"]).expect("resolve").prometheus_listen.is_none(), "off by default");
    let file = "prometheus_listen: 0.0.0.0:9000\n";
    let cfg = layers(Some(file), &[], &[]).expect("resolve");
    assert_eq!(cfg.prometheus_listen, Some("0.0.0.0:9000".parse().expect("addr")));
    let cfg = layers(Some(file), &[("NASFLOW_PROMETHEUS_LISTEN", "0.0.0.0:9100")], &[]).expect("resolve");
    assert_eq!(cfg.prometheus_listen, Some("0.0.0.0:9100".parse().expect("addr")));
    let cfg =
        layers(Some(file), &[("NASFLOW_PROMETHEUS_LISTEN", "0.0.0.0:9100")], &["--prometheus-listen", "[::]:9809"])
            .expect("resolve");
    assert_eq!(cfg.prometheus_listen, Some("[::]:9809".parse().expect("addr")));
    let e = error(None, &[("NASFLOW_PROMETHEUS_LISTEN", "9809")], &["--output", "jsonl"]);
    assert!(e.contains("NASFLOW_PROMETHEUS_LISTEN"), "{e}");
    let e = error(None, &[], &["--prometheus-listen", "localhost"]);
    assert!(e.contains("--prometheus-listen") || e.contains("prometheus-listen"), "{e}");
}

#[test]
fn slow_op_settings_from_every_layer_zero_is_off() {
    let cfg = layers(None, &[], &["--output", "jsonl"]).expect("resolve");
    let s = cfg.slow_ops.expect("on by default");
    assert_eq!((s.threshold, s.per_second), (Duration::from_millis(500), 50));
    let cfg = layers(
        Some("slow_op_threshold: 2s\nmax_slow_ops_per_second: 7\n"),
        &[("NASFLOW_SLOW_OP_THRESHOLD", "250ms")],
        &["--output", "jsonl", "--max-slow-ops-per-second", "9"],
    )
    .expect("resolve");
    let s = cfg.slow_ops.expect("on");
    assert_eq!((s.threshold, s.per_second), (Duration::from_millis(250), 9));
    for off in ["0", "0s", "0ms"] {
        let cfg = layers(None, &[("NASFLOW_SLOW_OP_THRESHOLD", off)], &["--output", "jsonl"]).expect("resolve");
        assert!(cfg.slow_ops.is_none(), "{off} is off");
    }
    assert!(layers(Some("slow_op_threshold: 0\n"), &[], &["--output", "jsonl"]).expect("resolve").slow_ops.is_none());
    let e = error(None, &[("NASFLOW_SLOW_OP_THRESHOLD", "-1s")], &["--output", "jsonl"]);
    assert!(e.contains("NASFLOW_SLOW_OP_THRESHOLD"), "{e}");
    let e = error(None, &[], &["--output", "jsonl", "--slow-op-threshold", "fast"]);
    assert!(e.contains("or 0 for off"), "{e}");
    let e = error(None, &[], &["--output", "jsonl", "--max-slow-ops-per-second", "0"]);
    assert!(e.contains("--max-slow-ops-per-second"), "{e}");
}

#[test]
fn spans_follow_the_metrics_unless_their_own_settings_say_otherwise() {
    let file = Some("otlp_endpoint: http://file:4318\notlp_protocol: http/protobuf\notlp_headers: [x-tenant=a]\n");
    let traces =
        |vars: &[(&str, &str)], flags: &[&str]| otlp(&layers(file, vars, flags).expect("resolve")).traces.clone();
    let same = traces(&[], &[]);
    assert_eq!(same.endpoint, "http://file:4318/v1/traces", "beside /v1/metrics");
    assert_eq!((same.gzip, same.timeout), (true, Duration::from_secs(10)));
    let custom = traces(&[("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:4318/v1/metrics")], &[]);
    assert_eq!(custom.endpoint, "http://m:4318/v1/traces");
    let apart = traces(
        &[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://m/custom"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
        ],
        &[],
    );
    assert_eq!(apart.endpoint, "http://generic:4318/v1/traces", "metrics elsewhere: the generic endpoint");
    let flagged = traces(
        &[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "https://m/custom"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://g:4318"),
        ],
        &["--otlp-endpoint", "http://flag:4318"],
    );
    assert_eq!(flagged.endpoint, "http://flag:4318/v1/traces", "a flag for the metrics takes the spans along");
    let own = traces(
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://tempo:4318/otlp/v1/traces"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=b,x-scope=t"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "none"),
        ],
        &[],
    );
    assert_eq!(own.endpoint, "http://tempo:4318/otlp/v1/traces", "used as given");
    assert_eq!(own.headers, vec![("x-tenant".to_owned(), "b".to_owned()), ("x-scope".to_owned(), "t".to_owned())]);
    assert_eq!((own.gzip, own.timeout), (false, Duration::from_millis(2500)));
    let flag = traces(&[], &["--otlp-traces-endpoint", "http://tempo:4317", "--otlp-traces-protocol", "grpc"]);
    assert_eq!(
        (flag.endpoint.as_str(), flag.protocol),
        ("http://tempo:4317", nasflow_otlp_out::transport::Protocol::Grpc)
    );
    let bare = traces(&[], &["--otlp-traces-endpoint", "http://tempo:4318"]);
    assert_eq!(bare.endpoint, "http://tempo:4318/v1/traces", "a bare URL gets the path");
    // gRPC with nothing of their own: the same settings, so the same connection.
    let grpc = otlp(&layers(None, &[ENDPOINT], &[]).expect("resolve")).clone();
    assert_eq!(grpc.traces, grpc.transport);
}

#[test]
fn slow_operations_are_reported_only_where_something_reads_them() {
    let slow = |vars: &[(&str, &str)], flags: &[&str]| layers(None, vars, flags).map(|c| c.slow_ops.is_some());
    assert!(slow(&[ENDPOINT], &[]).expect("resolve"), "spans");
    assert!(slow(&[("NASFLOW_OUTPUT", "jsonl")], &[]).expect("resolve"), "jsonl lines");
    assert!(!slow(&[("NASFLOW_PROMETHEUS_LISTEN", "127.0.0.1:9809")], &[]).expect("resolve"), "/metrics alone");
    assert!(!slow(&[ENDPOINT, ("NASFLOW_SLOW_OP_THRESHOLD", "0")], &[]).expect("resolve"), "off");
}
