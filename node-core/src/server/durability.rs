//! Durability for the nodes that write to disk (the logfiles node's buckets, the dht's change
//! log): the policy their config names ([`DurabilityPolicy`], with [`check_interval_ms`] for its
//! interval key), the timer of the `interval` policy ([`IntervalTimer`]), and group commit off
//! the event loop ([`Syncer`]): a thread that fdatasyncs the files of one group commit at a time
//! and reports back, waking the loop. One implementation serves every node.
//!
//! Epochs: every record written is part of the current epoch. [`Syncer::dispatch`] closes the
//! epoch (the caller has written all buffers of its files) and hands its files to the thread;
//! records written meanwhile belong to the next epoch. Epochs complete in order, so "epoch E is
//! durable" means every record written up to E's dispatch is on disk. Only one job is in flight,
//! which is what batches concurrent writes into one fsync (group commit).

use crate::config::ConfigError;
use crate::stats::LatencyHistogram;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// When a write is acknowledged and when data is fsynced: the logfiles node's `fsync` key and
/// the dht node's `durability` key take these three names (docs/protocol.md §7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityPolicy {
    /// Never fsync (the OS writes the data back): a process crash loses nothing written, a
    /// machine crash may lose what the OS had not written yet.
    None,
    /// Fsync every interval (the node's `..._interval_ms` key); writes are acknowledged once
    /// written, so a machine crash loses at most about one interval of them.
    Interval,
    /// Acknowledge a write only after its data is fsynced; concurrent writes share one fsync
    /// (group commit).
    Always,
}

impl DurabilityPolicy {
    /// Whether the node fsyncs at all (and so runs a [`Syncer`]).
    pub fn syncs(self) -> bool {
        self != DurabilityPolicy::None
    }

    /// Whether a write waits for its group commit before it is answered.
    pub fn waits_for_sync(self) -> bool {
        self == DurabilityPolicy::Always
    }
}

/// The range an `interval` policy's interval may take, in milliseconds: 1 ms to one hour.
pub const INTERVAL_MS_RANGE: std::ops::RangeInclusive<u32> = 1..=3_600_000;

/// Checks an interval key (`logfiles.fsync_interval_ms`, `dht.durability_interval_ms`); the
/// error names `key`.
pub fn check_interval_ms(key: &'static str, interval_ms: u32) -> Result<(), ConfigError> {
    if INTERVAL_MS_RANGE.contains(&interval_ms) {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        key,
        problem: format!(
            "{interval_ms} is not between {} and {}",
            INTERVAL_MS_RANGE.start(),
            INTERVAL_MS_RANGE.end()
        ),
    })
}

/// The clock of the `interval` policy: due once `interval` has passed since it was last
/// restarted (a node checks it on its tick and restarts it when it dispatches a commit).
#[derive(Debug, Clone, Copy)]
pub struct IntervalTimer {
    interval: Duration,
    last: Instant,
}

impl IntervalTimer {
    /// A timer that is first due `interval` after `now`.
    pub fn new(interval: Duration, now: Instant) -> IntervalTimer {
        IntervalTimer {
            interval,
            last: now,
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Whether the interval has passed since the last restart.
    pub fn is_due(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.last) >= self.interval
    }

    /// How long until it is due (zero when it is).
    pub fn remaining(&self, now: Instant) -> Duration {
        self.interval
            .saturating_sub(now.saturating_duration_since(self.last))
    }

    /// Starts the next interval at `now`.
    pub fn restart(&mut self, now: Instant) {
        self.last = now;
    }
}

/// One group commit: the files to fdatasync and the directories whose entries must be durable
/// (new bucket files and their slot and channel directories).
#[derive(Debug, Default)]
pub struct SyncJob {
    pub files: Vec<Arc<File>>,
    pub dirs: Vec<PathBuf>,
}

impl SyncJob {
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.dirs.is_empty()
    }
}

/// What a finished job reports.
#[derive(Debug)]
pub struct SyncDone {
    pub epoch: u64,
    /// The first failure, naming what failed.
    pub result: Result<(), String>,
    pub took: Duration,
}

