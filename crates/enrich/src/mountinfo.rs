//! NFS devices to NAS mounts, from `/proc/<pid>/mountinfo`. The probe's `dev` is the
//! NFS super block's device, the `major:minor` of mountinfo's third field.

use std::collections::BTreeMap;

/// One place an NFS device is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountPoint {
    /// Where it is mounted (unescaped).
    pub path: String,
    /// The directory of the file system mounted there (`/`, or a sub-directory for bind mounts).
    pub root: String,
    /// Pod UID when the path is a kubelet pod volume directory.
    pub pod_uid: Option<String>,
    /// Volume name when the path is a kubelet pod volume (`kubernetes.io~nfs/<name>`) or
    /// the PV name of a CSI volume (`kubernetes.io~csi/<pv>/mount`).
    pub volume: Option<String>,
}

/// An NFS super block: one NAS export as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NasMount {
    /// Kernel device number, `MAJOR << 20 | MINOR`, as the probe reports it.
    pub dev: u32,
    /// NFS server as written in the mount source (IPv6 without brackets).
    pub server: String,
    /// Exported path on the server.
    pub export: String,
    /// `3`, `4.0`, `4.1`, `4.2`, or what the options say.
    pub version: String,
    /// Super block options (`vers=`, `proto=`, `rsize=`, ...).
    pub options: String,
    /// Every mount point of the device, kubelet pod volumes first.
    pub mount_points: Vec<MountPoint>,
}

impl NasMount {
    /// The mount point to report for traffic of a pod (or of the host, `None`): the pod's own
    /// volume when it has one; otherwise a mount that is no pod's volume (another pod's
    /// volume path would mislead), and only failing that the first one.
    #[must_use]
    pub fn mount_point_for(&self, pod_uid: Option<&str>) -> Option<&MountPoint> {
        pod_uid
            .and_then(|uid| self.mount_points.iter().find(|m| m.pod_uid.as_deref() == Some(uid)))
            .or_else(|| self.mount_points.iter().find(|m| m.pod_uid.is_none()))
            .or_else(|| self.mount_points.first())
    }
}

/// Undoes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` `\`).
#[must_use]
pub fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = &b[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                let v = (u32::from(oct[0] - b'0') << 6) | (u32::from(oct[1] - b'0') << 3) | u32::from(oct[2] - b'0');
                if let Ok(byte) = u8::try_from(v) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits an NFS mount source into server and export: `host:/path`, `[v6]:/path`.
#[must_use]
pub fn split_source(source: &str) -> Option<(String, String)> {
    if let Some(rest) = source.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let export = after.strip_prefix(':')?;
        return Some((host.to_owned(), export.to_owned()));
    }
    let (host, export) = source.split_once(":/")?;
    Some((host.to_owned(), format!("/{export}")))
}

fn nfs_version(fstype: &str, super_opts: &str) -> String {
    let vers = super_opts.split(',').find_map(|o| o.strip_prefix("vers=").or_else(|| o.strip_prefix("nfsvers=")));
    match (fstype, vers) {
        ("nfs4", Some("4") | None) => "4.0".to_owned(),
        (_, Some(v)) => v.to_owned(),
        (_, None) => "3".to_owned(),
    }
}

/// Reads a kubelet pod volume path: `.../pods/<uid>/volumes/kubernetes.io~nfs/<name>` or
/// `.../pods/<uid>/volumes/kubernetes.io~csi/<pv>/mount`.
fn kubelet_volume(path: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = path.split('/').collect();
    let i = parts.iter().position(|p| *p == "volumes")?;
    if i < 2 || parts[i - 2] != "pods" {
        return None;
    }
    let uid = parts[i - 1].to_owned();
    match (parts.get(i + 1), parts.get(i + 2), parts.get(i + 3)) {
        (Some(&"kubernetes.io~nfs"), Some(name), None) => Some((uid, (*name).to_owned())),
        (Some(&"kubernetes.io~csi"), Some(pv), Some(&"mount")) if parts.len() == i + 4 => Some((uid, (*pv).to_owned())),
        _ => None,
    }
}

/// One parsed mountinfo line, as far as nasflow needs it.
struct Line<'a> {
    major: u32,
    minor: u32,
    root: &'a str,
    mount_point: &'a str,
    fstype: &'a str,
    source: &'a str,
    super_opts: &'a str,
}

fn parse_line(line: &str) -> Option<Line<'_>> {
    let (pre, post) = line.split_once(" - ")?;
    let mut f = pre.split(' ');
    let _id = f.next()?;
    let _parent = f.next()?;
    let (major, minor) = f.next()?.split_once(':')?;
    let root = f.next()?;
    let mount_point = f.next()?;
    let mut p = post.split(' ');
    Some(Line {
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        root,
        mount_point,
        fstype: p.next()?,
        source: p.next()?,
        super_opts: p.next().unwrap_or(""),
    })
}

/// The host's mount table under a /proc root (`/host/proc` in a container): the view of the
/// host's init process, which sees every pod's volume mounts.
#[must_use]
pub fn host_mountinfo(proc_root: &std::path::Path) -> std::path::PathBuf {
    proc_root.join("1/mountinfo")
}

