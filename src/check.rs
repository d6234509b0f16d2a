//! `nasflow check`: a preflight that says, requirement by requirement, whether the agent can
//! see NFS traffic on this node and name its pods, and what to do when it cannot.

use std::{fmt::Write as _, net::ToSocketAddrs, path::Path, time::Duration};

use nasflow_enrich::{
    cgroup::CgroupHierarchy,
    kubelet::{parse_pod_list, KubeletClient},
    mountinfo::{host_mountinfo, parse_mountinfo},
};
use nasflow_probe::{
    preflight::{self, DataPath, RpcTracing},
    programs,
    server::{ServerMode, ServerProbe},
    tracefs::{Tracefs, TRACEFS_PATHS},
    CgroupIdentity, Probe, ProbeOptions,
};
use serde::Serialize;

use crate::config::RunConfig;

/// The outcome of one requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    /// Met.
    Ok,
    /// Degraded, or not met yet (e.g. no NFS mount yet); the agent still runs.
    Warn,
    /// Blocks the agent from working.
    Fail,
}

/// One requirement's result.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// What was checked.
    pub name: &'static str,
    /// OK, WARN or FAIL.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do about a WARN or FAIL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn item(name: &'static str, status: Status, detail: impl Into<String>, fix: Option<&str>) -> Item {
    Item { name, status, detail: detail.into(), fix: fix.map(str::to_owned) }
}

pub use nasflow_probe::preflight::parse_kernel_version as kernel_version;

/// The kernel release check, from `/proc/sys/kernel/osrelease`.
#[must_use]
pub fn check_kernel(release: &str) -> Item {
    match kernel_version(release) {
        Some(v) if v >= (5, 8) => item("kernel", Status::Ok, release.trim(), None),
        Some(v) if v >= (5, 4) => item(
            "kernel",
            Status::Warn,
            format!("{} predates CAP_BPF and CAP_PERFMON (5.8)", release.trim()),
            Some("grant CAP_SYS_ADMIN (chart value `legacyKernelCapabilities: true`)"),
        ),
        Some(_) => item(
            "kernel",
            Status::Fail,
            format!("{} is older than 5.4: its NFS tracepoints lack the fields nasflow reads", release.trim()),
            Some("run nasflow on nodes with kernel 5.4 or later (5.8+ recommended)"),
        ),
        None => item("kernel", Status::Warn, format!("unrecognised release {release:?}"), None),
    }
}

/// Capability bits nasflow cares about (linux/capability.h).
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_RESOURCE: u32 = 24;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The effective capability mask from `/proc/self/status` text.
#[must_use]
pub fn effective_caps(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?.trim();
    u64::from_str_radix(hex, 16).ok()
}

