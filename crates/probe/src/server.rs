//! The NFS server side: loads `nfsd.bpf.o` when the nfsd module is there (late, and again
//! after a reload), and reads what nfsd served per (export fsid, client address, operation,
//! status) into plain rows. Export paths are named elsewhere (enrich), from the fsid.

use std::{fmt::Write as _, fs, os::unix::fs::MetadataExt};

use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, PerCpuHashMap},
    Ebpf, EbpfLoader,
};
use nasflow_probe_bpf::{
    programs, server_globals, server_maps, Field, SvcCounters, SvcKey, SvcLayout, SvcOpName, FSID_NONE, SVC_HEALTH,
    SVC_OP_ACL, SVC_OP_UNKNOWN, SVC_RPC_ERROR,
};

use crate::{
    attach::{Attachment, ModuleInstance},
    map_err, open_map, open_map_mut,
    snapshot::Histogram,
    tracefs::{parse_format, Tracefs, RECORD_BYTES},
    ProbeError,
};

/// Where a loaded nfsd module shows; its inode changes with every load.
pub const NFSD_MODULE: &str = "/sys/module/nfsd";

/// Whether to trace the NFS server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ServerMode {
    /// When the nfsd module is (or becomes) loaded; quiet otherwise.
    #[default]
    Auto,
    /// Always: say so when nfsd is missing.
    On,
    /// Never.
    Off,
}

/// What nfsd served for one (export, client, version, operation, status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerRow {
    /// The export's fsid as mountd keys it: (fsid type, fsid words in hex as
    /// `/proc/net/rpc/nfsd.fh/content` prints them); `None` for operations that used no file
    /// handle (NULL, SEQUENCE, `EXCHANGE_ID`, ...).
    pub fsid: Option<(u8, String)>,
    /// The client's address (no port).
    pub client: String,
    /// NFS version (2, 3 or 4).
    pub vers: u8,
    /// Operation (`READ`, `GETATTR`, ...): an NFSv2/v3 procedure or an NFSv4 operation.
    pub op: String,
    /// NFS status name of a failure (`NFS3ERR_STALE`, `NFS4ERR_NOSPC`); `None` on success.
    pub status: Option<String>,
    /// The status as the kernel counted it (nfsstat3/nfsstat4, or `RPC_*` with the
    /// RPC-error flag), 0 on success.
    pub status_code: u16,
    /// Operations served.
    pub ops: u64,
    /// Payload bytes: READ data sent, WRITE data received.
    pub bytes: u64,
    /// Service time, from the request's (or the previous v4 operation's) start to the
    /// operation's end.
    pub latency: Histogram,
}

impl ServerRow {
    /// `read` or `write` for operations that move file data.
    #[must_use]
    pub fn direction(&self) -> Option<&'static str> {
        match self.op.as_str() {
            "READ" | "READ_PLUS" => Some("read"),
            "WRITE" => Some("write"),
            _ => None,
        }
    }
}

