//! Support for process tests, shared by every crate that starts a real node binary: start it in
//! a directory on an OS-chosen port (learnt from its root.log), speak raw protocol frames to it,
//! signal it, and wait for it; and find (building if needed) another package's binary. Also: the
//! suite's rule for checks this machine cannot run ([`skip`]), the replayable randomness of
//! the crash tests ([`random`]), the node kinds by name with a test credentials file
//! ([`kinds`]), certificates for the TLS tests ([`tls`]), headless Chromium for the web
//! pages' tests ([`chromium`]), and what a test sees of the page cache ([`page_cache`]).

pub mod chromium;
pub mod kinds;
pub mod page_cache;
pub mod random;
pub mod skip;
pub mod tls;

pub use kinds::{Kind, TestCredentials};
pub use random::{rounds_from_env, test_seed, XorShift};
pub use skip::skip_or_fail;

use node_core::protocol::frame::{parse_frame, write_frame, FrameType, HEADER_LEN};
use node_core::protocol::handshake::{
    ClientHello, ServerHello, HANDSHAKE_RESULT_LEN, PROOF_LEN, SERVER_HELLO_LEN,
};
use node_core::protocol::{RequestCode, Status, PROTOCOL_VERSION};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(20);

pub struct Node {
    pub child: Child,
    /// The binary's file name, for messages.
    name: String,
    pub dir: PathBuf,
    pub addr: SocketAddr,
    /// How it was started, for [`Node::restart`].
    binary: String,
    args: Vec<String>,
}

/// The environment the systemd unit of a node binary gives it (`deploy/systemd/`), so tests run
/// the node as it is deployed: the dht node's heap in huge pages (docs/operations.md, "Memory:
/// the huge-page heap").
fn deployed_env(binary_name: &str) -> &'static [(&'static str, &'static str)] {
    match binary_name {
        "dhtnode" => &[("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")],
        _ => &[],
    }
}

impl Node {
    /// Starts the node binary `binary` with `dir` as its working directory (data in `dir/data`,
    /// logs in `dir/log`) on an OS-chosen loopback port.
    pub fn start_in(binary: &str, dir: &Path, extra_args: &[&str]) -> Node {
        let name = Path::new(binary)
            .file_name()
            .map_or_else(|| binary.to_string(), |n| n.to_string_lossy().into_owned());
        let log = dir.join("log/root.log");
        let previous_lines = std::fs::read_to_string(&log)
            .map(|text| text.len())
            .unwrap_or(0);
        // An OS-chosen port unless the caller names one (a restart on the same port).
        let listen: &[&str] = if extra_args.contains(&"--listen") {
            &[]
        } else {
            &["--listen", "127.0.0.1:0"]
        };
        let child = Command::new(binary)
            .envs(deployed_env(&name).iter().copied())
            .args(listen)
            .args(extra_args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("spawn {binary}: {err}"));
        let addr = wait_for_listen_addr(&log, previous_lines);
        Node {
            child,
            name,
            dir: dir.to_path_buf(),
            addr,
            binary: binary.to_string(),
            args: extra_args.iter().map(|arg| arg.to_string()).collect(),
        }
    }

