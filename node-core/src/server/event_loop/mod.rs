//! The event loop: one thread that accepts, reads, dispatches, drives streams, writes, ticks
//! and shuts down. [`EventLoop::run`] polls and runs passes; the work of a pass is split by
//! responsibility:
//!
//! - [`accept`]: accepting connections (up to the limit) and their handshake (TLS handshakes
//!   under a per-pass budget, [`accept::HandshakeTurns`]);
//! - [`frames`]: reading, frames, and each frame's dispatch (requests, control frames);
//! - [`streams`]: stream turns under credit, output room and memory budgets, and their end;
//! - [`output`]: writing, backpressure release, and closing connections;
//! - [`reload`]: what SIGHUP reloads (log files, credentials);
//! - [`shutdown`]: the graceful shutdown.
//!
//! Rules it keeps (mio's contract): readiness is drained until WouldBlock, because an
//! edge-triggered event is not repeated; spurious and stale events are ignored. Limits: a
//! connection's input is bounded by the frame limit, its output by the high-water mark (reading
//! and stream production pause above it), the frames processed per pass and the stream items
//! produced per pass are bounded so one busy connection cannot starve the others; work left by
//! a budget is queued as [`Pending`] for the next pass.

mod accept;
mod clock;
mod frames;
mod output;
mod reload;
mod shutdown;
mod streams;

use super::connection::Connection;
use super::service::{Service, StreamHandle};
use super::{
    Server, ServerOptions, FIRST_CONNECTION_TOKEN, LISTENER_TOKEN, SIGNAL_TOKEN, WAKER_TOKEN,
};
use crate::protocol::RequestCode;
use crate::signals::SignalAction;
use crate::stats::ServerStats;
use frames::ReadUntil;
use mio::{Events, Interest, Token};
use slab::Slab;
use std::collections::VecDeque;
use std::io;
use std::time::{Duration, Instant};

/// Frames handled from one connection before the loop moves on to others.
const FRAMES_PER_PASS: usize = 256;
/// Items one stream produces before yielding to other streams.
const ITEMS_PER_PASS: usize = 16;
/// Connections accepted per listener event before serving the others.
const ACCEPTS_PER_PASS: usize = 256;
const EVENTS_CAPACITY: usize = 1024;
/// What a stream costs the core besides its task: its map entry and the task's allocation.
const STREAM_ENTRY_OVERHEAD_BYTES: usize = 128;

/// Work a pass left for the next one, in the order it was left (`drain_pending`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// The connection in this slab slot has unprocessed input left over (its frame budget ran
    /// out, or its buffer filled while processing paused), or its reading resumed.
    Input(usize),
    /// The listener may have more connections waiting: [`ACCEPTS_PER_PASS`] ran out, and an
    /// edge-triggered listener will not say so again.
    Accept,
}

/// When the loop's periodic work is next due.
struct Timers {
    tick: Duration,
    next_tick: Instant,
    /// Zero: no stats.log lines.
    stats_interval: Duration,
    next_stats: Instant,
    /// Set when a graceful shutdown began: it ends then at the latest.
    shutdown_deadline: Option<Instant>,
}

impl Timers {
    fn new(options: &ServerOptions, now: Instant) -> Timers {
        let tick = Duration::from_millis(options.tick_interval_ms.max(1));
        let stats_interval = Duration::from_secs(options.stats_interval_s);
        Timers {
            tick,
            next_tick: now + tick,
            stats_interval,
            next_stats: now + stats_interval,
            shutdown_deadline: None,
        }
    }
}