/// The server probe's cumulative state.
#[derive(Debug, Clone, Default)]
pub struct ServerSnapshot {
    /// Whether the programs are attached now.
    pub attached: bool,
    /// Loads of the server object so far (a reload restarts the counters).
    pub load_generation: u64,
    /// Every (export, client, op, status) seen since the load.
    pub rows: Vec<ServerRow>,
    /// Health counters (`server_*`), cumulative.
    pub counters: Vec<(&'static str, u64)>,
    /// (map, keys used, capacity) of the counter map.
    pub series: (u64, u64),
}

impl ServerSnapshot {
    /// (map, keys used, capacity) of the server's counter map, as the client's maps report it.
    #[must_use]
    pub fn map_fill(&self) -> (&'static str, u64, u64) {
        (server_maps::COUNTERS, self.series.0, self.series.1)
    }
}

/// The server probe.
pub struct ServerProbe {
    tracefs: Tracefs,
    latency: bool,
    max_series: u32,
    /// Declared before `ebpf`: links are dropped (detached) before the programs.
    attachment: Option<Attachment>,
    ebpf: Option<Ebpf>,
    failed_for: Option<ModuleInstance>,
    load_generation: u64,
}

fn nfsd_instance() -> ModuleInstance {
    ModuleInstance(fs::metadata(NFSD_MODULE).ok().map(|m| m.ino()))
}

/// The events the server programs read, with the fields of each, in [`SvcLayout`] order.
const SERVER_FIELDS: [(&str, &str, &[&str]); 11] = [
    ("sunrpc", "svc_process", &["xid"]),
    ("sunrpc", "svc_process", &["vers"]),
    ("sunrpc", "svc_process", &["proc"]),
    ("sunrpc", "svc_process", &["service"]),
    ("sunrpc", "svc_process", &["addr"]),
    ("nfsd", "nfsd_read_io_done", &["len"]),
    ("nfsd", "nfsd_write_io_done", &["len"]),
    ("nfsd", "nfsd_compound_status", &["status"]),
    ("nfsd", "nfsd_compound_status", &["name"]),
    ("sunrpc", "svc_xdr_sendto", &["xid"]),
    ("sunrpc", "svc_xdr_sendto", &["head_base"]),
];

/// The server programs' layout from the format texts of their events (`read` gives the text
/// of `category/event`, `None` when absent).
pub fn server_layout_from(read: impl Fn(&str, &str) -> Option<String>) -> Result<SvcLayout, ProbeError> {
    let mut fields = [Field::default(); 11];
    for ((category, event, names), slot) in SERVER_FIELDS.iter().zip(fields.iter_mut()) {
        let text = read(category, event).ok_or_else(|| ProbeError::MissingField {
            event: format!("{category}:{event}"),
            field: "(the event)".into(),
        })?;
        let parsed =
            parse_format(&text).map_err(|detail| ProbeError::BadFormat { event: (*event).to_owned(), detail })?;
        let f = parsed
            .iter()
            .find(|f| names.contains(&f.name.as_str()))
            .ok_or_else(|| ProbeError::MissingField { event: (*event).to_owned(), field: names.join("|") })?;
        if ![4, 8].contains(&f.size) || f.offset % f.size != 0 || f.offset + 8 > RECORD_BYTES {
            return Err(ProbeError::UnsupportedField {
                event: (*event).to_owned(),
                field: f.name.clone(),
                offset: f.offset,
                size: f.size,
            });
        }
        *slot = Field { offset: f.offset, size: f.size };
    }
    let [proc_xid, proc_vers, proc_proc, proc_service, proc_addr, read_len, write_len, op_status, op_name, send_xid, send_head] =
        fields;
    Ok(SvcLayout {
        proc_xid,
        proc_vers,
        proc_proc,
        proc_service,
        proc_addr,
        read_len,
        write_len,
        op_status,
        op_name,
        send_xid,
        send_head,
    })
}

/// What [`ServerProbe::poll`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerEvent {
    /// Nothing.
    Unchanged,
    /// Attached to a (re)loaded nfsd.
    Attached,
    /// nfsd went away.
    Detached,
}

impl ServerProbe {
    /// A server probe over `tracefs`; nothing is loaded until nfsd's events exist.
    #[must_use]
    pub fn new(tracefs: Tracefs, latency: bool, max_series: u32) -> Self {
        Self { tracefs, latency, max_series, attachment: None, ebpf: None, failed_for: None, load_generation: 0 }
    }

    /// Whether nfsd's events exist now (the module is loaded).
    #[must_use]
    pub fn nfsd_present(&self) -> bool {
        self.tracefs.has_event("nfsd", "nfsd_read_io_done") && self.tracefs.has_event("sunrpc", "svc_process")
    }

    fn read_layout(&self) -> Result<SvcLayout, ProbeError> {
        server_layout_from(|category, event| fs::read_to_string(self.tracefs.format_path(category, event)).ok())
    }

    /// Attaches when nfsd is present, again after it was reloaded; detaches when it left.
    pub fn poll(&mut self) -> Result<ServerEvent, ProbeError> {
        let present = self.nfsd_present();
        let module = nfsd_instance();
        match (&self.attachment, present) {
            (Some(a), true) if a.module == module => Ok(ServerEvent::Unchanged),
            (Some(_) | None, true) => {
                if self.attachment.is_none() && self.failed_for == Some(module) {
                    return Ok(ServerEvent::Unchanged);
                }
                self.attachment = None;
                match self.attach(module) {
                    Ok(()) => {
                        self.failed_for = None;
                        Ok(ServerEvent::Attached)
                    }
                    Err(e) => {
                        self.failed_for = Some(module);
                        Err(e)
                    }
                }
            }
            (Some(_), false) => {
                self.attachment = None;
                tracing::info!("detached from the NFS server (nfsd module gone); waiting for it to return");
                Ok(ServerEvent::Detached)
            }
            (None, false) => Ok(ServerEvent::Unchanged),
        }
    }

