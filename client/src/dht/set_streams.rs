//! [`SetStreams`]: one stream of a request (Listen, Mirror) per replica set, on the set's first
//! live member, failing over: what [`super::Listener`] and [`super::ChannelMirror`] share.
//!
//! The members of a set hold the same changes, so a set is streamed once (a node without
//! replicas is a set of one). When a set's stream fails (its connection dropped, the node shut
//! down, the stream ended with an error), the owner hands the error to its caller once and
//! calls [`SetStreams::fail`]: the stream is opened again at once on another live member of
//! the set, passing over the one that failed, or, when no other member is live, after
//! [`REOPEN_DELAY`] (a set whose every member is down waits quietly, as a node does, and is
//! opened again as soon as one is back). Changes made between the failure and the new stream
//! are not delivered by the new stream's changes (a Mirror with a refresh sends them in its
//! refresh); the error is the caller's notice of that.

use crate::client::Client;
use crate::error::ClientError;
use crate::reply::StreamEvent;
use crate::stream_set::{StreamSet, StreamTag};
use node_core::protocol::RequestCode;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a failed set's stream waits before it is opened again when no other member is
/// live.
pub(crate) const REOPEN_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    Running(StreamTag),
    /// The stream ended with Ok (the channel was removed on that node).
    Ended,
    /// The stream failed (or could not be opened); open it again at this time.
    Failed {
        reopen_at: Instant,
    },
}

/// One stream per replica set (a slot), in one [`StreamSet`].
pub(crate) struct SetStreams {
    pub(crate) set: StreamSet,
    /// The request every stream is: its code and body.
    code: RequestCode,
    body: Vec<u8>,
    /// Per slot: the set's members (client indices, in node order).
    members: Vec<Vec<usize>>,
    /// Per slot: the member whose stream failed last, passed over while another is live.
    avoid: Vec<Option<usize>>,
    /// Per slot: the member streamed (or last streamed), and its address.
    indices: Vec<usize>,
    addrs: Vec<SocketAddr>,
    states: Vec<SlotState>,
    /// Per slot: why it is not streamed now (while failed).
    why: Vec<Option<ClientError>>,
}

impl SetStreams {
    /// Opens `code` with `body` on each slot of `slots` (the members of one replica set each,
    /// in node order); with `partial`, a slot none of whose members is up is left to be opened
    /// once one is back instead of failing the whole.
    pub(crate) fn open(
        set: StreamSet,
        client: &Client,
        code: RequestCode,
        body: Vec<u8>,
        partial: bool,
        slots: Vec<Vec<usize>>,
    ) -> Result<SetStreams, ClientError> {
        let slots: Vec<Vec<usize>> = slots.into_iter().filter(|m| !m.is_empty()).collect();
        let indices: Vec<usize> = slots.iter().map(|members| members[0]).collect();
        let addrs: Vec<SocketAddr> = indices
            .iter()
            .map(|&node| {
                client
                    .node_addr(node)
                    .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
            })
            .collect();
        let count = slots.len();
        let mut streams = SetStreams {
            set,
            code,
            body,
            avoid: vec![None; count],
            members: slots,
            indices,
            addrs,
            states: vec![SlotState::Ended; count],
            why: vec![None; count],
        };
        for slot in 0..count {
            match streams.start(slot) {
                Ok(tag) => streams.states[slot] = SlotState::Running(tag),
                Err(error) if partial && error.is_node_down() => streams.fail(slot, error),
                Err(error) => return Err(error),
            }
        }
        Ok(streams)
    }

    /// The address of the member slot `slot` streams (or last streamed).
    pub(crate) fn addr(&self, slot: usize) -> SocketAddr {
        self.addrs[slot]
    }

