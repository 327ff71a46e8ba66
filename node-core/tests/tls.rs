//! The server core under TLS, in process (the test service of `common`): the limits that must
//! hold inside TLS too. A TLS handshake that never completes is closed within the hello
//! timeout, a client that never reads costs bounded memory (what rustls holds counts in
//! `output_buffer_bytes`), and a flood of handshakes takes turns with established clients
//! (`tls_handshakes_per_pass`). End-to-end TLS on the real nodes is in `client/tests/tls.rs`.

mod common;

use common::*;
use node_core::protocol::frame::{parse_frame, FrameType, HEADER_LEN};
use node_core::protocol::PROTOCOL_VERSION;
use node_core::server::ServerOptions;
use node_core::tls::{ServerTls, TlsFiles};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A self-signed certificate for 127.0.0.1 in a temporary directory, and the node's TLS.
struct Pki {
    _dir: tempfile::TempDir,
    tls: ServerTls,
    cert_der: Vec<u8>,
}

fn pki() -> Pki {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()])
        .expect("self-signed certificate");
    let dir = tempfile::tempdir().expect("temp dir");
    let cert_file = dir.path().join("node.pem");
    let key_file = dir.path().join("node-key.pem");
    std::fs::write(&cert_file, certified.cert.pem()).expect("write cert");
    std::fs::write(&key_file, certified.signing_key.serialize_pem()).expect("write key");
    let tls = ServerTls::load(TlsFiles {
        cert_file,
        key_file,
        client_ca_file: None,
    })
    .expect("load the node's TLS");
    Pki {
        _dir: dir,
        tls,
        cert_der: certified.cert.der().to_vec(),
    }
}

