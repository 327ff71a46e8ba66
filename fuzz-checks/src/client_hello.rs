//! Parses arbitrary bytes as a ClientHello, as a node does with what a new connection sent.
//! `ClientHello::parse` must return `Ok`/`Err` without panicking, and:
//! - `Ok(Some((hello, used)))`: `used` fits the input, the name is valid, the hello re-encodes to
//!   exactly `data[..used]`, and every shorter prefix is `Ok(None)` ("not all there yet");
//! - `Ok(None)`: the input is shorter than the longest possible hello;
//! - `Err`: the fixed 8-byte part had arrived.

use node_core::protocol::handshake::{
    check_client_name, ClientHello, MAX_CLIENT_HELLO_LEN, PROOF_LEN,
};

/// The target's entry point: one input. Panics when an invariant above does not hold.
pub fn check(data: &[u8]) {
    match ClientHello::parse(data) {
        Ok(Some((hello, used))) => {
            assert!(used <= data.len());
            assert_eq!(used, 8 + hello.name.len() + PROOF_LEN);
            assert!(
                check_client_name(&hello.name).is_ok(),
                "invalid name accepted"
            );
            let mut encoded = Vec::new();
            hello
                .encode(&mut encoded)
                .expect("a parsed hello does not encode");
            assert_eq!(
                encoded,
                &data[..used],
                "parsed hello does not re-encode to its bytes"
            );
            for cut in 0..used {
                assert_eq!(
                    ClientHello::parse(&data[..cut]),
                    Ok(None),
                    "prefix of {cut} bytes"
                );
            }
            assert_eq!(ClientHello::parse(&data[..used]), Ok(Some((hello, used))));
        }
        Ok(None) => assert!(data.len() < MAX_CLIENT_HELLO_LEN),
        Err(_) => assert!(data.len() >= 8, "error before the fixed part arrived"),
    }
}
