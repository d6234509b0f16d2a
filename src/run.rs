//! `nasflow run`: wires the pipe. One ticker reads the kernel maps, names the rows and hands
//! them to the output; attaching and cgroup walks run beside it and never hold it up.

use std::{
    io::{self, Write},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use nasflow_detect::{events::EventSink, Deltas, Detector, EventState, Findings};
use nasflow_enrich::directories::{self, DirSpec};
use nasflow_enrich::exports::ExportTable;
use nasflow_enrich::{
    cgroup::CgroupHierarchy,
    names::{EnrichConfig, Enricher, Names},
};
use nasflow_otlp_out::{
    delivery::Delivery,
    encode::{AnomalyScore, Encoder, SelfStats, Served},
    spans::SpanSink,
    transport::Transport,
};
use nasflow_probe::{
    server::{ServerEvent, ServerMode, ServerProbe, ServerSnapshot},
    tracefs::Tracefs,
    AttachEvent, CgroupIdentity, Probe, ProbeOptions, Snapshot, WatchedDir,
};

use crate::{config::RunConfig, health, jsonl};

/// How often the probe looks for the nfs module to (re)attach.
const ATTACH_POLL: Duration = Duration::from_secs(1);
/// In-flight records older than this lost their completion: deleted. Far beyond any RPC
/// timeout with retries, so a hung server's RPCs stay visible for an hour.
const INFLIGHT_MAX_AGE: Duration = Duration::from_secs(3600);

type SharedProbe = Arc<Mutex<Probe>>;
type SharedServer = Arc<Mutex<ServerProbe>>;

fn with_probe<P, T>(probe: &Arc<Mutex<P>>, f: impl FnOnce(&mut P) -> T) -> T {
    match probe.lock() {
        Ok(mut p) => f(&mut p),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

/// The NFS server side of the pipe: its probe and the export names.
struct ServerSide {
    probe: SharedServer,
    exports: ExportTable,
    proc_root: std::path::PathBuf,
}

impl ServerSide {
    /// Reads the server maps and the kernel's export caches (blocking work, off the runtime).
    async fn read(&mut self) -> Option<ServerSnapshot> {
        let p = Arc::clone(&self.probe);
        let mut exports = std::mem::take(&mut self.exports);
        let root = self.proc_root.clone();
        let done = tokio::task::spawn_blocking(move || {
            let snap = with_probe(&p, |p| p.snapshot());
            // Only when there is something to name: the caches exist while nfsd is loaded.
            if snap.as_ref().is_ok_and(|s| !s.rows.is_empty()) {
                if let Err(e) = exports.refresh(&root) {
                    tracing::debug!(error = %e, "reading the kernel's export caches");
                }
            }
            (snap, exports)
        })
        .await;
        match done {
            Ok((snap, exports)) => {
                self.exports = exports;
                snap.map_err(|e| tracing::warn!(error = %e, "reading the NFS server maps")).ok()
            }
            Err(e) => {
                tracing::warn!(error = %e, "server snapshot task failed");
                None
            }
        }
    }
}

/// The NFS server side, unless switched off: its probe, attached by a loop of its own.
fn start_server(cfg: &RunConfig) -> Result<Option<ServerSide>> {
    if cfg.nfs_server == ServerMode::Off {
        return Ok(None);
    }
    let tracefs = Tracefs::find_or_mount().context("starting the server probe")?;
    let probe: SharedServer =
        Arc::new(Mutex::new(ServerProbe::new(tracefs, cfg.features.latency, cfg.max_kernel_series)));
    tokio::spawn(server_attach_loop(Arc::clone(&probe), cfg.nfs_server));
    Ok(Some(ServerSide { probe, exports: ExportTable::default(), proc_root: cfg.proc_root.clone() }))
}

/// Polls for nfsd like [`attach_loop`] for the client; `on` also says while it is missing.
async fn server_attach_loop(probe: SharedServer, mode: ServerMode) {
    let mut last_error = String::new();
    let mut said_missing = false;
    loop {
        let p = Arc::clone(&probe);
        match tokio::task::spawn_blocking(move || with_probe(&p, |p| (p.poll(), p.nfsd_present()))).await {
            Ok((Ok(ServerEvent::Attached), _)) => {
                last_error.clear();
                said_missing = false;
            }
            Ok((Ok(_), present)) => {
                if !present && mode == ServerMode::On && !said_missing {
                    tracing::warn!("--nfs-server on: the nfsd module is not loaded; attaching when it is");
                    said_missing = true;
                }
            }
            Ok((Err(e), _)) => {
                let msg = format!("{e:#}");
                if msg != last_error {
                    tracing::error!(error = %msg, "cannot attach to the NFS server");
                    last_error = msg;
                }
            }
            Err(e) => tracing::error!(error = %e, "server attach task failed"),
        }
        tokio::time::sleep(ATTACH_POLL).await;
    }
}

/// What the pipe sends: the metrics (OTLP and `/metrics`), the anomaly detector and its
/// events, and the slow-operation spans.
struct Outputs {
    otlp: Option<OtlpSink>,
    anomaly: Option<Anomaly>,
    spans: Option<SpanSink>,
}

/// The OTLP exporter (when an endpoint is set), the anomaly detector (unless switched off),
/// whose events share the exporter's connection, and the slow-operation spans (with an
/// endpoint and slow operations on).
fn start_outputs(cfg: &RunConfig) -> Result<Outputs> {
    let mut events = None;
    let mut delivery = None;
    let mut spans = None;
    let encoder = Encoder::new(cfg.encode.clone());
    if let Some(o) = &cfg.otlp {
        let transport = Transport::new(&o.transport)?;
        tracing::info!(endpoint = transport.endpoint(), protocol = ?o.transport.protocol, "pushing OTLP metrics");
        if cfg.anomaly.is_some() {
            // Events are a convenience on top of the metrics: without them the agent still
            // runs, logs each anomaly and exports the score gauge.
            match EventSink::new(&transport, &o.encode.resource, &o.encode.scope_version) {
                Ok(sink) => events = Some(sink),
                Err(e) => tracing::warn!(error = %e, "anomaly events are not sent (they are still logged)"),
            }
        }
        if let Some(slow) = cfg.slow_ops {
            spans = Some(start_spans(o, &transport, slow, cfg.interval)?);
        }
        delivery = Some(Delivery::spawn(transport, &encoder));
    }
    let metrics_text = cfg.prometheus_listen.map(|_| health::MetricsText::default());
    let otlp = (delivery.is_some() || metrics_text.is_some()).then(|| OtlpSink {
        encoder,
        delivery,
        last_seq: 0,
        metrics_text,
    });
    let anomaly = cfg.anomaly.map(|c| {
        tracing::info!(warmup = ?c.interval * c.warmup, threshold = c.threshold, "anomaly detection per NAS export");
        Anomaly { detector: Detector::new(c), deltas: Deltas::new(), events, last_at: None }
    });
    Ok(Outputs { otlp, anomaly, spans })
}

/// The spans' sink: over the metrics' connection when they go to the same place, else its
/// own. Its queue holds two intervals at the kernel's rate limit (at least the SDK's 2048).
fn start_spans(
    o: &crate::config::OtlpConfig,
    metrics: &Transport,
    slow: nasflow_probe::SlowOpOptions,
    interval: Duration,
) -> Result<SpanSink> {
    let transport = if o.traces == o.transport { metrics.clone() } else { Transport::new(&o.traces)? };
    let per_interval = u64::from(slow.per_second).saturating_mul(interval.as_secs().max(1));
    let queue = usize::try_from(per_interval.saturating_mul(2)).unwrap_or(usize::MAX).clamp(2048, 1 << 20);
    let sink = SpanSink::new(&transport, &o.encode.resource, &o.encode.scope_version, queue)
        .with_context(|| format!("slow-operation spans to {}", transport.endpoint()))?;
    tracing::info!(
        endpoint = transport.endpoint(),
        threshold = ?slow.threshold,
        per_second = slow.per_second,
        "slow operations as spans"
    );
    Ok(sink)
}

/// Runs until SIGINT or SIGTERM, then writes one last interval and returns.
pub async fn run(cfg: RunConfig) -> Result<()> {
    let hierarchy = CgroupHierarchy::detect(&cfg.cgroup_root)?;
    tracing::info!(
        version = if hierarchy.v1 { "v1 (memory controller)" } else { "v2" },
        mount = %hierarchy.mount.display(),
        "cgroup hierarchy"
    );
    let probe = start_probe(&cfg, &hierarchy)?;
    let directories = start_directories(&cfg, &probe);
    match &cfg.kubelet {
        Some(k) => {
            tracing::info!(url = %k.url, node = cfg.node_name.as_deref().unwrap_or("-"), "pods from the kubelet");
        }
        None => {
            tracing::info!("no --node-name or --kubelet-url: not naming pods (cgroup paths and container ids only)");
        }
    }
    let enricher = Enricher::spawn(EnrichConfig {
        hierarchy,
        proc_root: cfg.proc_root.clone(),
        kubelet: cfg.kubelet.clone(),
        kubelet_every: cfg.kubelet_refresh,
        task_labels: cfg.task_labels.clone(),
    })?;
    let attach_error = AttachError::default();
    let _attacher = tokio::spawn(attach_loop(Arc::clone(&probe), Arc::clone(&attach_error)));
    let server = start_server(&cfg)?;

    // Waiting for a refresh when a new cgroup, container or mount shows up is bounded so an
    // interval never slips by more than half.
    let budget = (cfg.interval / 2).min(Duration::from_secs(2));
    let Outputs { otlp, anomaly, spans } = start_outputs(&cfg)?;
    if let (Some(addr), Some(text)) = (cfg.prometheus_listen, otlp.as_ref().and_then(|o| o.metrics_text.clone())) {
        health::serve_metrics(addr, text).await.with_context(|| format!("serving /metrics on {addr}"))?;
    }
    let state = health::SharedState::default();
    if let Some(addr) = cfg.health_listen {
        health::serve(addr, state.clone(), cfg.interval)
            .await
            .with_context(|| format!("serving health endpoints on {addr}"))?;
    }
    let mut pipe = Pipe {
        probe,
        enricher,
        budget,
        seq: 0,
        jsonl: cfg.output.is_some(),
        otlp,
        state,
        attach_error,
        interval: cfg.interval,
        degraded_before: Vec::new(),
        reads: ReadRetry::default(),
        server,
        directories,
        anomaly,
        spans,
    };
    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = ticker.tick() => pipe.tick().await?,
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
        }
    }
    // One overall deadline for the last interval and its export; a second signal stops at once.
    let deadline = tokio::time::Instant::now() + cfg.shutdown_timeout;
    tracing::info!(deadline = ?cfg.shutdown_timeout, "stopping: one last interval (a second signal stops at once)");
    let last = pipe.last_interval(deadline);
    let stopped = tokio::select! {
        r = tokio::time::timeout_at(deadline, last) => r.unwrap_or_else(|_| {
            tracing::warn!(deadline = ?cfg.shutdown_timeout, "the last interval did not complete in time");
            Ok(())
        }),
        _ = interrupt.recv() => {
            tracing::warn!("second signal: stopping now");
            Ok(())
        }
        _ = terminate.recv() => {
            tracing::warn!("second signal: stopping now");
            Ok(())
        }
    };
    stop_anomaly(pipe.anomaly, pipe.jsonl, pipe.seq, deadline).await;
    stopped
}

/// Closes open anomalies (the history goes with the agent) and sends queued events with what
/// is left of the deadline (the SDK's shutdown waits on its exporter: off the runtime's
/// threads).
async fn stop_anomaly(anomaly: Option<Anomaly>, jsonl: bool, seq: u64, deadline: tokio::time::Instant) {
    let Some(mut a) = anomaly else { return };
    let closed = a.detector.close_all(std::time::SystemTime::now());
    for e in &closed {
        tracing::info!(signal = e.signal.as_str(), "anomaly closed: {}", nasflow_detect::events::message(e));
        if let Some(sink) = &a.events {
            sink.emit(e);
        }
    }
    if jsonl && !closed.is_empty() {
        let mut out = io::stdout().lock();
        let _ = jsonl::write_lines(&mut out, &jsonl::anomaly_lines(&closed, seq));
        let _ = out.flush();
    }
    if let Some(sink) = a.events {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let _ = tokio::time::timeout(left, tokio::task::spawn_blocking(move || sink.shutdown())).await;
    }
}

/// Why the last attach failed, for `/healthz` and self-telemetry; `None` once attached.
type AttachError = Arc<Mutex<Option<String>>>;

async fn attach_loop(probe: SharedProbe, error: AttachError) {
    let mut last_error = String::new();
    loop {
        let p = Arc::clone(&probe);
        match tokio::task::spawn_blocking(move || with_probe(&p, Probe::poll)).await {
            Ok(Ok(AttachEvent::Attached)) => {
                last_error.clear();
                *error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            }
            Ok(Ok(AttachEvent::Detached | AttachEvent::Unchanged)) => {}
            Ok(Err(e)) => {
                let msg = format!("{e:#}");
                if msg != last_error {
                    tracing::error!(error = %msg, "cannot attach to the NFS client");
                    last_error.clone_from(&msg);
                    *error.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(msg);
                }
            }
            Err(e) => tracing::error!(error = %e, "attach task failed"),
        }
        tokio::time::sleep(ATTACH_POLL).await;
    }
}

/// How often the watched directories are looked for on the mounts: new pod mounts and
/// directories created later are watched within this.
const DIRECTORY_POLL: Duration = Duration::from_secs(5);

/// Keeps the probe's watched directories in step with the mounts and the directories on them.
async fn directory_loop(probe: SharedProbe, cfg: RunConfig) {
    let specs = Arc::new(cfg.directories);
    let mut watched_before: std::collections::BTreeSet<u16> = std::collections::BTreeSet::new();
    let mut first = true;
    loop {
        let (p, specs_now) = (Arc::clone(&probe), Arc::clone(&specs));
        let (proc_root, host_root) = (cfg.proc_root.clone(), cfg.host_root.clone());
        let found = tokio::task::spawn_blocking(move || {
            let path = nasflow_enrich::mountinfo::host_mountinfo(&proc_root);
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let (mounts, _) = nasflow_enrich::mountinfo::parse_mountinfo(&text);
            let res = directories::resolve(&specs_now, &mounts, &host_root);
            let dirs = res.watched.iter().map(|(&(dev, ino), &id)| WatchedDir { dev, ino, id }).collect();
            let left_out = with_probe(&p, |p| p.set_watched(dirs))?;
            anyhow::Ok((res, left_out))
        })
        .await;
        match found {
            Ok(Ok((res, left_out))) => {
                let now: std::collections::BTreeSet<u16> = res.watched.values().copied().collect();
                for id in now.difference(&watched_before) {
                    let inodes = res.watched.values().filter(|i| *i == id).count();
                    let label = specs.get(usize::from(*id) - 1).map(DirSpec::label).unwrap_or_default();
                    tracing::info!(directory = %label, inodes, "watching directory");
                }
                for id in watched_before.difference(&now).chain(if first { res.missing.iter() } else { [].iter() }) {
                    let label = specs.get(usize::from(*id) - 1).map(DirSpec::label).unwrap_or_default();
                    tracing::info!(directory = %label, "directory not on any NFS mount (yet): watched once it appears");
                }
                if left_out > 0 {
                    tracing::warn!(left_out, "more watched directory inodes than the kernel map holds: some mounts' traffic carries no directory");
                }
                watched_before = now;
                first = false;
            }
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "looking for the watched directories"),
            Err(e) => tracing::warn!(error = %e, "directory task failed"),
        }
        tokio::time::sleep(DIRECTORY_POLL).await;
    }
}

