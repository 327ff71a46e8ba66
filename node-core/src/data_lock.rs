//! One process per data directory: an exclusive advisory lock (`flock`) on `<data_dir>/.lock`,
//! held for the life of the process and released by the kernel when it exits, however it exits.
//!
//! Two nodes writing the same data directory would corrupt it (interleaved appends, dumps
//! overwriting each other); a dht node and a `dhtdump` writing the same dump files race on their
//! renames; an offline tool that truncates files (`logfiles_check --repair`) must not run under a
//! live node. All of them take this lock; the second is refused with a message naming the
//! directory and the holder (process id and program name, written in the lock file).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The lock file's name in the data directory (defined with the names every data directory
/// shares, which crates without the server parts use too).
pub use crate::data_dir::LOCK_FILE_NAME;

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
        // A FIFO would take the lock, but a second process reading the holder from it would
        // wait for ever (the first holds it open for writing).
        crate::data_dir::refuse_not_regular(&path, "the data directory's lock")
            .map_err(|e| e.to_string())?;
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
                return Err(format!(
                    "data directory {} is in use by another process ({}); one process (node, \
                     dhtdump or repair tool) per data directory",
                    data_dir.display(),
                    describe_holder(&holder)
                ));
            }
            return Err(format!("cannot lock {}: {err}", path.display()));
        }
        // For operators: who holds it. Failing to write it does not matter for the lock.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{} {}", std::process::id(), program_name()));
        Ok(DataDirLock { _file: file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// This process's program name (the file name of its executable), for the lock file.
fn program_name() -> String {
    std::env::args_os()
        .next()
        .as_deref()
        .map(Path::new)
        .and_then(Path::file_name)
        .map(|name| name.to_string_lossy().replace(char::is_whitespace, "_"))
        .unwrap_or_else(|| "unknown".into())
}

/// "pid 123, dhtnode" from a lock file's `<pid> <program>` line (a bare pid from older versions;
/// anything else shown as it is, at most 64 characters).
fn describe_holder(content: &str) -> String {
    let line = content.lines().next().unwrap_or("").trim();
    let shown: String = line.chars().take(64).collect();
    match shown.split_once(' ') {
        _ if shown.is_empty() => "pid unknown".into(),
        Some((pid, program)) => format!("pid {pid}, {}", program.trim()),
        None => format!("pid {shown}"),
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
        let holder = format!("(pid {}, {})", std::process::id(), program_name());
        assert!(refused.contains(&holder), "{refused}");
        drop(first);
        DataDirLock::acquire(&data).expect("free again");
    }
}
