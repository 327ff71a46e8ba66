//! GetAll: stream every record of a channel (or only keys, or only records whose value contains
//! a filter) as LZ4 batches, under the client's credit.
//!
//! Order and resumption: records go out shard by shard, and in key order within a shard (see
//! `engine::channel`). That order is total and does not depend on the map's state, so a client
//! that lost its connection asks again with `resume_after` = the last key it received and gets
//! every remaining record exactly once. Records written during the walk may or may not be seen;
//! records untouched during the walk are seen exactly once.
//!
//! Scope: all records, only those whose key is inside the node's range, or only those outside
//! it (records a redistribution has not moved yet); the range is the one at the moment each
//! record is looked at. Clients use the two halves to read a cluster during a redistribution
//! without getting a record twice (docs/protocol.md §6.3).
//!
//! Memory: between its turns a GetAll holds only its request (channel, filter) and a window of
//! at most `KEY_WINDOW` keys of the shard it walks ([`KeyWalk`]); the batch it fills is the node's shared
//! one, sent before its turn ends (so a turn that ran out of work budget sends what it found).
//! Many streams that wait for credit or for their client to read cost little each, and what
//! they hold is counted against the stream memory budgets (docs/security.md).

use super::walk::KeyWalk;
use crate::service::DhtNode;
use node_core::protocol::batch::{BatchBuilder, BatchEncoding, PushOutcome};
use node_core::protocol::dht::{check_channel_name, GetAllRequest, GetAllScope, ITEM_RECORD_BATCH};
use node_core::server::{Handled, Outcome, Reply, Request, StreamOut, StreamStep, StreamTask};

/// Records looked at per step, so a filter that matches nothing cannot hold the loop.
const RECORDS_PER_STEP: usize = 8192;
/// Value bytes searched by the filter per step: large values must not hold the loop either.
const FILTER_BYTES_PER_STEP: usize = 1024 * 1024;

pub(super) fn handle(
    _node: &mut DhtNode,
    request: &Request<'_>,
    _reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let get_all = GetAllRequest::decode(request.body)?;
    check_channel_name(get_all.channel)?;
    Ok(Handled::Stream(Box::new(GetAll {
        channel: get_all.channel.to_string(),
        keys_only: get_all.keys_only,
        scope: get_all.scope,
        filter_len: get_all.filter.len(),
        filter: (!get_all.filter.is_empty())
            .then(|| memchr::memmem::Finder::new(get_all.filter).into_owned()),
        walk: KeyWalk::new(get_all.resume_after),
    })))
}

struct GetAll {
    channel: String,
    keys_only: bool,
    scope: GetAllScope,
    filter: Option<memchr::memmem::Finder<'static>>,
    filter_len: usize,
    /// Where the walk is; a resumed walk starts after the client's `resume_after`.
    walk: KeyWalk,
}

/// Whether a value passes a GetAll filter (none: every value; else it contains the filter).
/// A prebuilt two-way searcher: linear in the value's length whatever the filter (a naive
/// search is value × filter, which a client could use to stall the node).
fn matches(filter: Option<&memchr::memmem::Finder<'_>>, value: &[u8]) -> bool {
    filter.is_none_or(|finder| finder.find(value).is_some())
}

/// What a step of the walk did with the batch.
enum Walked {
    /// The batch is full, or the work budget is used: send what is collected.
    Send,
    /// The walk is over: send what is collected, then end.
    End,
}

impl GetAll {
    /// Walks on, adding records to `batch`, until it is full, the step's budget is used or the
    /// channel ends.
    fn walk(&mut self, node: &mut DhtNode, batch: &mut BatchBuilder) -> Walked {
        let mut searched_bytes = 0usize;
        for _ in 0..RECORDS_PER_STEP {
            if searched_bytes >= FILTER_BYTES_PER_STEP {
                break;
            }
            if !self.walk.advance(node, &self.channel) {
                return Walked::End;
            }
            let key = self.walk.current();
            let wanted = match self.scope {
                GetAllScope::All => true,
                GetAllScope::InsideRange => node.engine.is_responsible_for(key),
                GetAllScope::OutsideRange => !node.engine.is_responsible_for(key),
            };
            if !wanted {
                self.walk.step();
                continue;
            }
            let Some(channel) = node.engine.channel(&self.channel) else {
                // Removed during the walk: end it, after what was collected.
                return Walked::End;
            };
            let (keys_only, filter) = (self.keys_only, self.filter.as_ref());
            let searched = &mut searched_bytes;
            // Looked up now (the window was taken earlier): gone means removed since.
            let outcome = channel.with(key, |value| {
                let value = value?;
                if filter.is_some() {
                    *searched += value.len();
                }
                if !matches(filter, value) {
                    return None;
                }
                Some(batch.push(key, if keys_only { &[][..] } else { value }))
            });
            match outcome {
                None | Some(PushOutcome::Added) => self.walk.step(),
                Some(PushOutcome::Full) => return Walked::Send,
                Some(PushOutcome::TooBig) => {
                    tracing::warn!(
                        "GetAll {}: record 0x{key:016x} too large for a batch, skipped",
                        self.channel
                    );
                    self.walk.step();
                }
            }
        }
        Walked::Send
    }
}

impl StreamTask<DhtNode> for GetAll {
    fn resume(&mut self, node: &mut DhtNode, out: &mut StreamOut<'_>) -> StreamStep {
        let mut batch = node.stream_batch.take();
        let ended = matches!(self.walk(node, &mut batch), Walked::End);
        let step = out.send_batch_or_end(ITEM_RECORD_BATCH, BatchEncoding::Lz4, &mut batch, ended);
        node.stream_batch.put_back(batch);
        step
    }

    fn held_bytes(&self) -> usize {
        self.channel.capacity() + 2 * self.filter_len + self.walk.held_bytes()
    }
}
