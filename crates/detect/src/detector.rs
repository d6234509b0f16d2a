//! Per NAS, every interval: is its traffic, error ratio or latency out of its normal range,
//! and which pods moved it. Pure: plain samples in, events and scores out.
//!
//! The normal range comes from the NAS's own recent history (a sliding window as long as the
//! warm-up): the median and the median absolute deviation, which a few odd intervals do not
//! move, over the intervals that were not anomalous themselves (unless those are under half
//! the window: then a lasting change has become the new normal, and the window takes it in).
//! - Operations and bytes: quasi-Poisson tails, both directions. The dispersion (variance
//!   over mean, at least 1) comes from the window, so bursty traffic and bytes, which come in
//!   payloads, are judged on their own spread; steady Poisson traffic is judged as Poisson.
//!   Traffic whose rate wanders multiplies rather than adds: the value must also be improbable
//!   on a log scale (a robust z-score against the window's logs); the smaller score counts.
//! - Error ratio: the binomial tail of the interval's failures against the window's pooled
//!   ratio, upwards.
//! - Latency: the interval's mean latency (the histograms' sum over their count), on a log
//!   scale, as a robust z-score against the window's median and MAD, upwards.
//!
//! An anomaly opens when the score (`-log10 p`) reaches the threshold and the value is also
//! outside everything the window holds by a factor (1.5, or 2x the ratio for errors): a
//! significant but tiny change, or one the NAS has seen lately, is not news. It closes after
//! two intervals back under half the threshold. One event each way; none while it lasts.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::Arc,
    time::{Duration, SystemTime},
};

use crate::stats::{self, MAD_TO_SIGMA};

/// What is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signal {
    /// Completed operations per interval.
    Operations,
    /// READ and WRITE payload bytes per interval.
    Bytes,
    /// Failed operations over completed ones.
    Errors,
    /// Mean operation latency.
    Latency,
}

impl Signal {
    /// Every signal, in a stable order.
    pub const ALL: [Signal; 4] = [Signal::Operations, Signal::Bytes, Signal::Errors, Signal::Latency];

    /// The name events and the score gauge carry (`nfs.anomaly.signal`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Operations => "operations",
            Signal::Bytes => "bytes",
            Signal::Errors => "errors",
            Signal::Latency => "latency",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// Which way the signal left its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Above the range (a surge, more errors, slower).
    Up,
    /// Below the range (traffic collapsed).
    Down,
}

impl Direction {
    /// `up` or `down` (`nfs.anomaly.direction`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Up => "up",
            Direction::Down => "down",
        }
    }
}

/// A NAS as anomalies are judged: one export of one server, whatever the mounts of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NasKey {
    /// `server.address`.
    pub server: String,
    /// `nfs.export.path`.
    pub export: String,
}

/// What completed in one interval (deltas, not cumulative counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Completed operations, failed ones included.
    pub ops: u64,
    /// READ and WRITE payload bytes.
    pub bytes: u64,
    /// Operations that failed.
    pub failed: u64,
    /// Sum of the operations' latencies, ns.
    pub latency_ns: u64,
    /// Operations whose latency is in `latency_ns`.
    pub timed: u64,
}

impl Traffic {
    /// Adds another interval's or workload's traffic.
    pub fn add(&mut self, o: &Traffic) {
        self.ops += o.ops;
        self.bytes += o.bytes;
        self.failed += o.failed;
        self.latency_ns += o.latency_ns;
        self.timed += o.timed;
    }
}

/// Who caused traffic: a pod (by UID), or a cgroup outside any pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contributor {
    /// Identity across intervals: the pod UID, or the cgroup path or id.
    pub key: String,
    /// Its attributes as the metrics carry them (`k8s.*`, `nasflow.task`, or
    /// `process.linux.cgroup`), without the container's.
    pub attributes: Vec<(&'static str, String)>,
}

impl Contributor {
    /// `namespace/pod`, or the cgroup, for lists and messages.
    #[must_use]
    pub fn label(&self) -> String {
        let get = |k: &str| self.attributes.iter().find(|(a, _)| *a == k).map(|(_, v)| v.as_str());
        match (get("k8s.namespace.name"), get("k8s.pod.name")) {
            (Some(ns), Some(pod)) => format!("{ns}/{pod}"),
            _ => self.key.clone(),
        }
    }
}

/// One NAS's traffic in one interval, in total and per contributor.
#[derive(Debug, Clone, Default)]
pub struct NasTraffic {
    /// The NAS.
    pub nas: Option<NasKey>,
    /// Everything on it.
    pub total: Traffic,
    /// Per contributor.
    pub contributors: Vec<(Arc<Contributor>, Traffic)>,
}

