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

use super::bad_request;
use crate::engine::channel::shard_of;
use crate::engine::SHARD_COUNT;
use crate::service::DhtNode;
use node_core::protocol::batch::{BatchBuilder, PushOutcome, DEFAULT_BATCH_TARGET_BYTES};
use node_core::protocol::dht::{valid_channel_name, GetAllRequest, GetAllScope, ITEM_RECORD_BATCH};
use node_core::protocol::Status;
use node_core::server::{Handled, Reply, Request, StreamOut, StreamStep, StreamTask};

/// Records looked at per step, so a filter that matches nothing cannot hold the loop.
const RECORDS_PER_STEP: usize = 8192;
/// Value bytes searched by the filter per step: large values must not hold the loop either.
const FILTER_BYTES_PER_STEP: usize = 1024 * 1024;

pub(super) fn handle(
    _node: &mut DhtNode,
    request: &Request<'_>,
    reply: &mut Reply<'_>,
) -> Handled<DhtNode> {
    let get_all = match GetAllRequest::decode(request.body) {
        Ok(get_all) => get_all,
        Err(error) => return bad_request(reply, error),
    };
    if !valid_channel_name(get_all.channel) {
        reply.error(
            Status::BadChannelName,
            format!("channel name {:?} is not valid", get_all.channel),
        );
        return Handled::Replied;
    }
    let (shard, resume_after) = match get_all.resume_after {
        Some(key) => (shard_of(key), Some(key)),
        None => (0, None),
    };
    Handled::Stream(Box::new(GetAll {
        channel: get_all.channel.to_string(),
        keys_only: get_all.keys_only,
        scope: get_all.scope,
        filter: (!get_all.filter.is_empty())
            .then(|| memchr::memmem::Finder::new(get_all.filter).into_owned()),
        shard,
        shard_keys: Vec::new(),
        position: 0,
        loaded_shard: None,
        resume_after,
        batch: BatchBuilder::new(DEFAULT_BATCH_TARGET_BYTES),
    }))
}

struct GetAll {
    channel: String,
    keys_only: bool,
    scope: GetAllScope,
    filter: Option<memchr::memmem::Finder<'static>>,
    /// The shard being walked.
    shard: usize,
    /// Its keys, sorted, as they were when the walk reached it.
    shard_keys: Vec<u64>,
    position: usize,
    loaded_shard: Option<usize>,
    /// Skip keys up to and including this one in the first shard (a resumed walk).
    resume_after: Option<u64>,
    batch: BatchBuilder,
}

/// Whether a value passes a GetAll filter (none: every value; else it contains the filter).
/// A prebuilt two-way searcher: linear in the value's length whatever the filter (a naive
/// search is value × filter, which a client could use to stall the node).
fn matches(filter: Option<&memchr::memmem::Finder<'_>>, value: &[u8]) -> bool {
    filter.is_none_or(|finder| finder.find(value).is_some())
}

impl GetAll {
    fn send_batch(&mut self, out: &mut StreamOut<'_>) {
        let batch = &mut self.batch;
        out.item_with(ITEM_RECORD_BATCH, |body| batch.finish_into(body));
    }

    /// Loads the next shard's keys when the current one is used up. Returns false at the end.
    fn advance(&mut self, node: &DhtNode) -> bool {
        while self.loaded_shard != Some(self.shard) || self.position >= self.shard_keys.len() {
            if self.loaded_shard == Some(self.shard) {
                self.shard += 1;
            }
            if self.shard >= SHARD_COUNT {
                return false;
            }
            let Some(channel) = node.engine.channel(&self.channel) else {
                return false;
            };
            channel.sorted_shard_keys(self.shard, &mut self.shard_keys);
            self.position = match self.resume_after.take() {
                Some(after) => self.shard_keys.partition_point(|key| *key <= after),
                None => 0,
            };
            self.loaded_shard = Some(self.shard);
        }
        true
    }
}

impl StreamTask<DhtNode> for GetAll {
    fn resume(&mut self, node: &mut DhtNode, out: &mut StreamOut<'_>) -> StreamStep {
        let mut searched_bytes = 0usize;
        for _ in 0..RECORDS_PER_STEP {
            if searched_bytes >= FILTER_BYTES_PER_STEP {
                break;
            }
            if !self.advance(node) {
                if !self.batch.is_empty() {
                    self.send_batch(out);
                    return StreamStep::Continue;
                }
                out.finish(Status::Ok, &[]);
                return StreamStep::Done;
            }
            let key = self.shard_keys[self.position];
            let wanted = match self.scope {
                GetAllScope::All => true,
                GetAllScope::InsideRange => node.engine.is_responsible_for(key),
                GetAllScope::OutsideRange => !node.engine.is_responsible_for(key),
            };
            if !wanted {
                self.position += 1;
                continue;
            }
            let Some(channel) = node.engine.channel(&self.channel) else {
                // Removed during the walk: end it, after what was collected.
                self.shard = SHARD_COUNT;
                continue;
            };
            let keys_only = self.keys_only;
            let filter = self.filter.as_ref();
            let searched = &mut searched_bytes;
            let batch = &mut self.batch;
            // Looked up now (the shard's keys were taken earlier): gone means removed since.
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
                None | Some(PushOutcome::Added) => self.position += 1,
                Some(PushOutcome::Full) => {
                    self.send_batch(out);
                    return StreamStep::Continue;
                }
                Some(PushOutcome::TooBig) => {
                    tracing::warn!(
                        "GetAll {}: record 0x{key:016x} too large for a batch, skipped",
                        self.channel
                    );
                    self.position += 1;
                }
            }
        }
        // Budget used: come back after other work, without sending anything yet.
        StreamStep::Continue
    }
}