    /// SIGKILL, and wait until the process is gone (its port is closed then).
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the node again (after [`Node::kill9`] or a stop; a node still running is killed
    /// first) in the same directory, with the same arguments, on the same address, whatever
    /// port the OS chose at the first start.
    pub fn restart(&mut self) {
        self.kill9();
        let addr = self.addr.to_string();
        let mut args = Vec::with_capacity(self.args.len() + 2);
        let mut given = self.args.iter();
        while let Some(arg) = given.next() {
            if arg == "--listen" {
                given.next();
            } else {
                args.push(arg.as_str());
            }
        }
        args.extend(["--listen", addr.as_str()]);
        let node = Node::start_in(&self.binary, &self.dir, &args);
        assert_eq!(node.addr, self.addr, "restarted on the same address");
        *self = node;
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        self.dir.join(relative)
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.name);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait for exit status 0.
    pub fn stop(mut self) {
        self.signal("TERM");
        assert_eq!(
            self.wait_exit().code(),
            Some(0),
            "graceful shutdown exits 0"
        );
    }

    pub fn root_log(&self) -> String {
        std::fs::read_to_string(self.path("log/root.log")).unwrap_or_default()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The node logs `listening on ADDR` once it serves; with port 0 that line is how a test learns
/// the port. `skip` bytes of the log belong to earlier runs in the same directory.
pub fn wait_for_listen_addr(root_log: &Path, skip: usize) -> SocketAddr {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(root_log).unwrap_or_default();
        if let Some(rest) = text
            .get(skip..)
            .and_then(|new| new.split("listening on ").nth(1))
        {
            let addr = rest
                .split_whitespace()
                .next()
                .expect("address after 'listening on'");
            return addr.parse().expect("listen address");
        }
        assert!(
            Instant::now() < deadline,
            "no 'listening on' line in {}",
            root_log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs the node binary `binary` in `dir` with `args`, expecting it to refuse to start: its
/// exit code and stderr. A node still running after 60 s (it started, or hangs) is killed and
/// the test fails, rather than wait for it forever.
pub fn refused_start(binary: &str, dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(binary)
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("run {binary}: {err}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the node") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{binary} did not refuse to start within 60 s (it started, or hangs)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        pipe.read_to_string(&mut stderr).expect("read stderr");
    }
    (status.code(), stderr)
}

/// Makes a FIFO at `path` (`mkfifo`): a file that blocks whoever opens it to read until
/// something opens it to write, for tests of what a node does with one in its data directory.
pub fn mkfifo(path: &Path) {
    let made = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(made.success(), "mkfifo {}", path.display());
}

/// Runs `work` on a thread of its own and returns what it returns, failing the test when it has
/// not returned within [`WAIT`] — for code that must not block (opening a FIFO someone made by
/// hand, say), so that a regression fails instead of hanging the suite. The blocked thread is
/// left behind.
pub fn returns_in_time<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || sender.send(work()));
    match receiver.recv_timeout(WAIT) {
        Ok(value) => value,
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what} did not return within {WAIT:?}: it blocked")
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => panic!("{what} panicked"),
    }
}

pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A numeric field of /proc/<pid>/status: `Threads`, or a size in KiB (`VmRSS`, `RssAnon`).
/// Fails the test when it cannot be read: a bound that is not measured must not pass.
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {path}: {err}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {field} line in {path}:\n{status}"))
}

/// A raw protocol connection.
/// What a streaming request produced: its items (code, body), then its final status and body.
pub type StreamEnd = (Vec<(u8, Vec<u8>)>, Status, Vec<u8>);

pub struct Conn {
    pub stream: TcpStream,
    next_id: u64,
    buffer: Vec<u8>,
}

impl Conn {
    /// Opens a connection and completes an anonymous handshake.
    pub fn open(addr: SocketAddr) -> Conn {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut hello = [0u8; SERVER_HELLO_LEN];
        stream.read_exact(&mut hello).expect("server hello");
        let hello = ServerHello::decode(&hello).expect("decode hello");
        assert_eq!(hello.version, PROTOCOL_VERSION);
        stream.write_all(&anonymous_hello()).expect("send hello");
        let mut result = [0u8; HANDSHAKE_RESULT_LEN];
        stream.read_exact(&mut result).expect("handshake result");
        Conn {
            stream,
            next_id: 1,
            buffer: Vec::new(),
        }
    }

    /// Sends many requests in one write and returns their replies (status, body), in order.
    pub fn pipeline(&mut self, requests: &[(RequestCode, Vec<u8>)]) -> Vec<(Status, Vec<u8>)> {
        self.pipeline_with(requests, false)
    }

