//! The node's dump scheduler: when the node dumps, and what it hands the dump writer. Every
//! `dump_period_s` and at shutdown, each channel (a shared handle to its shards) goes to the
//! [`DumpThread`], which reads the shards itself, one at a time under that shard's lock, and
//! compresses and writes them. The event loop copies nothing, so a dump costs requests only the
//! rare wait for the one shard being read (docs/benchmarks.md, "latency while dumping"). A
//! RedistCommit dumps one channel at once and waits for its outcome ([`DumpScheduler::commit_channel`]).
//!
//! Consistency: a periodic dump is not a point-in-time snapshot. Each shard is read at one
//! instant; writes to shards already read land in the next dump. That is what the reference's
//! dumps (a GetAll stream) gave too, and every record untouched during the dump is in it. The
//! shutdown dump runs after the last request, so it has everything.
//!
//! The scheduler sees the engine only as a [`DumpSource`]; the node's event loop calls
//! [`tick`](DumpScheduler::tick) on its timer.
//!
//! The change log: every dump records the log position the source had reached when the dump
//! was handed over ([`DumpSource::log_position`]), and a cycle that dumped every channel
//! (periodic, early or at shutdown) leaves its position in
//! [`take_covered`](DumpScheduler::take_covered), for the node to delete the log segments it
//! covers.

use crate::dump::writer::{
    CancelToken, DumpAction, DumpThread, ShardSource, WriterMode, PACED_SHARE_PERCENT,
};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The channels the scheduler dumps (the dht engine).
pub trait DumpSource {
    /// The channels now, in any order, each as a handle the writer reads shard by shard.
    fn for_each_channel(&self, each: &mut dyn FnMut(&str, Arc<dyn ShardSource>));
    /// One channel, if it exists.
    fn channel(&self, name: &str) -> Option<Arc<dyn ShardSource>>;
    /// How many channels there are.
    fn channel_count(&self) -> usize;
    /// The change-log position every change applied so far has (what a dump handed over now
    /// covers); `None` without a change log (dumps then record none).
    fn log_position(&self) -> Option<u64> {
        None
    }
}

/// Schedules the node's dumps and keeps their outcomes (see the module doc).
pub struct DumpScheduler {
    thread: DumpThread,
    period: Option<Duration>,
    next_cycle: Instant,
    /// Channels handed to the writer and not yet reported, with the tokens that stop them.
    in_flight: HashMap<String, CancelToken>,
    cycle_started: Option<Instant>,
    /// When the last complete cycle ended and how long it took (`/metrics`).
    last_cycle: Option<(Instant, Duration)>,
    created: Instant,
    /// Channel dumps written since start.
    dumps_written: u64,
    failures: u64,
    /// `failures` when the running cycle started: a cycle that adds none dumped everything.
    failures_at_cycle_start: u64,
    /// When the last cycle that dumped every channel started (or the node started, before
    /// the first): what the dumps on disk are at least as new as.
    last_good_cycle: Instant,
    /// The writer's CPU time when the current [`SHARE_WINDOW`] began, and when: a dump whose
    /// writer gets too little of the CPU in the idle class is paced instead.
    share_window: (Duration, Instant),
    /// Whether the writer is out of the idle class (paced) until the dumps are done.
    paced: bool,
    /// The log position the running cycle's dumps cover.
    cycle_position: Option<u64>,
    /// The position of the last cycle that dumped every channel, until taken.
    covered: Option<u64>,
    /// Dumps a RedistCommit waits for: ticket → channel and the token that stops it.
    commits: HashMap<u64, (String, CancelToken)>,
    /// Their outcomes, until the waiting request collects them.
    finished_commits: HashMap<u64, Result<(), String>>,
}

/// Finished commit outcomes kept for requests that have not collected them (each waiting
/// request removes its own; this only bounds leftovers).
const MAX_FINISHED_COMMITS: usize = 4096;

/// How long the scheduler watches the CPU share an idle-class writer gets before it decides
/// that the load starves it (then the writer is paced: a guaranteed share).
const SHARE_WINDOW: Duration = Duration::from_millis(500);

