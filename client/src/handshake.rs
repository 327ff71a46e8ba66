//! Opening a connection: TCP connect, the TLS handshake when the client has TLS settings
//! (verifying the node's certificate), and the handshake of docs/protocol.md §1 (inside TLS),
//! done with a blocking socket and timeouts, before the socket (and its TLS session) is handed
//! to the I/O thread.
//!
//! Owns turning each way a node can refuse or confuse us (wrong magic, version, kind, verdict,
//! authentication) into its specific `ClientError`. Blocking is fine here: it runs on the
//! caller's thread (`Client::connect`) or on a short-lived connect thread (reconnects), never
//! on the I/O thread, so a slow node never delays traffic to the others.

use crate::error::ClientError;
use crate::options::ClientOptions;
use crate::tls::ClientTls;
use node_core::auth;
use node_core::protocol::handshake::{
    ClientHello, HandshakeError, HandshakeOutcome, HandshakeResult, HelloVerdict, ServerHello,
    HANDSHAKE_RESULT_LEN, HELLO_MAGIC, PROOF_LEN, SERVER_HELLO_LEN,
};
use node_core::protocol::{NodeKind, PROTOCOL_VERSION};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A connection that completed its handshake, in non-blocking mode, ready for frames.
#[derive(Debug)]
pub(crate) struct Opened {
    pub(crate) stream: TcpStream,
    /// The TLS session over `stream`, when the client uses TLS.
    pub(crate) tls: Option<rustls::ClientConnection>,
    pub(crate) kind: NodeKind,
    pub(crate) admin: bool,
}

/// Connects to `node` and runs the handshake. `wanted`: the node kind the caller expects.
pub(crate) fn open(
    node: SocketAddr,
    wanted: Option<NodeKind>,
    options: &ClientOptions,
) -> Result<Opened, ClientError> {
    let timeout = Duration::from_millis(options.connect_timeout_ms.max(1));
    let ms = options.connect_timeout_ms;
    let mut stream = TcpStream::connect_timeout(&node, timeout).map_err(|e| match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            timed_out(node, format!("connect timed out after {ms} ms"))
        }
        _ => ClientError::from_io(node, &e),
    })?;
    // A peer that accepts but never speaks (not a swarm node) must not hang us.
    set_timeouts(&stream, Some(timeout)).map_err(|e| ClientError::from_io(node, &e))?;
    let (stream, tls, hello, result) = match &options.tls {
        None => {
            let (hello, result) = swarm_handshake(&mut stream, node, wanted, options)?;
            (stream, None, hello, result)
        }
        Some(tls) => {
            let mut session = start_tls(tls, &mut stream, node, ms)?;
            let mut tls_stream = rustls::Stream::new(&mut session, &mut stream);
            let (hello, result) = swarm_handshake(&mut tls_stream, node, wanted, options)?;
            (stream, Some(session), hello, result)
        }
    };
    prepare_for_frames(&stream).map_err(|e| ClientError::from_io(node, &e))?;
    Ok(Opened {
        stream,
        tls,
        kind: hello.kind,
        admin: result.admin,
    })
}

/// The swarm handshake on an open connection (in clear or inside TLS).
fn swarm_handshake<S: Read + Write>(
    stream: &mut S,
    node: SocketAddr,
    wanted: Option<NodeKind>,
    options: &ClientOptions,
) -> Result<(ServerHello, HandshakeResult), ClientError> {
    let ms = options.connect_timeout_ms;
    let hello = read_server_hello(stream, node, ms).map_err(|error| match &options.tls {
        None => hint_tls(error),
        Some(_) => error,
    })?;
    check_hello(&hello, node, wanted, options)?;
    send_client_hello(stream, node, wanted, &hello, options)?;
    let result = read_result(stream, node, ms)?;
    check_result(&result, node, wanted, hello.kind)?;
    Ok((hello, result))
}

/// A client without TLS waits for the node's hello, which a node with TLS never sends in clear
/// (it waits for a TLS ClientHello): nothing arrives until the client's timeout, or the node
/// closes the connection after its `hello_timeout_ms`. Neither side can tell sooner, so the
/// error says what is likely.
fn hint_tls(error: ClientError) -> ClientError {
    match error {
        ClientError::Connect { node, kind, reason }
            if matches!(
                kind,
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock | io::ErrorKind::UnexpectedEof
            ) =>
        {
            let reason = format!(
                "{reason}; if the node has TLS on, it says nothing until the client starts TLS: \
                 give the client its CA ([tls] ca_file, or swarmctl --tls-ca)"
            );
            ClientError::Connect { node, kind, reason }
        }
        other => other,
    }
}