    /// As [`Conn::pipeline`], each request followed in the same write by a Control Stop for
    /// its id: for a request that is not a stream the Stop must change nothing (protocol §2.2).
    pub fn pipeline_each_stopped(
        &mut self,
        requests: &[(RequestCode, Vec<u8>)],
    ) -> Vec<(Status, Vec<u8>)> {
        self.pipeline_with(requests, true)
    }

    fn pipeline_with(
        &mut self,
        requests: &[(RequestCode, Vec<u8>)],
        stop_each: bool,
    ) -> Vec<(Status, Vec<u8>)> {
        let mut out = Vec::new();
        let first_id = self.next_id;
        for (code, body) in requests {
            write_frame(&mut out, FrameType::Request, code.0, self.next_id, body);
            if stop_each {
                let stop = node_core::protocol::ControlCode::Stop as u8;
                write_frame(&mut out, FrameType::Control, stop, self.next_id, &[]);
            }
            self.next_id += 1;
        }
        self.stream.write_all(&out).expect("send requests");
        (0..requests.len())
            .map(|index| {
                let (id, status, body) = self.read_reply();
                assert_eq!(id, first_id + index as u64, "replies come in request order");
                (status, body)
            })
            .collect()
    }

    pub fn request(&mut self, code: RequestCode, body: Vec<u8>) -> (Status, Vec<u8>) {
        self.pipeline(&[(code, body)]).remove(0)
    }

    /// Runs one streaming request to its end, granting credit as items arrive, and returns its
    /// items (code, body) and its final reply.
    pub fn stream(&mut self, code: RequestCode, body: Vec<u8>) -> StreamEnd {
        let id = self.next_id;
        self.next_id += 1;
        let mut out = Vec::new();
        write_frame(&mut out, FrameType::Request, code.0, id, &body);
        self.stream.write_all(&out).expect("send request");
        let mut items = Vec::new();
        loop {
            let (header_type, frame_id, code, body) = self.read_frame();
            assert_eq!(frame_id, id, "a frame of another request");
            match header_type {
                FrameType::Item => {
                    items.push((code, body));
                    let mut credit = Vec::new();
                    write_frame(
                        &mut credit,
                        FrameType::Control,
                        node_core::protocol::ControlCode::Credit as u8,
                        id,
                        &1u32.to_le_bytes(),
                    );
                    self.stream.write_all(&credit).expect("send credit");
                }
                FrameType::Reply => {
                    let status = Status::from_u8(code).expect("known status");
                    return (items, status, body);
                }
                other => panic!("unexpected {other:?} frame"),
            }
        }
    }

    fn read_frame(&mut self) -> (FrameType, u64, u8, Vec<u8>) {
        loop {
            if let Some(header) = parse_frame(&self.buffer, u32::MAX).expect("valid frame") {
                let body = self.buffer[HEADER_LEN..header.frame_len()].to_vec();
                self.buffer.drain(..header.frame_len());
                return (header.frame_type, header.request_id, header.code, body);
            }
            let mut chunk = [0u8; 65536];
            let read = self.stream.read(&mut chunk).expect("read frame");
            assert!(read > 0, "connection closed while waiting for a frame");
            self.buffer.extend_from_slice(&chunk[..read]);
        }
    }

    fn read_reply(&mut self) -> (u64, Status, Vec<u8>) {
        let (frame_type, id, code, body) = self.read_frame();
        assert_eq!(frame_type, FrameType::Reply);
        let status = Status::from_u8(code).expect("known status");
        (id, status, body)
    }
}

/// The ClientHello of an anonymous client that takes any node kind (for a node without
/// authentication), encoded.
pub fn anonymous_hello() -> Vec<u8> {
    let mut out = Vec::new();
    ClientHello {
        version: PROTOCOL_VERSION,
        wanted_kind: None,
        name: Vec::new(),
        proof: [0; PROOF_LEN],
    }
    .encode(&mut out)
    .expect("encode hello");
    out
}