/// The client probe with the run's settings (attached by [`attach_loop`]).
fn start_probe(cfg: &RunConfig, hierarchy: &CgroupHierarchy) -> Result<SharedProbe> {
    let mut opts = ProbeOptions::new(CgroupIdentity { v1: hierarchy.v1, root_id: hierarchy.root_id });
    opts.max_series = cfg.max_kernel_series;
    opts.features = cfg.features;
    opts.operations.clone_from(&cfg.operations);
    opts.slow_ops = cfg.slow_ops;
    opts.proc_root.clone_from(&cfg.proc_root);
    Ok(Arc::new(Mutex::new(Probe::new(opts).context("starting the probe")?)))
}

/// The watched directories' labels (by id - 1), and the loop that keeps the probe's
/// watched inodes current, when any are configured.
fn start_directories(cfg: &RunConfig, probe: &SharedProbe) -> Arc<[String]> {
    let labels: Arc<[String]> = cfg.directories.iter().map(DirSpec::label).collect();
    if !labels.is_empty() {
        tracing::info!(directories = %labels.join(","), "watching NAS directories");
        tokio::spawn(directory_loop(Arc::clone(probe), cfg.clone()));
    }
    labels
}

/// Map reads failing this many intervals in a row end the agent.
const MAX_READ_FAILURES: u32 = 10;

