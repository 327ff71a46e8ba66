//! What a request handler returns, and how the replies it could not give itself are written:
//! one definition for every node kind, so a body that does not decode, an engine's error and an
//! unknown code are answered the same way everywhere.
//!
//! A handler returns an [`Outcome`]: `Ok` when it replied (or started a stream), `Err` with the
//! [`ErrorReply`] to send otherwise. Every error type that knows its status
//! ([`StatusError`]: a decoding error, a bad channel name, each engine's errors) converts into
//! an `ErrorReply`, so a handler reads as decode, check, execute, reply, with `?` in between.
//! The node's dispatch hands the outcome to [`finish`].

use super::service::{Handled, Reply};
use crate::protocol::status::StatusError;
use crate::protocol::{NodeKind, RequestCode, Status};

/// What a handler did: replied or started a stream (`Ok`), or refused (`Err`, not yet written).
pub type Outcome<S> = Result<Handled<S>, ErrorReply>;

/// An error reply not yet written: its status and its message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    pub status: Status,
    pub message: String,
}

impl ErrorReply {
    pub fn new(status: Status, message: impl Into<String>) -> ErrorReply {
        debug_assert!(!status.is_success(), "an error reply has an error status");
        ErrorReply {
            status,
            message: message.into(),
        }
    }

    /// BadRequest naming what did not decode beyond the body's fields (a batch, a filter).
    pub fn bad_request(message: impl Into<String>) -> ErrorReply {
        ErrorReply::new(Status::BadRequest, message)
    }
}

impl<E: StatusError> From<E> for ErrorReply {
    fn from(error: E) -> ErrorReply {
        ErrorReply::new(error.status(), error.to_string())
    }
}

/// Writes the reply of a refused request; a handler that replied itself is done already.
pub fn finish<S: ?Sized>(reply: &mut Reply<'_>, outcome: Outcome<S>) -> Handled<S> {
    match outcome {
        Ok(handled) => handled,
        Err(error) => {
            debug_assert!(
                reply.status().is_none(),
                "a handler that refuses has not replied"
            );
            reply.error(error.status, error.message);
            Handled::Replied
        }
    }
}

/// The message for a code that is not one of `kind`'s requests.
pub fn unsupported_message(code: RequestCode, kind: NodeKind) -> String {
    format!("request code {} is not a {kind} request", code.0)
}

/// The dispatch fallback: answers a code that is not one of `kind`'s requests. The core
/// answers unknown codes before a handler runs (`Service::request_name` says `None`), and every
/// node derives both from its request enum, so this is reached only if they disagreed.
pub fn unsupported<S: ?Sized>(
    reply: &mut Reply<'_>,
    code: RequestCode,
    kind: NodeKind,
) -> Handled<S> {
    reply.error(Status::UnsupportedRequest, unsupported_message(code, kind));
    Handled::Replied
}
