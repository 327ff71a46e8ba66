//! TLS for the swarm protocol (docs/security.md, "TLS"), with rustls and its `ring` provider:
//!
//! - [`Transport`]: one non-blocking connection as the node's event loop and the client's I/O
//!   thread drive it: a mio socket in clear, or a rustls session over it. Its `read` and `write`
//!   behave like the socket's (short counts, `WouldBlock`), so the code above it (frame decoding,
//!   output buffers, pipelining, streams) is the same with and without TLS.
//! - Loading PEM files ([`load_certs`], [`load_key`], [`load_roots`]) with errors that name the
//!   file and the problem, the node's side ([`ServerTls`]: its config, rebuilt on SIGHUP), and
//!   the provider both sides use ([`provider`]). The client's config is built in the client
//!   crate (`client::tls`) from these.
//!
//! Memory: rustls keeps at most [`TLS_BUFFER_LIMIT_BYTES`] of records to send per connection,
//! and `read_tls` refuses to read more once its decrypted-but-unread buffer is full, so what a
//! connection holds in rustls is bounded; [`Transport::buffered_output_bytes`] lets a caller
//! count what waits there in its own output bound.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Records waiting to be sent that one connection may hold in rustls (its own default).
pub const TLS_BUFFER_LIMIT_BYTES: usize = 64 * 1024;

/// The content type of a TLS handshake record: what a TLS client's first byte is.
pub const TLS_HANDSHAKE_RECORD: u8 = 22;

/// What [`Transport::read`] fails with (inside an `InvalidData` error) when the first bytes a
/// node's TLS session reads are not a TLS handshake record: a client without TLS, most
/// likely, or not a swarm client at all.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("not a TLS ClientHello (a client without TLS?)")]
pub struct NotTls;

/// Whether `error` is [`NotTls`].
pub fn is_not_tls(error: &io::Error) -> bool {
    error
        .get_ref()
        .is_some_and(|inner| inner.downcast_ref::<NotTls>().is_some())
}

/// Why a certificate, key or CA file could not be used. The message names the setting, the file
/// and the problem.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{setting} {}: {problem}", .path.display())]
pub struct TlsError {
    /// The setting that named the file (`tls.cert_file`, `[tls] ca_file`, ...).
    pub setting: String,
    pub path: PathBuf,
    pub problem: String,
}

impl TlsError {
    fn new(setting: &str, path: &Path, problem: impl std::fmt::Display) -> TlsError {
        TlsError {
            setting: setting.to_string(),
            path: path.to_path_buf(),
            problem: problem.to_string(),
        }
    }
}

/// The cryptography both sides use: rustls's `ring` provider (it builds with the C compiler
/// alone; aws-lc-rs needs cmake). rustls marks it deprecated because it offers no post-quantum
/// key exchange: the key exchange is X25519 or an ECDHE curve.
///
/// X25519 comes first among the key exchanges, as in OpenSSL, BoringSSL and Go: the provider's
/// own order puts P-384 first, which costs a node about 11 million instructions per handshake
/// (measured with callgrind) against about a tenth of that for X25519, so a reconnecting fleet
/// of clients would cost the event loop a core for a while. P-256 and P-384 stay offered.
#[allow(deprecated)]
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    use rustls::crypto::ring::{default_provider, kx_group};
    let mut provider = default_provider();
    provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    Arc::new(provider)
}

/// Largest PEM file read: a chain of a few certificates is a few KiB; this only stops a wrong
/// path (a device, a log) from being read into memory.
const MAX_PEM_FILE_BYTES: u64 = 1_000_000;

fn read_pem(setting: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let file = std::fs::File::open(path).map_err(|err| TlsError::new(setting, path, err))?;
    let mut bytes = Vec::new();
    file.take(MAX_PEM_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|err| TlsError::new(setting, path, err))?;
    if bytes.len() as u64 > MAX_PEM_FILE_BYTES {
        let problem = format!("larger than {MAX_PEM_FILE_BYTES} bytes; not a PEM file");
        return Err(TlsError::new(setting, path, problem));
    }
    Ok(bytes)
}