/// A contributor's share of an anomaly's change.
#[derive(Debug, Clone, PartialEq)]
pub struct Share {
    /// Who.
    pub who: Arc<Contributor>,
    /// Its part of the change in the anomaly's direction, 0 to 1.
    pub share: f64,
}

/// Whether an event opens or closes an anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventState {
    /// The anomaly starts.
    Open,
    /// It is over.
    Close,
}

impl EventState {
    /// `open` or `close` (`nfs.anomaly.state`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EventState::Open => "open",
            EventState::Close => "close",
        }
    }
}

/// Why an anomaly closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The signal is back in its range.
    Recovered,
    /// The export had no series on this node for a whole window.
    ExportGone,
    /// The agent stopped (its history goes with it).
    AgentStopped,
}

impl CloseReason {
    /// `recovered`, `export_gone`, `agent_stopped` (`nfs.anomaly.close_reason`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Recovered => "recovered",
            CloseReason::ExportGone => "export_gone",
            CloseReason::AgentStopped => "agent_stopped",
        }
    }
}

/// An anomaly opening or closing.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyEvent {
    /// The NAS.
    pub nas: NasKey,
    /// The signal.
    pub signal: Signal,
    /// Which way.
    pub direction: Direction,
    /// Open or close.
    pub state: EventState,
    /// The value in the interval that opened it (or closed it), per second for traffic,
    /// a ratio for errors, seconds for latency.
    pub observed: f64,
    /// What the baseline expected, in the same unit.
    pub expected: f64,
    /// Its score (`-log10 p`); on a close, the highest it reached.
    pub score: f64,
    /// When the first anomalous interval started.
    pub started: SystemTime,
    /// The end of the interval that produced the event.
    pub at: SystemTime,
    /// The contributors that moved the signal most, largest first (from the opening interval).
    pub contributors: Vec<Share>,
    /// Why it closed (close events only).
    pub close_reason: Option<CloseReason>,
}

/// A NAS's score for one signal this interval (the larger of both directions).
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// The NAS.
    pub nas: NasKey,
    /// The signal.
    pub signal: Signal,
    /// `-log10 p`, 0 when the value is where it is expected.
    pub score: f64,
}

/// What one interval brought.
#[derive(Debug, Default)]
pub struct Findings {
    /// Anomalies that opened or closed.
    pub events: Vec<AnomalyEvent>,
    /// Scores of every NAS past its warm-up.
    pub scores: Vec<Score>,
}

/// Detector settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectConfig {
    /// The export interval.
    pub interval: Duration,
    /// Intervals of history a NAS needs before it is judged; also the window's length.
    pub warmup: u32,
    /// The score (`-log10 p`) at which an anomaly opens.
    pub threshold: f64,
}

/// Default [`DetectConfig::threshold`]: `p <= 1e-6`, one false event in about 10^6 intervals
/// per signal for traffic that follows the model (BENCHMARKS.md has the measured rate).
pub const DEFAULT_THRESHOLD: f64 = 6.0;
/// Default warm-up.
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(600);
/// The shortest window, whatever the warm-up.
pub const MIN_WINDOW: u32 = 8;
/// The longest window, whatever the warm-up (memory per NAS is bounded by it).
pub const MAX_WINDOW: u32 = 2048;
/// NAS exports tracked at once; more are not judged (and logged).
pub const MAX_NAS: usize = 256;
/// Contributors tracked per NAS; more still count in the NAS's totals.
pub const MAX_CONTRIBUTORS: usize = 4096;
/// Contributors listed in an event.
pub const MAX_LISTED: usize = 5;

/// How far outside the window a value must be, besides its score.
const TRAFFIC_FACTOR: f64 = 1.5;
/// How far an open anomaly's value must stay from the baseline to hold it open.
const HOLD_FACTOR: f64 = 1.2;
/// Intervals back in range that close an anomaly.
const CLOSE_AFTER: u32 = 2;
/// Least traffic a surge (or the level before a collapse) must reach to be news: an export
/// read once in a while is not worth an event.
pub const MIN_OPS_PER_SECOND: f64 = 1.0;
/// The same in bytes: 1 MiB/s.
pub const MIN_BYTES_PER_SECOND: f64 = 1_048_576.0;
/// Least mean latency a rise must reach to be news: 5 ms. Below it no one waits on the NAS,
/// and a loaded node's scheduling alone moves a sub-millisecond mean by 2x.
pub const MIN_LATENCY_SECONDS: f64 = 0.005;
/// Least failures, and least error ratio, an error anomaly opens at.
const MIN_FAILURES: f64 = 3.0;
const MIN_ERROR_RATIO: f64 = 0.001;
/// Least timed operations in an interval for its mean latency to be judged or kept.
const MIN_TIMED: u64 = 10;
/// Least spread of the log latency (5%): a perfectly steady history would make any wobble
/// significant.
const MIN_LOG_SCALE: f64 = 0.05;

