//! Where the async client runs the blocking client's code itself rather than a copy of it: the
//! rare paths (connecting, a range refresh after WrongNode, administrative fan-outs) on
//! tokio's blocking pool ([`blocking`]), and the cluster reads that merge several nodes
//! (dht GetAll, logfiles GetRange and GetAll) on a thread of their own that owns the blocking
//! stream and hands its output to the task ([`ThreadStream`]). (dht Listen is polled by the
//! task itself, `dht::AsyncListener`, and so is queue Consume, `AsyncConsumer`.)
//!
//! Bounds: a [`ThreadStream`] holds at most [`BATCHES_AHEAD`] batches of at most
//! [`BATCH_ITEMS`] items between the thread and the task; the thread then waits for the task
//! (the blocking stream's own credit then pauses the nodes). A task that drops the stream ends
//! the thread at its next item. These reads end by themselves; each holds its thread only
//! while it runs, and at most [`MAX_STREAM_THREADS`] run at once in the process: a stream
//! opened beyond that waits, at its first poll, for one of them to end (a task that stops
//! polling a running one holds its slot until it drops the stream).

use crate::error::ClientError;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use tokio::sync::mpsc::{channel, Receiver, Sender};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Items the thread sends in one message (one wake-up of the task).
pub(crate) const BATCH_ITEMS: usize = 256;
/// Messages between the thread and the task.
pub(crate) const BATCHES_AHEAD: usize = 4;

/// Runs `f` on tokio's blocking pool and awaits its result.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ClientError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, ClientError> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(error) => Err(ClientError::Setup(format!(
            "the client's blocking task failed: {error}"
        ))),
    }
}

/// What the stream's thread sends: items as they come, in batches.
type Batch<T> = Vec<Result<T, ClientError>>;

/// The nodes a partial stream went without, with why; set by the thread at the end.
type Missing = Arc<Mutex<Vec<(SocketAddr, ClientError)>>>;

/// The sending end, owned by the thread.
pub(crate) struct BatchSender<T> {
    tx: Sender<Batch<T>>,
    batch: Batch<T>,
    missing: Missing,
}

impl<T> BatchSender<T> {
    /// Records the nodes the stream went without (a partial stream, once it is over), for
    /// [`ThreadStream::missing`]. Set before the last items are flushed, so a task that saw
    /// the end sees them.
    pub(crate) fn set_missing(&mut self, missing: &[(SocketAddr, ClientError)]) {
        *self.missing.lock().unwrap_or_else(PoisonError::into_inner) = missing.to_vec();
    }

    /// Queues one item and sends what is queued at once if the task has room for it (no
    /// latency while the task keeps up), or when [`BATCH_ITEMS`] are queued (waiting for the
    /// task then). False once the task is gone.
    pub(crate) fn push(&mut self, item: Result<T, ClientError>) -> bool {
        use tokio::sync::mpsc::error::TrySendError;
        self.batch.push(item);
        if self.batch.len() >= BATCH_ITEMS {
            return self.flush();
        }
        match self.tx.try_reserve() {
            Ok(permit) => {
                permit.send(std::mem::take(&mut self.batch));
                true
            }
            Err(TrySendError::Full(())) => true,
            Err(TrySendError::Closed(())) => false,
        }
    }

    /// Sends what is queued, waiting for room. False once the task is gone.
    pub(crate) fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return !self.tx.is_closed();
        }
        let batch = std::mem::take(&mut self.batch);
        self.tx.blocking_send(batch).is_ok()
    }
}

/// A cluster stream run by a thread of its own (see the module documentation); a
/// [`futures_core::Stream`] of the blocking stream's items, in its order.
pub struct ThreadStream<T> {
    state: State<T>,
    ready: std::vec::IntoIter<Result<T, ClientError>>,
    missing: Missing,
}

/// What the blocking stream's thread runs, with the sender it produces through.
type Run<T> = Box<dyn FnOnce(&mut BatchSender<T>) + Send>;
/// A slot of [`MAX_STREAM_THREADS`], being awaited.
type Slot = Pin<Box<dyn Future<Output = Option<OwnedSemaphorePermit>> + Send>>;

enum State<T> {
    /// Waiting (at the first poll) for a thread slot; the thread starts once one is free.
    Waiting {
        name: String,
        slot: Slot,
        run: Option<Run<T>>,
    },
    Running(Receiver<Batch<T>>),
    /// The stream ended (or its thread could not start: that error is its one item).
    Ended,
}

