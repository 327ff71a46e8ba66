//! The client's nodes: who they are and how each is doing.
//!
//! Owns [`NodeInfo`] (one node's address, request-id counter, in-flight limit and health) and
//! the public view of a node's health, [`NodeStatus`]. Membership is append-only: an index
//! names one node for the life of a `Client`; a node removed from the topology is *retired*
//! (requests to its index fail with `ClientError::NodeRetired`) and its index is never reused,
//! so indices held by callers (a range table, a running stream) never silently point at another
//! node.
//!
//! Health is the one place that knows which nodes are live, down since when, and why. The I/O
//! thread writes it (a connect succeeded, failed, a connection dropped); callers read it on the
//! request path, where it costs one atomic load (a lock only to copy a down node's reason), never
//! a connect attempt: a request to a node known to be down fails at once with
//! `ClientError::NodeDown`. Routing (dht ranges, the replica sets to come) and health reports
//! ask here too.

use crate::error::ClientError;
use crate::limit::InFlightLimit;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

const UP: u8 = 0;
const CONNECTING: u8 = 1;
const DOWN: u8 = 2;

/// How a node is doing, as the client last saw it.
#[derive(Debug, Clone)]
pub enum NodeState {
    /// Connected.
    Up,
    /// A connection is being opened and the node is not known to be down (the first connect to
    /// an added node, or the reconnect right after a connection dropped): requests wait for it.
    Connecting,
    /// The last connect failed with `error`: requests fail at once (with
    /// `ClientError::NodeDown` when `error` says the node is down or unreachable, otherwise with
    /// `error` itself, e.g. a wrong node kind) while the client reconnects in the background.
    Down {
        since: SystemTime,
        error: ClientError,
    },
    /// Removed from the client's nodes; its index is never reused.
    Retired,
}

/// One node's address and health.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// The node's index in its `Client`.
    pub index: usize,
    pub addr: SocketAddr,
    pub state: NodeState,
}

impl NodeStatus {
    pub fn is_up(&self) -> bool {
        matches!(self.state, NodeState::Up)
    }

    pub fn is_retired(&self) -> bool {
        matches!(self.state, NodeState::Retired)
    }
}

/// Why and since when a node is down.
#[derive(Debug, Clone)]
struct Down {
    error: ClientError,
    since: SystemTime,
}

pub(crate) struct NodeInfo {
    pub(crate) addr: SocketAddr,
    next_id: AtomicU64,
    pub(crate) limit: Arc<InFlightLimit>,
    state: AtomicU8,
    retired: AtomicBool,
    /// Connections opened so far: the dht client re-reads a node's range when this moved.
    generation: AtomicU64,
    down: Mutex<Option<Down>>,
    /// A liveness probe of this node is running (`crate::probe`): at most one at a time.
    pub(crate) probing: AtomicBool,
    /// Reads that brought bytes from the node, over all its connections (`crate::probe`).
    heard: AtomicU64,
}

impl NodeInfo {
    /// A node about to be connected to for the first time.
    pub(crate) fn new(addr: SocketAddr, max_in_flight: usize) -> NodeInfo {
        NodeInfo {
            addr,
            next_id: AtomicU64::new(1),
            limit: InFlightLimit::new(max_in_flight),
            state: AtomicU8::new(CONNECTING),
            retired: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            down: Mutex::new(None),
            probing: AtomicBool::new(false),
            heard: AtomicU64::new(0),
        }
    }

    /// The I/O thread read bytes from the node.
    pub(crate) fn note_heard(&self) {
        self.heard.fetch_add(1, Ordering::Relaxed);
    }

    /// How many reads brought bytes from the node so far.
    pub(crate) fn reads_heard(&self) -> u64 {
        self.heard.load(Ordering::Relaxed)
    }

    pub(crate) fn next_request_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// `Ok` when a request may be sent now (up, or connecting); else the error to fail it with,
    /// at once.
    pub(crate) fn check(&self) -> Result<(), ClientError> {
        if self.retired.load(Ordering::Acquire) {
            return Err(ClientError::NodeRetired { node: self.addr });
        }
        if self.state.load(Ordering::Acquire) == DOWN {
            return Err(self.down_error());
        }
        Ok(())
    }

