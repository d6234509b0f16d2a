//! Watched NAS directories (`--directories`): what an operator configured, and where each one
//! is on this node's NFS mounts. The probe keys a directory by (super block dev, inode); one
//! configured directory is as many inodes as there are super blocks it is reached through.
//!
//! A directory is written either as a path on the node (`/mnt/nas/team-a`) or as
//! `server:/export/sub/dir`, matched on every mount of that server whatever path it is mounted
//! at. Parsing and planning are pure; [`resolve`] does the `stat` calls.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use crate::mountinfo::{split_source, NasMount};

/// One configured directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirSpec {
    /// A path on the node, normalized (no trailing `/`, no `.` components).
    Node(String),
    /// A directory of an export, on every mount of it.
    Export {
        /// The NFS server as mount sources spell it (IPv6 without brackets).
        server: String,
        /// The path on the server, normalized.
        path: String,
    },
}

/// Why the configured directories cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirError {
    /// More directories than `--max-directories`.
    #[error("{count} directories configured, more than --max-directories {max}: raise the limit or watch fewer")]
    TooMany {
        /// Configured.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A directory that is neither an absolute path nor `server:/path`.
    #[error("directory `{0}`: write an absolute path on the node (/mnt/nas/team-a) or server:/export/dir")]
    Malformed(String),
    /// `..` in a path: it would not name one directory.
    #[error("directory `{0}`: `..` is not allowed")]
    Parent(String),
}

impl DirSpec {
    /// The directory as configured (normalized): the `nfs.directory` value.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::Node(p) => p.clone(),
            Self::Export { server, path } if server.contains(':') => format!("[{server}]:{path}"),
            Self::Export { server, path } => format!("{server}:{path}"),
        }
    }

    /// Path components below `/`: the deeper of two directories containing one place wins.
    fn depth(&self) -> usize {
        let p = match self {
            Self::Node(p) | Self::Export { path: p, .. } => p,
        };
        components(p).count()
    }
}

fn components(p: &str) -> impl Iterator<Item = &str> {
    p.split('/').filter(|c| !c.is_empty() && *c != ".")
}

/// `/a//b/./c/` to `/a/b/c`; `None` with a `..` component.
fn normalize(p: &str) -> Option<String> {
    if components(p).any(|c| c == "..") {
        return None;
    }
    let joined: Vec<&str> = components(p).collect();
    Some(format!("/{}", joined.join("/")))
}

/// Parses the configured directories, in order (their 1-based place is their id).
///
/// # Errors
/// A malformed entry, or more than `max`.
pub fn parse(list: &[String], max: usize) -> Result<Vec<DirSpec>, DirError> {
    let entries: Vec<&str> = list.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect();
    if entries.len() > max {
        return Err(DirError::TooMany { count: entries.len(), max });
    }
    entries
        .into_iter()
        .map(|raw| {
            if raw.starts_with('/') {
                return normalize(raw).map(DirSpec::Node).ok_or_else(|| DirError::Parent(raw.to_owned()));
            }
            let (server, path) = split_source(raw).ok_or_else(|| DirError::Malformed(raw.to_owned()))?;
            if server.is_empty() || !path.starts_with('/') {
                return Err(DirError::Malformed(raw.to_owned()));
            }
            let path = normalize(&path).ok_or_else(|| DirError::Parent(raw.to_owned()))?;
            Ok(DirSpec::Export { server, path })
        })
        .collect()
}

/// `inner` relative to `outer` when it is `outer` or below it (`Some("")` for equal).
fn below<'a>(inner: &'a str, outer: &str) -> Option<&'a str> {
    if outer == "/" {
        return Some(inner.trim_start_matches('/'));
    }
    let rest = inner.strip_prefix(outer)?;
    if rest.is_empty() {
        Some("")
    } else {
        rest.strip_prefix('/')
    }
}

fn join(base: &str, rel: &str) -> String {
    if rel.is_empty() {
        base.to_owned()
    } else if base.ends_with('/') {
        format!("{base}{rel}")
    } else {
        format!("{base}/{rel}")
    }
}

/// A node path whose inode is a watched directory's, or a mount's root inside one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Lookup {
    /// The path on the node to `stat`.
    pub path: String,
    /// 1-based id of the configured directory.
    pub id: u16,
    /// Whether the path is the directory itself (else a mount root inside it).
    pub exact: bool,
    /// Depth of the configured directory, to pick the deepest for one inode.
    pub depth: usize,
}

