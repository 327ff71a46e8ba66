//! The catch-up worker thread (see [`super`] for who does what): chooses the sources among the
//! peers, mirrors every channel of each with a refresh, and hands the decoded items to the loop.
//!
//! Choosing sources, each attempt: every peer is asked GetStats (`catch_up_state`). The first
//! peer that is ready is the only source. When none is ready but every peer answered (the whole
//! set restarted: each member waits for the others), every peer is a source, each sending
//! what it has, and the node merges them by version. Otherwise (a peer is down and none is
//! ready) the attempt fails: a WARN names the peers, and the worker tries again after a
//! backoff, for as long as it takes or until an operator forces the node ready.
//!
//! One source: GetChannels, then a Mirror with refresh per channel, all open at once on one
//! connection; items are decoded as they come (changes and refresh batches, in the source's
//! order) and sent to the loop. Once every mirror's RefreshDone has come, GetChannels again:
//! channels created on the source meanwhile get their mirror and refresh too, until a listing
//! shows nothing new. A mirror that reports Overflow lost changes: it is opened again with a
//! new refresh. A source that fails (its connection, a stream error) fails the attempt.

use super::{Message, Op, OpKind};
use client::dht::{decode_mirror_item, MirrorEvent};
use client::{Client, ClientError, StreamEvent, StreamSet, StreamTag};
use node_core::protocol::dht::{self as wire, MirrorRequest};
use node_core::protocol::Status;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Listings of a source's channels before the worker gives up on it (each finds channels
/// created during the previous round's refreshes; a source creating channels that fast is
/// tried again later).
const MAX_LISTINGS: u32 = 16;
/// Failed attempts each logged at WARN; after them, one in [`WARN_EVERY`].
const WARN_FIRST: u32 = 5;
const WARN_EVERY: u32 = 30;
/// How long the worker waits for a mirror's next item before it checks its cancel flag.
const POLL: Duration = Duration::from_millis(50);

/// Timings of the worker (defaults suit production; tests shorten them).
#[derive(Debug, Clone, Copy)]
pub struct Tuning {
    /// Pause after the first failed attempt; doubled after each further one, up to
    /// `retry_max`.
    pub retry_first: Duration,
    pub retry_max: Duration,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// A mirror silent this long during its refresh fails the attempt.
    pub idle_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Tuning {
        Tuning {
            retry_first: Duration::from_millis(200),
            retry_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
        }
    }
}

/// Everything the worker needs, handed over by the loop.
pub(crate) struct Context {
    pub config: super::CatchUpConfig,
    pub to_loop: SyncSender<Message>,
    pub waker: Option<Arc<mio::Waker>>,
    pub cancel: Arc<AtomicBool>,
}

/// Why an attempt ended without catching up.
#[derive(Debug)]
enum Failure {
    /// The node is shutting down, or an operator forced it ready.
    Cancelled,
    /// A source failed, or no source could be chosen: try again later.
    Retry(String),
}

impl From<ClientError> for Failure {
    fn from(error: ClientError) -> Failure {
        Failure::Retry(error.to_string())
    }
}

/// The thread's body: attempts until caught up or cancelled.
pub(crate) fn run(context: Context) {
    let mut attempt = 0u32;
    loop {
        match catch_up(&context) {
            Ok(()) => return,
            Err(Failure::Cancelled) => {
                tracing::debug!("catch-up stopped");
                return;
            }
            Err(Failure::Retry(error)) => {
                let pause = backoff(&context.config.tuning, attempt);
                let message = format!(
                    "catch-up attempt {} failed, next in {:.1} s; this node answers reads \
                     NotReady until it has caught up (`swarmctl dht ready` forces it when the \
                     peers are gone for good): {error}",
                    attempt + 1,
                    pause.as_secs_f64()
                );
                // The first attempts, then one in WARN_EVERY (about every 5 minutes at the
                // longest pause), so that peers down for days do not flood root.log.
                if attempt < WARN_FIRST || attempt.is_multiple_of(WARN_EVERY) {
                    tracing::warn!("{message}");
                } else {
                    tracing::debug!("{message}");
                }
                attempt = attempt.saturating_add(1);
                if pause_or_cancel(&context, pause).is_err() {
                    return;
                }
            }
        }
    }
}

fn backoff(tuning: &Tuning, attempt: u32) -> Duration {
    crate::peer::backoff(tuning.retry_first, tuning.retry_max, attempt)
}

fn check_cancel(context: &Context) -> Result<(), Failure> {
    if context.cancel.load(Ordering::Relaxed) {
        Err(Failure::Cancelled)
    } else {
        Ok(())
    }
}

fn pause_or_cancel(context: &Context, duration: Duration) -> Result<(), Failure> {
    let until = Instant::now() + duration;
    loop {
        check_cancel(context)?;
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        std::thread::sleep((until - now).min(Duration::from_millis(20)));
    }
}

