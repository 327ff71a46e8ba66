//! File names every node's data directory shares, built without the `server` feature: a crate
//! that only reads and writes a data directory (`dht-persist`, used by `dhtdump` and `dumptool`
//! too) must recognise these files when it scans one, without building the server parts that
//! create them. Also the one check of a file a node opens by a fixed name ([`not_regular`]):
//! one made a FIFO by hand would block the start that opens it; and the one way a node creates
//! its temporary files ([`create_fresh`]), which never opens what is already there.

use std::fs::{File, FileType};
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;

/// The lock file that keeps one process per data directory (`data_lock`, with the `server`
/// feature): `<data_dir>/.lock`, holding the holder's `<pid> <program>`.
pub const LOCK_FILE_NAME: &str = ".lock";

/// What an entry of type `file_type` is, for messages: "a regular file", "a FIFO", ...
pub fn describe_file_type(file_type: FileType) -> &'static str {
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device file"
    } else {
        "an entry of another type"
    }
}

/// What `path` is when it is there but is not a regular file (a symbolic link is followed, as
/// opening it would): `Some("a FIFO")`, `Some("a directory")`, ... `None` when it is a regular
/// file, is missing, or its type cannot be read (opening it then reports why). A file a node
/// opens by a fixed name is checked with this first: opening a FIFO to read blocks until
/// something writes to it, so the start would hang without a word.
pub fn not_regular(path: &Path) -> Option<&'static str> {
    match std::fs::metadata(path) {
        Ok(meta) if !meta.is_file() => Some(describe_file_type(meta.file_type())),
        _ => None,
    }
}

/// What the entry at `path` is when a scan passes it over for not being a regular file (a
/// symbolic link is followed): `Some("a FIFO")`, ..., `Some("an entry whose type cannot be read
/// (...)")`; `None` for a regular file. For the WARN naming what was passed over.
pub fn passed_over_entry(path: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => None,
        Ok(meta) => Some(describe_file_type(meta.file_type()).to_owned()),
        Err(error) => Some(format!("an entry whose type cannot be read ({error})")),
    }
}

/// `Err` naming `path` and what it is when it is there but not a regular file ([`not_regular`]),
/// for the files a node refuses to start without: `what` says what the file is for, and the
/// message what to do.
pub fn refuse_not_regular(path: &Path, what: &str) -> io::Result<()> {
    match not_regular(path) {
        None => Ok(()),
        Some(kind) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} ({what}) is {kind}, not a regular file: the node does not open it (a FIFO \
                 would block the start); move it away",
                path.display()
            ),
        )),
    }
}

/// Creates the temporary file `path` afresh for writing, removing whatever is there first: the
/// leftover of a write a crash interrupted, or a FIFO (a socket, a symbolic link) put there by
/// hand, which opening to write would block on until something reads it — the event loop or
/// worker writing it would hang without a word. For every temporary file a node writes and
/// renames into place: the file is the node's own, so nothing there is worth keeping. A
/// directory in its place is not removed: the error names it.
pub fn create_fresh(path: &Path) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => {}
        Err(error) => return Err(error),
    }
    // `create_new`: should something recreate it in between, that is an error, never an open.
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Replaces `path` with a file holding `bytes`, whole or not at all, and durably: written to
/// `tmp` (afresh, [`create_fresh`]) and fdatasynced, renamed over `path`, and the directory
/// synced so the rename survives a crash. A failed write removes `tmp`. For the small files a
/// node keeps its state in (the dht's state file, `wal/covered`, `wal/jump-base`).
pub fn replace_file(tmp: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let written = create_fresh(tmp).and_then(|mut file| {
        file.write_all(bytes)?;
        file.sync_data()
    });
    if let Err(error) = written {
        let _ = std::fs::remove_file(tmp);
        return Err(error);
    }
    std::fs::rename(tmp, path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Fsyncs `dir`'s entries, so that the files created, renamed or removed in it survive a
/// crash.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads the small file at `path` (at most `max_bytes`): `Ok(None)` when it is missing, `Err`
/// naming the file and the problem when it is not a regular file ([`not_regular`]: a FIFO would
/// block the read), cannot be read, or is longer. For the small files beside a node's data
/// (the dht log's `covered` and `jump-base`), whose damage the caller names the same way.
pub fn read_small_file(path: &Path, max_bytes: u64) -> Result<Option<Vec<u8>>, String> {
    use std::io::Read;
    if let Some(kind) = not_regular(path) {
        return Err(format!("{}: {kind}, not a regular file", path.display()));
    }
    let mut bytes = Vec::new();
    let read = File::open(path).and_then(|file| file.take(max_bytes + 1).read_to_end(&mut bytes));
    match read {
        Ok(_) if bytes.len() as u64 > max_bytes => {
            Err(format!("{}: longer than {max_bytes} bytes", path.display()))
        }
        Ok(_) => Ok(Some(bytes)),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(format!("{}: {error}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `testkit::mkfifo`, which this crate cannot use (testkit uses it).
    fn mkfifo(path: &Path) {
        let made = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .unwrap();
        assert!(made.success());
    }

    #[test]
    fn only_what_is_there_and_not_a_regular_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(not_regular(&file), None);
        assert_eq!(not_regular(&dir.path().join("missing")), None);
        assert_eq!(not_regular(dir.path()), Some("a directory"));
        let fifo = dir.path().join("fifo");
        mkfifo(&fifo);
        assert_eq!(not_regular(&fifo), Some("a FIFO"));
        assert_eq!(passed_over_entry(&file), None);
        assert_eq!(passed_over_entry(&fifo).as_deref(), Some("a FIFO"));
        let missing = passed_over_entry(&dir.path().join("missing")).unwrap();
        assert!(
            missing.starts_with("an entry whose type cannot be read ("),
            "{missing}"
        );
        let error = refuse_not_regular(&fifo, "the test's file").unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("fifo (the test's file) is a FIFO"),
            "{message}"
        );
    }

    /// A FIFO or a leftover is replaced by a new, empty regular file, never opened (opening the
    /// FIFO to write would block this test until the guard fails it); a directory is an error.
    #[test]
    fn create_fresh_replaces_what_is_there_without_opening_it() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.tmp");
        mkfifo(&fifo);
        let leftover = dir.path().join("leftover.tmp");
        std::fs::write(&leftover, b"half a write").unwrap();
        let paths = [fifo, leftover];
        let (sender, receiver) = std::sync::mpsc::channel();
        let written = paths.clone();
        std::thread::spawn(move || {
            let results: Vec<_> = written
                .iter()
                .map(|path| create_fresh(path).and_then(|mut file| file.write_all(b"new")))
                .collect();
            sender.send(results)
        });
        let results = receiver
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("create_fresh returns (it blocked opening the FIFO)");
        for (path, result) in paths.iter().zip(results) {
            result.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(not_regular(path), None, "{}", path.display());
            assert_eq!(std::fs::read(path).unwrap(), b"new", "{}", path.display());
        }
        let error = create_fresh(dir.path()).unwrap_err();
        assert_ne!(error.kind(), io::ErrorKind::NotFound, "{error}");
    }
}
