//! Authentication: credentials files (`name:hexkey` per line) and the HMAC-SHA512
//! challenge-response proof of `docs/protocol.md` §1.4.
//!
//! Owns: [`Key`] (a secret that never prints), [`Credentials`] (the node's name → key table, and
//! what a reload changes in it: [`CredentialsChange`]),
//! [`load_client_key`] (a client's one-entry file), nonce generation, [`proof`] (computed by the
//! client) and [`verify`] (checked by the node, in constant time). Always compiled: the client
//! needs it as much as the nodes do.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha512;

/// Length of the per-connection nonce the node sends in its ServerHello.
pub const NONCE_LEN: usize = 32;
/// Length of an HMAC-SHA512 proof.
pub const PROOF_LEN: usize = 64;
/// Longest client name, in bytes (it travels with a `u8` length; the reference allowed 100).
pub const MAX_NAME_LEN: usize = 100;
/// Shortest key, in bytes (32 hex digits): shorter keys are guessable.
pub const MIN_KEY_LEN: usize = 16;
/// Longest key, in bytes (256 hex digits, the reference's key size). It is also SHA-512's block
/// size, so every key is used as-is by HMAC rather than hashed first.
pub const MAX_KEY_LEN: usize = 128;
/// Largest credentials file accepted, in bytes (the reference's limit).
pub const MAX_CREDENTIALS_FILE_BYTES: u64 = 10_000_000;

/// Domain separation: a proof for this protocol can never be mistaken for another HMAC use of
/// the same key.
const PROOF_CONTEXT: &[u8] = b"swarm-auth-v1";

type HmacSha512 = Hmac<Sha512>;

/// A client's secret key, 16 to 128 bytes. Its `Debug` output shows the length only, so a key
/// never ends up in a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Vec<u8>);

impl Key {
    /// Wraps raw key bytes; refuses lengths outside [`MIN_KEY_LEN`]..=[`MAX_KEY_LEN`].
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Key, KeyError> {
        let len_bytes = bytes.len();
        if !(MIN_KEY_LEN..=MAX_KEY_LEN).contains(&len_bytes) {
            return Err(KeyError::BadByteLength { len_bytes });
        }
        Ok(Key(bytes))
    }

    /// Parses a key written as hex digits (either case): 32 to 256 digits, an even count.
    pub fn from_hex(hex: &str) -> Result<Key, KeyError> {
        let digits = hex.len();
        if !(MIN_KEY_LEN * 2..=MAX_KEY_LEN * 2).contains(&digits) {
            return Err(KeyError::BadLength { digits });
        }
        if !digits.is_multiple_of(2) {
            return Err(KeyError::OddLength { digits });
        }
        let mut bytes = Vec::with_capacity(digits / 2);
        let raw = hex.as_bytes();
        for (pair_index, pair) in raw.chunks_exact(2).enumerate() {
            let high = hex_value(pair[0]).ok_or_else(|| bad_digit(hex, pair_index * 2))?;
            let low = hex_value(pair[1]).ok_or_else(|| bad_digit(hex, pair_index * 2 + 1))?;
            bytes.push(high << 4 | low);
        }
        Ok(Key(bytes))
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Key length in bytes.
    pub fn len_bytes(&self) -> usize {
        self.0.len()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(<{} bytes, redacted>)", self.0.len())
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// Builds the error for a non-hex byte at `byte_index`. Reports the whole character (the text is
/// UTF-8) and a 1-based position; a non-hex character is by definition not part of a valid key,
/// so showing it leaks nothing.
fn bad_digit(hex: &str, byte_index: usize) -> KeyError {
    // Walk back to the start of the character that contains this byte.
    let mut start = byte_index;
    while start > 0 && !hex.is_char_boundary(start) {
        start -= 1;
    }
    let found = hex[start..].chars().next().unwrap_or('?');
    KeyError::BadDigit {
        found,
        position: byte_index + 1,
    }
}

/// What is wrong with a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key has {digits} hex digits; 32 to 256 are required (16 to 128 bytes)")]
    BadLength { digits: usize },
    #[error("key is {len_bytes} bytes long; 16 to 128 are required")]
    BadByteLength { len_bytes: usize },
    #[error("key has an odd number of hex digits ({digits}); each byte takes two")]
    OddLength { digits: usize },
    #[error("key contains {found:?} at position {position}, which is not a hex digit")]
    BadDigit { found: char, position: usize },
}

/// What is wrong with a client name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name is empty")]
    Empty,
    #[error("name is {len_bytes} bytes long; at most 100 are allowed")]
    TooLong { len_bytes: usize },
    #[error(
        "name contains byte 0x{byte:02x} at position {position}; only ASCII graphic characters \
         ('!' to '~') other than ':' are allowed"
    )]
    BadChar { byte: u8, position: usize },
}

