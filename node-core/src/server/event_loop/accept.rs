//! Accepting connections and their handshake: the connection limit, the TLS session when the
//! node has TLS, the ServerHello (with a nonce when authentication is on), the ClientHello's
//! judgement (version, kind, proof), the admin flag, and closing connections that never finish
//! their handshake (the TLS handshake included: both must end within `hello_timeout_ms`).
//!
//! TLS handshakes take turns ([`HandshakeTurns`]): at most `tls_handshakes_per_pass` per pass.
//! A client on the wrong side of TLS (in clear on a TLS port, or with TLS on a plain one) is
//! closed at once and named in a WARN line, at most one per [`MISDIRECTED_LOG_INTERVAL`].

use super::{EventLoop, Pending, ACCEPTS_PER_PASS};
use crate::auth;
use crate::protocol::handshake::{
    ClientHello, HandshakeOutcome, HandshakeResult, HelloVerdict, ServerHello, NONCE_LEN,
};
use crate::protocol::PROTOCOL_VERSION;
use crate::server::connection::{Connection, Phase};
use crate::server::service::{ClientInfo, Service};
use crate::server::FIRST_CONNECTION_TOKEN;
use crate::tls::Transport;
use mio::{Interest, Token};
use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

/// TLS handshakes waiting for their turn, and what the current pass may still drive. A node's
/// TLS handshake runs its cryptography on the event loop (X25519 and the certificate's
/// signature, about 0.5 ms here), so a flood of connects (thousands at once, up to
/// `max_connections`) would hold every established connection's requests for as long as all
/// of them take. Each pass drives at most `tls_handshakes_per_pass`, those waiting longest
/// first; a connection whose turn has not come waits here. Readiness is edge-triggered: bytes
/// already there bring no new event, so its turn reads it until WouldBlock without one.
/// Bounded: a connection waits at most once (its `handshake_waiting` flag).
#[derive(Debug, Default)]
pub(super) struct HandshakeTurns {
    /// (slot, serial) in arrival order; the serial tells a slot reused after a close.
    waiting: VecDeque<(usize, u64)>,
    /// Handshakes the current pass may still drive.
    budget: usize,
}

impl HandshakeTurns {
    pub(super) fn any_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }
}

/// At most one WARN line per this long about clients on the wrong side of TLS (a scanner or a
/// misconfigured fleet must not flood root.log); the next line counts the ones not named.
const MISDIRECTED_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The rate limit of the WARN lines about misdirected clients.
#[derive(Debug, Default)]
pub(super) struct MisdirectedLog {
    last: Option<Instant>,
    unnamed: u64,
}

impl MisdirectedLog {
    /// Writes `what` (naming the peer) unless a line was written within the interval.
    fn note(&mut self, now: Instant, what: std::fmt::Arguments<'_>) {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < MISDIRECTED_LOG_INTERVAL)
        {
            self.unnamed += 1;
            return;
        }
        let unnamed = std::mem::take(&mut self.unnamed);
        self.last = Some(now);
        if unnamed > 0 {
            tracing::warn!("{what}; closed ({unnamed} more such clients since the last line)");
        } else {
            tracing::warn!("{what}; closed");
        }
    }
}

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
        let Some(transport) = self.transport_for(socket, peer) else {
            return;
        };
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
            Connection::new(transport, serial, Phase::AwaitingHello { nonce }, client);
        connection.output.extend_from_slice(&hello.encode());
        let entry = self.connections.vacant_entry();
        let slot = entry.key();
        let token = Token(slot + FIRST_CONNECTION_TOKEN);
        if let Err(err) = self.server.poll.registry().register(
            connection.transport.socket_mut(),
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

    /// The connection's transport: the socket itself, or a TLS session over it with the
    /// node's current certificate (the ServerHello then waits in it until the TLS handshake
    /// is done). `None`: refused, and counted.
    fn transport_for(
        &mut self,
        socket: mio::net::TcpStream,
        peer: std::net::SocketAddr,
    ) -> Option<Transport> {
        let Some(tls) = &self.server.options.tls else {
            return Some(Transport::plain(socket));
        };
        match tls.accept(socket) {
            Ok(transport) => Some(transport),
            Err(err) => {
                tracing::error!("cannot start a TLS session for {peer}: {err}");
                self.stats.count(|c| c.connections_refused += 1);
                None
            }
        }
    }

    /// Tells an excess connection why it is refused and closes it. The hello is 40 bytes on a
    /// fresh socket, so the write cannot block. With TLS the socket is only closed: the hello
    /// would have to wait for a TLS handshake, in a connection over the limit.
    pub(super) fn refuse(&mut self, socket: &mut mio::net::TcpStream, verdict: HelloVerdict) {
        use std::io::Write;
        self.stats.count(|c| c.connections_refused += 1);
        if self.server.options.tls.is_some() {
            tracing::debug!("refused a TLS connection: {verdict:?}");
            return;
        }
        let hello = ServerHello {
            version: PROTOCOL_VERSION,
            kind: self.service.kind(),
            verdict,
            nonce: [0; NONCE_LEN],
        };
        let _ = socket.write_all(&hello.encode());
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
                let peer = conn.client.peer;
                if conn
                    .pending_input()
                    .starts_with(&[crate::tls::TLS_HANDSHAKE_RECORD, 3])
                {
                    self.misdirected.note(
                        Instant::now(),
                        format_args!(
                            "{peer}: a TLS ClientHello on a port without TLS (a client with \
                             TLS? this node has no [tls])"
                        ),
                    );
                } else {
                    tracing::debug!("bad hello from {peer}: {err}");
                }
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

    /// At the start of a pass: a new handshake budget, spent first on the handshakes that have
    /// waited longest (FIFO), each read until WouldBlock.
    pub(super) fn drive_waiting_handshakes(&mut self) {
        self.handshakes.budget = self.server.options.tls_handshakes_per_pass.max(1);
        while self.handshakes.budget > 0 {
            let Some((slot, serial)) = self.handshakes.waiting.pop_front() else {
                return;
            };
            let Some(conn) = self.connections.get_mut(slot) else {
                continue;
            };
            if conn.serial != serial {
                continue;
            }
            conn.handshake_waiting = false;
            self.handshakes.budget -= 1;
            self.read_connection(slot);
        }
    }

    /// Whether a connection that became readable must wait for its handshake's turn (it is
    /// queued then). False for a connection past its TLS handshake (or without TLS), and for a
    /// handshake that may run now: budget left and none waiting before it.
    pub(super) fn handshake_waits(&mut self, slot: usize) -> bool {
        let conn = &mut self.connections[slot];
        if !conn.transport.is_handshaking() {
            return false;
        }
        if conn.handshake_waiting {
            return true;
        }
        if self.handshakes.waiting.is_empty() && self.handshakes.budget > 0 {
            self.handshakes.budget -= 1;
            return false;
        }
        conn.handshake_waiting = true;
        self.handshakes.waiting.push_back((slot, conn.serial));
        self.stats.count(|c| c.tls_handshakes_deferred += 1);
        true
    }

    /// A read failed: the connection closes. A client whose first bytes on a TLS port are not
    /// TLS is named in a rate-limited WARN ([`MisdirectedLog`]); other failures are DEBUG.
    pub(super) fn on_read_failure(&mut self, slot: usize, err: &io::Error) {
        let peer = self.connections[slot].client.peer;
        if crate::tls::is_not_tls(err) {
            self.misdirected
                .note(Instant::now(), format_args!("{peer}: {err}"));
        } else {
            tracing::debug!("read from {peer} failed: {err}");
        }
        self.close(slot);
    }
}
