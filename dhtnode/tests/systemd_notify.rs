//! systemd readiness as `Type=notify` sees it, without systemd: the test binds the notify socket
//! (a unix datagram socket, as systemd does), hands its path to a real dhtnode in
//! `$NOTIFY_SOCKET`, and reads what the node sends. The node must report `STATUS=` lines while it
//! loads its dumps, send `READY=1` only once it serves (no client is answered before), ping the
//! watchdog (`$WATCHDOG_USEC`) from its event loop, and send `STOPPING=1` when it shuts down.

mod common;

use common::*;
use node_core::protocol::handshake::SERVER_HELLO_LEN;
use node_core::protocol::RequestCode;
use std::io::{ErrorKind, Read};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every datagram waiting on `socket`, split into its `KEY=value` lines.
fn drain(socket: &UnixDatagram, into: &mut Vec<String>) {
    let mut buffer = [0u8; 4096];
    loop {
        match socket.recv(&mut buffer) {
            Ok(len) => into.extend(
                String::from_utf8_lossy(&buffer[..len])
                    .lines()
                    .map(str::to_string),
            ),
            Err(err) if err.kind() == ErrorKind::WouldBlock => return,
            Err(err) => panic!("notify socket: {err}"),
        }
    }
}

/// Starts dhtnode in `dir` on a port the OS picks, with the notify socket at `socket_path` and
/// a 0.3 s watchdog.
fn spawn_notifying(dir: &Path, socket_path: &Path) -> std::process::Child {
    Command::new(BIN)
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env("NOTIFY_SOCKET", socket_path)
        .env("WATCHDOG_USEC", "300000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// What the node sent before READY=1: a STATUS line for the load, one per channel loaded
/// ("a" to "d"), a timeout extension, and no watchdog ping (the loop pings, not the loader).
fn check_loading_messages(loading: &[String]) {
    assert!(
        loading
            .iter()
            .any(|m| m.starts_with("STATUS=loading the data in")),
        "{loading:?}"
    );
    for channel in ["a", "b", "c", "d"] {
        assert!(
            loading
                .iter()
                .any(|m| m.starts_with("STATUS=loading dumps:")
                    && m.ends_with(&format!("last {channel}"))),
            "channel {channel} not reported loaded: {loading:?}"
        );
    }
    assert!(
        loading
            .iter()
            .any(|m| m.starts_with("EXTEND_TIMEOUT_USEC=")),
        "{loading:?}"
    );
    assert!(
        !loading.iter().any(|m| m == "WATCHDOG=1"),
        "the loop pings, not the loader: {loading:?}"
    );
}

/// Sends SIGTERM to `node` and waits (WAIT at most) for its exit.
fn terminate(node: &mut std::process::Child) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &node.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(exit) = node.try_wait().unwrap() {
            return exit;
        }
        assert!(Instant::now() < deadline, "the node did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn readiness_status_watchdog_and_stopping_reach_the_notify_socket() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    // Enough data that loading takes a while (a debug build loads a few hundred thousand
    // records a second), in several channels: one STATUS line each.
    for channel in ["a", "b", "c", "d"] {
        write_dump(&data_dir, channel, 100_000);
    }
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_nonblocking(true).unwrap();
    let mut node = spawn_notifying(dir.path(), &socket_path);
    // The node logs "bound ADDR; loading ..." before it loads its data.
    let addr = wait_for_logged_addr(&dir.path().join("log/root.log"), "bound ", ';');

    // A client that connects while the node loads gets its hello only once the node serves:
    // and by then READY=1 is already in our queue (the node sends it before its loop runs, and
    // a unix datagram is queued when it is sent).
    let mut early = TcpStream::connect(addr).unwrap();
    let mut messages = Vec::new();
    drain(&socket, &mut messages);
    let ready_before_connect = messages.iter().any(|m| m == "READY=1");
    early.set_read_timeout(Some(WAIT)).unwrap();
    let mut hello = [0u8; SERVER_HELLO_LEN];
    early
        .read_exact(&mut hello)
        .expect("the server hello, once serving");
    drain(&socket, &mut messages);
    let ready = messages
        .iter()
        .position(|m| m == "READY=1")
        .unwrap_or_else(|| panic!("READY=1 before the first hello: {messages:?}"));
    let last_loaded = messages
        .iter()
        .rposition(|m| m.starts_with("STATUS=loading"))
        .unwrap_or_else(|| panic!("no loading STATUS: {messages:?}"));
    assert!(
        last_loaded < ready,
        "READY=1 before the data was loaded: {messages:?}"
    );
    assert!(
        !ready_before_connect,
        "READY=1 came before this client connected, so the client did not test a connection \
         made while loading (more data needed): {messages:?}"
    );
    check_loading_messages(&messages[..ready]);
    assert!(
        messages[ready + 1].starts_with(&format!("STATUS=serving on {addr}")),
        "{messages:?}"
    );
    let mut conn = Conn::open(addr);
    let (status, _) = conn.request(RequestCode::GET_VERSION, Vec::new());
    assert!(status.is_success());

    // The watchdog: pings at a third of WATCHDOG_USEC from the loop's tick.
    let deadline = Instant::now() + WAIT;
    while messages.iter().filter(|m| *m == "WATCHDOG=1").count() < 3 {
        assert!(Instant::now() < deadline, "no watchdog pings: {messages:?}");
        std::thread::sleep(Duration::from_millis(50));
        drain(&socket, &mut messages);
    }

    drop(conn);
    assert_eq!(terminate(&mut node).code(), Some(0));
    drain(&socket, &mut messages);
    let stopping = messages
        .iter()
        .position(|m| m == "STOPPING=1")
        .unwrap_or_else(|| panic!("no STOPPING=1: {messages:?}"));
    assert!(stopping > ready, "{messages:?}");
    assert!(messages[stopping + 1].starts_with("STATUS=shutting down"));
}
