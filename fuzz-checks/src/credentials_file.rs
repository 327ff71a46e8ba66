//! Parses arbitrary bytes as a credentials file (`name:hexkey` per line), as a node does at start
//! (`Credentials::load` reads the file, refuses non-UTF-8, then calls `Credentials::parse`).
//!
//! Invariants checked:
//! - neither parsing nor formatting the error panics;
//! - every name accepted passes `check_name`, every key is 16 to 128 bytes, and the file's
//!   entries written back out (`name:hex` lines) parse to the same table;
//! - the error of a refused file names a line of the file, and never contains a key's digits
//!   beyond the one bad character it reports (keys are secrets).

use node_core::auth::{check_name, Credentials, CredentialsError, MAX_KEY_LEN, MIN_KEY_LEN};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The target's entry point: one input. Panics when an invariant above does not hold.
pub fn check(data: &[u8]) {
    // What `load` does with bytes that are not UTF-8: refuse them (tested in node-core).
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Credentials::parse(text) {
        Ok(credentials) => {
            let mut rewritten = String::new();
            for name in credentials.names() {
                assert!(
                    check_name(name.as_bytes()).is_ok(),
                    "bad name {name:?} accepted"
                );
                let key = credentials.get(name).expect("a listed name has a key");
                assert!((MIN_KEY_LEN..=MAX_KEY_LEN).contains(&key.len_bytes()));
                rewritten.push_str(&format!("{name}:{}\n", hex(key.as_bytes())));
            }
            let again = Credentials::parse(&rewritten).expect("rewritten credentials parse");
            assert_eq!(again.len(), credentials.len());
            for name in credentials.names() {
                assert_eq!(again.get(name), credentials.get(name));
            }
            // What is checked is `is_empty` against `len`, so clippy's advice does not apply.
            #[allow(clippy::len_zero)]
            let empty = credentials.len() == 0;
            assert_eq!(credentials.is_empty(), empty);
        }
        Err(error) => {
            let message = error.to_string();
            match error {
                CredentialsError::Line { line, .. } | CredentialsError::NotUtf8 { line, .. } => {
                    assert!(line >= 1 && line <= text.lines().count(), "line {line}");
                }
                other => panic!("parsing text gave a file error: {other}"),
            }
            // A key's digits must not be echoed whole (its name may be).
            let names: Vec<&str> = text
                .lines()
                .filter_map(|l| l.split_once(':'))
                .map(|(n, _)| n)
                .collect();
            for line in text.lines() {
                let Some((_, key)) = line.split_once(':') else {
                    continue;
                };
                let hex_key = key.len() >= 16 && key.bytes().all(|b| b.is_ascii_hexdigit());
                if hex_key && !names.iter().any(|name| name.contains(key)) {
                    assert!(!message.contains(key), "the error repeats a key: {message}");
                }
            }
        }
    }
}
