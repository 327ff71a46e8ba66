//! The routing table of one node's connection: request id → the caller waiting for its frames.
//!
//! Owns matching incoming frames to requests (replies arrive in any order), the end of a
//! request (its Reply), cancelled requests (kept until their Reply so the slot is only freed when
//! the node has freed it too, but with nowhere to deliver), the client's view of each stream's
//! credit (so a node that sends beyond it is caught instead of filling memory), and failing
//! everything at once when the connection goes. No I/O here: it is fed parsed frames.

use crate::error::ClientError;
use crate::limit::Permit;
use crate::reply::Reply;
use crate::shared::{Routed, Sink};
use node_core::protocol::codes::{INITIAL_STREAM_CREDIT, MAX_STREAM_CREDIT};
use node_core::protocol::{FrameHeader, FrameType, Status};
use std::collections::HashMap;
use std::net::SocketAddr;

struct Entry {
    /// `None` once the caller cancelled: frames are still accounted, then dropped.
    reply_to: Option<Sink>,
    /// Items the node may still send (every request may turn out to be a stream).
    credit: u32,
    /// Released when the entry goes.
    _permit: Permit,
}

pub(crate) struct Requests {
    node: SocketAddr,
    entries: HashMap<u64, Entry>,
}

impl Requests {
    pub(crate) fn new(node: SocketAddr) -> Requests {
        Requests {
            node,
            entries: HashMap::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn contains(&self, request_id: u64) -> bool {
        self.entries.contains_key(&request_id)
    }

    pub(crate) fn insert(&mut self, request_id: u64, reply_to: Sink, permit: Permit) {
        let entry = Entry {
            reply_to: Some(reply_to),
            credit: INITIAL_STREAM_CREDIT,
            _permit: permit,
        };
        // Ids come from a per-node counter that never repeats, so there is no old entry.
        if let Some(old) = self.entries.insert(request_id, entry) {
            debug_assert!(false, "request id {request_id} reused");
            drop(old);
        }
    }

    /// Counts credit granted to a stream, capped as the node caps it. False if the request is
    /// not running (the Control frame then need not be sent).
    pub(crate) fn grant(&mut self, request_id: u64, items: u32) -> bool {
        match self.entries.get_mut(&request_id) {
            Some(entry) => {
                entry.credit = entry.credit.saturating_add(items).min(MAX_STREAM_CREDIT);
                true
            }
            None => false,
        }
    }

    /// The caller gave up: whatever still arrives for the request is dropped.
    pub(crate) fn abandon(&mut self, request_id: u64) {
        if let Some(entry) = self.entries.get_mut(&request_id) {
            entry.reply_to = None;
        }
    }

    /// Routes one frame from the node. `Err` means the node broke the protocol and the
    /// connection must be closed.
    pub(crate) fn route(&mut self, header: &FrameHeader, body: Vec<u8>) -> Result<(), ClientError> {
        match header.frame_type {
            FrameType::Item => self.route_item(header, body),
            FrameType::Reply => {
                self.route_reply(header, body);
                Ok(())
            }
            FrameType::Request | FrameType::Control => Err(ClientError::protocol(
                self.node,
                format!(
                    "node sent a {:?} frame, which only clients send",
                    header.frame_type
                ),
            )),
        }
    }

    fn route_item(&mut self, header: &FrameHeader, body: Vec<u8>) -> Result<(), ClientError> {
        let id = header.request_id;
        let Some(entry) = self.entries.get_mut(&id) else {
            tracing::debug!(node = %self.node, id, "item for a request not in flight; dropped");
            return Ok(());
        };
        if entry.credit == 0 {
            return Err(ClientError::protocol(
                self.node,
                format!("node sent an item for request {id} beyond the credit granted"),
            ));
        }
        entry.credit -= 1;
        let item = Routed::Item {
            code: header.code,
            body,
        };
        if let Some(reply_to) = &entry.reply_to {
            if reply_to.send(item).is_err() {
                entry.reply_to = None;
            }
        }
        Ok(())
    }

    fn route_reply(&mut self, header: &FrameHeader, body: Vec<u8>) {
        let id = header.request_id;
        let Some(entry) = self.entries.remove(&id) else {
            tracing::debug!(node = %self.node, id, "reply for a request not in flight; dropped");
            return;
        };
        let routed = match Status::from_u8(header.code) {
            Some(status) => Routed::Reply(Reply {
                node: self.node,
                status,
                body,
            }),
            // Only this request is affected; the connection and its framing are still sound.
            None => Routed::Failed(ClientError::protocol(
                self.node,
                format!(
                    "reply to request {id} has unknown status code {}",
                    header.code
                ),
            )),
        };
        if let Some(reply_to) = entry.reply_to {
            let _ = reply_to.send(routed);
        }
    }

    /// Ends every request with `error` (the connection is gone) and frees their slots.
    pub(crate) fn fail_all(&mut self, error: &ClientError) {
        for (_, entry) in self.entries.drain() {
            if let Some(reply_to) = entry.reply_to {
                let _ = reply_to.send(Routed::Failed(error.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::InFlightLimit;
    use std::sync::mpsc::{channel, Receiver};
    use std::time::Instant;

    fn node() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 10000))
    }

    fn header(frame_type: FrameType, code: u8, id: u64) -> FrameHeader {
        FrameHeader::new(frame_type, code, id, 0)
    }

    fn add(
        requests: &mut Requests,
        limit: &std::sync::Arc<InFlightLimit>,
        id: u64,
    ) -> Receiver<Routed> {
        let (tx, rx) = channel();
        let permit = limit.acquire(Instant::now()).expect("slot");
        requests.insert(id, Sink::Own(tx), permit);
        rx
    }

    fn reply_body(rx: &Receiver<Routed>) -> Vec<u8> {
        match rx.try_recv() {
            Ok(Routed::Reply(reply)) => reply.body,
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn replies_in_any_order_reach_their_request_and_free_the_slot() {
        let limit = InFlightLimit::new(10);
        let mut requests = Requests::new(node());
        let receivers: Vec<_> = (1..=3).map(|id| add(&mut requests, &limit, id)).collect();
        for id in [3u64, 1, 2] {
            requests
                .route(&header(FrameType::Reply, 0, id), vec![id as u8])
                .expect("valid");
        }
        for (index, rx) in receivers.iter().enumerate() {
            assert_eq!(reply_body(rx), vec![index as u8 + 1]);
        }
        assert_eq!(requests.len(), 0);
        assert_eq!(limit.in_use(), 0);
    }

    #[test]
    fn items_need_credit_and_the_reply_ends_the_stream() {
        let limit = InFlightLimit::new(10);
        let mut requests = Requests::new(node());
        let rx = add(&mut requests, &limit, 7);
        for _ in 0..INITIAL_STREAM_CREDIT {
            requests
                .route(&header(FrameType::Item, 5, 7), b"x".to_vec())
                .expect("within credit");
        }
        let beyond = requests.route(&header(FrameType::Item, 5, 7), Vec::new());
        assert!(
            matches!(beyond, Err(ClientError::Protocol { .. })),
            "{beyond:?}"
        );
        assert!(requests.grant(7, 1));
        requests
            .route(&header(FrameType::Item, 5, 7), Vec::new())
            .expect("granted");
        requests
            .route(&header(FrameType::Reply, 0, 7), Vec::new())
            .expect("end");
        let items = rx
            .try_iter()
            .filter(|e| matches!(e, Routed::Item { code: 5, .. }))
            .count();
        assert_eq!(items, 5);
        assert!(!requests.grant(7, 1), "ended stream takes no credit");
    }

    #[test]
    fn a_cancelled_request_keeps_its_slot_until_the_late_reply_which_is_dropped() {
        let limit = InFlightLimit::new(10);
        let mut requests = Requests::new(node());
        let rx = add(&mut requests, &limit, 1);
        requests.abandon(1);
        assert_eq!(limit.in_use(), 1);
        requests
            .route(&header(FrameType::Reply, 0, 1), Vec::new())
            .expect("valid");
        assert!(rx.try_recv().is_err(), "late reply dropped");
        assert_eq!(limit.in_use(), 0);
    }

    #[test]
    fn unknown_ids_are_ignored_and_client_frames_refused() {
        let mut requests = Requests::new(node());
        requests
            .route(&header(FrameType::Reply, 0, 99), Vec::new())
            .expect("ignored");
        assert!(requests
            .route(&header(FrameType::Request, 1, 1), Vec::new())
            .is_err());
    }

    #[test]
    fn unknown_status_fails_only_that_request() {
        let limit = InFlightLimit::new(10);
        let mut requests = Requests::new(node());
        let rx = add(&mut requests, &limit, 1);
        requests
            .route(&header(FrameType::Reply, 200, 1), Vec::new())
            .expect("connection ok");
        assert!(matches!(
            rx.try_recv(),
            Ok(Routed::Failed(ClientError::Protocol { .. }))
        ));
    }

    #[test]
    fn fail_all_reaches_everyone() {
        let limit = InFlightLimit::new(10);
        let mut requests = Requests::new(node());
        let first = add(&mut requests, &limit, 1);
        let second = add(&mut requests, &limit, 2);
        requests.fail_all(&ClientError::Disconnected { node: node() });
        for rx in [first, second] {
            assert!(matches!(
                rx.try_recv(),
                Ok(Routed::Failed(ClientError::Disconnected { .. }))
            ));
        }
        assert_eq!(limit.in_use(), 0);
    }
}
