//! The dht node as a server [`Service`]: the engine, the request handlers (in [`crate::requests`])
//! and the glue that wakes Listen streams when their channel changes, RedistCommit requests
//! when their dump is written, and drives a running redistribution ([`Redistributor`]).

use crate::engine::{Engine, ListenerId};
use crate::redistribution::{RedistributionConfig, Redistributor};
use crate::requests;
use dht_persist::DumpScheduler;
use node_core::metrics::Families;
use node_core::protocol::batch::SharedBatch;
use node_core::protocol::{dht, NodeKind, RequestCode};
use node_core::server::{Handled, Reply, Request, Service, StreamHandle, Wakeups};
use std::collections::HashMap;
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

/// The dump metrics (docs/operations.md, "Metrics").
fn dumper_metrics(dumper: &DumpScheduler, out: &mut Families) {
    let (age, took) = dumper.dump_age(Instant::now());
    out.gauge(
        "swarm_dht_dump_age_seconds",
        "Seconds since the last complete dump cycle ended (since start when none has).",
        &[],
        age.as_secs_f64(),
    );
    if let Some(took) = took {
        out.gauge(
            "swarm_dht_dump_duration_seconds",
            "How long the last complete dump cycle took.",
            &[],
            took.as_secs_f64(),
        );
    }
    out.gauge(
        "swarm_dht_dumping",
        "1 while a dump is being written.",
        &[],
        f64::from(u8::from(dumper.is_dumping())),
    );
    out.counter(
        "swarm_dht_dumps_total",
        "Channel dumps written since start.",
        &[],
        dumper.dumps_written() as f64,
    );
    out.counter(
        "swarm_dht_dump_failures_total",
        "Channel dumps that failed since start (the previous dump file was kept).",
        &[],
        dumper.failures() as f64,
    );
}

impl Service for DhtNode {
    fn kind(&self) -> NodeKind {
        NodeKind::Dht
    }

    fn software_version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    fn request_name(&self, code: RequestCode) -> Option<&'static str> {
        dht::request_name(code)
    }

    fn admin_only(&self, code: RequestCode) -> bool {
        dht::is_admin_request(code)
    }

    fn opens_stream(&self, code: RequestCode) -> bool {
        dht::opens_stream(code)
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
        for name in self.engine.channel_names() {
            let size = self.engine.channel_size(name);
            let labels = [("channel", name)];
            out.gauge(
                "swarm_channel_records",
                "Records stored per channel.",
                &labels,
                size.records as f64,
            );
            out.gauge(
                "swarm_channel_bytes",
                "Bytes stored per channel (dht: Σ 8 + value length).",
                &labels,
                size.bytes as f64,
            );
        }
        out.gauge(
            "swarm_dht_listeners",
            "Listen streams registered.",
            &[],
            self.engine.listener_count() as f64,
        );
        let redistribution = self.redistributor.state(&self.engine);
        let progress = &redistribution.progress;
        out.gauges(&[
            (
                "swarm_dht_redistribution_running",
                "1 while this node moves records to others.",
                u64::from(redistribution.running),
            ),
            (
                "swarm_dht_redistribution_moved_records",
                "Records moved by the running (or last) redistribution.",
                progress.moved,
            ),
            (
                "swarm_dht_redistribution_total_records",
                "Records the running (or last) redistribution has to move.",
                progress.total,
            ),
            (
                "swarm_dht_redistribution_failures",
                "Failed attempts of the running (or last) redistribution.",
                progress.failures,
            ),
        ]);
        if let Some(dumper) = &self.dumper {
            dumper_metrics(dumper, out);
        }
    }

    fn stats(&self, out: &mut Vec<(String, u64)>) {
        let size = self.engine.size();
        out.push(("total_records".into(), size.records));
        out.push(("total_bytes".into(), size.bytes));
        out.push(("listeners".into(), self.engine.listener_count() as u64));
        let redistribution = self.redistributor.state(&self.engine);
        out.push(("redistributing".into(), u64::from(redistribution.running)));
        out.push(("redistribution_moved".into(), redistribution.progress.moved));
        if let Some(dumper) = &self.dumper {
            out.push(("dumping".into(), u64::from(dumper.is_dumping())));
            out.push(("dump_failures".into(), dumper.failures()));
            // Dump age against the period: what `swarmctl health` checks.
            let period_s = dumper.period().map_or(0, |period| period.as_secs());
            out.push(("dump_period_s".into(), period_s));
            let age_s = dumper.last_dump_age(Instant::now()).as_secs();
            out.push(("last_dump_age_s".into(), age_s));
        }
        for name in self.engine.channel_names() {
            let size = self.engine.channel_size(name);
            out.push((format!("channel/{name}/records"), size.records));
            out.push((format!("channel/{name}/bytes"), size.bytes));
        }
    }
}
