//! The push task. The pipe hands it the newest interval and never waits for it; an unsent
//! older interval is superseded (values are cumulative), except for the series that ended in
//! it: those stay as tombstones until a request holding their final values is answered.
//!
//! Values are measured when a request is built, against what the collector answered: delta
//! points start where the last answered request ended, so no range is sent twice when the
//! collector answers (accepting, partly accepting or refusing for good). Only a request whose
//! answer never came (a timeout) may be counted twice. Retries follow the OTLP specification:
//! retryable errors wait with jittered exponential backoff, or as long as the collector asked;
//! anything else drops that request, counted by reason.

use std::{
    collections::{BTreeMap, HashMap},
    hash::{BuildHasher, RandomState},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use tokio::sync::{watch, Notify};

use crate::{
    encode::Encoder,
    interval::{Interval, SeriesPoint},
    parts::{Answered, Framing, Member},
    series::SeriesKey,
    transport::{SendError, Transport},
};

/// First retry delay; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest retry delay of our own.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest delay a collector may ask for.
const MAX_ASKED_DELAY: Duration = Duration::from_secs(300);
/// Ended series kept for an unreachable collector at most; beyond, the oldest are dropped
/// (counted in `nasflow.export.drops{reason="tombstones_full"}`). 100,000 series of final
/// values are some tens of MiB.
const MAX_TOMBSTONES: usize = 100_000;

/// What delivery did so far, for self-telemetry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryStats {
    /// Requests the collector answered (accepted, maybe in part).
    pub requests: u64,
    /// Bytes of those requests, encoded and before compression.
    pub bytes: u64,
    /// Attempts that failed, retryable or not.
    pub failures: u64,
    /// Attempts made again after a retryable failure.
    pub retries: u64,
    /// Requests refused for good and dropped, by reason (`invalid_argument`, `http_413`, ...).
    pub drops: BTreeMap<String, u64>,
    /// Data points the collector rejected in partial successes.
    pub rejected_points: u64,
    /// Requests the last interval was split into.
    pub parts_last_interval: u64,
    /// Series that ended and wait for a request holding their final value to be answered.
    pub tombstones: u64,
}

/// What the pipe left for the task: the newest interval, and the series that ended in every
/// interval published since the task last looked (superseded ones included).
#[derive(Debug, Default)]
struct Inbox {
    latest: Option<Interval>,
    ended: Vec<SeriesPoint>,
}

#[derive(Debug)]
struct Shared {
    inbox: Mutex<Inbox>,
    wake: Notify,
    stats: Mutex<DeliveryStats>,
    last_success: Mutex<Option<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Handle of the push task.
pub struct Delivery {
    shared: Arc<Shared>,
    answered: watch::Receiver<u64>,
    endpoint: String,
}

/// Capped exponential backoff with jitter: each delay is drawn from the upper half of the
/// current step, so agents that failed together do not retry together.
#[derive(Debug)]
struct Backoff {
    step: Duration,
    random: RandomState,
    draws: u64,
}

impl Backoff {
    fn new() -> Self {
        Self { step: FIRST_BACKOFF, random: RandomState::new(), draws: 0 }
    }

    fn reset(&mut self) {
        self.step = FIRST_BACKOFF;
    }

    /// The next delay: what the collector asked for (capped), else the jittered step.
    fn next(&mut self, asked: Option<Duration>) -> Duration {
        self.draws += 1;
        let half = self.step / 2;
        let jitter = self.random.hash_one(self.draws) % (u64::try_from(half.as_millis()).unwrap_or(1).max(1));
        let own = half + Duration::from_millis(jitter);
        self.step = (self.step * 2).min(MAX_BACKOFF);
        asked.map_or(own, |a| a.min(MAX_ASKED_DELAY))
    }
}

/// The task's own state: what was answered per series, and the tombstones.
#[derive(Debug, Default)]
struct Ledger {
    answered: Answered,
    tombstones: HashMap<SeriesKey, SeriesPoint>,
    /// Tombstones in the order they came (some may be answered already).
    order: std::collections::VecDeque<SeriesKey>,
}

impl Ledger {
    /// Takes the newest interval, if any, moving the series that ended into tombstones.
    fn take(&mut self, shared: &Shared) -> Option<Interval> {
        let mut inbox = lock(&shared.inbox);
        for p in inbox.ended.drain(..) {
            if self.tombstones.insert(p.key, p.clone()).is_none() {
                self.order.push_back(p.key);
            }
        }
        // Bounded: an unreachable collector must not grow memory without end.
        let mut dropped = 0;
        while self.tombstones.len() > MAX_TOMBSTONES {
            let Some(oldest) = self.order.pop_front() else { break };
            if self.tombstones.remove(&oldest).is_some() {
                self.answered.remove(&oldest);
                dropped += 1;
            }
        }
        if dropped > 0 {
            *lock(&shared.stats).drops.entry("tombstones_full".to_owned()).or_default() += dropped;
            tracing::warn!(dropped, "too many ended series wait for the collector: the oldest are dropped");
        }
        inbox.latest.take()
    }

