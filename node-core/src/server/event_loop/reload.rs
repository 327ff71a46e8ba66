//! What SIGHUP reloads while the node serves, one call per thing reloaded: the log files
//! (logrotate moved them), the credentials file (clients added or revoked without a restart)
//! and the TLS certificate and key (new connections get them; open connections keep their
//! sessions; a file that fails keeps the old one).
//!
//! A credentials file that fails its checks (unreadable, world-readable, a bad line) changes
//! nothing: the node keeps the set it has and logs an ERROR naming the problem. A good file
//! replaces the set at once: the next handshake is judged by it, and the open connections of
//! every revoked client (a name removed, or listed with another key) are closed.

use super::EventLoop;
use crate::auth::{Credentials, CredentialsChange};
use crate::server::connection::Phase;
use crate::server::service::Service;
use std::sync::Arc;

impl<S: Service> EventLoop<'_, S> {
    /// SIGHUP.
    pub(super) fn reload(&mut self) {
        self.reopen_logs();
        self.reload_credentials();
        self.reload_tls();
    }

    fn reload_tls(&mut self) {
        let Some(tls) = &mut self.server.options.tls else {
            return;
        };
        match tls.reload() {
            Ok(()) => tracing::info!(
                "TLS certificate reloaded from {} (SIGHUP); new connections use it",
                tls.files().cert_file.display()
            ),
            Err(err) => tracing::error!("TLS reload failed, keeping the certificate in use: {err}"),
        }
    }

    fn reopen_logs(&mut self) {
        if let Some(logs) = &self.server.logs {
            match logs.reopen() {
                Ok(()) => tracing::info!("log files reopened (SIGHUP)"),
                // The log itself may be what failed: say it where it is surely seen.
                Err(err) => eprintln!("cannot reopen log files: {err}"),
            }
        }
    }

    fn reload_credentials(&mut self) {
        let Some(path) = self.server.options.credentials_file.clone() else {
            return;
        };
        let fresh = match Credentials::load(&path) {
            Ok(fresh) => fresh,
            Err(err) => {
                tracing::error!("SIGHUP: credentials not reloaded, keeping the current set: {err}");
                return;
            }
        };
        let change = match &self.server.options.credentials {
            Some(current) => current.changes_to(&fresh),
            None => CredentialsChange::default(),
        };
        if fresh.is_empty() {
            tracing::warn!(
                "SIGHUP: {} lists no client: every handshake will be refused",
                path.display()
            );
        }
        let closed = self.close_revoked(&change.revoked);
        tracing::info!(
            "SIGHUP: credentials reloaded from {}: {} clients; added {:?}, revoked {:?} \
             ({closed} connections closed)",
            path.display(),
            fresh.len(),
            change.added,
            change.revoked,
        );
        let fresh = Arc::new(fresh);
        self.service.credentials_reloaded(&fresh);
        self.server.options.credentials = Some(fresh);
    }

    /// Closes every open connection authenticated as one of `revoked`; returns how many.
    fn close_revoked(&mut self, revoked: &[String]) -> usize {
        if revoked.is_empty() {
            return 0;
        }
        let slots: Vec<usize> = self
            .connections
            .iter()
            .filter(|(_, conn)| matches!(conn.phase, Phase::Open))
            .filter(|(_, conn)| revoked.contains(&conn.client.name))
            .map(|(slot, _)| slot)
            .collect();
        for &slot in &slots {
            tracing::info!(
                "closing the connection of revoked client '{}' from {}",
                self.connections[slot].client.name,
                self.connections[slot].client.peer
            );
            self.close(slot);
        }
        slots.len()
    }
}
