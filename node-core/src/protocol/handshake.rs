//! Connection opening (docs/protocol.md §1): ServerHello (node speaks first), ClientHello with the
//! optional HMAC proof, and the node's HandshakeResult.

use super::NodeKind;
use thiserror::Error;

pub const HELLO_MAGIC: [u8; 4] = *b"SWRM";
pub const RESULT_MAGIC: [u8; 4] = *b"SWOK";
pub const SERVER_HELLO_LEN: usize = 40;
pub const HANDSHAKE_RESULT_LEN: usize = 8;
pub const NONCE_LEN: usize = 32;
pub const PROOF_LEN: usize = 64;
/// The longest client name (the reference system's limit).
pub const MAX_CLIENT_NAME_LEN: usize = 100;
/// Bytes of a ClientHello before the name.
const CLIENT_HELLO_FIXED_LEN: usize = 8;
/// The longest a ClientHello can be; a node reads no more than this before deciding.
pub const MAX_CLIENT_HELLO_LEN: usize = CLIENT_HELLO_FIXED_LEN + MAX_CLIENT_NAME_LEN + PROOF_LEN;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    #[error("not a swarm node or client: bad magic {0:02x?}")]
    BadMagic([u8; 4]),
    #[error("unknown node kind {0}")]
    UnknownKind(u8),
    #[error("unknown handshake verdict {0}")]
    UnknownVerdict(u8),
    #[error("client name of {0} bytes exceeds {MAX_CLIENT_NAME_LEN}")]
    NameTooLong(usize),
    #[error("client name contains a byte that is not an ASCII graphic character")]
    BadName,
}

/// The node's first word on a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloVerdict {
    /// Go ahead; no authentication needed.
    Ready = 0,
    /// Prove your identity against the nonce.
    AuthRequired = 1,
    /// The node has `max_connections` open; it closes this one.
    ConnectionLimit = 4,
    /// The node is stopping; it closes this one.
    ShuttingDown = 5,
}

