//! cgroup ids to cgroup paths.
//!
//! The probe charges traffic to a cgroup id: on cgroup v2 the id of the task's cgroup, on v1
//! the kernfs id of its memory-controller cgroup. Both are the inode number of the cgroup's
//! directory, so a walk of the hierarchy that stats each directory names every live id.
//! cgroup ids are never reused, so an id missing from a walk that started after the id was
//! first seen belongs to a cgroup that is gone.

use std::{
    collections::HashMap,
    ffi::CString,
    fs, io,
    os::unix::{ffi::OsStrExt, fs::MetadataExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{refresh::Refreshed, EnrichError};

/// `CGROUP2_SUPER_MAGIC` from `linux/magic.h`.
const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
/// `CGROUP_SUPER_MAGIC` (v1) from `linux/magic.h`.
const CGROUP_SUPER_MAGIC: i64 = 0x0027_e0eb;

/// Deepest cgroup nesting walked; real hierarchies are far shallower.
const MAX_DEPTH: usize = 32;

/// Which cgroup hierarchy the probe's ids come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupHierarchy {
    /// `true` on cgroup v1 (ids from the memory controller's hierarchy).
    pub v1: bool,
    /// The directory whose subtree holds the cgroups (`/sys/fs/cgroup` on v2,
    /// `/sys/fs/cgroup/memory` on v1).
    pub mount: PathBuf,
    /// Id of the root cgroup (the mount's inode number).
    pub root_id: u64,
}

fn fs_magic(path: &Path) -> io::Result<i64> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: statfs is plain old data; the kernel fills it on success.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a valid out pointer.
    if unsafe { libc::statfs(c.as_ptr(), &raw mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast, clippy::cast_lossless)]
    // f_type's width differs by libc target
    Ok(st.f_type as i64)
}

impl CgroupHierarchy {
    /// Finds the hierarchy under `cgroup_root` (usually `/sys/fs/cgroup`): cgroup v2 when it
    /// is a cgroup2 mount, else the v1 memory controller's hierarchy beneath it.
    pub fn detect(cgroup_root: &Path) -> Result<Self, EnrichError> {
        let io_err = |path: &Path, source| EnrichError::Io { path: path.to_owned(), source };
        let magic = fs_magic(cgroup_root).map_err(|e| io_err(cgroup_root, e))?;
        if magic == CGROUP2_SUPER_MAGIC {
            let root_id = fs::metadata(cgroup_root).map_err(|e| io_err(cgroup_root, e))?.ino();
            return Ok(Self { v1: false, mount: cgroup_root.to_owned(), root_id });
        }
        let memory = cgroup_root.join("memory");
        match fs_magic(&memory) {
            Ok(m) if m == CGROUP_SUPER_MAGIC => {
                let root_id = fs::metadata(&memory).map_err(|e| io_err(&memory, e))?.ino();
                Ok(Self { v1: true, mount: memory, root_id })
            }
            _ => Err(EnrichError::NoCgroupHierarchy { root: cgroup_root.to_owned() }),
        }
    }
}

/// Whether `dir` has a subdirectory (a cgroup below it).
fn has_subdirectory(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.file_type().is_ok_and(|t| t.is_dir()))))
}

/// Ids of live cgroups and their paths, as of one walk.
#[derive(Debug, Clone)]
pub struct CgroupTable {
    /// When the walk started: ids first seen before this and missing from it are gone.
    pub scanned_at: Instant,
    paths: HashMap<u64, Arc<str>>,
    /// Directories the walk could not read (an error other than "removed meanwhile", or
    /// beyond the depth bound). A walk that skipped any declares nothing gone: a live pod's
    /// cgroup under a skipped directory would otherwise lose its counters.
    pub skipped: u64,
}

impl CgroupTable {
    /// An empty table (nothing walked yet).
    #[must_use]
    pub fn empty(now: Instant) -> Self {
        Self { scanned_at: now, paths: HashMap::new(), skipped: 0 }
    }

    /// Whether the walk saw every directory.
    #[must_use]
    pub fn complete(&self) -> bool {
        self.skipped == 0
    }

