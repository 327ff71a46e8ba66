//! Fsyncing off the event loop: a thread that fdatasyncs the files of one group commit at a time
//! and reports back, waking the loop.
//!
//! Epochs: every record written is part of the current epoch. [`Syncer::dispatch`] closes the
//! epoch (the caller has written all buffers of its files) and hands its files to the thread;
//! records written meanwhile belong to the next epoch. Epochs complete in order, so "epoch E is
//! durable" means every record written up to E's dispatch is on disk. Only one job is in flight,
//! which is what batches concurrent Puts into one fsync (group commit).

use node_core::stats::LatencyHistogram;
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    /// Starts the thread; `wake` is called after each job (it wakes the event loop).
    pub fn spawn(wake: impl Fn() + Send + 'static) -> std::io::Result<Syncer> {
        // Capacity 1: the loop never has more than one job outstanding.
        let (jobs, job_rx) = mpsc::sync_channel::<(u64, SyncJob)>(1);
        let (done_tx, done) = mpsc::channel();
        std::thread::Builder::new()
            .name("logfiles-sync".into())
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
        let mut syncer = Syncer::spawn(move || {
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
}
