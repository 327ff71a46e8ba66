//! One process per data directory: an exclusive advisory lock (`flock`) on `<data_dir>/.lock`,
//! held for the life of the process and released by the kernel when it exits, however it exits.
//!
//! Two nodes writing the same data directory would corrupt it (interleaved appends, dumps
//! overwriting each other); an offline tool that truncates files (`logfiles_check --repair`)
//! must not run under a live node. Both take this lock; the second is refused with a message
//! naming the directory and the process id written in the lock file.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory.
pub const LOCK_FILE_NAME: &str = ".lock";

/// The held lock; dropping it releases it.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock of `data_dir` (created if missing), or says who holds it.
    pub fn acquire(data_dir: &Path) -> Result<DataDirLock, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", data_dir.display()))?;
        let path = data_dir.join(LOCK_FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // SAFETY: flock on a file descriptor we own, valid for the duration of the call.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(format!(
                    "data directory {} is in use by another process (pid {}); one node (or \
                     repair tool) per data directory",
                    data_dir.display(),
                    if holder.is_empty() { "unknown" } else { holder }
                ));
            }
            return Err(format!("cannot lock {}: {err}", path.display()));
        }
        // For operators: who holds it. Failing to write it does not matter for the lock.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(DataDirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = DataDirLock::acquire(&data).expect("first");
        let refused = DataDirLock::acquire(&data).expect_err("second");
        assert!(refused.contains("in use by another process"), "{refused}");
        assert!(
            refused.contains(&std::process::id().to_string()),
            "{refused}"
        );
        drop(first);
        DataDirLock::acquire(&data).expect("free again");
    }
}