/// How far an interval's length may stray from [`DetectConfig::interval`] and still be judged.
const INTERVAL_TOLERANCE: f64 = 0.25;

impl DetectConfig {
    /// Whether an interval of this length can be judged: the model counts per configured
    /// interval, so a short one (the last, partial one when the agent stops) would read as a
    /// collapse and a long one (a late or skipped tick) as a surge.
    #[must_use]
    pub fn judges(&self, elapsed: Duration) -> bool {
        let want = self.interval.as_secs_f64();
        (elapsed.as_secs_f64() - want).abs() <= want * INTERVAL_TOLERANCE
    }
}

/// One interval of a NAS's history.
#[derive(Debug, Clone, Copy)]
struct Slot {
    ops: f64,
    bytes: f64,
    failed: f64,
    /// ln of the mean latency in ns, when enough operations were timed.
    latency: Option<f64>,
    /// Signals anomalous in this interval (their bits).
    flagged: u8,
}

impl Slot {
    fn of(t: &Traffic) -> Self {
        let latency = (t.timed >= MIN_TIMED && t.latency_ns > 0).then(|| (t.latency_ns as f64 / t.timed as f64).ln());
        Self { ops: t.ops as f64, bytes: t.bytes as f64, failed: t.failed as f64, latency, flagged: 0 }
    }
}

#[derive(Debug, Clone)]
struct Open {
    direction: Direction,
    started: SystemTime,
    /// The latest value judged, and its baseline, in the event's units.
    observed: f64,
    expected: f64,
    peak: f64,
    quiet: u32,
    contributors: Vec<Share>,
}

impl Open {
    fn close(self, nas: &NasKey, signal: Signal, at: SystemTime, reason: CloseReason) -> AnomalyEvent {
        AnomalyEvent {
            nas: nas.clone(),
            signal,
            direction: self.direction,
            state: EventState::Close,
            observed: self.observed,
            expected: self.expected,
            score: self.peak,
            started: self.started,
            at,
            contributors: self.contributors,
            close_reason: Some(reason),
        }
    }
}

#[derive(Debug)]
struct Tracked {
    who: Arc<Contributor>,
    ops: f64,
    bytes: f64,
    /// The last interval it had traffic.
    last_seen: u64,
}

#[derive(Debug, Default)]
struct NasState {
    history: VecDeque<Slot>,
    /// Intervals observed.
    seen: u64,
    /// Intervals in a row without any series on it.
    absent: u32,
    open: [Option<Open>; 4],
    contributors: HashMap<String, Tracked>,
}

/// How a signal stands this interval.
#[derive(Debug, Clone, Copy)]
struct Judgement {
    direction: Direction,
    score: f64,
    observed: f64,
    expected: f64,
    /// Opens an anomaly (score and range).
    opens: bool,
    /// Holds an open anomaly in `direction` open.
    holds: bool,
}

/// Judges every NAS every interval; keeps each one's window and its contributors' levels.
#[derive(Debug)]
pub struct Detector {
    cfg: DetectConfig,
    window: usize,
    nas: BTreeMap<NasKey, NasState>,
    tick: u64,
    nas_refused: bool,
}

impl Detector {
    /// A detector with nothing seen yet.
    #[must_use]
    pub fn new(cfg: DetectConfig) -> Self {
        let window = cfg.warmup.clamp(MIN_WINDOW, MAX_WINDOW) as usize;
        Self { cfg, window, nas: BTreeMap::new(), tick: 0, nas_refused: false }
    }

    /// Its settings.
    #[must_use]
    pub fn config(&self) -> &DetectConfig {
        &self.cfg
    }

    /// The window in intervals.
    #[must_use]
    pub fn window(&self) -> usize {
        self.window
    }

    /// NAS exports being judged.
    #[must_use]
    pub fn tracked(&self) -> usize {
        self.nas.len()
    }

    /// Closes every open anomaly (the agent stops: the backend must not keep them open).
    pub fn close_all(&mut self, at: SystemTime) -> Vec<AnomalyEvent> {
        let mut out = Vec::new();
        for (key, state) in &mut self.nas {
            for (i, open) in state.open.iter_mut().enumerate() {
                if let Some(o) = open.take() {
                    out.push(o.close(key, Signal::ALL[i], at, CloseReason::AgentStopped));
                }
            }
        }
        out
    }