/// Every degraded state, for a gauge per state.
const DEGRADED_STATES: [&str; 5] =
    ["not_attached", "collector_failing", "kubelet_failing", "programs_missing", "maps_near_full"];

struct Pipe {
    probe: SharedProbe,
    enricher: Enricher,
    budget: Duration,
    seq: u64,
    jsonl: bool,
    otlp: Option<OtlpSink>,
    state: health::SharedState,
    attach_error: AttachError,
    interval: Duration,
    /// The degraded states of the last interval, to log changes once.
    degraded_before: Vec<&'static str>,
    /// Map reads that failed in a row.
    reads: ReadRetry,
    /// The NFS server side, unless switched off.
    server: Option<ServerSide>,
    /// The watched directories as configured, by id - 1.
    directories: Arc<[String]>,
    /// Anomaly detection, unless switched off.
    anomaly: Option<Anomaly>,
    /// Slow operations as spans, with an OTLP endpoint.
    spans: Option<SpanSink>,
}

/// The scores of the score gauge, as plain data for the encoder.
fn scores_of(findings: &Findings) -> Vec<AnomalyScore> {
    findings
        .scores
        .iter()
        .map(|s| AnomalyScore {
            server: s.nas.server.clone(),
            export: s.nas.export.clone(),
            signal: s.signal.as_str(),
            score: s.score,
        })
        .collect()
}

