//! Unmapping big bucket maps off the event loop. Reads map a bucket file whole; unmapping a map
//! whose pages were all read costs the kernel a page-table walk of the whole map (measured: 21–24
//! ms for a 580 MB bucket, more for a 1 GB one), and every other request on the node would wait
//! for it. Maps of at least [`INLINE_UNMAP_MAX_BYTES`] are handed to a thread that drops them;
//! smaller ones are dropped at once. The thread is in the `SCHED_IDLE` class: on a node pinned to
//! one core it unmaps when the event loop has nothing to do, and the loop preempts it (it would
//! otherwise take the core for the whole unmap, or inherit a real-time class and keep it).
//!
//! Safe with truncation: a map handed over is never read again, and unmapping a file that was
//! cut meanwhile is harmless.

use memmap2::Mmap;
use std::sync::mpsc::{self, SyncSender, TrySendError};

/// Maps below this size are unmapped on the caller's thread (well under a millisecond).
pub const INLINE_UNMAP_MAX_BYTES: usize = 16 * 1024 * 1024;
/// Maps waiting for the thread at most; beyond, the caller unmaps (backpressure, never memory).
pub const QUEUED_MAPS_MAX: usize = 64;

/// The unmapping thread's queue.
#[derive(Debug)]
pub struct Unmapper {
    /// `None` when the thread could not be started: every map is dropped inline.
    queue: Option<SyncSender<Mmap>>,
}

impl Unmapper {
    /// Starts the thread (inline unmapping when it cannot be started, with a warning).
    pub fn spawn() -> Unmapper {
        let (queue, maps) = mpsc::sync_channel::<Mmap>(QUEUED_MAPS_MAX);
        let started = std::thread::Builder::new()
            .name("logfiles-unmap".into())
            .spawn(move || {
                idle_class();
                maps.into_iter().for_each(drop);
            });
        match started {
            Ok(_) => Unmapper { queue: Some(queue) },
            Err(e) => {
                tracing::warn!("cannot start the unmapping thread ({e}); big reads unmap inline");
                Unmapper { queue: None }
            }
        }
    }

    /// Unmaps `map`: here when it is small or the queue is full, else on the thread.
    pub fn release(&self, map: Mmap) {
        let queued = match &self.queue {
            Some(queue) if map.len() >= INLINE_UNMAP_MAX_BYTES => queue.try_send(map),
            _ => Err(TrySendError::Full(map)),
        };
        if let Err(TrySendError::Full(map) | TrySendError::Disconnected(map)) = queued {
            drop(map);
        }
    }
}

/// Puts the calling thread in the `SCHED_IDLE` class (a warning when it cannot).
fn idle_class() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads `param` during the call only; pid 0 is this thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        tracing::warn!(
            "cannot put the unmapping thread in the idle class: {}",
            std::io::Error::last_os_error()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    /// A map of a sparse file of `len` bytes, and the file's path.
    fn map_of(dir: &std::path::Path, n: usize, len: usize) -> (PathBuf, Mmap) {
        let path = dir.join(format!("bucket-{n}"));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(len as u64).unwrap();
        // SAFETY: a file of this test, not changed while mapped.
        let map = unsafe { Mmap::map(&file) }.unwrap();
        (path, map)
    }

    fn mapped_now(path: &std::path::Path) -> bool {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines()
            .any(|line| line.ends_with(&*path.to_string_lossy()))
    }

    /// Every map released is unmapped: small ones at once, big ones by the thread, and the big
    /// ones beyond what the queue holds at once as well.
    #[test]
    fn every_released_map_is_unmapped() {
        let dir = tempfile::tempdir().unwrap();
        let unmapper = Unmapper::spawn();
        assert!(unmapper.queue.is_some());
        let (small_path, small) = map_of(dir.path(), 0, 4096);
        assert!(mapped_now(&small_path));
        unmapper.release(small);
        assert!(!mapped_now(&small_path), "a small map is unmapped at once");
        let maps: Vec<_> = (1..=QUEUED_MAPS_MAX + 4)
            .map(|n| map_of(dir.path(), n, INLINE_UNMAP_MAX_BYTES))
            .collect();
        let paths: Vec<PathBuf> = maps.iter().map(|(path, _)| path.clone()).collect();
        for (_, map) in maps {
            unmapper.release(map);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while paths.iter().any(|p| mapped_now(p)) {
            assert!(Instant::now() < deadline, "big maps left mapped");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