/// The binary `name` of package `package`, in the same target directory as the running test,
/// built once if needed (a test can name its own crate's binaries with `CARGO_BIN_EXE_*`, but not
/// another package's).
pub fn workspace_binary(package: &str, name: &str) -> PathBuf {
    let profile_dir = test_profile_dir();
    if let Ok(cargo) = std::env::var("CARGO") {
        let mut build = Command::new(cargo);
        build.args(["build", "-p", package, "--bin", name]);
        run_build(build, &profile_dir, package);
    }
    let binary = profile_dir.join(name);
    assert!(binary.exists(), "no {name} binary at {}", binary.display());
    binary
}

/// The running test's `target/<profile>`, with every binary of `packages` built in it (a no-op
/// when they are up to date): the BIN_DIR a test hands a script that starts the daemons.
pub fn workspace_bin_dir(packages: &[&str]) -> PathBuf {
    let profile_dir = test_profile_dir();
    if let Ok(cargo) = std::env::var("CARGO") {
        let mut build = Command::new(cargo);
        build.arg("build").arg("--bins");
        for package in packages {
            build.args(["-p", package]);
        }
        run_build(build, &profile_dir, &packages.join(" -p "));
    }
    profile_dir
}

/// Runs a test script (`command`, its arguments set) with stdin closed and its output
/// collected, and returns its exit status and output. Bounded: past `limit` (the script's own
/// limit plus a margin) it gets SIGTERM, on which a script stops what it started; `grace` later
/// SIGKILL, and the test fails showing the output so far.
pub fn run_script_bounded(
    mut command: Command,
    limit: Duration,
    grace: Duration,
) -> (ExitStatus, String) {
    let log = tempfile::NamedTempFile::new().expect("output file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(log.reopen().expect("output file"))
        .stderr(log.reopen().expect("output file"))
        .spawn()
        .unwrap_or_else(|err| panic!("run {command:?}: {err}"));
    let started = Instant::now();
    let mut terminated = false;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break status;
        }
        let elapsed = started.elapsed();
        if !terminated && elapsed > limit {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            terminated = true;
        } else if elapsed > limit + grace {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} did not finish within {} s:\n{}",
                limit.as_secs(),
                std::fs::read_to_string(log.path()).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(log.path()).unwrap_or_default();
    // Shown with --nocapture, or when the test fails.
    println!("{output}");
    (status, output)
}

/// target/<profile> of the running test binary (target/<profile>/deps/<test>-<hash>).
fn test_profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target profile directory")
        .to_path_buf()
}

/// Runs `build` (a `cargo build` of `what`) for the profile of `profile_dir`.
fn run_build(mut build: Command, profile_dir: &Path, what: &str) {
    if profile_dir.file_name().is_some_and(|dir| dir == "release") {
        build.arg("--release");
    }
    let status = build
        .status()
        .unwrap_or_else(|err| panic!("run cargo build -p {what}: {err}"));
    assert!(status.success(), "cargo build -p {what} failed");
}

/// The address a process logs as `metrics served at http://ADDR/metrics` (with
/// `[metrics] listen = "127.0.0.1:0"`), read from its root.log.
pub fn wait_for_metrics_addr(root_log: &Path) -> SocketAddr {
    wait_for_logged_addr(root_log, "metrics served at http://", '/')
}

/// The first address in root.log written right after `before` and ending at `end`.
pub fn wait_for_logged_addr(root_log: &Path, before: &str, end: char) -> SocketAddr {
    let mut found = None;
    wait_until(&format!("'{before}ADDR' in root.log"), || {
        let text = std::fs::read_to_string(root_log).unwrap_or_default();
        found = text
            .split(before)
            .nth(1)
            .and_then(|rest| rest.split(end).next())
            .and_then(|addr| addr.parse().ok());
        found.is_some()
    });
    found.expect("logged address")
}

