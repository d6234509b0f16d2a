//! The series registry: which series exist, when each started, which fit the series budget
//! (the rest fold into overflow series), the delta baselines the collector accepted, and when
//! a series ends.

use std::collections::{HashMap, HashSet, VecDeque};

use nasflow_probe::Operation;

use crate::points::Value;

/// Aggregation temporality of the NFS metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Temporality {
    /// Values since the series' start (default).
    Cumulative,
    /// Values since the last export the collector accepted.
    Delta,
}

/// Where a series' values come from: one (cgroup, device, operation) of the probe, and the
/// outcome for series kept per errno (0 otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Origin {
    pub(crate) cgroup: u64,
    pub(crate) dev: u32,
    pub(crate) op: Operation,
    pub(crate) err: u16,
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
    /// Delta: the value and time of the last export the collector accepted.
    baseline: Option<(Value, u64)>,
    /// Overflowed series: the value already folded into the overflow series.
    folded: Option<Value>,
}

/// A request's sequence number, time and the values it carried (delta temporality).
type PendingValues = (u64, u64, Vec<(SeriesKey, Value)>);

/// Requests whose values are kept for delta baselines, waiting for an acknowledgement.
const PENDING_REQUESTS: usize = 4;

/// A point to send: the series, its value (a delta or cumulative) and the start of the range.
pub(crate) type Point = (SeriesKey, Value, u64);

/// Series, their budget and their baselines.
#[derive(Debug)]
pub(crate) struct Registry {
    max_series: usize,
    temporality: Temporality,
    series: HashMap<SeriesKey, SeriesState>,
    admitted: usize,
    overflowed_total: u64,
    overflow: HashMap<usize, Value>,
    pending: VecDeque<PendingValues>,
}

impl Registry {
    pub(crate) fn new(max_series: usize, temporality: Temporality) -> Self {
        Self {
            max_series,
            temporality,
            series: HashMap::new(),
            admitted: 0,
            overflowed_total: 0,
            overflow: HashMap::new(),
            pending: VecDeque::new(),
        }
    }

    /// Series admitted (within the budget) now.
    pub(crate) fn admitted(&self) -> usize {
        self.admitted
    }

    /// Series folded into overflow series so far.
    pub(crate) fn overflowed(&self) -> u64 {
        self.overflowed_total
    }

    /// The collector accepted request `seq`: with delta temporality, its values become the
    /// baselines of the next deltas. Unacknowledged requests are superseded, never lost.
    pub(crate) fn acknowledge(&mut self, seq: u64) {
        while let Some((s, time, values)) = self.pending.pop_front() {
            if s == seq {
                for (key, v) in values {
                    if let Some(st) = self.series.get_mut(&key) {
                        st.baseline = Some((v, time));
                    }
                }
                return;
            }
            if s > seq {
                self.pending.push_front((s, time, values));
                return;
            }
        }
    }

    /// The points of request `seq` taken at `now` from the series' current values: admitted
    /// series as they are, the rest folded into their metric's overflow series; deltas
    /// against the last accepted request. Also returns every series seen.
    pub(crate) fn points(
        &mut self,
        seq: u64,
        now: u64,
        values: Vec<(SeriesKey, Value)>,
    ) -> (Vec<Point>, HashSet<SeriesKey>) {
        let mut points: Vec<Point> = Vec::with_capacity(values.len());
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
                SeriesState { start: now, admitted, baseline: None, folded: None }
            });
            if st.admitted {
                points.push((key, cur, st.start));
            } else {
                // Fold what this series gained since it was last folded.
                let gained =
                    st.folded.as_ref().map_or(Some(cur.clone()), |f| cur.minus(f)).unwrap_or_else(|| cur.clone());
                self.overflow.entry(key.metric).or_insert_with(|| cur.zero_like()).add(&gained);
                st.folded = Some(cur);
            }
        }
        for (metric, v) in &self.overflow {
            let key = SeriesKey { metric: *metric, origin: None };
            seen.insert(key);
            let st = self.series.entry(key).or_insert(SeriesState {
                start: now,
                admitted: true,
                baseline: None,
                folded: None,
            });
            points.push((key, v.clone(), st.start));
        }
        if self.temporality == Temporality::Cumulative {
            return (points, seen);
        }
        // Delta against the last accepted export.
        let mut sent = Vec::with_capacity(points.len());
        let mut out: Vec<Point> = Vec::with_capacity(points.len());
        for (key, cur, start) in points {
            let (base, since) = match self.series.get(&key).and_then(|s| s.baseline.as_ref()) {
                Some((v, t)) => (Some(v), *t),
                None => (None, start),
            };
            let delta = base.map_or(Some(cur.clone()), |b| cur.minus(b));
            // Went down: the series restarted; count it from zero.
            let (delta, since) = delta.map_or_else(|| (cur.clone(), start), |d| (d, since));
            sent.push((key, cur));
            out.push((key, delta, since));
        }
        self.pending.push_back((seq, now, sent));
        while self.pending.len() > PENDING_REQUESTS {
            self.pending.pop_front();
        }
        (out, seen)
    }

    /// Lifecycle: series not seen in the last request, or whose cgroup is gone (they were just
    /// exported once more), end now.
    pub(crate) fn retire(&mut self, seen: &HashSet<SeriesKey>, gone: impl Fn(u64) -> bool) {
        let before = self.series.len();
        let admitted = &mut self.admitted;
        self.series.retain(|k, st| {
            let keep = seen.contains(k) && !k.origin.is_some_and(|o| gone(o.cgroup));
            if !keep && st.admitted && k.origin.is_some() {
                *admitted -= 1;
            }
            keep
        });
        if self.series.len() < before {
            tracing::trace!(dropped = before - self.series.len(), "series dropped");
        }
    }
}
