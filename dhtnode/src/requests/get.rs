//! Get: the value of a key (Ok with the value as the body), or NotFound. No range check, so a
//! record still on this node after a range change stays readable; a missing channel is not
//! created.

use super::{bad_request, engine_error};
use crate::service::DhtNode;
use node_core::protocol::dht::KeyRequest;
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<DhtNode> {
    let get = match KeyRequest::decode(request.body) {
        Ok(get) => get,
        Err(error) => return bad_request(reply, error),
    };
    let found = node
        .engine
        .with_value(get.channel, get.key, |value| match value {
            Some(value) => reply.ok(value),
            None => reply.send(Status::NotFound, &[]),
        });
    if let Err(error) = found {
        return engine_error(reply, error);
    }
    Handled::Replied
}