/// The certificates of a PEM file (a chain: the node's own first), at least one.
pub fn load_certs(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_pem(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::new(setting, path, format!("bad PEM: {err}")))?;
    if certs.is_empty() {
        let problem = "no certificate in the file (expected PEM \"-----BEGIN CERTIFICATE-----\")";
        return Err(TlsError::new(setting, path, problem));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(setting: &str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_pem(setting, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|err| {
        let problem = match err {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no private key in the file (expected PEM \"-----BEGIN PRIVATE KEY-----\")"
                    .to_string()
            }
            other => format!("bad PEM: {other}"),
        };
        TlsError::new(setting, path, problem)
    })
}

/// The trusted CA certificates of a PEM file, at least one.
pub fn load_roots(setting: &str, path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(setting, path)? {
        roots
            .add(cert)
            .map_err(|err| TlsError::new(setting, path, format!("not a usable CA: {err}")))?;
    }
    Ok(roots)
}

/// The files of a node's `[tls]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Set: mutual TLS, clients must present a certificate signed by one of these CAs.
    pub client_ca_file: Option<PathBuf>,
}

/// A node's TLS: its files and the config built from them. New connections take the current
/// config; [`ServerTls::reload`] (SIGHUP) builds a new one and leaves open connections alone.
#[derive(Debug, Clone)]
pub struct ServerTls {
    files: TlsFiles,
    config: Arc<rustls::ServerConfig>,
}

impl ServerTls {
    /// Loads the files; the error names the file at fault and why.
    pub fn load(files: TlsFiles) -> Result<ServerTls, TlsError> {
        let config = server_config(&files)?;
        Ok(ServerTls { files, config })
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Loads the files again; on failure the old config stays and the error says why.
    pub fn reload(&mut self) -> Result<(), TlsError> {
        self.config = server_config(&self.files)?;
        Ok(())
    }

    /// A session for a connection just accepted, with the current certificate.
    pub fn accept(&self, socket: mio::net::TcpStream) -> Result<Transport, rustls::Error> {
        let session = rustls::ServerConnection::new(Arc::clone(&self.config))?;
        Ok(Transport::with_tls(socket, session.into()))
    }
}

fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let certs = load_certs("tls.cert_file", &files.cert_file)?;
    let key = load_key("tls.key_file", &files.key_file)?;
    let provider = provider();
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError::new("tls.cert_file", &files.cert_file, err))?;
    let builder = match &files.client_ca_file {
        Some(ca) => {
            let roots = load_roots("tls.client_ca_file", ca)?;
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|err| TlsError::new("tls.client_ca_file", ca, err))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).map_err(|err| {
        let problem = format!("does not go with tls.key_file: {err}");
        TlsError::new("tls.cert_file", &files.cert_file, problem)
    })?;
    Ok(Arc::new(config))
}

/// One non-blocking connection, in clear or through TLS. See the module doc.
pub struct Transport {
    socket: mio::net::TcpStream,
    tls: Option<Box<rustls::Connection>>,
    /// Plaintext handed to rustls and not yet known to be on the socket (an upper bound, to
    /// within record overhead): what [`Transport::buffered_output_bytes`] reports.
    tls_unsent_bytes: usize,
    /// The first byte read from the socket under TLS (`None`: nothing read yet).
    first_byte: Option<u8>,
}

impl Transport {
    pub fn plain(socket: mio::net::TcpStream) -> Transport {
        Transport {
            socket,
            tls: None,
            tls_unsent_bytes: 0,
            first_byte: None,
        }
    }

    pub fn with_tls(socket: mio::net::TcpStream, session: rustls::Connection) -> Transport {
        Transport {
            socket,
            tls: Some(Box::new(session)),
            tls_unsent_bytes: 0,
            first_byte: None,
        }
    }

    pub fn socket(&self) -> &mio::net::TcpStream {
        &self.socket
    }

