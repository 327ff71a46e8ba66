//! One client connection's state: its transport (the socket, in clear or through TLS), its
//! handshake phase, its input and output buffers (both bounded) and its running streams. The
//! event loop decides what to do; this module only moves bytes between the transport and the
//! buffers.

use super::service::{ClientInfo, StreamTask};
use crate::fold_hash::FoldBuildHasher;
use crate::protocol::handshake::NONCE_LEN;
use crate::tls::Transport;
use std::collections::HashMap;
use std::io;

/// The hasher of a connection's streams, keyed by request id: SipHash cost ~70 instructions a
/// lookup, and a request whose reply waits (a dht change under `durability = "always"`) is a
/// stream, three lookups per request. Ids come from the client; colliding ones slow only its
/// own connection, whose streams are bounded (`server.max_in_flight`).
type StreamIdHasher = FoldBuildHasher<0x6a09_e667_f3bc_c909>;

/// The input buffer a connection starts with; it grows (up to the frame limit) only for a frame
/// that does not fit.
pub(crate) const INITIAL_INPUT_BYTES: usize = 16 * 1024;
/// Buffers above this are given back to the allocator once they are empty again, so that one
/// burst does not pin memory for the life of an idle connection.
const SHRINK_ABOVE_BYTES: usize = 1024 * 1024;
/// Sent bytes at the front of the output buffer beyond which it is compacted.
const COMPACT_AFTER_BYTES: usize = 1024 * 1024;
/// Free room [`reserve_output`] keeps in an output buffer before a request or a stream step
/// writes to it: more than almost every reply and stream item, so they never grow it themselves.
pub(crate) const OUTPUT_HEADROOM_BYTES: usize = 64 * 1024;

/// Before something writes to a connection's output buffer: when `Vec`'s own doubling would
/// take it beyond `high_water` (`output_buffer_bytes`, where the loop stops adding to it) plus
/// [`OUTPUT_HEADROOM_BYTES`], grows it to that bound instead (plus the bytes already sent at
/// its front, at most `COMPACT_AFTER_BYTES` before it is compacted). Below that, `Vec` grows it
/// as usual.
///
/// Why: a buffer that just crossed `high_water` would double to twice it, and where the heap
/// is in huge pages (docs/operations.md, "Memory: the huge-page heap") the untouched half is
/// resident too, so a connection that never reads would cost up to twice the
/// `output_buffer_bytes` that docs/security.md promises. A single write larger than the
/// headroom (a big value) is left to `Vec`'s own growth (doubling), as before.
pub(crate) fn reserve_output(output: &mut Vec<u8>, high_water: usize) {
    let bound = high_water.saturating_add(OUTPUT_HEADROOM_BYTES);
    let free = output.capacity() - output.len();
    if free >= OUTPUT_HEADROOM_BYTES || output.capacity().saturating_mul(2) <= bound {
        return;
    }
    let target = bound.max(output.len() + OUTPUT_HEADROOM_BYTES);
    output.reserve_exact(target - output.len());
    debug_assert!(output.capacity() - output.len() >= OUTPUT_HEADROOM_BYTES);
}

pub(crate) enum Phase {
    /// The ServerHello is sent; waiting for the ClientHello. `nonce` is set when the node asked
    /// for authentication.
    AwaitingHello {
        nonce: Option<[u8; NONCE_LEN]>,
    },
    Open,
}

pub(crate) struct StreamEntry<S: ?Sized> {
    pub task: Box<dyn StreamTask<S>>,
    pub credit: u32,
    /// The task said it has nothing to send until it is woken.
    pub waiting: bool,
    /// The stream is in the event loop's ready queue.
    pub queued: bool,
    /// The memory it counts for in the stream budgets, as of its last turn.
    pub held: usize,
}

