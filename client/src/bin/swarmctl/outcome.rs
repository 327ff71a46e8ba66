//! What a command's outcome means: its exit status and the one line on stderr.
//!
//! Owns the mapping of errors to the statuses of `EXIT_STATUSES` (main.rs): commands return
//! [`Absent`], [`Usage`], [`ExitWith`] or [`PartialResult`] for the statuses they decide
//! themselves; every other error is classified here by type: a client error about the request
//! itself (a value too big, a bad channel name or pattern the nodes refuse) or a bad topology or
//! key file is a usage error, a write into a closed pipe is a quiet success, and the rest is a
//! node or cluster failure.

use crate::CmdResult;
use client::topology::{KeyFileError, TopologyError};
use client::{ClientError, Status};
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;

pub const ABSENT: u8 = 1;
pub const USAGE: u8 = 2;
pub const FAILURE: u8 = 3;

/// Absent, empty or false (status 1), with a note for stderr (none if empty).
#[derive(Debug)]
pub struct Absent(pub String);

/// A usage error found by a command (status 2): a channel name, key, value or file.
#[derive(Debug)]
pub struct Usage(pub String);

/// A status the command's output already explains (health's verdict, ping's node lines).
#[derive(Debug)]
pub struct ExitWith(pub u8);

/// A read that could not ask every node (status 3): what it printed came from the others.
#[derive(Debug)]
pub struct PartialResult {
    pub missing: Vec<(SocketAddr, ClientError)>,
}

impl std::fmt::Display for Absent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::fmt::Display for PartialResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let nodes: Vec<String> = self
            .missing
            .iter()
            .map(|(addr, error)| format!("node {addr}: {}", error.reason()))
            .collect();
        write!(
            f,
            "partial result: {} node(s) could not answer: {}",
            nodes.len(),
            nodes.join("; ")
        )
    }
}

impl std::error::Error for Absent {}
impl std::error::Error for Usage {}
impl std::error::Error for ExitWith {}
impl std::error::Error for PartialResult {}

/// `Err(PartialResult)` when nodes are missing.
pub fn check_complete(missing: &[(SocketAddr, ClientError)]) -> CmdResult {
    if missing.is_empty() {
        return Ok(());
    }
    Err(PartialResult {
        missing: missing.to_vec(),
    }
    .into())
}

/// Ends the process for a command's result: its status, and its message on stderr.
pub fn exit(result: CmdResult) -> ExitCode {
    let Err(error) = result else {
        return ExitCode::SUCCESS;
    };
    let (status, message) = classify(error.as_ref());
    if let Some(message) = message {
        // Nothing to do if stderr itself is gone.
        let _ = writeln!(std::io::stderr(), "swarmctl: {}", one_line(&message));
    }
    ExitCode::from(status)
}

/// The status of a failure, and its message (`None`: nothing to print).
fn classify(error: &(dyn std::error::Error + 'static)) -> (u8, Option<String>) {
    let text = || Some(error.to_string());
    if let Some(Absent(note)) = error.downcast_ref() {
        return (ABSENT, (!note.is_empty()).then(|| note.clone()));
    }
    if let Some(ExitWith(status)) = error.downcast_ref() {
        return (*status, None);
    }
    if error.is::<Usage>()
        || error.is::<TopologyError>()
        || error.is::<KeyFileError>()
        || error.is::<node_core::tls::TlsError>()
    {
        return (USAGE, text());
    }
    if let Some(io) = error.downcast_ref::<std::io::Error>() {
        if io.kind() == std::io::ErrorKind::BrokenPipe {
            return (0, None); // the reader had enough: `swarmctl ... | head`
        }
    }
    if let Some(client) = error.downcast_ref::<ClientError>() {
        if about_the_request(client) {
            return (USAGE, text());
        }
    }
    (FAILURE, text())
}

/// Whether a client error says the request itself is wrong (it would fail on any node).
fn about_the_request(error: &ClientError) -> bool {
    match error {
        ClientError::ValueTooBig { .. } => true,
        ClientError::Status { status, .. } => matches!(
            status,
            Status::EmptyValue | Status::ValueTooBig | Status::BadChannelName | Status::BadRequest
        ),
        _ => false,
    }
}

/// Every failure is reported in one line, whatever the verb: a message may span several (a
/// regular expression's parse error points at the pattern on a line of its own).
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(error: Box<dyn std::error::Error>) -> u8 {
        classify(error.as_ref()).0
    }

    #[test]
    fn each_kind_of_failure_has_its_status() {
        let node = SocketAddr::from(([127, 0, 0, 1], 1));
        assert_eq!(status_of(Absent(String::new()).into()), ABSENT);
        assert_eq!(status_of(Usage("bad".into()).into()), USAGE);
        assert_eq!(status_of(ExitWith(1).into()), 1);
        let broken = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(classify(&broken), (0, None));
        assert_eq!(
            status_of(ClientError::ValueTooBig { len: 2, max: 1 }.into()),
            USAGE
        );
        assert_eq!(
            status_of(ClientError::Disconnected { node }.into()),
            FAILURE
        );
        let partial = PartialResult {
            missing: vec![(node, ClientError::Disconnected { node })],
        };
        assert_eq!(
            partial.to_string(),
            "partial result: 1 node(s) could not answer: node 127.0.0.1:1: disconnected"
        );
        assert_eq!(status_of(partial.into()), FAILURE);
    }
}
