//! What a site answers ([`Answer`]) and how it becomes a hyper response, with the headers every
//! answer carries: its type, `Cache-Control: no-store` (the figures are live),
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

/// A status, a body of one type, and any headers the site adds.
pub struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Answer {
    pub fn new(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
        Answer {
            status,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    /// A 200 answer.
    pub fn ok(content_type: &'static str, body: impl Into<Bytes>) -> Answer {
        Answer::new(StatusCode::OK, content_type, body)
    }

    /// A plain-text answer (an error's explanation, for a person reading it).
    pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Answer {
        Answer::new(status, "text/plain; charset=utf-8", body)
    }

    /// Adds a header; `value` is a constant of the caller's (`HeaderValue::from_static` panics
    /// on a character a header may not hold, which a test of that answer would show).
    pub fn with_header(mut self, name: HeaderName, value: &'static str) -> Answer {
        self.headers.push((name, HeaderValue::from_static(value)));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub(crate) fn into_response(self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(self.body));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        for (name, value) in self.headers {
            headers.insert(name, value);
        }
        response
    }
}
