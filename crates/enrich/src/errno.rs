//! errno numbers to their names, for `error.type`. Linux numbers (the same on `x86_64` and
//! arm64), plus the kernel-internal NFS codes (512 and up) that RPC status can carry.

/// The symbolic name of a positive errno, or `E<number>` for one nasflow does not know.
#[must_use]
pub fn errno_name(errno: u16) -> String {
    let known = match errno {
        1 => "EPERM",
        2 => "ENOENT",
        4 => "EINTR",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        9 => "EBADF",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        16 => "EBUSY",
        17 => "EEXIST",
        18 => "EXDEV",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        23 => "ENFILE",
        24 => "EMFILE",
        26 => "ETXTBSY",
        27 => "EFBIG",
        28 => "ENOSPC",
        30 => "EROFS",
        31 => "EMLINK",
        36 => "ENAMETOOLONG",
        37 => "ENOLCK",
        38 => "ENOSYS",
        39 => "ENOTEMPTY",
        61 => "ENODATA",
        71 => "EPROTO",
        75 => "EOVERFLOW",
        95 => "EOPNOTSUPP",
        103 => "ECONNABORTED",
        104 => "ECONNRESET",
        107 => "ENOTCONN",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        112 => "EHOSTDOWN",
        113 => "EHOSTUNREACH",
        116 => "ESTALE",
        121 => "EREMOTEIO",
        122 => "EDQUOT",
        512 => "ERESTARTSYS",
        521 => "EBADHANDLE",
        522 => "ENOTSYNC",
        523 => "EBADCOOKIE",
        524 => "ENOTSUPP",
        525 => "ETOOSMALL",
        526 => "ESERVERFAULT",
        527 => "EBADTYPE",
        528 => "EJUKEBOX",
        529 => "EIOCBQUEUED",
        _ => return format!("E{errno}"),
    };
    known.to_owned()
}

#[cfg(test)]
mod tests {
    use super::errno_name;

    #[test]
    fn names_common_nfs_errors() {
        assert_eq!(errno_name(5), "EIO");
        assert_eq!(errno_name(116), "ESTALE");
        assert_eq!(errno_name(122), "EDQUOT");
        assert_eq!(errno_name(528), "EJUKEBOX");
        assert_eq!(errno_name(999), "E999");
    }
}