pub(crate) struct Connection<S: ?Sized> {
    pub transport: Transport,
    /// Unique for the life of the process, unlike the slab slot, which is reused.
    pub serial: u64,
    pub phase: Phase,
    pub client: ClientInfo,
    /// `input[input_start..input_end]` holds bytes read but not yet processed. The whole vector
    /// stays initialised so reads need no zeroing.
    pub input: Vec<u8>,
    pub input_start: usize,
    pub input_end: usize,
    /// `output[output_start..]` is waiting to be written.
    pub output: Vec<u8>,
    pub output_start: usize,
    pub streams: HashMap<u64, StreamEntry<S>, StreamIdHasher>,
    /// Σ `held` of `streams`.
    pub stream_bytes: usize,
    /// Reading stopped because unsent output is above the high-water mark.
    pub reading_paused: bool,
    /// Some stream stopped producing because output was above the high-water mark.
    pub streams_blocked_on_output: bool,
    /// The peer closed its sending side.
    pub peer_closed: bool,
    /// Close once the output is written (after a protocol error or a refused handshake).
    pub close_when_flushed: bool,
    /// Its TLS handshake waits in the event loop's queue for a pass with budget left (the
    /// loop's `HandshakeTurns`).
    pub handshake_waiting: bool,
    pub accepted_at: std::time::Instant,
}

pub(crate) enum ReadOutcome {
    /// Bytes arrived. `drained`: fewer than the buffer could take, so the socket had no more
    /// at that moment (with edge-triggered readiness, later data brings a new event).
    Data { bytes: usize, drained: bool },
    /// Nothing more for now.
    WouldBlock,
    /// The peer closed its side.
    Closed,
    /// The input buffer is full; process it before reading more.
    BufferFull,
}

impl<S: ?Sized> Connection<S> {
    pub fn new(
        transport: Transport,
        serial: u64,
        phase: Phase,
        client: ClientInfo,
    ) -> Connection<S> {
        Connection {
            transport,
            serial,
            phase,
            client,
            input: vec![0; INITIAL_INPUT_BYTES],
            input_start: 0,
            input_end: 0,
            output: Vec::new(),
            output_start: 0,
            streams: HashMap::default(),
            stream_bytes: 0,
            reading_paused: false,
            streams_blocked_on_output: false,
            peer_closed: false,
            close_when_flushed: false,
            handshake_waiting: false,
            accepted_at: std::time::Instant::now(),
        }
    }

    pub fn pending_input(&self) -> &[u8] {
        &self.input[self.input_start..self.input_end]
    }

    /// Output not yet on the socket: the unsent part of the buffer and what TLS holds.
    pub fn pending_output(&self) -> usize {
        self.output.len() - self.output_start + self.transport.buffered_output_bytes()
    }

    /// Makes room for the next read: moves unprocessed bytes to the front and, when a frame of
    /// `needed` bytes cannot fit, grows the buffer up to `max_input_bytes`.
    fn make_room(&mut self, needed: usize, max_input_bytes: usize) {
        if self.input_start == self.input_end {
            self.input_start = 0;
            self.input_end = 0;
            if self.input.len() > SHRINK_ABOVE_BYTES {
                self.input = vec![0; INITIAL_INPUT_BYTES];
            }
        }
        if self.input_end == self.input.len() && self.input_start > 0 {
            self.input.copy_within(self.input_start..self.input_end, 0);
            self.input_end -= self.input_start;
            self.input_start = 0;
        }
        let wanted = needed.min(max_input_bytes);
        if self.input_end == self.input.len() && self.input.len() < wanted {
            self.input.resize(wanted, 0);
        }
    }