/// One attempt: choose the sources, mirror each, tell the loop it is done.
fn catch_up(context: &Context) -> Result<(), Failure> {
    let sources = choose_sources(context)?;
    let mut addrs = Vec::with_capacity(sources.len());
    let mut channels = BTreeSet::new();
    for (addr, client) in &sources {
        let mirrored = mirror_source(context, *addr, client)
            .map_err(|failure| failure.at(*addr, "mirroring from"))?;
        channels.extend(mirrored);
        addrs.push(*addr);
    }
    send(
        context,
        Message::Done {
            sources: addrs,
            channels: channels.len() as u64,
        },
    )
}

impl Failure {
    /// Names the peer a retryable failure concerns.
    fn at(self, addr: SocketAddr, doing: &str) -> Failure {
        match self {
            Failure::Retry(error) => Failure::Retry(format!("{doing} {addr}: {error}")),
            cancelled => cancelled,
        }
    }
}

/// The sources of this attempt (see the module doc), each with its connection.
fn choose_sources(context: &Context) -> Result<Vec<(SocketAddr, Client)>, Failure> {
    let mut reachable = Vec::new();
    let mut problems = Vec::new();
    for peer in &context.config.peers {
        check_cancel(context)?;
        match probe(context, peer) {
            Ok((addr, client, true)) => return Ok(vec![(addr, client)]),
            Ok((addr, client, false)) => reachable.push((addr, client)),
            Err(error) => problems.push(format!("{peer}: {error}")),
        }
    }
    if problems.is_empty() {
        tracing::info!(
            "catch-up: no peer is ready and every peer answers (the set restarted together): \
             merging what each of them has"
        );
        return Ok(reachable);
    }
    Err(Failure::Retry(format!(
        "no ready peer among {}: {}",
        context.config.peers.join(", "),
        problems.join("; ")
    )))
}

/// Connects to `peer` and asks whether it is ready (GetStats `catch_up_state` 0; a node
/// without the field predates catch-up and is always ready).
fn probe(context: &Context, peer: &str) -> Result<(SocketAddr, Client, bool), String> {
    let addr = resolve(peer)?;
    let tuning = context.config.tuning;
    let login = &context.config.login;
    let client = crate::peer::connect(addr, login, tuning.connect_timeout, tuning.request_timeout)
        .map_err(|error| error.to_string())?;
    let stats = client.get_stats(0).map_err(|error| error.to_string())?;
    let state = stats
        .iter()
        .find(|(name, _)| name == "catch_up_state")
        .map_or(0, |(_, value)| *value);
    Ok((
        addr,
        client,
        state != super::CatchUpState::CatchingUp as u64,
    ))
}

fn resolve(peer: &str) -> Result<SocketAddr, String> {
    peer.to_socket_addrs()
        .map_err(|error| format!("cannot resolve: {error}"))?
        .next()
        .ok_or_else(|| "resolves to no address".to_string())
}

/// Per mirrored channel: its stream, and whether its refresh is done.
struct Mirrors {
    source: SocketAddr,
    set: StreamSet,
    channels: HashMap<StreamTag, (String, bool)>,
    /// Refreshes still running.
    refreshing: usize,
    last_item: Instant,
}

/// Mirrors every channel of one source until all refreshes are done; the channels mirrored.
fn mirror_source(
    context: &Context,
    source: SocketAddr,
    client: &Client,
) -> Result<BTreeSet<String>, Failure> {
    let mut mirrors = Mirrors {
        source,
        set: client.stream_set(),
        channels: HashMap::new(),
        refreshing: 0,
        last_item: Instant::now(),
    };
    let mut known = BTreeSet::new();
    for _ in 0..MAX_LISTINGS {
        let listed = list_channels(client)?;
        let new: Vec<String> = listed.difference(&known).cloned().collect();
        if new.is_empty() {
            return Ok(known);
        }
        for channel in new {
            mirrors.open(&channel)?;
            known.insert(channel);
        }
        while mirrors.refreshing > 0 {
            check_cancel(context)?;
            mirrors.step(context)?;
        }
    }
    Err(Failure::Retry(format!(
        "channels kept appearing over {MAX_LISTINGS} listings"
    )))
}

fn list_channels(client: &Client) -> Result<BTreeSet<String>, Failure> {
    let body = client.request(0, wire::GET_CHANNELS, &[])?.ok_body()?;
    let names = wire::decode_channel_names(&body)
        .map_err(|error| Failure::Retry(format!("GetChannels reply: {error}")))?;
    Ok(names.into_iter().collect())
}

impl Mirrors {
    fn open(&mut self, channel: &str) -> Result<(), Failure> {
        let mut body = Vec::new();
        MirrorRequest {
            channel,
            initial_refresh: true,
            periodic_refresh_s: 0,
        }
        .encode(&mut body);
        let tag = self.set.open(0, wire::MIRROR, &body)?;
        self.channels.insert(tag, (channel.to_string(), false));
        self.refreshing += 1;
        self.last_item = Instant::now();
        Ok(())
    }

