//! The async client's requests to one node: [`AsyncClient`] and what it returns,
//! [`AsyncPending`] (one reply, awaited) and [`ReplyStream`] (a streaming request, a
//! [`futures_core::Stream`] of [`StreamEvent`]s with the blocking [`crate::Stream`]'s credit
//! rules).
//!
//! Nothing here talks to a socket: a request takes the same in-flight slot, request id and
//! command as a blocking one (`client::send_request_async`), goes through the same I/O thread
//! and routing table, and only its reply channel differs (`Sink::Async`, which a task awaits
//! instead of a thread blocking on it). Health checks (a node down fails at once with
//! NodeDown), reconnects with backoff, timeouts and TLS are therefore the blocking client's.

use crate::client::{send_request_async, Client};
use crate::error::ClientError;
use crate::partial::Partial;
use crate::reply::{Reply, StreamControl, StreamEvent, Ticket};
use crate::shared::{Routed, Shared, Sink};
use node_core::protocol::RequestCode;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// The transport the async cluster clients share with their blocking counterpart.
#[derive(Clone)]
pub(crate) struct Transport {
    shared: Arc<Shared>,
}

impl Transport {
    pub(crate) fn of(client: &Client) -> Transport {
        Transport {
            shared: Arc::clone(client.shared()),
        }
    }

    /// Sends a request; its reply is awaited with [`AsyncPending::wait`].
    pub(crate) async fn submit(
        &self,
        node: usize,
        code: RequestCode,
        body: Vec<u8>,
    ) -> Result<AsyncPending, ClientError> {
        let deadline = self.shared.request_deadline(node)?;
        let (ticket, rx) = self.send(node, code, body, deadline).await?;
        Ok(AsyncPending {
            ticket,
            rx,
            deadline,
        })
    }

    /// Hands the request to the I/O thread; its frames arrive on the channel returned.
    async fn send(
        &self,
        node: usize,
        code: RequestCode,
        body: Vec<u8>,
        deadline: Instant,
    ) -> Result<(Ticket, UnboundedReceiver<Routed>), ClientError> {
        let (reply_to, rx) = unbounded_channel();
        let sink = Sink::Async(reply_to);
        let ticket = send_request_async(&self.shared, node, code, body, deadline, sink).await?;
        Ok((ticket, rx))
    }

    pub(crate) async fn request(
        &self,
        node: usize,
        code: RequestCode,
        body: Vec<u8>,
    ) -> Result<Reply, ClientError> {
        self.submit(node, code, body).await?.wait().await
    }

    pub(crate) async fn stream(
        &self,
        node: usize,
        code: RequestCode,
        body: Vec<u8>,
    ) -> Result<ReplyStream, ClientError> {
        let deadline = self.shared.request_deadline(node)?;
        let (ticket, rx) = self.send(node, code, body, deadline).await?;
        Ok(ReplyStream {
            control: StreamControl::open(ticket),
            rx,
        })
    }

    pub(crate) fn addr(&self, node: usize) -> SocketAddr {
        self.shared.addr(node)
    }
}

/// A node-level async client: [`crate::Client`]'s requests as `async fn`s, over the same
/// connections. Get one with [`AsyncClient::connect`], or from a blocking [`Client`] with
/// [`AsyncClient::from_client`]; clone it freely (clones share the connections).
#[derive(Clone)]
pub struct AsyncClient {
    client: Arc<Client>,
    transport: Transport,
}

impl AsyncClient {
    /// [`Client::connect`], run on tokio's blocking pool (a connect may wait for its timeout).
    pub async fn connect(
        nodes: &[SocketAddr],
        wanted_kind: Option<node_core::protocol::NodeKind>,
        options: crate::ClientOptions,
    ) -> Result<AsyncClient, ClientError> {
        let nodes = nodes.to_vec();
        let client = super::blocking(move || Client::connect(&nodes, wanted_kind, options)).await?;
        Ok(AsyncClient::from_client(Arc::new(client)))
    }

    /// The async face of a connected blocking client; both may be used at once.
    pub fn from_client(client: Arc<Client>) -> AsyncClient {
        let transport = Transport::of(&client);
        AsyncClient { client, transport }
    }

    /// The blocking client underneath (node health, node changes, options).
    pub fn blocking(&self) -> &Arc<Client> {
        &self.client
    }

