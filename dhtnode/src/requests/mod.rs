//! The dht requests, one module each: its decoding (with the protocol's codec, which the client
//! shares), its checks and its execution (calls into [`crate::engine`], which keeps the rules of
//! the data). [`dispatch`] turns a code into a [`DhtRequest`] and routes it with one exhaustive
//! `match`, after refusing the reads NotReady while the node catches up ([`crate::catch_up`]); GetChannels, GetChannelSize, GetSize and RemoveChannel are node-core's
//! ([`node_core::server::channel_requests`]), over this node's [`ChannelStore`] (RemoveChannel
//! answered like every dht change: [`crate::service::DhtNode::acknowledge`]).

mod exists;
mod get;
mod get_all;
mod get_redistribution;
mod get_responsible_range;
mod get_with_version;
mod listen;
mod mirror;
mod put;
mod put_batch;
mod put_batch_version;
mod put_version;
mod redist_batch;
mod redist_batch_version;
mod redist_commit;
mod redistribute;
mod remove;
mod remove_version;
mod set_ready;
mod update;
mod walk;

use crate::engine::prefetch::Targets;
use crate::engine::EngineError;
use crate::service::DhtNode;
use node_core::protocol::dht::{peek_channel_and_key, DhtRequest, SizeInfo};
use node_core::protocol::{NodeKind, RequestCode, Status};
use node_core::server::channel_requests as channels;
use node_core::server::outcome::{finish, unsupported};
use node_core::server::{ChannelStore, Handled, LookAheadFrames, Reply, Request};

