//! Map element commands on a map's fd: `BPF_MAP_LOOKUP_AND_DELETE_ELEM`, which aya 0.14 does
//! not offer for hash maps (hash and per-CPU hash maps support it since Linux 5.14): it hands
//! out a key's final value and deletes it in one step, so no increment lands between the read
//! and the deletion. Plain lookup and delete are the fallback for older kernels.

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

/// `BPF_MAP_LOOKUP_ELEM` in `enum bpf_cmd` (linux/bpf.h).
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
/// `BPF_MAP_DELETE_ELEM`.
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
/// `BPF_MAP_GET_NEXT_KEY`.
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM`.
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;

/// The map-element part of `union bpf_attr`.
#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// What a lookup-and-delete found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Taken {
    /// The key held this value and is gone now.
    Value,
    /// The key was not there (deleted or never created).
    Absent,
    /// This kernel cannot do it for this map type (before 5.14).
    Unsupported,
}

/// Runs one map element command; `Taken::Value` on success.
///
/// # Safety
/// `key` must point to the map's key size and `value` (when the command writes one) to a
/// writable buffer of its value size (times the possible CPUs for per-CPU maps).
unsafe fn elem(cmd: libc::c_long, fd: BorrowedFd<'_>, key: *const u8, value: *mut u8) -> io::Result<Taken> {
    let attr = MapElemAttr {
        map_fd: u32::try_from(fd.as_raw_fd()).map_err(io::Error::other)?,
        pad: 0,
        key: key as u64,
        value: value as u64,
        flags: 0,
    };
    // SAFETY: `attr` is a valid bpf_attr prefix for the element commands; the caller vouches
    // for the key and value buffers.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, &raw const attr, size_of::<MapElemAttr>()) };
    if rc == 0 {
        return Ok(Taken::Value);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOENT) => Ok(Taken::Absent),
        // EINVAL or ENOTSUPP (524, kernel-internal) from kernels that lack lookup-and-delete
        // for hash maps.
        Some(libc::EINVAL | libc::EOPNOTSUPP | 524) if cmd == BPF_MAP_LOOKUP_AND_DELETE_ELEM => Ok(Taken::Unsupported),
        _ => Err(e),
    }
}

/// Looks `key` up, writes its value to `value` (for per-CPU maps, one slot of
/// `round_up(value_size, 8)` bytes per possible CPU) and deletes it, atomically.
///
/// # Safety
/// As for [`elem`].
pub(crate) unsafe fn lookup_and_delete(fd: BorrowedFd<'_>, key: *const u8, value: *mut u8) -> io::Result<Taken> {
    // SAFETY: forwarded.
    unsafe { elem(BPF_MAP_LOOKUP_AND_DELETE_ELEM, fd, key, value) }
}

/// Looks `key` up into `value`.
///
/// # Safety
/// As for [`elem`].
pub(crate) unsafe fn lookup(fd: BorrowedFd<'_>, key: *const u8, value: *mut u8) -> io::Result<Taken> {
    // SAFETY: forwarded.
    unsafe { elem(BPF_MAP_LOOKUP_ELEM, fd, key, value) }
}

/// Deletes `key`.
///
/// # Safety
/// `key` must point to the map's key size.
pub(crate) unsafe fn delete(fd: BorrowedFd<'_>, key: *const u8) -> io::Result<Taken> {
    // SAFETY: forwarded; the command writes no value.
    unsafe { elem(BPF_MAP_DELETE_ELEM, fd, key, std::ptr::null_mut()) }
}

/// Keys in a hash map: `key_size`-byte keys walked with `BPF_MAP_GET_NEXT_KEY` (only the keys
/// cross into user space). Bounded by the map's capacity.
pub(crate) fn count_keys(fd: BorrowedFd<'_>, key_size: usize, max: u64) -> io::Result<u64> {
    let mut key = vec![0u8; key_size];
    let mut next = vec![0u8; key_size];
    let mut n = 0;
    let mut first = true;
    while n <= max {
        let attr = MapElemAttr {
            map_fd: u32::try_from(fd.as_raw_fd()).map_err(io::Error::other)?,
            pad: 0,
            // A null key asks for the first key.
            key: if first { 0 } else { key.as_ptr() as u64 },
            value: next.as_mut_ptr() as u64,
            flags: 0,
        };
        // SAFETY: `attr` is a valid bpf_attr prefix for BPF_MAP_GET_NEXT_KEY; `key` and `next`
        // hold the map's key size.
        let rc =
            unsafe { libc::syscall(libc::SYS_bpf, BPF_MAP_GET_NEXT_KEY, &raw const attr, size_of::<MapElemAttr>()) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::ENOENT) { Ok(n) } else { Err(e) };
        }
        n += 1;
        first = false;
        std::mem::swap(&mut key, &mut next);
    }
    Ok(n)
}

/// The kernel's page size: a BPF ring buffer is a power-of-two multiple of it (4 KiB on
/// x86-64, up to 64 KiB on arm64).
pub(crate) fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions; a failure returns -1, handled below.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(page).ok().filter(|p| p.is_power_of_two()).unwrap_or(4096)
}
