//! What a [`super::DhtClient`] knows of its cluster's ranges, and how it learns changes.
//!
//! The client asks every node GetRedistribution (its range, and whether a redistribution runs
//! there) at connect, and again ([`Routes`] refresh) when a node answers WrongNode, when
//! [`super::DhtClient::refresh_ranges`] is called, before a GetAll, and when a read finds
//! nothing while a move may be under way and what it knows is older than [`MAX_AGE`]. A node
//! that does not know GetRedistribution (an older node) is asked GetResponsibleRange instead.
//!
//! A refresh after a WrongNode is lenient: a node that cannot be reached keeps what was known
//! of it, so one node down does not stop requests to the others.

use super::ranges::RangeTable;
use super::{body_error, HashRange};
use crate::client::Client;
use crate::error::ClientError;
use crate::reply::Pending;
use node_core::protocol::dht::{self as wire, RedistributionState};
use node_core::protocol::Status;
use std::time::{Duration, Instant};

/// How old the knowledge of running redistributions may be before a read that found nothing
/// asks again (a move that finished meanwhile costs the fallback reads at most this long).
pub const MAX_AGE: Duration = Duration::from_secs(1);

/// One refresh's picture of the cluster.
#[derive(Debug, Clone)]
pub(crate) struct Routes {
    pub table: RangeTable,
    /// Per node: a redistribution was running there at the last answer.
    pub redistributing: Vec<bool>,
    pub fetched: Instant,
    /// Bumped by every refresh, so concurrent requests that met the same WrongNode refresh once.
    pub version: u64,
    /// Two nodes claim the same positions (computed once, when the routes are made).
    pub overlapping: bool,
}

impl Routes {
    pub fn new(table: RangeTable, redistributing: Vec<bool>, version: u64) -> Routes {
        let overlapping = table
            .problems()
            .iter()
            .any(|problem| matches!(problem, super::RangeProblem::Overlap { .. }));
        Routes {
            table,
            redistributing,
            fetched: Instant::now(),
            version,
            overlapping,
        }
    }

    /// Whether records may be on other nodes than their owner: some node is moving records,
    /// or two nodes claim the same positions (a move is starting).
    pub fn moving(&self) -> bool {
        self.overlapping || self.redistributing.iter().any(|running| *running)
    }

    /// Nodes other than `owner` that may hold `key` now: those moving records away, and those
    /// whose range also claims it. In node order.
    pub fn other_holders(&self, key: u64, owner: Option<usize>) -> Vec<usize> {
        self.table
            .entries()
            .iter()
            .enumerate()
            .filter(|(index, (_, range))| {
                Some(*index) != owner
                    && (self.redistributing[*index] || range.is_responsible_for(key))
            })
            .map(|(index, _)| index)
            .collect()
    }
}

/// What one node said.
struct NodeAnswer {
    range: HashRange,
    running: bool,
}

/// Asks every node its range and redistribution state. `previous`: keep what was known of a
/// node that fails to answer (lenient); `None`: fail with the first node's error (strict).
pub(crate) fn fetch(
    client: &Client,
    previous: Option<&Routes>,
) -> Result<(Routes, Option<ClientError>), ClientError> {
    let pending: Vec<Result<Pending, ClientError>> = (0..client.node_count())
        .map(|node| client.submit(node, wire::GET_REDISTRIBUTION, &[]))
        .collect();
    let mut nodes = Vec::with_capacity(pending.len());
    let mut redistributing = Vec::with_capacity(pending.len());
    let mut first_error = None;
    for (node, pending) in pending.into_iter().enumerate() {
        let answer = pending
            .and_then(Pending::wait)
            .and_then(|reply| node_answer(client, node, reply));
        let addr = client.node_addr(node).ok_or(ClientError::NoSuchNode {
            index: node,
            count: client.node_count(),
        })?;
        match (answer, previous) {
            (Ok(answer), _) => {
                nodes.push((addr, answer.range));
                redistributing.push(answer.running);
            }
            (Err(error), Some(previous)) => {
                tracing::debug!(%error, "range refresh: keeping what was known of {addr}");
                let known = previous
                    .table
                    .entries()
                    .get(node)
                    .map_or(HashRange::EMPTY, |(_, range)| *range);
                nodes.push((addr, known));
                redistributing.push(previous.redistributing.get(node).copied().unwrap_or(false));
                first_error.get_or_insert(error);
            }
            (Err(error), None) => return Err(error),
        }
    }
    let routes = Routes::new(
        RangeTable::new(nodes),
        redistributing,
        previous.map_or(0, |previous| previous.version + 1),
    );
    Ok((routes, first_error))
}

fn node_answer(
    client: &Client,
    node: usize,
    reply: crate::Reply,
) -> Result<NodeAnswer, ClientError> {
    let addr = reply.node;
    if reply.status == Status::UnsupportedRequest {
        // A node from before redistributions: it only knows its range.
        let body = client
            .request(node, wire::GET_RESPONSIBLE_RANGE, &[])?
            .ok_body()?;
        let range =
            wire::decode_range(&body).map_err(|e| body_error(addr, "GetResponsibleRange", e))?;
        return Ok(NodeAnswer {
            range,
            running: false,
        });
    }
    let body = reply.ok_body()?;
    let state =
        RedistributionState::decode(&body).map_err(|e| body_error(addr, "GetRedistribution", e))?;
    Ok(NodeAnswer {
        range: state.range,
        running: state.running,
    })
}