    /// One interval ending at `at`: the traffic of every NAS with series on this node (a NAS
    /// that has none counts as idle, and is forgotten after a window of that).
    pub fn observe(&mut self, at: SystemTime, sample: Vec<NasTraffic>) -> Findings {
        self.tick += 1;
        let mut findings = Findings::default();
        let mut present: HashMap<NasKey, NasTraffic> = HashMap::new();
        for s in sample {
            let Some(key) = s.nas.clone() else { continue };
            match present.entry(key) {
                std::collections::hash_map::Entry::Occupied(mut e) => {
                    let t = e.get_mut();
                    t.total.add(&s.total);
                    t.contributors.extend(s.contributors);
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert(s);
                }
            }
        }
        for key in present.keys() {
            if !self.nas.contains_key(key) {
                if self.nas.len() >= MAX_NAS {
                    if !self.nas_refused {
                        tracing::warn!(
                            max = MAX_NAS,
                            "more NAS exports than anomaly detection tracks; the others are not judged"
                        );
                        self.nas_refused = true;
                    }
                    continue;
                }
                self.nas.insert(key.clone(), NasState::default());
            }
        }
        let keys: Vec<NasKey> = self.nas.keys().cloned().collect();
        for key in keys {
            let traffic = present.remove(&key).unwrap_or_default();
            let Some(state) = self.nas.get_mut(&key) else { continue };
            if traffic.nas.is_none() {
                state.absent += 1;
            } else {
                state.absent = 0;
            }
            let forget = state.absent as usize > self.window;
            Self::step(&self.cfg, self.window, self.tick, &key, state, &traffic, at, forget, &mut findings);
            if forget {
                self.nas.remove(&key);
            }
        }
        findings
    }

    #[allow(clippy::too_many_arguments)]
    fn step(
        cfg: &DetectConfig,
        window: usize,
        tick: u64,
        key: &NasKey,
        state: &mut NasState,
        traffic: &NasTraffic,
        at: SystemTime,
        forget: bool,
        findings: &mut Findings,
    ) {
        let mut slot = Slot::of(&traffic.total);
        let warmed = state.history.len() >= (cfg.warmup as usize).clamp(1, window);
        let secs = cfg.interval.as_secs_f64().max(1e-9);
        for signal in Signal::ALL {
            let i = signal as usize;
            let judged = if warmed { judge(signal, &slot, &state.history, cfg.threshold, secs) } else { None };
            if warmed {
                findings.scores.push(Score { nas: key.clone(), signal, score: judged.map_or(0.0, |j| j.score) });
            }
            let per = |v: f64| match signal {
                Signal::Operations | Signal::Bytes => v / secs,
                Signal::Errors => v,
                Signal::Latency => v / 1e9,
            };
            if let Some(open) = &mut state.open[i] {
                match judged {
                    // Nothing to judge (no operation completed, too few timed): a hung NAS is
                    // no recovery, so the anomaly stays as it is.
                    None => slot.flagged |= signal.bit(),
                    Some(j) if j.direction == open.direction && j.holds => {
                        open.quiet = 0;
                        open.peak = open.peak.max(j.score);
                        open.observed = per(j.observed);
                        slot.flagged |= signal.bit();
                    }
                    Some(j) => {
                        open.quiet += 1;
                        open.observed = per(j.observed);
                        open.expected = per(j.expected);
                    }
                }
                if open.quiet >= CLOSE_AFTER || forget {
                    let o = open.clone();
                    state.open[i] = None;
                    let reason = if forget { CloseReason::ExportGone } else { CloseReason::Recovered };
                    findings.events.push(o.close(key, signal, at, reason));
                }
            } else if let Some(j) = judged.filter(|j| j.opens) {
                slot.flagged |= signal.bit();
                let contributors = shares(signal, j.direction, traffic, state, j.expected);
                let started = at.checked_sub(cfg.interval).unwrap_or(at);
                let open = Open {
                    direction: j.direction,
                    started,
                    observed: per(j.observed),
                    expected: per(j.expected),
                    peak: j.score,
                    quiet: 0,
                    contributors: contributors.clone(),
                };
                findings.events.push(AnomalyEvent {
                    nas: key.clone(),
                    signal,
                    direction: j.direction,
                    state: EventState::Open,
                    observed: open.observed,
                    expected: open.expected,
                    score: j.score,
                    started,
                    at,
                    contributors,
                    close_reason: None,
                });
                state.open[i] = Some(open);
            }
        }
        track_contributors(state, traffic, slot.flagged == 0, tick, window);
        state.seen += 1;
        state.history.push_back(slot);
        while state.history.len() > window {
            state.history.pop_front();
        }
    }
}

