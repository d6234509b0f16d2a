//! Resolves what the probe reports (cgroup ids, devices) to attributes: workload (pod,
//! container, owner, task, or host cgroup) and NAS (server, export, mount, version, volume).
//!
//! Lookups read published tables. Only when a snapshot brings an id never seen before does
//! resolution ask for a refresh and wait, at most a given budget, so that a pod that started a
//! second ago is named on its first export; ids already waited for are not waited for again.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    cgroup::{CgroupCache, CgroupHierarchy, CgroupName, CgroupNamer, CgroupTable},
    container::{parse_cgroup_path, CgroupWorkload},
    kubelet::{parse_pod_list, KubeletClient, KubeletConfig, PodIndex, PodMeta},
    mountinfo::{parse_mountinfo, NasMount},
    refresh::{Refreshed, Versioned},
    EnrichError,
};

/// What an [`Enricher`] needs.
#[derive(Debug, Clone)]
pub struct EnrichConfig {
    /// The cgroup hierarchy the probe's ids come from.
    pub hierarchy: CgroupHierarchy,
    /// The host's /proc (`/host/proc` in a container): mountinfo is read from `<it>/1/mountinfo`.
    pub proc_root: PathBuf,
    /// The kubelet, or `None` outside Kubernetes.
    pub kubelet: Option<KubeletConfig>,
    /// Period of the kubelet poll (an unknown container id triggers one sooner).
    pub kubelet_every: Duration,
    /// Pod labels naming the task, first present wins.
    pub task_labels: Vec<String>,
}

/// The workload behind a cgroup.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Workload {
    /// The cgroup's id: the identity of a cgroup not named yet.
    pub cgroup_id: u64,
    /// The cgroup path, when known.
    pub cgroup_path: Option<Arc<str>>,
    /// The cgroup was removed: this is its series' last export.
    pub gone: bool,
    /// Container id from the cgroup path.
    pub container_id: Option<String>,
    /// Pod UID from the cgroup path.
    pub pod_uid: Option<String>,
    /// The pod, when the kubelet knows it.
    pub pod: Option<Arc<PodMeta>>,
    /// The container name, when the kubelet knows it.
    pub container_name: Option<String>,
}

impl Workload {
    /// OpenTelemetry attributes, in a stable order. Pods carry `k8s.*` and `nasflow.task`;
    /// a container without a (known) pod carries `container.id`; anything else carries its
    /// cgroup path as `process.linux.cgroup`, or, while the path is not known yet, its id as
    /// `nasflow.cgroup.id`: every series has an identity, never an empty attribute set.
    #[must_use]
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut a = Vec::new();
        if let Some(pod) = &self.pod {
            a.push(("k8s.namespace.name", pod.namespace.clone()));
            a.push(("k8s.pod.name", pod.name.clone()));
            a.push(("k8s.pod.uid", pod.uid.clone()));
            if let Some(c) = &self.container_name {
                a.push(("k8s.container.name", c.clone()));
            }
            a.extend(pod.owners.iter().cloned());
            a.push(("nasflow.task", pod.task.clone()));
        } else if let Some(uid) = &self.pod_uid {
            a.push(("k8s.pod.uid", uid.clone()));
        }
        if let Some(id) = &self.container_id {
            a.push(("container.id", id.clone()));
        }
        if self.pod.is_none() && self.pod_uid.is_none() && self.container_id.is_none() {
            match &self.cgroup_path {
                Some(p) => a.push(("process.linux.cgroup", p.to_string())),
                None => a.push(("nasflow.cgroup.id", self.cgroup_id.to_string())),
            }
        }
        a
    }
}

/// The NAS behind a device, as seen from one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NasView {
    /// `server.address`.
    pub server: String,
    /// `nfs.export.path`.
    pub export: String,
    /// `nfs.version`.
    pub version: String,
    /// `nfs.mount.point`.
    pub mount_point: Option<String>,
    /// `k8s.volume.name`.
    pub volume: Option<String>,
}

impl NasView {
    /// The view through mount point `index` of `m`, or through the default one.
    fn of(m: &NasMount, index: Option<usize>) -> Self {
        let mp = index.and_then(|i| m.mount_points.get(i)).or_else(|| m.mount_point_for(None));
        Self {
            server: m.server.clone(),
            export: m.export.clone(),
            version: m.version.clone(),
            mount_point: mp.map(|p| p.path.clone()),
            volume: mp.and_then(|p| p.volume.clone()),
        }
    }

