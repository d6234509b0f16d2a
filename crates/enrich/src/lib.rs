//! Names what the probe counted: cgroup ids to cgroup paths (and, later, to pods, containers,
//! owners and tasks), devices to NAS mounts. Pure parsers are separate from the caches and the
//! background tasks that refresh them; lookups on the export path never do I/O.

pub mod cgroup;
pub mod container;
pub mod errno;
pub mod kubelet;
pub mod mountinfo;
pub mod names;
pub mod refresh;

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
    /// The kubelet's answer was not a PodList.
    #[error("kubelet /pods: not a PodList: {detail}")]
    BadPodList {
        /// What the parser said.
        detail: String,
    },
    /// The kubelet could not be reached or refused.
    #[error("kubelet {url}: {detail}")]
    Kubelet {
        /// The URL asked.
        url: String,
        /// What went wrong.
        detail: String,
    },
    /// Neither a cgroup v2 mount nor a v1 memory hierarchy was found.
    #[error("{root} has no cgroup v2 mount and no cgroup v1 memory hierarchy (set --cgroup-root to the host's cgroup mount)")]
    NoCgroupHierarchy {
        /// The directory looked at.
        root: PathBuf,
    },
}