pub(crate) struct EventLoop<'s, S: Service> {
    server: Server,
    service: &'s mut S,
    connections: Slab<Connection<S>>,
    next_serial: u64,
    stats: ServerStats,
    /// Streams that can produce now.
    ready_streams: VecDeque<StreamHandle>,
    /// Work left over from a pass (input, accepts), done at the start of the next.
    pending: VecDeque<Pending>,
    /// Connections whose output grew outside of their own read handling.
    dirty: Vec<usize>,
    /// The pass's first reads of its readable connections, processed once all are read
    /// ([`frames`]: their lone frames are looked at together).
    first_reads: Vec<frames::FirstRead>,
    /// Memory held by the streams of every connection ([`streams::stream_held_bytes`]).
    stream_bytes: usize,
    shutting_down: bool,
    /// The service said it has background work ready.
    background_pending: bool,
    /// An accept failed (out of descriptors): retry on the next tick.
    accept_retry: bool,
    /// TLS handshakes waiting for a pass with budget left, and this pass's budget.
    handshakes: accept::HandshakeTurns,
    /// The rate limit of WARN lines about clients on the wrong side of TLS.
    misdirected: accept::MisdirectedLog,
    /// When the request handled last in the current run of frames ended, in
    /// [`clock::RequestClock::now_ns`]: the next one's start ([`frames`]: one clock read per
    /// request).
    request_clock: Option<u64>,
    /// The clock of requests' handling times.
    clock: clock::RequestClock,
}

impl<'s, S: Service> EventLoop<'s, S> {
    pub(crate) fn new(server: Server, service: &'s mut S) -> io::Result<EventLoop<'s, S>> {
        let mut event_loop = EventLoop {
            server,
            service,
            connections: Slab::new(),
            next_serial: 1,
            stats: ServerStats::default(),
            ready_streams: VecDeque::new(),
            pending: VecDeque::new(),
            dirty: Vec::new(),
            first_reads: Vec::with_capacity(EVENTS_CAPACITY),
            stream_bytes: 0,
            shutting_down: false,
            background_pending: false,
            accept_retry: false,
            handshakes: accept::HandshakeTurns::default(),
            misdirected: accept::MisdirectedLog::default(),
            request_clock: None,
            clock: clock::RequestClock::new(),
        };
        let Server { poll, listener, .. } = &mut event_loop.server;
        poll.registry()
            .register(listener, LISTENER_TOKEN, Interest::READABLE)?;
        Ok(event_loop)
    }

    fn options(&self) -> &ServerOptions {
        &self.server.options
    }

    /// Runs until a graceful shutdown completes, then the service's shutdown.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let on_off = |on: bool| if on { "on" } else { "off" };
        tracing::info!(
            "{} node listening on {} (auth {}, tls {})",
            self.service.kind(),
            self.server.local_addr,
            on_off(self.options().credentials.is_some()),
            on_off(self.options().tls.is_some()),
        );
        if self.options().tls.is_none() && !self.server.local_addr.ip().to_canonical().is_loopback()
        {
            tracing::warn!(
                "listening on {} without TLS: requests, replies and the handshake travel in \
                 clear on the network (set [tls] cert_file and key_file, docs/security.md)",
                self.server.local_addr
            );
        }
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        let mut timers = Timers::new(self.options(), Instant::now());
        loop {
            self.poll(&mut events, timers.next_tick)?;
            self.pass(&events);
            let now = Instant::now();
            self.run_timers(&mut timers, now);
            if self.shutdown_complete(&mut timers, now) {
                return self.finish_shutdown();
            }
        }
    }

    /// Waits for events until the next tick, or not at all when work is ready.
    fn poll(&mut self, events: &mut Events, next_tick: Instant) -> io::Result<()> {
        let ready = !self.ready_streams.is_empty()
            || !self.pending.is_empty()
            || self.background_pending
            || self.handshakes.any_waiting();
        let timeout = if ready {
            Duration::ZERO
        } else {
            next_tick.saturating_duration_since(Instant::now())
        };
        match self.server.poll.poll(events, Some(timeout)) {
            Err(err) if err.kind() != io::ErrorKind::Interrupted => Err(err),
            _ => Ok(()),
        }
    }

    /// One pass: the TLS handshakes waiting for their turn, the events (every readable
    /// connection read once, then what those reads brought processed), then the work they, the
    /// last pass and the wake-ups made ready,
    /// the service's background slice, and the output it all produced.
    fn pass(&mut self, events: &Events) {
        self.drive_waiting_handshakes();
        for event in events.iter() {
            let read_closed = event.is_read_closed();
            self.on_event(
                event.token(),
                event.is_readable() || read_closed,
                read_closed,
                event.is_writable(),
            );
        }
        self.process_first_reads();
        self.take_wakeups();
        self.drain_pending();
        self.run_ready_streams();
        self.background_pending = self.service.background(Instant::now());
        self.take_wakeups();
        self.run_ready_streams();
        self.flush_dirty();
    }