    pub fn socket_mut(&mut self) -> &mut mio::net::TcpStream {
        &mut self.socket
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether the TLS handshake is still under way (false in clear).
    pub fn is_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.is_handshaking())
    }

    /// Reads plaintext. Like a socket: `Ok(0)` is the end of the stream (the peer closed, with
    /// or without TLS's close_notify), `WouldBlock` means nothing more for now, and a count
    /// short of `buf.len()` means the socket had nothing more when it was last read (with
    /// edge-triggered readiness, more data raises a new event), so a caller can stop there
    /// without one more read that would only say `WouldBlock`. A TLS record that does not
    /// decrypt, or anything that is not TLS, is an `InvalidData` error (the alert for the peer
    /// is sent first); on a node's session whose first byte is not a handshake record, that
    /// error holds [`NotTls`].
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.socket.read(buf);
        }
        let mut filled = 0;
        // The last socket read returned less than rustls asked for: the socket is drained.
        let mut socket_drained = false;
        loop {
            let Some(tls) = self.tls.as_deref_mut() else {
                return Ok(filled);
            };
            while filled < buf.len() {
                match tls.reader().read(&mut buf[filled..]) {
                    // close_notify: the end of the stream, after what came before it.
                    Ok(0) => return Ok(filled),
                    Ok(read) => filled += read,
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                    // The peer closed the TCP connection without close_notify: an end of
                    // stream.
                    Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => return Ok(filled),
                    Err(err) => return Err(err),
                }
            }
            if filled == buf.len() || socket_drained {
                return would_block_unless(filled);
            }
            let mut socket = ShortReadWatch {
                socket: &mut self.socket,
                short: false,
                first_byte: &mut self.first_byte,
            };
            match tls.read_tls(&mut socket) {
                Ok(0) => return Ok(filled),
                Ok(_) => socket_drained = socket.short,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    return would_block_unless(filled)
                }
                Err(err) => return Err(err),
            }
            if let Err(err) = tls.process_new_packets() {
                let not_tls = matches!(tls, rustls::Connection::Server(_))
                    && tls.is_handshaking()
                    && self.first_byte != Some(TLS_HANDSHAKE_RECORD);
                // Tell the peer why (the alert rustls queued), then fail the connection.
                let _ = tls.write_tls(&mut self.socket);
                if not_tls {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, NotTls));
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, err));
            }
            // The handshake or a key update may have something to say back.
            self.send_tls_records()?;
        }
    }

    /// Writes plaintext, like a socket's `write`: the bytes accepted, or `WouldBlock` when the
    /// socket takes nothing now. With TLS, the records of earlier writes go out first, so
    /// rustls never holds more than [`TLS_BUFFER_LIMIT_BYTES`].
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.socket.write(buf);
        }
        if !self.send_tls_records()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(0);
        };
        let accepted = tls.writer().write(buf)?;
        if accepted == 0 && !buf.is_empty() {
            // Before the handshake ends, rustls holds plaintext up to its limit.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.tls_unsent_bytes += accepted;
        // What the socket does not take now goes out on the next write or flush.
        self.send_tls_records()?;
        Ok(accepted)
    }

    /// Sends the TLS records rustls holds until none is left (true) or the socket would block
    /// (false). Always true in clear.
    pub fn send_tls_records(&mut self) -> io::Result<bool> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(true);
        };
        while tls.wants_write() {
            match tls.write_tls(&mut self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    self.tls_unsent_bytes = self.tls_unsent_bytes.saturating_sub(written)
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
        self.tls_unsent_bytes = 0;
        Ok(true)
    }

    /// Whether TLS records wait to be sent (the handshake's included).
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|tls| tls.wants_write())
    }

    /// Output accepted by [`Transport::write`] and still held in rustls (0 in clear).
    pub fn buffered_output_bytes(&self) -> usize {
        if self.wants_write() {
            self.tls_unsent_bytes.max(1)
        } else {
            0
        }
    }

    /// Ends a TLS session politely (close_notify), best effort; nothing in clear.
    pub fn close_notify(&mut self) {
        if let Some(tls) = self.tls.as_deref_mut() {
            tls.send_close_notify();
            let _ = self.send_tls_records();
        }
    }
}

/// `Ok(filled)`, or `WouldBlock` when nothing was read (`Ok(0)` would say the stream ended).
fn would_block_unless(filled: usize) -> io::Result<usize> {
    match filled {
        0 => Err(io::ErrorKind::WouldBlock.into()),
        _ => Ok(filled),
    }
}

/// The socket as rustls reads it, noting whether a read returned less than was asked for
/// (then the socket had nothing more at that moment), and the first byte ever read.
struct ShortReadWatch<'a> {
    socket: &'a mut mio::net::TcpStream,
    short: bool,
    first_byte: &'a mut Option<u8>,
}

impl Read for ShortReadWatch<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.socket.read(buf)?;
        self.short = read < buf.len();
        if self.first_byte.is_none() && read > 0 {
            *self.first_byte = Some(buf[0]);
        }
        Ok(read)
    }
}
