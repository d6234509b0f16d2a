//! Configuration: the command line, the environment and the optional YAML config file, layered
//! into one [`RunConfig`].
//!
//! Every setting is declared once, as an optional field of [`Settings`]. That struct is the
//! command line (clap `Args`), the config file (serde, `deny_unknown_fields`, keys are the long
//! flags with underscores) and the environment (the table in [`env`]). Each source gives a
//! partial `Settings`, and they are layered once, lowest to highest:
//!
//! 1. built-in defaults (applied by [`Settings::resolve`] to whatever no layer set);
//! 2. the config file (`--config` or `NASFLOW_CONFIG`);
//! 3. the environment: `NASFLOW_*`, `K8S_NODE_NAME` and the standard `OTEL_EXPORTER_OTLP_*`,
//!    `OTEL_EXPORTER_OTLP_METRICS_*` (which wins over the generic one),
//!    `OTEL_METRIC_EXPORT_INTERVAL`, `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`,
//!    `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`; a `NASFLOW_*` variable wins over an
//!    `OTEL_*` one for the same setting;
//! 4. command-line flags.
//!
//! A higher layer replaces a setting of a lower one (lists included); OTLP headers alone merge
//! by header name. The environment is read by [`env::layer`] rather than by clap's `env`
//! attribute, because clap cannot tell a variable from a flag and would rank it with the
//! flags; each flag's `--help` names its variables, and a test keeps the two in step.
//!
//! Values are checked as each source is read, by the same parser for every source (see
//! [`values`]), so an error names the setting and where it came from: `--interval`,
//! `NASFLOW_HISTOGRAM` or `config file /etc/nasflow/config.yaml: max_series`. Enumerated
//! settings are clap `ValueEnum`s, spelled the same in every source; zero or negative
//! durations and zero counts are refused.

mod env;
mod file;
mod resolve;
mod settings;
mod values;

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};
use nasflow_enrich::kubelet::KubeletConfig;
use nasflow_otlp_out::{encode::EncodeOptions, transport::TransportConfig};
pub use settings::Settings;

/// The config file's settings from its text (for `nasflow check`, tests and fuzzing; `run`
/// reads the file named by `--config`).
pub fn parse_file(path: &std::path::Path, text: &str) -> Result<Settings> {
    file::parse(path, text)
}

/// The environment layer from (name, value) pairs.
pub fn env_layer<K: Into<String>, V: Into<String>>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Settings> {
    env::layer(vars)
}
pub use values::Output;

/// nasflow: which pod, task and process drives the traffic on your NFS storage.
#[derive(Debug, Parser)]
#[command(name = "nasflow", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The precedence, at the end of `--help`.
const PRECEDENCE: &str = "A flag wins over its environment variable, which wins over the config file \
                          (--config), which wins over the default.";

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Trace the NFS client and report per cgroup, device and operation.
    #[command(after_help = PRECEDENCE)]
    Run(Box<RunArgs>),
    /// Check this node: print each requirement with OK, WARN or FAIL and the fix; exits
    /// non-zero when something blocks running. Reads the same flags, variables and config
    /// file as `run`, so `kubectl exec ds/nasflow -- nasflow check` checks the agent's setup.
    #[command(after_help = PRECEDENCE)]
    Check(Box<CheckArgs>),
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

/// Flags of `nasflow run`: every setting, and where snapshots go besides OTLP.
#[allow(clippy::doc_markdown)] // `--help` text: variable names without backticks.
#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// Also print snapshots: jsonl is one JSON object per (cgroup, device, operation) and
    /// interval on standard output [env: NASFLOW_OUTPUT]
    #[arg(long, value_enum)]
    pub output: Option<Output>,
    /// Every other setting, as given on the command line.
    #[command(flatten)]
    pub settings: Settings,
}

impl RunArgs {
    /// The configuration these flags, the process environment and the config file describe.
    pub fn resolve(self) -> Result<RunConfig> {
        self.resolve_with(env::process())
    }

    /// As [`RunArgs::resolve`], with the given environment variables.
    pub fn resolve_with<K: Into<String>, V: Into<String>>(
        self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<RunConfig> {
        layered(Settings { output: self.output, ..self.settings }, vars)?.resolve()
    }
}

/// Flags of `nasflow check`: its report format, and the settings of `run` (the agent's, when
/// run inside its pod).
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Report format.
    #[arg(long, value_enum, default_value_t = Report::Text)]
    pub output: Report,
    /// The agent's settings, as for `run`.
    #[command(flatten)]
    pub settings: Settings,
}

impl CheckArgs {
    /// The run configuration to check; no output is required, since `check` sends nothing.
    pub fn resolve(self) -> Result<RunConfig> {
        layered(Settings { output: Some(Output::Jsonl), ..self.settings }, env::process())?.resolve()
    }
}

/// The layers merged: the config file (named by the flags or the environment), the
/// environment, then the flags.
fn layered<K: Into<String>, V: Into<String>>(
    flags: Settings,
    vars: impl IntoIterator<Item = (K, V)>,
) -> Result<Settings> {
    let env = env::layer(vars)?;
    let file = match flags.config.as_ref().or(env.config.as_ref()) {
        Some(path) => file::load(path)?,
        None => Settings::default(),
    };
    Ok(file.merge(env).merge(flags))
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
    /// Anomaly detection, unless switched off.
    pub anomaly: Option<nasflow_detect::DetectConfig>,
    /// Longest a graceful stop takes (the last interval and its export).
    pub shutdown_timeout: Duration,
    /// Host cgroup mount.
    pub cgroup_root: PathBuf,
    /// Kernel map capacity in series.
    pub max_kernel_series: u32,
    /// Optional signals.
    pub features: nasflow_probe::programs::Features,
    /// Whether the NFS server is traced.
    pub nfs_server: nasflow_probe::server::ServerMode,
    /// Watched directories, in order (a directory's id is its place, from 1).
    pub directories: Vec<nasflow_enrich::directories::DirSpec>,
    /// Operations counted; `None` for all.
    pub operations: Option<std::collections::BTreeSet<String>>,
    /// Slow operations reported one by one; `None` when off.
    pub slow_ops: Option<nasflow_probe::SlowOpOptions>,
    /// The node's `/` as this process sees it.
    pub host_root: PathBuf,
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
    pub health_listen: Option<SocketAddr>,
    /// Where `/metrics` is served.
    pub prometheus_listen: Option<SocketAddr>,
    /// How series are encoded (OTLP and `/metrics`).
    pub encode: EncodeOptions,
}

/// OTLP export settings.
#[derive(Debug, Clone)]
pub struct OtlpConfig {
    /// Where and how to send.
    pub transport: TransportConfig,
    /// Where and how slow-operation spans go (for OTLP/HTTP the traces URL).
    pub traces: TransportConfig,
    /// How to encode.
    pub encode: EncodeOptions,
}

#[cfg(test)]
mod tests;