/// Threads running cluster streams at once in the process, at most. A stream opened beyond
/// it starts when one of them ends; meanwhile its task waits at its first item.
pub const MAX_STREAM_THREADS: usize = 64;

/// The slots of [`MAX_STREAM_THREADS`], shared by every client of the process.
fn stream_threads() -> Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    Arc::clone(SLOTS.get_or_init(|| Arc::new(Semaphore::new(MAX_STREAM_THREADS))))
}

impl<T: Send + 'static> ThreadStream<T> {
    /// A stream that runs `run` on a thread named `name` once one of [`MAX_STREAM_THREADS`]
    /// is free (waited for at the first poll); `run` produces through the [`BatchSender`] and
    /// returns when its stream ends or the sender says the task is gone. `run` reports a
    /// failure to open by sending one `Err`.
    pub(crate) fn spawn(
        name: &str,
        run: impl FnOnce(&mut BatchSender<T>) + Send + 'static,
    ) -> Result<ThreadStream<T>, ClientError> {
        let slot: Slot = Box::pin(async { stream_threads().acquire_owned().await.ok() });
        Ok(ThreadStream {
            state: State::Waiting {
                name: name.to_string(),
                slot,
                run: Some(Box::new(run)),
            },
            ready: Vec::new().into_iter(),
            missing: Missing::default(),
        })
    }

    /// Starts the thread, which holds its slot until it ends.
    fn start(
        &self,
        name: &str,
        slot: OwnedSemaphorePermit,
        run: Run<T>,
    ) -> Result<Receiver<Batch<T>>, ClientError> {
        let (tx, rx) = channel(BATCHES_AHEAD);
        let missing = Arc::clone(&self.missing);
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let mut sender = BatchSender {
                    tx,
                    batch: Vec::new(),
                    missing,
                };
                run(&mut sender);
                sender.flush();
                drop(slot);
            })
            .map_err(|error| {
                ClientError::Setup(format!("cannot start a stream thread: {error}"))
            })?;
        Ok(rx)
    }

    /// The nodes a partial stream (`get_all_partial`, `get_range_partial`) went without, with
    /// why: complete once the stream ended (`next` returned `None`); empty for the others.
    pub fn missing(&self) -> Vec<(SocketAddr, ClientError)> {
        self.missing
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The next item; `None` once the stream ended.
    pub async fn next(&mut self) -> Option<Result<T, ClientError>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T, ClientError>>> {
        loop {
            if let Some(item) = self.ready.next() {
                return Poll::Ready(Some(item));
            }
            match &mut self.state {
                State::Waiting { name, slot, run } => {
                    let Some(slot) = std::task::ready!(slot.as_mut().poll(cx)) else {
                        // The semaphore is never closed; were it, the stream could not run.
                        self.state = State::Ended;
                        let error = ClientError::Setup("no stream thread slot".into());
                        return Poll::Ready(Some(Err(error)));
                    };
                    let (name, run) = (std::mem::take(name), run.take());
                    let Some(run) = run else {
                        self.state = State::Ended;
                        continue;
                    };
                    match self.start(&name, slot, run) {
                        Ok(rx) => self.state = State::Running(rx),
                        Err(error) => {
                            self.state = State::Ended;
                            return Poll::Ready(Some(Err(error)));
                        }
                    }
                }
                State::Running(rx) => match std::task::ready!(rx.poll_recv(cx)) {
                    Some(batch) => self.ready = batch.into_iter(),
                    None => {
                        self.state = State::Ended;
                        return Poll::Ready(None);
                    }
                },
                State::Ended => return Poll::Ready(None),
            }
        }
    }

    /// Collects every item; the first error ends the collection.
    pub async fn collect(mut self) -> Result<Vec<T>, ClientError> {
        let mut items = Vec::new();
        while let Some(item) = self.next().await {
            items.push(item?);
        }
        Ok(items)
    }
}

// Nothing of `T` is pinned: the items are moved out as they are taken.
impl<T> Unpin for ThreadStream<T> {}

impl<T: Send + 'static> futures_core::Stream for ThreadStream<T> {
    type Item = Result<T, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_item(cx)
    }
}

/// Feeds every item of a blocking iterator to `sender`, until it ends or the task is gone.
pub(crate) fn forward_all<T>(
    items: impl Iterator<Item = Result<T, ClientError>>,
    sender: &mut BatchSender<T>,
) {
    for item in items {
        if !sender.push(item) {
            return;
        }
    }
}
