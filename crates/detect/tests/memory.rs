//! What the detector keeps at 1000 pods on 20 NAS exports, every pod on every export (the
//! worst case): live heap bytes held by `Deltas` and `Detector` after a warm-up and more,
//! counted by a global allocator. Prints the number (`-- --nocapture`); BENCHMARKS.md records it.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::{
        atomic::{AtomicIsize, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use nasflow_detect::{Deltas, DetectConfig, Detector};
use nasflow_enrich::{
    kubelet::PodMeta,
    names::{Names, NasView, Workload},
};
use nasflow_probe::snapshot::{Histogram, IoRow, Snapshot};
use nasflow_probe_bpf::Op;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size().cast_signed(), Ordering::Relaxed);
        // SAFETY: the caller's layout, as given.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size().cast_signed(), Ordering::Relaxed);
        // SAFETY: the caller's pointer and layout, as given.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static A: Counting = Counting;

const PODS: u64 = 1000;
const EXPORTS: u32 = 20;

fn names() -> Names {
    let mut n = Names::default();
    for d in 0..EXPORTS {
        n.devices.insert(
            d + 1,
            Arc::new(NasView {
                server: format!("10.0.0.{d}"),
                export: format!("/export/volume-{d}"),
                version: "4.2".into(),
                mount_point: Some(format!("/mnt/nas-{d}")),
                volume: None,
            }),
        );
    }
    for p in 0..PODS {
        let pod = Arc::new(PodMeta {
            namespace: "team-namespace".into(),
            name: format!("training-job-{p:05}-worker"),
            uid: format!("8f0c2a7e-0000-4000-8000-{p:012}"),
            owners: vec![("k8s.statefulset.name", format!("training-job-{p:05}"))],
            task: format!("training-job-{p:05}"),
        });
        n.workloads.insert(
            p + 100,
            Arc::new(Workload {
                cgroup_id: p + 100,
                cgroup_path: Some(format!("/kubepods.slice/kubepods-pod{p}.slice/cri-containerd-{p:064}.scope").into()),
                container_id: Some(format!("{p:064}")),
                pod_uid: Some(pod.uid.clone()),
                pod: Some(pod),
                container_name: Some("worker".into()),
                gone: false,
            }),
        );
    }
    n
}

fn snapshot(i: u64) -> Snapshot {
    let mut rows = Vec::new();
    for p in 0..PODS {
        for d in 0..EXPORTS {
            let ops = 10 * i + (p + u64::from(d)) % 7;
            let mut h = Histogram::default();
            h.slots[20] = ops;
            h.sum_ns = ops * 1_000_000;
            rows.push(IoRow::new(p + 100, d + 1, Op::Write, 0).with_completed(ops, ops * 4096, h));
        }
    }
    Snapshot { rows, ..Snapshot::default() }
}

#[test]
fn memory_at_1000_pods_and_20_exports() {
    let names = names();
    let cfg = DetectConfig { interval: Duration::from_secs(10), warmup: 60, threshold: 6.0 };
    let before = LIVE.load(Ordering::Relaxed);
    let mut deltas = Deltas::new();
    let mut detector = Detector::new(cfg);
    for i in 1..=80 {
        let snap = snapshot(i);
        let sample = deltas.next(&snap, &names);
        let findings = detector.observe(SystemTime::UNIX_EPOCH + Duration::from_secs(10 * i), sample);
        drop(findings);
        drop(snap);
    }
    let held = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "1000 pods on 20 exports, every pod on every export: {} pairs, {} exports; the detector and its deltas hold {:.2} MiB",
        deltas.len(),
        detector.tracked(),
        held as f64 / f64::from(1 << 20)
    );
    assert_eq!(deltas.len(), 20_000);
    assert_eq!(detector.tracked(), 20);
    assert!(held < 16 << 20, "{held} bytes");
}
