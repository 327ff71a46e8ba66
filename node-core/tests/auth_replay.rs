//! Handshake replay and key guessing against a real server (node-core's event loop on
//! 127.0.0.1:0, over real sockets) whose clients come from a credentials file on disk, loaded the
//! way the daemons load it (`Credentials::load`, which also checks the file's permissions).
//!
//! `server.rs`'s `authentication` test shows that a proof computed for one connection's nonce
//! fails on another. Here the attacker is the one of the threat model: it has recorded the exact
//! bytes of a ClientHello that *succeeded* (name and proof, from the wire) and sends them again,
//! on many new connections, while the victim's connection is open and after it closed; and it
//! guesses keys, many times over. It never gets in, every connection gets a nonce of its own, and
//! the node serves its legitimate clients throughout.

mod common;

use common::*;
use node_core::auth::{self, Credentials, Key};
use node_core::protocol::NodeKind;
use node_core::server::{RunningServer, ServerOptions};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

const OK: u8 = 0;
const ACCEPTED: u8 = 0;
const AUTH_REQUIRED: u8 = 1;
const AUTH_FAILED: u8 = 6;

const OPS_KEY: &str = "8f2a4c6e8a0b2d4f6e8a0c2e4a6c8e0f2b4d6f8a0c2e4a6c8e0a2c4e6a8c0e2f";
const APP_KEY: &str = "1b3d5f7a9c1e3a5c7e9a1c3e5a7c9e1a3c5e7a9c1e3a5c7e9a1b3d5f7a9c1e3f";

/// A server whose clients are listed in a credentials file (mode 0600) written to `dir`; `ops`
/// is an admin, `app` is not.
fn start_with_credentials_file(dir: &std::path::Path) -> (RunningServer, Key, Key) {
    let path = dir.join("credentials");
    std::fs::write(
        &path,
        format!("# clients of this node\nops:{OPS_KEY}\napp:{APP_KEY}\n"),
    )
    .expect("write credentials");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let credentials = Credentials::load(&path).expect("credentials file loads");
    let ops = credentials.get("ops").expect("ops listed").clone();
    let app = credentials.get("app").expect("app listed").clone();
    let server = start(ServerOptions {
        credentials: Some(Arc::new(credentials)),
        admins: vec!["ops".to_string()],
        ..test_options()
    });
    (server, ops, app)
}

/// The ClientHello bytes a legitimate client sends for `nonce`: what an eavesdropper records.
fn hello_for(name: &str, key: &Key, nonce: &[u8; 32]) -> Vec<u8> {
    let proof = auth::proof(key, nonce, name.as_bytes());
    client_hello(1, NodeKind::Dht as u8, name.as_bytes(), &proof)
}

/// Opens a connection, checks the node asks for authentication, and returns it with its nonce.
fn open(addr: SocketAddr) -> (RawConn, [u8; 32]) {
    let mut conn = RawConn::connect(addr);
    let hello = conn.read_server_hello().expect("server hello");
    assert_eq!(hello.verdict, AUTH_REQUIRED);
    (conn, hello.nonce)
}

/// Sends `hello_bytes` on a fresh connection and checks the node refuses them (AuthFailed, no
/// admin flag) and closes. Returns the nonce that connection had.
#[track_caller]
fn assert_refused(addr: SocketAddr, hello_bytes: &[u8]) -> [u8; 32] {
    let (mut conn, nonce) = open(addr);
    conn.send_raw(hello_bytes);
    let result = conn.read_handshake_result().expect("handshake result");
    assert_eq!(
        (result.result, result.flags),
        (AUTH_FAILED, 0),
        "refused, as nobody"
    );
    assert_eq!(
        conn.expect_closed(),
        b"",
        "nothing follows a refused handshake"
    );
    nonce
}

