//! Authentication and administrative requests on the real node of each kind, configured as an
//! operator would: `auth.credentials_file` naming a file of mode 0600 and `auth.admins`. A
//! client that cannot prove a listed key is refused at the handshake; an authenticated client
//! that is not an admin gets NotPermitted for every administrative request (RemoveChannel on
//! every kind; Redistribute, RedistBatch, RedistBatchVersion and RedistCommit on dht) and nothing changes; an admin
//! is served.

use node_core::auth::Key;
use node_core::protocol::batch::{append_record, encode_batch};
use node_core::protocol::dht::{self, RedistributeRequest, RedistributeTarget};
use node_core::protocol::{logfiles, queue, RequestCode, Status};
use std::path::PathBuf;
use testkit::{open_authenticated, workspace_binary, Conn, TempNode, TestCredentials};

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

    fn write(self, channel: &str) -> (RequestCode, Vec<u8>) {
        let mut body = Vec::new();
        let value = b"a record";
        match self {
            Kind::Dht => {
                dht::PutRequest {
                    channel,
                    key: 1,
                    value,
                }
                .encode(&mut body);
                (dht::PUT, body)
            }
            Kind::Logfiles => {
                logfiles::PutRequest {
                    channel,
                    key: 1,
                    value,
                }
                .encode(&mut body);
                (logfiles::PUT, body)
            }
            Kind::Queue => {
                queue::PushRequest { channel, value }.encode(&mut body);
                (queue::PUSH, body)
            }
        }
    }

    fn get_channels(self) -> RequestCode {
        match self {
            Kind::Dht => dht::GET_CHANNELS,
            Kind::Logfiles => logfiles::GET_CHANNELS,
            Kind::Queue => queue::GET_CHANNELS,
        }
    }

    fn remove_channel(self, channel: &str) -> (RequestCode, Vec<u8>) {
        let mut body = Vec::new();
        dht::encode_channel(&mut body, channel);
        let code = match self {
            Kind::Dht => dht::REMOVE_CHANNEL,
            Kind::Logfiles => logfiles::REMOVE_CHANNEL,
            Kind::Queue => queue::REMOVE_CHANNEL,
        };
        (code, body)
    }
}

/// The administrative requests of dht besides RemoveChannel, with well-formed bodies (the node
/// refuses a non-admin before it decodes the body; request_rules.rs sends malformed ones).
fn dht_admin_requests(self_addr: std::net::SocketAddr) -> Vec<(RequestCode, Vec<u8>)> {
    let [lower, upper] = dht::split_evenly(2)[..] else {
        unreachable!("two halves")
    };
    let mut redistribute = Vec::new();
    RedistributeRequest {
        range: lower,
        targets: vec![RedistributeTarget {
            address: self_addr,
            range: upper,
        }],
    }
    .encode(&mut redistribute);
    let mut raw = Vec::new();
    append_record(&mut raw, 42, b"moved");
    let mut batch = Vec::new();
    encode_batch(&raw, 1, &mut batch);
    let mut redist_batch = Vec::new();
    dht::encode_put_batch(&mut redist_batch, "keep", &batch);
    let mut versioned = node_core::protocol::batch::BatchBuilder::new(1 << 16);
    dht::RefreshRecord::Record {
        version: 7,
        value: b"moved",
    }
    .push_to(&mut versioned, 42);
    let mut batch = Vec::new();
    versioned.finish_into(&mut batch);
    let mut redist_batch_version = Vec::new();
    dht::encode_put_batch(&mut redist_batch_version, "keep", &batch);
    let mut redist_commit = Vec::new();
    dht::encode_channel(&mut redist_commit, "keep");
    vec![
        (dht::REDISTRIBUTE, redistribute),
        (dht::REDIST_BATCH, redist_batch),
        (dht::REDIST_BATCH_VERSION, redist_batch_version),
        (dht::REDIST_COMMIT, redist_commit),
    ]
}

fn channels(conn: &mut Conn, kind: Kind) -> Vec<String> {
    let (status, body) = conn.request(kind.get_channels(), Vec::new());
    assert_eq!(status, Status::Ok);
    dht::decode_channel_names(&body).expect("channel names")
}

fn only_admins_administer(kind: Kind) {
    let credentials = TestCredentials::new();
    let config = match kind {
        // The [queue] section is queuenode's only.
        Kind::Queue => format!(
            "{}[queue]\nchannel_size_bytes = 65536\n",
            credentials.config
        ),
        _ => credentials.config.clone(),
    };
    let binary = kind.binary();
    let node = TempNode::start(binary.to_str().expect("utf-8 path"), &config, &[]);
    let (ops, app) = (&credentials.ops, &credentials.app);

    // Without a listed key, no way in.
    let wrong = Key::from_hex(&TestCredentials::OPS_KEY.replace('0', "1")).expect("key");
    assert!(open_authenticated(node.addr, "ops", &wrong).is_err());
    assert!(open_authenticated(node.addr, "nobody", app).is_err());

    // An ordinary client writes, and may not administer.
    let (mut client, result) = open_authenticated(node.addr, "app", app).expect("app gets in");
    assert!(!result.admin, "{kind:?}: app is no admin");
    let (code, body) = kind.write("keep");
    assert_eq!(client.request(code, body).0, Status::Ok);
    let (code, body) = kind.remove_channel("keep");
    let (status, message) = client.request(code, body);
    assert_eq!(
        status,
        Status::NotPermitted,
        "{kind:?}: {}",
        String::from_utf8_lossy(&message)
    );
    if let Kind::Dht = kind {
        for (code, body) in dht_admin_requests(node.addr) {
            let (status, message) = client.request(code, body);
            assert_eq!(
                status,
                Status::NotPermitted,
                "dht request {}: {}",
                code.0,
                String::from_utf8_lossy(&message)
            );
        }
    }
    assert_eq!(
        channels(&mut client, kind),
        vec!["keep"],
        "{kind:?}: nothing removed"
    );

    // The admin may.
    let (mut admin, result) = open_authenticated(node.addr, "ops", ops).expect("ops gets in");
    assert!(result.admin, "{kind:?}: ops is an admin");
    let (code, body) = kind.remove_channel("keep");
    assert_eq!(admin.request(code, body).0, Status::Ok);
    assert!(channels(&mut client, kind).is_empty(), "{kind:?}");
    drop((client, admin));
    let TempNode { node, dir } = node;
    node.stop();
    drop(dir);
}

#[test]
fn dht_node_admits_only_listed_clients_and_only_admins_administer() {
    only_admins_administer(Kind::Dht);
}

#[test]
fn logfiles_node_admits_only_listed_clients_and_only_admins_administer() {
    only_admins_administer(Kind::Logfiles);
}

#[test]
fn queue_node_admits_only_listed_clients_and_only_admins_administer() {
    only_admins_administer(Kind::Queue);
}