/// The NFS mounts in a mountinfo text, by device. Lines that are not NFS, or that cannot be
/// parsed, are skipped; the count of unparsable lines is returned beside the mounts.
#[must_use]
pub fn parse_mountinfo(text: &str) -> (BTreeMap<u32, NasMount>, usize) {
    let mut mounts: BTreeMap<u32, NasMount> = BTreeMap::new();
    let mut bad = 0;
    for raw in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some(l) = parse_line(raw) else {
            bad += 1;
            continue;
        };
        if l.fstype != "nfs" && l.fstype != "nfs4" {
            continue;
        }
        let source = unescape(l.source);
        let Some((server, export)) = split_source(&source) else {
            bad += 1;
            continue;
        };
        let dev = (l.major << 20) | (l.minor & 0xf_ffff);
        let path = unescape(l.mount_point);
        let (pod_uid, volume) = kubelet_volume(&path).map_or((None, None), |(u, v)| (Some(u), Some(v)));
        let mp = MountPoint { path, root: unescape(l.root), pod_uid, volume };
        let entry = mounts.entry(dev).or_insert_with(|| NasMount {
            dev,
            server,
            export,
            version: nfs_version(l.fstype, l.super_opts),
            options: l.super_opts.to_owned(),
            mount_points: Vec::new(),
        });
        entry.mount_points.push(mp);
    }
    for m in mounts.values_mut() {
        // Stable: kubelet volumes first, in mountinfo order otherwise.
        m.mount_points.sort_by_key(|mp| mp.volume.is_none());
    }
    (mounts, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../tests/fixtures/mountinfo");

    #[test]
    fn finds_v3_and_v4_mounts_and_skips_the_rest() {
        let (m, bad) = parse_mountinfo(FIXTURE);
        assert_eq!(bad, 1, "one garbage line in the fixture");
        let a = &m[&61];
        assert_eq!((a.server.as_str(), a.export.as_str(), a.version.as_str()), ("127.0.0.1", "/srv/v4/exa", "3"));
        assert_eq!(a.mount_points[0].path, "/srv/nas-a");
        let b = &m[&63];
        assert_eq!((b.server.as_str(), b.export.as_str(), b.version.as_str()), ("127.0.0.2", "/exb", "4.2"));
        assert!(m.values().all(|n| n.options.contains("vers=")));
    }

    #[test]
    fn escaped_paths_ipv6_and_optional_fields() {
        let (m, _) = parse_mountinfo(FIXTURE);
        let v6 = m.values().find(|n| n.server == "fd00::1").expect("ipv6 mount");
        assert_eq!(v6.export, "/export/team data");
        assert_eq!(v6.version, "4.1");
        assert_eq!(v6.mount_points[0].path, "/mnt/team data");
        let v40 = m.values().find(|n| n.server == "nas.example.com").expect("hostname mount");
        assert_eq!(v40.version, "4.0");
    }

    #[test]
    fn bind_mounts_and_kubelet_volumes_share_a_device() {
        let (m, _) = parse_mountinfo(FIXTURE);
        let shared = &m[&70];
        assert_eq!(shared.mount_points.len(), 4);
        // kubelet volumes first.
        assert_eq!(shared.mount_points[0].volume.as_deref(), Some("shared-data"));
        assert_eq!(shared.mount_points[0].pod_uid.as_deref(), Some("11111111-2222-3333-4444-555555555555"));
        assert_eq!(shared.mount_points[1].volume.as_deref(), Some("pvc-0a1b"));
        let bind = shared.mount_points.iter().find(|p| p.path == "/data/sub").expect("bind");
        assert_eq!(bind.root, "/sub");
        let other = "66666666-7777-8888-9999-000000000000";
        assert_eq!(shared.mount_point_for(Some(other)).and_then(|p| p.volume.as_deref()), Some("pvc-0a1b"));
        let elsewhere = shared.mount_point_for(Some("nope")).expect("a mount");
        assert_eq!(
            (elsewhere.path.as_str(), elsewhere.volume.as_deref()),
            ("/var/lib/kubelet/plugins/kubernetes.io/csi/nfs.csi.k8s.io/abc/globalmount", None)
        );
        assert_eq!(shared.mount_point_for(None).map(|p| p.path.as_str()), Some(elsewhere.path.as_str()));
    }

    #[test]
    fn unescape_handles_edges() {
        assert_eq!(unescape(r"a\040b\011c\134d"), "a b\tc\\d");
        assert_eq!(unescape(r"trail\04"), r"trail\04");
        assert_eq!(unescape(r"\999x"), r"\999x");
        assert_eq!(unescape(""), "");
    }

    #[test]
    fn garbage_never_panics() {
        for s in [
            "",
            "-",
            " - ",
            "1 2 x:y / / rw - nfs a:/b rw",
            "1 2 0:5",
            "1 2 0:5 / /m rw - nfs noport rw",
            "\u{0}\u{1} - nfs4",
        ] {
            let _ = parse_mountinfo(s);
        }
        assert!(split_source("[fd00::1]/x").is_none());
        assert!(split_source("nocolon").is_none());
    }
}