impl HelloVerdict {
    fn from_u8(value: u8) -> Option<HelloVerdict> {
        match value {
            0 => Some(HelloVerdict::Ready),
            1 => Some(HelloVerdict::AuthRequired),
            4 => Some(HelloVerdict::ConnectionLimit),
            5 => Some(HelloVerdict::ShuttingDown),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerHello {
    pub version: u16,
    pub kind: NodeKind,
    pub verdict: HelloVerdict,
    pub nonce: [u8; NONCE_LEN],
}

impl ServerHello {
    pub fn encode(&self) -> [u8; SERVER_HELLO_LEN] {
        let mut bytes = [0u8; SERVER_HELLO_LEN];
        bytes[0..4].copy_from_slice(&HELLO_MAGIC);
        bytes[4..6].copy_from_slice(&self.version.to_le_bytes());
        bytes[6] = self.kind as u8;
        bytes[7] = self.verdict as u8;
        bytes[8..40].copy_from_slice(&self.nonce);
        bytes
    }

    /// Decodes a hello. The version is returned as it is, not checked: the client compares it,
    /// so that it can report both versions.
    pub fn decode(bytes: &[u8; SERVER_HELLO_LEN]) -> Result<ServerHello, HandshakeError> {
        let mut magic = [0u8; 4];
        magic.copy_from_slice(&bytes[0..4]);
        if magic != HELLO_MAGIC {
            return Err(HandshakeError::BadMagic(magic));
        }
        let kind = NodeKind::from_u8(bytes[6]).ok_or(HandshakeError::UnknownKind(bytes[6]))?;
        let verdict =
            HelloVerdict::from_u8(bytes[7]).ok_or(HandshakeError::UnknownVerdict(bytes[7]))?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&bytes[8..40]);
        Ok(ServerHello {
            version: u16::from_le_bytes([bytes[4], bytes[5]]),
            kind,
            verdict,
            nonce,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    pub version: u16,
    /// The kind the client expects; `None` accepts any.
    pub wanted_kind: Option<NodeKind>,
    /// Empty for an anonymous client.
    pub name: Vec<u8>,
    /// HMAC proof, all zero when the node did not ask for authentication.
    pub proof: [u8; PROOF_LEN],
}

/// Checks a client name: at most 100 ASCII graphic characters, no `:` (the separator of the
/// credentials file, so no such name can authenticate).
pub fn check_client_name(name: &[u8]) -> Result<(), HandshakeError> {
    if name.len() > MAX_CLIENT_NAME_LEN {
        return Err(HandshakeError::NameTooLong(name.len()));
    }
    if !name
        .iter()
        .all(|byte| byte.is_ascii_graphic() && *byte != b':')
    {
        return Err(HandshakeError::BadName);
    }
    Ok(())
}

impl ClientHello {
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), HandshakeError> {
        check_client_name(&self.name)?;
        out.extend_from_slice(&HELLO_MAGIC);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.push(self.wanted_kind.map_or(0, |kind| kind as u8));
        out.push(self.name.len() as u8);
        out.extend_from_slice(&self.name);
        out.extend_from_slice(&self.proof);
        Ok(())
    }

    /// Parses a hello from the start of `buf`: `Ok(None)` until all of it has arrived, then the
    /// hello and the bytes it took. A wanted kind the node does not know is kept as `None` only
    /// when it is 0; any other unknown value is an error.
    pub fn parse(buf: &[u8]) -> Result<Option<(ClientHello, usize)>, HandshakeError> {
        let Some(fixed) = buf.first_chunk::<CLIENT_HELLO_FIXED_LEN>() else {
            return Ok(None);
        };
        let mut magic = [0u8; 4];
        magic.copy_from_slice(&fixed[0..4]);
        if magic != HELLO_MAGIC {
            return Err(HandshakeError::BadMagic(magic));
        }
        let wanted_kind = match fixed[6] {
            0 => None,
            raw => Some(NodeKind::from_u8(raw).ok_or(HandshakeError::UnknownKind(raw))?),
        };
        let name_len = fixed[7] as usize;
        if name_len > MAX_CLIENT_NAME_LEN {
            return Err(HandshakeError::NameTooLong(name_len));
        }
        let total = CLIENT_HELLO_FIXED_LEN + name_len + PROOF_LEN;
        if buf.len() < total {
            return Ok(None);
        }
        let name = buf[CLIENT_HELLO_FIXED_LEN..CLIENT_HELLO_FIXED_LEN + name_len].to_vec();
        check_client_name(&name)?;
        let mut proof = [0u8; PROOF_LEN];
        proof.copy_from_slice(&buf[CLIENT_HELLO_FIXED_LEN + name_len..total]);
        let hello = ClientHello {
            version: u16::from_le_bytes([fixed[4], fixed[5]]),
            wanted_kind,
            name,
            proof,
        };
        Ok(Some((hello, total)))
    }
}

/// The node's answer to a ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeOutcome {
    Accepted = 0,
    UnsupportedVersion = 2,
    WrongKind = 3,
    AuthFailed = 6,
    BadHello = 7,
}

impl HandshakeOutcome {
    fn from_u8(value: u8) -> Option<HandshakeOutcome> {
        match value {
            0 => Some(HandshakeOutcome::Accepted),
            2 => Some(HandshakeOutcome::UnsupportedVersion),
            3 => Some(HandshakeOutcome::WrongKind),
            6 => Some(HandshakeOutcome::AuthFailed),
            7 => Some(HandshakeOutcome::BadHello),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeResult {
    pub outcome: HandshakeOutcome,
    /// Whether the authenticated client may run administrative requests.
    pub admin: bool,
}

impl HandshakeResult {
    pub fn encode(&self) -> [u8; HANDSHAKE_RESULT_LEN] {
        let mut bytes = [0u8; HANDSHAKE_RESULT_LEN];
        bytes[0..4].copy_from_slice(&RESULT_MAGIC);
        bytes[4] = self.outcome as u8;
        bytes[5] = u8::from(self.admin);
        bytes
    }

    pub fn decode(bytes: &[u8; HANDSHAKE_RESULT_LEN]) -> Result<HandshakeResult, HandshakeError> {
        let mut magic = [0u8; 4];
        magic.copy_from_slice(&bytes[0..4]);
        if magic != RESULT_MAGIC {
            return Err(HandshakeError::BadMagic(magic));
        }
        let outcome =
            HandshakeOutcome::from_u8(bytes[4]).ok_or(HandshakeError::UnknownVerdict(bytes[4]))?;
        Ok(HandshakeResult {
            outcome,
            admin: bytes[5] & 1 == 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_hello_round_trips() {
        let hello = ServerHello {
            version: 1,
            kind: NodeKind::Queue,
            verdict: HelloVerdict::AuthRequired,
            nonce: [7; NONCE_LEN],
        };
        assert_eq!(ServerHello::decode(&hello.encode()), Ok(hello));
        let mut bytes = hello.encode();
        bytes[0] = b'X';
        assert!(matches!(
            ServerHello::decode(&bytes),
            Err(HandshakeError::BadMagic(_))
        ));
    }

    #[test]
    fn client_hello_parses_incrementally() {
        let hello = ClientHello {
            version: 1,
            wanted_kind: Some(NodeKind::Dht),
            name: b"admin".to_vec(),
            proof: [3; PROOF_LEN],
        };
        let mut buf = Vec::new();
        hello.encode(&mut buf).unwrap();
        for cut in 0..buf.len() {
            assert_eq!(ClientHello::parse(&buf[..cut]), Ok(None), "cut at {cut}");
        }
        buf.extend_from_slice(b"next");
        let (parsed, used) = ClientHello::parse(&buf).unwrap().unwrap();
        assert_eq!(parsed, hello);
        assert_eq!(&buf[used..], b"next");
    }

    #[test]
    fn bad_client_names_are_refused() {
        let mut hello = ClientHello {
            version: 1,
            wanted_kind: None,
            name: vec![b'a'; MAX_CLIENT_NAME_LEN + 1],
            proof: [0; PROOF_LEN],
        };
        assert!(hello.encode(&mut Vec::new()).is_err());
        hello.name = b"has space".to_vec();
        assert_eq!(hello.encode(&mut Vec::new()), Err(HandshakeError::BadName));
    }

    #[test]
    fn handshake_result_round_trips() {
        let result = HandshakeResult {
            outcome: HandshakeOutcome::WrongKind,
            admin: true,
        };
        assert_eq!(HandshakeResult::decode(&result.encode()), Ok(result));
    }
}