    /// OpenTelemetry attributes, in a stable order.
    #[must_use]
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut a = vec![
            ("server.address", self.server.clone()),
            ("nfs.export.path", self.export.clone()),
            ("nfs.version", self.version.clone()),
        ];
        if let Some(m) = &self.mount_point {
            a.push(("nfs.mount.point", m.clone()));
        }
        if let Some(v) = &self.volume {
            a.push(("k8s.volume.name", v.clone()));
        }
        a
    }
}

/// The NFS mounts of the host, by device.
pub type MountTable = BTreeMap<u32, NasMount>;

/// What one resolution found.
#[derive(Debug, Default)]
pub struct Names {
    /// Workload per cgroup id.
    pub workloads: HashMap<u64, Arc<Workload>>,
    /// NAS per (device, cgroup id).
    pub nas: HashMap<(u32, u64), Arc<NasView>>,
    /// cgroup ids that are gone (export once more, then forget).
    pub gone: HashSet<u64>,
    /// Every NFS device mounted on the host, as seen from outside any pod: per-NAS signals
    /// (RPCs in flight) need a name even before any operation on it completed.
    pub devices: HashMap<u32, Arc<NasView>>,
    /// Resolution misses this time: cgroups without a path, containers the kubelet does
    /// not know, devices without a mount.
    pub misses: u64,
    /// The watched directories as configured (`nfs.directory`), by id - 1.
    pub directories: Arc<[String]>,
}

impl Names {
    /// The watched directory `id` (1-based) as configured; `None` for 0 or an unknown id.
    #[must_use]
    pub fn directory(&self, id: u16) -> Option<&str> {
        self.directories.get(usize::from(id).checked_sub(1)?).map(String::as_str)
    }

    /// The NAS of a row: device `dev` as seen from the cgroup's pod.
    #[must_use]
    pub fn nas_of(&self, dev: u32, cgroup: u64) -> Option<&Arc<NasView>> {
        self.nas.get(&(dev, cgroup))
    }
}

/// Counters of the enricher's own work, for self-telemetry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnrichStats {
    /// Misses summed over resolutions.
    pub misses: u64,
    /// Pod tables published by the kubelet poller (successful or not).
    pub kubelet_refreshes: u64,
    /// Whether the last kubelet poll failed.
    pub kubelet_down: bool,
    /// cgroup walks that could not read every directory (they declared nothing gone).
    pub incomplete_walks: u64,
    /// Pods of the last kubelet table that could not be read (skipped).
    pub malformed_pods: u64,
}

/// Names cgroups and devices; owns the background refreshers.
pub struct Enricher {
    cgroups: CgroupCache,
    namer: CgroupNamer,
    pods: Option<Refreshed<PodIndex>>,
    mounts: Refreshed<MountTable>,
    waited_containers: HashSet<String>,
    waited_devs: HashSet<u32>,
    cache: NameCache,
    /// The walk the last resolution used, and whether it was complete.
    last_walk: Instant,
    walk_was_complete: bool,
    /// When the mountinfo watcher last saw the mount table change.
    mounts_changed: Arc<std::sync::Mutex<Option<Instant>>>,
    stats: EnrichStats,
    last_pod_load: Option<Instant>,
}

/// Full cgroup walk period.
const CGROUP_WALK: Duration = Duration::from_secs(10);
/// Mount table re-read period (unknown devices trigger one sooner).
const MOUNTS_EVERY: Duration = Duration::from_secs(10);
/// Least time between two on-demand mount table reads: mounts come in bursts (a pod's
/// volumes), each raising the watcher.
const MOUNTS_MIN_GAP: Duration = Duration::from_secs(1);
/// Least time between two on-demand cgroup walks or kubelet polls. Those are asked for at
/// most once per resolution (once per interval), so the gap only has to keep a load that
/// just ran from running again at once; a longer one would eat the budget a new pod has to
/// be named on its first export.
const MIN_GAP: Duration = Duration::from_millis(250);

