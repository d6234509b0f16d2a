//! Cost of naming one interval's series: 10,000 (cgroup, device) pairs, 5,000 containers in
//! 2,500 pods, two NFS devices, all known (the steady state). BENCHMARKS.md records it.

use std::{collections::HashMap, hint::black_box, time::Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use nasflow_enrich::{
    cgroup::{CgroupNamer, CgroupTable},
    kubelet::parse_pod_list,
    mountinfo::parse_mountinfo,
    names::{name_pairs, NameCache},
    refresh::Versioned,
};

fn setup() -> (CgroupTable, nasflow_enrich::kubelet::PodIndex, nasflow_enrich::names::MountTable, Vec<(u64, u32)>) {
    let mut paths = HashMap::new();
    let mut items = Vec::new();
    let mut pairs = Vec::new();
    let mut id = 1000u64;
    for p in 0..2500u32 {
        let uid = format!("{p:08x}-0000-4000-8000-{p:012x}");
        let mut statuses = Vec::new();
        for c in 0..2u32 {
            let cid = format!("{:064x}", u64::from(p) << 8 | u64::from(c));
            paths.insert(
                id,
                format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{cid}.scope", uid.replace('-', "_")),
            );
            statuses.push(
                serde_json::json!({"name": format!("c{c}"), "containerID": format!("containerd://{cid}"), "ready": true,
                "restartCount": 0, "image": "x", "imageID": "x", "state": {}, "lastState": {}}),
            );
            pairs.push((id, 61));
            pairs.push((id, 63));
            id += 1;
        }
        items.push(serde_json::json!({
            "metadata": {"name": format!("job-{p}-abcde"), "namespace": "ml", "uid": uid,
                "labels": {"pod-template-hash": "abc12", "team.example.com/task": format!("task-{}", p % 50)},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("job-{p}-abc12"), "uid": "u", "controller": true}]},
            "status": {"containerStatuses": statuses}
        }));
    }
    let list = serde_json::json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items});
    let index =
        parse_pod_list(&serde_json::to_vec(&list).expect("json"), &["team.example.com/task".to_owned()]).expect("pods");
    let (mounts, _) = parse_mountinfo(
        "1 0 0:61 / /srv/a rw - nfs 10.0.0.1:/a rw,vers=3\n2 0 0:63 / /srv/b rw - nfs4 10.0.0.2:/b rw,vers=4.2\n",
    );
    (CgroupTable::from_paths(Instant::now(), paths), index, mounts, pairs)
}

fn bench(c: &mut Criterion) {
    let (table, index, mounts, pairs) = setup();
    let (index, mounts) = (Versioned::new(index, 1), Versioned::new(mounts, 1));
    let seen = Instant::now();
    // Every interval after the first: tables unchanged, everything cached.
    let mut namer = CgroupNamer::default();
    let mut cache = NameCache::default();
    let first = name_pairs(&mut namer, &mut cache, &table, Some(&index), &mounts, &pairs, seen);
    assert_eq!(first.misses, 0);
    assert_eq!(first.workloads.len(), 5000);
    assert_eq!(first.nas.len(), 10_000);
    c.bench_function("name 10k series, steady state", |b| {
        b.iter(|| {
            black_box(name_pairs(&mut namer, &mut cache, &table, Some(&index), &mounts, black_box(&pairs), seen))
        });
    });
    // The interval after the kubelet and mountinfo were re-read: pods re-joined, NAS rebuilt.
    let mut version = 1;
    c.bench_function("name 10k series, new pod and mount tables", |b| {
        b.iter(|| {
            version += 1;
            let (i, m) =
                (Versioned::new((*index.value).clone(), version), Versioned::new((*mounts.value).clone(), version));
            black_box(name_pairs(&mut namer, &mut cache, &table, Some(&i), &m, black_box(&pairs), seen))
        });
    });
    // The first interval: nothing cached.
    c.bench_function("name 10k series, cold", |b| {
        b.iter(|| {
            let mut namer = CgroupNamer::default();
            let mut cache = NameCache::default();
            black_box(name_pairs(&mut namer, &mut cache, &table, Some(&index), &mounts, black_box(&pairs), seen))
        });
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
