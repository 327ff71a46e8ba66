//! The anonymous swarm handshake (docs/protocol.md §1) on a blocking socket, for the load
//! generators (`loadgen`, `queue_load`): they drive raw sockets rather than the client library
//! so that the generator costs as little as possible.

use node_core::protocol::handshake::{
    ClientHello, HandshakeOutcome, HandshakeResult, HelloVerdict, ServerHello,
    HANDSHAKE_RESULT_LEN, PROOF_LEN, SERVER_HELLO_LEN,
};
use node_core::protocol::{NodeKind, PROTOCOL_VERSION};
use std::io::{Read, Write};

/// Reads the node's hello, checks it is a `kind` node of our protocol that admits us without
/// credentials, and sends our hello under `name`.
pub fn swarm_handshake(
    stream: &mut (impl Read + Write + ?Sized),
    kind: NodeKind,
    name: &str,
) -> Result<(), String> {
    let mut hello = [0u8; SERVER_HELLO_LEN];
    stream
        .read_exact(&mut hello)
        .map_err(|e| format!("reading the node's hello: {e}"))?;
    let hello = ServerHello::decode(&hello).map_err(|e| e.to_string())?;
    if hello.kind != kind {
        return Err(format!("node is a {} node, expected {kind}", hello.kind));
    }
    if hello.version != PROTOCOL_VERSION {
        return Err(format!(
            "unsupported protocol version {} ({name} speaks {PROTOCOL_VERSION})",
            hello.version
        ));
    }
    match hello.verdict {
        HelloVerdict::Ready => {}
        HelloVerdict::AuthRequired => {
            return Err(format!(
                "the node requires authentication; {name} does not do it"
            ))
        }
        HelloVerdict::ConnectionLimit => return Err("connection limit reached".into()),
        HelloVerdict::ShuttingDown => return Err("node shutting down".into()),
    }
    let mut out = Vec::new();
    ClientHello {
        version: PROTOCOL_VERSION,
        wanted_kind: Some(kind),
        name: name.as_bytes().to_vec(),
        proof: [0; PROOF_LEN],
    }
    .encode(&mut out)
    .map_err(|e| e.to_string())?;
    stream
        .write_all(&out)
        .map_err(|e| format!("sending the client hello: {e}"))?;
    let mut result = [0u8; HANDSHAKE_RESULT_LEN];
    stream
        .read_exact(&mut result)
        .map_err(|e| format!("reading the handshake result: {e}"))?;
    let result = HandshakeResult::decode(&result).map_err(|e| e.to_string())?;
    if result.outcome != HandshakeOutcome::Accepted {
        return Err(format!("handshake refused: {:?}", result.outcome));
    }
    Ok(())
}
