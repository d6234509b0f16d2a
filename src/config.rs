//! Command line, environment and the optional YAML config file, merged into one [`RunConfig`].
//! Precedence: flag or environment variable, then the config file, then the default.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use nasflow_enrich::kubelet::KubeletConfig;
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
    Run(RunArgs),
}

/// Where snapshots go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Output {
    /// One JSON object per (cgroup, device, operation) and interval on standard output.
    Jsonl,
}

/// Flags of `nasflow run`; each is also an environment variable.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// YAML config file (keys as the long flags, with underscores).
    #[arg(long, env = "NASFLOW_CONFIG")]
    pub config: Option<PathBuf>,
    /// Output mode.
    #[arg(long, env = "NASFLOW_OUTPUT", value_enum)]
    pub output: Option<Output>,
    /// Time between snapshots (e.g. `2s`, `500ms`).
    #[arg(long, env = "NASFLOW_INTERVAL", value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,
    /// The host's cgroup mount (a hostPath mount of /sys/fs/cgroup inside a container).
    #[arg(long, env = "NASFLOW_CGROUP_ROOT")]
    pub cgroup_root: Option<PathBuf>,
    /// Max (cgroup, device, operation, errno) series the kernel maps hold.
    #[arg(long, env = "NASFLOW_MAX_KERNEL_SERIES")]
    pub max_kernel_series: Option<u32>,
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
    /// Kubelet poll period; an unknown container triggers a poll sooner (at most 1/s).
    #[arg(long, env = "NASFLOW_KUBELET_REFRESH", value_parser = humantime::parse_duration)]
    pub kubelet_refresh: Option<Duration>,
    /// Pod labels that name the task (`nasflow.task`), first present wins, comma-separated.
    #[arg(long, env = "NASFLOW_TASK_LABELS", value_delimiter = ',')]
    pub task_labels: Option<Vec<String>>,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    /// Output mode.
    pub output: Output,
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
}

fn parse_file(path: &Path, text: &str) -> Result<FileConfig> {
    serde_yaml::from_str(text).with_context(|| format!("config file {}", path.display()))
}

impl RunArgs {
    /// Merges flags and environment with the config file and the defaults.
    pub fn resolve(self) -> Result<RunConfig> {
        let file = match &self.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
                parse_file(path, &text)?
            }
            None => FileConfig::default(),
        };
        let Some(output) = self.output.or(file.output) else {
            bail!("no output configured: pass --output jsonl (or set NASFLOW_OUTPUT=jsonl) to print snapshots as JSON lines");
        };
        let interval = self.interval.or(file.interval).unwrap_or(Duration::from_secs(10));
        if interval < Duration::from_millis(100) {
            bail!("--interval {interval:?} is too short: use 100ms or more");
        }
        let node_name = self.node_name.or(file.node_name);
        let kubelet_url = self.kubelet_url.or(file.kubelet_url);
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
                if let Some(t) = self.kubelet_token_file.or(file.kubelet_token_file) {
                    k.token_path = Some(t);
                }
                if let Some(c) = self.kubelet_ca_file.or(file.kubelet_ca_file) {
                    k.ca_path = Some(c);
                }
                k.insecure_skip_tls_verify =
                    self.kubelet_insecure_skip_tls_verify || file.kubelet_insecure_skip_tls_verify;
                Some(k)
            }
        };
        Ok(RunConfig {
            output,
            interval,
            cgroup_root: self.cgroup_root.or(file.cgroup_root).unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup")),
            max_kernel_series: self.max_kernel_series.or(file.max_kernel_series).unwrap_or(10_240),
            proc_root: self.proc_root.or(file.proc_root).unwrap_or_else(|| PathBuf::from("/proc")),
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
            Command::Run(a) => a,
        }
    }

    #[test]
    fn flags_win_over_file_and_defaults_fill_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "output: jsonl\ninterval: 5s\ncgroup_root: /host/cgroup\n").expect("write");
        let cfg = args(&["--config", path.to_str().expect("utf8"), "--interval", "2s"]).resolve().expect("resolve");
        assert_eq!(cfg.interval, Duration::from_secs(2));
        assert_eq!(cfg.cgroup_root, PathBuf::from("/host/cgroup"));
        assert_eq!(cfg.output, Output::Jsonl);
        assert_eq!(cfg.max_kernel_series, 10_240);
        assert!(cfg.kubelet.is_none(), "no node name, no kubelet URL: not in a cluster");
    }

    #[test]
    fn kubelet_from_node_name_or_url() {
        let cfg = args(&["--output", "jsonl", "--node-name", "node-1", "--task-labels", "team/task,app"])
            .resolve()
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
        .resolve()
        .expect("resolve");
        let k = cfg.kubelet.expect("kubelet");
        assert_eq!((k.url.as_str(), k.insecure_skip_tls_verify), ("http://127.0.0.1:10255", true));
        assert!(args(&["--output", "jsonl", "--kubelet-url", "10.0.0.1:10250"]).resolve().is_err());
    }

    #[test]
    fn unknown_config_keys_are_refused() {
        let err = parse_file(Path::new("x.yaml"), "output: jsonl\nintervall: 5s\n").expect_err("must fail");
        assert!(format!("{err:#}").contains("unknown field `intervall`"), "{err:#}");
    }

    #[test]
    fn missing_output_says_what_to_do() {
        let err = args(&[]).resolve().expect_err("must fail");
        assert!(err.to_string().contains("--output jsonl"), "{err}");
    }
}
