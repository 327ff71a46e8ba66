//! Connections from this node to other dht nodes — a redistribution's targets, a catch-up's
//! peers — with the node's credentials and peer TLS, and the backoff between failed attempts.

use client::{Client, ClientError, ClientOptions};
use node_core::auth::Key;
use node_core::protocol::NodeKind;
use std::net::SocketAddr;
use std::time::Duration;

/// How this node connects to another dht node.
#[derive(Debug, Clone, Default)]
pub struct PeerLogin {
    /// Name and key from the node's credentials file; `None`: anonymous.
    pub credentials: Option<(String, Key)>,
    /// `[tls] peer_ca_file` (and the node's certificate); `None`: in clear.
    pub tls: Option<client::tls::ClientTls>,
}

/// A client of the dht node at `addr` alone.
pub fn connect(
    addr: SocketAddr,
    login: &PeerLogin,
    connect_timeout: Duration,
    request_timeout: Duration,
) -> Result<Client, ClientError> {
    let options = ClientOptions {
        connect_timeout_ms: connect_timeout.as_millis() as u64,
        request_timeout_ms: request_timeout.as_millis() as u64,
        credentials: login.credentials.clone(),
        tls: login.tls.clone(),
        ..ClientOptions::default()
    };
    Client::connect(&[addr], Some(NodeKind::Dht), options)
}

/// The pause after failed attempt `attempt` (0 the first): `first`, doubled each time, at most
/// `max`.
pub fn backoff(first: Duration, max: Duration, attempt: u32) -> Duration {
    first.saturating_mul(1 << attempt.min(16)).min(max)
}