    /// A request holding `members` at `time` was answered: their values are the new
    /// baselines, and answered tombstones are forgotten.
    fn answered(&mut self, members: Vec<Member>, time: u64) {
        for m in members {
            if m.tombstone {
                self.tombstones.remove(&m.key);
                self.answered.remove(&m.key);
            } else {
                self.answered.insert(m.key, (m.cumulative, time));
            }
        }
    }

    /// Forgets baselines of series neither in `interval` nor waiting as tombstones.
    fn prune(&mut self, interval: &Interval) {
        let live: std::collections::HashSet<SeriesKey> = interval.points.iter().map(|p| p.key).collect();
        self.answered.retain(|k, _| live.contains(k) || self.tombstones.contains_key(k));
    }
}

/// Log-once state: each message is logged when it changes, not on every attempt.
#[derive(Debug, Default)]
struct Said {
    failing: bool,
    drop: Option<String>,
    partial: Option<String>,
}

impl Delivery {
    /// Starts pushing `encoder`'s intervals through `transport`.
    #[must_use]
    pub fn spawn(transport: Transport, encoder: &Encoder) -> Self {
        let shared = Arc::new(Shared {
            inbox: Mutex::default(),
            wake: Notify::new(),
            stats: Mutex::default(),
            last_success: Mutex::default(),
        });
        let (answered_tx, answered) = watch::channel(0u64);
        let endpoint = transport.endpoint().to_owned();
        tokio::spawn(run(Arc::clone(&shared), transport, encoder.framing(), answered_tx));
        Self { shared, answered, endpoint }
    }

    /// Hands over the newest interval; an unsent older one is superseded, its ended series
    /// kept.
    pub fn publish(&self, interval: Interval) {
        {
            let mut inbox = lock(&self.shared.inbox);
            inbox.ended.extend(interval.points.iter().filter(|p| p.ended).cloned());
            inbox.latest = Some(interval);
        }
        self.shared.wake.notify_one();
    }

    /// The last interval whose every request was answered (0: none yet).
    #[must_use]
    pub fn answered(&self) -> u64 {
        *self.answered.borrow()
    }

    /// What delivery did so far.
    #[must_use]
    pub fn stats(&self) -> DeliveryStats {
        lock(&self.shared.stats).clone()
    }

    /// When a request was last answered.
    #[must_use]
    pub fn last_success(&self) -> Option<Instant> {
        *lock(&self.shared.last_success)
    }