#[test]
fn a_recorded_client_hello_replayed_on_new_connections_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, ops_key, _) = start_with_credentials_file(dir.path());

    // The victim: an admin whose handshake succeeds. The attacker records its ClientHello.
    let (mut victim, victim_nonce) = open(server.addr);
    assert_ne!(victim_nonce, [0; 32], "a real nonce");
    let recorded = hello_for("ops", &ops_key, &victim_nonce);
    victim.send_raw(&recorded);
    let result = victim.read_handshake_result().expect("result");
    assert_eq!(
        (result.result, result.flags & 1),
        (ACCEPTED, 1),
        "the victim is in, as admin"
    );
    victim.call(ADMIN, 1, &[]).assert_reply(1, OK);

    // The same bytes on new connections, while the victim's connection is open: each new
    // connection has a nonce of its own, so the recorded proof matches none of them.
    let mut nonces = HashSet::from([victim_nonce]);
    for _ in 0..50 {
        let nonce = assert_refused(server.addr, &recorded);
        assert!(nonces.insert(nonce), "nonce {nonce:02x?} was used before");
    }
    // Recorded bytes followed by a request, in one write, as a replaying attacker would send
    // them: refused before the request is looked at.
    let mut with_request = recorded.clone();
    push_frame(
        &mut with_request,
        node_core::protocol::frame::FrameType::Request,
        ADMIN,
        9,
        &[],
    );
    let nonce = assert_refused(server.addr, &with_request);
    assert!(nonces.insert(nonce));

    // The victim is unaffected, and after it leaves the recording is still worth nothing.
    victim.assert_echo(2);
    drop(victim);
    for _ in 0..10 {
        let nonce = assert_refused(server.addr, &recorded);
        assert!(nonces.insert(nonce), "nonce {nonce:02x?} was used before");
    }

    // The node counted every refusal, and still admits the real admin.
    let (mut admin, _, result) = connect_as(server.addr, "ops", Some(&ops_key));
    assert_eq!(result.expect("result").result, ACCEPTED);
    let stats = get_stats(&mut admin, 1);
    assert_eq!(stat(&stats, "handshakes_failed"), Some(61), "{stats:?}");
    drop(admin);
    server.stop().expect("clean stop");
}

#[test]
fn guessed_keys_never_get_in_and_the_node_keeps_serving_others() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, ops_key, app_key) = start_with_credentials_file(dir.path());

    // A legitimate client, connected before the attack and used throughout it.
    let (mut app, _, result) = connect_as(server.addr, "app", Some(&app_key));
    assert_eq!(result.expect("result").result, ACCEPTED);
    let failed_before = stat(&get_stats(&mut app, 100), "handshakes_failed");
    assert_eq!(
        failed_before,
        Some(0),
        "no failed handshake before the attack"
    );

    // 300 guesses: random keys for the admin's name and for the client's; the client's real
    // key under the admin's name (a client promoting itself); the admin's real proof under
    // another name; and proofs that are not HMACs at all.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random_bytes = |len: usize| -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    };
    for attempt in 0..300u64 {
        let (mut conn, nonce) = open(server.addr);
        let bytes = match attempt % 5 {
            0 => {
                let key = Key::from_bytes(random_bytes(32)).expect("key");
                hello_for("ops", &key, &nonce)
            }
            1 => {
                let key = Key::from_bytes(random_bytes(64)).expect("key");
                hello_for("app", &key, &nonce)
            }
            2 => hello_for("ops", &app_key, &nonce),
            3 => {
                let proof = auth::proof(&ops_key, &nonce, b"ops");
                client_hello(1, NodeKind::Dht as u8, b"app", &proof)
            }
            _ => {
                let mut proof = [0u8; 64];
                proof.copy_from_slice(&random_bytes(64));
                client_hello(1, NodeKind::Dht as u8, b"ops", &proof)
            }
        };
        conn.send_raw(&bytes);
        let result = conn.read_handshake_result().expect("handshake result");
        assert_eq!(
            (result.result, result.flags),
            (AUTH_FAILED, 0),
            "attempt {attempt}"
        );
        assert_eq!(conn.expect_closed(), b"");
        if attempt % 50 == 0 {
            // The legitimate client is served in the middle of the attack, and is no admin.
            app.assert_echo(attempt + 1);
            app.call(ADMIN, 10_000 + attempt, &[]).assert_reply(
                10_000 + attempt,
                node_core::protocol::Status::NotPermitted as u8,
            );
        }
    }

    // After it: the legitimate client still works, and new legitimate connections get in.
    app.assert_echo(1_000_000);
    let (mut admin, _, result) = connect_as(server.addr, "ops", Some(&ops_key));
    let result = result.expect("result");
    assert_eq!((result.result, result.flags & 1), (ACCEPTED, 1));
    admin.call(ADMIN, 1, &[]).assert_reply(1, OK);
    // The node counted every refused attempt, and nothing else.
    let stats = get_stats(&mut admin, 2);
    assert_eq!(stat(&stats, "handshakes_failed"), Some(300), "{stats:?}");
    drop((app, admin));
    server.stop().expect("clean stop");
}