impl DumpScheduler {
    /// `period`: None dumps only at shutdown.
    pub fn new(thread: DumpThread, period: Option<Duration>) -> DumpScheduler {
        let next_cycle = Instant::now() + period.unwrap_or(Duration::MAX / 4);
        let share_window = (thread.cpu_time(), Instant::now());
        DumpScheduler {
            thread,
            period,
            next_cycle,
            in_flight: HashMap::new(),
            cycle_started: None,
            last_cycle: None,
            created: Instant::now(),
            dumps_written: 0,
            failures: 0,
            failures_at_cycle_start: 0,
            last_good_cycle: Instant::now(),
            share_window,
            paced: false,
            cycle_position: None,
            covered: None,
            commits: HashMap::new(),
            finished_commits: HashMap::new(),
        }
    }

    pub fn is_dumping(&self) -> bool {
        !self.in_flight.is_empty() || !self.commits.is_empty()
    }

    /// RedistCommit: dumps `channel` now, so that every record it holds at this moment is on
    /// disk when the dump's outcome is reported ([`DumpScheduler::take_commit`] with the returned
    /// ticket). `Ok(None)`: the channel does not exist, there is nothing to write. Like every
    /// dump, it gets the idle time and, when the load starves it, a paced share.
    pub fn commit_channel(
        &mut self,
        source: &impl DumpSource,
        channel: &str,
    ) -> Result<Option<u64>, String> {
        let Some(shards) = source.channel(channel) else {
            return Ok(None);
        };
        let (cancel, ticket) =
            self.queue(channel, shards, source.log_position())
                .map_err(|error| {
                    format!("cannot hand channel {channel} to the dump writer: {error}")
                })?;
        // The writer stays as it is: in the idle class it takes all the time the loop leaves,
        // and the starvation guard paces it when the load leaves none (pacing an idle node's
        // writer would make the waiting sender wait ten times longer).
        self.commits.insert(ticket, (channel.to_string(), cancel));
        Ok(Some(ticket))
    }

    /// The outcome of commit dump `ticket`, once it is known (then forgotten).
    pub fn take_commit(&mut self, ticket: u64) -> Option<Result<(), String>> {
        self.finished_commits.remove(&ticket)
    }

    /// A commit dump nobody waits for any more.
    pub fn forget_commit(&mut self, ticket: u64) {
        self.finished_commits.remove(&ticket);
    }

