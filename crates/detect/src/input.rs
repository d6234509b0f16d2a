//! From the pipe's cumulative rows to what each NAS and each pod did in the last interval.
//! Keeps one small record per (cgroup, device) with traffic: the counters it had last time.

use std::{collections::HashMap, sync::Arc};

use nasflow_enrich::names::{Names, Workload};
use nasflow_probe::snapshot::Snapshot;
use nasflow_probe_bpf::Op;

use crate::detector::{Contributor, NasKey, NasTraffic, Traffic};

/// Turns snapshots into per-interval traffic per NAS and contributor.
#[derive(Debug, Default)]
pub struct Deltas {
    last: HashMap<(u64, u32), Traffic>,
    /// The probe load the counters come from: a reload starts them at zero.
    load_generation: u64,
}

impl Deltas {
    /// A fresh start: the first snapshot's counters count whole.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// (cgroup, device) pairs remembered.
    #[must_use]
    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// Whether nothing is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// What changed since the last snapshot, per NAS (as the host's mount table names it) and
    /// per contributor. A pair seen for the first time counts whole (its counters started with
    /// it); a pair whose counters went down (the probe was reloaded) counts from zero; a pair
    /// no longer in the snapshot (a removed cgroup, after its final values) is forgotten.
    pub fn next(&mut self, snap: &Snapshot, names: &Names) -> Vec<NasTraffic> {
        if snap.health.load_generation != self.load_generation {
            self.load_generation = snap.health.load_generation;
            self.last.clear();
        }
        let mut now: HashMap<(u64, u32), Traffic> = HashMap::with_capacity(self.last.len());
        for row in &snap.rows {
            if matches!(row.op, Op::AppRead | Op::AppWrite) {
                continue;
            }
            let Some(c) = &row.completed else { continue };
            let t = now.entry((row.cgroup, row.dev)).or_default();
            t.ops += c.ops;
            if matches!(row.op, Op::Read | Op::Write) {
                t.bytes += c.bytes;
            }
            if row.err != 0 {
                t.failed += c.ops;
            }
            t.latency_ns += c.latency.sum_ns;
            t.timed += c.latency.count();
        }
        let mut by_nas: HashMap<NasKey, NasTraffic> = HashMap::new();
        let mut who: HashMap<u64, Arc<Contributor>> = HashMap::new();
        for (&(cgroup, dev), cur) in &now {
            let delta = match self.last.get(&(cgroup, dev)) {
                Some(prev) => minus(cur, prev).unwrap_or(*cur),
                None => *cur,
            };
            let Some(nas) = names.devices.get(&dev).or_else(|| names.nas_of(dev, cgroup)) else { continue };
            let key = NasKey { server: nas.server.clone(), export: nas.export.clone() };
            let entry =
                by_nas.entry(key.clone()).or_insert_with(|| NasTraffic { nas: Some(key), ..NasTraffic::default() });
            entry.total.add(&delta);
            if delta != Traffic::default() {
                let c = who
                    .entry(cgroup)
                    .or_insert_with(|| Arc::new(contributor(cgroup, names.workloads.get(&cgroup).map(AsRef::as_ref))));
                entry.contributors.push((Arc::clone(c), delta));
            }
        }
        self.last = now;
        let mut out: Vec<NasTraffic> = by_nas.into_values().collect();
        out.sort_by(|a, b| a.nas.cmp(&b.nas));
        out
    }
}

fn minus(a: &Traffic, b: &Traffic) -> Option<Traffic> {
    Some(Traffic {
        ops: a.ops.checked_sub(b.ops)?,
        bytes: a.bytes.checked_sub(b.bytes)?,
        failed: a.failed.checked_sub(b.failed)?,
        latency_ns: a.latency_ns.checked_sub(b.latency_ns)?,
        timed: a.timed.checked_sub(b.timed)?,
    })
}

