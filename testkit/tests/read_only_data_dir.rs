//! A read-only data directory at start, for each node kind (dht, logfiles, queue): the node must
//! refuse to run — exit with a failure status, soon, with a message on stderr and in root.log
//! that names the directory and the problem — rather than panic, hang, or start and fail every
//! write later. Two ways to get there: a file system mounted read-only from the start, and one
//! that held the node's data and was remounted read-only (what the kernel does to a disk after
//! I/O errors); in the second case the node starts normally, with its data, once the file system
//! is writable again.
//!
//! Needs permission to mount a tmpfs (the tests run as root; as root, file modes do not stop
//! writes, so there is no other way to make a directory read-only). Where mounting is refused
//! the tests say so and pass without checking anything.

use node_core::protocol::{dht, logfiles, queue, RequestCode, Status};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use testkit::{get_stats, workspace_binary, Conn, Node, Tmpfs};

#[derive(Clone, Copy, Debug)]
enum Kind {
    Dht,
    Logfiles,
    Queue,
}

impl Kind {
    fn binary(self) -> PathBuf {
        match self {
            Kind::Dht => workspace_binary("dhtnode", "dhtnode"),
            Kind::Logfiles => workspace_binary("logfilesnode", "logfilesnode"),
            Kind::Queue => workspace_binary("queuenode", "queuenode"),
        }
    }

    /// A request that stores one record, so the data directory holds real files.
    fn write_request(self) -> (RequestCode, Vec<u8>) {
        let mut body = Vec::new();
        match self {
            Kind::Dht => {
                dht::PutRequest {
                    channel: "ro",
                    key: 7,
                    value: b"stored before the file system went read-only",
                }
                .encode(&mut body);
                (dht::PUT, body)
            }
            Kind::Logfiles => {
                logfiles::PutRequest {
                    channel: "ro",
                    key: 7,
                    value: b"stored before the file system went read-only",
                }
                .encode(&mut body);
                (logfiles::PUT, body)
            }
            Kind::Queue => {
                queue::PushRequest {
                    channel: "ro",
                    value: b"stored before the file system went read-only",
                }
                .encode(&mut body);
                (queue::PUSH, body)
            }
        }
    }
}

/// How a refused start ended.
struct Refusal {
    status: ExitStatus,
    stderr: String,
    root_log: String,
}

/// Runs the node in `dir` with `data` as its data directory and waits (at most 20 s) for it to
/// exit on its own; a node still running then has failed the test (it is killed).
fn start_expecting_refusal(binary: &Path, dir: &Path, data: &Path) -> Refusal {
    let log = dir.join("log/root.log");
    let skip = std::fs::read_to_string(&log).map_or(0, |text| text.len());
    let mut child = Command::new(binary)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("spawn {}: {err}", binary.display()));
    let deadline = Instant::now() + testkit::WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{} still runs {:?} after start on a read-only data directory",
                binary.display(),
                testkit::WAIT
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    let root_log = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .get(skip..)
        .unwrap_or_default()
        .to_string();
    Refusal {
        status,
        stderr,
        root_log,
    }
}

/// The refusal every kind must give: a failure exit (not a signal, so not a crash), a message
/// on stderr naming the directory and "Read-only file system", no panic, and the same reason in
/// root.log (where an operator running it under systemd looks).
fn assert_clear_refusal(kind: Kind, refusal: &Refusal, data: &Path) {
    let Refusal {
        status,
        stderr,
        root_log,
    } = refusal;
    assert!(
        matches!(status.code(), Some(code) if code != 0),
        "{kind:?}: exit status {status} (a failure exit code, not success or a signal); \
         stderr: {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !root_log.contains("panicked"),
        "{kind:?} panicked: {stderr}"
    );
    let data = data.display().to_string();
    assert!(
        stderr.contains(&data) && stderr.contains("Read-only file system"),
        "{kind:?}: stderr names the directory ({data}) and the problem: {stderr:?}"
    );
    assert!(
        root_log.contains("ERROR") && root_log.contains("Read-only file system"),
        "{kind:?}: root.log says why: {root_log}"
    );
}

fn refuses_a_read_only_file_system(kind: Kind) {
    let binary = kind.binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let Some(tmpfs) = Tmpfs::mount(&data, "ro,size=1m") else {
        eprintln!("tmpfs mount not permitted; skipping the read-only test of {kind:?}");
        return;
    };
    let refusal = start_expecting_refusal(&binary, dir.path(), &data);
    assert_clear_refusal(kind, &refusal, &data);

    // A data directory below the read-only mount point, which the node would have to create.
    let below = data.join("node");
    let refusal = start_expecting_refusal(&binary, dir.path(), &below);
    assert_clear_refusal(kind, &refusal, &below);
    drop(tmpfs);
}

fn refuses_data_that_went_read_only_and_starts_once_writable(kind: Kind) {
    let binary = kind.binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let Some(tmpfs) = Tmpfs::mount(&data, "size=4m") else {
        eprintln!("tmpfs mount not permitted; skipping the read-only test of {kind:?}");
        return;
    };
    let binary_str = binary.to_str().expect("utf-8 path");
    let data_arg = data.to_str().expect("utf-8 path");
    // Queue rings are 64 MiB by default; 64 KiB ones fit the small file system.
    std::fs::write(
        dir.path().join("node.toml"),
        "[queue]\nchannel_size_bytes = 65536\n",
    )
    .expect("write config");
    let args: &[&str] = match kind {
        Kind::Queue => &["--data-dir", data_arg, "-c", "node.toml"],
        _ => &["--data-dir", data_arg],
    };
    let node = Node::start_in(binary_str, dir.path(), args);
    let mut conn = Conn::open(node.addr);
    let (code, body) = kind.write_request();
    let (status, reply) = conn.request(code, body);
    assert_eq!(
        status,
        Status::Ok,
        "{kind:?}: {}",
        String::from_utf8_lossy(&reply)
    );
    drop(conn);
    node.stop();
    let files_before = snapshot(&data);
    assert!(
        !files_before.is_empty(),
        "{kind:?} stored nothing: {files_before:?}"
    );

    tmpfs.remount("remount,ro");
    let refusal = start_expecting_refusal(&binary, dir.path(), &data);
    assert_clear_refusal(kind, &refusal, &data);

    // Writable again: the node starts with what it had, and serves.
    tmpfs.remount("remount,rw");
    assert_eq!(snapshot(&data), files_before, "{kind:?}: the data changed");
    let node = Node::start_in(binary_str, dir.path(), args);
    let mut conn = Conn::open(node.addr);
    assert!(!get_stats(&mut conn).is_empty());
    drop(conn);
    node.stop();
    drop(tmpfs);
}

/// Every file under `dir` (relative path → contents), except the lock file, which holds the
/// process id of its last holder.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.file_name().is_some_and(|name| name != ".lock") {
                let relative = path.strip_prefix(dir).expect("below dir").to_path_buf();
                files.push((relative, std::fs::read(&path).expect("read file")));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn dht_node_refuses_a_read_only_data_dir() {
    refuses_a_read_only_file_system(Kind::Dht);
    refuses_data_that_went_read_only_and_starts_once_writable(Kind::Dht);
}

#[test]
fn logfiles_node_refuses_a_read_only_data_dir() {
    refuses_a_read_only_file_system(Kind::Logfiles);
    refuses_data_that_went_read_only_and_starts_once_writable(Kind::Logfiles);
}

#[test]
fn queue_node_refuses_a_read_only_data_dir() {
    refuses_a_read_only_file_system(Kind::Queue);
    refuses_data_that_went_read_only_and_starts_once_writable(Kind::Queue);
}