    /// Where requests go.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Waits until interval `seq` (or a newer one) was answered, at most `timeout`.
    pub async fn flush(&self, seq: u64, timeout: Duration) -> bool {
        let mut answered = self.answered.clone();
        let done = matches!(tokio::time::timeout(timeout, answered.wait_for(|a| *a >= seq)).await, Ok(Ok(_)));
        done
    }
}

async fn run(shared: Arc<Shared>, mut transport: Transport, framing: Framing, answered_tx: watch::Sender<u64>) {
    let mut ledger = Ledger::default();
    let mut backoff = Backoff::new();
    let mut said = Said::default();
    loop {
        let notified = shared.wake.notified();
        let Some(mut interval) = ledger.take(&shared) else {
            notified.await;
            continue;
        };
        'interval: loop {
            ledger.prune(&interval);
            lock(&shared.stats).tombstones = ledger.tombstones.len() as u64;
            let parts = framing.parts(&interval, ledger.tombstones.values(), &ledger.answered);
            lock(&shared.stats).parts_last_interval = parts.len() as u64;
            for part in parts {
                loop {
                    match transport.send(&part.body).await {
                        Ok(answer) => {
                            backoff.reset();
                            if said.failing {
                                tracing::info!(endpoint = transport.endpoint(), "OTLP export works again");
                                said.failing = false;
                            }
                            if answer.rejected > 0 && said.partial.as_deref() != Some(answer.message.as_str()) {
                                tracing::warn!(rejected = answer.rejected, message = %answer.message, "the collector rejected some data points");
                                said.partial = Some(answer.message.clone());
                            }
                            *lock(&shared.last_success) = Some(Instant::now());
                            let mut stats = lock(&shared.stats);
                            stats.requests += 1;
                            stats.bytes += part.body.len() as u64;
                            stats.rejected_points += u64::try_from(answer.rejected).unwrap_or(0);
                            drop(stats);
                            ledger.answered(part.members, interval.time);
                            break;
                        }
                        Err(SendError::Permanent { reason, detail }) => {
                            if said.drop.as_deref() != Some(reason.as_str()) {
                                tracing::warn!(reason, error = %detail, "the collector refused a request for good: dropped (the next interval carries cumulative values again)");
                                said.drop = Some(reason.clone());
                            }
                            let mut stats = lock(&shared.stats);
                            stats.failures += 1;
                            *stats.drops.entry(reason).or_default() += 1;
                            drop(stats);
                            // Answered, if by a refusal: its range is not sent again.
                            ledger.answered(part.members, interval.time);
                            break;
                        }
                        Err(SendError::Retryable { detail, after }) => {
                            lock(&shared.stats).failures += 1;
                            if !said.failing {
                                tracing::warn!(error = %detail, "OTLP export failed; retrying with backoff, values keep accumulating");
                                said.failing = true;
                            }
                            tokio::time::sleep(backoff.next(after)).await;
                            lock(&shared.stats).retries += 1;
                            // A newer interval carries everything this one did: continue with it
                            // (what was answered stays answered).
                            if let Some(newer) = ledger.take(&shared) {
                                interval = newer;
                                continue 'interval;
                            }
                        }
                    }
                }
            }
            lock(&shared.stats).tombstones = ledger.tombstones.len() as u64;
            let _ = answered_tx.send(interval.seq);
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_are_bounded_and_the_oldest_dropped_counted() {
        use crate::{
            points::Value,
            series::{Origin, SeriesKey},
        };
        let shared = Shared {
            inbox: Mutex::default(),
            wake: Notify::new(),
            stats: Mutex::default(),
            last_success: Mutex::default(),
        };
        let point = |cgroup: u64| SeriesPoint {
            key: SeriesKey {
                metric: 1,
                origin: Some(Origin::Client { cgroup, dev: 1, op: nasflow_probe::Operation::Read, err: 0, dir: 0 }),
            },
            value: Value::Sum(cgroup),
            start: 0,
            attrs: vec![],
            ended: true,
            exemplars: vec![],
        };
        lock(&shared.inbox).ended = (0..MAX_TOMBSTONES as u64 + 5).map(point).collect();
        let mut ledger = Ledger::default();
        assert!(ledger.take(&shared).is_none());
        assert_eq!(ledger.tombstones.len(), MAX_TOMBSTONES);
        assert_eq!(lock(&shared.stats).drops.get("tombstones_full"), Some(&5));
        assert!(!ledger.tombstones.contains_key(&point(0).key), "the oldest went first");
        assert!(ledger.tombstones.contains_key(&point(MAX_TOMBSTONES as u64 + 4).key));
    }

    #[test]
    fn backoff_is_jittered_capped_and_defers_to_the_collector() {
        let mut b = Backoff::new();
        let first = b.next(None);
        assert!(first >= FIRST_BACKOFF / 2 && first <= FIRST_BACKOFF, "{first:?}");
        for _ in 0..20 {
            let d = b.next(None);
            assert!(d <= MAX_BACKOFF, "{d:?}");
        }
        assert!(b.next(None) >= MAX_BACKOFF / 2);
        assert_eq!(b.next(Some(Duration::from_secs(7))), Duration::from_secs(7));
        assert_eq!(b.next(Some(Duration::from_secs(3600))), MAX_ASKED_DELAY);
        b.reset();
        assert!(b.next(None) <= FIRST_BACKOFF);
    }
}