    fn load(&mut self, layout: &SvcLayout) -> Result<Ebpf, ProbeError> {
        let want_latency = u8::from(self.latency);
        let mut ebpf = EbpfLoader::new()
            .override_global(server_globals::LAYOUT, layout, true)
            .override_global(server_globals::WANT_LATENCY, &want_latency, true)
            .map_max_entries(server_maps::COUNTERS, self.max_series)
            .map_max_entries(server_maps::HIST, if self.latency { self.max_series } else { 1 })
            .load(nasflow_probe_bpf::server_object())
            .map_err(|e| ProbeError::Load(Box::new(e)))?;
        let mut ids: BpfHashMap<&mut MapData, SvcOpName, u16> = open_map_mut(&mut ebpf, server_maps::OP_IDS)?;
        for (num, name) in V4_OPS {
            ids.insert(op_name_key(&format!("OP_{name}")), num, 0).map_err(|e| map_err(server_maps::OP_IDS, e))?;
        }
        self.load_generation += 1;
        Ok(ebpf)
    }

    /// Loads a fresh object (counters restart with a new nfsd) and attaches every program.
    fn attach(&mut self, module: ModuleInstance) -> Result<(), ProbeError> {
        let layout = self.read_layout()?;
        self.ebpf = None;
        let mut ebpf = self.load(&layout)?;
        let mut att = Attachment::new(module);
        for p in &programs::SERVER {
            att.attach(&mut ebpf, p)?;
        }
        tracing::info!(programs = att.attached(), "attached to the NFS server (nfsd)");
        self.ebpf = Some(ebpf);
        self.attachment = Some(att);
        Ok(())
    }

    /// Loads every server program without attaching (for `nasflow check`): `Ok(None)` while
    /// nfsd is not loaded.
    pub fn verify(&mut self) -> Result<Option<crate::Verified>, ProbeError> {
        if !self.nfsd_present() {
            return Ok(None);
        }
        let layout = self.read_layout()?;
        let mut ebpf = self.load(&layout)?;
        let out = programs::SERVER
            .iter()
            .map(|p| (p.name, crate::ensure_loaded(&mut ebpf, p).map_err(|e| crate::reason(&e))))
            .collect();
        Ok(Some(out))
    }

    /// The cumulative rows since the current load.
    pub fn snapshot(&self) -> Result<ServerSnapshot, ProbeError> {
        let mut snap = ServerSnapshot {
            attached: self.attachment.is_some(),
            load_generation: self.load_generation,
            ..ServerSnapshot::default()
        };
        let Some(ebpf) = self.ebpf.as_ref() else {
            return Ok(snap);
        };
        let counters: PerCpuHashMap<&MapData, SvcKey, SvcCounters> = open_map(ebpf, server_maps::COUNTERS)?;
        let hists: BpfHashMap<&MapData, SvcKey, nasflow_probe_bpf::IoHist> = open_map(ebpf, server_maps::HIST)?;
        let mut by_key: Vec<(SvcKey, ServerRow)> = Vec::new();
        for item in &counters {
            let (key, per_cpu) = item.map_err(|e| map_err(server_maps::COUNTERS, e))?;
            let mut row = row_of(&key);
            for c in per_cpu.iter() {
                row.ops += c.ops;
                row.bytes += c.bytes;
            }
            by_key.push((key, row));
        }
        for (key, row) in &mut by_key {
            if let Ok(h) = hists.get(key, 0) {
                row.latency = Histogram::from(&h);
            }
        }
        snap.series = (by_key.len() as u64, u64::from(self.max_series));
        snap.rows = by_key.into_iter().map(|(_, r)| r).collect();
        snap.rows.sort_by(|a, b| {
            (&a.fsid, &a.client, a.vers, &a.op, &a.status).cmp(&(&b.fsid, &b.client, b.vers, &b.op, &b.status))
        });
        let health: PerCpuArray<&MapData, u64> = open_map(ebpf, server_maps::HEALTH)?;
        for (i, name) in SVC_HEALTH.iter().enumerate() {
            let idx = u32::try_from(i).unwrap_or(u32::MAX);
            let total = health.get(&idx, 0).map_err(|e| map_err(server_maps::HEALTH, e))?.iter().sum::<u64>();
            snap.counters.push((name, total));
        }
        Ok(snap)
    }
}

