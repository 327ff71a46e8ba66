//! The dhtnode process as an operator runs it: started on defaults, configured by file and flags,
//! stopped by SIGTERM, logs reopened by SIGHUP, stats written, unsafe binds refused. Talks to the
//! real binary over real sockets; raw protocol frames keep these tests independent of the client.

mod common;

use common::{wait_for_listen_addr, wait_until};
use node_core::protocol::frame::{parse_frame, write_frame, FrameType, HEADER_LEN};
use node_core::protocol::{RequestCode, Status};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

/// A node in its own temp directory (removed after the node is killed).
fn start(extra_args: &[&str]) -> common::TempNode {
    common::TempNode::start(common::BIN, "", extra_args)
}

fn connect(addr: std::net::SocketAddr) -> TcpStream {
    let conn = common::Conn::open(addr);
    conn.stream
}

/// Reads frames until EOF; returns (request id, status) of each reply.
fn read_replies_until_eof(stream: &mut TcpStream) -> Vec<(u64, u8)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let read = stream.read(&mut chunk).expect("read replies");
        if read == 0 {
            break;
        }
        buffer.extend_from_slice(&chunk[..read]);
    }
    let mut replies = Vec::new();
    let mut offset = 0;
    while let Some(header) = parse_frame(&buffer[offset..], u32::MAX).expect("valid frame") {
        assert_eq!(header.frame_type, FrameType::Reply);
        replies.push((header.request_id, header.code));
        offset += header.frame_len();
    }
    assert_eq!(offset, buffer.len(), "no partial frame before EOF");
    replies
}

#[test]
fn sigterm_answers_requests_already_sent_then_exits_zero() {
    let mut node = start(&[]);
    let mut stream = connect(node.addr);
    let mut requests = Vec::new();
    for id in 0..2000u64 {
        write_frame(
            &mut requests,
            FrameType::Request,
            RequestCode::GET_VERSION.0,
            id,
            &[],
        );
    }
    stream.write_all(&requests).expect("send requests");
    node.signal("TERM");
    let replies = read_replies_until_eof(&mut stream);
    let ids: Vec<u64> = replies.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        ids,
        (0..2000).collect::<Vec<u64>>(),
        "every request sent before SIGTERM is answered, in order"
    );
    assert!(replies
        .iter()
        .all(|(_, status)| *status == Status::Ok as u8));
    let status = node.wait_exit();
    assert_eq!(status.code(), Some(0), "graceful shutdown exits 0");
    let root = std::fs::read_to_string(node.path("log/root.log")).expect("root.log");
    assert!(root.contains("shutdown complete"), "{root}");
}

#[test]
fn sighup_reopens_the_log_files() {
    let node = start(&[]);
    std::fs::rename(node.path("log/root.log"), node.path("log/root.log.1")).expect("rotate root");
    std::fs::rename(node.path("log/stats.log"), node.path("log/stats.log.1"))
        .expect("rotate stats");
    node.signal("HUP");
    wait_until("a fresh root.log with the reopen line", || {
        std::fs::read_to_string(node.path("log/root.log"))
            .is_ok_and(|text| text.contains("reopened"))
    });
    assert!(
        node.path("log/stats.log").exists(),
        "stats.log is recreated too"
    );
    let old = std::fs::read_to_string(node.path("log/root.log.1")).expect("rotated log");
    assert!(
        old.contains("listening on"),
        "the rotated file kept the old lines"
    );
}

#[test]
fn stats_log_gets_a_line_every_interval() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[log]\nstats_interval_s = 1\n").expect("write config");
    let node = start(&["-c", config.to_str().expect("utf-8 path")]);
    let mut stream = connect(node.addr);
    let mut request = Vec::new();
    write_frame(
        &mut request,
        FrameType::Request,
        RequestCode::GET_VERSION.0,
        1,
        &[],
    );
    stream.write_all(&request).expect("send");
    let mut reply = [0u8; HEADER_LEN];
    stream.read_exact(&mut reply).expect("reply header");
    wait_until("two stats lines", || {
        std::fs::read_to_string(node.path("log/stats.log"))
            .is_ok_and(|text| text.lines().count() >= 2)
    });
    let text = std::fs::read_to_string(node.path("log/stats.log")).expect("stats.log");
    assert!(text.contains("connections_open:1"), "{text}");
    assert!(text.contains("request/GetVersion/handled:1"), "{text}");
}

fn run_expecting_failure(args: &[&str]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = Command::new(env!("CARGO_BIN_EXE_dhtnode"))
        .args(args)
        .current_dir(dir.path())
        .output()
        .expect("run dhtnode");
    assert!(
        !output.status.success(),
        "dhtnode should have refused to start"
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn non_loopback_bind_without_credentials_is_refused() {
    let stderr = run_expecting_failure(&["--listen", "0.0.0.0:0"]);
    assert!(stderr.contains("without authentication"), "{stderr}");
    assert!(stderr.contains("auth.insecure"), "{stderr}");
}

#[test]
fn non_loopback_bind_starts_when_declared_insecure() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[auth]\ninsecure = true\n").expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dhtnode"))
        .args([
            "-c",
            config.to_str().expect("utf-8 path"),
            "--listen",
            "0.0.0.0:0",
        ])
        .current_dir(dir.path())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let addr = wait_for_listen_addr(&dir.path().join("log/root.log"), 0);
    assert!(addr.ip().is_unspecified());
    child.kill().expect("kill");
    let _ = child.wait();
}

#[test]
fn unknown_config_keys_and_bad_values_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("node.toml");
    std::fs::write(&config, "[server]\nlisen = \"127.0.0.1:1\"\n").expect("write config");
    let stderr = run_expecting_failure(&["-c", config.to_str().expect("utf-8 path")]);
    assert!(stderr.contains("lisen"), "{stderr}");
    std::fs::write(&config, "[server]\nmax_connections = 0\n").expect("write config");
    let stderr = run_expecting_failure(&["-c", config.to_str().expect("utf-8 path")]);
    assert!(stderr.contains("server.max_connections"), "{stderr}");
    let stderr = run_expecting_failure(&["-c", "/nonexistent/node.toml"]);
    assert!(stderr.contains("/nonexistent/node.toml"), "{stderr}");
}

#[test]
fn world_readable_credentials_file_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let credentials = dir.path().join("credentials");
    std::fs::write(&credentials, format!("admin:{}\n", "0".repeat(64))).expect("write credentials");
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!("[auth]\ncredentials_file = {:?}\n", credentials),
    )
    .expect("write config");
    let stderr = run_expecting_failure(&["-c", config.to_str().expect("utf-8 path")]);
    assert!(stderr.contains("chmod"), "{stderr}");
}