    /// Takes one item (or waits [`POLL`] for one) and applies it.
    fn step(&mut self, context: &Context) -> Result<(), Failure> {
        let Some((tag, event)) = self.set.next_timeout(POLL) else {
            let idle = self.last_item.elapsed();
            if idle > context.config.tuning.idle_timeout {
                return Err(Failure::Retry(format!(
                    "no item for {:.0} s with {} refreshes running",
                    idle.as_secs_f64(),
                    self.refreshing
                )));
            }
            return Ok(());
        };
        self.last_item = Instant::now();
        let Some((channel, _)) = self.channels.get(&tag) else {
            return Ok(());
        };
        let channel = channel.clone();
        match event? {
            StreamEvent::Item { code, body } => self.item(context, tag, &channel, code, &body),
            // The channel was removed on the source: nothing more to catch up of it.
            StreamEvent::End(reply) if reply.status == Status::Ok => {
                self.refresh_done(tag);
                Ok(())
            }
            StreamEvent::End(reply) => Err(Failure::Retry(format!(
                "Mirror of channel {channel} ended {}: {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            ))),
        }
    }

    fn refresh_done(&mut self, tag: StreamTag) {
        if let Some((_, done)) = self.channels.get_mut(&tag) {
            if !*done {
                *done = true;
                self.refreshing -= 1;
            }
        }
    }

    fn item(
        &mut self,
        context: &Context,
        tag: StreamTag,
        channel: &str,
        code: u8,
        body: &[u8],
    ) -> Result<(), Failure> {
        let mut events = VecDeque::new();
        decode_mirror_item(self.source, code, body, &mut events)?;
        let mut ops = Vec::with_capacity(events.len());
        for event in events {
            let op = match event {
                // A refresh's record: by version (one of version 0 fills only a key not held).
                MirrorEvent::Record {
                    key,
                    version,
                    value,
                } => Op {
                    key,
                    version,
                    kind: OpKind::Put(value.into_boxed_slice()),
                },
                MirrorEvent::Tombstone { key, version } => Op {
                    key,
                    version,
                    kind: OpKind::Remove,
                },
                MirrorEvent::Changed {
                    key,
                    version,
                    value,
                } => changed(key, version, value),
                MirrorEvent::Removed { key, version } => removed(key, version),
                MirrorEvent::RefreshDone { .. } => {
                    self.refresh_done(tag);
                    continue;
                }
                MirrorEvent::Overflow { lost, .. } => return self.reopen(tag, channel, lost),
                MirrorEvent::RefreshStarted { .. } | MirrorEvent::ChannelRemoved => continue,
            };
            ops.push(op);
        }
        if ops.is_empty() {
            return Ok(());
        }
        let channel = channel.to_string();
        send(context, Message::Apply { channel, ops })
    }

    /// A mirror whose source dropped `lost` changes: opened again with a new refresh.
    fn reopen(&mut self, tag: StreamTag, channel: &str, lost: u64) -> Result<(), Failure> {
        tracing::warn!(
            "catch-up: the mirror of channel {channel} lost {lost} changes (its queue on the \
             source filled): mirroring it again with a new refresh"
        );
        self.set.close(tag);
        let was_refreshing = self.channels.remove(&tag).is_some_and(|(_, done)| !done);
        if was_refreshing {
            self.refreshing -= 1;
        }
        self.open(channel)
    }
}

/// A change of the source: with a version, the keep-the-higher rule; without (version 0, a
/// Put or Update there), as the unconditional write it was.
fn changed(key: u64, version: u64, value: Vec<u8>) -> Op {
    let value = value.into_boxed_slice();
    let kind = if version == 0 {
        OpKind::Overwrite(value)
    } else {
        OpKind::Put(value)
    };
    Op { key, version, kind }
}

fn removed(key: u64, version: u64) -> Op {
    let kind = if version == 0 {
        OpKind::RemoveUnversioned
    } else {
        OpKind::Remove
    };
    Op { key, version, kind }
}

/// Hands a message to the loop, waiting while its queue is full (and waking it).
fn send(context: &Context, message: Message) -> Result<(), Failure> {
    let mut message = message;
    loop {
        check_cancel(context)?;
        match context.to_loop.try_send(message) {
            Ok(()) => {
                wake_loop(context);
                return Ok(());
            }
            Err(TrySendError::Full(back)) => {
                message = back;
                wake_loop(context);
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(TrySendError::Disconnected(_)) => return Err(Failure::Cancelled),
        }
    }
}

fn wake_loop(context: &Context) {
    if let Some(waker) = &context.waker {
        if let Err(error) = waker.wake() {
            tracing::debug!("cannot wake the event loop: {error}");
        }
    }
}