fn op_name_key(name: &str) -> SvcOpName {
    let mut key = SvcOpName::default();
    let room = key.name.len() - 1;
    for (d, s) in key.name.iter_mut().zip(name.bytes().take(room)) {
        *d = s;
    }
    key
}

/// The row a kernel key stands for (counts zero).
fn row_of(key: &SvcKey) -> ServerRow {
    let fsid = (key.fsid_type != FSID_NONE).then(|| (key.fsid_type, fsid_hex(key.fsid_type, &key.fsid)));
    let end = key.addr.iter().position(|&b| b == 0).unwrap_or(key.addr.len());
    let client = String::from_utf8_lossy(&key.addr[..end]).trim_start_matches('[').trim_end_matches(']').to_owned();
    ServerRow {
        fsid,
        client,
        vers: key.vers,
        op: op_name(key.vers, key.op),
        status: status_name(key.vers, key.status),
        status_code: key.status,
        ops: 0,
        bytes: 0,
        latency: Histogram::default(),
    }
}

/// fsid bytes of each fsid type (the kernel's `key_len()`), 0 for unknown types.
#[must_use]
pub fn fsid_len(fsid_type: u8) -> usize {
    match fsid_type {
        0 | 3..=5 => 8,
        1 => 4,
        2 => 12,
        6 => 16,
        7 => 24,
        _ => 0,
    }
}

/// The fsid as `/proc/net/rpc/nfsd.fh/content` prints it: each 32-bit word of the handle, in
/// the host's byte order, as 8 hex digits.
#[must_use]
pub fn fsid_hex(fsid_type: u8, bytes: &[u8]) -> String {
    let n = fsid_len(fsid_type).min(bytes.len());
    let mut out = String::with_capacity(2 * n);
    for w in bytes[..n].chunks_exact(4) {
        let _ = write!(out, "{:08x}", u32::from_ne_bytes([w[0], w[1], w[2], w[3]]));
    }
    out
}

/// Reads a file handle's export identity: (fsid type, fsid hex) of a version-1 handle as
/// `struct knfsd_fh` holds it (a 4-byte size, then version, auth type, fsid type, fileid type
/// and the fsid); `None` for old-style or short handles.
#[must_use]
pub fn handle_fsid(handle: &[u8]) -> Option<(u8, String)> {
    let [version, _auth, fsid_type, _fileid_type, fsid @ ..] = handle else { return None };
    let len = fsid_len(*fsid_type);
    (*version == 1 && len > 0 && fsid.len() >= len).then(|| (*fsid_type, fsid_hex(*fsid_type, &fsid[..len])))
}

/// NFSv2/v3 procedure, NFSv4 operation or NFS ACL procedure name.
#[must_use]
pub fn op_name(vers: u8, op: u16) -> String {
    if op & SVC_OP_ACL != 0 && op != SVC_OP_UNKNOWN {
        let proc = op & !SVC_OP_ACL;
        let table: &[&str] = if vers == 2 { &ACL2_PROCS } else { &ACL3_PROCS };
        return table.get(usize::from(proc)).map_or_else(|| format!("NFSACL_PROC{proc}"), |s| (*s).to_owned());
    }
    let table: &[&str] = match vers {
        3 => &V3_PROCS,
        2 => &V2_PROCS,
        4 if op == 0 => return "NULL".into(),
        4 if op == SVC_OP_UNKNOWN => return "UNKNOWN".into(),
        4 => {
            return V4_OPS
                .iter()
                .find(|(n, _)| *n == op)
                .map_or_else(|| format!("OP{op}"), |(_, name)| (*name).to_owned())
        }
        _ => &[],
    };
    table.get(usize::from(op)).map_or_else(|| format!("PROC{op}"), |s| (*s).to_owned())
}