    /// Tickets of commit dumps whose outcome is known and not collected yet.
    pub fn finished_commit_tickets(&self) -> impl Iterator<Item = u64> + '_ {
        self.finished_commits.keys().copied()
    }

    /// Hands one channel to the writer, with the log position its dump covers.
    fn queue(
        &self,
        channel: &str,
        shards: Arc<dyn ShardSource>,
        position: Option<u64>,
    ) -> std::io::Result<(CancelToken, u64)> {
        match position {
            Some(position) => self.thread.dump_shards_covering(channel, shards, position),
            None => self.thread.dump_shards_ticketed(channel, shards),
        }
    }

    /// The log position of the last cycle that dumped every channel, once (see the module
    /// doc).
    pub fn take_covered(&mut self) -> Option<u64> {
        self.covered.take()
    }

    /// How the writer shares the CPU now (see [`WriterMode`]).
    pub fn writer_mode(&self) -> WriterMode {
        self.thread.mode()
    }

    /// Whether a cycle of every channel is running.
    pub fn cycle_running(&self) -> bool {
        self.cycle_started.is_some()
    }

    /// Dumps that failed since start.
    pub fn failures(&self) -> u64 {
        self.failures
    }

    /// The period of the periodic dumps; `None` when the node dumps only at shutdown.
    pub fn period(&self) -> Option<Duration> {
        self.period
    }

    /// How old the newest complete periodic dump is (measured from when its cycle started),
    /// or how long the node has run when none completed yet.
    pub fn last_dump_age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_good_cycle)
    }

    /// Channel dumps written since start.
    pub fn dumps_written(&self) -> u64 {
        self.dumps_written
    }

    /// Time since the last complete dump cycle ended, or since the node started when none has;
    /// and how long that cycle took.
    pub fn dump_age(&self, now: Instant) -> (Duration, Option<Duration>) {
        match self.last_cycle {
            Some((ended, took)) => (now.saturating_duration_since(ended), Some(took)),
            None => (now.saturating_duration_since(self.created), None),
        }
    }

    /// Logs what the writer finished; starts a cycle when one is due.
    pub fn tick(&mut self, source: &impl DumpSource, now: Instant) {
        self.report_outcomes();
        self.guard_against_starvation(now);
        if let Some(started) = self.cycle_started {
            if self.in_flight.is_empty() {
                let took = started.elapsed();
                tracing::info!("dump cycle done in {:.3} s", took.as_secs_f64());
                self.last_cycle = Some((now, took));
                if self.failures == self.failures_at_cycle_start {
                    self.last_good_cycle = started;
                    self.covered = self.cycle_position.or(self.covered);
                }
                self.cycle_started = None;
            }
        }
        if self.cycle_started.is_none() && now >= self.next_cycle {
            self.start_cycle(source, now);
        }
    }

    /// Idle-class writing keeps dumps from slowing requests, but a core saturated with requests
    /// would starve a dump for good: when the writer got less than half of the paced share
    /// ([`PACED_SHARE_PERCENT`]) over a [`SHARE_WINDOW`], it is paced (quanta with a bounded
    /// share, `dump::writer` `priority`) until the dumps are done, then goes back to the idle
    /// class.
    fn guard_against_starvation(&mut self, now: Instant) {
        let cpu = self.thread.cpu_time();
        if !self.is_dumping() {
            if self.paced {
                self.thread.set_mode(WriterMode::Background);
                self.paced = false;
            }
            self.share_window = (cpu, now);
            return;
        }
        let (cpu_before, since) = self.share_window;
        let wall = now.saturating_duration_since(since);
        if self.paced || wall < SHARE_WINDOW {
            return;
        }
        self.share_window = (cpu, now);
        let used = cpu.saturating_sub(cpu_before);
        if used * 200 < wall * PACED_SHARE_PERCENT {
            tracing::info!(
                "dump writer got {:.1}% of a core in the idle class over {:.1} s: pacing it \
                 ({PACED_SHARE_PERCENT}% at most) until the dumps are done",
                100.0 * used.as_secs_f64() / wall.as_secs_f64(),
                wall.as_secs_f64()
            );
            self.pace_writer();
        }
    }

    /// Gives the writer its guaranteed share (paced) until the dumps are done.
    fn pace_writer(&mut self) {
        if !self.paced {
            self.thread.set_mode(WriterMode::Paced);
            self.paced = true;
        }
    }

    /// Hands every channel to the writer now.
    pub fn start_cycle(&mut self, source: &impl DumpSource, now: Instant) {
        self.cycle_started = Some(now);
        self.failures_at_cycle_start = self.failures;
        if let Some(period) = self.period {
            self.next_cycle = now + period;
        }
        tracing::info!("dump cycle started: {} channels", source.channel_count());
        self.hand_over_all(source);
    }

    /// Hands every channel over, covering the source's log position now.
    fn hand_over_all(&mut self, source: &impl DumpSource) {
        let position = source.log_position();
        self.cycle_position = position;
        source.for_each_channel(
            &mut |name, shards| match self.queue(name, shards, position) {
                Ok((cancel, _)) => {
                    self.in_flight.insert(name.to_string(), cancel);
                }
                Err(error) => {
                    self.failures += 1;
                    tracing::error!("cannot hand channel {name} to the dump writer: {error}");
                }
            },
        );
    }

    fn report_outcomes(&mut self) {
        for outcome in self.thread.poll_outcomes() {
            let channel = &outcome.channel;
            if let Some((_, _)) = self.commits.remove(&outcome.ticket) {
                let result = match (&outcome.action, &outcome.result) {
                    (DumpAction::Dump, Ok(())) => Ok(()),
                    (_, Err(error)) => Err(format!("dump of channel {channel} failed: {error}")),
                    (_, Ok(())) => Err(format!("dump of channel {channel} did not complete")),
                };
                match &result {
                    Ok(()) => tracing::debug!(
                        "commit dump of channel {channel}: {} records, {:.3} s",
                        outcome.records,
                        outcome.seconds
                    ),
                    Err(error) => tracing::error!("commit dump FAILED: {error}"),
                }
                if self.finished_commits.len() < MAX_FINISHED_COMMITS {
                    self.finished_commits.insert(outcome.ticket, result);
                }
                continue;
            }
            if matches!(outcome.action, DumpAction::Dump | DumpAction::Aborted) {
                self.in_flight.remove(channel);
            }
            match (&outcome.action, &outcome.result) {
                (DumpAction::Dump, Ok(())) => {
                    self.dumps_written += 1;
                    tracing::info!(
                        "dumped channel {channel}: {} records, {} bytes, {:.3} s",
                        outcome.records,
                        outcome.bytes,
                        outcome.seconds
                    )
                }
                (DumpAction::Dump, Err(error)) => {
                    self.failures += 1;
                    tracing::error!("dump of channel {channel} FAILED, previous dump kept: {error}")
                }
                (DumpAction::Aborted, result) => {
                    tracing::info!("dump of channel {channel} called off: {result:?}")
                }
                (DumpAction::MoveAside, Ok(())) => {
                    tracing::info!("dump files of removed channel {channel} moved aside")
                }
                (DumpAction::MoveAside, Err(error)) => {
                    tracing::error!(
                        "cannot move the dump files of removed channel {channel} aside: {error}"
                    )
                }
                (DumpAction::ThreadDied, _) => {
                    self.failures += 1;
                    self.in_flight.clear();
                    for (ticket, _) in self.commits.drain() {
                        self.finished_commits
                            .insert(ticket, Err("the dump writer thread died".into()));
                    }
                    tracing::error!(
                        "the dump writer thread died; no more dumps will be written: {:?}",
                        outcome.result
                    )
                }
            }
        }
    }

    /// RemoveChannel: stop dumping the channel, and move its dump files aside so they are
    /// neither lost nor loaded again.
    pub fn channel_removed(&mut self, channel: &str) {
        self.cancel_dumps_of(channel);
        self.move_aside(channel);
    }

    /// Calls off the dumps of `channel` in progress (it was removed): their files are not
    /// written.
    pub fn cancel_dumps_of(&mut self, channel: &str) {
        if let Some(cancel) = self.in_flight.get(channel) {
            cancel.store(true, Ordering::Relaxed);
        }
        for (removed, cancel) in self.commits.values() {
            if removed == channel {
                cancel.store(true, Ordering::Relaxed);
            }
        }
    }

    /// Moves the dump files of the removed `channel` aside (see [`DumpThread::move_aside`]).
    pub fn move_aside(&mut self, channel: &str) {
        if let Err(error) = self.thread.move_aside(channel) {
            tracing::error!("cannot move the dump of removed channel {channel} aside: {error}");
        }
    }

    /// The shutdown dump: every channel, completely, waiting for the writer. Periodic dumps still
    /// in flight are called off first (their previous dumps stay), because they may have read
    /// shards before the last writes.
    /// Returns how many dumps failed (they are logged).
    pub fn dump_all_blocking(&mut self, source: &impl DumpSource) -> u64 {
        let failures_before = self.failures;
        // No requests are served any more: the writer may have the whole core.
        self.thread.set_mode(WriterMode::Full);
        for cancel in self.in_flight.values() {
            cancel.store(true, Ordering::Relaxed);
        }
        let started = Instant::now();
        self.hand_over_all(source);
        if let Err(error) = self.thread.wait_idle() {
            tracing::error!("dump writer failed during the shutdown dump: {error}");
        }
        self.report_outcomes();
        self.in_flight.clear();
        self.cycle_started = None;
        if self.failures == failures_before {
            self.covered = self.cycle_position.or(self.covered);
        }
        tracing::info!(
            "shutdown dump done in {:.3} s",
            started.elapsed().as_secs_f64()
        );
        self.failures - failures_before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dump::format::read_dump;
    use crate::layout::{channel_file, DUMP_SUFFIX, REMOVED_DIR};
    use std::collections::BTreeMap;
    use std::path::Path;

    /// Channels of two shards each: even keys in shard 0, odd keys in shard 1.
    struct Shards(Vec<Vec<(u64, Vec<u8>)>>);

    impl ShardSource for Shards {
        fn shard_count(&self) -> usize {
            self.0.len()
        }
        fn for_each_in_shard(&self, index: usize, each: &mut dyn FnMut(u64, u64, &[u8])) {
            for (key, value) in &self.0[index] {
                each(*key, 0, value);
            }
        }
    }

    #[derive(Default)]
    struct Channels(BTreeMap<String, Arc<Shards>>);

    impl Channels {
        fn with(mut self, name: &str, keys: u64) -> Channels {
            let mut shards = vec![Vec::new(), Vec::new()];
            for key in 0..keys {
                shards[(key % 2) as usize].push((key, format!("{name} {key}").into_bytes()));
            }
            self.0.insert(name.to_owned(), Arc::new(Shards(shards)));
            self
        }
    }

    impl DumpSource for Channels {
        fn for_each_channel(&self, each: &mut dyn FnMut(&str, Arc<dyn ShardSource>)) {
            for (name, shards) in &self.0 {
                each(name, shards.clone());
            }
        }
        fn channel(&self, name: &str) -> Option<Arc<dyn ShardSource>> {
            let shards: Arc<Shards> = self.0.get(name)?.clone();
            Some(shards)
        }
        fn channel_count(&self) -> usize {
            self.0.len()
        }
    }

    fn keys_in(dir: &Path, channel: &str) -> Vec<u64> {
        let file = std::fs::File::open(channel_file(dir, channel, DUMP_SUFFIX)).unwrap();
        let mut keys = Vec::new();
        read_dump(file, |key, value| {
            assert_eq!(value, format!("{channel} {key}").as_bytes());
            keys.push(key);
        })
        .unwrap();
        keys.sort_unstable();
        keys
    }

    fn scheduler(dir: &Path, period: Option<Duration>) -> DumpScheduler {
        DumpScheduler::new(DumpThread::spawn(dir.to_path_buf()).unwrap(), period)
    }

    /// Ticks until `done`, failing after a generous deadline.
    fn tick_until(
        scheduler: &mut DumpScheduler,
        source: &Channels,
        mut done: impl FnMut(&mut DumpScheduler) -> bool,
    ) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(scheduler) {
            assert!(Instant::now() < deadline, "the dumps did not finish");
            scheduler.tick(source, Instant::now());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn the_shutdown_dump_writes_every_channel_whole() {
        let dir = tempfile::tempdir().unwrap();
        let source = Channels::default().with("a", 1000).with("b", 3);
        let mut scheduler = scheduler(dir.path(), None);
        assert_eq!(scheduler.dump_all_blocking(&source), 0);
        assert_eq!(scheduler.dumps_written(), 2);
        assert!(!scheduler.is_dumping());
        assert_eq!(keys_in(dir.path(), "a"), (0..1000).collect::<Vec<_>>());
        assert_eq!(keys_in(dir.path(), "b"), vec![0, 1, 2]);
    }

    #[test]
    fn a_due_cycle_dumps_every_channel_and_counts_as_good() {
        let dir = tempfile::tempdir().unwrap();
        let source = Channels::default().with("a", 10).with("b", 20);
        let mut scheduler = scheduler(dir.path(), Some(Duration::ZERO));
        let started = Instant::now();
        scheduler.tick(&source, started);
        assert!(scheduler.is_dumping());
        tick_until(&mut scheduler, &source, |s| s.dumps_written() >= 2);
        tick_until(&mut scheduler, &source, |s| {
            s.dump_age(Instant::now()).1.is_some()
        });
        assert_eq!(scheduler.failures(), 0);
        assert!(scheduler.last_dump_age(Instant::now()) <= started.elapsed());
        assert_eq!(keys_in(dir.path(), "b"), (0..20).collect::<Vec<_>>());
    }

    #[test]
    fn a_commit_reports_its_own_outcome_once() {
        let dir = tempfile::tempdir().unwrap();
        let source = Channels::default().with("a", 5).with("b", 5);
        let mut scheduler = scheduler(dir.path(), None);
        assert_eq!(scheduler.commit_channel(&source, "missing"), Ok(None));
        let ticket = scheduler.commit_channel(&source, "a").unwrap().unwrap();
        tick_until(&mut scheduler, &source, |s| {
            s.finished_commit_tickets().any(|t| t == ticket)
        });
        assert_eq!(scheduler.take_commit(ticket), Some(Ok(())));
        assert_eq!(scheduler.take_commit(ticket), None);
        assert_eq!(keys_in(dir.path(), "a"), (0..5).collect::<Vec<_>>());
        // Only the committed channel was written, and a commit is not a periodic dump.
        assert!(!channel_file(dir.path(), "b", DUMP_SUFFIX).exists());
        assert_eq!(scheduler.dumps_written(), 0);
    }

    #[test]
    fn a_removed_channel_has_its_files_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let source = Channels::default().with("a", 5);
        let mut scheduler = scheduler(dir.path(), None);
        scheduler.dump_all_blocking(&source);
        scheduler.channel_removed("a");
        let removed = dir.path().join(REMOVED_DIR);
        tick_until(&mut scheduler, &source, |_| {
            std::fs::read_dir(&removed).is_ok_and(|mut files| files.next().is_some())
        });
        assert!(!channel_file(dir.path(), "a", DUMP_SUFFIX).exists());
    }

    /// One channel whose first shard waits until the test opens it: its dump's writer uses no
    /// CPU until then, like one the load keeps off the core.
    struct Gated {
        shards: Arc<GatedShards>,
    }

    struct GatedShards {
        open: std::sync::Mutex<bool>,
        opened: std::sync::Condvar,
    }

    impl ShardSource for GatedShards {
        fn shard_count(&self) -> usize {
            2
        }
        fn for_each_in_shard(&self, index: usize, each: &mut dyn FnMut(u64, u64, &[u8])) {
            let mut open = self.open.lock().unwrap();
            while !*open {
                open = self.opened.wait(open).unwrap();
            }
            each(index as u64, 0, b"gated");
        }
    }

    impl DumpSource for Gated {
        fn for_each_channel(&self, each: &mut dyn FnMut(&str, Arc<dyn ShardSource>)) {
            each("gated", self.shards.clone());
        }
        fn channel(&self, _: &str) -> Option<Arc<dyn ShardSource>> {
            Some(self.shards.clone())
        }
        fn channel_count(&self) -> usize {
            1
        }
    }

    /// A dump whose writer gets (almost) no CPU over a share window is paced; when the dumps are
    /// done the writer goes back to the idle class; the shutdown dump runs at full speed. The
    /// clock is the one the test hands to `tick`.
    #[test]
    fn a_starved_dump_is_paced_until_the_dumps_are_done() {
        let dir = tempfile::tempdir().unwrap();
        let shards = Arc::new(GatedShards {
            open: std::sync::Mutex::new(false),
            opened: std::sync::Condvar::new(),
        });
        let source = Gated { shards };
        let mut scheduler = scheduler(dir.path(), None);
        let start = Instant::now();
        scheduler.tick(&source, start);
        scheduler.start_cycle(&source, start);
        scheduler.tick(&source, start + SHARE_WINDOW / 2);
        assert_eq!(
            scheduler.writer_mode(),
            WriterMode::Background,
            "too soon to judge"
        );
        scheduler.tick(&source, start + SHARE_WINDOW * 2);
        assert_eq!(scheduler.writer_mode(), WriterMode::Paced);

        *source.shards.open.lock().unwrap() = true;
        source.shards.opened.notify_all();
        let deadline = Instant::now() + Duration::from_secs(30);
        while scheduler.is_dumping() {
            assert!(Instant::now() < deadline, "the dump did not finish");
            scheduler.tick(&source, Instant::now());
            std::thread::sleep(Duration::from_millis(5));
        }
        scheduler.tick(&source, Instant::now());
        assert_eq!(scheduler.writer_mode(), WriterMode::Background);
        assert_eq!(scheduler.dumps_written(), 1);

        assert_eq!(scheduler.dump_all_blocking(&source), 0);
        assert_eq!(scheduler.writer_mode(), WriterMode::Full);
    }
}
