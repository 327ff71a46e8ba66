//! Writing and closing: flushing a connection's output, resuming its reading and streams once
//! the output drains below the low-water mark, and closing a connection that is done (after a
//! protocol error, or once a peer that closed its side has all its replies).

use super::frames::needed_frame_len;
use super::streams::cancel_all_streams;
use super::{EventLoop, Pending};
use crate::protocol::frame::HEADER_LEN;
use crate::server::service::Service;

impl<S: Service> EventLoop<'_, S> {
    pub(super) fn flush_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for slot in dirty {
            if self.connections.contains(slot) {
                self.flush(slot);
            }
        }
    }

    /// Writes what the socket takes; resumes reading and streams once output drains; closes a
    /// connection that is done.
    pub(super) fn flush(&mut self, slot: usize) {
        let low_water = self.server.options.output_buffer_bytes / 2;
        // Only output about to leave needs what before_output promises. A writable event comes
        // with nearly every readable one and flushes a connection with nothing queued: calling
        // it then wrote the change log's group out once per request (the changes of the
        // connections read earlier in the pass) instead of once per pass.
        if self.connections[slot].pending_output() > 0 {
            self.service.before_output();
        }
        let conn = &mut self.connections[slot];
        match conn.flush() {
            Ok(written) => self.stats.add_bytes_out(written),
            Err(err) => {
                tracing::debug!("write to {} failed: {err}", conn.client.peer);
                self.close(slot);
                return;
            }
        }
        let conn = &mut self.connections[slot];
        let drained = conn.pending_output() == 0;
        // A peer that closed its sending side still gets replies to every whole request it sent
        // first; those not yet processed (frame budget, paused reading) are pending work.
        let pending = conn.pending_input();
        let whole_frame_pending =
            pending.len() >= HEADER_LEN && pending.len() >= needed_frame_len(pending);
        if drained
            && (conn.close_when_flushed
                || (conn.peer_closed && conn.streams.is_empty() && !whole_frame_pending))
        {
            self.close(slot);
            return;
        }
        if conn.peer_closed
            && conn.pending_input().len() < HEADER_LEN
            && !conn.streams.is_empty()
            && drained
        {
            // The peer will read nothing more from streams it abandoned by closing.
            self.close(slot);
            return;
        }
        if conn.pending_output() <= low_water {
            if conn.reading_paused {
                conn.reading_paused = false;
                self.pending.push_back(Pending::Input(slot));
            }
            if conn.streams_blocked_on_output {
                self.requeue_blocked_streams(slot);
            }
        }
    }

    pub(super) fn close(&mut self, slot: usize) {
        let Some(mut conn) = self.connections.try_remove(slot) else {
            return;
        };
        let (node_bytes, stats) = (&mut self.stream_bytes, &mut self.stats);
        cancel_all_streams(self.service, stats, node_bytes, &mut conn, false);
        debug_assert_eq!(conn.stream_bytes, 0, "stream memory of a closed connection");
        conn.transport.close_notify();
        if let Err(err) = self
            .server
            .poll
            .registry()
            .deregister(conn.transport.socket_mut())
        {
            tracing::debug!("deregister: {err}");
        }
        self.stats.connections_open -= 1;
    }
}
