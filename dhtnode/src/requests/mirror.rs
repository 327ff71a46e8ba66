//! Mirror: a channel's changes with their versions, after an optional refresh of everything the
//! channel holds (records and tombstones), repeated every `periodic_refresh_s` if asked
//! (docs/protocol.md §6.12; the reference's Mirror, `../shared/reference/dht.md` §3.3.8). What a
//! replica catches up with.
//!
//! Order: the changes reach the stream through the engine's listener queue (the one a Listen
//! has, with its bounds and its loss marker), and a turn always sends the queued changes before
//! it builds a refresh batch, which holds the records as they are at that moment. So the items
//! go out in the order of the node's changes, and a client applying them in order ends with
//! what the node holds.
//!
//! Memory: between turns the stream holds its channel name, the refresh's key window (a
//! [`KeyWalk`]) and where its walk over the tombstones is; the batch it fills is the node's
//! shared one, sent within the turn.

use super::walk::{KeyWalk, KEY_WINDOW};
use crate::engine::{ListenEvent, ListenerId};
use crate::service::DhtNode;
use node_core::protocol::batch::{BatchBuilder, PushOutcome};
use node_core::protocol::dht::{
    check_channel_name, MirrorItem, MirrorRequest, RefreshCounts, RefreshRecord,
    ITEM_MIRROR_CHANGED, ITEM_MIRROR_REFRESH_BATCH,
};
use node_core::protocol::Status;
use node_core::server::{Handled, Outcome, Reply, Request, StreamOut, StreamStep, StreamTask};
use std::time::{Duration, Instant};

/// Records a refresh looks at per turn, so that a channel of large records not fitting the
/// batch cannot hold the loop.
const RECORDS_PER_STEP: usize = 8192;
/// Tombstones a refresh copies out per turn.
const TOMBSTONES_PER_STEP: usize = 1024;

pub(super) fn handle(
    node: &mut DhtNode,
    request: &Request<'_>,
    _reply: &mut Reply<'_>,
) -> Outcome<DhtNode> {
    let mirror = MirrorRequest::decode(request.body)?;
    check_channel_name(mirror.channel)?;
    let id = node.engine.subscribe(mirror.channel)?;
    let period = (mirror.periodic_refresh_s > 0)
        .then(|| Duration::from_secs(u64::from(mirror.periodic_refresh_s)));
    let now = Instant::now();
    Ok(Handled::Stream(Box::new(Mirror {
        channel: mirror.channel.to_string(),
        id,
        registered: false,
        period,
        refresh: mirror.initial_refresh.then(|| Refresh::new(now)),
        next_refresh: if mirror.initial_refresh {
            None
        } else {
            period.map(|period| now + period)
        },
    })))
}

struct Mirror {
    channel: String,
    id: ListenerId,
    /// Whether the node knows this stream's handle (learnt on the first resume).
    registered: bool,
    period: Option<Duration>,
    /// The refresh running, if any.
    refresh: Option<Refresh>,
    /// When the next periodic refresh starts (none running).
    next_refresh: Option<Instant>,
}

/// A refresh under way: its walk over the records, then over the tombstones.
struct Refresh {
    started: Instant,
    announced: bool,
    walk: KeyWalk,
    records_done: bool,
    /// Tombstones up to this key are sent (`None`: none yet).
    tombstones_after: Option<u64>,
    sent: RefreshCounts,
}

/// What a turn of the refresh put together.
enum Filled {
    /// A batch to send (full, or the turn's budget is used); may be empty.
    Batch,
    /// It wrote an item itself (a record too large for a batch).
    Item,
    /// The walk is over: send what is in the batch, then RefreshDone.
    End,
}

impl Refresh {
    fn new(started: Instant) -> Refresh {
        Refresh {
            started,
            announced: false,
            walk: KeyWalk::new(None),
            records_done: false,
            tombstones_after: None,
            sent: RefreshCounts::default(),
        }
    }

    /// Adds records (then tombstones) to `batch` until it is full, the turn's budget is used or
    /// the walk ends.
    fn fill(
        &mut self,
        node: &mut DhtNode,
        channel: &str,
        batch: &mut BatchBuilder,
        out: &mut StreamOut<'_>,
    ) -> Filled {
        if !self.records_done {
            match self.fill_records(node, channel, batch, out) {
                Some(filled) => return filled,
                None => self.records_done = true,
            }
        }
        self.fill_tombstones(node, channel, batch)
    }

    /// The records' part: `None` once every record is walked.
    fn fill_records(
        &mut self,
        node: &mut DhtNode,
        channel: &str,
        batch: &mut BatchBuilder,
        out: &mut StreamOut<'_>,
    ) -> Option<Filled> {
        for _ in 0..RECORDS_PER_STEP {
            if !self.walk.advance(node, channel) {
                return None;
            }
            let key = self.walk.current();
            let data = node.engine.channel(channel)?;
            // Looked up now (the window was taken earlier): gone means removed since, which
            // a Removed item told or will tell.
            let pushed = data.with_versioned(key, |record| {
                let (version, value) = record?;
                let outcome = RefreshRecord::Record { version, value }.push_to(batch, key);
                if outcome == PushOutcome::TooBig && batch.is_empty() {
                    let item = MirrorItem::Changed {
                        key,
                        version,
                        value,
                    };
                    out.item_with(ITEM_MIRROR_CHANGED, |body| item.encode_body(body));
                }
                Some(outcome)
            });
            match pushed {
                None => self.walk.step(),
                Some(PushOutcome::Added) => {
                    self.walk.step();
                    self.sent.records += 1;
                }
                Some(PushOutcome::Full) => return Some(Filled::Batch),
                Some(PushOutcome::TooBig) if !batch.is_empty() => return Some(Filled::Batch),
                Some(PushOutcome::TooBig) => {
                    self.walk.step();
                    self.sent.records += 1;
                    return Some(Filled::Item);
                }
            }
        }
        Some(Filled::Batch)
    }

