//! systemd integration through the notify socket (`sd_notify`, via the `sd-notify` crate):
//! `STATUS=` lines while a daemon starts, `READY=1` once it serves, `STOPPING=1` when it begins a
//! graceful shutdown, and watchdog pings (`WATCHDOG=1`) from the thread whose progress matters
//! (the event loop's tick, dhtdump's main loop).
//!
//! Every function does nothing when the process was not started by systemd with
//! `Type=notify` (no `$NOTIFY_SOCKET`); a failure to notify is logged once, never fatal.
//!
//! Start-up that may outlast `TimeoutStartSec` (a dht node loading large dumps) reports its
//! progress with [`progress`], which also extends the start timeout by [`PROGRESS_EXTENDS`]
//! each time: a start that keeps progressing is never killed, one that hangs still is.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// How much longer systemd waits for READY=1 after each [`progress`] report.
pub const PROGRESS_EXTENDS: Duration = Duration::from_secs(300);

static FAILED_ONCE: AtomicBool = AtomicBool::new(false);

fn send(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        if !FAILED_ONCE.swap(true, Ordering::Relaxed) {
            tracing::warn!("cannot notify systemd ($NOTIFY_SOCKET): {err}");
        }
    }
}

/// The status line `systemctl status` shows.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// A start-up step done: the status line, and more time before systemd gives up on the start.
pub fn progress(text: &str) {
    let usec = u32::try_from(PROGRESS_EXTENDS.as_micros()).unwrap_or(u32::MAX);
    send(&[
        NotifyState::ExtendTimeoutUsec(usec),
        NotifyState::Status(text),
    ]);
}

/// The process serves: READY=1 with its status line.
pub fn ready(text: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(text)]);
}

/// A graceful shutdown began (systemd then applies `TimeoutStopSec` and stops the watchdog).
pub fn stopping(text: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(text)]);
}

/// The watchdog: pings at a third of `WatchdogSec`, so a late tick or two does not trip it.
struct Watchdog {
    every: Duration,
    next: Instant,
}

static WATCHDOG: Mutex<Option<Watchdog>> = Mutex::new(None);

/// Reads `$WATCHDOG_USEC` (for this process); returns the watchdog period, if systemd set one.
pub fn init_watchdog() -> Option<Duration> {
    let period = sd_notify::watchdog_enabled()?;
    let every = (period / 3).max(Duration::from_millis(1));
    *WATCHDOG.lock().unwrap_or_else(PoisonError::into_inner) = Some(Watchdog {
        every,
        next: Instant::now(),
    });
    Some(period)
}

/// Pings the watchdog when a ping is due (cheap otherwise: one uncontended lock).
pub fn watchdog_ping_if_due(now: Instant) {
    let mut watchdog = WATCHDOG.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(watchdog) = watchdog.as_mut() else {
        return;
    };
    if now >= watchdog.next {
        watchdog.next = now + watchdog.every;
        send(&[NotifyState::Watchdog]);
    }
}