/// A plain HTTP/1.0 GET (the test's side of a scrape); returns the status code and body.
/// `authorization` is sent as the `Authorization` header when given.
pub fn http_get(addr: SocketAddr, path: &str, authorization: Option<&str>) -> (u16, String) {
    try_http_get(addr, path, authorization)
        .unwrap_or_else(|err| panic!("GET {path} from {addr}: {err}"))
}

/// [`http_get`] that returns the error of the connection (refused, reset) instead of failing the
/// test, for waits on a listener that may not answer yet.
pub fn try_http_get(
    addr: SocketAddr,
    path: &str,
    authorization: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(WAIT))?;
    let mut request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(value) = authorization {
        request.push_str(&format!("Authorization: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {response:?}"));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Ok((status, body.to_string()))
}

/// A node in a temporary directory of its own, removed after the node is killed (on drop).
pub struct TempNode {
    // Declared first: dropped (killed) before the directory goes.
    pub node: Node,
    pub dir: tempfile::TempDir,
}

impl TempNode {
    /// Starts `binary` in a fresh directory; a non-empty `config` (TOML) is written to
    /// `node.toml` there and passed with `-c`.
    pub fn start(binary: &str, config: &str, extra_args: &[&str]) -> TempNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut args: Vec<String> = extra_args.iter().map(|arg| arg.to_string()).collect();
        if !config.is_empty() {
            let path = dir.path().join("node.toml");
            std::fs::write(&path, config).expect("write config");
            args.push("-c".into());
            args.push(path.to_string_lossy().into_owned());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let node = Node::start_in(binary, dir.path(), &args);
        TempNode { node, dir }
    }
}

impl std::ops::Deref for TempNode {
    type Target = Node;
    fn deref(&self) -> &Node {
        &self.node
    }
}

impl std::ops::DerefMut for TempNode {
    fn deref_mut(&mut self) -> &mut Node {
        &mut self.node
    }
}

/// A tmpfs mounted for a test (the tests run as root), unmounted when dropped, so a failing
/// test does not leave it behind.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs with `options` (e.g. `"size=1m"` or `"ro,size=1m"`) on `path`, creating
    /// the directory first. Where mounting is refused (not root, or a container without
    /// CAP_SYS_ADMIN) the test fails, unless `SWARM_TEST_ALLOW_SKIP` names `mount`: then the
    /// skip is recorded ([`skip::skip_or_fail`]) and `None` returned, and the caller leaves out
    /// the checks that need the mount.
    pub fn mount(path: &Path, options: &str) -> Option<Tmpfs> {
        Tmpfs::mount_for(path, options, "the checks of this test that need a tmpfs")
    }

    /// [`mount`](Tmpfs::mount), with `skipped` saying which checks a skip leaves out.
    pub fn mount_for(path: &Path, options: &str, skipped: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(path)
            .unwrap_or_else(|err| panic!("create {}: {err}", path.display()));
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(path)
            .stdin(Stdio::null())
            .output();
        let reason = match output {
            Ok(output) if output.status.success() => {
                return Some(Tmpfs {
                    path: path.to_path_buf(),
                })
            }
            Ok(output) => format!(
                "mount -t tmpfs failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
            ),
            Err(err) => format!("cannot run mount: {err}"),
        };
        skip::skip_or_fail("mount", skipped, &reason);
        None
    }

    /// Changes the mounted file system's options in place (`"remount,size=8m"`,
    /// `"remount,ro"`); the files stay.
    pub fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", options])
            .arg(&self.path)
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mount -o {options} {}",
            self.path.display()
        );
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a node killed a moment ago may still hold files open.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .stderr(Stdio::null())
            .status();
    }
}

/// GetStats on `conn`: the node's counters by name (docs/protocol.md §5).
pub fn get_stats(conn: &mut Conn) -> Vec<(String, u64)> {
    use node_core::protocol::wire::Reader;
    let (status, body) = conn.request(RequestCode::GET_STATS, Vec::new());
    assert_eq!(status, Status::Ok, "GetStats");
    let mut reader = Reader::new(&body);
    let count = reader.u32("count").expect("stats count");
    let stats = (0..count)
        .map(|_| {
            let name = reader.str8("name").expect("stat name").to_string();
            (name, reader.u64("value").expect("stat value"))
        })
        .collect();
    reader.finish().expect("nothing after the stats");
    stats
}

