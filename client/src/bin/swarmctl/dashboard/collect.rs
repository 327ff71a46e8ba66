//! The collector: every `--interval-ms` it asks every node of the topology (all at once, each
//! on its own connection: see `node`), and turns the answers into the page's state — health's
//! report, per node uptime and rates, the dht ranges, the channels over all nodes — and one
//! more point of the history. Both are handed to the [`Board`] the HTTP side reads.
//!
//! It follows the topology file: when the file changes, nodes added are watched and nodes
//! removed are dropped at the next collection (a file that no longer loads keeps the nodes as
//! they were, and the page says why).

use super::history::{History, Point};
use super::node::{unix_ms, NodeView, Polled, Watched};
use super::ranges::{self, RangeNode, RangeView};
use super::rates::{quantile_us, round, ChannelFigures};
use crate::cmd_health::{assess, Report, Thresholds};
use crate::probe::{connect_all, probe_targets, Probe};
use crate::targets::TargetArgs;
use bounded_http::Bytes;
use client::dht::HashRange;
use client::ClientOptions;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime};

/// The most nodes one dashboard watches (a thread each per collection, and a series each in
/// the history).
pub const MAX_NODES: usize = 128;

/// What the collector publishes and the HTTP side serves: the state as JSON, ready to send,
/// and the history (turned into JSON on request).
pub struct Board {
    state: Mutex<Bytes>,
    history: Mutex<History>,
}

impl Board {
    pub fn new(history_points: usize) -> Board {
        Board {
            state: Mutex::new(Bytes::from_static(b"{\"seq\":0}")),
            history: Mutex::new(History::new(history_points)),
        }
    }

    pub fn state_json(&self) -> Bytes {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn history_json(&self) -> Bytes {
        let history = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        // Plain data (strings, numbers, nulls): serialising cannot fail.
        Bytes::from(serde_json::to_vec(&*history).unwrap_or_default())
    }

    fn publish(&self, seq: u64, point: &Point, state: Vec<u8>) {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(seq, point);
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) = Bytes::from(state);
    }

    pub fn history_capacity(&self) -> usize {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .capacity
    }
}

/// `/api/state` (docs/operations.md, "Dashboard", lists its fields).
#[derive(Serialize)]
struct State<'a> {
    seq: u64,
    t_ms: u64,
    interval_ms: u64,
    history_capacity: usize,
    topology: Option<String>,
    topology_error: Option<&'a str>,
    swarmctl_version: &'static str,
    /// Exactly what `swarmctl health --json` prints.
    health: &'a Report,
    /// One per node, in the order of `health.nodes`.
    nodes: &'a [NodeView],
    ranges: Option<RangeView>,
    channels: Vec<ChannelRow>,
    point: &'a Point,
}

/// One channel over every node of a kind that has it.
#[derive(Debug, Serialize)]
struct ChannelRow {
    kind: String,
    name: String,
    nodes: usize,
    records: Option<u64>,
    bytes: Option<u64>,
    buckets: Option<u64>,
    /// The fullest node's.
    fill_percent: Option<u64>,
    growth_per_s: Option<f64>,
}

pub struct Collector {
    targets: TargetArgs,
    options: ClientOptions,
    thresholds: Thresholds,
    interval: Duration,
    watched: Vec<Watched>,
    stated: HashMap<SocketAddr, HashRange>,
    topology_stamp: Option<SystemTime>,
    topology_error: Option<String>,
    seq: u64,
}

impl Collector {
    /// Connects to every node of the command line (nodes that are down start down).
    pub fn start(
        targets: &TargetArgs,
        options: ClientOptions,
        thresholds: Thresholds,
        interval: Duration,
    ) -> Result<Collector, Box<dyn std::error::Error>> {
        let (nodes, _) = probe_targets(targets)?;
        check_node_count(nodes.len())?;
        let watched = connect_all(&nodes, &options)
            .into_iter()
            .map(Watched::new)
            .collect();
        Ok(Collector {
            targets: targets.clone(),
            stated: stated_ranges(targets),
            topology_stamp: topology_stamp(targets),
            options,
            thresholds,
            interval,
            watched,
            topology_error: None,
            seq: 0,
        })
    }

    pub fn node_count(&self) -> usize {
        self.watched.len()
    }

    /// One collection: asks every node, publishes the state and a point of history.
    pub fn collect(&mut self, board: &Board) {
        self.follow_topology();
        let polled = self.poll_all();
        self.seq += 1;
        let mut checks = Vec::with_capacity(polled.len());
        let mut views = Vec::with_capacity(polled.len());
        let mut range_nodes = Vec::new();
        for (watched, Polled { check, view }) in self.watched.iter().zip(polled) {
            let addr = watched.probe.addr;
            let range = watched
                .last_range
                .or_else(|| self.stated.get(&addr).copied());
            if check.report.kind.as_deref() == Some("dht") {
                range_nodes.push(RangeNode {
                    addr,
                    state: check.report.state,
                    range,
                });
            }
            checks.push((addr, check.report, range));
            views.push(view);
        }
        let health = assess(checks, crate::cmd_health::replication_factor(&self.targets));
        let point = history_point(&views, &health);
        let state = State {
            seq: self.seq,
            t_ms: point.t_ms,
            interval_ms: u64::try_from(self.interval.as_millis()).unwrap_or(u64::MAX),
            history_capacity: board.history_capacity(),
            topology: self.targets.nodes_file().map(|p| p.display().to_string()),
            topology_error: self.topology_error.as_deref(),
            swarmctl_version: env!("CARGO_PKG_VERSION"),
            channels: channel_rows(&views, &health),
            ranges: (!range_nodes.is_empty()).then(|| ranges::view(&range_nodes)),
            health: &health,
            nodes: &views,
            point: &point,
        };
        // Plain data (strings, numbers, nulls): serialising cannot fail.
        let json = serde_json::to_vec(&state).unwrap_or_default();
        board.publish(self.seq, &point, json);
    }