/// The capabilities check, from the effective mask and the kernel version.
#[must_use]
pub fn check_caps(caps: u64, kernel: Option<(u32, u32)>) -> Item {
    let has = |bit: u32| caps & (1 << bit) != 0;
    let mut held: Vec<&str> = Vec::new();
    for (bit, name) in [
        (CAP_BPF, "CAP_BPF"),
        (CAP_PERFMON, "CAP_PERFMON"),
        (CAP_SYS_ADMIN, "CAP_SYS_ADMIN"),
        (CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE"),
    ] {
        if has(bit) {
            held.push(name);
        }
    }
    let modern = kernel.is_none_or(|v| v >= (5, 8));
    let enough = has(CAP_SYS_ADMIN) || (modern && has(CAP_BPF) && has(CAP_PERFMON));
    let detail =
        if held.is_empty() { "none of CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN".to_owned() } else { held.join(", ") };
    let memlock_charged = kernel.is_some_and(|v| v < (5, 11));
    if enough && memlock_charged && !has(CAP_SYS_RESOURCE) && !has(CAP_SYS_ADMIN) {
        item(
            "capabilities",
            Status::Warn,
            detail,
            Some("kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK: grant CAP_SYS_RESOURCE (chart value `legacyKernelCapabilities: true`) or loading may fail"),
        )
    } else if enough {
        item("capabilities", Status::Ok, detail, None)
    } else {
        item(
            "capabilities",
            Status::Fail,
            detail,
            Some(if modern {
                "add CAP_BPF and CAP_PERFMON to the container's securityContext (the chart does)"
            } else {
                "before 5.8 loading BPF needs CAP_SYS_ADMIN"
            }),
        )
    }
}

fn check_btf(path: &Path) -> Item {
    match preflight::btf(path) {
        Ok(()) => item("btf", Status::Ok, path.display().to_string(), None),
        Err(_) => item(
            "btf",
            Status::Fail,
            format!("{} missing", path.display()),
            Some("use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distributions since 5.8), and mount /sys/kernel/btf into the container"),
        ),
    }
}

fn check_tracepoints(can_mount: bool) -> Vec<Item> {
    let Some(tracefs) = preflight::mounted_tracefs() else {
        if can_mount {
            return vec![item(
                "tracefs",
                Status::Warn,
                format!("not mounted at {}", TRACEFS_PATHS.join(" or ")),
                Some(
                    "nasflow mounts it at start (it holds CAP_SYS_ADMIN); nfs and sunrpc tracepoints are checked then",
                ),
            )];
        }
        return vec![item(
            "tracefs",
            Status::Fail,
            format!("not mounted at {}", TRACEFS_PATHS.join(" or ")),
            Some("mount the host's /sys/kernel/tracing into the container (the chart does), or grant CAP_SYS_ADMIN so nasflow mounts it"),
        )];
    };
    let mut out = vec![item("tracefs", Status::Ok, tracefs.root().display().to_string(), None)];
    out.push(match preflight::data_path(&tracefs) {
        DataPath::Ready(_) => {
            let events = nasflow_probe::tracefs::probe_events();
            item("nfs tracepoints", Status::Ok, format!("{} readable", events.join(", ")), None)
        }
        DataPath::NotLoaded => item(
            "nfs tracepoints",
            Status::Warn,
            "the nfs module is not loaded yet",
            Some("nothing to do: nasflow attaches when the first NFS mount loads it"),
        ),
        DataPath::NoEvents => item(
            "nfs tracepoints",
            Status::Fail,
            "the nfs module is loaded but has no nfs:* tracepoints",
            Some("use a kernel built with CONFIG_TRACEPOINTS and NFS tracing"),
        ),
        DataPath::Unsupported(e) => item(
            "nfs tracepoints",
            Status::Fail,
            e.to_string(),
            Some("this kernel's NFS tracepoints are not supported"),
        ),
    });
    let rpc_events = nasflow_probe::tracefs::rpc_events();
    match preflight::rpc_tracing(&tracefs) {
        RpcTracing::Full(_) => out.push(item("sunrpc tracepoints", Status::Ok, rpc_events.join(", "), None)),
        RpcTracing::NoRetransmits(_) => out.push(item(
            "sunrpc tracepoints",
            Status::Warn,
            "no sunrpc:xprt_retransmit (before 5.12)",
            Some("retransmissions are not counted; everything else works"),
        )),
        RpcTracing::Unsupported(e) => out.push(item(
            "sunrpc tracepoints",
            Status::Warn,
            e.to_string(),
            Some("only READ, WRITE and COMMIT are counted (no metadata operations, rtt or retransmissions)"),
        )),
        RpcTracing::Absent if preflight::nfs_module_loaded() => out.push(item(
            "sunrpc tracepoints",
            Status::Warn,
            "no sunrpc:* tracepoints",
            Some("only READ, WRITE and COMMIT are counted"),
        )),
        RpcTracing::Absent => {}
    }
    out
}

/// Loads every program (none is attached) and reports what the verifier refused, with its
/// reason: the data path is required, the others degrade.
fn check_programs(cgroup_root: &Path, btf: &Path) -> Item {
    let hierarchy = match CgroupHierarchy::detect(cgroup_root) {
        Ok(h) => h,
        Err(e) => return item("bpf programs", Status::Warn, format!("not loaded: {e}"), None),
    };
    let mut opts = ProbeOptions::new(CgroupIdentity { v1: hierarchy.v1, root_id: hierarchy.root_id });
    btf.clone_into(&mut opts.btf_path);
    let verified = Probe::new(opts).and_then(|mut p| p.verify());
    match verified {
        Ok(None) => item(
            "bpf programs",
            Status::Warn,
            "not loaded yet: they are verified when the nfs module loads",
            Some("nothing to do; run nasflow check again once an NFS volume is mounted"),
        ),
        Ok(Some(results)) => {
            let refused: Vec<String> =
                results.iter().filter_map(|(p, r)| r.as_ref().err().map(|why| format!("{p}: {why}"))).collect();
            let required = results.iter().any(|(p, r)| r.is_err() && programs::DATA_PATH.iter().any(|d| d.name == *p));
            if refused.is_empty() {
                item("bpf programs", Status::Ok, format!("{} programs pass the verifier", results.len()), None)
            } else if required {
                item(
                    "bpf programs",
                    Status::Fail,
                    refused.join("; "),
                    Some("this kernel refuses the data-path programs: report it with the kernel version"),
                )
            } else {
                item(
                    "bpf programs",
                    Status::Warn,
                    refused.join("; "),
                    Some("the agent runs without these programs (fewer signals); report it with the kernel version"),
                )
            }
        }
        Err(e) => item(
            "bpf programs",
            Status::Fail,
            e.to_string().lines().last().unwrap_or_default().to_owned(),
            Some("check capabilities (CAP_BPF, CAP_PERFMON) and the kernel's BPF support"),
        ),
    }
}

/// The NFS server probe: nothing to say when switched off; a warning while nfsd is not
/// loaded only when asked for (`--nfs-server on`).
fn check_server(mode: ServerMode) -> Option<Item> {
    const NAME: &str = "nfs server programs";
    if mode == ServerMode::Off {
        return None;
    }
    let tracefs = match Tracefs::find_or_mount() {
        Ok(t) => t,
        Err(e) => return Some(item(NAME, Status::Warn, format!("not loaded: {e}"), None)),
    };
    let mut probe = ServerProbe::new(tracefs, true, 1024);
    Some(match probe.verify() {
        Ok(None) if mode == ServerMode::On => item(
            NAME,
            Status::Warn,
            "nfsd is not loaded: the server programs attach when it is",
            Some("nothing to do on a node that does not serve NFS (or use --nfs-server auto)"),
        ),
        Ok(None) => item(NAME, Status::Ok, "nfsd is not loaded: nothing to trace (attached when it is)", None),
        Ok(Some(results)) => {
            let refused: Vec<String> =
                results.iter().filter_map(|(p, r)| r.as_ref().err().map(|why| format!("{p}: {why}"))).collect();
            if refused.is_empty() {
                item(NAME, Status::Ok, format!("{} programs pass the verifier (nfsd is loaded)", results.len()), None)
            } else {
                item(
                    NAME,
                    Status::Warn,
                    refused.join("; "),
                    Some("the agent runs without the server side; report it with the kernel version"),
                )
            }
        }
        Err(e) => item(
            NAME,
            Status::Warn,
            e.to_string().lines().last().unwrap_or_default().to_owned(),
            Some("the agent runs without the server side; check capabilities and report it with the kernel version"),
        ),
    })
}

fn check_cgroups(root: &Path) -> Item {
    match CgroupHierarchy::detect(root) {
        Ok(h) if h.v1 => item("cgroups", Status::Ok, format!("v1 (memory controller) at {}", h.mount.display()), None),
        Ok(h) => item("cgroups", Status::Ok, format!("v2 at {}", h.mount.display()), None),
        Err(e) => item(
            "cgroups",
            Status::Fail,
            e.to_string(),
            Some("mount the host's /sys/fs/cgroup into the container and point --cgroup-root at it"),
        ),
    }
}

fn check_mounts(proc_root: &Path) -> Item {
    let path = host_mountinfo(proc_root);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let (mounts, skipped) = parse_mountinfo(&text);
            let servers: std::collections::BTreeSet<String> = mounts.values().map(|m| m.server.clone()).collect();
            if mounts.is_empty() {
                item(
                    "nfs mounts",
                    Status::Warn,
                    format!("none in {}", path.display()),
                    Some("nothing to report until a pod mounts an NFS volume"),
                )
            } else {
                let odd = if skipped > 0 { format!(" ({skipped} odd lines skipped)") } else { String::new() };
                let list = servers.into_iter().collect::<Vec<_>>().join(", ");
                item("nfs mounts", Status::Ok, format!("{} NFS devices from {list}{odd}", mounts.len()), None)
            }
        }
        Err(e) => item(
            "nfs mounts",
            Status::Fail,
            format!("{}: {e}", path.display()),
            Some("mount the host's /proc at /host/proc (read-only) and set --proc-root /host/proc, with hostPID"),
        ),
    }
}

