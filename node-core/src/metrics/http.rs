//! The metrics listener: a `tiny_http` server on its own thread answering `GET /metrics` (and
//! nothing else) with the Prometheus text format, optionally behind a bearer token.
//!
//! Requests are answered one after the other on one thread (a scrape costs well under a
//! millisecond of encoding); `tiny_http` reads connections on threads of its own. The listener
//! is meant for a Prometheus on the same host or a trusted network: it binds loopback unless
//! the config says otherwise (see [`super::MetricsSection`]), and there is no TLS — a token sent
//! across a network can be read on the way (docs/operations.md, "Metrics").

use super::{process, Families, Identity, MetricsSection, MetricsSource, CONTENT_TYPE};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use tiny_http::{Header, Method, Request, Response, Server};

/// A running metrics listener; dropping it stops the thread.
pub struct MetricsServer {
    addr: SocketAddr,
    server: Arc<Server>,
    thread: Option<JoinHandle<()>>,
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
        let token = section.token().map_err(|err| err.to_string())?;
        let server = Server::http(listen)
            .map_err(|err| format!("cannot serve metrics on {listen}: {err}"))?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| format!("metrics listener on {listen} has no IP address"))?;
        let server = Arc::new(server);
        let handler = Handler {
            identity,
            source,
            token_digest: token.map(|token| Sha256::digest(format!("Bearer {token}")).into()),
        };
        let serving = Arc::clone(&server);
        let thread = std::thread::Builder::new()
            .name("metrics-http".into())
            .spawn(move || {
                for request in serving.incoming_requests() {
                    handler.answer(request);
                }
            })
            .map_err(|err| format!("cannot start the metrics thread: {err}"))?;
        tracing::info!("metrics served at http://{addr}/metrics");
        Ok(Some(MetricsServer {
            addr,
            server,
            thread: Some(thread),
        }))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Handler {
    identity: Identity,
    source: Arc<dyn MetricsSource>,
    /// SHA-256 of the whole expected `Authorization` value, compared in constant time.
    token_digest: Option<[u8; 32]>,
}

impl Handler {
    fn answer(&self, request: Request) {
        let path = request.url().split('?').next().unwrap_or_default();
        let response = if !self.authorized(&request) {
            text(
                401,
                "a bearer token is required (Authorization: Bearer <token>)\n",
            )
            .with_header(header("WWW-Authenticate", "Bearer"))
        } else if path != "/metrics" {
            text(404, "not found; metrics are at /metrics\n")
        } else if !matches!(request.method(), Method::Get | Method::Head) {
            text(405, "only GET and HEAD\n").with_header(header("Allow", "GET, HEAD"))
        } else {
            self.metrics()
        };
        if let Err(err) = request.respond(response) {
            tracing::debug!("metrics reply not sent: {err}");
        }
    }

    fn authorized(&self, request: &Request) -> bool {
        let Some(expected) = &self.token_digest else {
            return true;
        };
        let presented = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .map(|h| h.value.as_str())
            .unwrap_or_default();
        let digest: [u8; 32] = Sha256::digest(presented).into();
        // Both sides are digests, so the comparison's timing tells nothing about the token.
        let difference = digest
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }

    fn metrics(&self) -> Response<std::io::Cursor<Vec<u8>>> {
        let mut families = Families::default();
        process::add_process(&self.identity, self.source.ready(), &mut families);
        self.source.collect(&mut families);
        match families.render() {
            Ok(body) => Response::from_data(body).with_header(header("Content-Type", CONTENT_TYPE)),
            Err(err) => {
                tracing::error!("{err}");
                text(500, &format!("{err}\n"))
            }
        }
    }
}

fn header(name: &str, value: &str) -> Header {
    // Both come from this file and are plain ASCII: from_bytes cannot refuse them.
    Header::from_bytes(name.as_bytes(), value.as_bytes())
        .unwrap_or_else(|()| unreachable!("header {name}: {value}"))
}

fn text(status: u16, body: &str) -> Response<std::io::Cursor<Vec<u8>>> {
    Response::from_data(body.as_bytes().to_vec())
        .with_status_code(status)
        .with_header(header("Content-Type", "text/plain; charset=utf-8"))
}
