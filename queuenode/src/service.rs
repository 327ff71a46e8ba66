//! The queue node as a server [`Service`]: the engine ([`Engine`], which keeps the data and its
//! rules), the request dispatch (in `crate::requests`), the wake-ups of consumers the engine
//! made ready, start-up and the final sync.
//!
//! Start-up ([`QueueNode::open`]): the engine opens every ring in the data directory and imports
//! the reference node's files found there (see [`crate::engine::Engine::open`]).

use crate::config::QueueSection;
use crate::engine::{Engine, EngineConfig, StartReport};
use crate::requests;
use node_core::metrics::Families;
use node_core::protocol::queue::QueueRequest;
use node_core::protocol::{NodeKind, RequestCode};
use node_core::server::{Handled, Reply, Request, Service, StreamHandle, Wakeups};
use std::path::Path;

/// The largest value a node takes when its frames are at most `max_frame_bytes`: a consumer must
/// be able to receive it alone in one LZ4 batch item (batch header, record header and LZ4's
/// worst-case growth of 1/255 plus a few bytes).
pub fn max_value_for_frames(max_frame_bytes: u32) -> u64 {
    u64::from(max_frame_bytes).saturating_sub(64) * 255 / 256
}

pub struct QueueNode {
    pub(crate) engine: Engine<StreamHandle>,
    wakeups: Wakeups,
    /// The batch a Consume builds and sends within its turn, shared by all of them.
    pub(crate) consume_scratch: Vec<u8>,
}

impl QueueNode {
    /// Opens the rings in `data_dir` and imports reference files found there.
    pub fn open(
        data_dir: &Path,
        config: QueueSection,
        max_frame_bytes: u32,
        wakeups: Wakeups,
    ) -> Result<(QueueNode, StartReport), String> {
        let sync = config.sync_mode().map_err(|err| err.to_string())?;
        let (engine, report) = Engine::open(EngineConfig {
            data_dir: data_dir.to_path_buf(),
            memory_limit_bytes: config.memory_limit_bytes,
            sync,
            sizes: config.ring_sizes(),
            max_value_bytes: max_value_for_frames(max_frame_bytes),
        })?;
        let node = QueueNode {
            engine,
            wakeups,
            consume_scratch: Vec::new(),
        };
        Ok((node, report))
    }

    pub fn engine(&self) -> &Engine<StreamHandle> {
        &self.engine
    }

    /// Resumes the consumers the engine made ready (a push to their storage, an ack they
    /// waited for, records given back, their channel removed).
    pub(crate) fn wake_consumers(&mut self) {
        for handle in self.engine.take_woken() {
            self.wakeups.wake(handle);
        }
    }
}

impl Service for QueueNode {
    fn kind(&self) -> NodeKind {
        NodeKind::Queue
    }

    fn software_version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    fn request_name(&self, code: RequestCode) -> Option<&'static str> {
        QueueRequest::from_code(code).map(QueueRequest::name)
    }

    fn admin_only(&self, code: RequestCode) -> bool {
        QueueRequest::from_code(code).is_some_and(QueueRequest::admin_only)
    }

    fn opens_stream(&self, code: RequestCode) -> bool {
        QueueRequest::from_code(code).is_some_and(QueueRequest::opens_stream)
    }

    fn acts_on_running_stream(&self, code: RequestCode) -> bool {
        QueueRequest::from_code(code).is_some_and(QueueRequest::acts_on_running_stream)
    }

    fn handle(&mut self, request: &Request<'_>, reply: &mut Reply<'_>) -> Handled<Self> {
        let handled = requests::dispatch(self, request, reply);
        self.wake_consumers();
        handled
    }

    /// Pushes, Pops and acks leave their rings' header writes pending (one write per run of
    /// changes): committed here, before any reply that reports them leaves.
    fn before_output(&mut self) {
        self.engine.commit_headers();
    }

    fn shutdown(&mut self) -> Result<(), String> {
        self.engine
            .sync_all()
            .map(|()| tracing::info!("queues synced to disk"))
            .map_err(|error| format!("cannot sync the queues to disk: {error}"))
    }

    fn metrics(&self, out: &mut Families) {
        crate::stats::metrics(&self.engine, out);
    }

    fn stats(&self, out: &mut Vec<(String, u64)>) {
        crate::stats::stats(&self.engine, out);
    }
}
