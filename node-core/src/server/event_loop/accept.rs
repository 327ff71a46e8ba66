//! Accepting connections and their handshake: the connection limit, the ServerHello (with a
//! nonce when authentication is on), the ClientHello's judgement (version, kind, proof), the
//! admin flag, and closing connections that never finish their handshake.

use super::{EventLoop, Pending, ACCEPTS_PER_PASS};
use crate::auth;
use crate::protocol::handshake::{
    ClientHello, HandshakeOutcome, HandshakeResult, HelloVerdict, ServerHello, NONCE_LEN,
};
use crate::protocol::PROTOCOL_VERSION;
use crate::server::connection::{Connection, Phase};
use crate::server::service::{ClientInfo, Service};
use crate::server::FIRST_CONNECTION_TOKEN;
use mio::{Interest, Token};
use std::io;
use std::time::{Duration, Instant};

impl<S: Service> EventLoop<'_, S> {
    pub(super) fn accept_connections(&mut self) {
        for _ in 0..ACCEPTS_PER_PASS {
            match self.server.listener.accept() {
                Ok((socket, peer)) => self.on_accepted(socket, peer),
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => {
                    // EMFILE and friends: try again on the next tick rather than spin; the
                    // edge-triggered listener would not tell us again about those waiting.
                    tracing::warn!("accept failed: {err}");
                    self.accept_retry = true;
                    return;
                }
            }
        }
        // More may be waiting: an edge-triggered listener will not tell us again.
        self.pending.push_back(Pending::Accept);
    }

    pub(super) fn on_accepted(
        &mut self,
        mut socket: mio::net::TcpStream,
        peer: std::net::SocketAddr,
    ) {
        if self.connections.len() >= self.options().max_connections || self.shutting_down {
            let verdict = if self.shutting_down {
                HelloVerdict::ShuttingDown
            } else {
                HelloVerdict::ConnectionLimit
            };
            self.refuse(&mut socket, verdict);
            return;
        }
        self.configure_socket(&socket);
        let nonce = match self.options().credentials.is_some() {
            true => match auth::random_nonce() {
                Ok(nonce) => Some(nonce),
                Err(err) => {
                    tracing::error!("no randomness for an auth nonce, refusing {peer}: {err}");
                    return;
                }
            },
            false => None,
        };
        let hello = ServerHello {
            version: PROTOCOL_VERSION,
            kind: self.service.kind(),
            verdict: if nonce.is_some() {
                HelloVerdict::AuthRequired
            } else {
                HelloVerdict::Ready
            },
            nonce: nonce.unwrap_or([0; NONCE_LEN]),
        };
        let client = ClientInfo {
            name: String::new(),
            admin: false,
            peer,
        };
        let serial = self.next_serial;
        self.next_serial += 1;
        let mut connection =
            Connection::new(socket, serial, Phase::AwaitingHello { nonce }, client);
        connection.output.extend_from_slice(&hello.encode());
        let entry = self.connections.vacant_entry();
        let slot = entry.key();
        let token = Token(slot + FIRST_CONNECTION_TOKEN);
        if let Err(err) = self.server.poll.registry().register(
            &mut connection.socket,
            token,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            tracing::warn!("cannot register connection from {peer}: {err}");
            return;
        }
        entry.insert(connection);
        self.stats.connections_open += 1;
        self.stats.count(|c| c.connections_accepted += 1);
        self.flush(slot);
    }

    /// Tells an excess connection why it is refused and closes it. The hello is 40 bytes on a
    /// fresh socket, so the write cannot block.
    pub(super) fn refuse(&mut self, socket: &mut mio::net::TcpStream, verdict: HelloVerdict) {
        use std::io::Write;
        let hello = ServerHello {
            version: PROTOCOL_VERSION,
            kind: self.service.kind(),
            verdict,
            nonce: [0; NONCE_LEN],
        };
        let _ = socket.write_all(&hello.encode());
        self.stats.count(|c| c.connections_refused += 1);
        tracing::debug!("refused a connection: {verdict:?}");
    }

    pub(super) fn configure_socket(&self, socket: &mio::net::TcpStream) {
        if let Err(err) = socket.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {err}");
        }
        let idle = Duration::from_secs(u64::from(self.options().tcp_keepalive_idle_s.max(1)));
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(idle)
            .with_interval(Duration::from_secs(3))
            .with_retries(3);
        if let Err(err) = socket2::SockRef::from(socket).set_tcp_keepalive(&keepalive) {
            tracing::debug!("TCP keepalive: {err}");
        }
    }

    /// Completes the handshake if the ClientHello has arrived. Returns whether input was used.
    pub(super) fn process_hello(&mut self, slot: usize, nonce: Option<[u8; NONCE_LEN]>) -> bool {
        let conn = &mut self.connections[slot];
        let (hello, used) = match ClientHello::parse(conn.pending_input()) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return false,
            Err(err) => {
                tracing::debug!("bad hello from {}: {err}", conn.client.peer);
                self.end_handshake(slot, HandshakeOutcome::BadHello, false);
                return false;
            }
        };
        conn.consume_input(used);
        let outcome = self.judge_hello(&hello, nonce, slot);
        // A refused client is nobody's admin: setting the flag on a refusal would tell a prober
        // which names are admins.
        let admin = outcome == HandshakeOutcome::Accepted
            && match &self.server.options.credentials {
                Some(_) => {
                    let name = String::from_utf8_lossy(&hello.name);
                    self.server
                        .options
                        .admins
                        .iter()
                        .any(|admin| *admin == name)
                }
                None => true,
            };
        self.end_handshake(slot, outcome, admin);
        if outcome == HandshakeOutcome::Accepted {
            let conn = &mut self.connections[slot];
            conn.client.name = String::from_utf8_lossy(&hello.name).into_owned();
            conn.client.admin = admin;
            conn.phase = Phase::Open;
            return true;
        }
        false
    }

    pub(super) fn judge_hello(
        &self,
        hello: &ClientHello,
        nonce: Option<[u8; NONCE_LEN]>,
        slot: usize,
    ) -> HandshakeOutcome {
        let peer = self.connections[slot].client.peer;
        if hello.version != PROTOCOL_VERSION {
            tracing::info!(
                "client {peer} speaks protocol {}, node speaks {PROTOCOL_VERSION}",
                hello.version
            );
            return HandshakeOutcome::UnsupportedVersion;
        }
        if hello
            .wanted_kind
            .is_some_and(|kind| kind != self.service.kind())
        {
            return HandshakeOutcome::WrongKind;
        }
        let (Some(credentials), Some(nonce)) = (&self.server.options.credentials, nonce) else {
            return HandshakeOutcome::Accepted;
        };
        match auth::verify(credentials, &hello.name, &nonce, &hello.proof) {
            Ok(()) => HandshakeOutcome::Accepted,
            Err(reason) => {
                tracing::warn!(
                    "authentication failure for client '{}' from {peer}: {reason}",
                    String::from_utf8_lossy(&hello.name).escape_debug()
                );
                HandshakeOutcome::AuthFailed
            }
        }
    }

    pub(super) fn end_handshake(&mut self, slot: usize, outcome: HandshakeOutcome, admin: bool) {
        let conn = &mut self.connections[slot];
        conn.output
            .extend_from_slice(&HandshakeResult { outcome, admin }.encode());
        if outcome != HandshakeOutcome::Accepted {
            conn.close_when_flushed = true;
            self.stats.count(|c| c.handshakes_failed += 1);
        }
    }

    pub(super) fn close_stalled_handshakes(&mut self, now: Instant) {
        let timeout = Duration::from_millis(self.server.options.hello_timeout_ms);
        let stalled: Vec<usize> = self
            .connections
            .iter()
            .filter(|(_, conn)| matches!(conn.phase, Phase::AwaitingHello { .. }))
            .filter(|(_, conn)| now.duration_since(conn.accepted_at) > timeout)
            .map(|(slot, _)| slot)
            .collect();
        for slot in stalled {
            tracing::debug!(
                "closing {}: no handshake within {timeout:?}",
                self.connections[slot].client.peer
            );
            self.close(slot);
        }
    }
}