    /// Sends request `code` to node `node` and waits for its Reply, up to `request_timeout_ms`.
    /// A node known to be down fails at once with [`ClientError::NodeDown`].
    pub async fn request(
        &self,
        node: usize,
        code: RequestCode,
        body: &[u8],
    ) -> Result<Reply, ClientError> {
        self.transport.request(node, code, body.to_vec()).await
    }

    /// Sends a request without waiting for it: many may be in flight on one connection.
    pub async fn submit(
        &self,
        node: usize,
        code: RequestCode,
        body: Vec<u8>,
    ) -> Result<AsyncPending, ClientError> {
        self.transport.submit(node, code, body).await
    }

    /// Opens a streaming request (see [`ReplyStream`]).
    pub async fn stream(
        &self,
        node: usize,
        code: RequestCode,
        body: &[u8],
    ) -> Result<ReplyStream, ClientError> {
        self.transport.stream(node, code, body.to_vec()).await
    }

    /// Sends the request to every active node at once and collects the replies, with the
    /// nodes that could not answer (as [`Client::fan_out_partial`]).
    pub async fn fan_out_partial(
        &self,
        code: RequestCode,
        body: &[u8],
    ) -> Result<Partial<Vec<(SocketAddr, Reply)>>, ClientError> {
        let mut pending = Vec::new();
        for node in self.client.active_nodes() {
            pending.push((node, self.transport.submit(node, code, body.to_vec()).await));
        }
        let mut result = Partial::new(Vec::with_capacity(pending.len()));
        for (node, submitted) in pending {
            let reply = match submitted {
                Ok(pending) => pending.wait().await,
                Err(error) => Err(error),
            };
            match reply {
                Ok(reply) => result.value.push((reply.node, reply)),
                Err(error) if error.is_node_down() => {
                    result.missing.push((self.transport.addr(node), error))
                }
                Err(error) => return Err(error),
            }
        }
        Ok(result)
    }

    /// GetVersion of node `node`.
    pub async fn get_version(&self, node: usize) -> Result<crate::VersionInfo, ClientError> {
        let body = self
            .request(node, RequestCode::GET_VERSION, &[])
            .await?
            .ok_body()?;
        crate::common::decode_version(self.transport.addr(node), &body)
    }
}

impl std::fmt::Debug for AsyncClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncClient")
            .field("client", &self.client)
            .finish()
    }
}

/// A submitted request; [`AsyncPending::wait`] awaits its Reply. Dropping it unawaited cancels
/// it (the reply is then discarded), as a blocking [`crate::Pending`].
pub struct AsyncPending {
    ticket: Ticket,
    rx: UnboundedReceiver<Routed>,
    deadline: Instant,
}

impl AsyncPending {
    /// The request id on the wire.
    pub fn request_id(&self) -> u64 {
        self.ticket.request_id
    }

    /// The Reply, awaited until `request_timeout_ms` after submission.
    pub async fn wait(mut self) -> Result<Reply, ClientError> {
        match tokio::time::timeout_at(self.deadline.into(), self.rx.recv()).await {
            Ok(Some(event)) => self.ticket.finish(event),
            Ok(None) => Err(self.ticket.closed_error()),
            Err(_) => Err(self.ticket.timed_out()),
        }
    }
}

/// A streaming request as a [`futures_core::Stream`]: zero or more [`StreamEvent::Item`]s,
/// then [`StreamEvent::End`]. Credit is granted back as items are taken, so a task that stops
/// polling pauses the node; dropping the stream unfinished stops it. No wait limit applies
/// between items (wrap the poll in `tokio::time::timeout` for one).
pub struct ReplyStream {
    control: StreamControl,
    rx: UnboundedReceiver<Routed>,
}

impl ReplyStream {
    /// Asks the node to end the stream now; the items already sent and the End still come.
    pub fn stop(&mut self) {
        self.control.stop();
    }

    /// The next event; `None` after End or an error that ended the stream.
    pub async fn next(&mut self) -> Option<Result<StreamEvent, ClientError>> {
        std::future::poll_fn(|cx| self.poll_next_event(cx)).await
    }

    fn poll_next_event(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<StreamEvent, ClientError>>> {
        if self.control.ticket.finished {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(event)) => Poll::Ready(Some(self.control.on_event(event))),
            Poll::Ready(None) => {
                self.control.ticket.finished = true;
                Poll::Ready(Some(Err(self.control.ticket.closed_error())))
            }
        }
    }
}

impl futures_core::Stream for ReplyStream {
    type Item = Result<StreamEvent, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_next_event(cx)
    }
}