/// The sync thread and the epoch counters.
#[derive(Debug)]
pub struct Syncer {
    jobs: SyncSender<(u64, SyncJob)>,
    done: Receiver<SyncDone>,
    /// The epoch records written now belong to.
    current_epoch: u64,
    /// The epoch being synced, if any.
    in_flight: Option<u64>,
    /// Jobs completed, and the total time they took (for stats).
    pub completed: u64,
    pub failures: u64,
    pub total_sync_time: Duration,
    /// How long each completed group commit took (`/metrics`).
    pub latency: LatencyHistogram,
}

impl Syncer {
    /// Starts the thread, named `thread_name`; `wake` is called after each job (it wakes the
    /// event loop).
    pub fn spawn(thread_name: &str, wake: impl Fn() + Send + 'static) -> std::io::Result<Syncer> {
        // Capacity 1: the loop never has more than one job outstanding.
        let (jobs, job_rx) = mpsc::sync_channel::<(u64, SyncJob)>(1);
        let (done_tx, done) = mpsc::channel();
        std::thread::Builder::new()
            .name(thread_name.to_string())
            .spawn(move || {
                for (epoch, job) in job_rx {
                    let started = Instant::now();
                    let result = run_job(&job);
                    let report = SyncDone {
                        epoch,
                        result,
                        took: started.elapsed(),
                    };
                    drop(job);
                    if done_tx.send(report).is_err() {
                        return;
                    }
                    wake();
                }
            })?;
        Ok(Syncer {
            jobs,
            done,
            current_epoch: 1,
            in_flight: None,
            completed: 0,
            failures: 0,
            total_sync_time: Duration::ZERO,
            latency: LatencyHistogram::default(),
        })
    }

    /// The sync thread a node with `policy` needs: none under `none`.
    pub fn for_policy(
        policy: DurabilityPolicy,
        thread_name: &str,
        wake: impl Fn() + Send + 'static,
    ) -> std::io::Result<Option<Syncer>> {
        if policy.syncs() {
            Syncer::spawn(thread_name, wake).map(Some)
        } else {
            Ok(None)
        }
    }

    /// The epoch a record written now belongs to.
    pub fn current_epoch(&self) -> u64 {
        self.current_epoch
    }

    pub fn is_busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Hands `job` (everything written in the current epoch) to the thread and opens the next
    /// epoch. Returns the epoch dispatched. The caller checks [`is_busy`](Self::is_busy) first.
    pub fn dispatch(&mut self, job: SyncJob) -> Result<u64, String> {
        assert!(self.in_flight.is_none(), "one group commit at a time");
        let epoch = self.current_epoch;
        self.jobs
            .send((epoch, job))
            .map_err(|_| "the sync thread has stopped".to_string())?;
        self.in_flight = Some(epoch);
        self.current_epoch += 1;
        Ok(epoch)
    }

    /// The finished job, if there is one.
    pub fn poll(&mut self) -> Option<SyncDone> {
        match self.done.try_recv() {
            Ok(done) => {
                debug_assert_eq!(Some(done.epoch), self.in_flight);
                self.in_flight = None;
                self.completed += 1;
                self.total_sync_time += done.took;
                self.latency.record(done.took);
                if done.result.is_err() {
                    self.failures += 1;
                }
                Some(done)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                let epoch = self.in_flight.take()?;
                self.failures += 1;
                Some(SyncDone {
                    epoch,
                    result: Err("the sync thread has stopped".into()),
                    took: Duration::ZERO,
                })
            }
        }
    }

    /// Waits for the job in flight (shutdown).
    pub fn wait(&mut self) -> Option<SyncDone> {
        self.in_flight?;
        let done = self.done.recv().ok();
        self.in_flight = None;
        done
    }
}

