//! [`Partial`]: the result of a read that asks several nodes, some of which could not answer.
//!
//! Owns the one rule for results over a partial cluster: what the nodes that answered said
//! (`value`), and every node that could not, with its error (`missing`). A partial result never
//! passes for a complete one: the type is `#[must_use]`, and [`Partial::complete`] turns it into
//! the value only when nothing is missing (otherwise into the first missing node's error). The
//! complete-only methods of the cluster clients (`get_size`, `get_channels`, ...) are exactly
//! their `*_partial` counterpart followed by `complete()`.

use crate::error::ClientError;
use std::net::SocketAddr;

/// What the nodes that answered said, and the nodes that could not answer (down, unreachable,
/// too slow: [`ClientError::is_node_down`]) with their errors, in node order.
#[derive(Debug, Clone)]
#[must_use = "a partial result may miss nodes: check `missing`, or call `complete()`"]
pub struct Partial<T> {
    pub value: T,
    pub missing: Vec<(SocketAddr, ClientError)>,
}

impl<T> Partial<T> {
    /// A result with nothing missing yet.
    pub fn new(value: T) -> Partial<T> {
        Partial {
            value,
            missing: Vec::new(),
        }
    }

    /// Whether every node answered.
    pub fn is_complete(&self) -> bool {
        self.missing.is_empty()
    }

    /// The value if every node answered; else the first missing node's error.
    pub fn complete(self) -> Result<T, ClientError> {
        match self.missing.into_iter().next() {
            None => Ok(self.value),
            Some((_, error)) => Err(error),
        }
    }

    /// The same missing nodes with the value transformed.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Partial<U> {
        Partial {
            value: f(self.value),
            missing: self.missing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_result_is_complete_only_when_nothing_is_missing() {
        let whole = Partial::new(3);
        assert!(whole.is_complete());
        assert_eq!(whole.map(|n| n * 2).complete().expect("complete"), 6);

        let node = SocketAddr::from(([127, 0, 0, 1], 9));
        let mut partial = Partial::new(3);
        partial
            .missing
            .push((node, ClientError::Disconnected { node }));
        assert!(!partial.is_complete());
        assert!(matches!(
            partial.complete(),
            Err(ClientError::Disconnected { .. })
        ));
    }
}