/// The pod of a workload (its containers together), or its cgroup.
fn contributor(cgroup: u64, w: Option<&Workload>) -> Contributor {
    let Some(w) = w else {
        return Contributor {
            key: format!("cgroup:{cgroup}"),
            attributes: vec![("nasflow.cgroup.id", cgroup.to_string())],
        };
    };
    let attributes: Vec<(&'static str, String)> =
        w.attributes().into_iter().filter(|(k, _)| !matches!(*k, "container.id" | "k8s.container.name")).collect();
    let key = match (&w.pod, &w.pod_uid, &w.cgroup_path) {
        (Some(p), _, _) => p.uid.clone(),
        (None, Some(uid), _) => uid.clone(),
        (None, None, Some(path)) => path.to_string(),
        (None, None, None) => format!("cgroup:{cgroup}"),
    };
    // A container the kubelet does not know, in a pod the path does not give: the container.
    if attributes.is_empty() {
        return Contributor { key, attributes: w.attributes() };
    }
    Contributor { key, attributes }
}

#[cfg(test)]
mod tests {
    use nasflow_enrich::names::NasView;
    use nasflow_probe::snapshot::{Histogram, IoRow};

    use super::*;

    fn names() -> Names {
        let mut n = Names::default();
        let view = Arc::new(NasView {
            server: "10.0.0.5".into(),
            export: "/export".into(),
            version: "4.2".into(),
            mount_point: Some("/mnt/a".into()),
            volume: None,
        });
        n.devices.insert(42, Arc::clone(&view));
        n.devices.insert(43, view);
        n.workloads.insert(
            7,
            Arc::new(Workload { cgroup_id: 7, cgroup_path: Some("/batch.slice".into()), ..Workload::default() }),
        );
        n
    }

    fn hist(count: u64, sum_ns: u64) -> Histogram {
        let mut h = Histogram::default();
        h.slots[20] = count;
        h.sum_ns = sum_ns;
        h
    }

    fn snap(rows: Vec<IoRow>) -> Snapshot {
        Snapshot { rows, ..Snapshot::default() }
    }

    #[test]
    fn deltas_per_nas_and_contributor() {
        let mut d = Deltas::new();
        let names = names();
        let s1 = snap(vec![
            IoRow::new(7, 42, Op::Write, 0).with_completed(10, 40960, hist(10, 10_000)),
            IoRow::new(7, 43, Op::Read, 0).with_completed(5, 100, hist(5, 500)),
            IoRow::new(7, 42, Op::AppWrite, 0).with_completed(99, 999, Histogram::default()),
            IoRow::new(7, 42, Op::Write, 5).with_completed(2, 0, hist(2, 2_000)),
        ]);
        let out = d.next(&s1, &names);
        assert_eq!(out.len(), 1, "two mounts of one export are one NAS");
        assert_eq!(out[0].total, Traffic { ops: 17, bytes: 41060, failed: 2, latency_ns: 12_500, timed: 17 });
        assert_eq!(out[0].contributors.len(), 2);
        assert!(out[0].contributors.iter().all(|(c, _)| c.key == "/batch.slice"));
        let s2 = snap(vec![
            IoRow::new(7, 42, Op::Write, 0).with_completed(13, 53248, hist(13, 13_000)),
            IoRow::new(7, 43, Op::Read, 0).with_completed(5, 100, hist(5, 500)),
            IoRow::new(7, 42, Op::Write, 5).with_completed(2, 0, hist(2, 2_000)),
            IoRow::new(9, 42, Op::Write, 0).with_completed(1, 4096, hist(1, 1_000)),
        ]);
        let out = d.next(&s2, &names);
        assert_eq!(out[0].total, Traffic { ops: 4, bytes: 16384, failed: 0, latency_ns: 4_000, timed: 4 });
        let keys: Vec<&str> = out[0].contributors.iter().map(|(c, _)| c.key.as_str()).collect();
        assert!(keys.contains(&"/batch.slice") && keys.contains(&"cgroup:9"), "{keys:?}");
        assert_eq!(out[0].contributors.len(), 2, "pairs without traffic are left out");
        // The probe reloaded: counters start again, and count from zero.
        let s3 = snap(vec![IoRow::new(7, 42, Op::Write, 0).with_completed(1, 4096, hist(1, 1_000))]);
        assert_eq!(d.next(&s3, &names)[0].total.ops, 1);
        assert_eq!(d.len(), 1, "pairs gone from the snapshot are forgotten");
    }
}
