//! The size and free space of the file system holding the data directory, for the node's stats
//! (`disk_size_bytes`, `disk_free_bytes`) and so for `swarmctl health`: a logfiles node stores
//! everything on disk, and a full disk fails every Put.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Bytes of the file system, and bytes available to the node (not counting blocks reserved for
/// root).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    pub size_bytes: u64,
    pub free_bytes: u64,
}

/// `statvfs` of the file system that holds `path`.
// The fields are u64 on 64-bit Linux but narrower on 32-bit targets: the conversions stay.
#[allow(clippy::useless_conversion)]
pub fn disk_space(path: &Path) -> io::Result<DiskSpace> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    // SAFETY: statvfs is plain data; all-zero bytes are a valid value of it.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call, and `stat` is a
    // valid, writable statvfs.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let fragment = u64::from(stat.f_frsize);
    Ok(DiskSpace {
        size_bytes: u64::from(stat.f_blocks).saturating_mul(fragment),
        free_bytes: u64::from(stat.f_bavail).saturating_mul(fragment),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_has_a_file_system_with_some_space() {
        let dir = tempfile::tempdir().expect("tempdir");
        let space = disk_space(dir.path()).expect("statvfs");
        assert!(space.size_bytes > 0);
        assert!(space.free_bytes <= space.size_bytes);
        assert!(disk_space(&dir.path().join("missing")).is_err());
    }
}
