//! cgroup paths to containers and pods, by the naming conventions of the container runtimes
//! and the kubelet's two cgroup drivers. Pure: a path in, what it names out.
//!
//! Recognised (v1 and v2 alike, at any depth, so nested clusters such as kind or k3s inside
//! a container work too):
//! - systemd driver: `kubepods[-<qos>]-pod<uid with _>.slice`, containers as
//!   `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope`;
//!   `crio-conmon-<id>.scope` is CRI-O's monitor process, part of the pod but no container.
//! - cgroupfs driver: `kubepods[/<qos>]/pod<uid>/<id>`.
//! - plain Docker: `/docker/<id>`, `docker-<id>.scope`.

/// Which runtime's naming a container id was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// `cri-containerd-<id>.scope` or a bare id under a pod.
    Containerd,
    /// `crio-<id>.scope`.
    CriO,
    /// `docker-<id>.scope` or `/docker/<id>`.
    Docker,
}

/// What a cgroup path says about the workload in it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CgroupWorkload {
    /// Pod UID (with dashes), when the path is inside a pod's cgroup.
    pub pod_uid: Option<String>,
    /// Container id (64 hex digits), when the path is a container's cgroup.
    pub container_id: Option<String>,
    /// The runtime whose naming matched.
    pub runtime: Option<Runtime>,
}