/// Checks a client name: 1 to 100 bytes, each an ASCII graphic character other than `:` (the
/// credentials file's separator).
pub fn check_name(name: &[u8]) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            len_bytes: name.len(),
        });
    }
    match name
        .iter()
        .position(|&b| !b.is_ascii_graphic() || b == b':')
    {
        Some(index) => Err(NameError::BadChar {
            byte: name[index],
            position: index + 1,
        }),
        None => Ok(()),
    }
}

/// What is wrong with one line of a credentials file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineProblem {
    #[error("expected `name:hexkey`, found no ':'")]
    MissingColon,
    #[error("bad client name: {0}")]
    Name(#[from] NameError),
    #[error("bad key for '{name}': {problem}")]
    Key { name: String, problem: KeyError },
    #[error("name '{name}' is already defined on line {first_line}")]
    DuplicateName { name: String, first_line: usize },
}

/// Why a credentials file (or a client key file) was refused. The whole file is refused on any
/// error; every message says where (path, line) and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("{}line {line}: {problem}", path_prefix(.path))]
    Line {
        path: Option<PathBuf>,
        line: usize,
        problem: LineProblem,
    },
    #[error("{}line {line} is not valid UTF-8", path_prefix(.path))]
    NotUtf8 { path: Option<PathBuf>, line: usize },
    #[error("cannot read credentials file {}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "credentials file {} is larger than {MAX_CREDENTIALS_FILE_BYTES} bytes; refusing it",
        .path.display()
    )]
    TooLarge { path: PathBuf },
    #[error(
        "credentials file {} is readable by everyone (mode {mode:o}); it holds secret keys: \
         run `chmod 600 {}`",
        .path.display(), .path.display()
    )]
    WorldReadable { path: PathBuf, mode: u32 },
    #[error(
        "client key file {} must hold exactly one `name:hexkey` entry, found {entries}",
        .path.display()
    )]
    NotOneEntry { path: PathBuf, entries: usize },
}

fn path_prefix(path: &Option<PathBuf>) -> String {
    match path {
        Some(path) => format!("{}: ", path.display()),
        None => String::new(),
    }
}

impl CredentialsError {
    /// Attaches the file's path to an error found while parsing its text.
    fn in_file(self, file: &Path) -> CredentialsError {
        match self {
            CredentialsError::Line { line, problem, .. } => CredentialsError::Line {
                path: Some(file.to_path_buf()),
                line,
                problem,
            },
            CredentialsError::NotUtf8 { line, .. } => CredentialsError::NotUtf8 {
                path: Some(file.to_path_buf()),
                line,
            },
            other => other,
        }
    }
}

/// The names and keys of the clients a node accepts. Ordered by name, so listings are stable.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    keys: BTreeMap<String, Key>,
}

