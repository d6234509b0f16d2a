//! Names what the probe counted: cgroup ids to cgroup paths (and, later, to pods, containers,
//! owners and tasks), devices to NAS mounts. Pure parsers are separate from the caches and the
//! background tasks that refresh them; lookups on the export path never do I/O.

pub mod cgroup;
pub mod errno;

use std::{io, path::PathBuf};

/// Why a naming source could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EnrichError {
    /// A file or directory could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Neither a cgroup v2 mount nor a v1 memory hierarchy was found.
    #[error("{root} has no cgroup v2 mount and no cgroup v1 memory hierarchy (set --cgroup-root to the host's cgroup mount)")]
    NoCgroupHierarchy {
        /// The directory looked at.
        root: PathBuf,
    },
}