    /// The tombstones' part, after the records.
    fn fill_tombstones(
        &mut self,
        node: &mut DhtNode,
        channel: &str,
        batch: &mut BatchBuilder,
    ) -> Filled {
        let Some(data) = node.engine.channel(channel) else {
            return Filled::End;
        };
        let mut window = Vec::with_capacity(TOMBSTONES_PER_STEP);
        let last =
            data.tombstones()
                .window(self.tombstones_after, TOMBSTONES_PER_STEP, &mut window);
        for (key, tombstone) in window {
            let record = RefreshRecord::Tombstone {
                version: tombstone.version,
            };
            match record.push_to(batch, key) {
                PushOutcome::Added => {
                    self.tombstones_after = Some(key);
                    self.sent.tombstones += 1;
                }
                PushOutcome::Full | PushOutcome::TooBig => return Filled::Batch,
            }
        }
        if last {
            Filled::End
        } else {
            Filled::Batch
        }
    }
}

impl Mirror {
    fn end(&mut self, node: &mut DhtNode) {
        node.engine.unsubscribe(&self.channel, self.id);
        node.listen_streams.remove(&self.id);
        node.mirror_timers.remove(&self.id);
    }

    /// Sends one change (or ends the stream: the channel was removed).
    fn send_event(
        &mut self,
        node: &mut DhtNode,
        out: &mut StreamOut<'_>,
        event: ListenEvent,
    ) -> StreamStep {
        let item = match &event {
            ListenEvent::Changed {
                key,
                value,
                version,
            } => MirrorItem::Changed {
                key: *key,
                version: *version,
                value,
            },
            ListenEvent::Removed { key, version, .. } => MirrorItem::Removed {
                key: *key,
                version: *version,
            },
            ListenEvent::Lost(lost) => MirrorItem::Overflow { lost: *lost },
            ListenEvent::ChannelRemoved => {
                self.end(node);
                out.finish(Status::Ok, &[]);
                return StreamStep::Done;
            }
        };
        out.item_with(item.code(), |body| item.encode_body(body));
        StreamStep::Continue
    }

    /// One turn of the running refresh: RefreshStarted, a batch, or RefreshDone.
    fn refresh_step(&mut self, node: &mut DhtNode, out: &mut StreamOut<'_>) -> StreamStep {
        let Some(refresh) = self.refresh.as_mut() else {
            return StreamStep::Wait;
        };
        if !refresh.announced {
            refresh.announced = true;
            let counts = RefreshCounts {
                records: node.engine.channel_size(&self.channel).records,
                tombstones: node
                    .engine
                    .channel(&self.channel)
                    .map_or(0, |data| data.tombstones().count()),
            };
            let item = MirrorItem::RefreshStarted(counts);
            out.item_with(item.code(), |body| item.encode_body(body));
            return StreamStep::Continue;
        }
        let mut batch = node.stream_batch.take();
        let filled = refresh.fill(node, &self.channel, &mut batch, out);
        if !batch.is_empty() {
            out.item_with(ITEM_MIRROR_REFRESH_BATCH, |body| batch.finish_into(body));
        } else if matches!(filled, Filled::End) {
            let item = MirrorItem::RefreshDone(refresh.sent);
            out.item_with(item.code(), |body| item.encode_body(body));
            let started = refresh.started;
            self.refresh = None;
            self.schedule_after(started, node, out);
        }
        node.stream_batch.put_back(batch);
        StreamStep::Continue
    }

    /// After a refresh that began at `started`: the next one a period after it, skipping the
    /// periods it overran (the reference ignores a timer that fires during a refresh).
    fn schedule_after(&mut self, started: Instant, node: &mut DhtNode, out: &StreamOut<'_>) {
        let Some(period) = self.period else {
            return;
        };
        let now = Instant::now();
        let mut next = started + period;
        while next <= now {
            next += period;
        }
        self.next_refresh = Some(next);
        node.mirror_timers.insert(self.id, (next, out.handle()));
    }

    /// Starts the periodic refresh when it is due.
    fn start_due_refresh(&mut self, node: &mut DhtNode, out: &StreamOut<'_>) {
        let Some(due) = self.next_refresh else {
            return;
        };
        let now = Instant::now();
        if now < due {
            node.mirror_timers.insert(self.id, (due, out.handle()));
            return;
        }
        self.next_refresh = None;
        node.mirror_timers.remove(&self.id);
        self.refresh = Some(Refresh::new(now));
    }
}

impl StreamTask<DhtNode> for Mirror {
    fn resume(&mut self, node: &mut DhtNode, out: &mut StreamOut<'_>) -> StreamStep {
        if !self.registered {
            node.listen_streams.insert(self.id, out.handle());
            self.registered = true;
        }
        // Every change made so far goes out before the next refresh batch is built.
        if let Some(event) = node.engine.next_listen_event(self.id) {
            return self.send_event(node, out, event);
        }
        if self.refresh.is_none() {
            self.start_due_refresh(node, out);
        }
        self.refresh_step(node, out)
    }

    fn cancel(&mut self, node: &mut DhtNode) {
        self.end(node);
    }

    /// The channel name and the refresh's key window (counted from the start: a refresh may
    /// begin at any turn). The changes queued for it are bounded by the engine's listener
    /// limits, as a Listen's.
    fn held_bytes(&self) -> usize {
        self.channel.capacity() + KEY_WINDOW * std::mem::size_of::<u64>()
    }
}
