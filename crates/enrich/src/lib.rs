//! Names what the probe counted: cgroup ids to cgroup paths (and, later, to pods, containers,
//! owners and tasks), devices to NAS mounts. Pure parsers are separate from the caches and the
//! background tasks that refresh them; lookups on the export path never do I/O.

pub mod cgroup;
pub mod container;
pub mod directories;
pub mod errno;
pub mod exports;
pub mod kubelet;
pub mod mountinfo;
pub mod names;
pub mod refresh;

use std::{io, path::PathBuf};

/// An error with its causes, `a: b: c`. HTTP and TLS clients put the reason an operator needs
/// (refused connection, unknown issuer) in the sources, not in their own message.
#[must_use]
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}

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
