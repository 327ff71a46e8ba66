//! `swarmctl dht redistribute [--strategy even|split] [--execute]`: new hash ranges for the
//! cluster's nodes (all of them, as given with `--nodes FILE` or `--node`s, new empty-range
//! nodes included), and the move of the data.
//!
//! Dry run (default): one line per node,
//! `HOST:PORT OLD -> NEW records R bytes B moves ~M records ~N bytes` (`unchanged` instead of
//! the arrow part when the range stays; the estimate assumes records spread evenly over a
//! node's range), then `total: moves ~M records ~N bytes`. Nothing changes on the nodes.
//!
//! Replica sets (nodes with equal ranges) are planned as one: every member gets its set's new
//! range, new empty-range nodes form new sets of the same size, and each member of a set that
//! gives records away sends them to every member of the set that takes them. A cluster with
//! sets is moved only with every member live and caught up (else refused, naming the member).
//!
//! `--execute`: every node whose range changes gets its Redistribute, all at once; a progress
//! bar per node shows records moved and the last failure being retried. Stopping swarmctl does
//! not stop the move (the nodes go on; `swarmctl dht ranges` shows their progress). At the end
//! the ranges are read again and checked: they must tile the hash space and be the planned
//! ones (exit 1 otherwise, or if any node refused or failed).

use crate::CmdResult;
use client::dht::redistribute::{
    leaving_fraction, plan, request_for, state, NodeRange, RedistEvent, Redistribution, Strategy,
};
use client::dht::{show_range, SizeInfo};
use client::{ClientError, DhtClient};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use node_core::protocol::dht as wire;
use std::io::Write;
use std::time::Duration;

/// How long a progress bar waits for news before it redraws anyway.
const POLL: Duration = Duration::from_millis(500);

/// A cluster with replica sets is moved only with every member live and caught up: a plan
/// with a member down (or catching up) is refused, naming it (docs/replication.md,
/// "Redistribution"). A cluster of one node per range is not checked here (as before: a node
/// that does not answer fails the plan when its state is read).
fn check_sets_whole(dht: &DhtClient) -> CmdResult {
    let sets = dht.replica_sets();
    if sets.iter().all(|set| set.set.members.len() < 2) {
        return Ok(());
    }
    let client = dht.client();
    for node in 0..client.node_count() {
        let addr = client
            .node_addr(node)
            .map_or_else(|| format!("node {node}"), |addr| addr.to_string());
        // A member down since before this client saw it has no known range: no set to name.
        let set = sets
            .iter()
            .find(|set| set.set.members.contains(&node))
            .map_or_else(String::new, |set| {
                format!(" of replica set {}", show_range(&set.set.range))
            });
        let refuse = |why: String| -> CmdResult {
            Err(format!(
                "member {addr}{set} {why}; a cluster with replica sets is redistributed only \
                 with every member live and caught up (bring it back, or take it out of the \
                 node list), see docs/replication.md"
            )
            .into())
        };
        match client.get_stats(node) {
            Err(error) => return refuse(format!("is down ({error})")),
            Ok(stats) => {
                let state = stats.iter().find(|(name, _)| name == "catch_up_state");
                if let Some((_, state)) = state.filter(|(_, state)| *state == 1) {
                    return refuse(format!("is catching up (catch_up_state {state})"));
                }
            }
        }
    }
    Ok(())
}

pub fn run(dht: &DhtClient, strategy: Strategy, execute: bool, out: &mut impl Write) -> CmdResult {
    check_sets_whole(dht)?;
    let client = dht.client();
    let mut current = Vec::with_capacity(client.node_count());
    for (node, (addr, _)) in dht.ranges().into_iter().enumerate() {
        let state = state(client, node)?;
        if state.running {
            return Err(format!(
                "node {addr} is still redistributing ({} of {} records moved); wait until \
                 `swarmctl dht ranges` shows it done",
                state.progress.moved, state.progress.total
            )
            .into());
        }
        current.push((addr, state.range));
    }
    let planned = plan(&current, strategy)?;
    let mut total = (0f64, 0f64);
    for (node, planned_node) in planned.iter().enumerate() {
        let size = node_size(dht, node)?;
        let NodeRange { addr, old, new } = *planned_node;
        write!(
            out,
            "{addr} {} -> {} records {} bytes {}",
            show_range(&old),
            show_range(&new),
            size.records,
            size.bytes
        )?;
        if planned_node.changes() {
            let fraction = leaving_fraction(old, new);
            let (records, bytes) = (size.records as f64 * fraction, size.bytes as f64 * fraction);
            total.0 += records;
            total.1 += bytes;
            writeln!(out, " moves ~{records:.0} records ~{bytes:.0} bytes")?;
        } else {
            writeln!(out, " unchanged")?;
        }
    }
    if planned.iter().all(|node| !node.changes()) {
        writeln!(out, "No change in node hash ranges")?;
        return Ok(());
    }
    writeln!(
        out,
        "total: moves ~{:.0} records ~{:.0} bytes",
        total.0, total.1
    )?;
    if !execute {
        writeln!(
            out,
            "dry run: nothing changed; add --execute to move the data"
        )?;
        return Ok(());
    }
    out.flush()?;
    let failures = execute_plan(dht, &planned);
    verify(dht, &planned, out)?;
    if failures.is_empty() {
        writeln!(out, "redistribution done; the ranges tile the hash space")?;
        Ok(())
    } else {
        Err(failures.join("; ").into())
    }
}

