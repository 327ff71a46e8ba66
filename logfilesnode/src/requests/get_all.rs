//! GetAll: stream every record of a channel whose value passes the filter, bucket by bucket
//! (ascending keys within a bucket), as LZ4 batches (uncompressed ones when the request's flags
//! ask) under the client's credit. A record a foreign tool stored in the wrong bucket is still
//! sent. See [`super::read`].

use crate::service::LogfilesNode;
use node_core::protocol::logfiles::{check_channel_name, GetAllRequest};
use node_core::server::{Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut LogfilesNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<LogfilesNode> {
    let (get_all, flags) = GetAllRequest::decode_with(request.body)?;
    check_channel_name(get_all.channel)?;
    let read = super::read::ReadRequest {
        name: "GetAll",
        channel: get_all.channel,
        from: 0,
        to: u64::MAX,
        filter: get_all.filter,
        flags,
    };
    Ok(super::read::start(node, read, reply))
}
