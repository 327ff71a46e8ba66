//! Credentials changed without a restart, on the real node of each kind: the operator rewrites
//! the credentials file and sends SIGHUP. A client added is accepted at its next handshake; a
//! client removed is refused and its open connection is closed, while the connections of the
//! clients still listed keep working; a client whose key changed is revoked the same way; and a
//! file that fails its checks (a bad line, world-readable) keeps the old set, with an ERROR in
//! root.log naming the problem.

use node_core::auth::Key;
use node_core::protocol::RequestCode;
use node_core::protocol::Status;
use std::io::Read;
use testkit::{open_authenticated, wait_until, Conn, Kind, TempNode, TestCredentials};

const CAROL_KEY: &str = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00";

fn carol() -> Key {
    Key::from_hex(CAROL_KEY).expect("carol's key")
}

/// GetVersion answers: the connection is open and serving.
fn serves(conn: &mut Conn) -> bool {
    conn.request(RequestCode::GET_VERSION, Vec::new()).0 == Status::Ok
}

/// The node closed the connection (end of file or reset); fails if it stays open past the
/// connection's read timeout.
fn closed_by_node(conn: &mut Conn) -> bool {
    let mut byte = [0u8; 1];
    match conn.stream.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(err) => err.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

/// Sends SIGHUP and waits for the `count`-th reload outcome (`marker`) in root.log.
fn reload(node: &TempNode, marker: &str, count: usize) {
    node.signal("HUP");
    wait_until(&format!("reload #{count} ({marker}) in root.log"), || {
        node.root_log().matches(marker).count() >= count
    });
}

fn added_and_revoked_on(kind: Kind) {
    let creds = TestCredentials::new();
    let node = kind.start(&creds.config);
    let mut app = open_authenticated(node.addr, "app", &creds.app)
        .expect("app listed")
        .0;
    let mut ops = open_authenticated(node.addr, "ops", &creds.ops)
        .expect("ops listed")
        .0;
    assert!(open_authenticated(node.addr, "carol", &carol()).is_err());

    // carol added, app removed.
    let listed = format!("ops:{}\ncarol:{CAROL_KEY}\n", TestCredentials::OPS_KEY);
    creds.rewrite(&listed, 0o600);
    reload(&node, "credentials reloaded", 1);
    let mut carol_conn = match open_authenticated(node.addr, "carol", &carol()) {
        Ok((conn, _)) => conn,
        Err(err) => panic!("{kind:?}: carol refused after the reload: {err}"),
    };
    assert!(serves(&mut carol_conn));
    let refused = open_authenticated(node.addr, "app", &creds.app).err();
    let refused = refused.expect("app removed: refused");
    assert!(refused.contains("AuthFailed"), "{refused}");
    assert!(
        closed_by_node(&mut app),
        "{kind:?}: app's open connection closed"
    );
    assert!(
        serves(&mut ops),
        "{kind:?}: ops, still listed, keeps its connection"
    );

    // carol's key changed: her open connection proved the old one.
    let rekeyed = format!(
        "ops:{}\ncarol:{}\n",
        TestCredentials::OPS_KEY,
        TestCredentials::APP_KEY
    );
    creds.rewrite(&rekeyed, 0o600);
    reload(&node, "credentials reloaded", 2);
    assert!(
        closed_by_node(&mut carol_conn),
        "{kind:?}: re-keyed carol closed"
    );
    assert!(open_authenticated(node.addr, "carol", &carol()).is_err());
    assert!(open_authenticated(node.addr, "carol", &creds.app).is_ok());

    // Files that fail their checks change nothing.
    creds.rewrite("ops:00\n", 0o600);
    reload(&node, "credentials not reloaded", 1);
    creds.rewrite(&listed, 0o644);
    reload(&node, "credentials not reloaded", 2);
    let log = node.root_log();
    assert!(
        log.contains("ERROR") && log.contains("line 1: bad key for 'ops'"),
        "{log}"
    );
    assert!(log.contains("readable by everyone"), "{log}");
    assert!(serves(&mut ops), "{kind:?}: a bad file closes nothing");
    assert!(open_authenticated(node.addr, "carol", &creds.app).is_ok());
    assert!(open_authenticated(node.addr, "app", &creds.app).is_err());
}

#[test]
fn dht_credentials_added_and_revoked_by_sighup() {
    added_and_revoked_on(Kind::Dht);
}

#[test]
fn logfiles_credentials_added_and_revoked_by_sighup() {
    added_and_revoked_on(Kind::Logfiles);
}

#[test]
fn queue_credentials_added_and_revoked_by_sighup() {
    added_and_revoked_on(Kind::Queue);
}
