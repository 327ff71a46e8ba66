//! Liveness probes: what the client does when a request to a node times out.
//!
//! A node that stops answering without closing its connections (a stopped or hung process, a
//! host that lost power, a network that drops packets) is not seen down by the connection: the
//! operating system gives a silent TCP connection up only after minutes. So after a one-reply
//! request timed out with nothing at all received from the node since it was made (a node
//! that answers other requests meanwhile is alive, only slow), the client asks the node for its
//! version (GetVersion, which every node answers at once) on the same connection, off the
//! caller's thread, and waits up to
//! `connect_timeout_ms`. An answer means the node is alive and only that request was slow:
//! nothing changes. No answer means the node is counted down like a node whose connect failed:
//! its connection is closed (what is in flight on it fails with `Timeout`), requests to it fail
//! at once with `NodeDown`, replica sets fail over to their other members, and reconnects follow
//! the node's backoff until one completes its handshake. At most one probe per node runs at a
//! time.

use crate::client::send_request;
use crate::error::ClientError;
use crate::reply::Pending;
use crate::shared::{Command, Shared, Sink};
use node_core::protocol::RequestCode;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// After a request to `node` timed out: starts a probe of it unless the node sent something
/// since the request was made (`heard_before`: it is alive, that request was slow, as under
/// a load that queues requests behind others) or a probe of it is running.
pub(crate) fn after_timeout(shared: &Arc<Shared>, node: usize, heard_before: u64) {
    let Ok(info) = shared.node(node) else {
        return;
    };
    if info.reads_heard() != heard_before || info.probing.swap(true, Ordering::AcqRel) {
        return;
    }
    let probe_shared = Arc::clone(shared);
    let probe_info = Arc::clone(&info);
    let spawned = std::thread::Builder::new()
        .name("swarm-client-probe".into())
        .spawn(move || {
            if !answers(&probe_shared, node) {
                tracing::warn!(node = %probe_info.addr, "the node answered neither a request nor a liveness probe: counted down");
                // A failed send means the client is shutting down: nothing to mark.
                let _ = probe_shared.send(Command::Unresponsive { node }, node);
            }
            probe_info.probing.store(false, Ordering::Release);
        });
    if spawned.is_err() {
        // No thread, no probe: the node stays as it is, as before probes existed.
        info.probing.store(false, Ordering::Release);
    }
}

/// Whether `node` answers a GetVersion within `connect_timeout_ms`. Only a timeout is "no":
/// any other failure (the connection dropped, the node already down, the client closing) is
/// the I/O thread's to handle, and it has.
fn answers(shared: &Arc<Shared>, node: usize) -> bool {
    let deadline = Instant::now() + Duration::from_millis(shared.options.connect_timeout_ms);
    let (reply_to, rx) = mpsc::channel();
    let sent = send_request(
        shared,
        node,
        RequestCode::GET_VERSION,
        Vec::new(),
        deadline,
        Sink::Own(reply_to),
    );
    match sent {
        Ok(ticket) => !matches!(
            Pending::new(ticket, rx, deadline).wait_unprobed(),
            Err(ClientError::Timeout { .. })
        ),
        Err(_) => true,
    }
}
