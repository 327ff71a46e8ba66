//! The queue storage engine: one fixed-capacity ring per storage (a channel without subscribers,
//! or `subscriber@channel`), each persisted as a memory-mapped file in the data directory, and the
//! [`Queues`] registry of them. It knows nothing of sockets or frames: request handlers translate
//! protocol to these calls and errors to statuses ([`QueueError::status`]).
//!
//! - [`ring`]: the ring file and its cursors (push, take/ack/give-back, pop, recovery on open).
//! - [`queues`]: the registry: create on first use, remove, list, sizes, node-wide capacity limit.
//! - [`names`]: storage-name rules and the `subscriber@channel` split.
//! - [`channels`]: channels and subscribers: which storages a push writes and a read takes from,
//!   all-or-nothing checks before multi-storage writes, reference-file import.
//! - [`rq`]: the reference node's `.rq` dump format; [`reference`]: finding and reading the
//!   reference node's files (dumps and disk overflow) in a data directory.

pub mod channels;
pub mod names;
pub mod queues;
pub mod reference;
pub mod ring;
pub mod rq;

pub use channels::{Channels, PopSource, Subscribed, Targets};
pub use queues::{QueueError, Queues, QueuesConfig};
pub use ring::{Ring, RingError, RingSize, Span, SyncMode};
