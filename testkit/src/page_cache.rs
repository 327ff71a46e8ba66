//! What a test sees of the page cache: how many pages of a file's range are cached
//! ([`cached_pages`], by `mincore`), and a temporary directory whose files have page-cache pages
//! to drop ([`disk_backed_tempdir`]) — for tests of code that drops pages it will not read
//! again. node-core's durability tests keep a copy (node-core cannot use testkit, which uses it).

use std::fs::File;
use std::ops::Range;
use std::os::fd::AsRawFd;

/// The page size of the page cache.
pub fn page_bytes() -> usize {
    node_core::page_cache::page_bytes() as usize
}

/// How many pages of `range` of `file` are in the page cache (`mincore` of a mapping that is
/// never touched, so it faults nothing in).
pub fn cached_pages(file: &File, range: Range<u64>) -> usize {
    let len = usize::try_from(range.end - range.start).expect("a range that can be mapped");
    let mut resident = vec![0u8; len.div_ceil(page_bytes())];
    let offset = libc::off_t::try_from(range.start).expect("an offset mmap takes");
    // SAFETY: a read-only shared mapping of `len` bytes of the open file, never read and
    // unmapped before returning; mincore writes one byte per page of it into `resident`, which
    // has that many.
    unsafe {
        let addr = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            offset,
        );
        assert_ne!(addr, libc::MAP_FAILED, "mmap of the file");
        assert_eq!(
            libc::mincore(addr, len, resident.as_mut_ptr()),
            0,
            "mincore"
        );
        libc::munmap(addr, len);
    }
    resident.iter().filter(|&&byte| byte & 1 == 1).count()
}

/// A temporary directory on a disk-backed file system: the kernel keeps tmpfs pages whatever it
/// is advised, so with a tmpfs `/tmp` it is made under `fallback` (a crate's own directory).
pub fn disk_backed_tempdir(fallback: &str) -> tempfile::TempDir {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes())
        .expect("a path without NUL");
    // SAFETY: statfs writes into `stats`, a zeroed struct of its type, during the call.
    let f_type = unsafe {
        let mut stats: libc::statfs = std::mem::zeroed();
        assert_eq!(libc::statfs(path.as_ptr(), &mut stats), 0, "statfs");
        stats.f_type as i64
    };
    if f_type == TMPFS_MAGIC {
        return tempfile::tempdir_in(fallback).expect("a temporary directory");
    }
    dir
}