/// The TLS handshake: the node's certificate is checked here (CA, name, validity).
fn start_tls(
    tls: &ClientTls,
    stream: &mut TcpStream,
    node: SocketAddr,
    ms: u64,
) -> Result<rustls::ClientConnection, ClientError> {
    let mut session =
        rustls::ClientConnection::new(tls.config(), tls.server_name(node)).map_err(|e| {
            ClientError::Tls {
                node,
                reason: e.to_string(),
            }
        })?;
    let mut watched = FirstBytes {
        stream,
        first: Vec::new(),
    };
    while session.is_handshaking() {
        session
            .complete_io(&mut watched)
            .map_err(|e| match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    timed_out(node, format!("no TLS handshake within {ms} ms"))
                }
                _ if watched.first.starts_with(&HELLO_MAGIC) => ClientError::Tls {
                    node,
                    reason: "the node answered in clear with a swarm hello: it serves no TLS (a \
                         client with TLS on a node without it: drop the client's [tls] section \
                         or --tls-ca, or give the node [tls] cert_file and key_file)"
                        .into(),
                },
                _ => io_error(node, &e),
            })?;
    }
    Ok(session)
}

/// The socket under the TLS handshake, keeping the first bytes the node sent: a node without
/// TLS answers with its swarm hello in clear, which names the mistake better than rustls's
/// "corrupt message".
struct FirstBytes<'a> {
    stream: &'a mut TcpStream,
    first: Vec<u8>,
}

impl Read for FirstBytes<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.stream.read(buf)?;
        let wanted = HELLO_MAGIC.len().saturating_sub(self.first.len());
        self.first.extend_from_slice(&buf[..read.min(wanted)]);
        Ok(read)
    }
}

impl Write for FirstBytes<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}

/// An I/O error of the handshake; one that rustls raised (a certificate refused, an alert from
/// the node, bytes that are not TLS) is a [`ClientError::Tls`] saying why.
fn io_error(node: SocketAddr, error: &io::Error) -> ClientError {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(tls) => {
            let hint = match tls {
                rustls::Error::InvalidMessage(_) => " (is the node serving TLS?)",
                rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired) => {
                    " (the node requires a client certificate: [tls] cert_file and key_file)"
                }
                _ => "",
            };
            ClientError::Tls {
                node,
                reason: format!("{tls}{hint}"),
            }
        }
        None => ClientError::from_io(node, error),
    }
}

fn timed_out(node: SocketAddr, reason: String) -> ClientError {
    ClientError::Connect {
        node,
        kind: io::ErrorKind::TimedOut,
        reason,
    }
}

fn set_timeouts(stream: &TcpStream, timeout: Option<Duration>) -> io::Result<()> {
    stream.set_read_timeout(timeout)?;
    stream.set_write_timeout(timeout)
}

/// Frames are small and latency-bound (one request, one reply): no Nagle delay. The I/O thread
/// drives the socket through mio, which needs it non-blocking.
fn prepare_for_frames(stream: &TcpStream) -> io::Result<()> {
    set_timeouts(stream, None)?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)
}

fn read_handshake_bytes(
    stream: &mut impl Read,
    buf: &mut [u8],
    node: SocketAddr,
    ms: u64,
) -> Result<(), ClientError> {
    stream.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => ClientError::Connect {
            node,
            kind: e.kind(),
            reason: "closed the connection during the handshake".into(),
        },
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => timed_out(
            node,
            format!("no handshake within {ms} ms (is it a swarm node?)"),
        ),
        _ => io_error(node, &e),
    })
}

fn read_server_hello(
    stream: &mut impl Read,
    node: SocketAddr,
    ms: u64,
) -> Result<ServerHello, ClientError> {
    let mut bytes = [0u8; SERVER_HELLO_LEN];
    // The magic first: a peer speaking another protocol is named as such at once, even if it
    // sends fewer than 40 bytes and then waits.
    read_handshake_bytes(stream, &mut bytes[..HELLO_MAGIC.len()], node, ms)?;
    if bytes[..HELLO_MAGIC.len()] != HELLO_MAGIC {
        let mut magic = [0u8; 4];
        magic.copy_from_slice(&bytes[..4]);
        return Err(ClientError::NotSwarmNode { node, magic });
    }
    read_handshake_bytes(stream, &mut bytes[HELLO_MAGIC.len()..], node, ms)?;
    ServerHello::decode(&bytes).map_err(|error| hello_decode_error(node, &bytes, &error))
}