impl OtlpSink {
    /// The interval to `/metrics` (rendered now) and to delivery.
    fn hand_over(&mut self, interval: nasflow_otlp_out::encode::Interval) {
        self.last_seq = interval.seq();
        if let Some(t) = &self.metrics_text {
            let (text, bad) = nasflow_otlp_out::prometheus::render(&self.encoder.requests(&interval));
            if bad > 0 {
                tracing::warn!(requests = bad, "/metrics: requests that did not decode were left out");
            }
            t.publish(text);
        }
        if let Some(d) = &self.delivery {
            d.publish(interval);
        }
    }
}

/// The anomaly detector, fed the same snapshots and names as the encoder, and where its
/// events go (none without OTLP: then they are logged and, with `--output jsonl`, printed).
struct Anomaly {
    detector: Detector,
    deltas: Deltas,
    events: Option<EventSink>,
    /// When the last interval was observed (a monotonic clock: a wall-clock step is no
    /// irregular interval): one much shorter or longer than configured (the partial last
    /// one at stop, a late tick) advances the deltas but is not judged.
    last_at: Option<std::time::Instant>,
}

impl Anomaly {
    fn observe(&mut self, snap: &Snapshot, names: &Names) -> Findings {
        let at = snap.taken_at.unwrap_or_else(std::time::SystemTime::now);
        let now = std::time::Instant::now();
        let elapsed = self.last_at.map(|last| now.saturating_duration_since(last));
        self.last_at = Some(now);
        let sample = self.deltas.next(snap, names);
        if let Some(elapsed) = elapsed.filter(|e| !self.detector.config().judges(*e)) {
            tracing::debug!(?elapsed, "an interval of irregular length is not judged");
            return Findings::default();
        }
        let findings = self.detector.observe(at, sample);
        for e in &findings.events {
            let message = nasflow_detect::events::message(e);
            match e.state {
                EventState::Open => tracing::warn!(signal = e.signal.as_str(), score = e.score, "anomaly: {message}"),
                EventState::Close => tracing::info!(signal = e.signal.as_str(), "anomaly over: {message}"),
            }
            if let Some(sink) = &self.events {
                sink.emit(e);
            }
        }
        findings
    }
}

