//! dhtdump's signals, handled on a thread of their own: SIGTERM and SIGINT set the stop flag
//! (the dump loop looks at it between records and at least every 100 ms while sleeping);
//! SIGHUP reopens root.log and stats.log at once (logrotate), whatever the loop is doing, and
//! sets the flag that makes the next cycle read the key file again (`cycle::Sidecar`).

use node_core::log::NodeLogs;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Installs the handlers and starts the thread that acts on them.
pub fn install(
    stop: Arc<AtomicBool>,
    reload_key: Arc<AtomicBool>,
    logs: NodeLogs,
) -> std::io::Result<()> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                match signal {
                    SIGHUP => {
                        match logs.reopen() {
                            Ok(()) => tracing::info!("SIGHUP: log files reopened"),
                            Err(err) => {
                                tracing::error!("SIGHUP: cannot reopen the log files: {err}")
                            }
                        }
                        reload_key.store(true, Ordering::SeqCst);
                    }
                    _ => {
                        if !stop.swap(true, Ordering::SeqCst) {
                            let name = if signal == SIGINT {
                                "SIGINT"
                            } else {
                                "SIGTERM"
                            };
                            tracing::info!("{name} received: stopping");
                        }
                    }
                }
            }
        })?;
    Ok(())
}
