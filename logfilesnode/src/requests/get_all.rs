//! GetAll: stream every record of a channel whose value passes the filter, bucket by bucket
//! (ascending keys within a bucket), as LZ4 batches (uncompressed ones when the request's flags
//! ask) under the client's credit. A record a foreign tool stored in the wrong bucket is still
//! sent. See [`super::read`].

use super::{bad_request, check_channel_name};
use crate::service::LogfilesNode;
use node_core::protocol::logfiles::GetAllRequest;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut LogfilesNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<LogfilesNode> {
    let (get_all, flags) = match GetAllRequest::decode_with(request.body) {
        Ok(decoded) => decoded,
        Err(error) => return bad_request(reply, error),
    };
    if let Err(handled) = check_channel_name(get_all.channel, reply) {
        return handled;
    }
    let read = super::read::ReadRequest {
        name: "GetAll",
        channel: get_all.channel,
        from: 0,
        to: u64::MAX,
        filter: get_all.filter,
        flags,
    };
    super::read::start(node, read, reply)
}
