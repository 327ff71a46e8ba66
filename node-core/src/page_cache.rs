//! Advice to the kernel about a file's pages in the page cache, built without the `server`
//! feature: the dht's change log is written once and read only at a restart, so its writer
//! (dht-persist), the sync thread that makes it durable (node-core's `server::durability`) and
//! its reader at start-up each tell the kernel what to keep. Advice only: a failure changes
//! nothing but what stays cached.

use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;

/// The page size of the page cache (4 KiB when the system does not say).
pub fn page_bytes() -> u64 {
    // SAFETY: sysconf reads no memory of ours.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size)
        .ok()
        .filter(|&size| size > 0)
        .unwrap_or(4096)
}

/// Drops the clean pages wholly inside `range` of `file` from the page cache
/// (`POSIX_FADV_DONTNEED`; `0..u64::MAX`: the whole file).
pub fn drop_range(file: &File, range: &Range<u64>) {
    advise(file, range, libc::POSIX_FADV_DONTNEED);
}

/// Asks the kernel to start reading `file` into the page cache (`POSIX_FADV_WILLNEED`, which the
/// kernel caps at its read-ahead window).
pub fn read_ahead(file: &File) {
    advise(file, &(0..u64::MAX), libc::POSIX_FADV_WILLNEED);
}

/// `posix_fadvise` over `range` (to the end of the file when it ends at `u64::MAX`).
fn advise(file: &File, range: &Range<u64>, advice: libc::c_int) {
    let len = if range.end == u64::MAX {
        Some(0)
    } else {
        range.end.checked_sub(range.start).filter(|&len| len > 0)
    };
    let (Ok(offset), Some(Ok(len))) = (
        libc::off_t::try_from(range.start),
        len.map(libc::off_t::try_from),
    ) else {
        return;
    };
    // SAFETY: posix_fadvise takes no pointers; the descriptor is the open file's, held by `file`.
    let result = unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, advice) };
    if result != 0 {
        tracing::debug!("posix_fadvise({advice}) of bytes {range:?}: error {result}");
    }
}
