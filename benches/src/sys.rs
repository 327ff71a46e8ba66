//! Process measurements the benchmark binaries share: CPU time from `getrusage`, and memory and
//! CPU time of any process from `/proc`.

use std::time::Duration;

/// User and system CPU time of a process (or of this one).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTimes {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTimes {
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    /// The time spent between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

fn timeval(tv: libc::timeval) -> Duration {
    Duration::from_secs(tv.tv_sec.max(0) as u64) + Duration::from_micros(tv.tv_usec.max(0) as u64)
}

/// CPU time of this process, all threads (`getrusage(RUSAGE_SELF)`).
pub fn self_cpu() -> CpuTimes {
    // SAFETY: getrusage only writes the struct we pass, which is plain data and zeroed.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    CpuTimes {
        user: timeval(usage.ru_utime),
        system: timeval(usage.ru_stime),
    }
}

/// A `kB` line of `/proc/<pid>/status` (`VmRSS`, `VmHWM`, ...), in bytes.
pub fn proc_status_kb(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// Resident set size of this process, in bytes.
pub fn self_rss() -> u64 {
    proc_status_kb("self", "VmRSS").unwrap_or(0)
}

/// Resident set size of process `pid`, in bytes.
pub fn pid_rss(pid: u32) -> Option<u64> {
    proc_status_kb(&pid.to_string(), "VmRSS")
}

/// CPU time of process `pid` (all threads), from `/proc/<pid>/stat` fields 14 and 15.
pub fn pid_cpu(pid: u32) -> Option<CpuTimes> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; the fields after it follow its ')'.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state), so field N is at index N - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let to_duration = |t: u64| Duration::from_nanos(t * 1_000_000_000 / ticks);
    Some(CpuTimes {
        user: to_duration(utime),
        system: to_duration(stime),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        assert!(self_rss() > 0);
        let me = std::process::id();
        assert!(pid_rss(me).unwrap() > 0);
        assert!(pid_cpu(me).is_some());
        let before = self_cpu();
        let mut x = 0u64;
        for i in 0..10_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        assert!(self_cpu().since(&before).total() > Duration::ZERO || x == 0);
    }
}