/// Fsyncs a directory's entries. A directory that no longer exists (its channel was removed
/// meanwhile) has nothing left to make durable.
pub fn sync_dir(dir: &std::path::Path) -> std::io::Result<()> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn run_job(job: &SyncJob) -> Result<(), String> {
    let mut first_error = None;
    for file in &job.files {
        if let Err(e) = file.sync_data() {
            first_error.get_or_insert(format!("fdatasync: {e}"));
        }
    }
    for dir in &job.dirs {
        if let Err(e) = sync_dir(dir) {
            first_error.get_or_insert(format!("fsync of directory {}: {e}", dir.display()));
        }
    }
    first_error.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_complete_in_order_and_failures_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        let mut syncer = Syncer::spawn("test-sync", move || {
            let _ = tx.send(());
        })
        .unwrap();
        let file = Arc::new(File::create(dir.path().join("f")).unwrap());
        assert_eq!(syncer.current_epoch(), 1);
        let epoch = syncer
            .dispatch(SyncJob {
                files: vec![file],
                dirs: vec![dir.path().to_path_buf()],
            })
            .unwrap();
        assert_eq!(epoch, 1);
        assert_eq!(syncer.current_epoch(), 2);
        rx.recv().unwrap();
        let done = syncer.poll().unwrap();
        assert_eq!((done.epoch, done.result), (1, Ok(())));
        assert!(!syncer.is_busy());

        syncer
            .dispatch(SyncJob {
                files: vec![],
                // Not a directory (a path through a file): the fsync cannot be done.
                dirs: vec![dir.path().join("f").join("under-a-file")],
            })
            .unwrap();
        rx.recv().unwrap();
        let done = syncer.poll().unwrap();
        assert_eq!(done.epoch, 2);
        assert!(done.result.unwrap_err().contains("under-a-file"));
        assert_eq!(syncer.failures, 1);
    }

    #[test]
    fn policies_parse_by_their_three_names_only() {
        #[derive(Deserialize)]
        struct Section {
            policy: DurabilityPolicy,
        }
        for (text, policy) in [
            ("none", DurabilityPolicy::None),
            ("interval", DurabilityPolicy::Interval),
            ("always", DurabilityPolicy::Always),
        ] {
            let parsed: Section = toml::from_str(&format!("policy = \"{text}\"")).unwrap();
            assert_eq!(parsed.policy, policy);
            assert_eq!(policy.syncs(), policy != DurabilityPolicy::None);
            assert_eq!(policy.waits_for_sync(), policy == DurabilityPolicy::Always);
        }
        for bad in ["\"sometimes\"", "\"Always\"", "1"] {
            assert!(
                toml::from_str::<Section>(&format!("policy = {bad}")).is_err(),
                "{bad}"
            );
        }
        assert!(Syncer::for_policy(DurabilityPolicy::None, "x", || {})
            .unwrap()
            .is_none());
        assert!(Syncer::for_policy(DurabilityPolicy::Interval, "x", || {})
            .unwrap()
            .is_some());
    }

    #[test]
    fn interval_keys_are_checked_naming_the_key() {
        assert!(check_interval_ms("dht.durability_interval_ms", 1).is_ok());
        assert!(check_interval_ms("dht.durability_interval_ms", 3_600_000).is_ok());
        for bad in [0, 3_600_001] {
            let err = check_interval_ms("dht.durability_interval_ms", bad).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!(
                    "bad value for dht.durability_interval_ms: {bad} is not between 1 and 3600000"
                )
            );
        }
    }

    #[test]
    fn the_interval_timer_is_due_once_its_interval_has_passed() {
        let start = Instant::now();
        let mut timer = IntervalTimer::new(Duration::from_millis(100), start);
        assert!(!timer.is_due(start));
        assert_eq!(timer.remaining(start), Duration::from_millis(100));
        let later = start + Duration::from_millis(99);
        assert!(!timer.is_due(later));
        assert_eq!(timer.remaining(later), Duration::from_millis(1));
        let due = start + Duration::from_millis(100);
        assert!(timer.is_due(due));
        assert_eq!(timer.remaining(due), Duration::ZERO);
        timer.restart(due);
        assert!(!timer.is_due(due + Duration::from_millis(50)));
        // A clock reading before the restart (another caller's older `now`) is not due.
        assert!(!timer.is_due(start));
    }
}
