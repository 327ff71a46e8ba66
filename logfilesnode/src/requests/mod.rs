//! The logfiles requests, one module each: its decoding (with the protocol's codec, which the
//! client shares), its checks and its execution (calls into [`crate::engine`], which keeps the
//! rules of the data). [`dispatch`] turns a code into a [`LogfilesRequest`] and routes it with
//! one exhaustive `match`; GetChannels, GetChannelSize, GetSize and RemoveChannel are
//! node-core's ([`node_core::server::channel_requests`]) over the engine's [`ChannelStore`].
//! GetRange and GetAll share the scan stream of [`read`].

mod get_all;
mod get_range;
mod put;
mod put_batch;
mod read;

use crate::engine::{Engine, EngineError};
use crate::service::LogfilesNode;
use node_core::protocol::logfiles::{DiskSize, LogfilesRequest};
use node_core::protocol::NodeKind;
use node_core::server::channel_requests as channels;
use node_core::server::outcome::{finish, unsupported};
use node_core::server::{ChannelStore, Handled, Reply, Request};

pub(crate) fn dispatch(
    node: &mut LogfilesNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<LogfilesNode> {
    let Some(kind) = LogfilesRequest::from_code(request.code) else {
        return unsupported(reply, request.code, NodeKind::Logfiles);
    };
    let outcome = match kind {
        LogfilesRequest::Put => put::handle(node, request, reply),
        LogfilesRequest::PutBatch => put_batch::handle(node, request, reply),
        LogfilesRequest::GetRange => get_range::handle(node, request, reply),
        LogfilesRequest::GetAll => get_all::handle(node, request, reply),
        LogfilesRequest::GetChannels => channels::get_channels(&node.engine, request, reply),
        LogfilesRequest::GetChannelSize => channels::get_channel_size(&node.engine, request, reply),
        LogfilesRequest::GetSize => channels::get_size(&node.engine, request, reply),
        LogfilesRequest::RemoveChannel => {
            channels::remove_channel(&mut node.engine, request, reply)
        }
    };
    finish(reply, outcome)
}

/// The logfiles channels for the shared channel requests: sizes are bucket files and their
/// bytes on disk. A removed channel's running reads end early with Ok (they see its generation
/// change).
impl ChannelStore for Engine {
    type Size = DiskSize;
    type Error = EngineError;

    fn channel_names(&self) -> impl ExactSizeIterator<Item = &str> {
        Engine::channel_names(self)
    }

    fn channel_size(&self, channel: &str) -> DiskSize {
        Engine::channel_size(self, channel)
    }

    fn total_size(&self) -> DiskSize {
        self.size()
    }

    fn remove_channel(&mut self, channel: &str) -> Result<Option<String>, EngineError> {
        Ok(Engine::remove_channel(self, channel)?.then(String::new))
    }
}