/// The OTLP side of the pipe: the encoder owns the series, delivery the network.
struct OtlpSink {
    encoder: Encoder,
    /// The push to a collector, when an endpoint is set.
    delivery: Option<Delivery>,
    /// `/metrics`, when served.
    metrics_text: Option<health::MetricsText>,
    last_seq: u64,
}

/// What a failed map read does: nothing is lost (the kernel keeps counting), so the interval
/// is skipped and the next one tries again; only [`MAX_READ_FAILURES`] failures in a row end
/// the agent, with the reason.
#[derive(Debug, Default)]
struct ReadRetry {
    failures: u32,
}

impl ReadRetry {
    /// The snapshot to go on with, `None` to skip this interval, or the error that ends the
    /// agent.
    fn outcome<T, E>(&mut self, read: Result<T, E>) -> Result<Option<T>>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        match read {
            Ok(snap) => {
                if self.failures > 0 {
                    tracing::info!(intervals = self.failures, "reading the probe's maps works again");
                }
                self.failures = 0;
                Ok(Some(snap))
            }
            Err(e) => {
                self.failures += 1;
                if self.failures == 1 {
                    tracing::warn!(error = %e, "reading the probe's maps failed; retrying next interval");
                }
                if self.failures >= MAX_READ_FAILURES {
                    return Err(anyhow::Error::new(e)
                        .context(format!("reading the probe's maps failed {MAX_READ_FAILURES} intervals in a row")));
                }
                Ok(None)
            }
        }
    }
}