impl Enricher {
    /// Starts the background refreshers (cgroup walk, kubelet poll, mountinfo).
    pub fn spawn(cfg: EnrichConfig) -> Result<Self, EnrichError> {
        let cgroups = CgroupCache::spawn(cfg.hierarchy, CGROUP_WALK, MIN_GAP);
        let pods = match cfg.kubelet {
            Some(k) => {
                let client = KubeletClient::new(k)?;
                let labels = Arc::new(cfg.task_labels);
                Some(Refreshed::spawn("kubelet", PodIndex::default(), cfg.kubelet_every, MIN_GAP, move || {
                    let client = client.clone();
                    let labels = Arc::clone(&labels);
                    async move {
                        let body = client.fetch_pods().await?;
                        // Parsing thousands of pods is CPU work: off the runtime's threads.
                        let index = tokio::task::spawn_blocking(move || parse_pod_list(&body, &labels))
                            .await
                            .map_err(|e| EnrichError::BadPodList { detail: e.to_string() })??;
                        if index.malformed > 0 {
                            tracing::debug!(
                                skipped = index.malformed,
                                "kubelet pods that could not be read were skipped"
                            );
                        }
                        Ok::<_, EnrichError>(index)
                    }
                }))
            }
            None => None,
        };
        let path = crate::mountinfo::host_mountinfo(&cfg.proc_root);
        let watched = path.clone();
        let mounts = Refreshed::spawn("mountinfo", MountTable::new(), MOUNTS_EVERY, MOUNTS_MIN_GAP, move || {
            let path = path.clone();
            async move {
                let text = tokio::fs::read_to_string(&path)
                    .await
                    .map_err(|source| EnrichError::Io { path: path.clone(), source })?;
                let (mounts, bad) = parse_mountinfo(&text);
                if bad > 0 {
                    tracing::debug!(lines = bad, path = %path.display(), "unparsable mountinfo lines skipped");
                }
                Ok::<_, EnrichError>(mounts)
            }
        });
        let mounts_changed = Arc::new(std::sync::Mutex::new(None));
        watch_mounts(watched, mounts.clone(), Arc::clone(&mounts_changed));
        Ok(Self {
            cgroups,
            namer: CgroupNamer::default(),
            pods,
            mounts,
            waited_containers: HashSet::new(),
            waited_devs: HashSet::new(),
            cache: NameCache::default(),
            mounts_changed,
            stats: EnrichStats::default(),
            last_pod_load: None,
            last_walk: Instant::now(),
            walk_was_complete: true,
        })
    }

    /// Counters of the enricher's work so far.
    #[must_use]
    pub fn stats(&self) -> EnrichStats {
        self.stats
    }

