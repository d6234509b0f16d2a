//! The config-file layer: a YAML mapping whose keys are the [`Settings`] fields (the long
//! flags with underscores). Unknown keys are refused, so a typo is an error, not a silently
//! ignored setting.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_yaml::{Mapping, Value};

use super::settings::Settings;

/// The settings in the file at `path`.
pub fn load(path: &Path) -> Result<Settings> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    parse(path, &text)
}

/// The settings in `text`, read from `path`. An empty file sets nothing. Each key is read on
/// its own, so an error names the file and the key (`serde_yaml` names neither for a value a
/// field refuses).
pub fn parse(path: &Path, text: &str) -> Result<Settings> {
    let file = || format!("config file {}", path.display());
    let mapping = match serde_yaml::from_str(text).with_context(file)? {
        Value::Null => return Ok(Settings::default()),
        Value::Mapping(m) => m,
        _ => bail!("{}: expected a mapping of setting: value", file()),
    };
    mapping.into_iter().try_fold(Settings::default(), |settings, (key, value)| {
        let name = key.as_str().map_or_else(|| format!("{key:?}"), str::to_owned);
        let one: Settings = serde_yaml::from_value(Value::Mapping(Mapping::from_iter([(key, value)])))
            .with_context(|| format!("{}: {name}", file()))?;
        Ok(settings.merge(one))
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::values::{Endpoint, Header, Histogram, Protocol};

    fn parse_err(text: &str) -> String {
        format!("{:#}", parse(Path::new("c.yaml"), text).expect_err(text))
    }

    #[test]
    fn every_kind_of_value_reads() {
        let s = parse(
            Path::new("c.yaml"),
            "interval: 5s\nmax_series: 100\ncgroup_root: /host/cgroup\nhistogram: explicit\n\
             otlp_protocol: http/protobuf\notlp_endpoint: http://c:4318\notlp_headers: [\"a=b%20c\"]\n\
             task_labels: [team, app]\nkubelet_insecure_skip_tls_verify: true\nhealth_listen: 0.0.0.0:9808\n",
        )
        .expect("parse");
        assert_eq!(s.interval, Some(Duration::from_secs(5)));
        assert_eq!(s.max_series, Some(100));
        assert_eq!(s.cgroup_root, Some("/host/cgroup".into()));
        assert_eq!(s.histogram, Some(Histogram::Explicit));
        assert_eq!(s.otlp_protocol, Some(Protocol::HttpProtobuf));
        assert_eq!(s.otlp_endpoint, Some(Endpoint { url: "http://c:4318".into(), exact: false }));
        assert_eq!(s.otlp_headers, Some(vec![Header { name: "a".into(), value: "b c".into() }]));
        assert_eq!(s.task_labels, Some(vec!["team".into(), "app".into()]));
        assert_eq!(s.kubelet_insecure_skip_tls_verify, Some(true));
        assert!(s.health_listen.is_some());
    }

    #[test]
    fn switches_read_as_words_and_as_yaml_booleans() {
        use crate::config::values::Switch;
        let s = parse(Path::new("c.yaml"), "app_bytes: on\nrtt: false\nlatency: \"off\"\n").expect("parse");
        assert_eq!((s.app_bytes, s.rtt, s.latency), (Some(Switch::On), Some(Switch::Off), Some(Switch::Off)));
        assert!(parse_err("rtt: maybe").contains("invalid value `maybe`, expected one of on, off"));
    }

    #[test]
    fn empty_files_set_nothing_and_other_documents_are_refused() {
        assert_eq!(parse(Path::new("c.yaml"), "").expect("empty"), Settings::default());
        assert_eq!(parse(Path::new("c.yaml"), "# nothing\n").expect("comment"), Settings::default());
        assert_eq!(parse(Path::new("c.yaml"), "{}\n").expect("empty mapping"), Settings::default());
        assert!(parse_err("- interval: 5s").contains("expected a mapping"));
        assert!(parse_err("interval: [").contains("config file c.yaml"));
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = parse_err("output: jsonl\nintervall: 5s\n");
        assert!(err.starts_with("config file c.yaml: intervall: unknown field `intervall`"), "{err}");
        // The file cannot name another file, nor set what only the environment sets.
        for key in ["config: /x.yaml", "service_name: x", "resource_attributes: [a=b]"] {
            assert!(parse_err(key).contains("unknown field"), "{key}");
        }
    }

    #[test]
    fn invalid_values_name_the_key_and_the_file() {
        for (text, says) in [
            ("histogram: foo", "invalid value `foo`, expected one of exponential, explicit"),
            ("otlp_protocol: http/json", "expected one of grpc, http/protobuf"),
            ("otlp_compression: zstd", "expected one of gzip, none"),
            ("temporality: Delta", "expected one of cumulative, delta"),
            ("output: yaml", "expected one of jsonl"),
            ("interval: 0s", "must be more than zero"),
            ("kubelet_refresh: 0s", "must be more than zero"),
            ("otlp_timeout: 0ms", "must be more than zero"),
            ("max_series: 0", "must be more than zero"),
            ("max_kernel_series: -1", "must be more than zero"),
            ("kubelet_url: 10.0.0.1:10250", "give a scheme"),
        ] {
            let key = text.split(':').next().expect("key");
            let err = parse_err(text);
            assert!(err.starts_with(&format!("config file c.yaml: {key}: ")) && err.contains(says), "{text}: {err}");
        }
    }
}