/// Every record of logfiles channel `channel` on `conn` (GetAll without a filter), in the order
/// the node sends them (docs/protocol.md §7.3).
pub fn logfiles_get_all(conn: &mut Conn, channel: &str) -> Vec<(u64, Vec<u8>)> {
    use node_core::protocol::logfiles::{self, Filter, GetAllRequest};
    let mut body = Vec::new();
    GetAllRequest {
        channel,
        filter: Filter::NONE,
    }
    .encode(&mut body);
    let (items, status, _) = conn.stream(logfiles::GET_ALL, body);
    assert_eq!(status, Status::Ok, "GetAll {channel}");
    let mut scratch = Vec::new();
    let mut records = Vec::new();
    for (_, item) in items {
        let batch = node_core::protocol::batch::decode_batch(&item, &mut scratch).expect("batch");
        records.extend(batch.map(|(key, value)| (key, value.to_vec())));
    }
    records
}

/// The counter `name` of a [`get_stats`] answer.
pub fn stat(stats: &[(String, u64)], name: &str) -> Option<u64> {
    stats
        .iter()
        .find(|(stat, _)| stat == name)
        .map(|(_, value)| *value)
}

/// A dhtnode's catch-up state (GetStats `catch_up_state`, docs/protocol.md §6.13): `0` ready,
/// `1` catching up with its replica set, `2` forced ready.
pub fn catch_up_state(addr: SocketAddr) -> u64 {
    stat(&get_stats(&mut Conn::open(addr)), "catch_up_state").expect("catch_up_state")
}

/// Waits until the dhtnode at `addr` has caught up with its replica set (`catch_up_state` 0).
pub fn wait_caught_up(addr: SocketAddr) {
    wait_until("the node caught up", || catch_up_state(addr) == 0);
}

/// Replaces the `node.toml` a [`TempNode`] was started with (its next [`Node::restart`] reads
/// it). Only for a node started with a non-empty config, which is passed with `-c`.
impl TempNode {
    pub fn rewrite_config(&self, config: &str) {
        let path = self.dir.path().join("node.toml");
        assert!(path.exists(), "the node was started without a config file");
        std::fs::write(&path, config).expect("write config");
    }
}

/// Opens a connection to a node that requires authentication and proves `name` holds `key`
/// (docs/protocol.md §1.4). Returns the connection once accepted, or the node's refusal.
pub fn open_authenticated(
    addr: SocketAddr,
    name: &str,
    key: &node_core::auth::Key,
) -> Result<(Conn, node_core::protocol::handshake::HandshakeResult), String> {
    use node_core::protocol::handshake::{HandshakeOutcome, HandshakeResult};
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut hello = [0u8; SERVER_HELLO_LEN];
    stream.read_exact(&mut hello).expect("server hello");
    let hello = ServerHello::decode(&hello).expect("decode hello");
    let mut out = Vec::new();
    ClientHello {
        version: PROTOCOL_VERSION,
        wanted_kind: None,
        name: name.as_bytes().to_vec(),
        proof: node_core::auth::proof(key, &hello.nonce, name.as_bytes()),
    }
    .encode(&mut out)
    .expect("encode hello");
    stream.write_all(&out).expect("send hello");
    let mut result = [0u8; HANDSHAKE_RESULT_LEN];
    stream.read_exact(&mut result).expect("handshake result");
    let result = HandshakeResult::decode(&result).expect("decode handshake result");
    if result.outcome != HandshakeOutcome::Accepted {
        return Err(format!("handshake refused: {:?}", result.outcome));
    }
    let conn = Conn {
        stream,
        next_id: 1,
        buffer: Vec::new(),
    };
    Ok((conn, result))
}
