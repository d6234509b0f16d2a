//! One export of 10,000 and of 20,000 series with histograms: CPU for building the interval
//! (values, attributes) plus framing its requests (split under the default 3 MiB), request
//! sizes (raw and gzip), and the extra peak heap of one export, measured with a counting
//! allocator. BENCHMARKS.md records the numbers.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::SystemTime,
};

use criterion::{criterion_group, criterion_main, Criterion};
use nasflow_enrich::{
    kubelet::PodMeta,
    names::{Names, NasView, Workload},
};
use nasflow_otlp_out::{
    encode::{EncodeOptions, Encoder, HistogramKind, SelfStats, Temporality, DEFAULT_MAX_REQUEST_BYTES},
    transport::gzip_size,
};
use nasflow_probe::{Histogram, IoRow, Operation, Snapshot};

struct Counting;
static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: delegates to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let now = CURRENT.fetch_add(l.size(), Ordering::Relaxed) + l.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        CURRENT.fetch_sub(l.size(), Ordering::Relaxed);
        // SAFETY: p was allocated by System with l.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// `pods` pod containers x (READ, WRITE, COMMIT) on one NAS: 8 series each (counts, bytes
/// and durations of the three, less COMMIT bytes), 10,000 series for 1,250 pods.
fn setup(pods: u64) -> (Snapshot, Names) {
    let mut rows = Vec::new();
    let mut names = Names::default();
    let nas = Arc::new(NasView {
        server: "10.0.0.5".into(),
        export: "/exports/datasets".into(),
        version: "4.1".into(),
        mount_point: Some("/var/lib/kubelet/pods/x/volumes/kubernetes.io~nfs/datasets".into()),
        volume: Some("datasets".into()),
    });
    for i in 0..pods {
        let cgroup = 10_000 + i;
        let pod = Arc::new(PodMeta {
            namespace: "ml-training".into(),
            name: format!("trainer-{i}-7d9f8b6c5-x2x9z"),
            uid: format!("{i:08x}-0000-4000-8000-000000000000"),
            owners: vec![
                ("k8s.deployment.name", format!("trainer-{i}")),
                ("k8s.replicaset.name", format!("trainer-{i}-7d9f8b6c5")),
            ],
            task: format!("task-{}", i % 40),
        });
        let w = Workload {
            cgroup_id: cgroup,
            cgroup_path: Some(Arc::from("/kubepods.slice/x")),
            container_id: Some(format!("{i:064x}")),
            pod_uid: Some(pod.uid.clone()),
            container_name: Some("app".into()),
            pod: Some(pod),
            gone: false,
        };
        names.workloads.insert(cgroup, Arc::new(w));
        names.nas.insert((61, cgroup), Arc::clone(&nas));
        for op in [Operation::Read, Operation::Write, Operation::Commit] {
            let mut latency = Histogram::default();
            for (s, slot) in latency.slots.iter_mut().enumerate().take(23).skip(18) {
                *slot = i + s as u64;
            }
            let n = latency.count();
            latency.sum_ns = n * 1_000_000;
            rows.push(IoRow::new(cgroup, 61, op, 0).with_completed(n, n * 65536, latency));
        }
    }
    let snap = Snapshot { taken_at: Some(SystemTime::now()), rows, ..Snapshot::default() };
    (snap, names)
}

fn bench(c: &mut Criterion) {
    for (pods, series) in [(1250, 10_000), (2500, 20_000)] {
        let (snap, names) = setup(pods);
        let opts = EncodeOptions {
            histogram: HistogramKind::Exponential,
            temporality: Temporality::Cumulative,
            max_series: 20_000,
            resource: vec![("service.name".into(), "nasflow".into())],
            scope_version: "bench".into(),
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        };
        let mut e = Encoder::new(opts);
        let stats = SelfStats::default();
        let i = e.interval(&snap, &names, &stats);
        let first = e.requests(&i);
        drop(i);
        assert_eq!(e.series_count(), series);
        let sizes: Vec<(usize, usize)> = first.iter().map(|r| gzip_size(r)).collect();
        drop(first);
        let before = CURRENT.load(Ordering::Relaxed);
        PEAK.store(before, Ordering::Relaxed);
        let i = e.interval(&snap, &names, &stats);
        let reqs = e.requests(&i);
        drop(i);
        let peak = PEAK.load(Ordering::Relaxed) - before;
        drop(reqs);
        let (raw, gz): (usize, usize) = sizes.iter().fold((0, 0), |(r, g), (a, b)| (r + a, g + b));
        println!(
            "{series} series: {} requests, largest {} B; {raw} B raw, {gz} B gzip in all ({:.1} B/series gzip); extra peak heap of one export {:.1} MiB",
            sizes.len(),
            sizes.iter().map(|s| s.0).max().unwrap_or(0),
            gz as f64 / series as f64,
            peak as f64 / f64::from(1 << 20)
        );
        c.bench_function(&format!("export {}k series (interval + requests)", series / 1000), |b| {
            b.iter(|| {
                let i = e.interval(black_box(&snap), &names, &stats);
                black_box(e.requests(&i))
            });
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