    /// Resolves every (cgroup, device) pair of a snapshot. `seen_at` is when the snapshot was
    /// read; `budget` bounds each wait for a refresh (three sources at most).
    pub async fn resolve(&mut self, pairs: &[(u64, u32)], seen_at: Instant, budget: Duration) -> Names {
        // Devices first: a device lookup is cheap and needs no naming pass.
        let mut mounts = self.mounts.current();
        // A mount seen changing (a pod's volume just mounted) must be in the table before the
        // rows are named: the device is known, so nothing else would wait for it.
        let changed = *self.mounts_changed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(changed) = changed {
            if mounts.loaded_at.is_none_or(|t| t < changed) {
                mounts = self.mounts.fresh_since(changed, budget).await;
            }
        }
        let unknown_devs: Vec<u32> = pairs
            .iter()
            .map(|p| p.1)
            .filter(|d| !mounts.value.contains_key(d) && !self.waited_devs.contains(d))
            .collect();
        if !unknown_devs.is_empty() {
            mounts = self.mounts.fresh_since(seen_at, budget).await;
            self.waited_devs.extend(unknown_devs);
        }
        self.waited_devs.retain(|d| !mounts.value.contains_key(d));

        // Name with the tables at hand (cached, the steady state); only what that pass could
        // not name asks for a refresh, each source at most once and bounded, and is named again.
        let mut table = self.cgroups.current();
        let mut index = self.pods.as_ref().map(Refreshed::current);
        let mut names = self.name(&table, index.as_deref(), &mounts, pairs, seen_at);
        if names.workloads.values().any(|w| w.cgroup_path.is_none() && !w.gone) {
            // A new cgroup is most often a new container: the kubelet poll it will need runs
            // while the cgroups are walked, not after.
            if let Some(pods) = &self.pods {
                pods.request();
            }
            table = self.cgroups.fresh_since(seen_at, budget).await;
            names = self.name(&table, index.as_deref(), &mounts, pairs, seen_at);
        }
        if let Some(pods) = &self.pods {
            let unknown: Vec<String> = names
                .workloads
                .values()
                .filter(|w| !w.gone && w.container_name.is_none())
                .filter_map(|w| w.container_id.clone())
                .filter(|c| !self.waited_containers.contains(c))
                .collect();
            if !unknown.is_empty() {
                index = Some(pods.fresh_since(seen_at, budget).await);
                self.waited_containers.extend(unknown);
                names = self.name(&table, index.as_deref(), &mounts, pairs, seen_at);
            }
        }
        if table.scanned_at != self.last_walk {
            self.last_walk = table.scanned_at;
            if !table.complete() {
                self.stats.incomplete_walks += 1;
                if self.stats.incomplete_walks == 1 || self.walk_was_complete {
                    tracing::warn!(
                        skipped = table.skipped,
                        "the cgroup walk could not read every directory: no cgroup is declared gone until one does"
                    );
                }
            } else if !self.walk_was_complete {
                tracing::info!("the cgroup walk reads every directory again");
            }
            self.walk_was_complete = table.complete();
        }
        if let Some(index) = &index {
            if index.loaded_at != self.last_pod_load {
                self.last_pod_load = index.loaded_at;
                self.stats.kubelet_refreshes += 1;
            }
            self.stats.kubelet_down = index.stale;
            let malformed = index.value.malformed as u64;
            if malformed != self.stats.malformed_pods && malformed > 0 {
                tracing::warn!(
                    pods = malformed,
                    "kubelet pods that could not be read are skipped (they are named by container id)"
                );
            }
            self.stats.malformed_pods = malformed;
            self.waited_containers.retain(|c| index.value.container(c).is_none());
        }
        // Bounded by what is exported now: an id that went away is not waited for any more.
        let live_containers: HashSet<&str> =
            names.workloads.values().filter_map(|w| w.container_id.as_deref()).collect();
        self.waited_containers.retain(|c| live_containers.contains(c.as_str()));
        let live_devs: HashSet<u32> = pairs.iter().map(|p| p.1).collect();
        self.waited_devs.retain(|d| live_devs.contains(d));
        self.stats.misses += names.misses;
        names
    }

    fn name(
        &mut self,
        cgroups: &CgroupTable,
        pods: Option<&Versioned<PodIndex>>,
        mounts: &Versioned<MountTable>,
        pairs: &[(u64, u32)],
        seen_at: Instant,
    ) -> Names {
        name_pairs(&mut self.namer, &mut self.cache, cgroups, pods, mounts, pairs, seen_at)
    }

    /// Forgets cgroups whose series were dropped.
    pub fn forget(&mut self, ids: impl IntoIterator<Item = u64>) {
        self.namer.forget(ids);
    }
}

/// Asks for a mount table re-read whenever the mount namespace of `path` changes: mountinfo
/// is pollable, and a mount or unmount raises `POLLPRI` on it (proc(5)). Runs on its own
/// thread; if the file cannot be watched, the periodic re-read remains.
fn watch_mounts(path: PathBuf, mounts: Refreshed<MountTable>, changed: Arc<std::sync::Mutex<Option<Instant>>>) {
    let spawned = std::thread::Builder::new().name("mountinfo-watch".into()).spawn(move || {
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot watch mountinfo; re-reading it periodically");
                return;
            }
        };
        loop {
            let mut pfd = libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&file), events: libc::POLLPRI, revents: 0 };
            // SAFETY: one valid pollfd for an open file, no timeout.
            let rc = unsafe { libc::poll(&raw mut pfd, 1, -1) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::warn!(error = %e, "mountinfo watch failed; re-reading it periodically");
                return;
            }
            if pfd.revents & (libc::POLLPRI | libc::POLLERR) != 0 {
                *changed.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
                mounts.request();
                // Mounts come in bursts (a pod's volumes): let them settle.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the mountinfo watcher");
    }
}

