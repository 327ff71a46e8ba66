//! The metrics listener's limits, against a real daemon (a queue node serving `/metrics` on an
//! OS-chosen loopback port): what a local client that misbehaves can cost it. Each limit is
//! documented in docs/operations.md ("Metrics") and docs/security.md ("The HTTP listeners"):
//! connections beyond the limit are closed at once and the node's thread count stays bounded; a
//! request head that never ends is cut off at its size limit (431) with the node's memory
//! bounded; a client that never finishes its head is dropped after the head read timeout; a
//! request naming another host (DNS rebinding) is refused.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use testkit::{
    http_get, proc_status, try_http_get, wait_for_metrics_addr, wait_until, workspace_binary,
    TempNode,
};

/// The listener's connection limit (`bounded_http::MAX_CONNECTIONS`).
const MAX_CONNECTIONS: usize = 64;
/// Far more than the limit: each would cost a thread to a listener without one.
const OPENED: usize = 200;

fn node_with_metrics() -> (TempNode, SocketAddr) {
    let node = TempNode::start(
        &workspace_binary("queuenode", "queuenode").to_string_lossy(),
        "[metrics]\nlisten = \"127.0.0.1:0\"\n",
        &[],
    );
    let metrics = wait_for_metrics_addr(&node.path("log/root.log"));
    // One scrape first: whatever the listener sets up on its first request is in the baseline.
    assert_eq!(http_get(metrics, "/metrics", None).0, 200);
    (node, metrics)
}

/// Whether the peer has closed `stream` (end of stream or reset), looking for up to `wait`.
fn closed_by_peer(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).expect("read timeout");
    let mut buf = [0u8; 512];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // an answer (431, 408...): the close follows it
            Err(err) if matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true, // reset
        }
    }
}

#[test]
fn connections_over_the_limit_are_closed_and_the_threads_stay_bounded() {
    let (node, metrics) = node_with_metrics();
    let pid = node.child.id();
    let threads_before = proc_status(pid, "Threads");
    // Each connection starts a request head and stops there, so a listener that reads a
    // connection on a thread of its own keeps that thread busy.
    let mut open: Vec<TcpStream> = (0..OPENED)
        .map(|_| {
            let mut stream = TcpStream::connect(metrics).expect("connect");
            let _ = stream
                .write_all(format!("GET /metrics HTTP/1.1\r\nHost: {metrics}\r\n").as_bytes());
            stream
        })
        .collect();
    let mut threads_most = 0;
    let mut closed = vec![false; OPENED];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut still_open = OPENED;
    while still_open > MAX_CONNECTIONS && Instant::now() < deadline {
        threads_most = threads_most.max(proc_status(pid, "Threads"));
        for (stream, closed) in open.iter_mut().zip(&mut closed) {
            *closed = *closed || closed_by_peer(stream, Duration::from_millis(1));
        }
        still_open = closed.iter().filter(|closed| !**closed).count();
        std::thread::sleep(Duration::from_millis(50));
    }
    threads_most = threads_most.max(proc_status(pid, "Threads"));
    eprintln!(
        "{OPENED} connections: {still_open} left open, threads {threads_before} before, at most \
         {threads_most} during"
    );
    assert!(
        threads_most <= threads_before + 4,
        "{OPENED} connections to the metrics listener grew the node from {threads_before} to \
         {threads_most} threads"
    );
    assert!(
        still_open <= MAX_CONNECTIONS,
        "{still_open} of {OPENED} connections still open after 20 s: the excess over \
         {MAX_CONNECTIONS} must be closed"
    );
    // The held connections cost the listener its slots, not its service: once they go, a
    // scrape is answered again.
    open.clear();
    // While the listener closes the held connections, a new one may be reset: try again.
    wait_until("a scrape answered after the flood", || {
        try_http_get(metrics, "/metrics", None).is_ok_and(|(status, _)| status == 200)
    });
}

#[test]
fn an_endless_header_line_is_cut_off_and_the_memory_stays_bounded() {
    const OFFERED_BYTES: usize = 64 << 20;
    let (node, metrics) = node_with_metrics();
    let pid = node.child.id();
    let rss_before = proc_status(pid, "RssAnon");
    let mut stream = TcpStream::connect(metrics).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_secs(20)))
        .expect("write timeout");
    let head = format!("GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nX-Endless: ");
    stream.write_all(head.as_bytes()).expect("send the head");
    let chunk = vec![b'a'; 1 << 20];
    let mut sent = 0;
    while sent < OFFERED_BYTES {
        match stream.write(&chunk) {
            Ok(written) => sent += written,
            Err(_) => break, // closed (reset) by the node, or it stopped reading
        }
    }
    let mut response = Vec::new();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response);
    let rss_after = proc_status(pid, "RssAnon");
    let status_line = response.lines().next().unwrap_or_default();
    eprintln!(
        "endless header: {sent} of {OFFERED_BYTES} bytes taken, answer {status_line:?}, RssAnon \
         {rss_before} KiB before, {rss_after} KiB after"
    );
    assert!(
        rss_after < rss_before + 16 * 1024,
        "a {sent}-byte header line grew the node's heap from {rss_before} KiB to {rss_after} KiB"
    );
    assert!(
        response.starts_with("HTTP/1.1 431") || sent < OFFERED_BYTES,
        "a {sent}-byte header line was taken whole; the answer: {response:?}"
    );
    assert_eq!(http_get(metrics, "/metrics", None).0, 200, "still serving");
}

#[test]
fn a_client_that_never_finishes_its_head_is_dropped() {
    let (_node, metrics) = node_with_metrics();
    let mut stream = TcpStream::connect(metrics).expect("connect");
    let head = format!("GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nX-Slow: ");
    stream.write_all(head.as_bytes()).expect("send the head");
    // One byte every 250 ms: the head grows, slowly enough never to reach a size limit, and
    // never ends. The listener must drop it after its head read timeout (10 s).
    let started = Instant::now();
    while !closed_by_peer(&mut stream, Duration::from_millis(250)) {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "a client trickling an endless head is still connected after 40 s"
        );
        if stream.write_all(b"a").is_err() {
            break;
        }
    }
    eprintln!("a trickling head dropped after {:?}", started.elapsed());
    assert_eq!(http_get(metrics, "/metrics", None).0, 200, "still serving");
}

#[test]
fn a_request_for_another_host_is_refused() {
    let (_node, metrics) = node_with_metrics();
    // A web page elsewhere reaching the loopback listener through DNS rebinding sends its own
    // host name.
    let mut stream = TcpStream::connect(metrics).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    let request = "GET /metrics HTTP/1.1\r\nHost: attacker.example:80\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 421"), "{response}");
    assert!(!response.contains("swarm_info"), "{response}");
}