impl Pipe {
    /// Logs each degraded state once when it starts, and once when it ends.
    fn log_degraded(&mut self, now: &[(&'static str, String)]) {
        for (name, why) in now {
            if !self.degraded_before.contains(name) {
                tracing::warn!(state = name, reason = %why, "degraded");
            }
        }
        for name in &self.degraded_before {
            if !now.iter().any(|(n, _)| n == name) {
                tracing::info!(state = name, "no longer degraded");
            }
        }
        self.degraded_before = now.iter().map(|(n, _)| *n).collect();
    }

    /// Deletes the keys of removed cgroups and puts the values they held at deletion in the
    /// snapshot in place of the ones read before.
    async fn finish_gone(&self, mut snap: Snapshot, gone: &std::collections::HashSet<u64>) -> Snapshot {
        let p = Arc::clone(&self.probe);
        let ids = gone.clone();
        match tokio::task::spawn_blocking(move || with_probe(&p, |p| p.forget_cgroups(&ids))).await {
            Ok(Ok(finals)) => {
                tracing::debug!(cgroups = gone.len(), keys = finals.len(), "removed cgroups' keys deleted");
                snap.rows.retain(|r| !gone.contains(&r.cgroup));
                snap.rows.extend(finals);
                snap.rows.sort_by_key(|r| (r.cgroup, r.dev, r.op, r.dir, r.err));
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "deleting the keys of removed cgroups"),
            Err(e) => tracing::warn!(error = %e, "forget task failed"),
        }
        snap
    }

    /// The push to a collector, when an endpoint is set.
    fn delivery(&self) -> Option<&Delivery> {
        self.otlp.as_ref().and_then(|o| o.delivery.as_ref())
    }

    /// This interval's lines on standard output; a closed output ends the agent.
    fn write_jsonl(
        &self,
        snap: &Snapshot,
        names: &Names,
        served: Option<&ServerSnapshot>,
        findings: &Findings,
    ) -> Result<()> {
        let lines = jsonl::lines(snap, self.seq, names);
        let server_lines = match (served, &self.server) {
            (Some(s), Some(side)) => jsonl::server_lines(s, &side.exports, self.seq),
            _ => Vec::new(),
        };
        let server_part = served.map(|s| (s, server_lines.as_slice()));
        let anomalies = jsonl::anomaly_lines(&findings.events, self.seq);
        let slow = jsonl::slow_op_lines(snap, self.seq, names);
        let mut stdout = io::stdout().lock();
        if let Err(e) = jsonl::write_interval(&mut stdout, snap, self.seq, &lines, server_part, &anomalies, &slow) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                anyhow::bail!("standard output closed");
            }
            tracing::warn!(error = %e, "writing jsonl");
        }
        let _ = stdout.flush();
        Ok(())
    }

