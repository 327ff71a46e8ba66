//! The dashboard's HTTP side: the page (HTML, script and style compiled into swarmctl, so it
//! works with no network) and the JSON the page polls, served by hyper on a one-thread tokio
//! runtime.
//!
//! Routes (GET or HEAD; anything else 405, other paths 404): `/` the page, `/dashboard.js`,
//! `/dashboard.css`, `/api/state` (the latest collection), `/api/history` (the plots' points).
//!
//! Limits: at most [`MAX_CONNECTIONS`] open at once (one more is closed as soon as it is
//! accepted), a request head of at most [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`] headers read
//! within [`HEAD_READ_TIMEOUT`], no request body is ever read, and a connection is closed after
//! [`CONNECTION_LIFETIME`] (after the answer in progress; the browser opens another). On a
//! loopback address a request must name that address in its `Host` header (or `localhost`), so
//! a web page elsewhere cannot read the dashboard through DNS rebinding.

use super::collect::Board;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

pub const MAX_CONNECTIONS: usize = 64;
/// hyper's smallest read buffer: a request head must fit in it.
pub const MAX_HEAD_BYTES: usize = 8192;
pub const MAX_HEADERS: usize = 32;
pub const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// How long the answer in progress may take once a connection's lifetime is over.
const CLOSING_GRACE: Duration = Duration::from_secs(10);
/// A failed accept (out of descriptors, say) is retried after this.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

const PAGE_HTML: &str = include_str!("page/index.html");
const PAGE_JS: &str = include_str!("page/dashboard.js");
const PAGE_CSS: &str = include_str!("page/dashboard.css");
/// The page loads nothing from anywhere but this listener.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// Who may be served: on loopback, requests must name one of `hosts` in `Host`; `None` takes
/// any (a non-loopback listener, which `--insecure` allowed).
pub struct Site {
    pub board: Arc<Board>,
    pub hosts: Option<Vec<String>>,
}

impl Site {
    /// The `Host` values a browser sends for a listener on `addr`.
    pub fn loopback_hosts(addr: SocketAddr) -> Vec<String> {
        let port = addr.port();
        vec![
            addr.to_string(),
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ]
    }
}

/// Serves `listener` until the process ends.
pub fn serve(listener: std::net::TcpListener, site: Site) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(accept_loop(listener, Arc::new(site)))
}

async fn accept_loop(listener: std::net::TcpListener, site: Arc<Site>) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                eprintln!("swarmctl dashboard: accept failed: {error}");
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        // Over the limit the connection is closed at once (dropped).
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let site = Arc::clone(&site);
        tokio::spawn(async move {
            serve_connection(stream, &site).await;
            drop(slot);
        });
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, site: &Arc<Site>) {
    let service = service_fn(|request: Request<Incoming>| {
        let response = answer(site, &request);
        async move { Ok::<_, Infallible>(response) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_READ_TIMEOUT)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    let mut connection = std::pin::pin!(connection);
    // Errors are the client's (a bad request, a reset): hyper has answered or closed.
    if tokio::time::timeout(CONNECTION_LIFETIME, connection.as_mut())
        .await
        .is_err()
    {
        connection.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(CLOSING_GRACE, connection).await;
    }
}

type Answer = Response<Full<Bytes>>;

fn answer(site: &Site, request: &Request<Incoming>) -> Answer {
    if let Some(hosts) = &site.hosts {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok());
        if !host.is_some_and(|host| hosts.iter().any(|allowed| allowed == host)) {
            return text(
                StatusCode::MISDIRECTED_REQUEST,
                "this dashboard answers requests for its own address only (Host header)\n",
            );
        }
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match request.uri().path() {
        "/" | "/index.html" => page(PAGE_HTML, "text/html; charset=utf-8"),
        "/dashboard.js" => page(PAGE_JS, "text/javascript; charset=utf-8"),
        "/dashboard.css" => page(PAGE_CSS, "text/css; charset=utf-8"),
        "/api/state" => json(site.board.state_json()),
        "/api/history" => json(site.board.history_json()),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: the dashboard is at /, its data at /api/state and /api/history\n",
        ),
    }
}

fn page(body: &'static str, content_type: &'static str) -> Answer {
    let mut response = respond(
        StatusCode::OK,
        Bytes::from_static(body.as_bytes()),
        content_type,
    );
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    response
}

fn json(body: Bytes) -> Answer {
    respond(StatusCode::OK, body, "application/json")
}

fn text(status: StatusCode, body: &'static str) -> Answer {
    respond(
        status,
        Bytes::from_static(body.as_bytes()),
        "text/plain; charset=utf-8",
    )
}

fn respond(status: StatusCode, body: Bytes, content_type: &'static str) -> Answer {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