async fn check_kubelet(cfg: &RunConfig) -> Item {
    let Some(k) = &cfg.kubelet else {
        return item(
            "kubelet",
            Status::Warn,
            "no --node-name or --kubelet-url",
            Some("pods are not named (cgroup paths and container ids only); the chart sets the node name"),
        );
    };
    let fetched = match KubeletClient::new(k.clone()) {
        Ok(c) => c.fetch_pods().await,
        Err(e) => Err(e),
    };
    match fetched.and_then(|body| parse_pod_list(&body, &[])) {
        Ok(ix) => item("kubelet", Status::Ok, format!("{}/pods: {} pods", k.url, ix.pods()), None),
        Err(e) => item(
            "kubelet",
            Status::Fail,
            e.to_string(),
            Some("check the URL, that the CA matches (or --kubelet-insecure-skip-tls-verify), and RBAC: get on nodes/pods (nodes/proxy before 1.33)"),
        ),
    }
}

async fn check_collector(cfg: &RunConfig) -> Item {
    let Some(o) = &cfg.otlp else {
        return item(
            "collector",
            Status::Warn,
            "no OTLP endpoint",
            Some("set --otlp-endpoint or OTEL_EXPORTER_OTLP_ENDPOINT"),
        );
    };
    let endpoint = o.transport.endpoint.clone();
    let Some(hostport) = host_port(&endpoint) else {
        return item("collector", Status::Fail, format!("cannot parse {endpoint}"), Some("use http(s)://host:port"));
    };
    let connect = async {
        let addrs: Vec<_> = tokio::task::spawn_blocking({
            let hp = hostport.clone();
            move || hp.to_socket_addrs().map(Iterator::collect::<Vec<_>>)
        })
        .await
        .map_err(std::io::Error::other)??;
        let first = addrs.first().ok_or_else(|| std::io::Error::other("no address"))?;
        tokio::net::TcpStream::connect(first).await.map(|_| ())
    };
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(())) => item("collector", Status::Ok, format!("{endpoint} accepts connections"), None),
        Ok(Err(e)) => item(
            "collector",
            Status::Fail,
            format!("{endpoint}: {e}"),
            Some("check the endpoint and network policies; nasflow keeps retrying, nothing is lost meanwhile"),
        ),
        Err(_) => item(
            "collector",
            Status::Fail,
            format!("{endpoint}: no answer in 3 s"),
            Some("check the endpoint and network policies"),
        ),
    }
}

