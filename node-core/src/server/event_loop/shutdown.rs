//! Graceful shutdown: refusing new connections, answering the requests already received (those
//! beyond a connection's output bound get ShuttingDown), ending streams, letting output drain
//! until every connection closed or the deadline passed, then the service's own shutdown.

use super::streams::cancel_all_streams;
use super::{EventLoop, Timers};
use crate::protocol::frame::{self, FrameType};
use crate::protocol::Status;
use crate::server::connection::Phase;
use crate::server::service::Service;
use std::io;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

impl<S: Service> EventLoop<'_, S> {
    /// Begins a graceful shutdown once one is asked for (a signal, a [`ShutdownHandle`]); says
    /// whether it is complete: every connection closed, or its deadline passed.
    ///
    /// [`ShutdownHandle`]: crate::server::ShutdownHandle
    pub(super) fn shutdown_complete(&mut self, timers: &mut Timers, now: Instant) -> bool {
        if self.server.shutdown_requested.load(Ordering::SeqCst) && !self.shutting_down {
            self.begin_shutdown();
            let timeout = Duration::from_secs(self.options().shutdown_timeout_s);
            timers.shutdown_deadline = Some(now + timeout);
        }
        timers
            .shutdown_deadline
            .is_some_and(|deadline| self.connections.is_empty() || now >= deadline)
    }

    /// Refuses new connections (hello ShuttingDown, see `on_accepted`; the listener stays
    /// registered until the loop ends so late clients hear why), answers what was already
    /// received, ends streams, and lets output drain.
    pub(super) fn begin_shutdown(&mut self) {
        self.shutting_down = true;
        crate::systemd::stopping(
            "shutting down: answering requests received, then the node's final flush or dump",
        );
        if let Some(hub) = &self.server.metrics {
            hub.set_ready(false);
        }
        let slots: Vec<usize> = self.connections.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            if matches!(self.connections[slot].phase, Phase::AwaitingHello { .. }) {
                self.close(slot);
                continue;
            }
            // Requests that already arrived, in our buffer or the socket's, are answered before
            // the node stops (those still in the socket only if the connection's output is under
            // its bound: a reader that stopped reading is not read from).
            self.read_connection(slot);
            self.answer_buffered_requests(slot);
            let Some(conn) = self.connections.get_mut(slot) else {
                continue;
            };
            let (node_bytes, stats) = (&mut self.stream_bytes, &mut self.stats);
            cancel_all_streams(self.service, stats, node_bytes, conn, true);
            conn.close_when_flushed = true;
            self.flush(slot);
        }
        tracing::info!(
            "stopped accepting; {} connections draining",
            self.connections.len()
        );
    }

    /// At shutdown: executes the requests already buffered while the connection's output is
    /// under its high-water mark; past it, answers the rest ShuttingDown without a body, so a
    /// reader that stopped reading cannot make the node buffer without bound (at most one short
    /// reply per buffered frame).
    pub(super) fn answer_buffered_requests(&mut self, slot: usize) {
        let high_water = self.server.options.output_buffer_bytes;
        let max_frame_bytes = self.server.options.max_frame_bytes;
        // A run of frames of its own: its first request reads the clock.
        self.request_clock = None;
        loop {
            let Some(conn) = self.connections.get_mut(slot) else {
                return;
            };
            if conn.close_when_flushed {
                return;
            }
            if conn.pending_output() < high_water {
                if !self.process_frame(slot) {
                    return;
                }
                continue;
            }
            let Ok(Some(header)) = frame::parse_frame(conn.pending_input(), max_frame_bytes) else {
                return;
            };
            conn.consume_input(header.frame_len());
            if header.frame_type == FrameType::Request {
                let status = Status::ShuttingDown as u8;
                frame::write_frame(
                    &mut conn.output,
                    FrameType::Reply,
                    status,
                    header.request_id,
                    &[],
                );
            }
        }
    }

    pub(super) fn finish_shutdown(mut self) -> io::Result<()> {
        let slots: Vec<usize> = self.connections.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            self.close(slot);
        }
        tracing::info!("connections closed; running the node's shutdown");
        let outcome = self.service.shutdown();
        self.write_stats_line();
        match outcome {
            Ok(()) => {
                tracing::info!("shutdown complete");
                Ok(())
            }
            Err(reason) => {
                tracing::error!("shutdown FAILED: {reason}");
                Err(io::Error::other(format!("shutdown failed: {reason}")))
            }
        }
    }
}
