//! Streams: starting one, its turns under credit, output room, memory budgets and a per-pass
//! item budget, its wake-ups, and ending one that did not finish (Stop, a reused id, a closed
//! connection, shutdown), giving its memory back.

use super::{EventLoop, ITEMS_PER_PASS, STREAM_ENTRY_OVERHEAD_BYTES};
use crate::protocol::codes::INITIAL_STREAM_CREDIT;
use crate::protocol::frame::{self, FrameType};
use crate::protocol::Status;
use crate::server::connection::{reserve_output, Connection, StreamEntry};
use crate::server::service::{Service, StreamHandle, StreamOut, StreamStep, StreamTask};
use crate::stats::ServerStats;

impl<S: Service> EventLoop<'_, S> {
    pub(super) fn start_stream(
        &mut self,
        slot: usize,
        request_id: u64,
        task: Box<dyn StreamTask<S>>,
    ) {
        let conn = &mut self.connections[slot];
        let held = stream_held_bytes(&*task);
        recount(&mut self.stream_bytes, &mut conn.stream_bytes, 0, held);
        let entry = StreamEntry {
            task,
            credit: INITIAL_STREAM_CREDIT,
            waiting: false,
            queued: true,
            held,
        };
        conn.streams.insert(request_id, entry);
        self.stats.streams_open += 1;
        self.ready_streams.push_back(StreamHandle {
            connection_serial: conn.serial,
            slot,
            request_id,
        });
    }

    /// Ends stream `request_id` of connection `slot` without a Reply (see [`cancel_stream`]);
    /// false when no such stream runs.
    pub(super) fn cancel_stream_by_id(&mut self, slot: usize, request_id: u64) -> bool {
        let conn = &mut self.connections[slot];
        // Every request asks (a reused id is a protocol error); nearly every connection runs no
        // stream, and a map's remove hashes the id (SipHash, ~95 instructions) even when empty.
        if conn.streams.is_empty() {
            return false;
        }
        let Some(entry) = conn.streams.remove(&request_id) else {
            return false;
        };
        let (node_bytes, stats) = (&mut self.stream_bytes, &mut self.stats);
        cancel_stream(
            self.service,
            stats,
            node_bytes,
            &mut conn.stream_bytes,
            entry,
        );
        true
    }

    pub(super) fn take_wakeups(&mut self) {
        for handle in self.server.wakeups.take() {
            let Some(conn) = self.connections.get_mut(handle.slot) else {
                continue;
            };
            if conn.serial != handle.connection_serial {
                continue;
            }
            let Some(entry) = conn.streams.get_mut(&handle.request_id) else {
                continue;
            };
            if entry.waiting {
                entry.waiting = false;
                if !entry.queued && entry.credit > 0 {
                    entry.queued = true;
                    self.ready_streams.push_back(handle);
                }
            }
        }
    }

    /// Gives each ready stream a turn, bounded by its credit, the connection's output room and
    /// a per-pass budget.
    pub(super) fn run_ready_streams(&mut self) {
        let high_water = self.server.options.output_buffer_bytes;
        let connection_budget = self.server.options.stream_memory_bytes;
        let node_budget = self.server.options.max_stream_memory_bytes;
        for _ in 0..self.ready_streams.len() {
            let Some(handle) = self.ready_streams.pop_front() else {
                break;
            };
            let Some(conn) = self.connections.get_mut(handle.slot) else {
                continue;
            };
            if conn.serial != handle.connection_serial {
                continue;
            }
            let Connection {
                streams,
                output,
                output_start,
                streams_blocked_on_output,
                stream_bytes: connection_bytes,
                ..
            } = conn;
            let Some(entry) = streams.get_mut(&handle.request_id) else {
                continue;
            };
            entry.queued = false;
            let mut finished = false;
            let mut budget_left = false;
            for item in 0..ITEMS_PER_PASS {
                if entry.credit == 0 {
                    break;
                }
                if output.len() - *output_start >= high_water {
                    *streams_blocked_on_output = true;
                    break;
                }
                let memory_room = connection_budget
                    .saturating_sub(*connection_bytes)
                    .min(node_budget.saturating_sub(self.stream_bytes));
                reserve_output(output, high_water);
                let mut out = StreamOut::new(output, handle, memory_room);
                let step = entry.task.resume(self.service, &mut out);
                let (written, done) = (out.items_written, out.finished);
                entry.credit = entry.credit.saturating_sub(written);
                let held = stream_held_bytes(&*entry.task);
                recount(&mut self.stream_bytes, connection_bytes, entry.held, held);
                entry.held = held;
                if done || step == StreamStep::Done {
                    finished = true;
                    break;
                }
                if step == StreamStep::Wait {
                    entry.waiting = true;
                    break;
                }
                // A step that wrote nothing used its own work budget (a scan that found nothing
                // to send yet): its turn ends here, or ITEMS_PER_PASS such steps would hold the
                // loop for that many budgets.
                if written == 0 {
                    budget_left = true;
                    break;
                }
                budget_left = item + 1 == ITEMS_PER_PASS;
            }
            if finished {
                recount(&mut self.stream_bytes, connection_bytes, entry.held, 0);
                streams.remove(&handle.request_id);
                self.stats.streams_open -= 1;
            } else if budget_left && entry.credit > 0 {
                entry.queued = true;
                self.ready_streams.push_back(handle);
            }
            self.dirty.push(handle.slot);
            // Wakeups raised by the stream itself (rare) are picked up on the next pass.
        }
    }

    /// Queues the streams of a connection whose output drained below the high-water mark.
    pub(super) fn requeue_blocked_streams(&mut self, slot: usize) {
        let conn = &mut self.connections[slot];
        conn.streams_blocked_on_output = false;
        for (request_id, entry) in conn.streams.iter_mut() {
            if !entry.waiting && !entry.queued && entry.credit > 0 {
                entry.queued = true;
                self.ready_streams.push_back(StreamHandle {
                    connection_serial: conn.serial,
                    slot,
                    request_id: *request_id,
                });
            }
        }
    }
}

