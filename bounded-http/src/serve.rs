//! The serving thread: a one-thread tokio runtime accepting connections up to
//! [`MAX_CONNECTIONS`], hyper reading each within the head limits and its lifetime, and the
//! runtime's blocking pool, capped at one thread, computing the answers.

use crate::access::Access;
use crate::{
    Answer, Site, CLOSING_GRACE, CONNECTION_LIFETIME, HEAD_READ_TIMEOUT, MAX_CONNECTIONS,
    MAX_HEADERS, MAX_HEAD_BYTES,
};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::sync::{oneshot, Semaphore};

/// A failed accept (out of descriptors, say) is retried after this.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// How long a stopping listener waits for the answer being computed (a scrape waits at most a
/// few seconds for the event loop) before it lets its thread go.
const STOP_WAIT: Duration = Duration::from_secs(5);
/// Threads computing answers: one, so answers are computed one after the other.
const ANSWER_THREADS: usize = 1;

/// What every connection of a listener shares.
pub(crate) struct Shared {
    pub(crate) site: Arc<dyn Site>,
    pub(crate) access: Access,
    pub(crate) on_accept_error: fn(&std::io::Error),
}

pub(crate) fn runtime() -> std::io::Result<Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(ANSWER_THREADS)
        .build()
}

/// The serving thread's body: accepts until `stop` fires (or its sender is dropped).
pub(crate) fn run(
    runtime: Runtime,
    listener: std::net::TcpListener,
    shared: Shared,
    stop: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let result = runtime.block_on(accept_loop(listener, Arc::new(shared), stop));
    runtime.shutdown_timeout(STOP_WAIT);
    result
}

async fn accept_loop(
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = std::future::poll_fn(|cx| {
            if Pin::new(&mut stop).poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            listener.poll_accept(cx).map(Some)
        })
        .await;
        let stream = match accepted {
            None => return Ok(()),
            Some(Ok((stream, _))) => stream,
            Some(Err(error)) => {
                (shared.on_accept_error)(&error);
                tokio::time::sleep(ACCEPT_RETRY).await;
                continue;
            }
        };
        // Over the limit the connection is closed at once (dropped).
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            serve_connection(stream, shared).await;
            drop(slot);
        });
    }
}

async fn serve_connection(stream: tokio::net::TcpStream, shared: Arc<Shared>) {
    let service = service_fn(move |request: Request<Incoming>| {
        let answer = answer(Arc::clone(&shared), request);
        async move { Ok::<_, Infallible>(answer.await.into_response()) }
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

/// The refusal of the checks, or the site's answer, computed on the answering thread.
async fn answer(shared: Arc<Shared>, request: Request<Incoming>) -> Answer {
    if let Some(refusal) = shared.access.refusal(&request) {
        return refusal;
    }
    let path = request.uri().path().to_owned();
    drop(request); // its body is never read
    let site = Arc::clone(&shared.site);
    match tokio::task::spawn_blocking(move || site.answer(&path)).await {
        Ok(answer) => answer,
        // The site panicked (its message is on stderr); the listener keeps serving.
        Err(_) => Answer::text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
    }
}