    /// Every node polled at once, each on a thread of its own: a node that does not answer
    /// costs one request timeout, not one per node.
    fn poll_all(&mut self) -> Vec<Polled> {
        let expected = self.thresholds.expected_version();
        let (thresholds, options) = (&self.thresholds, &self.options);
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .watched
                .iter_mut()
                .map(|watched| scope.spawn(|| watched.poll(&expected, thresholds, options)))
                .collect();
            handles
                .into_iter()
                .map(|handle| match handle.join() {
                    Ok(polled) => polled,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        })
    }

    /// Takes in a changed topology file: new nodes are connected to, removed ones dropped,
    /// the others kept with their connections and counters.
    fn follow_topology(&mut self) {
        let stamp = topology_stamp(&self.targets);
        if stamp == self.topology_stamp {
            return;
        }
        self.topology_stamp = stamp;
        let nodes = match probe_targets(&self.targets) {
            Ok((nodes, _)) => nodes,
            Err(error) => {
                self.topology_error = Some(format!("{error}; still showing the nodes it had"));
                return;
            }
        };
        if let Err(error) = check_node_count(nodes.len()) {
            self.topology_error = Some(format!("{error}; still showing the nodes it had"));
            return;
        }
        self.topology_error = None;
        self.stated = stated_ranges(&self.targets);
        let mut kept: Vec<Option<Watched>> = std::mem::take(&mut self.watched)
            .into_iter()
            .map(Some)
            .collect();
        for (addr, kind) in nodes {
            let same = |w: &Option<Watched>| {
                w.as_ref()
                    .is_some_and(|w| w.probe.addr == addr && w.probe.kind == kind)
            };
            let watched = match kept.iter_mut().find(|w| same(w)) {
                Some(slot) => slot.take(),
                None => Some(Watched::new(Probe::connect(addr, kind, &self.options))),
            };
            self.watched.extend(watched);
        }
    }
}

fn check_node_count(count: usize) -> Result<(), String> {
    if count > MAX_NODES {
        return Err(format!(
            "the topology lists {count} nodes; one dashboard shows at most {MAX_NODES}"
        ));
    }
    Ok(())
}

fn stated_ranges(targets: &TargetArgs) -> HashMap<SocketAddr, HashRange> {
    targets
        .topology()
        .map(|topology| topology.dht_ranges())
        .unwrap_or_default()
}

/// When the `--nodes` file last changed (`None` without one, or when it cannot be read).
fn topology_stamp(targets: &TargetArgs) -> Option<SystemTime> {
    let path = targets.nodes_file()?;
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The cluster's request rate and p99, and each node's, now.
fn history_point(views: &[NodeView], health: &Report) -> Point {
    let mut point = Point {
        t_ms: unix_ms(SystemTime::now()).unwrap_or(0),
        requests_per_s: None,
        p99_us: None,
        nodes: BTreeMap::new(),
    };
    let mut buckets = [0u64; 6];
    for (view, report) in views.iter().zip(&health.nodes) {
        let rates = view.rates.as_ref().filter(|_| report.state == "up");
        if let Some(rates) = rates {
            let total = point.requests_per_s.unwrap_or(0.0) + rates.requests_per_s;
            point.requests_per_s = Some(round(total));
            for (sum, count) in buckets.iter_mut().zip(rates.buckets) {
                *sum += count;
            }
        }
        let figures = rates.map(|r| (Some(r.requests_per_s), r.p99_us));
        point
            .nodes
            .insert(view.addr.clone(), figures.unwrap_or((None, None)));
    }
    if point.requests_per_s.is_some_and(|rate| rate > 0.0) {
        point.p99_us = quantile_us(&buckets, 0.99);
    }
    point
}

/// Every channel of every node that answered, summed per kind and name.
fn channel_rows(views: &[NodeView], health: &Report) -> Vec<ChannelRow> {
    let mut rows: BTreeMap<(String, String), ChannelRow> = BTreeMap::new();
    for (view, report) in views.iter().zip(&health.nodes) {
        let kind = report.kind.clone().unwrap_or_default();
        let growth = view.rates.as_ref().map(|r| &r.channel_growth_per_s);
        for (name, figures) in &view.channels {
            let row = rows
                .entry((kind.clone(), name.clone()))
                .or_insert_with(|| ChannelRow {
                    kind: kind.clone(),
                    name: name.clone(),
                    nodes: 0,
                    records: None,
                    bytes: None,
                    buckets: None,
                    fill_percent: None,
                    growth_per_s: None,
                });
            add_channel(row, figures, growth.and_then(|g| g.get(name)).copied());
        }
    }
    rows.into_values().collect()
}

fn add_channel(row: &mut ChannelRow, figures: &ChannelFigures, growth: Option<f64>) {
    let sum = |total: Option<u64>, more: Option<u64>| match (total, more) {
        (Some(a), Some(b)) => Some(a.saturating_add(b)),
        (a, b) => a.or(b),
    };
    row.nodes += 1;
    row.records = sum(row.records, figures.records);
    row.bytes = sum(row.bytes, figures.bytes);
    row.buckets = sum(row.buckets, figures.buckets);
    row.fill_percent = row.fill_percent.max(figures.fill_percent);
    row.growth_per_s = match (row.growth_per_s, growth) {
        (Some(a), Some(b)) => Some(round(a + b)),
        (a, b) => a.or(b),
    };
}