/// Which node paths to `stat` for the configured directories on these mounts: each
/// directory where a mount reaches it, and each mount root that lies inside a directory.
#[must_use]
pub fn plan(specs: &[DirSpec], mounts: &BTreeMap<u32, NasMount>) -> Vec<Lookup> {
    let mut out = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let id = u16::try_from(i + 1).unwrap_or(u16::MAX);
        let depth = spec.depth();
        match spec {
            DirSpec::Node(dir) => {
                out.push(Lookup { path: dir.clone(), id, exact: true, depth });
                for mp in mounts.values().flat_map(|m| &m.mount_points) {
                    if below(&mp.path, dir).is_some_and(|rel| !rel.is_empty()) {
                        out.push(Lookup { path: mp.path.clone(), id, exact: false, depth });
                    }
                }
            }
            DirSpec::Export { server, path } => {
                for m in mounts.values().filter(|m| &m.server == server) {
                    for mp in &m.mount_points {
                        // The server path this mount point shows: the export, plus the bind
                        // mount's root within it.
                        let served = normalize(&join(&m.export, mp.root.trim_start_matches('/')))
                            .unwrap_or_else(|| m.export.clone());
                        if let Some(rel) = below(path, &served) {
                            out.push(Lookup { path: join(&mp.path, rel), id, exact: true, depth });
                        } else if below(&served, path).is_some() {
                            out.push(Lookup { path: mp.path.clone(), id, exact: false, depth });
                        }
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// A looked-up path's identity: kernel device (`MAJOR << 20 | MINOR`) and inode.
pub type Found = (u32, u64);

/// One (dev, inode) per watched place, each with the id of the deepest configured directory
/// that holds it (the directory itself before a mount root inside it; the first configured
/// among equals). Devices not in `mounts` (not NFS) are dropped.
#[must_use]
pub fn choose(found: &[(Lookup, Found)], mounts: &BTreeMap<u32, NasMount>) -> BTreeMap<Found, u16> {
    let mut best: BTreeMap<Found, &Lookup> = BTreeMap::new();
    for (l, key) in found {
        if !mounts.contains_key(&key.0) {
            continue;
        }
        let better = |cur: &Lookup| {
            (l.exact, l.depth, std::cmp::Reverse(l.id)) > (cur.exact, cur.depth, std::cmp::Reverse(cur.id))
        };
        match best.get(key) {
            Some(cur) if !better(cur) => {}
            _ => {
                best.insert(*key, l);
            }
        }
    }
    best.into_iter().map(|(k, l)| (k, l.id)).collect()
}

/// What a resolution found: the watched inodes, and which configured directories were not
/// found on any NFS mount (yet).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// (dev, inode) to directory id.
    pub watched: BTreeMap<Found, u16>,
    /// Ids of configured directories with no inode.
    pub missing: Vec<u16>,
}

/// Plans, `stat`s each path under `host_root` (the node's `/` as this process sees it), and
/// chooses. Paths that do not exist (yet) are skipped: a later call picks them up.
#[must_use]
pub fn resolve(specs: &[DirSpec], mounts: &BTreeMap<u32, NasMount>, host_root: &Path) -> Resolution {
    use std::os::unix::fs::MetadataExt;
    let mut found = Vec::new();
    for l in plan(specs, mounts) {
        let on_node: PathBuf = host_root.join(l.path.trim_start_matches('/'));
        match std::fs::metadata(&on_node) {
            Ok(md) if md.is_dir() => {
                let dev = md.dev();
                let kdev = (libc::major(dev) << 20) | (libc::minor(dev) & 0xf_ffff);
                found.push((l, (kdev, md.ino())));
            }
            Ok(_) => tracing::debug!(path = %on_node.display(), "watched directory is not a directory"),
            Err(e) => tracing::trace!(path = %on_node.display(), error = %e, "watched directory not there"),
        }
    }
    let watched = choose(&found, mounts);
    let ids: std::collections::BTreeSet<u16> = watched.values().copied().collect();
    let missing = (1..=specs.len()).filter_map(|i| u16::try_from(i).ok()).filter(|i| !ids.contains(i)).collect();
    Resolution { watched, missing }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mountinfo::parse_mountinfo;

    fn specs(list: &[&str]) -> Vec<DirSpec> {
        parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(), 64).expect("valid")
    }

    #[test]
    fn directories_parse_as_node_paths_or_export_paths() {
        assert_eq!(
            specs(&["/mnt/nas//team-a/", " nas1:/export/./sub ", "[fd00::1]:/exp/x", "10.0.0.5:/"]),
            [
                DirSpec::Node("/mnt/nas/team-a".into()),
                DirSpec::Export { server: "nas1".into(), path: "/export/sub".into() },
                DirSpec::Export { server: "fd00::1".into(), path: "/exp/x".into() },
                DirSpec::Export { server: "10.0.0.5".into(), path: "/".into() },
            ]
        );
        assert_eq!(specs(&["[fd00::1]:/exp/x"])[0].label(), "[fd00::1]:/exp/x");
        let err =
            |l: &[&str], max| parse(&l.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(), max).expect_err("bad");
        assert_eq!(err(&["team-a"], 64), DirError::Malformed("team-a".into()));
        assert_eq!(err(&["nas:relative"], 64), DirError::Malformed("nas:relative".into()));
        assert_eq!(err(&["/mnt/../etc"], 64), DirError::Parent("/mnt/../etc".into()));
        assert_eq!(err(&["/a", "/b", "/c"], 2), DirError::TooMany { count: 3, max: 2 });
        assert!(err(&["/a", "/b", "/c"], 2).to_string().contains("--max-directories 2"));
    }

    const MOUNTS: &str = "\
61 30 0:61 / /mnt/nas1 rw - nfs4 nas1:/export rw,vers=4.2,addr=10.0.0.1
62 30 0:62 / /var/lib/kubelet/pods/p1/volumes/kubernetes.io~nfs/team rw - nfs4 nas1:/export/team-b rw,vers=4.2,addr=10.0.0.1
63 30 0:63 / /mnt/other rw - nfs other:/export rw,vers=3,addr=10.0.0.2
64 30 0:61 /team-a /data/a rw - nfs4 nas1:/export rw,vers=4.2,addr=10.0.0.1
";

    #[test]
    fn an_export_directory_is_found_on_every_mount_of_its_server() {
        let (mounts, bad) = parse_mountinfo(MOUNTS);
        assert_eq!(bad, 0);
        let got = plan(&specs(&["nas1:/export/team-a/sub", "nas1:/export/team-b", "/mnt/nas1/team-a"]), &mounts);
        let paths: Vec<(&str, u16, bool)> = got.iter().map(|l| (l.path.as_str(), l.id, l.exact)).collect();
        assert_eq!(
            paths,
            [
                ("/data/a/sub", 1, true),
                ("/mnt/nas1/team-a", 3, true),
                ("/mnt/nas1/team-a/sub", 1, true),
                ("/mnt/nas1/team-b", 2, true),
                // The pod's mount of team-b has its root at the watched directory itself.
                ("/var/lib/kubelet/pods/p1/volumes/kubernetes.io~nfs/team", 2, true),
            ]
        );
        // A node directory holding a mount point: that mount's root is inside it.
        let got = plan(&specs(&["/var/lib/kubelet/pods/p1"]), &mounts);
        assert_eq!(got[1].path, "/var/lib/kubelet/pods/p1/volumes/kubernetes.io~nfs/team");
        assert!(!got[1].exact);
        // An export directory above a mount's export: the whole mount is inside it.
        let got = plan(&specs(&["nas1:/"]), &mounts);
        assert!(got.iter().all(|l| !l.exact), "{got:?}");
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn the_deepest_directory_wins_an_inode() {
        let (mounts, _) = parse_mountinfo(MOUNTS);
        let l = |id, exact, depth| Lookup { path: String::new(), id, exact, depth };
        let found = vec![
            (l(1, false, 1), (62, 2)),
            (l(2, true, 3), (62, 2)),
            (l(3, false, 2), (61, 9)),
            (l(4, false, 4), (61, 9)),
            (l(5, true, 2), (61, 7)),
            (l(6, true, 2), (61, 7)),
            (l(7, true, 2), (0x80_0001, 7)),
        ];
        let chosen: Vec<(Found, u16)> = choose(&found, &mounts).into_iter().collect();
        assert_eq!(chosen, [((61, 7), 5), ((61, 9), 4), ((62, 2), 2)], "not NFS: dropped");
    }
}