/// The memory a stream counts for: the core's entry, the task itself and what the task holds.
pub(super) fn stream_held_bytes<S: ?Sized>(task: &dyn StreamTask<S>) -> usize {
    STREAM_ENTRY_OVERHEAD_BYTES + std::mem::size_of_val(task) + task.held_bytes()
}

/// Ends a stream that did not finish (Stop, a reused id, its connection closed, shutdown): gives
/// its memory back and lets its task release what it registered. The caller writes its Reply,
/// if it gets one.
pub(super) fn cancel_stream<S: Service>(
    service: &mut S,
    stats: &mut ServerStats,
    node_bytes: &mut usize,
    connection_bytes: &mut usize,
    mut entry: StreamEntry<S>,
) {
    recount(node_bytes, connection_bytes, entry.held, 0);
    entry.task.cancel(service);
    stats.streams_open -= 1;
}

/// Ends every stream of `conn` (see [`cancel_stream`]); with `shutting_down`, each with a Reply
/// of status ShuttingDown.
pub(super) fn cancel_all_streams<S: Service>(
    service: &mut S,
    stats: &mut ServerStats,
    node_bytes: &mut usize,
    conn: &mut Connection<S>,
    shutting_down: bool,
) {
    for (request_id, entry) in conn.streams.drain() {
        cancel_stream(service, stats, node_bytes, &mut conn.stream_bytes, entry);
        if shutting_down {
            frame::write_frame(
                &mut conn.output,
                FrameType::Reply,
                Status::ShuttingDown as u8,
                request_id,
                b"node shutting down",
            );
        }
    }
}

/// Moves a stream's counted memory from `old` to `new` bytes in its connection's total and the
/// node's.
pub(super) fn recount(
    node_bytes: &mut usize,
    connection_bytes: &mut usize,
    old: usize,
    new: usize,
) {
    debug_assert!(old <= *node_bytes && old <= *connection_bytes);
    *node_bytes = node_bytes.saturating_sub(old) + new;
    *connection_bytes = connection_bytes.saturating_sub(old) + new;
}
