//! What the probe needs from the kernel, as questions `Probe` and `nasflow check` ask alike:
//! one place for each path and each rule (BTF, tracefs, the nfs module, which tracepoints
//! this kernel has and whether their layouts are usable).

use std::{
    fs,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use nasflow_probe_bpf::{Layout, RpcLayout};

use crate::{tracefs::Tracefs, ProbeError};

/// Where the kernel publishes its own BTF; without it CO-RE cannot work.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Where a loaded nfs client module shows; its inode changes with every load.
pub const NFS_MODULE: &str = "/sys/module/nfs";

/// `major.minor` of a kernel release string (`6.1.0-56-amd64` gives (6, 1)).
#[must_use]
pub fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.trim().split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// This kernel's release (`/proc/sys/kernel/osrelease`).
#[must_use]
pub fn kernel_release() -> Option<String> {
    fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_owned())
}

/// This kernel's `major.minor`.
#[must_use]
pub fn kernel_version() -> Option<(u32, u32)> {
    kernel_release().as_deref().and_then(parse_kernel_version)
}

/// Kernel BTF at `path`, or the error that says what to do.
pub fn btf(path: &Path) -> Result<(), ProbeError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(ProbeError::NoBtf { path: path.to_owned() })
    }
}

/// The inode of [`NFS_MODULE`]: which load of the module this is; `None` when it is not
/// loaded (or built in).
#[must_use]
pub fn nfs_module_inode() -> Option<u64> {
    fs::metadata(NFS_MODULE).ok().map(|m| m.ino())
}

/// Whether the nfs client module is loaded.
#[must_use]
pub fn nfs_module_loaded() -> bool {
    Path::new(NFS_MODULE).exists()
}

/// The state of the READ/WRITE/COMMIT tracepoints.
#[derive(Debug)]
pub enum DataPath {
    /// Present, and every field the programs read is usable.
    Ready(Layout),
    /// The nfs module is not loaded yet: the probe attaches when it is.
    NotLoaded,
    /// The module is loaded but its tracepoints are missing (a kernel without NFS tracing).
    NoEvents,
    /// Present, with a layout nasflow cannot read.
    Unsupported(ProbeError),
}

/// Reads the data path's tracepoint layouts.
#[must_use]
pub fn data_path(tracefs: &Tracefs) -> DataPath {
    match tracefs.read_layout() {
        Ok(Some(l)) => DataPath::Ready(l),
        Ok(None) if nfs_module_loaded() => DataPath::NoEvents,
        Ok(None) => DataPath::NotLoaded,
        Err(e) => DataPath::Unsupported(e),
    }
}

/// The state of the sunrpc tracepoints (every RPC, rtt, retransmissions).
#[derive(Debug)]
pub enum RpcTracing {
    /// Every event, retransmissions included.
    Full(RpcLayout),
    /// Every event but `xprt_retransmit` (kernels before 5.12): no retransmission counts.
    NoRetransmits(RpcLayout),
    /// No sunrpc events at all (module not loaded, or no tracing).
    Absent,
    /// Present, with a layout nasflow cannot read.
    Unsupported(ProbeError),
}

impl RpcTracing {
    /// The layout the RPC programs are loaded with, when usable.
    #[must_use]
    pub fn layout(self) -> Option<RpcLayout> {
        match self {
            Self::Full(l) | Self::NoRetransmits(l) => Some(l),
            Self::Absent | Self::Unsupported(_) => None,
        }
    }
}

/// Reads the sunrpc and hint tracepoint layouts.
#[must_use]
pub fn rpc_tracing(tracefs: &Tracefs) -> RpcTracing {
    if !tracefs.has_event("sunrpc", crate::tracefs::rpc_events()[0]) {
        return RpcTracing::Absent;
    }
    match tracefs.read_rpc_layout() {
        Ok(l) if has_retransmits(&l) => RpcTracing::Full(l),
        Ok(l) => RpcTracing::NoRetransmits(l),
        Err(e) => RpcTracing::Unsupported(e),
    }
}

/// Whether this kernel has `xprt_retransmit` (its fields are in the layout).
#[must_use]
pub fn has_retransmits(l: &RpcLayout) -> bool {
    l.rtx_task_id.size > 0
}

/// The mounted tracefs among [`crate::tracefs::TRACEFS_PATHS`], if any (mounts nothing).
#[must_use]
pub fn mounted_tracefs() -> Option<Tracefs> {
    crate::tracefs::TRACEFS_PATHS
        .iter()
        .find(|p| Path::new(p).join("events").is_dir())
        .map(|p| Tracefs::at(PathBuf::from(p)))
}
