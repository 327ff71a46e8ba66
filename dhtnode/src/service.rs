//! The dht node as a server [`Service`]: the engine, the request dispatch (in
//! [`crate::requests`]), and the glue that runs on timers and wake-ups: it wakes Listen streams
//! when their channel changes and RedistCommit requests when their dump is written, ticks the
//! dumps, drives a running redistribution ([`Redistributor`]), and dumps at shutdown.

use crate::engine::{Engine, ListenerId};
use crate::redistribution::{RedistributionConfig, Redistributor};
use crate::requests;
use dht_persist::DumpScheduler;
use node_core::auth::Credentials;
use node_core::metrics::Families;
use node_core::protocol::batch::SharedBatch;
use node_core::protocol::dht::DhtRequest;
use node_core::protocol::{NodeKind, RequestCode};
use node_core::server::{Handled, Reply, Request, Service, StreamHandle, Wakeups};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

pub struct DhtNode {
    pub(crate) engine: Engine,
    wakeups: Wakeups,
    /// The stream of each Listen, to wake when its queue gets events.
    pub(crate) listen_streams: HashMap<ListenerId, StreamHandle>,
    /// Reused by PutBatch to decompress batches without allocating per request.
    pub(crate) batch_scratch: Vec<u8>,
    /// The batch every GetAll fills and sends within its turn (none holds one between turns).
    pub(crate) stream_batch: SharedBatch,
    /// Where GetAll picks its next window of a shard's keys from, for a moment.
    pub(crate) key_scratch: Vec<u64>,
    /// Periodic and shutdown dumps; `None` for a node that keeps nothing on disk (tests).
    pub(crate) dumper: Option<DumpScheduler>,
    /// Redistributions: the running one, and its Progress streams.
    pub(crate) redistributor: Redistributor,
    /// RedistCommit requests waiting for their dump: dump ticket → stream.
    pub(crate) commit_streams: HashMap<u64, StreamHandle>,
}

impl DhtNode {
    pub fn new(
        engine: Engine,
        wakeups: Wakeups,
        dumper: Option<DumpScheduler>,
        redistribution: RedistributionConfig,
    ) -> DhtNode {
        let redistributor = Redistributor::new(redistribution, wakeups.clone());
        DhtNode {
            engine,
            wakeups,
            listen_streams: HashMap::new(),
            batch_scratch: Vec::new(),
            stream_batch: SharedBatch::default(),
            key_scratch: Vec::new(),
            dumper,
            redistributor,
            commit_streams: HashMap::new(),
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Resumes the redistribution the state file says is unfinished (at start).
    pub fn resume_redistribution(
        &mut self,
        pending: crate::state::PendingRedistribution,
    ) -> Result<(), crate::redistribution::StartError> {
        self.redistributor
            .resume(&mut self.engine, pending)
            .map(drop)
    }

    /// Wakes the RedistCommit requests whose dump is done.
    fn wake_commits(&mut self) {
        let Some(dumper) = &self.dumper else {
            return;
        };
        for ticket in dumper.finished_commit_tickets() {
            if let Some(handle) = self.commit_streams.get(&ticket) {
                self.wakeups.wake(*handle);
            }
        }
    }

    /// Wakes the Listen streams whose queues got events.
    fn wake_listeners(&mut self) {
        for id in self.engine.take_ready_listeners() {
            if let Some(handle) = self.listen_streams.get(&id) {
                self.wakeups.wake(*handle);
            }
        }
    }
}

impl Service for DhtNode {
    fn kind(&self) -> NodeKind {
        NodeKind::Dht
    }

    fn software_version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    fn request_name(&self, code: RequestCode) -> Option<&'static str> {
        DhtRequest::from_code(code).map(DhtRequest::name)
    }

    fn admin_only(&self, code: RequestCode) -> bool {
        DhtRequest::from_code(code).is_some_and(DhtRequest::admin_only)
    }

    fn opens_stream(&self, code: RequestCode) -> bool {
        DhtRequest::from_code(code).is_some_and(DhtRequest::opens_stream)
    }

    fn handle(&mut self, request: &Request<'_>, reply: &mut Reply<'_>) -> Handled<Self> {
        let handled = requests::dispatch(self, request, reply);
        self.wake_listeners();
        handled
    }

    fn tick(&mut self, now: Instant) {
        if let Some(dumper) = &mut self.dumper {
            dumper.tick(&self.engine, now);
        }
        self.wake_commits();
        self.redistributor.tick(&mut self.engine);
    }

    fn background(&mut self, _now: Instant) -> bool {
        self.redistributor.background(&mut self.engine)
    }

    fn shutdown(&mut self) -> Result<(), String> {
        self.redistributor.shutdown();
        let Some(dumper) = &mut self.dumper else {
            return Ok(());
        };
        match dumper.dump_all_blocking(&self.engine) {
            0 => Ok(()),
            failed => Err(format!(
                "{failed} channel dump(s) failed (see above); records written since their \
                 previous dump are not on disk"
            )),
        }
    }

    fn metrics(&self, out: &mut Families) {
        crate::stats::metrics(self, out);
    }

    fn credentials_reloaded(&mut self, credentials: &Arc<Credentials>) {
        self.redistributor.set_credentials(credentials.clone());
    }

    fn stats(&self, out: &mut Vec<(String, u64)>) {
        crate::stats::stats(self, out);
    }
}