/// The name of a reply status: `None` for success, `NFS3ERR_*`/`NFS4ERR_*` for NFS failures,
/// `RPC_*` for calls the RPC layer refused.
#[must_use]
pub fn status_name(vers: u8, status: u16) -> Option<String> {
    if status == 0 {
        return None;
    }
    if status & SVC_RPC_ERROR != 0 {
        let name = match status & 0xff {
            1 => "PROG_UNAVAIL",
            2 => "PROG_MISMATCH",
            3 => "PROC_UNAVAIL",
            4 => "GARBAGE_ARGS",
            5 => "SYSTEM_ERR",
            _ => "ACCEPT_UNKNOWN",
        };
        return Some(format!("RPC_{name}"));
    }
    let prefix = if vers == 4 { "NFS4ERR" } else { "NFS3ERR" };
    let name = NFS_STATUS.iter().find(|(n, _)| *n == status).map(|(_, s)| *s);
    let name = match (vers, status, name) {
        (4, 10008, _) => "DELAY",
        (3 | 2, 10008, _) => "JUKEBOX",
        (_, _, Some(n)) => n,
        _ => return Some(format!("{prefix}_{status}")),
    };
    Some(format!("{prefix}_{name}"))
}

/// The NFS ACL program's procedures (served by nfsd beside NFSv2/v3), named apart from the
/// NFS procedures of the same number.
const ACL3_PROCS: [&str; 3] = ["NFSACL_NULL", "GETACL", "SETACL"];
const ACL2_PROCS: [&str; 5] = ["NFSACL_NULL", "GETACL", "SETACL", "NFSACL_GETATTR", "NFSACL_ACCESS"];

const V2_PROCS: [&str; 18] = [
    "NULL",
    "GETATTR",
    "SETATTR",
    "ROOT",
    "LOOKUP",
    "READLINK",
    "READ",
    "WRITECACHE",
    "WRITE",
    "CREATE",
    "REMOVE",
    "RENAME",
    "LINK",
    "SYMLINK",
    "MKDIR",
    "RMDIR",
    "READDIR",
    "STATFS",
];

const V3_PROCS: [&str; 22] = [
    "NULL",
    "GETATTR",
    "SETATTR",
    "LOOKUP",
    "ACCESS",
    "READLINK",
    "READ",
    "WRITE",
    "CREATE",
    "MKDIR",
    "SYMLINK",
    "MKNOD",
    "REMOVE",
    "RMDIR",
    "RENAME",
    "LINK",
    "READDIR",
    "READDIRPLUS",
    "FSSTAT",
    "FSINFO",
    "PATHCONF",
    "COMMIT",
];

/// NFSv4 operations (RFC 7530, 8881, 7862, 8276): number and name (nfsd spells it `OP_` and
/// the name).
pub const V4_OPS: [(u16, &str); 74] = [
    (3, "ACCESS"),
    (4, "CLOSE"),
    (5, "COMMIT"),
    (6, "CREATE"),
    (7, "DELEGPURGE"),
    (8, "DELEGRETURN"),
    (9, "GETATTR"),
    (10, "GETFH"),
    (11, "LINK"),
    (12, "LOCK"),
    (13, "LOCKT"),
    (14, "LOCKU"),
    (15, "LOOKUP"),
    (16, "LOOKUPP"),
    (17, "NVERIFY"),
    (18, "OPEN"),
    (19, "OPENATTR"),
    (20, "OPEN_CONFIRM"),
    (21, "OPEN_DOWNGRADE"),
    (22, "PUTFH"),
    (23, "PUTPUBFH"),
    (24, "PUTROOTFH"),
    (25, "READ"),
    (26, "READDIR"),
    (27, "READLINK"),
    (28, "REMOVE"),
    (29, "RENAME"),
    (30, "RENEW"),
    (31, "RESTOREFH"),
    (32, "SAVEFH"),
    (33, "SECINFO"),
    (34, "SETATTR"),
    (35, "SETCLIENTID"),
    (36, "SETCLIENTID_CONFIRM"),
    (37, "VERIFY"),
    (38, "WRITE"),
    (39, "RELEASE_LOCKOWNER"),
    (40, "BACKCHANNEL_CTL"),
    (41, "BIND_CONN_TO_SESSION"),
    (42, "EXCHANGE_ID"),
    (43, "CREATE_SESSION"),
    (44, "DESTROY_SESSION"),
    (45, "FREE_STATEID"),
    (46, "GET_DIR_DELEGATION"),
    (47, "GETDEVICEINFO"),
    (48, "GETDEVICELIST"),
    (49, "LAYOUTCOMMIT"),
    (50, "LAYOUTGET"),
    (51, "LAYOUTRETURN"),
    (52, "SECINFO_NO_NAME"),
    (53, "SEQUENCE"),
    (54, "SET_SSV"),
    (55, "TEST_STATEID"),
    (56, "WANT_DELEGATION"),
    (57, "DESTROY_CLIENTID"),
    (58, "RECLAIM_COMPLETE"),
    (59, "ALLOCATE"),
    (60, "COPY"),
    (61, "COPY_NOTIFY"),
    (62, "DEALLOCATE"),
    (63, "IO_ADVISE"),
    (64, "LAYOUTERROR"),
    (65, "LAYOUTSTATS"),
    (66, "OFFLOAD_CANCEL"),
    (67, "OFFLOAD_STATUS"),
    (68, "READ_PLUS"),
    (69, "SEEK"),
    (70, "WRITE_SAME"),
    (71, "CLONE"),
    (72, "GETXATTR"),
    (73, "SETXATTR"),
    (74, "LISTXATTRS"),
    (75, "REMOVEXATTR"),
    (10044, "ILLEGAL"),
];