    /// Reads once. `needed` is the size of the frame being assembled (0 if unknown).
    pub fn read_once(&mut self, needed: usize, max_input_bytes: usize) -> io::Result<ReadOutcome> {
        self.make_room(needed, max_input_bytes);
        if self.input_end == self.input.len() {
            return Ok(ReadOutcome::BufferFull);
        }
        loop {
            match self.transport.read(&mut self.input[self.input_end..]) {
                Ok(0) => return Ok(ReadOutcome::Closed),
                Ok(read) => {
                    // Short: the socket had no more (through TLS too, see Transport::read).
                    let drained = self.input_end + read < self.input.len();
                    self.input_end += read;
                    return Ok(ReadOutcome::Data {
                        bytes: read,
                        drained,
                    });
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(ReadOutcome::WouldBlock)
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
    }

    /// Marks `len` input bytes as processed.
    pub fn consume_input(&mut self, len: usize) {
        debug_assert!(self.input_start + len <= self.input_end);
        self.input_start += len;
    }

    /// Writes until the output is empty or the socket would block; returns the bytes written.
    pub fn flush(&mut self) -> io::Result<usize> {
        let mut written_total = 0;
        while self.output_start < self.output.len() {
            match self.transport.write(&self.output[self.output_start..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => {
                    self.output_start += written;
                    written_total += written;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
        // Records rustls still holds (the handshake's too) go out as the socket takes them.
        self.transport.send_tls_records()?;
        if self.output_start == self.output.len() {
            self.output.clear();
            self.output_start = 0;
            if self.output.capacity() > SHRINK_ABOVE_BYTES {
                self.output = Vec::new();
            }
        } else if self.output_start >= COMPACT_AFTER_BYTES
            || self.output_start >= self.output.len() / 2
        {
            // A reader that never quite catches up would otherwise keep every byte ever sent
            // in front of what is still unsent.
            self.output.drain(..self.output_start);
            self.output_start = 0;
        }
        Ok(written_total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_buffers_stop_growing_near_the_high_water_mark() {
        let high_water = 1024 * 1024;
        let mut output = Vec::new();
        let mut largest = 0;
        while output.len() < high_water + 4096 {
            reserve_output(&mut output, high_water);
            output.extend_from_slice(&[1u8; 4096]);
            largest = largest.max(output.capacity());
        }
        // Vec's own doubling would have taken it to 2 MiB.
        assert!(
            largest <= high_water + 2 * OUTPUT_HEADROOM_BYTES,
            "capacity {largest} for a high-water mark of {high_water}"
        );
        // Beyond the mark (a reply larger than the room) it still makes room.
        reserve_output(&mut output, high_water);
        assert!(output.capacity() - output.len() >= OUTPUT_HEADROOM_BYTES);
    }
    use std::io::Read;

    /// A reader that never quite catches up never lets the output drain completely; bytes
    /// already sent must still be given back (the review measured +1.5 GB before this).
    #[test]
    fn sent_bytes_are_given_back_while_the_reader_never_catches_up() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut reader =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server_side, peer) = listener.accept().expect("accept");
        server_side.set_nonblocking(true).expect("nonblocking");
        // Small kernel buffers, so writes are partial as with a slow remote reader.
        socket2::SockRef::from(&server_side)
            .set_send_buffer_size(64 * 1024)
            .expect("SO_SNDBUF");
        socket2::SockRef::from(&reader)
            .set_recv_buffer_size(64 * 1024)
            .expect("SO_RCVBUF");
        let client = ClientInfo {
            name: String::new(),
            admin: true,
            peer,
        };
        let socket = mio::net::TcpStream::from_std(server_side);
        let mut conn: Connection<()> =
            Connection::new(Transport::plain(socket), 1, Phase::Open, client);
        let mut sink = vec![0u8; 64 * 1024];
        let mut sent_total = 0usize;
        for _ in 0..2000 {
            // Like the event loop: produce only while the unsent output is under its bound.
            if conn.pending_output() < 1024 * 1024 {
                conn.output.extend_from_slice(&[7u8; 256 * 1024]);
            }
            sent_total += conn.flush().expect("flush");
            let _ = reader.read(&mut sink[..16 * 1024]).expect("read");
            assert!(
                conn.output.len() <= conn.pending_output() + COMPACT_AFTER_BYTES,
                "{} bytes held for {} unsent",
                conn.output.len(),
                conn.pending_output()
            );
        }
        assert!(
            sent_total > 8 * COMPACT_AFTER_BYTES,
            "the test must push many buffers' worth through"
        );
    }
}