impl Credentials {
    /// Parses credentials text: one `name:hexkey` per line; blank lines and lines starting with
    /// `#` are ignored; the last line may lack its newline. Any bad line refuses the whole text.
    pub fn parse(text: &str) -> Result<Credentials, CredentialsError> {
        let mut keys = BTreeMap::new();
        let mut first_lines: BTreeMap<String, usize> = BTreeMap::new();
        // `lines()` also strips a '\r' before each '\n', so files edited on Windows work.
        for (index, raw_line) in text.lines().enumerate() {
            let line = index + 1;
            if raw_line.trim().is_empty() || raw_line.starts_with('#') {
                continue;
            }
            let fail = |problem| CredentialsError::Line {
                path: None,
                line,
                problem,
            };
            let (name, key) = parse_line(raw_line).map_err(fail)?;
            if let Some(&first_line) = first_lines.get(&name) {
                return Err(fail(LineProblem::DuplicateName { name, first_line }));
            }
            first_lines.insert(name.clone(), line);
            keys.insert(name, key);
        }
        Ok(Credentials { keys })
    }

    /// Reads and parses a credentials file. Refuses files over 10 MB and, on unix, files that
    /// everyone may read (they hold secrets). Errors name the path.
    pub fn load(path: &Path) -> Result<Credentials, CredentialsError> {
        let text = read_secret_file(path)?;
        Credentials::parse(&text).map_err(|e| e.in_file(path))
    }

    /// The key listed for `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Key> {
        self.keys.get(name)
    }

    /// The names listed, in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.keys.keys().map(String::as_str)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True if the file listed no entries (every client would be refused).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// What replacing `self` by `new` changes: the names added, and the names whose standing
    /// ends (removed, or listed with another key, which is how a leaked key is revoked).
    pub fn changes_to(&self, new: &Credentials) -> CredentialsChange {
        let added = new
            .names()
            .filter(|name| self.get(name).is_none())
            .map(str::to_string)
            .collect();
        let revoked = self
            .keys
            .iter()
            .filter(|(name, key)| new.get(name) != Some(*key))
            .map(|(name, _)| name.clone())
            .collect();
        CredentialsChange { added, revoked }
    }
}

/// The difference between two credential sets, by name (see [`Credentials::changes_to`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialsChange {
    /// Names only the new set lists.
    pub added: Vec<String>,
    /// Names the old set lists that the new one drops or lists with a different key: their
    /// open connections proved a key that no longer admits them.
    pub revoked: Vec<String>,
}

/// Splits and checks one non-blank, non-comment line.
fn parse_line(line: &str) -> Result<(String, Key), LineProblem> {
    let (name, hex) = line.split_once(':').ok_or(LineProblem::MissingColon)?;
    check_name(name.as_bytes())?;
    let key = Key::from_hex(hex).map_err(|problem| LineProblem::Key {
        name: name.to_string(),
        problem,
    })?;
    Ok((name.to_string(), key))
}

