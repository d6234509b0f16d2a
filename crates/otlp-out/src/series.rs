//! The series registry on the pipe's side: which series exist, when each started, which fit
//! the series budget (the rest fold into overflow series), and when a series ends. Delivery
//! keeps what the collector accepted; see `delivery.rs`.

use std::collections::{HashMap, HashSet};

use nasflow_probe::Operation;

use crate::points::Value;

/// Aggregation temporality of the NFS metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    /// Values since the series' start (default).
    Cumulative,
    /// Values since the last export the collector answered.
    Delta,
}

/// Where a series' values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Origin {
    /// One (cgroup, device, operation) of the client probe, and the outcome for series kept
    /// per errno (0 otherwise).
    /// `dir` is the watched directory (0 for none).
    Client { cgroup: u64, dev: u32, op: Operation, err: u16, dir: u16 },
    /// One (export, client address, version, operation) the NFS server served (`id` in the
    /// encoder's server table), and the NFS status for series kept per status (0 otherwise).
    Server { id: u32, status: u16 },
}

impl Origin {
    /// The cgroup of a client series.
    pub(crate) fn cgroup(&self) -> Option<u64> {
        match self {
            Self::Client { cgroup, .. } => Some(*cgroup),
            Self::Server { .. } => None,
        }
    }
}

/// One series: a metric (its index in `schema::METRICS`) and its origin; `None` for the
/// metric's overflow series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SeriesKey {
    pub(crate) metric: usize,
    pub(crate) origin: Option<Origin>,
}

#[derive(Debug)]
struct SeriesState {
    start: u64,
    admitted: bool,
    /// Overflowed series: the value already folded into the overflow series.
    folded: Option<Value>,
}

/// A series' cumulative value now: its key, value, start time and whether it ends with it.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub(crate) key: SeriesKey,
    pub(crate) value: Value,
    pub(crate) start: u64,
    pub(crate) ended: bool,
}

/// Series and their budget.
#[derive(Debug)]
pub(crate) struct Registry {
    max_series: usize,
    series: HashMap<SeriesKey, SeriesState>,
    admitted: usize,
    overflowed_total: u64,
    overflow: HashMap<usize, Value>,
}

impl Registry {
    pub(crate) fn new(max_series: usize) -> Self {
        Self { max_series, series: HashMap::new(), admitted: 0, overflowed_total: 0, overflow: HashMap::new() }
    }

    /// Series admitted (within the budget) now.
    pub(crate) fn admitted(&self) -> usize {
        self.admitted
    }

    /// Series folded into overflow series so far.
    pub(crate) fn overflowed(&self) -> u64 {
        self.overflowed_total
    }

    /// The series of one interval taken at `now` from their current cumulative values:
    /// admitted series as they are, the rest folded into their metric's overflow series.
    /// Series of cgroups that are gone end: they are marked `ended` and forgotten, as are
    /// series not seen in this interval.
    pub(crate) fn current(
        &mut self,
        now: u64,
        values: Vec<(SeriesKey, Value)>,
        gone: impl Fn(u64) -> bool,
    ) -> Vec<Current> {
        let mut out: Vec<Current> = Vec::with_capacity(values.len());
        let mut seen: HashSet<SeriesKey> = HashSet::with_capacity(values.len());
        for (key, cur) in values {
            seen.insert(key);
            let st = self.series.entry(key).or_insert_with(|| {
                let admitted = self.admitted < self.max_series;
                if admitted {
                    self.admitted += 1;
                } else {
                    self.overflowed_total += 1;
                }
                SeriesState { start: now, admitted, folded: None }
            });
            if st.admitted {
                let ended = key.origin.and_then(|o| o.cgroup()).is_some_and(&gone);
                out.push(Current { key, value: cur, start: st.start, ended });
            } else {
                // Fold what this series gained since it was last folded.
                let gained =
                    st.folded.as_ref().map_or(Some(cur.clone()), |f| cur.minus(f)).unwrap_or_else(|| cur.clone());
                self.overflow.entry(key.metric).or_insert_with(|| cur.zero_like()).add(&gained);
                st.folded = Some(cur);
            }
        }
        let mut metrics: Vec<usize> = self.overflow.keys().copied().collect();
        metrics.sort_unstable();
        for metric in metrics {
            let key = SeriesKey { metric, origin: None };
            seen.insert(key);
            let st = self.series.entry(key).or_insert(SeriesState { start: now, admitted: true, folded: None });
            out.push(Current { key, value: self.overflow[&metric].clone(), start: st.start, ended: false });
        }
        self.retire(&seen, gone);
        out
    }

    /// Lifecycle: series not seen in the last interval, or whose cgroup is gone (they were
    /// just handed over with their final values), end now.
    fn retire(&mut self, seen: &HashSet<SeriesKey>, gone: impl Fn(u64) -> bool) {
        let before = self.series.len();
        let admitted = &mut self.admitted;
        self.series.retain(|k, st| {
            let keep = seen.contains(k) && !k.origin.and_then(|o| o.cgroup()).is_some_and(&gone);
            if !keep && st.admitted && k.origin.is_some() {
                *admitted -= 1;
            }
            keep
        });
        if self.series.len() < before {
            tracing::trace!(dropped = before - self.series.len(), "series ended");
        }
    }
}