/// What the baseline of `signal` is built from: `value` of the intervals where the signal was
/// not anomalous, unless those are under half the intervals that have a value (then all of
/// them: a level that moved for good becomes the new normal).
fn baseline<'a, T>(history: &'a VecDeque<Slot>, signal: Signal, value: impl Fn(&'a Slot) -> Option<T>) -> Vec<T> {
    let clean: Vec<T> = history.iter().filter(|s| s.flagged & signal.bit() == 0).filter_map(&value).collect();
    let all: Vec<T> = history.iter().filter_map(value).collect();
    if clean.len() * 2 >= all.len() {
        clean
    } else {
        all
    }
}

fn judge(signal: Signal, now: &Slot, history: &VecDeque<Slot>, threshold: f64, secs: f64) -> Option<Judgement> {
    match signal {
        Signal::Operations => {
            judge_traffic(now.ops, &baseline(history, signal, |s| Some(s.ops)), threshold, MIN_OPS_PER_SECOND * secs)
        }
        Signal::Bytes => judge_traffic(
            now.bytes,
            &baseline(history, signal, |s| Some(s.bytes)),
            threshold,
            MIN_BYTES_PER_SECOND * secs,
        ),
        Signal::Errors => judge_errors(now, &baseline(history, signal, Some), threshold),
        Signal::Latency => judge_latency(now.latency?, baseline(history, signal, |s| s.latency), threshold),
    }
}

/// The spread of `values` around `center`: 1.4826 MAD, or, where at least half the values
/// are equal (an idle export, a steady synthetic load) and the MAD is 0, their standard
/// deviation, so that rare bursts in a quiet window widen the band instead of being news.
fn spread(values: &[f64], mad: f64) -> f64 {
    if mad > 0.0 || values.len() < 2 {
        return MAD_TO_SIGMA * mad;
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
    var.sqrt()
}

fn judge_traffic(k: f64, values: &[f64], threshold: f64, least: f64) -> Option<Judgement> {
    let mut v = values.to_vec();
    let (median, mad) = stats::median_mad(&mut v)?;
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sigma = spread(values, mad);
    let dispersion = (sigma * sigma / median.max(1.0)).max(1.0);
    // At least one unit of the counts' spread is expected: an idle NAS expects a little.
    let expected = median.max(dispersion);
    // Traffic that wanders multiplies: its spread is judged on a log scale too, and the
    // smaller of the two scores counts (improbable under the count model and under the
    // spread the window shows).
    let logs: Vec<f64> = values.iter().map(|v| v.ln_1p()).collect();
    let mut sorted = logs.clone();
    let (log_median, log_mad) = stats::median_mad(&mut sorted)?;
    let log_scale = spread(&logs, log_mad).max(MIN_LOG_SCALE);
    let z = (k.ln_1p() - log_median) / log_scale;
    let up = stats::poisson_upper(k, expected, dispersion).min(stats::normal_upper(z));
    let down = stats::poisson_lower(k, median, dispersion).min(stats::normal_upper(-z));
    let j = if k >= expected {
        Judgement {
            direction: Direction::Up,
            score: up,
            observed: k,
            expected,
            // A surge is news from a least level on (an idle export read once is not).
            opens: up >= threshold && k > hi && k >= TRAFFIC_FACTOR * expected && k >= least,
            holds: up >= threshold / 2.0 && k >= HOLD_FACTOR * expected,
        }
    } else {
        Judgement {
            direction: Direction::Down,
            score: down,
            observed: k,
            expected: median,
            opens: down >= threshold && k < lo && k * TRAFFIC_FACTOR <= median && median >= least,
            holds: down >= threshold / 2.0 && k * HOLD_FACTOR <= median,
        }
    };
    Some(j)
}

fn judge_errors(now: &Slot, history: &[&Slot], threshold: f64) -> Option<Judgement> {
    if now.ops <= 0.0 {
        return None;
    }
    let (failed, ops) = history.iter().fold((0.0, 0.0), |(f, o), s| (f + s.failed, o + s.ops));
    // One pseudo-failure: a history without errors still expects them to be rare, not impossible.
    let expected = (failed + 1.0) / (ops + 1.0);
    let highest = history.iter().filter(|s| s.ops > 0.0).map(|s| s.failed / s.ops).fold(0.0, f64::max);
    let ratio = now.failed / now.ops;
    let score = stats::binomial_upper(now.failed, now.ops, expected);
    Some(Judgement {
        direction: Direction::Up,
        score,
        observed: ratio,
        expected,
        opens: score >= threshold
            && now.failed >= MIN_FAILURES
            && ratio >= MIN_ERROR_RATIO
            && ratio >= 2.0 * expected
            && ratio > highest,
        holds: score >= threshold / 2.0 && ratio >= TRAFFIC_FACTOR * expected,
    })
}

fn judge_latency(x: f64, mut values: Vec<f64>, threshold: f64) -> Option<Judgement> {
    if values.len() < MIN_WINDOW as usize / 2 {
        return None;
    }
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (median, mad) = stats::median_mad(&mut values)?;
    let scale = (MAD_TO_SIGMA * mad).max(MIN_LOG_SCALE);
    let score = stats::normal_upper((x - median) / scale);
    Some(Judgement {
        direction: Direction::Up,
        score,
        observed: x.exp(),
        expected: median.exp(),
        opens: score >= threshold
            && x > hi
            && x - median >= TRAFFIC_FACTOR.ln()
            && x >= (MIN_LATENCY_SECONDS * 1e9).ln(),
        holds: score >= threshold / 2.0 && x - median >= HOLD_FACTOR.ln(),
    })
}

/// Each contributor's part of the change in `direction`: traffic above (or below) its own
/// level; failures above what the NAS's ratio gives its operations; for latency, operations
/// above its level (who loaded the NAS). Shares of the positive parts, largest first.
fn shares(
    signal: Signal,
    direction: Direction,
    traffic: &NasTraffic,
    state: &NasState,
    expected_ratio: f64,
) -> Vec<Share> {
    let sign = match direction {
        Direction::Up => 1.0,
        Direction::Down => -1.0,
    };
    let mut now: HashMap<&str, (&Arc<Contributor>, Traffic)> = HashMap::new();
    for (who, t) in &traffic.contributors {
        now.entry(who.key.as_str()).and_modify(|e| e.1.add(t)).or_insert((who, *t));
    }
    let level = |key: &str| state.contributors.get(key);
    let change = |key: &str, t: &Traffic| -> f64 {
        let l = level(key);
        match signal {
            Signal::Operations | Signal::Latency => sign * (t.ops as f64 - l.map_or(0.0, |l| l.ops)),
            Signal::Bytes => sign * (t.bytes as f64 - l.map_or(0.0, |l| l.bytes)),
            Signal::Errors => t.failed as f64 - t.ops as f64 * expected_ratio,
        }
    };
    let mut parts: Vec<(Arc<Contributor>, f64)> =
        now.values().map(|(who, t)| (Arc::clone(who), change(&who.key, t))).collect();
    // A collapse is also the pods that stopped: tracked, and absent now.
    if direction == Direction::Down {
        for (key, l) in &state.contributors {
            if !now.contains_key(key.as_str()) {
                parts.push((Arc::clone(&l.who), change(key, &Traffic::default())));
            }
        }
    }
    parts.retain(|(_, c)| *c > 0.0);
    let total: f64 = parts.iter().map(|(_, c)| c).sum();
    parts.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.key.cmp(&b.0.key)));
    parts.truncate(MAX_LISTED);
    parts.into_iter().map(|(who, c)| Share { who, share: c / total }).collect()
}

