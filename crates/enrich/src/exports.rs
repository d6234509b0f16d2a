//! NFS server exports: the fsid a file handle carries to the exported path, from the kernel's
//! own export caches (`/proc/net/rpc/nfsd.fh/content`, filled by mountd when a client first
//! presents a handle of an export, and `/proc/net/rpc/nfsd.export/content`). Parsers are pure;
//! [`ExportTable::refresh`] does the reading.

use std::{collections::HashMap, fs, io, path::Path};

use crate::mountinfo::unescape;

/// The kernel's fsid-to-export cache, under the host's /proc. `/proc/net` is the reader's
/// network namespace: through pid 1 it is the host's, also from a container that mounts the
/// host's /proc.
pub const FH_CONTENT: &str = "1/net/rpc/nfsd.fh/content";
/// The kernel's export-options cache, under the host's /proc (see [`FH_CONTENT`]).
pub const EXPORT_CONTENT: &str = "1/net/rpc/nfsd.export/content";

/// mountd's table of exports (`exportfs` writes it), under the host's /proc through pid 1's
/// root: numbered exports (`fsid=N`) are named from it even while the kernel's caches hold no
/// entry for them (`exportfs` flushes the caches on every change).
pub const ETAB: &str = "1/root/var/lib/nfs/etab";

/// One export key: (fsid type, fsid words in hex as the kernel prints them).
pub type FsidKey = (u8, String);

/// Entries of `nfsd.fh/content`: `domain fsidtype 0x<fsid> path`. Expired entries (shown
/// after `# `) still name their export; negative entries (no path), comments and lines that
/// do not parse are skipped and counted.
#[must_use]
pub fn parse_fh_content(text: &str) -> (Vec<(FsidKey, String)>, usize) {
    let mut out = Vec::new();
    let mut skipped = 0;
    for line in text.lines() {
        let entry = line.strip_prefix("# ").unwrap_or(line);
        if entry.starts_with('#') || entry.trim().is_empty() {
            continue;
        }
        let mut f = entry.split_ascii_whitespace();
        let parsed = (|| {
            let _domain = f.next()?;
            let fsid_type: u8 = f.next()?.parse().ok()?;
            let hex = f.next()?.strip_prefix("0x")?;
            let path = f.next()?;
            let valid = !hex.is_empty() && hex.len() % 8 == 0 && hex.bytes().all(|b| b.is_ascii_hexdigit());
            valid.then(|| ((fsid_type, hex.to_ascii_lowercase()), unescape(path)))
        })();
        match parsed {
            Some(e) => out.push(e),
            None => skipped += 1,
        }
    }
    (out, skipped)
}

/// Exports of `nfsd.export/content` set with a number (`fsid=N`): they are keyed by that
/// number (fsid type 1) before any client has used them.
#[must_use]
pub fn parse_export_content(text: &str) -> Vec<(FsidKey, String)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let entry = line.strip_prefix("# ").unwrap_or(line);
        if entry.starts_with('#') {
            continue;
        }
        let Some((path, rest)) = entry.split_once(['\t', ' ']) else { continue };
        let Some(opts) = rest.split_once('(').and_then(|(_, o)| o.strip_suffix(')')) else { continue };
        if let Some(n) = opts.split(',').find_map(|o| o.strip_prefix("fsid=")?.parse::<u32>().ok()) {
            out.push(((1, format!("{n:08x}")), unescape(path)));
        }
    }
    out
}

/// fsid to export path, kept across refreshes (an export whose cache entry expired still
/// names its old handles).
#[derive(Debug, Default, Clone)]
pub struct ExportTable {
    paths: HashMap<FsidKey, String>,
}

impl ExportTable {
    /// Adds what both caches say now; the fsid cache wins where they differ.
    pub fn update(&mut self, fh_content: &str, export_content: &str) {
        for (key, path) in parse_export_content(export_content) {
            self.paths.insert(key, path);
        }
        for (key, path) in parse_fh_content(fh_content).0 {
            self.paths.insert(key, path);
        }
    }