    /// Walks the hierarchy and records each cgroup's id and path (`/` for the root).
    /// Directories that vanish during the walk are skipped.
    pub fn scan(hierarchy: &CgroupHierarchy) -> Result<Self, EnrichError> {
        let scanned_at = Instant::now();
        let mut paths = HashMap::new();
        let root_meta = fs::metadata(&hierarchy.mount)
            .map_err(|source| EnrichError::Io { path: hierarchy.mount.clone(), source })?;
        paths.insert(root_meta.ino(), Arc::from("/"));
        let mut stack = vec![(hierarchy.mount.clone(), String::new(), 0usize)];
        let mut skipped = 0;
        // A directory removed during the walk is simply gone; any other error leaves a hole.
        let hole = |e: &std::io::Error| u64::from(e.kind() != std::io::ErrorKind::NotFound);
        while let Some((dir, rel, depth)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) => {
                    skipped += hole(&e);
                    continue;
                }
            };
            for entry in entries {
                let entry = match entry {
                    Ok(entry) => entry,
                    Err(e) => {
                        skipped += hole(&e);
                        continue;
                    }
                };
                match entry.file_type() {
                    Ok(ft) if ft.is_dir() => {}
                    Ok(_) => continue,
                    Err(e) => {
                        skipped += hole(&e);
                        continue;
                    }
                }
                let meta = match entry.metadata() {
                    Ok(meta) => meta,
                    Err(e) => {
                        skipped += hole(&e);
                        continue;
                    }
                };
                let name = entry.file_name();
                let child_rel = format!("{rel}/{}", name.to_string_lossy());
                paths.insert(meta.ino(), Arc::from(child_rel.as_str()));
                if depth + 1 < MAX_DEPTH {
                    stack.push((entry.path(), child_rel, depth + 1));
                } else if has_subdirectory(&entry.path()) {
                    // Cgroups below the depth bound are not walked: a hole, not removals.
                    skipped += 1;
                }
            }
        }
        Ok(Self { scanned_at, paths, skipped })
    }

    /// Builds a table from known paths (tests, fixtures).
    #[must_use]
    pub fn from_paths(scanned_at: Instant, paths: HashMap<u64, String>) -> Self {
        Self { scanned_at, paths: paths.into_iter().map(|(k, v)| (k, Arc::from(v))).collect(), skipped: 0 }
    }

    /// The path of a live cgroup.
    #[must_use]
    pub fn path(&self, id: u64) -> Option<&str> {
        self.paths.get(&id).map(AsRef::as_ref)
    }

    /// Number of cgroups in the table.
    #[must_use]
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether the walk found nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// What is known of a cgroup id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupName {
    /// A live cgroup with this path.
    Path(Arc<str>),
    /// Not in the current table, which is older than the id: a refresh will tell.
    Pending,
    /// Missing from a walk that started after the id appeared: the cgroup was removed.
    Gone {
        /// Its path when it was last seen alive, if it ever was.
        last_path: Option<Arc<str>>,
    },
}

/// Remembers when each id was first seen, to tell [`CgroupName::Pending`] from
/// [`CgroupName::Gone`].
#[derive(Debug, Default)]
pub struct CgroupNamer {
    first_seen: HashMap<u64, Instant>,
    last_path: HashMap<u64, Arc<str>>,
}

impl CgroupNamer {
    /// Names `id` from `table`; `now` is when the id was seen in a snapshot.
    pub fn name(&mut self, table: &CgroupTable, id: u64, now: Instant) -> CgroupName {
        let first = *self.first_seen.entry(id).or_insert(now);
        match table.paths.get(&id) {
            Some(p) => {
                if self.last_path.get(&id).is_none_or(|l| !Arc::ptr_eq(l, p) && l != p) {
                    self.last_path.insert(id, Arc::clone(p));
                }
                CgroupName::Path(Arc::clone(p))
            }
            None if table.scanned_at > first && table.complete() => {
                CgroupName::Gone { last_path: self.last_path.get(&id).cloned() }
            }
            None => CgroupName::Pending,
        }
    }

    /// Drops what is remembered of ids whose series were removed.
    pub fn forget(&mut self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            self.first_seen.remove(&id);
            self.last_path.remove(&id);
        }
    }
}

/// The current [`CgroupTable`], walked in the background every `every` and on demand, so
/// lookups on the export path never walk the file system.
#[derive(Debug, Clone)]
pub struct CgroupCache {
    tables: Refreshed<CgroupTable>,
}

impl CgroupCache {
    /// Starts walking `hierarchy` now, then every `every`; on request at most once per
    /// `min_gap`.
    #[must_use]
    pub fn spawn(hierarchy: CgroupHierarchy, every: Duration, min_gap: Duration) -> Self {
        let hierarchy = Arc::new(hierarchy);
        let tables = Refreshed::spawn("cgroups", CgroupTable::empty(Instant::now()), every, min_gap, move || {
            let h = Arc::clone(&hierarchy);
            async move {
                tokio::task::spawn_blocking(move || CgroupTable::scan(&h))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            }
        });
        Self { tables }
    }