/// nfsstat3 and nfsstat4 values (shared below 10000 and for the first v4 ones), by name.
const NFS_STATUS: [(u16, &str); 56] = [
    (1, "PERM"),
    (2, "NOENT"),
    (5, "IO"),
    (6, "NXIO"),
    (13, "ACCESS"),
    (17, "EXIST"),
    (18, "XDEV"),
    (19, "NODEV"),
    (20, "NOTDIR"),
    (21, "ISDIR"),
    (22, "INVAL"),
    (27, "FBIG"),
    (28, "NOSPC"),
    (30, "ROFS"),
    (31, "MLINK"),
    (63, "NAMETOOLONG"),
    (66, "NOTEMPTY"),
    (69, "DQUOT"),
    (70, "STALE"),
    (71, "REMOTE"),
    (10001, "BADHANDLE"),
    (10002, "NOT_SYNC"),
    (10003, "BAD_COOKIE"),
    (10004, "NOTSUPP"),
    (10005, "TOOSMALL"),
    (10006, "SERVERFAULT"),
    (10007, "BADTYPE"),
    (10009, "SAME"),
    (10010, "DENIED"),
    (10011, "EXPIRED"),
    (10012, "LOCKED"),
    (10013, "GRACE"),
    (10014, "FHEXPIRED"),
    (10015, "SHARE_DENIED"),
    (10016, "WRONGSEC"),
    (10017, "CLID_INUSE"),
    (10018, "RESOURCE"),
    (10019, "MOVED"),
    (10020, "NOFILEHANDLE"),
    (10021, "MINOR_VERS_MISMATCH"),
    (10022, "STALE_CLIENTID"),
    (10023, "STALE_STATEID"),
    (10024, "OLD_STATEID"),
    (10025, "BAD_STATEID"),
    (10026, "BAD_SEQID"),
    (10027, "NOT_SAME"),
    (10028, "LOCK_RANGE"),
    (10029, "SYMLINK"),
    (10030, "RESTOREFH"),
    (10032, "ATTRNOTSUPP"),
    (10033, "NO_GRACE"),
    (10036, "BADXDR"),
    (10038, "OPENMODE"),
    (10041, "BADNAME"),
    (10045, "DEADLOCK"),
    (10052, "BADSESSION"),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn format(dir: &str, event: &str) -> Option<String> {
        fs::read_to_string(format!("{}/tests/fixtures/formats/{dir}/{event}", env!("CARGO_MANIFEST_DIR"))).ok()
    }

    #[test]
    fn layouts_of_the_three_kernels() {
        for dir in ["5.10", "6.1", "6.12"] {
            let l = server_layout_from(|_, e| format(dir, e)).expect(dir);
            assert_eq!((l.proc_addr.offset, l.proc_service.offset, l.proc_proc.offset), (28, 20, 16), "{dir}");
            assert_eq!((l.read_len.offset, l.read_len.size), (24, 4), "{dir}");
            assert_eq!((l.op_status.offset, l.op_name.offset), (16, 20), "{dir}");
            assert_eq!((l.send_xid.offset, l.send_head.offset, l.send_head.size), (8, 16, 8), "{dir}");
        }
    }

    #[test]
    fn a_missing_event_is_named() {
        let e = server_layout_from(|_, e| if e == "nfsd_compound_status" { None } else { format("6.1", e) })
            .expect_err("no compound status");
        assert!(e.to_string().contains("nfsd:nfsd_compound_status"), "{e}");
    }

    /// Handle bytes as the kernel builds them (after the 4-byte size), one per fsid type:
    /// `FSID_NUM` from the VM suite's `fsid=1` export, the others as `fh_compose` lays them out.
    #[test]
    fn handles_of_every_fsid_type() {
        let cases: [(&[u8], u8, &str); 8] = [
            (&[1, 0, 0, 1, 0, 8, 0, 1, 2, 0, 0, 0], 0, "0100080000000002"),
            (&[1, 0, 1, 0, 1, 0, 0, 0, 0x81, 0, 0, 0], 1, "00000001"),
            (&[1, 0, 2, 1, 0, 0, 0, 8, 0, 0, 0, 3, 2, 0, 0, 0], 2, "080000000300000000000002"),
            (&[1, 0, 3, 1, 0x03, 0x08, 0, 0, 2, 0, 0, 0], 3, "0000080300000002"),
            (&[1, 0, 4, 1, 0xde, 0xad, 0xbe, 0xef, 2, 0, 0, 0], 4, "efbeadde00000002"),
            (&[1, 0, 5, 1, 1, 2, 3, 4, 5, 6, 7, 8], 5, "0403020108070605"),
            (
                &[1, 0, 6, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
                6,
                "04030201080706050c0b0a09100f0e0d",
            ),
            (
                &[1, 0, 7, 1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16],
                7,
                "000000020000000004030201080706050c0b0a09100f0e0d",
            ),
        ];
        for (bytes, t, hex) in cases {
            let (ty, got) = handle_fsid(bytes).expect("a version 1 handle");
            assert_eq!(ty, t);
            assert_eq!(got, hex, "fsid type {t}");
        }
        assert_eq!(handle_fsid(&[0, 0, 1, 0, 1, 0, 0, 0]), None, "version 0");
        assert_eq!(handle_fsid(&[1, 0, 7, 1, 0, 0]), None, "too short for its type");
        assert_eq!(handle_fsid(&[1, 0, 9, 1, 0, 0, 0, 0]), None, "unknown type");
    }

    #[test]
    fn names_of_operations_and_statuses() {
        assert_eq!(op_name(3, 7), "WRITE");
        assert_eq!(op_name(3, 21), "COMMIT");
        assert_eq!(op_name(4, 25), "READ");
        assert_eq!(op_name(4, 53), "SEQUENCE");
        assert_eq!(op_name(4, SVC_OP_UNKNOWN), "UNKNOWN");
        assert_eq!(op_name(3, 40), "PROC40");
        assert_eq!(op_name(3, SVC_OP_ACL | 1), "GETACL");
        assert_eq!(op_name(3, SVC_OP_ACL), "NFSACL_NULL");
        assert_eq!(status_name(3, 0), None);
        assert_eq!(status_name(3, 70).as_deref(), Some("NFS3ERR_STALE"));
        assert_eq!(status_name(4, 28).as_deref(), Some("NFS4ERR_NOSPC"));
        assert_eq!(status_name(4, 10008).as_deref(), Some("NFS4ERR_DELAY"));
        assert_eq!(status_name(3, 10008).as_deref(), Some("NFS3ERR_JUKEBOX"));
        assert_eq!(status_name(3, SVC_RPC_ERROR | 3).as_deref(), Some("RPC_PROC_UNAVAIL"));
        assert_eq!(status_name(4, 12345).as_deref(), Some("NFS4ERR_12345"));
    }

    #[test]
    fn row_of_a_kernel_key() {
        let mut key = SvcKey { fsid_type: 1, vers: 4, op: 38, status: 28, ..SvcKey::default() };
        key.fsid[..4].copy_from_slice(&2u32.to_ne_bytes());
        key.addr[..9].copy_from_slice(b"127.0.0.1");
        let row = row_of(&key);
        assert_eq!(row.fsid, Some((1, "00000002".into())));
        assert_eq!((row.client.as_str(), row.op.as_str(), row.direction()), ("127.0.0.1", "WRITE", Some("write")));
        assert_eq!(row.status.as_deref(), Some("NFS4ERR_NOSPC"));
        let mut v6 = SvcKey { fsid_type: FSID_NONE, vers: 4, op: 53, ..SvcKey::default() };
        v6.addr[..5].copy_from_slice(b"[::1]");
        let row = row_of(&v6);
        assert_eq!((row.fsid, row.client.as_str()), (None, "::1"));
    }
}