    /// Reads both caches under `proc_root`; absent files (nfsd not loaded) add nothing.
    pub fn refresh(&mut self, proc_root: &Path) -> io::Result<()> {
        let read = |rel: &str| match fs::read_to_string(proc_root.join(rel)) {
            Ok(t) => Ok(t),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e),
        };
        let fh = read(FH_CONTENT)?;
        let exports = read(EXPORT_CONTENT)?;
        // Best effort: pid 1's root may be out of reach (no CAP_SYS_PTRACE in a container).
        let etab = fs::read_to_string(proc_root.join(ETAB)).unwrap_or_default();
        for (key, path) in parse_export_content(&etab) {
            self.paths.entry(key).or_insert(path);
        }
        self.update(&fh, &exports);
        Ok(())
    }

    /// The export of a handle's fsid, if known.
    #[must_use]
    pub fn path(&self, fsid_type: u8, hex: &str) -> Option<&str> {
        self.paths.get(&(fsid_type, hex.to_owned())).map(String::as_str)
    }

    /// Exports known.
    #[must_use]
    pub fn len(&self) -> usize {
        self.paths.len()
    }

    /// Whether no export is known.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbered_exports_are_named_from_mountds_table_when_the_caches_were_flushed() {
        let root = tempfile::tempdir().expect("tempdir");
        let etab = root.path().join(ETAB);
        fs::create_dir_all(etab.parent().expect("parent")).expect("mkdir");
        fs::write(
            &etab,
            "/srv/v4/tiny\t127.0.0.0/8(rw,sync,wdelay,hide,nocrossmnt,secure,no_root_squash,no_all_squash,no_subtree_check,secure_locks,acl,no_pnfs,fsid=9,anonuid=65534,anongid=65534,sec=sys,rw,secure,no_root_squash,no_all_squash)\n\
             /srv/v4/ext\t127.0.0.0/8(rw,sync,wdelay,hide,nocrossmnt,secure,no_root_squash,no_all_squash,no_subtree_check,secure_locks,acl,no_pnfs,anonuid=65534,anongid=65534,sec=sys,rw,secure,no_root_squash,no_all_squash)\n",
        )
        .expect("write");
        let mut t = ExportTable::default();
        t.refresh(root.path()).expect("absent caches are no error");
        assert_eq!(t.path(1, "00000009"), Some("/srv/v4/tiny"));
        assert_eq!(t.len(), 1, "an export without fsid= is named from the fsid cache only");
        // The kernel's own cache wins where it names the fsid.
        t.update("# 127.0.0.0/8 1 0x00000009 /srv/v4/tiny-moved\n", "");
        assert_eq!(t.path(1, "00000009"), Some("/srv/v4/tiny-moved"));
    }

    const FH: &str = include_str!("../tests/fixtures/nfsd/fh_content");
    const EXPORTS: &str = include_str!("../tests/fixtures/nfsd/export_content");

    #[test]
    fn the_kernels_fsid_cache() {
        let (entries, skipped) = parse_fh_content(FH);
        assert_eq!(skipped, 0);
        let mut got: Vec<_> = entries.iter().map(|((t, h), p)| (*t, h.as_str(), p.as_str())).collect();
        got.sort_unstable();
        assert_eq!(got, [(1, "00000000", "/srv/v4"), (1, "00000001", "/srv/v4/exa"), (1, "00000002", "/srv/v4/exb")]);
    }

    #[test]
    fn expired_negative_uuid_and_escaped_entries() {
        let text = "#domain fsidtype fsid [path]\n\
            # * 7 0x0000000200000000a1b2c3d4e5f60718293a4b5c /data/team\\040a\n\
            * 1 0x0000000c\n\
            * 6 0xDEADBEEF00000000000000000000000a /srv/uuid\n\
            garbage\n\
            * x 0x00000001 /bad\n";
        let (entries, skipped) = parse_fh_content(text);
        assert_eq!(skipped, 3, "negative entry, garbage, bad type");
        assert_eq!(entries[0], ((7, "0000000200000000a1b2c3d4e5f60718293a4b5c".into()), "/data/team a".into()));
        assert_eq!(entries[1], ((6, "deadbeef00000000000000000000000a".into()), "/srv/uuid".into()));
    }

    #[test]
    fn numbered_exports_are_known_before_use() {
        let mut got = parse_export_content(EXPORTS);
        got.sort();
        let want: Vec<(FsidKey, String)> = vec![
            ((1, "00000000".into()), "/srv/v4".into()),
            ((1, "00000001".into()), "/srv/v4/exa".into()),
            ((1, "00000002".into()), "/srv/v4/exb".into()),
        ];
        assert_eq!(got, want);
        let mut t = ExportTable::default();
        t.update("", EXPORTS);
        assert_eq!(t.path(1, "00000002"), Some("/srv/v4/exb"));
        t.update("* 1 0x00000002 /moved\n", "");
        assert_eq!(t.path(1, "00000002"), Some("/moved"), "the fsid cache wins");
        assert_eq!(t.len(), 3);
    }
}