    /// The tick (the service's timers, accept retries, stalled handshakes, watchdog and
    /// metrics) and the stats.log line, when due.
    fn run_timers(&mut self, timers: &mut Timers, now: Instant) {
        if now >= timers.next_tick {
            timers.next_tick = now + timers.tick;
            self.service.tick(now);
            self.clock.calibrate();
            self.take_wakeups();
            if std::mem::take(&mut self.accept_retry) {
                self.accept_connections();
            }
            self.close_stalled_handshakes(now);
            self.observe(now);
        }
        if !timers.stats_interval.is_zero() && now >= timers.next_stats {
            timers.next_stats = now + timers.stats_interval;
            self.write_stats_line();
        }
    }

    fn on_event(&mut self, token: Token, readable: bool, read_closed: bool, writable: bool) {
        match token {
            LISTENER_TOKEN => self.accept_connections(),
            // The waker only interrupts the poll; the shutdown flag is checked every pass.
            WAKER_TOKEN => {}
            SIGNAL_TOKEN => self.on_signals(),
            Token(token) => {
                let slot = token - FIRST_CONNECTION_TOKEN;
                // A stale event for a slot closed earlier in this pass is normal; ignore it.
                if !self.connections.contains(slot) {
                    return;
                }
                if writable {
                    self.flush(slot);
                }
                if readable && self.connections.contains(slot) && !self.handshake_waits(slot) {
                    // A short read means the socket is drained, except when the peer also closed:
                    // then read on to the end-of-file, for which no further event comes.
                    self.read_first(
                        slot,
                        if read_closed {
                            ReadUntil::WouldBlock
                        } else {
                            ReadUntil::Drained
                        },
                    );
                }
            }
        }
    }

    fn on_signals(&mut self) {
        let actions = match self.server.signals.as_mut() {
            Some(signals) => signals.pending(),
            None => return,
        };
        for action in actions {
            match action {
                SignalAction::Shutdown => {
                    tracing::info!("shutdown signal received; shutting down gracefully");
                    self.server
                        .shutdown_requested
                        .store(true, std::sync::atomic::Ordering::SeqCst);
                }
                SignalAction::Reload => self.reload(),
            }
        }
    }

    fn write_stats_line(&mut self) {
        self.stats.stream_memory_bytes = self.stream_bytes as u64;
        let mut node_pairs = Vec::new();
        self.service.stats(&mut node_pairs);
        let service = &*self.service;
        let name_of = |code: u8| request_name(service, RequestCode(code));
        let line = self.stats.take_interval_line(&name_of, &node_pairs);
        if let Some(logs) = &self.server.logs {
            if let Err(err) = logs.write_stats_line(&line) {
                tracing::warn!("cannot write stats.log: {err}");
            }
        }
    }

    /// Once per tick: the systemd watchdog ping, and a copy of the counters when a scrape asked
    /// for one (see [`crate::metrics`]: the loop never waits for the HTTP thread).
    fn observe(&mut self, now: Instant) {
        crate::systemd::watchdog_ping_if_due(now);
        let Some(hub) = &self.server.metrics else {
            return;
        };
        if !hub.take_request() {
            return;
        }
        self.stats.stream_memory_bytes = self.stream_bytes as u64;
        let service = &*self.service;
        let name_of = |code: u8| request_name(service, RequestCode(code));
        let mut node = crate::metrics::Families::default();
        service.metrics(&mut node);
        hub.publish(crate::metrics::Snapshot {
            core: self.stats.metrics_snapshot(&name_of),
            node,
            taken: now,
        });
    }
}

/// The name of any request code: common ones from the protocol, the rest from the service.
pub(crate) fn request_name<S: Service + ?Sized>(
    service: &S,
    code: RequestCode,
) -> Option<&'static str> {
    code.common_name().or_else(|| service.request_name(code))
}
