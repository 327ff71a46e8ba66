//! The checks a request passes before its site sees it ([`Access::refusal`]): the `Host` header
//! on a loopback listener (421), the bearer token when there is one (401), the method (405).

use crate::Answer;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, StatusCode};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;

pub(crate) struct Access {
    /// On loopback, the `Host` values a request may carry; `None` takes any (a listener another
    /// machine may reach, which its caller allowed deliberately).
    hosts: Option<Vec<String>>,
    /// SHA-256 of the whole expected `Authorization` value, compared in constant time.
    token_digest: Option<[u8; 32]>,
}

impl Access {
    pub(crate) fn new(addr: SocketAddr, bearer_token: Option<&str>) -> Access {
        Access {
            hosts: addr
                .ip()
                .to_canonical()
                .is_loopback()
                .then(|| loopback_hosts(addr)),
            token_digest: bearer_token
                .map(|token| Sha256::digest(format!("Bearer {token}")).into()),
        }
    }

    /// The answer refusing `request`, or `None` when its site may answer it.
    pub(crate) fn refusal<B>(&self, request: &Request<B>) -> Option<Answer> {
        if !self.host_allowed(request.headers()) {
            return Some(Answer::text(
                StatusCode::MISDIRECTED_REQUEST,
                "this listener answers requests for its own address only (Host header)\n",
            ));
        }
        if !self.authorized(request.headers()) {
            return Some(
                Answer::text(
                    StatusCode::UNAUTHORIZED,
                    "a bearer token is required (Authorization: Bearer <token>)\n",
                )
                .with_header(header::WWW_AUTHENTICATE, "Bearer"),
            );
        }
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return Some(
                Answer::text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n")
                    .with_header(header::ALLOW, "GET, HEAD"),
            );
        }
        None
    }

    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(hosts) = &self.hosts else {
            return true;
        };
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        // Host names are case-insensitive (RFC 9110 §4.2.3).
        host.is_some_and(|host| {
            hosts
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(host))
        })
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token_digest else {
            return true;
        };
        let presented = headers
            .get(header::AUTHORIZATION)
            .map(|value| value.as_bytes())
            .unwrap_or_default();
        let digest: [u8; 32] = Sha256::digest(presented).into();
        // Both sides are digests, so the comparison's timing tells nothing about the token.
        let difference = digest
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

/// The `Host` values a browser or scraper sends for a listener on `addr`.
fn loopback_hosts(addr: SocketAddr) -> Vec<String> {
    let port = addr.port();
    vec![
        addr.to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, host: Option<&str>, authorization: Option<&str>) -> Request<()> {
        let mut builder = Request::builder().method(method).uri("/metrics");
        if let Some(host) = host {
            builder = builder.header(header::HOST, host);
        }
        if let Some(authorization) = authorization {
            builder = builder.header(header::AUTHORIZATION, authorization);
        }
        builder.body(()).expect("a request")
    }

    fn status(access: &Access, request: &Request<()>) -> Option<u16> {
        access
            .refusal(request)
            .map(|answer| answer.status().as_u16())
    }

    #[test]
    fn on_loopback_the_host_must_name_the_listener() {
        let access = Access::new("127.0.0.1:9310".parse().expect("addr"), None);
        for host in [
            "127.0.0.1:9310",
            "localhost:9310",
            "LocalHost:9310",
            "[::1]:9310",
        ] {
            assert_eq!(
                status(&access, &request(Method::GET, Some(host), None)),
                None,
                "{host}"
            );
        }
        for host in [
            Some("attacker.example:9310"),
            Some("localhost:9311"),
            Some("127.0.0.1"),
            None,
        ] {
            assert_eq!(
                status(&access, &request(Method::GET, host, None)),
                Some(421),
                "{host:?}"
            );
        }
        let v6 = Access::new("[::1]:0".parse().expect("addr"), None);
        assert_eq!(
            status(&v6, &request(Method::GET, Some("[::1]:0"), None)),
            None
        );
    }

    #[test]
    fn elsewhere_any_host_is_served() {
        let access = Access::new("0.0.0.0:9310".parse().expect("addr"), None);
        assert_eq!(
            status(
                &access,
                &request(Method::GET, Some("node7.example:9310"), None)
            ),
            None
        );
        assert_eq!(status(&access, &request(Method::HEAD, None, None)), None);
    }

    #[test]
    fn a_token_is_required_when_set() {
        let access = Access::new(
            "127.0.0.1:80".parse().expect("addr"),
            Some("s3cret-token-0123456789"),
        );
        let host = Some("127.0.0.1:80");
        assert_eq!(
            status(&access, &request(Method::GET, host, None)),
            Some(401)
        );
        for wrong in [
            "Bearer s3cret-token-012345678",
            "Bearer s3cret-token-0123456789x",
            "bearer s3cret-token-0123456789",
            "s3cret-token-0123456789",
        ] {
            assert_eq!(
                status(&access, &request(Method::GET, host, Some(wrong))),
                Some(401),
                "{wrong}"
            );
        }
        let right = Some("Bearer s3cret-token-0123456789");
        assert_eq!(status(&access, &request(Method::GET, host, right)), None);
        // Without the token, even a wrong method hears only that a token is needed.
        assert_eq!(
            status(&access, &request(Method::POST, host, None)),
            Some(401)
        );
        let refused = access
            .refusal(&request(Method::GET, host, None))
            .expect("refused");
        let response = refused.into_response();
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    #[test]
    fn only_get_and_head() {
        let access = Access::new("127.0.0.1:80".parse().expect("addr"), None);
        let host = Some("127.0.0.1:80");
        assert_eq!(status(&access, &request(Method::HEAD, host, None)), None);
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
            let refused = access
                .refusal(&request(method.clone(), host, None))
                .expect("refused");
            assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
            assert_eq!(
                refused.into_response().headers()[header::ALLOW],
                "GET, HEAD"
            );
        }
    }
}