/// What naming keeps between intervals so that the steady state is lookups: each cgroup's
/// parsed path and workload (rebuilt when its path or the pod table changes), and one shared
/// [`NasView`] per (device, mount point) (rebuilt when the mount table changes).
#[derive(Debug, Default)]
pub struct NameCache {
    workloads: HashMap<u64, CachedWorkload>,
    /// The mount table version the NAS views were built from.
    mounts_version: Option<u64>,
    /// Device to pod UID to the index of the pod's own mount point of the device.
    pod_mounts: HashMap<u32, HashMap<String, usize>>,
    nas: HashMap<(u32, Option<usize>), Arc<NasView>>,
}

#[derive(Debug)]
struct CachedWorkload {
    path: Arc<str>,
    parsed: CgroupWorkload,
    /// The pod table version the workload was joined with (`None`: no kubelet).
    pods_version: Option<u64>,
    workload: Arc<Workload>,
    misses: u64,
}

/// Joins a parsed cgroup with the pod table; returns the workload and whether it is a miss.
fn join_pods(id: u64, path: Arc<str>, parsed: &CgroupWorkload, pods: Option<&PodIndex>) -> (Workload, u64) {
    let mut w = Workload {
        cgroup_id: id,
        cgroup_path: Some(path),
        container_id: parsed.container_id.clone(),
        pod_uid: parsed.pod_uid.clone(),
        ..Workload::default()
    };
    let Some(index) = pods else { return (w, 0) };
    if let Some(c) = w.container_id.as_deref().and_then(|c| index.container(c)) {
        w.pod = Some(Arc::clone(&c.pod));
        w.container_name = Some(c.name.clone());
    } else if let Some(p) = w.pod_uid.as_deref().and_then(|u| index.pod(u)) {
        w.pod = Some(Arc::clone(p));
    }
    // A container the kubelet does not know (even if its pod is known) is a miss.
    let container_unknown = w.container_id.is_some() && w.container_name.is_none();
    let pod_unknown = w.pod_uid.is_some() && w.pod.is_none();
    (w, u64::from(container_unknown || pod_unknown))
}

