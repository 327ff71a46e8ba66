//! `swarmctl dht mirror CHANNEL`: a Mirror with refresh (docs/protocol.md §6.12) on every
//! node, so the operator watches a channel's changes with their versions.
//!
//! During the initial refresh a progress bar on stderr counts the refreshed records and
//! tombstones against what the nodes' RefreshStarted said they hold; the refreshed records are
//! not printed. Then, per change on stdout: `changed <hexkey> <version>\t<value>`,
//! `removed <hexkey> <version>`, or `overflow <n>` (changes lost; the mirror of that node
//! starts again with a refresh, as the protocol asks). It runs until the channel is removed
//! on every node (exit 0), Ctrl-C, or a node fails (exit 3, naming it).

use super::note;
use crate::CmdResult;
use client::{DhtClient, Status, StreamEvent, StreamSet, StreamTag};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use node_core::protocol::batch::decode_batch;
use node_core::protocol::dht::{self as wire, MirrorItem, MirrorRequest};
use std::collections::HashMap;
use std::io::Write;
use std::time::Duration;

/// Per node: its address, and whether its refresh is still running.
struct Node {
    addr: String,
    refreshing: bool,
}

struct Mirror<'a> {
    set: StreamSet,
    channel: &'a str,
    nodes: HashMap<StreamTag, Node>,
    bar: ProgressBar,
    scratch: Vec<u8>,
}

pub fn run(dht: &DhtClient, channel: &str, out: &mut impl Write) -> CmdResult {
    let client = dht.client();
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("refresh [{bar:30}] {pos}/{len} records and tombstones")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut mirror = Mirror {
        set: client.stream_set(),
        channel,
        nodes: HashMap::new(),
        bar,
        scratch: Vec::new(),
    };
    for node in client.active_nodes() {
        let addr = client
            .node_addr(node)
            .map_or_else(String::new, |a| a.to_string());
        mirror.open(node, addr)?;
    }
    while !mirror.set.is_empty() {
        let Some((tag, event)) = mirror.set.next_timeout(Duration::from_secs(3600)) else {
            continue;
        };
        let addr = mirror
            .nodes
            .get(&tag)
            .map_or_else(String::new, |n| n.addr.clone());
        match event.map_err(|error| format!("node {addr}: {error}"))? {
            StreamEvent::Item { code, body } => mirror.item(tag, code, &body, out)?,
            StreamEvent::End(reply) if reply.status == Status::Ok => {
                note(&format!("channel {channel} removed on node {addr}"));
            }
            StreamEvent::End(reply) => {
                let error = reply.into_result().err().map(|e| e.to_string());
                return Err(format!("node {addr}: {}", error.unwrap_or_default()).into());
            }
        }
    }
    Ok(())
}

impl Mirror<'_> {
    fn open(&mut self, node: usize, addr: String) -> CmdResult {
        let mut body = Vec::new();
        MirrorRequest {
            channel: self.channel,
            initial_refresh: true,
            periodic_refresh_s: 0,
        }
        .encode(&mut body);
        let tag = self.set.open(node, wire::MIRROR, &body)?;
        self.nodes.insert(
            tag,
            Node {
                addr,
                refreshing: true,
            },
        );
        Ok(())
    }

    fn item(&mut self, tag: StreamTag, code: u8, body: &[u8], out: &mut impl Write) -> CmdResult {
        let addr = self
            .nodes
            .get(&tag)
            .map_or_else(String::new, |n| n.addr.clone());
        let item = MirrorItem::decode(code, body)
            .map_err(|error| format!("node {addr}: Mirror item: {error}"))?;
        match item {
            MirrorItem::RefreshStarted(counts) => {
                self.bar.inc_length(counts.records + counts.tombstones);
            }
            MirrorItem::RefreshBatch { batch } => {
                let records = decode_batch(batch, &mut self.scratch)
                    .map_err(|error| format!("node {addr}: refresh batch: {error}"))?;
                self.bar.inc(records.count() as u64);
            }
            MirrorItem::RefreshDone(_) => self.refresh_done(tag),
            MirrorItem::Changed {
                key,
                version,
                value,
            } => {
                write!(out, "changed {key:016x} {version}\t")?;
                out.write_all(value)?;
                out.write_all(b"\n")?;
            }
            MirrorItem::Removed { key, version } => writeln!(out, "removed {key:016x} {version}")?,
            MirrorItem::Overflow { lost } => {
                writeln!(out, "overflow {lost}")?;
                note(&format!(
                    "node {addr} dropped {lost} changes (this mirror fell behind): mirroring it \
                     again with a refresh"
                ));
                let node = self.set.node_of(tag);
                self.set.close(tag);
                self.nodes.remove(&tag);
                if let Some(node) = node {
                    self.open(node, addr)?;
                }
            }
        }
        out.flush()?;
        Ok(())
    }

    fn refresh_done(&mut self, tag: StreamTag) {
        if let Some(node) = self.nodes.get_mut(&tag) {
            node.refreshing = false;
        }
        if self.nodes.values().all(|node| !node.refreshing) {
            self.bar.finish_and_clear();
            note(&format!(
                "refreshed {} records and tombstones of channel {}; printing changes (Ctrl-C \
                 stops)",
                self.bar.position(),
                self.channel
            ));
        }
    }
}