    /// The last interval at stop, with what waits in the kernel for its xid, and its export:
    /// the metrics' flush and the spans' beside each other, within `deadline`.
    async fn last_interval(&mut self, deadline: tokio::time::Instant) -> Result<()> {
        let p = Arc::clone(&self.probe);
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || with_probe(&p, Probe::take_waiting_slow_ops)).await {
            tracing::warn!(error = %e, "taking the slow operations that wait for their xid");
        }
        self.tick().await?;
        // The spans go out beside the last metrics (whose exemplars name them), not after.
        let spans = self.spans.take().map(|sink| tokio::task::spawn_blocking(move || sink.shutdown()));
        if let Some((d, seq)) = self.otlp.as_ref().and_then(|o| Some((o.delivery.as_ref()?, o.last_seq))) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !d.flush(seq, left).await {
                tracing::warn!(endpoint = d.endpoint(), "the last export did not complete in time");
            }
        }
        if let Some(spans) = spans {
            let _ = spans.await;
        }
        Ok(())
    }

    async fn tick(&mut self) -> Result<()> {
        self.seq += 1;
        let p = Arc::clone(&self.probe);
        let read = tokio::task::spawn_blocking(move || {
            with_probe(&p, |p| {
                if let Err(e) = p.sweep_inflight(INFLIGHT_MAX_AGE) {
                    tracing::warn!(error = %e, "sweeping stale in-flight records");
                }
                p.snapshot()
            })
        })
        .await
        .context("snapshot task")?;
        // A failed read loses nothing (the kernel keeps counting): skip this interval and
        // try again; only a failure that persists ends the agent, with its reason.
        let snap: Snapshot = match self.reads.outcome(read) {
            Ok(Some(snap)) => snap,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e),
        };
        let seen_at = Instant::now();
        let mut pairs: Vec<(u64, u32)> = snap.rows.iter().map(|r| (r.cgroup, r.dev)).collect();
        pairs.dedup();
        let mut names = self.enricher.resolve(&pairs, seen_at, self.budget).await;
        names.directories = Arc::clone(&self.directories);
        // Removed cgroups: their keys leave the kernel maps now, and the values they held at
        // deletion are the ones their series end with (increments since the read included).
        let snap = if names.gone.is_empty() { snap } else { self.finish_gone(snap, &names.gone).await };
        let served = match &mut self.server {
            Some(s) => s.read().await,
            None => None,
        };
        let findings = self.anomaly.as_mut().map(|a| a.observe(&snap, &names)).unwrap_or_default();
        if self.jsonl {
            self.write_jsonl(&snap, &names, served.as_ref(), &findings)?;
        }
        let e = self.enricher.stats();
        // The server's counter map fills like the client's: it joins the fill gauges and the
        // maps-near-full check.
        let mut maps = snap.health.maps.clone();
        if let Some(s) = &served {
            maps.push(s.map_fill());
        }
        let conditions = health::Conditions {
            attached: snap.health.attached,
            attach_error: self.attach_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
            exporting: self.delivery().is_some(),
            last_export: self.delivery().and_then(Delivery::last_success),
            export_failures: self.delivery().map_or(0, |d| d.stats().failures),
            kubelet_down: e.kubelet_down,
            maps: maps.clone(),
            failed_programs: snap.health.failed_programs.clone(),
        };
        let degraded = health::degraded(&conditions, self.interval, Instant::now());
        self.log_degraded(&degraded);
        if let Some(o) = &mut self.otlp {
            let stats = SelfStats {
                delivery: o.delivery.as_ref().map(Delivery::stats).unwrap_or_default(),
                // The server probe's losses count beside the client's (`server_*` reasons).
                probe_drops: snap
                    .health
                    .counters
                    .iter()
                    .chain(served.iter().flat_map(|s| s.counters.iter()))
                    .copied()
                    .collect(),
                enrich_misses: e.misses,
                kubelet_refreshes: e.kubelet_refreshes,
                degraded: DEGRADED_STATES.iter().map(|s| (*s, degraded.iter().any(|(d, _)| d == s))).collect(),
                maps,
                attached_programs: snap.health.attached_programs,
                spans: self.spans.as_ref().map(|s| s.counts().outcomes()).unwrap_or_default(),
            };
            let served = match (&served, &self.server) {
                (Some(s), Some(side)) => Some(Served { snap: s, exports: &side.exports }),
                _ => None,
            };
            o.encoder.set_anomaly_scores(scores_of(&findings));
            if let Some(sink) = &self.spans {
                o.encoder.set_span_links(sink.record(&snap.slow_ops, &names));
            }
            let interval = o.encoder.interval_with_server(&snap, &names, &stats, served);
            o.hand_over(interval);
        }
        self.state.publish(|s| {
            *s = health::PipeState {
                last_tick: Some(Instant::now()),
                degraded: degraded.iter().map(|(name, why)| format!("{name}: {why}")).collect(),
            };
        });
        if !names.gone.is_empty() {
            self.enricher.forget(names.gone.iter().copied());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_map_read_is_skipped_until_it_persists() {
        let fail = || Err::<u32, _>(std::io::Error::other("EAGAIN"));
        let mut r = ReadRetry::default();
        for _ in 0..MAX_READ_FAILURES - 1 {
            assert!(matches!(r.outcome(fail()), Ok(None)), "skipped, not fatal");
        }
        assert_eq!(r.outcome(Ok::<u32, std::io::Error>(7)).expect("read"), Some(7), "recovered");
        for _ in 0..MAX_READ_FAILURES - 1 {
            assert!(matches!(r.outcome(fail()), Ok(None)), "a success starts the count again");
        }
        let end = r.outcome(fail()).expect_err("persistent");
        assert!(
            format!("{end:#}").contains("10 intervals in a row") && format!("{end:#}").contains("EAGAIN"),
            "{end:#}"
        );
    }
}
