//! `nasflow run`: wires the pipe. One ticker reads the kernel maps, names the rows and hands
//! them to the output; attaching and cgroup walks run beside it and never hold it up.

use std::{
    collections::HashSet,
    io::{self, Write},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use nasflow_enrich::cgroup::{CgroupCache, CgroupHierarchy, CgroupName, CgroupNamer};
use nasflow_probe::{AttachEvent, CgroupIdentity, Probe, ProbeOptions, Snapshot};

use crate::{config::RunConfig, jsonl};

/// How often the probe looks for the nfs module to (re)attach.
const ATTACH_POLL: Duration = Duration::from_secs(1);
/// Full cgroup walk period; unknown ids trigger one sooner.
const CGROUP_WALK: Duration = Duration::from_secs(10);
/// Least time between two on-demand cgroup walks.
const CGROUP_WALK_MIN_GAP: Duration = Duration::from_secs(1);

type SharedProbe = Arc<Mutex<Probe>>;

fn with_probe<T>(probe: &SharedProbe, f: impl FnOnce(&mut Probe) -> T) -> T {
    match probe.lock() {
        Ok(mut p) => f(&mut p),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

/// Runs until SIGINT or SIGTERM, then writes one last interval and returns.
pub async fn run(cfg: RunConfig) -> Result<()> {
    let hierarchy = CgroupHierarchy::detect(&cfg.cgroup_root)?;
    tracing::info!(
        version = if hierarchy.v1 { "v1 (memory controller)" } else { "v2" },
        mount = %hierarchy.mount.display(),
        "cgroup hierarchy"
    );
    let mut opts = ProbeOptions::new(CgroupIdentity {
        v1: hierarchy.v1,
        root_id: hierarchy.root_id,
    });
    opts.max_series = cfg.max_kernel_series;
    let probe: SharedProbe = Arc::new(Mutex::new(Probe::new(opts).context("starting the probe")?));

    let cache = CgroupCache::new(hierarchy);
    let _walker = cache.spawn_refresher(CGROUP_WALK, CGROUP_WALK_MIN_GAP);
    let _attacher = tokio::spawn(attach_loop(Arc::clone(&probe)));

    let mut pipe = Pipe {
        probe,
        cache,
        namer: CgroupNamer::default(),
        seq: 0,
    };
    let mut ticker = tokio::time::interval(cfg.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = ticker.tick() => pipe.tick().await?,
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    tracing::info!("stopping: writing the last interval");
    pipe.tick().await
}

async fn attach_loop(probe: SharedProbe) {
    let mut last_error = String::new();
    loop {
        let p = Arc::clone(&probe);
        match tokio::task::spawn_blocking(move || with_probe(&p, Probe::poll)).await {
            Ok(Ok(AttachEvent::Attached)) => last_error.clear(),
            Ok(Ok(AttachEvent::Detached | AttachEvent::Unchanged)) => {}
            Ok(Err(e)) => {
                let msg = format!("{e:#}");
                if msg != last_error {
                    tracing::error!(error = %msg, "cannot attach to the NFS client; retrying");
                    last_error = msg;
                }
            }
            Err(e) => tracing::error!(error = %e, "attach task failed"),
        }
        tokio::time::sleep(ATTACH_POLL).await;
    }
}

struct Pipe {
    probe: SharedProbe,
    cache: CgroupCache,
    namer: CgroupNamer,
    seq: u64,
}

impl Pipe {
    async fn tick(&mut self) -> Result<()> {
        self.seq += 1;
        let p = Arc::clone(&self.probe);
        let snap: Snapshot = tokio::task::spawn_blocking(move || with_probe(&p, |p| p.snapshot()))
            .await
            .context("snapshot task")?
            .context("reading the probe's maps")?;
        let table = self.cache.current();
        let now = Instant::now();
        let mut names = std::collections::HashMap::new();
        let mut gone = HashSet::new();
        let mut pending = false;
        for row in &snap.rows {
            names.entry(row.cgroup).or_insert_with(|| {
                let n = self.namer.name(&table, row.cgroup, now);
                match n {
                    CgroupName::Pending => pending = true,
                    CgroupName::Gone { .. } => {
                        gone.insert(row.cgroup);
                    }
                    CgroupName::Path(_) => {}
                }
                n
            });
        }
        if pending {
            self.cache.request_refresh();
        }
        let unknown = CgroupName::Pending;
        let lines = jsonl::lines(&snap, self.seq, |r| {
            names.get(&r.cgroup).unwrap_or(&unknown)
        });
        let mut stdout = io::stdout().lock();
        if let Err(e) = jsonl::write_interval(&mut stdout, &snap, self.seq, &lines) {
            if e.kind() == io::ErrorKind::BrokenPipe {
                anyhow::bail!("standard output closed");
            }
            tracing::warn!(error = %e, "writing jsonl");
        }
        let _ = stdout.flush();
        drop(stdout);
        if !gone.is_empty() {
            let p = Arc::clone(&self.probe);
            let ids = gone.clone();
            match tokio::task::spawn_blocking(move || with_probe(&p, |p| p.forget_cgroups(&ids)))
                .await
            {
                Ok(Ok(n)) => tracing::debug!(
                    cgroups = gone.len(),
                    keys = n,
                    "dropped series of removed cgroups"
                ),
                Ok(Err(e)) => tracing::warn!(error = %e, "dropping series of removed cgroups"),
                Err(e) => tracing::warn!(error = %e, "forget task failed"),
            }
            self.namer.forget(gone);
        }
        Ok(())
    }
}
