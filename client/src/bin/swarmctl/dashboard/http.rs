//! The dashboard's HTTP side: the page (HTML, script and style compiled into swarmctl, so it
//! works with no network) and the JSON the page polls, served by the `bounded-http` listener
//! (every daemon's `/metrics` listener too).
//!
//! Routes (GET or HEAD; anything else 405, other paths 404): `/` the page, `/dashboard.js`,
//! `/dashboard.css`, `/api/state` (the latest collection), `/api/history` (the plots' points).
//!
//! The listener owns the limits (connections, request head size and count, head read timeout,
//! connection lifetime) and the checks (on a loopback address a request must name that address
//! in its `Host` header, or `localhost`, so a web page elsewhere cannot read the dashboard
//! through DNS rebinding): see that crate.

use super::collect::Board;
use bounded_http::{header, Answer, Bytes, HttpListener, Options, Site, StatusCode};
use std::sync::Arc;

const PAGE_HTML: &str = include_str!("page/index.html");
const PAGE_JS: &str = include_str!("page/dashboard.js");
const PAGE_CSS: &str = include_str!("page/dashboard.css");
/// The page loads nothing from anywhere but this listener.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// Serves `listener` until the process ends.
pub fn serve(listener: std::net::TcpListener, board: Arc<Board>) -> std::io::Result<()> {
    let options = Options {
        thread_name: "dashboard-http".into(),
        bearer_token: None,
        on_accept_error: |error| eprintln!("swarmctl dashboard: accept failed: {error}"),
    };
    HttpListener::start(listener, Arc::new(Page { board }), options)?.wait()
}

struct Page {
    board: Arc<Board>,
}

impl Site for Page {
    fn answer(&self, path: &str) -> Answer {
        match path {
            "/" | "/index.html" => page(PAGE_HTML, "text/html; charset=utf-8"),
            "/dashboard.js" => page(PAGE_JS, "text/javascript; charset=utf-8"),
            "/dashboard.css" => page(PAGE_CSS, "text/css; charset=utf-8"),
            "/api/state" => Answer::ok("application/json", self.board.state_json()),
            "/api/history" => Answer::ok("application/json", self.board.history_json()),
            _ => Answer::text(
                StatusCode::NOT_FOUND,
                "not found: the dashboard is at /, its data at /api/state and /api/history\n",
            ),
        }
    }
}

fn page(body: &'static str, content_type: &'static str) -> Answer {
    Answer::ok(content_type, Bytes::from_static(body.as_bytes()))
        .with_header(header::CONTENT_SECURITY_POLICY, CSP)
}