/// Moves each contributor's level towards this interval's traffic (frozen while the NAS is
/// anomalous, so the levels stay the normal ones); forgets contributors idle for a window.
fn track_contributors(state: &mut NasState, traffic: &NasTraffic, update: bool, tick: u64, window: usize) {
    // The levels average over the window; early on, over what was seen (from zero: a pod
    // that appears later started from nothing).
    let alpha = (1.0 / (state.seen as f64 + 1.0)).max(2.0 / (window as f64 + 1.0));
    let mut now: HashMap<&str, Traffic> = HashMap::new();
    for (who, t) in &traffic.contributors {
        now.entry(who.key.as_str()).or_default().add(t);
        if let Some(tracked) = state.contributors.get_mut(&who.key) {
            tracked.last_seen = tick;
            if tracked.who != *who {
                tracked.who = Arc::clone(who);
            }
        } else if state.contributors.len() < MAX_CONTRIBUTORS {
            state
                .contributors
                .insert(who.key.clone(), Tracked { who: Arc::clone(who), ops: 0.0, bytes: 0.0, last_seen: tick });
        }
    }
    if update {
        for (key, tracked) in &mut state.contributors {
            let t = now.get(key.as_str()).copied().unwrap_or_default();
            tracked.ops += alpha * (t.ops as f64 - tracked.ops);
            tracked.bytes += alpha * (t.bytes as f64 - tracked.bytes);
        }
    }
    state.contributors.retain(|_, t| tick - t.last_seen <= window as u64 || t.ops >= 0.5);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Arc<Contributor> {
        Arc::new(Contributor {
            key: format!("uid-{name}"),
            attributes: vec![("k8s.namespace.name", "ns".into()), ("k8s.pod.name", name.into())],
        })
    }

    fn nas() -> NasKey {
        NasKey { server: "10.0.0.5".into(), export: "/export".into() }
    }

    fn sample(parts: &[(&Arc<Contributor>, u64)]) -> Vec<NasTraffic> {
        let mut total = Traffic::default();
        let contributors = parts
            .iter()
            .map(|(who, ops)| {
                let t = Traffic { ops: *ops, bytes: ops * 4096, failed: 0, latency_ns: ops * 1_000_000, timed: *ops };
                total.add(&t);
                (Arc::clone(who), t)
            })
            .collect();
        vec![NasTraffic { nas: Some(nas()), total, contributors }]
    }

    fn cfg() -> DetectConfig {
        DetectConfig { interval: Duration::from_secs(10), warmup: 20, threshold: DEFAULT_THRESHOLD }
    }

    /// Deterministic wobble around `mean` (about Poisson's spread).
    fn wobble(i: u64, mean: u64) -> u64 {
        let spread = mean.isqrt();
        mean - spread + (i * 7919 % (2 * spread + 1))
    }

    #[test]
    fn only_intervals_near_the_configured_length_are_judged() {
        let c = cfg();
        for (secs, judged) in [
            (10.0, true),
            (7.5, true),
            (12.5, true),
            (7.4, false),
            (12.6, false),
            (4.0, false),
            (20.0, false),
            (0.0, false),
        ] {
            assert_eq!(c.judges(Duration::from_secs_f64(secs)), judged, "{secs} s");
        }
    }

    #[test]
    fn a_burst_opens_one_event_naming_the_pod_and_closes_after_it() {
        let (a, b) = (pod("steady-a"), pod("bursty-b"));
        let mut d = Detector::new(cfg());
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |i: u64| t0 + Duration::from_secs(10 * i);
        let mut events = Vec::new();
        for i in 0..40 {
            let f = d.observe(at(i), sample(&[(&a, wobble(i, 400)), (&b, wobble(i + 3, 400))]));
            assert!(f.events.is_empty(), "steady traffic, interval {i}: {:?}", f.events);
        }
        for i in 40..45 {
            events.extend(d.observe(at(i), sample(&[(&a, wobble(i, 400)), (&b, 4000)])).events);
        }
        let opened: Vec<_> = events.iter().filter(|e| e.state == EventState::Open).collect();
        let signals: Vec<_> = opened.iter().map(|e| e.signal).collect();
        assert_eq!(signals, [Signal::Operations, Signal::Bytes], "{events:?}");
        for e in &opened {
            assert_eq!(e.direction, Direction::Up);
            assert_eq!(e.at, at(40), "opened on the burst's first interval");
            assert_eq!(e.started, at(39));
            assert_eq!(e.contributors[0].who.key, "uid-bursty-b");
            assert!(e.contributors[0].share > 0.95, "{:?}", e.contributors);
            assert!(e.score >= DEFAULT_THRESHOLD);
        }
        assert!((opened[0].observed - (wobble(40, 400) + 4000) as f64 / 10.0).abs() < 1e-9);
        assert!(events.iter().all(|e| e.state == EventState::Open), "no repeats, no close while it lasts");
        let mut closed = Vec::new();
        for i in 45..50 {
            closed.extend(d.observe(at(i), sample(&[(&a, wobble(i, 400)), (&b, wobble(i, 400))])).events);
        }
        assert_eq!(closed.len(), 2, "{closed:?}");
        assert!(closed.iter().all(|e| e.state == EventState::Close && e.at == at(46) && e.started == at(39)));
    }

    #[test]
    fn nothing_is_judged_during_the_warmup() {
        let a = pod("a");
        let mut d = Detector::new(cfg());
        let t0 = SystemTime::UNIX_EPOCH;
        for i in 0..20 {
            let ops = if i == 10 { 100_000 } else { 400 };
            let f = d.observe(t0 + Duration::from_secs(i), sample(&[(&a, ops)]));
            assert!(f.events.is_empty() && f.scores.is_empty(), "interval {i}");
        }
        let f = d.observe(t0, sample(&[(&a, 400)]));
        assert_eq!(f.scores.len(), 4, "judged once warm");
    }

    #[test]
    fn a_collapse_names_the_pod_that_stopped() {
        let (small, large) = (pod("a"), pod("b"));
        let mut detector = Detector::new(cfg());
        let t0 = SystemTime::UNIX_EPOCH;
        for i in 0..30 {
            let found = detector.observe(t0, sample(&[(&small, wobble(i, 100)), (&large, wobble(i + 1, 900))]));
            assert!(found.events.is_empty());
        }
        let found = detector.observe(t0, sample(&[(&small, 100)]));
        let collapse = found.events.iter().find(|e| e.signal == Signal::Operations).expect("a collapse");
        assert_eq!(collapse.direction, Direction::Down);
        assert_eq!(collapse.contributors[0].who.key, "uid-b");
    }

    #[test]
    fn errors_and_latency() {
        let a = pod("a");
        let mut d = Detector::new(cfg());
        let t0 = SystemTime::UNIX_EPOCH;
        let t = |i: u64, failed: u64, lat_ms: u64| {
            let ops = wobble(i, 1000);
            vec![NasTraffic {
                nas: Some(nas()),
                total: Traffic { ops, bytes: ops * 4096, failed, latency_ns: ops * lat_ms * 1_000_000, timed: ops },
                contributors: vec![(
                    Arc::clone(&a),
                    Traffic { ops, bytes: ops * 4096, failed, latency_ns: 0, timed: 0 },
                )],
            }]
        };
        for i in 0..30 {
            assert!(d.observe(t0, t(i, i % 2, 2)).events.is_empty(), "interval {i}");
        }
        let f = d.observe(t0, t(30, 50, 2));
        assert_eq!(f.events.iter().map(|e| e.signal).collect::<Vec<_>>(), [Signal::Errors]);
        assert_eq!(f.events[0].contributors[0].who.key, "uid-a");
        let f = d.observe(t0, t(31, 50, 10));
        assert_eq!(f.events.iter().map(|e| e.signal).collect::<Vec<_>>(), [Signal::Latency], "errors stay open");
        assert!((f.events[0].observed - 0.010).abs() < 1e-9);
    }

    #[test]
    fn a_latency_rise_below_5_ms_is_no_news() {
        let mut d = Detector::new(cfg());
        let t0 = SystemTime::UNIX_EPOCH;
        let lat = |ops: u64, us: u64| {
            vec![NasTraffic {
                nas: Some(nas()),
                total: Traffic { ops, bytes: 0, failed: 0, latency_ns: ops * us * 1000, timed: ops },
                contributors: vec![],
            }]
        };
        for i in 0..30 {
            d.observe(t0, lat(400, 1800 + i % 3 * 20));
        }
        // 1.8 ms to 4.5 ms: improbable and 2.5x, yet nobody waits on a 4.5 ms NAS.
        let f = d.observe(t0, lat(400, 4500));
        assert!(f.events.is_empty(), "{:?}", f.events);
        assert!(f.scores.iter().any(|s| s.signal == Signal::Latency && s.score >= 6.0), "{:?}", f.scores);
        let f = d.observe(t0, lat(400, 9000));
        assert_eq!(f.events.iter().map(|e| e.signal).collect::<Vec<_>>(), [Signal::Latency], "9 ms is");
    }

    #[test]
    fn an_idle_export_read_once_is_no_news_and_a_hung_one_stays_open() {
        let a = pod("a");
        let mut d = Detector::new(cfg());
        let t0 = SystemTime::UNIX_EPOCH;
        for i in 0..30 {
            let ops = if i % 9 == 0 { 3 } else { 0 };
            assert!(d.observe(t0, sample(&[(&a, ops)])).events.is_empty(), "interval {i}");
        }
        // A cat of a few files: over everything the window holds, under 1 operation/s.
        let f = d.observe(t0, sample(&[(&a, 8)]));
        assert!(f.events.is_empty(), "{:?}", f.events);

        // Steady latency, then it triples, then nothing completes at all: still open.
        let mut d = Detector::new(cfg());
        let lat = |ops: u64, ms: u64| {
            vec![NasTraffic {
                nas: Some(nas()),
                total: Traffic { ops, bytes: 0, failed: 0, latency_ns: ops * ms * 1_000_000, timed: ops },
                contributors: vec![],
            }]
        };
        for i in 0..30 {
            d.observe(t0, lat(wobble(i, 400), 2));
        }
        let f = d.observe(t0, lat(400, 6));
        assert_eq!(f.events.iter().map(|e| e.signal).collect::<Vec<_>>(), [Signal::Latency]);
        for _ in 0..5 {
            let f = d.observe(t0, lat(0, 0));
            assert!(f.events.iter().all(|e| e.signal != Signal::Latency), "a hung NAS is no recovery: {:?}", f.events);
        }
        let closed = d.close_all(t0);
        let reasons: Vec<_> = closed.iter().map(|e| (e.signal, e.close_reason)).collect();
        assert!(reasons.contains(&(Signal::Latency, Some(CloseReason::AgentStopped))), "{reasons:?}");
        assert!(d.close_all(t0).is_empty(), "closed once");
    }

    #[test]
    fn a_nas_without_series_for_a_window_is_forgotten() {
        let a = pod("a");
        let mut d = Detector::new(cfg());
        d.observe(SystemTime::UNIX_EPOCH, sample(&[(&a, 5)]));
        for _ in 0..=d.window() {
            assert_eq!(d.tracked(), 1);
            d.observe(SystemTime::UNIX_EPOCH, Vec::new());
        }
        assert_eq!(d.tracked(), 0);
    }
}
