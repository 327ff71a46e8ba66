//! GetAll: stream every record of a channel whose value passes the filter, bucket by bucket
//! (ascending keys within a bucket), as LZ4 batches under the client's credit. A record a
//! foreign tool stored in the wrong bucket is still sent. See [`super::read`].

use super::{bad_request, check_channel_name};
use crate::service::LogfilesNode;
use node_core::protocol::logfiles::GetAllRequest;
use node_core::server::{Handled, Reply, Request};

pub(super) fn handle(
    node: &mut LogfilesNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<LogfilesNode> {
    let get_all = match GetAllRequest::decode(request.body) {
        Ok(get_all) => get_all,
        Err(error) => return bad_request(reply, error),
    };
    if let Err(handled) = check_channel_name(get_all.channel, reply) {
        return handled;
    }
    super::read::start(
        node,
        "GetAll",
        get_all.channel,
        0,
        u64::MAX,
        get_all.filter,
        reply,
    )
}