    pub(crate) fn is_retired(&self) -> bool {
        self.retired.load(Ordering::Acquire)
    }

    /// The error a request to this down node fails with.
    pub(crate) fn down_error(&self) -> ClientError {
        let down = self.lock_down();
        match &*down {
            Some(down) if down.error.is_node_down() => ClientError::NodeDown {
                node: self.addr,
                reason: down.error.reason(),
                since: down.since,
            },
            Some(down) => down.error.clone(),
            // Between the state and its details: only a moment after coming up again.
            None => ClientError::Disconnected { node: self.addr },
        }
    }

    /// A connection is up (I/O thread).
    pub(crate) fn set_up(&self) {
        *self.lock_down() = None;
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.state.store(UP, Ordering::Release);
    }

    /// A connection is being opened after this node's connection dropped (I/O thread). A node
    /// known to be down stays down during background retries: requests keep failing at once.
    pub(crate) fn set_connecting(&self) {
        let _ = self
            .state
            .compare_exchange(UP, CONNECTING, Ordering::AcqRel, Ordering::Acquire);
    }

    /// A connect failed (I/O thread): down since the first failure in a row, for this reason.
    pub(crate) fn set_down(&self, error: ClientError) {
        let mut down = self.lock_down();
        let since = down
            .as_ref()
            .map_or_else(SystemTime::now, |previous| previous.since);
        *down = Some(Down { error, since });
        self.state.store(DOWN, Ordering::Release);
    }

    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::Release);
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn status(&self, index: usize) -> NodeStatus {
        let state = if self.is_retired() {
            NodeState::Retired
        } else {
            match self.state.load(Ordering::Acquire) {
                UP => NodeState::Up,
                DOWN => match &*self.lock_down() {
                    Some(down) => NodeState::Down {
                        since: down.since,
                        error: down.error.clone(),
                    },
                    None => NodeState::Connecting,
                },
                _ => NodeState::Connecting,
            }
        };
        NodeStatus {
            index,
            addr: self.addr,
            state,
        }
    }

    /// A plain value behind the lock: a panic elsewhere cannot leave it inconsistent.
    fn lock_down(&self) -> std::sync::MutexGuard<'_, Option<Down>> {
        self.down.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What a change of a client's node set did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeChanges {
    /// Nodes connected to anew, with their new indices.
    pub added: Vec<(usize, SocketAddr)>,
    /// Nodes retired, with their indices.
    pub removed: Vec<(usize, SocketAddr)>,
}

impl NodeChanges {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(node: SocketAddr) -> ClientError {
        ClientError::from_io(
            node,
            &std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        )
    }

    #[test]
    fn a_down_node_fails_fast_with_node_down_until_it_is_up_again() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 7));
        let node = NodeInfo::new(addr, 4);
        assert!(node.check().is_ok(), "connecting: requests wait");
        node.set_down(refused(addr));
        let first_since = match node.check() {
            Err(ClientError::NodeDown {
                node: named,
                reason,
                since,
            }) => {
                assert_eq!(named, addr);
                assert_eq!(reason, "connection refused");
                since
            }
            other => panic!("expected NodeDown, got {other:?}"),
        };
        // Background retries keep it down, and keep when it went down.
        node.set_connecting();
        node.set_down(refused(addr));
        assert!(
            matches!(node.check(), Err(ClientError::NodeDown { since, .. }) if since == first_since)
        );
        assert_eq!(node.generation(), 0);
        node.set_up();
        assert!(node.check().is_ok());
        assert!(node.status(3).is_up());
        assert_eq!(node.generation(), 1);
        node.retire();
        assert!(matches!(node.check(), Err(ClientError::NodeRetired { .. })));
        assert!(node.status(3).is_retired());
    }

    #[test]
    fn a_node_that_refuses_us_fails_with_its_own_error() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 8));
        let node = NodeInfo::new(addr, 4);
        node.set_down(ClientError::AuthFailed { node: addr });
        assert!(matches!(node.check(), Err(ClientError::AuthFailed { .. })));
    }
}