/// `host:port` of a URL, with the scheme's default port.
#[must_use]
pub fn host_port(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split('/').next()?;
    if authority.is_empty() {
        return None;
    }
    let has_port =
        authority.rsplit_once(':').is_some_and(|(h, p)| !h.ends_with(']') || p.chars().all(|c| c.is_ascii_digit()))
            && !authority.ends_with(']');
    if has_port {
        return Some(authority.to_owned());
    }
    let port = if scheme == "https" { 443 } else { 80 };
    Some(format!("{authority}:{port}"))
}

/// Runs every check.
pub async fn run(cfg: &RunConfig, btf: &Path) -> Vec<Item> {
    let release = preflight::kernel_release().unwrap_or_default();
    let kernel = kernel_version(&release);
    let mut items = vec![check_kernel(&release), check_btf(btf)];
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = effective_caps(&status);
    items.extend(check_tracepoints(caps.is_some_and(|c| c & (1 << CAP_SYS_ADMIN) != 0)));
    items.push(check_cgroups(&cfg.cgroup_root));
    items.push(check_programs(&cfg.cgroup_root, btf));
    items.extend(check_server(cfg.nfs_server));
    items.push(match caps {
        Some(caps) => check_caps(caps, kernel),
        None => item("capabilities", Status::Warn, "cannot read CapEff from /proc/self/status", None),
    });
    items.push(check_kubelet(cfg).await);
    items.push(check_collector(cfg).await);
    items.push(check_mounts(&cfg.proc_root));
    items
}

/// The human-readable report.
#[must_use]
pub fn render_text(items: &[Item]) -> String {
    let mut out = String::new();
    for i in items {
        let status = match i.status {
            Status::Ok => "OK  ",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        };
        let _ = writeln!(out, "{status}  {:<18} {}", i.name, i.detail);
        if let Some(fix) = &i.fix {
            let _ = writeln!(out, "      {:<18} fix: {fix}", "");
        }
    }
    out
}