    /// The table as of the last walk.
    #[must_use]
    pub fn current(&self) -> Arc<CgroupTable> {
        Arc::clone(&self.tables.current().value)
    }

    /// A table from a walk started at or after `since`, waiting at most `timeout`.
    pub async fn fresh_since(&self, since: Instant, timeout: Duration) -> Arc<CgroupTable> {
        Arc::clone(&self.tables.fresh_since(since, timeout).await.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_names_every_directory_by_inode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope")).expect("mkdir");
        fs::create_dir_all(root.join("system.slice/backup.service")).expect("mkdir");
        fs::write(root.join("cgroup.procs"), "").expect("file");
        let h = CgroupHierarchy { v1: false, mount: root.to_owned(), root_id: 0 };
        let t = CgroupTable::scan(&h).expect("scan");
        let ino = |p: &str| fs::metadata(root.join(p)).expect("stat").ino();
        assert_eq!(t.path(ino(".")), Some("/"));
        assert_eq!(
            t.path(ino("kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope")),
            Some("/kubepods.slice/kubepods-pod1.slice/cri-containerd-abc.scope")
        );
        assert_eq!(t.path(ino("system.slice/backup.service")), Some("/system.slice/backup.service"));
        assert_eq!(t.len(), 6);
    }

    #[test]
    fn pending_until_a_newer_walk_then_gone() {
        let t0 = Instant::now();
        let seen = t0 + Duration::from_secs(1);
        let mut namer = CgroupNamer::default();
        let old = CgroupTable::from_paths(t0, HashMap::from([(1, "/".to_owned()), (7, "/a".to_owned())]));
        assert_eq!(namer.name(&old, 1, seen), CgroupName::Path("/".into()));
        assert_eq!(namer.name(&old, 7, seen), CgroupName::Path("/a".into()));
        assert_eq!(namer.name(&old, 42, seen), CgroupName::Pending);
        let newer = CgroupTable::from_paths(seen + Duration::from_secs(1), HashMap::from([(1, "/".to_owned())]));
        // Seen again later: the first sighting still counts.
        assert_eq!(namer.name(&newer, 42, seen + Duration::from_secs(5)), CgroupName::Gone { last_path: None });
        assert_eq!(namer.name(&newer, 7, seen), CgroupName::Gone { last_path: Some("/a".into()) });
        namer.forget([42, 7]);
        assert_eq!(namer.first_seen.len(), 1);
        assert!(!namer.last_path.contains_key(&7));
    }

    #[test]
    fn an_incomplete_walk_declares_nothing_gone() {
        let t0 = Instant::now();
        let seen = t0 + Duration::from_secs(1);
        let mut namer = CgroupNamer::default();
        let old = CgroupTable::from_paths(t0, HashMap::from([(7, "/kubepods/a".to_owned())]));
        assert_eq!(namer.name(&old, 7, seen), CgroupName::Path("/kubepods/a".into()));
        let mut newer = CgroupTable::from_paths(seen + Duration::from_secs(1), HashMap::new());
        newer.skipped = 1;
        assert_eq!(namer.name(&newer, 7, seen), CgroupName::Pending, "a hole in the walk is no removal");
        newer.skipped = 0;
        assert_eq!(namer.name(&newer, 7, seen), CgroupName::Gone { last_path: Some("/kubepods/a".into()) });
    }

    #[test]
    fn a_walk_that_leaves_directories_out_is_incomplete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let h = CgroupHierarchy { v1: false, mount: dir.path().to_owned(), root_id: 0 };
        let mut deep = dir.path().to_owned();
        for level in 0..MAX_DEPTH {
            deep.push(format!("l{level}"));
        }
        fs::create_dir_all(&deep).expect("mkdir");
        let t = CgroupTable::scan(&h).expect("scan");
        assert!(t.complete(), "every directory within the bound was read");
        deep.push("beyond");
        fs::create_dir_all(deep.join("pod")).expect("mkdir");
        let t = CgroupTable::scan(&h).expect("scan");
        assert!(!t.complete(), "a directory beyond the bound was left out");
    }

    #[test]
    fn detect_refuses_a_plain_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = CgroupHierarchy::detect(dir.path()).expect_err("not a cgroup fs");
        assert!(err.to_string().contains("no cgroup v2 mount"), "{err}");
    }
}