/// Names every (cgroup, device) pair from the given tables: the part of resolution that runs
/// every interval, with no I/O and no waiting.
pub fn name_pairs(
    namer: &mut CgroupNamer,
    cache: &mut NameCache,
    cgroups: &CgroupTable,
    pods: Option<&Versioned<PodIndex>>,
    mounts: &Versioned<MountTable>,
    pairs: &[(u64, u32)],
    seen_at: Instant,
) -> Names {
    let mut found = Names {
        workloads: HashMap::with_capacity(pairs.len()),
        nas: HashMap::with_capacity(pairs.len()),
        ..Names::default()
    };
    let pods_version = pods.map(|p| p.version);
    let pods = pods.map(|p| p.value.as_ref());
    for &(id, _) in pairs {
        if found.workloads.contains_key(&id) {
            continue;
        }
        let workload = match namer.name(cgroups, id, seen_at) {
            CgroupName::Path(path) => match cache.workloads.get_mut(&id) {
                Some(c) if (Arc::ptr_eq(&c.path, &path) || c.path == path) && c.pods_version == pods_version => {
                    found.misses += c.misses;
                    Arc::clone(&c.workload)
                }
                Some(c) if c.path == path => {
                    let (w, miss) = join_pods(id, path, &c.parsed, pods);
                    let w = Arc::new(w);
                    c.pods_version = pods_version;
                    c.workload = Arc::clone(&w);
                    c.misses = miss;
                    found.misses += miss;
                    w
                }
                _ => {
                    let parsed = parse_cgroup_path(&path);
                    let (w, miss) = join_pods(id, Arc::clone(&path), &parsed, pods);
                    let w = Arc::new(w);
                    let entry = CachedWorkload { path, parsed, pods_version, workload: Arc::clone(&w), misses: miss };
                    cache.workloads.insert(id, entry);
                    found.misses += miss;
                    w
                }
            },
            CgroupName::Pending => {
                found.misses += 1;
                Arc::new(Workload { cgroup_id: id, ..Workload::default() })
            }
            CgroupName::Gone { last_path } => {
                cache.workloads.remove(&id);
                found.gone.insert(id);
                let mut w = match last_path {
                    Some(p) => {
                        let parsed = parse_cgroup_path(&p);
                        join_pods(id, p, &parsed, pods).0
                    }
                    None => Workload { cgroup_id: id, ..Workload::default() },
                };
                w.gone = true;
                Arc::new(w)
            }
        };
        found.workloads.insert(id, workload);
    }

    let version = mounts.version;
    let mounts = mounts.value.as_ref();
    if cache.mounts_version != Some(version) {
        cache.mounts_version = Some(version);
        cache.nas.clear();
        cache.pod_mounts.clear();
        for (dev, m) in mounts {
            for (i, mp) in m.mount_points.iter().enumerate() {
                if let Some(uid) = &mp.pod_uid {
                    cache.pod_mounts.entry(*dev).or_default().entry(uid.clone()).or_insert(i);
                }
            }
        }
    }
    for &(id, dev) in pairs {
        let Some(m) = mounts.get(&dev) else {
            found.misses += 1;
            continue;
        };
        let uid = found.workloads.get(&id).and_then(|w| w.pod_uid.as_deref());
        let index = uid.and_then(|u| cache.pod_mounts.get(&dev).and_then(|by_uid| by_uid.get(u))).copied();
        let view = cache.nas.entry((dev, index)).or_insert_with(|| Arc::new(NasView::of(m, index)));
        found.nas.insert((dev, id), Arc::clone(view));
    }
    for (dev, m) in mounts {
        let view = cache.nas.entry((*dev, None)).or_insert_with(|| Arc::new(NasView::of(m, None)));
        found.devices.insert(*dev, Arc::clone(view));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mountinfo::parse_mountinfo;

    #[test]
    fn nas_views_follow_the_mount_table_version_not_its_address() {
        let table = CgroupTable::from_paths(Instant::now(), HashMap::from([(7, "/system.slice/a".to_owned())]));
        let (mut namer, mut cache) = (CgroupNamer::default(), NameCache::default());
        let mounts = |server: &str, version| {
            let line = format!("1 0 0:61 / /srv/a rw - nfs {server}:/a rw,vers=3\n");
            Versioned::new(parse_mountinfo(&line).0, version)
        };
        let now = Instant::now();
        let first = name_pairs(&mut namer, &mut cache, &table, None, &mounts("10.0.0.1", 1), &[(7, 61)], now);
        // The same version again, even in a new allocation: the cached view is reused.
        let same = name_pairs(&mut namer, &mut cache, &table, None, &mounts("10.0.0.1", 1), &[(7, 61)], now);
        assert!(Arc::ptr_eq(&first.nas[&(61, 7)], &same.nas[&(61, 7)]));
        // A new version names the device anew, whatever address the table has.
        let moved = name_pairs(&mut namer, &mut cache, &table, None, &mounts("10.0.0.9", 2), &[(7, 61)], now);
        assert_eq!(moved.nas[&(61, 7)].server, "10.0.0.9");
        assert_eq!(moved.devices[&61].server, "10.0.0.9");
    }

    #[test]
    fn attributes_inside_and_outside_pods() {
        let pod = Arc::new(PodMeta {
            namespace: "ml".into(),
            name: "trainer-1".into(),
            uid: "u".into(),
            owners: vec![("k8s.deployment.name", "trainer".into())],
            task: "trainer".into(),
        });
        let w = Workload {
            cgroup_id: 9,
            cgroup_path: Some(Arc::from("/kubepods/x")),
            container_id: Some("c".into()),
            pod_uid: Some("u".into()),
            pod: Some(pod),
            container_name: Some("app".into()),
            gone: false,
        };
        let keys: Vec<_> = w.attributes().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "k8s.namespace.name",
                "k8s.pod.name",
                "k8s.pod.uid",
                "k8s.container.name",
                "k8s.deployment.name",
                "nasflow.task",
                "container.id"
            ]
        );
        let bare = Workload {
            cgroup_path: Some(Arc::from("/docker/abc")),
            container_id: Some("abc".into()),
            ..Workload::default()
        };
        assert_eq!(bare.attributes(), vec![("container.id", "abc".to_owned())]);
        let host = Workload { cgroup_path: Some(Arc::from("/system.slice/backup.service")), ..Workload::default() };
        assert_eq!(host.attributes(), vec![("process.linux.cgroup", "/system.slice/backup.service".to_owned())]);
        assert!(host.attributes().iter().all(|(k, _)| *k != "k8s.pod.name"));
        let unnamed = Workload { cgroup_id: 4711, ..Workload::default() };
        assert_eq!(
            unnamed.attributes(),
            vec![("nasflow.cgroup.id", "4711".to_owned())],
            "never an empty attribute set"
        );
    }
}