/// Whether anything blocks running.
#[must_use]
pub fn blocked(items: &[Item]) -> bool {
    items.iter().any(|i| i.status == Status::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.1.0-56-amd64\n"), Some((6, 1)));
        assert_eq!(kernel_version("5.15.0"), Some((5, 15)));
        assert_eq!(kernel_version("garbage"), None);
        assert_eq!(check_kernel("6.1.0-56-amd64").status, Status::Ok);
        assert_eq!(check_kernel("5.4.0-150-generic").status, Status::Warn);
        let old = check_kernel("4.19.0-27-amd64");
        assert_eq!(old.status, Status::Fail);
        assert!(old.fix.is_some());
    }

    #[test]
    fn capabilities() {
        let status = "Name:\tnasflow\nCapInh:\t0000000000000000\nCapEff:\t000000c001000000\n";
        let caps = effective_caps(status).expect("CapEff");
        assert_eq!(caps, (1 << CAP_BPF) | (1 << CAP_PERFMON) | (1 << CAP_SYS_RESOURCE));
        let ok = check_caps(caps, Some((6, 1)));
        assert_eq!(ok.status, Status::Ok);
        assert_eq!(ok.detail, "CAP_BPF, CAP_PERFMON, CAP_SYS_RESOURCE");
        assert_eq!(check_caps(caps, Some((5, 4))).status, Status::Fail, "before 5.8 CAP_BPF does not exist");
        assert_eq!(check_caps(1 << CAP_SYS_ADMIN, Some((5, 4))).status, Status::Ok);
        assert_eq!(check_caps(0, Some((6, 1))).status, Status::Fail);
        let bpf_only = (1 << CAP_BPF) | (1 << CAP_PERFMON);
        assert_eq!(check_caps(bpf_only, Some((6, 1))).status, Status::Ok, "5.11+ needs nothing more");
        let warn = check_caps(bpf_only, Some((5, 10)));
        assert_eq!(warn.status, Status::Warn, "5.10 charges maps to RLIMIT_MEMLOCK");
        assert!(warn.fix.as_deref().is_some_and(|f| f.contains("legacyKernelCapabilities")));
        assert_eq!(check_caps(bpf_only | (1 << CAP_SYS_RESOURCE), Some((5, 10))).status, Status::Ok);
        assert_eq!(effective_caps("Name: x"), None);
    }

    #[test]
    fn collector_addresses() {
        assert_eq!(
            host_port("http://otel-collector.observability:4317").as_deref(),
            Some("otel-collector.observability:4317")
        );
        assert_eq!(host_port("https://otel.example.com/v1/metrics").as_deref(), Some("otel.example.com:443"));
        assert_eq!(host_port("http://[fd00::1]:4318/v1/metrics").as_deref(), Some("[fd00::1]:4318"));
        assert_eq!(host_port("http://[fd00::1]").as_deref(), Some("[fd00::1]:80"));
        assert_eq!(host_port("collector:4317"), None);
    }

    #[test]
    fn mounts_from_a_proc_root() {
        let dir = std::env::temp_dir().join(format!("nasflow-check-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("1")).expect("dir");
        std::fs::write(
            dir.join("1/mountinfo"),
            "36 1 0:61 / /srv/nas-a rw,relatime - nfs 10.0.0.5:/exports/a rw,vers=3\n\
             37 1 0:62 / /srv/nas-b rw,relatime - nfs4 10.0.0.6:/b rw,vers=4.2\n\
             38 1 8:1 / / rw - ext4 /dev/sda1 rw\n",
        )
        .expect("write");
        let ok = check_mounts(&dir);
        assert_eq!(ok.status, Status::Ok);
        assert_eq!(ok.detail, "2 NFS devices from 10.0.0.5, 10.0.0.6");
        std::fs::write(dir.join("1/mountinfo"), "38 1 8:1 / / rw - ext4 /dev/sda1 rw\n").expect("write");
        assert_eq!(check_mounts(&dir).status, Status::Warn);
        assert_eq!(check_mounts(&dir.join("absent")).status, Status::Fail);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn text_and_json_reports() {
        let items = vec![
            item("btf", Status::Ok, "/sys/kernel/btf/vmlinux", None),
            item("kubelet", Status::Fail, "HTTP 403", Some("grant get on nodes/pods")),
        ];
        let text = render_text(&items);
        assert!(text.starts_with("OK    btf"), "{text}");
        assert!(text.contains("FAIL  kubelet") && text.contains("fix: grant get on nodes/pods"), "{text}");
        let json: serde_json::Value = serde_json::to_value(&items).expect("json");
        assert_eq!(json[1]["status"], "FAIL");
        assert!(json[0].get("fix").is_none());
        assert!(blocked(&items));
        assert!(!blocked(&items[..1]));
    }
}