impl CgroupWorkload {
    /// Whether the path named neither a pod nor a container.
    #[must_use]
    pub fn is_host(&self) -> bool {
        self.pod_uid.is_none() && self.container_id.is_none()
    }
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A pod UID as the kubelet writes it in cgroup names: 32 hex digits in 8-4-4-4-12 groups,
/// joined by `-` (cgroupfs) or `_` (systemd).
fn pod_uid(s: &str) -> Option<String> {
    if s.len() != 36 {
        return None;
    }
    let mut out = String::with_capacity(36);
    for (i, c) in s.chars().enumerate() {
        let sep = matches!(i, 8 | 13 | 18 | 23);
        match (sep, c) {
            (true, '-' | '_') => out.push('-'),
            (false, c) if c.is_ascii_hexdigit() => out.push(c.to_ascii_lowercase()),
            _ => return None,
        }
    }
    Some(out)
}

/// The pod UID in one path component, for either driver.
fn pod_component(c: &str) -> Option<String> {
    // systemd: kubepods-pod<uid>.slice, kubepods-burstable-pod<uid>.slice, and with a prefix
    // in nested setups (kubelet-kubepods-besteffort-pod<uid>.slice).
    if let Some(rest) = c.strip_suffix(".slice") {
        let idx = rest.rfind("-pod")?;
        return pod_uid(&rest[idx + 4..]);
    }
    // cgroupfs: pod<uid>
    c.strip_prefix("pod").and_then(pod_uid)
}

/// The container id in one path component, with its runtime.
fn container_component(c: &str, in_pod: bool, parent: Option<&str>) -> Option<(String, Runtime)> {
    if let Some(scope) = c.strip_suffix(".scope") {
        if scope.starts_with("crio-conmon-") {
            return None;
        }
        let (id, runtime) = if let Some(id) = scope.strip_prefix("cri-containerd-") {
            (id, Runtime::Containerd)
        } else if let Some(id) = scope.strip_prefix("crio-") {
            (id, Runtime::CriO)
        } else if let Some(id) = scope.strip_prefix("docker-") {
            (id, Runtime::Docker)
        } else {
            return None;
        };
        return is_container_id(id).then(|| (id.to_owned(), runtime));
    }
    if is_container_id(c) {
        if in_pod {
            return Some((c.to_owned(), Runtime::Containerd));
        }
        if parent == Some("docker") {
            return Some((c.to_owned(), Runtime::Docker));
        }
    }
    None
}

/// Reads a cgroup path (relative to the hierarchy root, `/` for the root itself).
#[must_use]
pub fn parse_cgroup_path(path: &str) -> CgroupWorkload {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let mut out = CgroupWorkload::default();
    // The innermost pod wins: in nested clusters the outer pod is the node's container.
    let pod_at = parts.iter().rposition(|c| pod_component(c).is_some());
    if let Some(i) = pod_at {
        out.pod_uid = pod_component(parts[i]);
    }
    if let Some(last) = parts.last() {
        let parent = parts.len().checked_sub(2).map(|i| parts[i]);
        let in_pod = pod_at.is_some_and(|i| i + 1 < parts.len());
        if let Some((id, runtime)) = container_component(last, in_pod, parent) {
            out.container_id = Some(id);
            out.runtime = Some(runtime);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const UID: &str = "6d2b5f8e-3c1a-4e7b-9f00-1a2b3c4d5e6f";
    const UID_: &str = "6d2b5f8e_3c1a_4e7b_9f00_1a2b3c4d5e6f";

    fn w(pod: Option<&str>, id: Option<&str>, rt: Option<Runtime>) -> CgroupWorkload {
        CgroupWorkload { pod_uid: pod.map(str::to_owned), container_id: id.map(str::to_owned), runtime: rt }
    }

    #[test]
    fn systemd_driver_all_qos_and_runtimes() {
        let cases = [
            (format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"), Runtime::Containerd),
            (format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{ID}.scope"), Runtime::CriO),
            // Guaranteed pods have no QoS level.
            (format!("/kubepods.slice/kubepods-pod{UID_}.slice/docker-{ID}.scope"), Runtime::Docker),
        ];
        for (path, rt) in cases {
            assert_eq!(parse_cgroup_path(&path), w(Some(UID), Some(ID), Some(rt)), "{path}");
        }
    }

    #[test]
    fn cgroupfs_driver_v1_and_v2() {
        for path in [
            format!("/kubepods/burstable/pod{UID}/{ID}"),
            format!("/kubepods/pod{UID}/{ID}"),
            format!("/kubepods/besteffort/pod{UID}/{ID}"),
        ] {
            assert_eq!(parse_cgroup_path(&path), w(Some(UID), Some(ID), Some(Runtime::Containerd)), "{path}");
        }
    }

    #[test]
    fn pod_level_cgroups_and_crio_conmon() {
        assert_eq!(parse_cgroup_path(&format!("/kubepods/burstable/pod{UID}")), w(Some(UID), None, None));
        let conmon = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-conmon-{ID}.scope"
        );
        assert_eq!(parse_cgroup_path(&conmon), w(Some(UID), None, None));
    }

    #[test]
    fn nested_kind_and_k3s() {
        // kind: the node is a container; its kubelet uses /kubelet.slice under it.
        let kind = format!(
            "/system.slice/docker-{ID}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{}.scope",
            ID.replace('0', "f")
        );
        assert_eq!(parse_cgroup_path(&kind), w(Some(UID), Some(&ID.replace('0', "f")), Some(Runtime::Containerd)));
        // k3s in docker with the cgroupfs driver.
        let k3s = format!("/docker/{ID}/kubepods/burstable/pod{UID}/{}", ID.replace('1', "e"));
        assert_eq!(parse_cgroup_path(&k3s), w(Some(UID), Some(&ID.replace('1', "e")), Some(Runtime::Containerd)));
    }

    #[test]
    fn plain_docker_and_host_cgroups() {
        assert_eq!(parse_cgroup_path(&format!("/docker/{ID}")), w(None, Some(ID), Some(Runtime::Docker)));
        assert_eq!(
            parse_cgroup_path(&format!("/system.slice/docker-{ID}.scope")),
            w(None, Some(ID), Some(Runtime::Docker))
        );
        for host in [
            "/",
            "/system.slice/backup.service",
            "/user.slice/user-1000.slice/session-3.scope",
            "/kubepods",
            "/kubepods.slice/kubepods-burstable.slice",
        ] {
            assert!(parse_cgroup_path(host).is_host(), "{host}");
        }
    }

    #[test]
    fn near_misses_are_not_containers() {
        // Too short, not hex, a pod uid with a wrong group, an id outside any pod.
        for p in [
            format!("/kubepods/burstable/pod{UID}/{}", &ID[..63]),
            format!("/kubepods/burstable/pod{UID}/{}", ID.replace('a', "z")),
            format!("/kubepods/burstable/pod{}/{ID}", UID.replace('-', "")),
            format!("/system.slice/{ID}"),
            format!("/kubepods.slice/kubepods-podnothex.slice/cri-containerd-{ID}.scope"),
        ] {
            let got = parse_cgroup_path(&p);
            assert!(got.pod_uid.is_none() || got.container_id.is_none(), "{p}: {got:?}");
        }
        assert_eq!(parse_cgroup_path(&format!("/system.slice/{ID}")), CgroupWorkload::default());
    }
}
