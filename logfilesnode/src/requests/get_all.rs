//! GetAll: stream every record of a channel whose value passes the filter, bucket by bucket
//! (ascending keys within a bucket), as LZ4 batches under the client's credit. A record a
//! foreign tool stored in the wrong bucket is still sent. See [`super::read`].

use crate::service::LogfilesNode;
use node_core::protocol::logfiles::{check_channel_name, GetAllRequest};
use node_core::server::{Outcome, Reply, Request};

pub(super) fn handle(
    node: &mut LogfilesNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<LogfilesNode> {
    let get_all = GetAllRequest::decode(request.body)?;
    check_channel_name(get_all.channel)?;
    Ok(super::read::start(
        node,
        "GetAll",
        get_all.channel,
        0,
        u64::MAX,
        get_all.filter,
        reply,
    ))
}