/// A hello that does not decode may come from another protocol version that added kinds or
/// verdicts: report the version mismatch, which is the cause, rather than the symptom.
fn hello_decode_error(
    node: SocketAddr,
    bytes: &[u8; SERVER_HELLO_LEN],
    error: &HandshakeError,
) -> ClientError {
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    match error {
        HandshakeError::BadMagic(magic) => ClientError::NotSwarmNode {
            node,
            magic: *magic,
        },
        _ if version != PROTOCOL_VERSION => ClientError::UnsupportedVersion { node, version },
        _ => ClientError::protocol(node, format!("bad server hello: {error}")),
    }
}

fn check_hello(
    hello: &ServerHello,
    node: SocketAddr,
    wanted: Option<NodeKind>,
    options: &ClientOptions,
) -> Result<(), ClientError> {
    if hello.version != PROTOCOL_VERSION {
        return Err(ClientError::UnsupportedVersion {
            node,
            version: hello.version,
        });
    }
    match hello.verdict {
        HelloVerdict::ConnectionLimit => return Err(ClientError::ConnectionLimit { node }),
        HelloVerdict::ShuttingDown => return Err(ClientError::ShuttingDown { node }),
        HelloVerdict::AuthRequired if options.credentials.is_none() => {
            return Err(ClientError::AuthRequired { node })
        }
        HelloVerdict::Ready | HelloVerdict::AuthRequired => {}
    }
    match wanted {
        Some(expected) if expected != hello.kind => Err(ClientError::WrongKind {
            node,
            actual: hello.kind,
            expected,
        }),
        _ => Ok(()),
    }
}

/// Sends our hello: name and proof when the node asked for them, anonymous otherwise.
fn send_client_hello(
    stream: &mut impl Write,
    node: SocketAddr,
    wanted: Option<NodeKind>,
    hello: &ServerHello,
    options: &ClientOptions,
) -> Result<(), ClientError> {
    let (name, proof) = match (&options.credentials, hello.verdict) {
        (Some((name, key)), HelloVerdict::AuthRequired) => (
            name.as_bytes().to_vec(),
            auth::proof(key, &hello.nonce, name.as_bytes()),
        ),
        _ => (Vec::new(), [0u8; PROOF_LEN]),
    };
    let client_hello = ClientHello {
        version: PROTOCOL_VERSION,
        wanted_kind: wanted,
        name,
        proof,
    };
    let mut bytes = Vec::new();
    client_hello
        .encode(&mut bytes)
        .map_err(|e| ClientError::Setup(format!("client name cannot be sent: {e}")))?;
    stream.write_all(&bytes).map_err(|e| io_error(node, &e))
}

fn read_result(
    stream: &mut impl Read,
    node: SocketAddr,
    ms: u64,
) -> Result<HandshakeResult, ClientError> {
    let mut bytes = [0u8; HANDSHAKE_RESULT_LEN];
    read_handshake_bytes(stream, &mut bytes, node, ms)?;
    HandshakeResult::decode(&bytes)
        .map_err(|e| ClientError::protocol(node, format!("bad handshake result: {e}")))
}

fn check_result(
    result: &HandshakeResult,
    node: SocketAddr,
    wanted: Option<NodeKind>,
    actual: NodeKind,
) -> Result<(), ClientError> {
    match result.outcome {
        HandshakeOutcome::Accepted => Ok(()),
        HandshakeOutcome::AuthFailed => Err(ClientError::AuthFailed { node }),
        HandshakeOutcome::WrongKind => Err(ClientError::WrongKind {
            node,
            actual,
            expected: wanted.unwrap_or(actual),
        }),
        HandshakeOutcome::UnsupportedVersion => Err(ClientError::protocol(
            node,
            format!("node refused protocol version {PROTOCOL_VERSION} although it announced it"),
        )),
        HandshakeOutcome::BadHello => Err(ClientError::protocol(
            node,
            "node refused the client hello as malformed",
        )),
    }
}
