//! Process signals for a daemon, delivered into the event loop through signal-hook-mio:
//! SIGTERM and SIGINT start a graceful shutdown, SIGHUP reloads what the node reads from files
//! while it runs (the event loop's `reload`: log files for logrotate, the credentials file, the
//! TLS certificate and key).

use mio::{Interest, Registry, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use std::io;

/// What a signal asks of the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalAction {
    Shutdown,
    /// SIGHUP: reopen the logs, then reload what a running node can reload.
    Reload,
}

/// The signals a daemon listens for, registered with its poll.
pub struct SignalSource {
    signals: Signals,
}

impl SignalSource {
    pub fn register(registry: &Registry, token: Token) -> io::Result<SignalSource> {
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
        registry.register(&mut signals, token, Interest::READABLE)?;
        Ok(SignalSource { signals })
    }

    /// The actions of every signal that arrived since the last call.
    pub fn pending(&mut self) -> Vec<SignalAction> {
        self.signals
            .pending()
            .map(|signal| match signal {
                SIGHUP => SignalAction::Reload,
                _ => SignalAction::Shutdown,
            })
            .collect()
    }
}