/// Reads a file holding keys, with the size and permission checks both kinds of key file need.
/// The checks use the opened file's own metadata, so the file cannot be swapped in between.
fn read_secret_file(path: &Path) -> Result<String, CredentialsError> {
    let io_error = |source| CredentialsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io_error)?;
    let metadata = file.metadata().map_err(io_error)?;
    refuse_world_readable(path, &metadata)?;
    if metadata.len() > MAX_CREDENTIALS_FILE_BYTES {
        return Err(CredentialsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    // Read at most one byte past the limit, in case the file grew after the metadata call.
    let mut bytes = Vec::new();
    file.take(MAX_CREDENTIALS_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error)?;
    if bytes.len() as u64 > MAX_CREDENTIALS_FILE_BYTES {
        return Err(CredentialsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        CredentialsError::NotUtf8 {
            path: Some(path.to_path_buf()),
            line,
        }
    })
}

#[cfg(unix)]
fn refuse_world_readable(
    path: &Path,
    metadata: &std::fs::Metadata,
) -> Result<(), CredentialsError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = metadata.permissions().mode() & 0o7777;
    if mode & 0o004 != 0 {
        return Err(CredentialsError::WorldReadable {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn refuse_world_readable(_: &Path, _: &std::fs::Metadata) -> Result<(), CredentialsError> {
    // No portable notion of "world-readable" elsewhere; the OS's ACLs are the operator's job.
    Ok(())
}

/// Loads a client's key file: the credentials format with exactly one entry. Returns the name
/// and its key. The same size and permission checks as [`Credentials::load`] apply.
pub fn load_client_key(path: &Path) -> Result<(String, Key), CredentialsError> {
    let credentials = Credentials::load(path)?;
    let entries = credentials.len();
    match credentials.keys.into_iter().next() {
        Some(entry) if entries == 1 => Ok(entry),
        _ => Err(CredentialsError::NotOneEntry {
            path: path.to_path_buf(),
            entries,
        }),
    }
}

/// A fresh random nonce from the operating system's generator.
pub fn random_nonce() -> Result<[u8; NONCE_LEN], getrandom::Error> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce)?;
    Ok(nonce)
}

/// A MAC keyed with `key`, fed with everything the proof covers.
fn proof_mac(key: &[u8], nonce: &[u8; NONCE_LEN], name: &[u8]) -> HmacSha512 {
    let mut mac = match HmacSha512::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC takes keys of any length (long ones are hashed), so this cannot happen.
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    // Valid names are at most 100 bytes; a longer one (which `verify` refuses before getting
    // here) is clamped rather than wrapped, so this never panics.
    let name_len = u8::try_from(name.len()).unwrap_or(u8::MAX);
    mac.update(PROOF_CONTEXT);
    mac.update(nonce);
    mac.update(&[name_len]);
    mac.update(name);
    mac
}

/// The client's proof: HMAC-SHA512(key, "swarm-auth-v1" || nonce || u8 name length || name).
pub fn proof(key: &Key, nonce: &[u8; NONCE_LEN], name: &[u8]) -> [u8; PROOF_LEN] {
    proof_mac(key.as_bytes(), nonce, name)
        .finalize()
        .into_bytes()
        .into()
}

/// Why a handshake's proof was refused. The node logs this; the client only ever learns
/// "authentication failed", whatever the reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("unknown client name")]
    UnknownName,
    #[error("proof does not match the key on file for this name")]
    BadProof,
    #[error("client name is empty, longer than 100 bytes, or not ASCII graphic characters")]
    BadName,
}

/// Checks a client's proof against the key `creds` lists for `name`, in constant time.
///
/// An unknown name still costs one HMAC computation (with a dummy key), so response timing
/// does not tell a prober which names exist.
pub fn verify(
    creds: &Credentials,
    name: &[u8],
    nonce: &[u8; NONCE_LEN],
    proof: &[u8],
) -> Result<(), AuthFailure> {
    if check_name(name).is_err() {
        return Err(AuthFailure::BadName);
    }
    // check_name guarantees ASCII, hence UTF-8; the fallback only keeps this panic-free.
    let known_key = std::str::from_utf8(name).ok().and_then(|n| creds.get(n));
    match known_key {
        // `verify_slice` compares in constant time (and refuses a proof of the wrong length).
        Some(key) => proof_mac(key.as_bytes(), nonce, name)
            .verify_slice(proof)
            .map_err(|_| AuthFailure::BadProof),
        None => {
            let dummy_key = [0u8; MAX_KEY_LEN];
            let outcome = proof_mac(&dummy_key, nonce, name).verify_slice(proof);
            // Keep the optimiser from discarding the work done only for its timing.
            std::hint::black_box(outcome.is_ok());
            Err(AuthFailure::UnknownName)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    const KEY_A: &str = "00112233445566778899aabbccddeeff";
    const KEY_B: &str = "FFEEDDCCBBAA99887766554433221100FFEEDDCCBBAA99887766554433221100";

    fn line_error(text: &str) -> (usize, String) {
        match Credentials::parse(text) {
            Err(e @ CredentialsError::Line { line, .. }) => (line, e.to_string()),
            other => panic!("expected a line error for {text:?}, got {other:?}"),
        }
    }

    #[test]
    fn parses_good_file_with_comments_and_trailing_newline() {
        let text = format!("# clients\n\nalice:{KEY_A}\n  \n# bob below\nbob:{KEY_B}\n");
        let creds = Credentials::parse(&text).expect("valid file");
        assert_eq!(creds.len(), 2);
        assert_eq!(creds.names().collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(creds.get("alice").map(Key::len_bytes), Some(16));
        assert_eq!(creds.get("bob").map(|k| k.as_bytes()[0]), Some(0xff));
        assert!(creds.get("carol").is_none());
    }

    #[test]
    fn parses_without_trailing_newline_and_with_crlf() {
        let creds = Credentials::parse(&format!("alice:{KEY_A}\r\nbob:{KEY_B}")).expect("valid");
        assert_eq!(creds.len(), 2);
    }

    #[test]
    fn accepts_reference_256_digit_key() {
        let text = format!("admin:{}\n", "0".repeat(256));
        let creds = Credentials::parse(&text).expect("reference key format");
        assert_eq!(creds.get("admin").map(Key::len_bytes), Some(128));
    }

    #[test]
    fn rejects_each_kind_of_bad_line_naming_its_line() {
        let good = format!("ok:{KEY_A}\n");
        let cases = [
            ("no colon here".to_string(), "no ':'"),
            (format!(":{KEY_A}"), "name is empty"),
            (format!("{}:{KEY_A}", "n".repeat(101)), "101 bytes"),
            (format!("bad name:{KEY_A}"), "0x20"),
            (format!("caf\u{e9}:{KEY_A}"), "0xc3"),
            ("short:0011".to_string(), "4 hex digits"),
            (format!("long:{}", "0".repeat(258)), "258 hex digits"),
            (format!("odd:{KEY_A}0"), "odd number"),
            (format!("nothex:{}g", &KEY_A[..31]), "'g' at position 32"),
            (format!("colon:{}:", &KEY_A[..31]), "':' at position 32"),
            (format!("space:{KEY_A} "), "odd number"),
        ];
        for (bad, expected) in cases {
            let (line, message) = line_error(&format!("# header\n{good}{bad}\n"));
            assert_eq!(line, 3, "{message}");
            assert!(message.contains("line 3"), "{message}");
            assert!(
                message.contains(expected),
                "{expected:?} not in {message:?}"
            );
        }
    }

    #[test]
    fn rejects_duplicate_name() {
        let (line, message) = line_error(&format!("a:{KEY_A}\nb:{KEY_A}\na:{KEY_B}\n"));
        assert_eq!(line, 3);
        assert!(
            message.contains("'a' is already defined on line 1"),
            "{message}"
        );
    }

    #[test]
    fn changes_name_added_removed_and_rekeyed_clients() {
        let old = Credentials::parse(&format!("a:{KEY_A}\nb:{KEY_A}\nc:{KEY_A}\n")).expect("ok");
        let new = Credentials::parse(&format!("a:{KEY_A}\nc:{KEY_B}\nd:{KEY_B}\n")).expect("ok");
        let change = old.changes_to(&new);
        assert_eq!(change.added, ["d"]);
        assert_eq!(change.revoked, ["b", "c"], "b removed, c given another key");
        assert_eq!(new.changes_to(&new), CredentialsChange::default());
    }

    #[test]
    fn key_debug_is_redacted() {
        let key = Key::from_hex(KEY_A).expect("valid key");
        let shown = format!(
            "{key:?} {:?}",
            Credentials::parse(&format!("a:{KEY_A}")).expect("ok")
        );
        assert!(!shown.contains("11") && !shown.contains("17"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn proof_verifies_with_right_key_and_nonce_only() {
        let creds = Credentials::parse(&format!("alice:{KEY_A}\nbob:{KEY_B}\n")).expect("valid");
        let alice = creds.get("alice").expect("alice listed");
        let nonce = random_nonce().expect("nonce");
        let good = proof(alice, &nonce, b"alice");
        assert_eq!(verify(&creds, b"alice", &nonce, &good), Ok(()));

        let wrong_key = proof(creds.get("bob").expect("bob"), &nonce, b"alice");
        assert_eq!(
            verify(&creds, b"alice", &nonce, &wrong_key),
            Err(AuthFailure::BadProof)
        );

        let mut other_nonce = nonce;
        other_nonce[0] ^= 1;
        assert_eq!(
            verify(&creds, b"alice", &other_nonce, &good),
            Err(AuthFailure::BadProof)
        );
        assert_eq!(
            verify(&creds, b"bob", &nonce, &good),
            Err(AuthFailure::BadProof)
        );
        assert_eq!(
            verify(&creds, b"alice", &nonce, &good[..63]),
            Err(AuthFailure::BadProof)
        );
        assert_eq!(
            verify(&creds, b"carol", &nonce, &good),
            Err(AuthFailure::UnknownName)
        );
        assert_eq!(
            verify(&creds, b"", &nonce, &good),
            Err(AuthFailure::BadName)
        );
        assert_eq!(
            verify(&creds, b"a b", &nonce, &good),
            Err(AuthFailure::BadName)
        );
    }

    #[test]
    fn proof_matches_documented_construction() {
        let key = Key::from_hex(KEY_A).expect("valid key");
        let nonce = [7u8; NONCE_LEN];
        let mut mac = HmacSha512::new_from_slice(key.as_bytes()).expect("any key length");
        mac.update(b"swarm-auth-v1");
        mac.update(&nonce);
        mac.update(&[3]);
        mac.update(b"bob");
        let expected: [u8; PROOF_LEN] = mac.finalize().into_bytes().into();
        assert_eq!(proof(&key, &nonce, b"bob"), expected);
    }

    #[test]
    fn nonces_differ() {
        assert_ne!(
            random_nonce().expect("nonce"),
            random_nonce().expect("nonce")
        );
    }

    fn key_file(text: &str, mode: u32) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write");
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(mode))
            .expect("chmod");
        file
    }

    #[test]
    fn load_refuses_world_readable_file() {
        let file = key_file(&format!("alice:{KEY_A}\n"), 0o644);
        let message = Credentials::load(file.path())
            .expect_err("world-readable")
            .to_string();
        assert!(message.contains("chmod 600"), "{message}");
        assert!(
            message.contains(&file.path().display().to_string()),
            "{message}"
        );

        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        assert_eq!(
            Credentials::load(file.path()).expect("private file").len(),
            1
        );
    }

    #[test]
    fn load_names_path_and_line() {
        let file = key_file(&format!("alice:{KEY_A}\nbob\n"), 0o600);
        let message = Credentials::load(file.path())
            .expect_err("bad line")
            .to_string();
        assert!(
            message.starts_with(&format!("{}: line 2:", file.path().display())),
            "{message}"
        );

        let missing = Credentials::load(Path::new("/nonexistent/creds")).expect_err("missing");
        assert!(
            missing.to_string().contains("/nonexistent/creds"),
            "{missing}"
        );
    }

    #[test]
    fn load_refuses_non_utf8_naming_line() {
        let mut file = key_file(&format!("alice:{KEY_A}\n"), 0o600);
        file.write_all(b"b\xffb:00\n").expect("write");
        let message = Credentials::load(file.path())
            .expect_err("not utf-8")
            .to_string();
        assert!(message.contains("line 2 is not valid UTF-8"), "{message}");
    }

    #[test]
    fn client_key_needs_exactly_one_entry() {
        let one = key_file(&format!("# me\nalice:{KEY_A}\n"), 0o600);
        let (name, key) = load_client_key(one.path()).expect("one entry");
        assert_eq!(name, "alice");
        assert_eq!(key.len_bytes(), 16);

        let two = key_file(&format!("alice:{KEY_A}\nbob:{KEY_B}\n"), 0o600);
        let message = load_client_key(two.path())
            .expect_err("two entries")
            .to_string();
        assert!(
            message.contains("exactly one") && message.contains("found 2"),
            "{message}"
        );

        let none = key_file("# nothing\n", 0o600);
        assert!(load_client_key(none.path()).is_err());
    }
}
