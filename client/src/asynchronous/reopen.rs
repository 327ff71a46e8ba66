//! [`ReopenTimer`]: what wakes a task whose polled cluster stream (dht Listen, queue Consume)
//! has a failed node's stream due to be opened again, while the other nodes are quiet. The
//! blocking streams sleep until then; a polled one sets a tokio timer instead.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// One timer, re-aimed as the due time changes.
#[derive(Default)]
pub(crate) struct ReopenTimer {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ReopenTimer {
    /// `Ready` once `due` has passed (the stream should be polled again, which reopens);
    /// `Pending` until then, with the task woken at `due`. No due time: `Pending`, no timer.
    pub(crate) fn poll_due(&mut self, due: Option<Instant>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(due) = due else {
            self.sleep = None;
            return Poll::Pending;
        };
        let due = tokio::time::Instant::from_std(due);
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        if sleep.deadline() != due {
            sleep.as_mut().reset(due);
        }
        let fired = sleep.as_mut().poll(cx);
        if fired.is_ready() {
            self.sleep = None;
        }
        fired
    }
}