    /// The members streamed, one per set.
    pub(crate) fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The sets not streamed now (their stream failed or could not be opened, and is due to
    /// be opened again): the member last streamed, with the error that stopped it.
    pub(crate) fn missing(&self) -> Vec<(SocketAddr, ClientError)> {
        self.states
            .iter()
            .zip(&self.why)
            .zip(&self.addrs)
            .filter_map(|((state, why), addr)| match (state, why) {
                (SlotState::Failed { .. }, Some(error)) => Some((*addr, error.clone())),
                _ => None,
            })
            .collect()
    }

    /// The slot whose running stream is `tag`.
    pub(crate) fn slot_of(&self, tag: StreamTag) -> Option<usize> {
        self.states
            .iter()
            .position(|state| *state == SlotState::Running(tag))
    }

    /// Slot `slot`'s stream ended with Ok; returns whether every slot's has.
    pub(crate) fn end(&mut self, slot: usize) -> bool {
        self.states[slot] = SlotState::Ended;
        self.states.iter().all(|state| *state == SlotState::Ended)
    }

    /// Slot `slot`'s stream failed (one still open on the node, as after an item that does
    /// not decode, is closed by the caller first): it is opened again at once on another live
    /// member of its set, or after [`REOPEN_DELAY`].
    pub(crate) fn fail(&mut self, slot: usize, error: ClientError) {
        let failed = self.indices[slot];
        self.avoid[slot] = Some(failed);
        let other_live = self.members[slot]
            .iter()
            .any(|&member| member != failed && self.set.check_node(member).is_ok());
        let delay = if other_live {
            Duration::ZERO
        } else {
            REOPEN_DELAY
        };
        self.states[slot] = SlotState::Failed {
            reopen_at: Instant::now() + delay,
        };
        self.why[slot] = Some(error);
    }

    /// Slot `slot`'s stream is still open on the node but of no use (an item that does not
    /// decode): stops it, then [`SetStreams::fail`].
    pub(crate) fn abandon(&mut self, slot: usize, error: ClientError) {
        if let SlotState::Running(tag) = self.states[slot] {
            self.set.close(tag);
        }
        self.fail(slot, error);
    }

    /// When the next failed slot's stream is due to be opened again.
    pub(crate) fn next_reopen(&self) -> Option<Instant> {
        self.states
            .iter()
            .filter_map(|state| match state {
                SlotState::Failed { reopen_at } => Some(*reopen_at),
                _ => None,
            })
            .min()
    }

    /// Opens again every failed slot's stream that is due; the first failure to open is
    /// returned (that slot waits another delay), except that of a node known to be down,
    /// which waits quietly for it to come back.
    pub(crate) fn reopen_due(&mut self) -> Result<(), ClientError> {
        let now = Instant::now();
        for slot in 0..self.states.len() {
            if matches!(self.states[slot], SlotState::Failed { reopen_at } if reopen_at <= now) {
                match self.start(slot) {
                    Ok(tag) => {
                        self.states[slot] = SlotState::Running(tag);
                        self.why[slot] = None;
                    }
                    Err(error @ ClientError::NodeDown { .. }) => self.fail(slot, error),
                    Err(error) => {
                        self.fail(slot, error.clone());
                        return Err(error);
                    }
                }
            }
        }
        Ok(())
    }

    /// The next event of a running stream, with its slot, waiting until `deadline` (and
    /// reopening due streams meanwhile, on schedule even while the others are quiet); `None`
    /// at the deadline. An `Err` is a reopen that failed ([`SetStreams::reopen_due`]).
    #[allow(clippy::type_complexity)]
    pub(crate) fn next_event(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<(usize, Result<StreamEvent, ClientError>)>, ClientError> {
        loop {
            self.reopen_due()?;
            let now = Instant::now();
            let wait_until = self.next_reopen().map_or(deadline, |at| at.min(deadline));
            let wait = wait_until.saturating_duration_since(now);
            if self.set.is_empty() {
                // Only failed (or ended) slots are left.
                std::thread::sleep(wait);
            } else if let Some((tag, event)) = self.set.next_timeout(wait) {
                match self.slot_of(tag) {
                    Some(slot) => return Ok(Some((slot, event))),
                    None => continue, // a stream closed meanwhile
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Opens the stream of `slot` on the first live member of its set, passing over the one
    /// that failed last while another is live.
    fn start(&mut self, slot: usize) -> Result<StreamTag, ClientError> {
        let members = &self.members[slot];
        let live = |member: &&usize| self.set.check_node(**member).is_ok();
        let member = members
            .iter()
            .filter(live)
            .find(|member| Some(**member) != self.avoid[slot])
            .or_else(|| members.iter().find(live))
            .or_else(|| members.first())
            .copied()
            .unwrap_or(self.indices[slot]);
        if member != self.indices[slot] {
            if let Some(addr) = self.set.node_addr(member) {
                self.indices[slot] = member;
                self.addrs[slot] = addr;
            }
        }
        self.set.open(self.indices[slot], self.code, &self.body)
    }
}

impl std::fmt::Debug for SetStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetStreams")
            .field("addrs", &self.addrs)
            .field("states", &self.states)
            .finish_non_exhaustive()
    }
}