fn node_size(dht: &DhtClient, node: usize) -> Result<SizeInfo, ClientError> {
    let reply = dht.client().request(node, wire::GET_SIZE, &[])?;
    let addr = reply.node;
    let body = reply.ok_body()?;
    SizeInfo::decode(&body).map_err(|e| ClientError::Protocol {
        node: addr,
        reason: format!("GetSize reply: {e}"),
    })
}

/// Runs every changing node's Redistribute in parallel, with a progress bar each. Returns the
/// failures, one message per node.
fn execute_plan(dht: &DhtClient, planned: &[NodeRange]) -> Vec<String> {
    let bars = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{prefix:>21} [{bar:30}] {pos}/{len} records {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    std::thread::scope(|scope| {
        let handles: Vec<_> = planned
            .iter()
            .enumerate()
            .filter(|(_, node)| node.changes())
            .map(|(index, node)| {
                let bar = bars.add(ProgressBar::new(0));
                bar.set_style(style.clone());
                bar.set_prefix(node.addr.to_string());
                let request = request_for(planned, index);
                scope.spawn(move || {
                    let result = watch(dht, index, &request, &bar);
                    match &result {
                        Ok(moved) => bar.finish_with_message(format!("done, {moved} moved")),
                        Err(error) => bar.abandon_with_message(format!("FAILED: {error}")),
                    }
                    result.map_err(|error| format!("node {}: {error}", node.addr))
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|handle| match handle.join() {
                Ok(Ok(_)) => None,
                Ok(Err(error)) => Some(error),
                Err(_) => Some("a progress thread panicked".to_string()),
            })
            .collect()
    })
}

/// Sends one node its Redistribute and follows its progress to the end.
fn watch(
    dht: &DhtClient,
    node: usize,
    request: &node_core::protocol::dht::RedistributeRequest,
    bar: &ProgressBar,
) -> Result<u64, String> {
    let mut running =
        Redistribution::start(dht.client(), node, request).map_err(|e| e.to_string())?;
    while let Some(event) = running.next(POLL) {
        match event.map_err(|e| e.to_string())? {
            None => bar.tick(),
            Some(RedistEvent::Progress(progress)) => {
                bar.set_length(progress.total);
                bar.set_position(progress.moved);
                if progress.failures > 0 && !progress.last_error.is_empty() {
                    bar.set_message(format!(
                        "({} retries; last: {})",
                        progress.failures, progress.last_error
                    ));
                }
            }
            Some(RedistEvent::Done(done)) => {
                if done.stranded > 0 {
                    bar.println(format!(
                        "{}: {} records outside every range stay on the node",
                        dht.client()
                            .node_addr(node)
                            .map_or_else(String::new, |a| a.to_string()),
                        done.stranded
                    ));
                }
                return Ok(done.moved);
            }
        }
    }
    Err("the progress stream ended without a result".into())
}

/// Reads every node's range again and checks they are the planned ones and tile the space.
fn verify(dht: &DhtClient, planned: &[NodeRange], out: &mut impl Write) -> CmdResult {
    dht.refresh_ranges()?;
    let now = dht.ranges();
    let mut wrong = Vec::new();
    for ((addr, range), node) in now.iter().zip(planned) {
        writeln!(out, "{addr} {}", show_range(range))?;
        if range.normalized() != node.new {
            wrong.push(format!("{addr} has {range}, planned {}", node.new));
        }
    }
    // The members of a replica set share their range: one owner as far as tiling goes.
    let problems: Vec<String> = dht
        .range_table()
        .problems()
        .iter()
        .map(ToString::to_string)
        .collect();
    if !problems.is_empty() {
        return Err(format!(
            "the ranges do not tile the hash space: {}",
            problems.join("; ")
        )
        .into());
    }
    if !wrong.is_empty() {
        return Err(format!("unexpected ranges: {}", wrong.join("; ")).into());
    }
    Ok(())
}
