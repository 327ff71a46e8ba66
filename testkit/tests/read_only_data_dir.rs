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
//! the tests fail, unless `SWARM_TEST_ALLOW_SKIP=mount` says this machine cannot
//! (docs/testing.md).

use node_core::protocol::batch::decode_batch;
use node_core::protocol::{dht, logfiles, queue, RequestCode, Status};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use testkit::{workspace_binary, Conn, Node, Tmpfs};

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

    /// A request that stores one record ([`STORED`]), so the data directory holds real files.
    fn write_request(self) -> (RequestCode, Vec<u8>) {
        let mut body = Vec::new();
        match self {
            Kind::Dht => {
                dht::PutRequest {
                    channel: "ro",
                    key: 7,
                    value: STORED,
                }
                .encode(&mut body);
                (dht::PUT, body)
            }
            Kind::Logfiles => {
                logfiles::PutRequest {
                    channel: "ro",
                    key: 7,
                    value: STORED,
                }
                .encode(&mut body);
                (logfiles::PUT, body)
            }
            Kind::Queue => {
                queue::PushRequest {
                    channel: "ro",
                    value: STORED,
                }
                .encode(&mut body);
                (queue::PUSH, body)
            }
        }
    }

    /// Reads the channel back: exactly the one record [`write_request`](Kind::write_request)
    /// stored, with its value (the queue's Pop takes it out).
    fn assert_holds_the_stored_record(self, conn: &mut Conn) {
        let mut body = Vec::new();
        let records: Vec<(u64, Vec<u8>)> = match self {
            Kind::Dht => {
                dht::KeyRequest {
                    channel: "ro",
                    key: 7,
                }
                .encode(&mut body);
                let (status, value) = conn.request(dht::GET, body);
                assert_eq!(status, Status::Ok, "{self:?}: Get of the stored record");
                vec![(7, value)]
            }
            Kind::Logfiles => {
                logfiles::GetAllRequest {
                    channel: "ro",
                    filter: logfiles::Filter::NONE,
                }
                .encode(&mut body);
                let (items, status, _) = conn.stream(logfiles::GET_ALL, body);
                assert_eq!(status, Status::Ok, "{self:?}: GetAll");
                let mut scratch = Vec::new();
                items
                    .iter()
                    .flat_map(|(_, item)| {
                        decode_batch(item, &mut scratch)
                            .expect("a GetAll batch")
                            .map(|(key, value)| (key, value.to_vec()))
                            .collect::<Vec<_>>()
                    })
                    .collect()
            }
            Kind::Queue => {
                queue::encode_channel(&mut body, "ro");
                let (status, value) = conn.request(queue::POP, body.clone());
                assert_eq!(status, Status::Ok, "{self:?}: Pop of the stored record");
                let (status, _) = conn.request(queue::POP, body);
                assert_eq!(status, Status::NotFound, "{self:?}: more than one record");
                vec![(7, value)]
            }
        };
        assert_eq!(
            records,
            vec![(7, STORED.to_vec())],
            "{self:?}: the stored record"
        );
    }
}

/// The value every kind stores before its file system goes read-only.
const STORED: &[u8] = b"stored before the file system went read-only";

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
    let Some(tmpfs) = Tmpfs::mount_for(
        &data,
        "ro,size=1m",
        "the refusal of a data directory mounted read-only",
    ) else {
        return; // skipped, and listed as skipped (SWARM_TEST_ALLOW_SKIP=mount)
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
    let Some(tmpfs) = Tmpfs::mount_for(
        &data,
        "size=4m",
        "the refusal of data that went read-only, and the start once writable again",
    ) else {
        return; // skipped, and listed as skipped (SWARM_TEST_ALLOW_SKIP=mount)
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

    // Writable again: the node starts with what it had (the record reads back, its value
    // intact), and serves (a new write is taken).
    tmpfs.remount("remount,rw");
    assert_eq!(snapshot(&data), files_before, "{kind:?}: the data changed");
    let node = Node::start_in(binary_str, dir.path(), args);
    let mut conn = Conn::open(node.addr);
    kind.assert_holds_the_stored_record(&mut conn);
    let (code, body) = kind.write_request();
    let (status, reply) = conn.request(code, body);
    assert_eq!(
        status,
        Status::Ok,
        "{kind:?}: a write once writable again: {}",
        String::from_utf8_lossy(&reply)
    );
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