/// A blocking TLS client trusting only `pki`'s certificate, past the swarm handshake.
fn tls_client(
    addr: SocketAddr,
    pki: &Pki,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(pki.cert_der.clone().into())
        .expect("trust the test certificate");
    let config = rustls::ClientConfig::builder_with_provider(node_core::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let session = rustls::ClientConnection::new(Arc::new(config), name).expect("session");
    let socket = TcpStream::connect(addr).expect("connect");
    socket.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let mut stream = rustls::StreamOwned::new(session, socket);
    let mut hello = [0u8; 40];
    stream
        .read_exact(&mut hello)
        .expect("server hello inside TLS");
    stream
        .write_all(&client_hello(PROTOCOL_VERSION, 0, b"", &[0; 64]))
        .expect("client hello");
    let mut result = [0u8; 8];
    stream.read_exact(&mut result).expect("handshake result");
    stream
}

/// Reads one whole frame: (type, id, code, body).
fn read_frame(stream: &mut impl Read, buffer: &mut Vec<u8>) -> (FrameType, u64, u8, Vec<u8>) {
    loop {
        if let Some(header) = parse_frame(buffer, u32::MAX).expect("a valid frame") {
            let body = buffer[HEADER_LEN..header.frame_len()].to_vec();
            buffer.drain(..header.frame_len());
            return (header.frame_type, header.request_id, header.code, body);
        }
        let mut chunk = [0u8; 65536];
        let read = stream.read(&mut chunk).expect("read");
        assert!(read > 0, "closed while waiting for a frame");
        buffer.extend_from_slice(&chunk[..read]);
    }
}

fn tls_options(pki: &Pki) -> ServerOptions {
    ServerOptions {
        tls: Some(pki.tls.clone()),
        ..test_options()
    }
}

#[test]
fn a_tls_handshake_that_never_completes_is_closed() {
    let pki = pki();
    let server = start(ServerOptions {
        hello_timeout_ms: 300,
        ..tls_options(&pki)
    });
    // Silent; half a record header; a ClientHello record announced and never sent in full.
    let starts: [&[u8]; 3] = [&[], &[22, 3], &[22, 3, 1, 0, 200, 1, 0]];
    let mut stalled: Vec<TcpStream> = starts
        .iter()
        .map(|bytes| {
            let mut socket = TcpStream::connect(server.addr).expect("connect");
            socket.write_all(bytes).expect("send");
            socket
                .set_read_timeout(Some(Duration::from_secs(20)))
                .expect("timeout");
            socket
        })
        .collect();
    let started = Instant::now();
    for socket in &mut stalled {
        let mut got = Vec::new();
        // EOF (or a reset) once the node closes it; a timeout fails the test.
        match socket.read_to_end(&mut got) {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(error) => panic!("the stalled handshake was not closed: {error}"),
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "closed by the hello timeout, not by the test's deadline"
    );
    // The node serves a TLS client that does complete its handshake.
    let mut client = tls_client(server.addr, &pki);
    let mut request = Vec::new();
    push_frame(&mut request, FrameType::Request, ECHO, 7, b"still here");
    client.write_all(&request).expect("send");
    let (frame_type, id, _, body) = read_frame(&mut client, &mut Vec::new());
    assert_eq!(
        (frame_type, id, body.as_slice()),
        (FrameType::Reply, 7, &b"still here"[..])
    );
}

#[test]
fn a_slow_reader_over_tls_costs_bounded_memory() {
    const REPLIES: u64 = 200;
    const REPLY_BYTES: u32 = 1024 * 1024;
    let pki = pki();
    let server = start(ServerOptions {
        output_buffer_bytes: 1024 * 1024,
        ..tls_options(&pki)
    });
    let mut slow = tls_client(server.addr, &pki);
    let mut other = tls_client(server.addr, &pki);
    let before = rss_kib();
    let mut batch = Vec::new();
    for id in 1..=REPLIES {
        push_frame(
            &mut batch,
            FrameType::Request,
            BIG_REPLY,
            id,
            &REPLY_BYTES.to_le_bytes(),
        );
    }
    slow.write_all(&batch).expect("send the requests");

    // While the slow reader reads nothing, the node serves the other and stops producing.
    let mut peak = before;
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut id = 1_000;
    let mut buffer = Vec::new();
    while Instant::now() < deadline {
        let mut request = Vec::new();
        push_frame(&mut request, FrameType::Request, ECHO, id, b"x");
        other.write_all(&request).expect("send");
        let (_, reply_id, _, _) = read_frame(&mut other, &mut buffer);
        assert_eq!(reply_id, id);
        id += 1;
        peak = peak.max(rss_kib());
        std::thread::sleep(Duration::from_millis(50));
    }
    let grown_mib = peak.saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "memory grew by {grown_mib} MiB while a TLS reader stalled on 200 MiB of replies"
    );
    let mut buffer = Vec::new();
    for id in 1..=REPLIES {
        let (frame_type, reply_id, _, body) = read_frame(&mut slow, &mut buffer);
        assert_eq!((frame_type, reply_id), (FrameType::Reply, id));
        assert_eq!(body.len(), REPLY_BYTES as usize, "reply {id} length");
        assert!(check_pattern(&body, id), "reply {id} content");
    }
}

/// Sends an Echo on an established TLS client and checks its reply.
fn echo(client: &mut (impl Read + Write), id: u64, buffer: &mut Vec<u8>) {
    let mut request = Vec::new();
    push_frame(
        &mut request,
        FrameType::Request,
        ECHO,
        id,
        &id.to_le_bytes(),
    );
    client.write_all(&request).expect("send an echo");
    let (frame_type, reply_id, _, body) = read_frame(client, buffer);
    assert_eq!(
        (frame_type, reply_id, body.as_slice()),
        (FrameType::Reply, id, &id.to_le_bytes()[..])
    );
}

/// A flood of simultaneous TLS connects while an established client keeps sending requests,
/// with one handshake per pass (`tls_handshakes_per_pass = 1`), so most of them wait for a
/// later pass: every handshake completes (a waiting one is driven again without a new event,
/// or its client would time out), and the established client's requests are all answered
/// throughout. GetStats shows that handshakes did wait (`tls_handshakes_deferred`).
#[test]
fn a_flood_of_tls_handshakes_takes_turns_while_established_clients_are_served() {
    const FLOOD: usize = 48;
    let pki = pki();
    let server = start(ServerOptions {
        tls_handshakes_per_pass: 1,
        ..tls_options(&pki)
    });
    let mut established = tls_client(server.addr, &pki);
    let mut buffer = Vec::new();
    let mut id = 0u64;
    let mut deferred = 0;
    let mut served_during_floods = 0;
    // Almost always the first flood has passes with more than one handshake ready; a few more
    // floods make sure of it on a machine that ran the clients one after the other.
    for _flood in 0..5 {
        let start_together = std::sync::Barrier::new(FLOOD);
        std::thread::scope(|scope| {
            let clients: Vec<_> = (0..FLOOD)
                .map(|n| {
                    let (start_together, pki) = (&start_together, &pki);
                    scope.spawn(move || {
                        start_together.wait();
                        let mut client = tls_client(server.addr, pki);
                        echo(&mut client, 1_000_000 + n as u64, &mut Vec::new());
                    })
                })
                .collect();
            while !clients.iter().all(|client| client.is_finished()) {
                id += 1;
                echo(&mut established, id, &mut buffer);
                served_during_floods += 1;
            }
            for client in clients {
                client
                    .join()
                    .expect("every flooding client completes its handshake");
            }
        });
        let mut request = Vec::new();
        id += 1;
        push_frame(&mut request, FrameType::Request, GET_STATS, id, &[]);
        established.write_all(&request).expect("send GetStats");
        let (_, _, _, body) = read_frame(&mut established, &mut buffer);
        deferred = stat(&decode_stats(&body), "tls_handshakes_deferred").unwrap_or(0);
        if deferred > 0 {
            break;
        }
    }
    assert!(deferred > 0, "no handshake ever waited for a later pass");
    assert!(
        served_during_floods > 0,
        "the established client was served during the floods"
    );
}
