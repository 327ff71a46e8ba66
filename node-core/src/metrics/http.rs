//! The metrics listener: `GET /metrics` (and nothing else) in the Prometheus text format, served
//! by the `bounded-http` listener (swarmctl dashboard's too), optionally behind a bearer token.
//!
//! The listener owns the connections, their limits and the checks (Host on loopback, the token
//! compared in constant time, GET/HEAD only): see that crate. This module binds the address the
//! `[metrics]` section allows (loopback unless a token or `insecure` covers another, see
//! [`super::MetricsSection`]) and answers a scrape: the process metrics, then the source's,
//! collected on the listener's answering thread, never on the event loop (the module doc of
//! [`super`]). There is no TLS: a token sent across a network can be read on the way
//! (docs/operations.md, "Metrics").

use super::{process, Families, Identity, MetricsSection, MetricsSource, CONTENT_TYPE};
use bounded_http::{Answer, HttpListener, Options, Site, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

/// A running metrics listener; dropping it stops its thread.
pub struct MetricsServer {
    listener: HttpListener,
}

impl MetricsServer {
    /// Binds `section.listen` and starts serving; `Ok(None)` when no listener is configured.
    pub fn start(
        section: &MetricsSection,
        identity: Identity,
        source: Arc<dyn MetricsSource>,
    ) -> Result<Option<MetricsServer>, String> {
        let Some(listen) = section.listen_addr().map_err(|err| err.to_string())? else {
            return Ok(None);
        };
        let bearer_token = section.token().map_err(|err| err.to_string())?;
        let socket = std::net::TcpListener::bind(listen)
            .map_err(|err| format!("cannot serve metrics on {listen}: {err}"))?;
        let options = Options {
            thread_name: "metrics-http".into(),
            bearer_token,
            on_accept_error: |err| tracing::warn!("metrics listener: accept failed: {err}"),
        };
        let listener = HttpListener::start(socket, Arc::new(Scrape { identity, source }), options)
            .map_err(|err| format!("cannot start the metrics listener on {listen}: {err}"))?;
        tracing::info!("metrics served at http://{}/metrics", listener.local_addr());
        Ok(Some(MetricsServer { listener }))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr()
    }
}

struct Scrape {
    identity: Identity,
    source: Arc<dyn MetricsSource>,
}

impl Site for Scrape {
    fn answer(&self, path: &str) -> Answer {
        if path != "/metrics" {
            return Answer::text(
                StatusCode::NOT_FOUND,
                "not found; metrics are at /metrics\n",
            );
        }
        let mut families = Families::default();
        process::add_process(&self.identity, self.source.ready(), &mut families);
        self.source.collect(&mut families);
        match families.render() {
            Ok(body) => Answer::ok(CONTENT_TYPE, body),
            Err(err) => {
                tracing::error!("{err}");
                Answer::text(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n"))
            }
        }
    }
}
