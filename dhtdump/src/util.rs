//! Small helpers shared by dhtdump and dumptool: UTC timestamps for log lines and reports, an
//! interruptible sleep, and a cheap random delay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The longest a sleeping dhtdump goes without looking at its stop flag.
pub const STOP_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Sleeps for `duration`, waking every [`STOP_CHECK_INTERVAL`] at most to look at `stop` (and
/// to ping the systemd watchdog when one is due). Returns false when `stop` was set (at once,
/// or during the sleep).
pub fn sleep_unless_stopped(stop: &AtomicBool, duration: Duration) -> bool {
    let deadline = Instant::now() + duration;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        node_core::systemd::watchdog_ping_if_due(now);
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(STOP_CHECK_INTERVAL));
    }
}

/// A uniformly spread delay in `[0, period)`, at millisecond resolution. Taken from the OS
/// generator; should that fail, from the clock and the process id (the point is only that
/// sidecars started together do not all dump at once).
pub fn random_delay(period: Duration) -> Duration {
    let period_ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX);
    if period_ms == 0 {
        return Duration::ZERO;
    }
    let random = getrandom::u64().unwrap_or_else(|_| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos() as u64)
            .unwrap_or(0);
        // splitmix64 of the clock and the pid.
        let mut x = nanos ^ (u64::from(std::process::id()) << 32);
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    });
    Duration::from_millis(random % period_ms)
}

/// `YYYY-MM-DD HH:MM:SS UTC` for a time in Unix seconds.
pub fn utc_time(unix_s: u64) -> String {
    format!("{} UTC", node_core::log::utc_date_time(unix_s))
}

/// [`utc_time`] of a `SystemTime` (the epoch for a clock before 1970).
pub fn utc_system_time(time: SystemTime) -> String {
    utc_time(
        time.duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc_time(1_700_000_000), "2023-11-14 22:13:20 UTC");
    }

    #[test]
    fn random_delays_stay_below_the_period() {
        assert_eq!(random_delay(Duration::ZERO), Duration::ZERO);
        let period = Duration::from_secs(2);
        let delays: Vec<Duration> = (0..200).map(|_| random_delay(period)).collect();
        assert!(delays.iter().all(|delay| *delay < period));
        // Spread, not constant.
        assert!(delays.iter().any(|delay| *delay != delays[0]));
    }

    #[test]
    fn sleep_ends_early_when_stopped() {
        let stop = AtomicBool::new(false);
        let started = Instant::now();
        assert!(sleep_unless_stopped(&stop, Duration::from_millis(30)));
        assert!(started.elapsed() >= Duration::from_millis(30));
        stop.store(true, Ordering::SeqCst);
        let started = Instant::now();
        assert!(!sleep_unless_stopped(&stop, Duration::from_secs(60)));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
