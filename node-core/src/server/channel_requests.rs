//! The requests every node kind answers about its channels, written once: GetChannels,
//! GetChannelSize, GetSize and RemoveChannel (docs/protocol.md §6-§8). A node says what its
//! channels are through [`ChannelStore`] (its sizes differ by kind: records, bucket files, ring
//! bytes); decoding, the channel-name check, the replies and the removal's log line are here.

use super::outcome::{ErrorReply, Outcome};
use super::service::{Handled, Reply, Request};
use crate::protocol::channels::{
    check_channel_name, decode_channel, encode_channel_names, SizeReply,
};
use crate::protocol::status::StatusError;
use crate::protocol::wire::decode_empty;
use crate::protocol::Status;

/// What the shared channel requests need of a node.
pub trait ChannelStore {
    /// The body of a GetChannelSize or GetSize reply.
    type Size: SizeReply;
    /// What a removal can fail with.
    type Error: StatusError;

    /// The channel names, sorted.
    fn channel_names(&self) -> impl ExactSizeIterator<Item = &str>;

    /// The size of `channel` (a valid name): zeros for a missing one, which is not created.
    fn channel_size(&self, channel: &str) -> Self::Size;

    /// The size of every channel together.
    fn total_size(&self) -> Self::Size;

    /// Removes `channel` (a valid name) with its records and ends what depends on it (its
    /// streams). `Ok(None)`: there was no such channel, which is fine; `Ok(Some(detail))`: it
    /// was removed, and `detail` (may be empty) is added to the log line.
    fn remove_channel(&mut self, channel: &str) -> Result<Option<String>, Self::Error>;
}

/// GetChannels: the names of the node's channels, sorted.
pub fn get_channels<N: ChannelStore, S: ?Sized>(
    store: &N,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<S> {
    decode_empty(request.body)?;
    reply.send_with(Status::Ok, |out| {
        encode_channel_names(out, store.channel_names())
    });
    Ok(Handled::Replied)
}

/// GetChannelSize: one channel's size (zeros for a missing channel).
pub fn get_channel_size<N: ChannelStore, S: ?Sized>(
    store: &N,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<S> {
    let channel = decode_channel(request.body)?;
    check_channel_name(channel)?;
    let size = store.channel_size(channel);
    reply.send_with(Status::Ok, |out| size.encode(out));
    Ok(Handled::Replied)
}

/// GetSize: the size of all channels together.
pub fn get_size<N: ChannelStore, S: ?Sized>(
    store: &N,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<S> {
    decode_empty(request.body)?;
    let size = store.total_size();
    reply.send_with(Status::Ok, |out| size.encode(out));
    Ok(Handled::Replied)
}

/// RemoveChannel (admins only when authentication is on): drops a channel and everything in
/// it; a missing channel is fine (Ok). Logged with who asked.
pub fn remove_channel<N: ChannelStore, S: ?Sized>(
    store: &mut N,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Outcome<S> {
    remove_channel_unanswered(store, request)?;
    reply.ok(&[]);
    Ok(Handled::Replied)
}

/// [`remove_channel`] without its Ok reply, for a node that answers a removal later (the dht
/// under `durability = "always"`: once its change-log entry is fsynced).
pub fn remove_channel_unanswered<N: ChannelStore>(
    store: &mut N,
    request: &Request<'_>,
) -> Result<(), ErrorReply> {
    let channel = decode_channel(request.body)?;
    // Only admins get here: the core refuses the others before the body is decoded
    // (Service::admin_only).
    debug_assert!(request.client.admin);
    check_channel_name(channel)?;
    if let Some(detail) = store.remove_channel(channel)? {
        let detail = if detail.is_empty() {
            detail
        } else {
            format!(" ({detail})")
        };
        tracing::info!(
            "channel {channel} removed{detail} by {:?} from {}",
            request.client.name,
            request.client.peer
        );
    }
    Ok(())
}
