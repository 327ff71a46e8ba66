//! What every process exposes whatever its kind: `swarm_info` (kind and version), `swarm_ready`,
//! `swarm_uptime_seconds`, and the standard process metrics Prometheus client libraries use
//! (`process_resident_memory_bytes`, `process_start_time_seconds`, `process_open_fds`,
//! `process_max_fds`), read from `/proc/self` at scrape time.

use super::{Families, Identity};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static STARTED: OnceLock<(Instant, SystemTime)> = OnceLock::new();

/// Notes the process's start; call it first thing in `main` (later calls change nothing).
pub fn mark_start() {
    STARTED.get_or_init(|| (Instant::now(), SystemTime::now()));
}

fn started() -> (Instant, SystemTime) {
    *STARTED.get_or_init(|| (Instant::now(), SystemTime::now()))
}

/// Whole seconds since [`mark_start`] (GetStats' `uptime_s`).
pub fn uptime_s() -> u64 {
    started().0.elapsed().as_secs()
}

/// Resident set size in bytes, from `/proc/self/statm` (pages × page size).
pub fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page_size).ok()?)
}

/// Open file descriptors, counted in `/proc/self/fd`.
pub fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// The soft limit on open descriptors (RLIMIT_NOFILE).
pub fn max_fds() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and reads nothing else.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (result == 0).then_some(limit.rlim_cur)
}

/// Adds the metrics of the module doc.
pub fn add_process(identity: &Identity, ready: bool, out: &mut Families) {
    out.gauge(
        "swarm_info",
        "Always 1: the process's kind (dht, logfiles, queue, dhtdump) and version.",
        &[("kind", &identity.kind), ("version", &identity.version)],
        1.0,
    );
    out.gauge(
        "swarm_ready",
        "1 once the process serves (data loaded, READY=1 sent to systemd), 0 while it starts.",
        &[],
        f64::from(u8::from(ready)),
    );
    let (since, at) = started();
    out.gauge(
        "swarm_uptime_seconds",
        "Seconds since the process started.",
        &[],
        since.elapsed().as_secs_f64(),
    );
    let start_s = at
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64());
    out.gauge(
        "process_start_time_seconds",
        "Start time of the process since the Unix epoch, in seconds.",
        &[],
        start_s,
    );
    let optional = [
        (
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            resident_bytes(),
        ),
        (
            "process_open_fds",
            "Number of open file descriptors.",
            open_fds(),
        ),
        (
            "process_max_fds",
            "Maximum number of open file descriptors (soft limit).",
            max_fds(),
        ),
    ];
    for (name, help, value) in optional {
        if let Some(value) = value {
            out.gauge(name, help, &[], value as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_figures_are_read() {
        let rss = resident_bytes().expect("statm");
        assert!(rss > 100_000, "{rss}");
        let open = open_fds().expect("fd dir");
        assert!(open >= 3 && open <= max_fds().expect("rlimit"), "{open}");
    }
}