pub(crate) fn dispatch(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<DhtNode> {
    let Some(kind) = DhtRequest::from_code(request.code) else {
        return unsupported(reply, request.code, NodeKind::Dht);
    };
    if node.catch_up.refuses(kind) {
        reply.error(
            Status::NotReady,
            "this replica is catching up with its replica set; read from another member of \
             the set",
        );
        return Handled::Replied;
    }
    let outcome = match kind {
        DhtRequest::Put => put::handle(node, request, reply),
        DhtRequest::Get => get::handle(node, request, reply),
        DhtRequest::Exists => exists::handle(node, request, reply),
        DhtRequest::Remove => remove::handle(node, request, reply),
        DhtRequest::GetAll => get_all::handle(node, request, reply),
        DhtRequest::GetChannels => channels::get_channels(node, request, reply),
        DhtRequest::GetChannelSize => channels::get_channel_size(node, request, reply),
        DhtRequest::GetSize => channels::get_size(node, request, reply),
        DhtRequest::RemoveChannel => remove_channel(node, request, reply),
        DhtRequest::GetResponsibleRange => get_responsible_range::handle(node, request, reply),
        DhtRequest::PutBatch => put_batch::handle(node, request, reply),
        DhtRequest::Listen => listen::handle(node, request, reply),
        DhtRequest::Update => update::handle(node, request, reply),
        DhtRequest::Redistribute => redistribute::handle(node, request, reply),
        DhtRequest::RedistBatch => redist_batch::handle(node, request, reply),
        DhtRequest::RedistCommit => redist_commit::handle(node, request, reply),
        DhtRequest::GetRedistribution => get_redistribution::handle(node, request, reply),
        DhtRequest::PutVersion => put_version::handle(node, request, reply),
        DhtRequest::RemoveVersion => remove_version::handle(node, request, reply),
        DhtRequest::GetWithVersion => get_with_version::handle(node, request, reply),
        DhtRequest::Mirror => mirror::handle(node, request, reply),
        DhtRequest::SetReady => set_ready::handle(node, request, reply),
        DhtRequest::RedistBatchVersion => redist_batch_version::handle(node, request, reply),
        DhtRequest::PutBatchVersion => put_batch_version::handle(node, request, reply),
    };
    finish(reply, outcome)
}

/// The look-ahead ([`node_core::server::Service::look_ahead`]): the records the next Get,
/// Exists, GetWithVersion, Put and PutVersion of a pipelined read, or of the connections read
/// in one pass, will look up, prefetched together ([`crate::engine::prefetch`]). A lone lookup
/// is left alone: it has nothing to overlap with.
pub(crate) fn look_ahead(node: &DhtNode, frames: LookAheadFrames<'_>) {
    let mut targets = Targets::default();
    for (code, body) in frames {
        let Some((channel, key)) = looked_up(code, body) else {
            continue;
        };
        if let Some(data) = node.engine.channel_for_look_ahead(channel) {
            targets.push(data, key);
        }
    }
    if targets.len() >= 2 {
        targets.prefetch();
    }
}

/// The channel name (bytes: the engine finds only valid names) and key a request will look
/// up, if it is one whose lookups the look-ahead prefetches and its body has the request's
/// layout ([`peek_channel_and_key`]).
fn looked_up(code: RequestCode, body: &[u8]) -> Option<(&[u8], u64)> {
    let (channel, key, rest) = peek_channel_and_key(body)?;
    let whole = match DhtRequest::from_code(code)? {
        DhtRequest::Get | DhtRequest::Exists | DhtRequest::GetWithVersion => rest.is_empty(),
        DhtRequest::Put => true,
        DhtRequest::PutVersion => rest.len() >= 8,
        _ => false,
    };
    whole.then_some((channel, key))
}

/// RemoveChannel: node-core's (decode, checks, the removal, its log line), answered like every
/// change of the dht ([`DhtNode::acknowledge`]: under `durability = "always"` once its
/// change-log entry is fsynced).
fn remove_channel(
    node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> node_core::server::Outcome<DhtNode> {
    let mark = node.log_mark();
    channels::remove_channel_unanswered(node, request)?;
    Ok(node.acknowledge(mark, reply, Status::Ok, &[]))
}

/// The dht's channels for the shared channel requests. A removed channel's Listen streams end
/// (the engine tells them) and its dump files are set aside (the dumper).
impl ChannelStore for DhtNode {
    type Size = SizeInfo;
    type Error = EngineError;

    fn channel_names(&self) -> impl ExactSizeIterator<Item = &str> {
        self.engine.channel_names()
    }

    fn channel_size(&self, channel: &str) -> SizeInfo {
        self.engine.channel_size(channel)
    }

    fn total_size(&self) -> SizeInfo {
        self.engine.size()
    }

    fn remove_channel(&mut self, channel: &str) -> Result<Option<String>, EngineError> {
        let existed = self.engine.remove_channel(channel)?;
        if let Some(dumper) = &mut self.dumper {
            match self.engine.log().position() {
                // Logged: its files go once the entry is durable (crate::removed_dumps).
                Some(position) if existed && self.engine.log().is_writing() => {
                    dumper.cancel_dumps_of(channel);
                    self.removed_dumps.removed(channel, position);
                }
                _ => dumper.channel_removed(channel),
            }
        }
        Ok(existed.then(String::new))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use node_core::protocol::dht::{KeyRequest, PutRequest, PutVersionRequest};

    /// The look-ahead finds the channel and key of the requests whose lookups it prefetches,
    /// and nothing for other requests or for a body that does not decode.
    #[test]
    fn looked_up_decodes_the_lookups_only() {
        let mut key = Vec::new();
        KeyRequest {
            channel: "ch",
            key: 7,
        }
        .encode(&mut key);
        for read in [
            DhtRequest::Get,
            DhtRequest::Exists,
            DhtRequest::GetWithVersion,
        ] {
            assert_eq!(looked_up(read.code(), &key), Some((&b"ch"[..], 7)));
            assert_eq!(looked_up(read.code(), &key[..key.len() - 1]), None);
        }
        assert_eq!(looked_up(DhtRequest::Remove.code(), &key), None);
        let mut put = Vec::new();
        PutRequest {
            channel: "c",
            key: 9,
            value: b"v",
        }
        .encode(&mut put);
        assert_eq!(
            looked_up(DhtRequest::Put.code(), &put),
            Some((&b"c"[..], 9))
        );
        let mut put_version = Vec::new();
        let request = PutVersionRequest {
            channel: "c",
            key: 3,
            version: 5,
            value: b"v",
        };
        request.encode(&mut put_version);
        assert_eq!(
            looked_up(DhtRequest::PutVersion.code(), &put_version),
            Some((&b"c"[..], 3))
        );
        assert_eq!(
            looked_up(DhtRequest::PutVersion.code(), &put_version[..10]),
            None
        );
        let mut with_trailing = key.clone();
        with_trailing.push(0);
        assert_eq!(looked_up(DhtRequest::Get.code(), &with_trailing), None);
        assert_eq!(looked_up(RequestCode(200), &key), None);
    }
}
