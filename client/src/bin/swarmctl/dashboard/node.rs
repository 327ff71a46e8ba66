//! One node as the dashboard watches it: its own connection (a [`Probe`] kept for the life of
//! the dashboard, which the client library reconnects in the background), what health finds on
//! every collection, its last known hash range, and the counters its rates are made from.
//!
//! A node that could not be connected to at all (wrong kind, refused credentials: errors the
//! client does not retry by itself) is connected to again every [`RECONNECT_EVERY`].

use super::rates::{self, ChannelFigures, Counters, Rates};
use crate::cmd_health::{check_node, NodeCheck, Thresholds};
use crate::probe::Probe;
use client::dht::HashRange;
use client::{Client, ClientError, ClientOptions, NodeState};
use node_core::protocol::channels::encode_channel;
use node_core::protocol::logfiles::{self as log_wire, DiskSize};
use node_core::protocol::{dht as dht_wire, RequestCode};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a node without a client is connected to again.
const RECONNECT_EVERY: Duration = Duration::from_secs(5);
/// The most channels shown per node (in name order); the others are counted.
pub const MAX_CHANNELS_PER_NODE: usize = 100;

/// What the page shows of one node besides health's report.
#[derive(Debug, Default, Serialize)]
pub struct NodeView {
    pub addr: String,
    pub uptime_s: Option<u64>,
    /// When the client saw it go down (ms since the Unix epoch), while it is down.
    pub down_since_ms: Option<u64>,
    /// Rates since the previous collection; `None` on the first, after a restart, when down.
    pub rates: Option<Rates>,
    pub channels: BTreeMap<String, ChannelFigures>,
    /// Channels beyond [`MAX_CHANNELS_PER_NODE`], not shown.
    pub channels_left_out: usize,
    /// Why a logfiles node's channel sizes could not be read.
    pub channels_error: Option<String>,
}

/// One collection's findings on a node.
pub struct Polled {
    pub check: NodeCheck,
    pub view: NodeView,
}

pub struct Watched {
    pub probe: Probe,
    /// The range it answered last, kept while it is down.
    pub last_range: Option<HashRange>,
    reconnect_at: Instant,
    previous: Option<Counters>,
    /// Requests the dashboard sent since the counters of `previous` were taken, by name.
    own: BTreeMap<String, u64>,
}

impl Watched {
    pub fn new(probe: Probe) -> Watched {
        Watched {
            probe,
            last_range: None,
            reconnect_at: Instant::now() + RECONNECT_EVERY,
            previous: None,
            own: BTreeMap::new(),
        }
    }

    /// Asks the node everything the page shows.
    pub fn poll(
        &mut self,
        expected: &str,
        thresholds: &Thresholds,
        options: &ClientOptions,
    ) -> Polled {
        self.reconnect_if_due(options);
        let check = check_node(&self.probe, expected, thresholds);
        let mut view = NodeView {
            addr: self.probe.addr.to_string(),
            down_since_ms: self.down_since_ms(),
            ..NodeView::default()
        };
        // The requests of ours the node counted since our last GetStats: those we sent after
        // it (the GetStats itself counts after its answer is made) and this GetVersion.
        let mut sent = std::mem::take(&mut self.own);
        count(&mut sent, RequestCode::GET_VERSION.common_name(), 1);
        if check.report.state != "up" {
            return Polled { check, view };
        }
        if check.range.is_some() {
            self.last_range = check.range;
        }
        let mut counters = Counters::from_stats(&check.stats, Instant::now());
        let mut own = BTreeMap::new();
        count(&mut own, RequestCode::GET_STATS.common_name(), 1);
        if check.report.kind.as_deref() == Some("dht") {
            count(
                &mut own,
                dht_wire::request_name(dht_wire::GET_REDISTRIBUTION),
                1,
            );
        }
        if check.report.kind.as_deref() == Some("logfiles") {
            if let Ok(client) = &self.probe.client {
                match logfiles_channels(client, &mut own) {
                    Ok(channels) => counters.channels = channels,
                    Err(error) => view.channels_error = Some(error.reason()),
                }
            }
        }
        view.uptime_s = counters.uptime_s;
        view.rates = self
            .previous
            .as_ref()
            .and_then(|before| rates::rates(before, &counters, &sent));
        (view.channels, view.channels_left_out) = first_channels(&counters.channels);
        self.previous = Some(counters);
        self.own = own;
        Polled { check, view }
    }

    fn reconnect_if_due(&mut self, options: &ClientOptions) {
        if self.probe.client.is_ok() || Instant::now() < self.reconnect_at {
            return;
        }
        self.probe = Probe::connect(self.probe.addr, self.probe.kind, options);
        self.reconnect_at = Instant::now() + RECONNECT_EVERY;
    }

    fn down_since_ms(&self) -> Option<u64> {
        let status = self.probe.client.as_ref().ok()?.node_status(0)?;
        match status.state {
            NodeState::Down { since, .. } => unix_ms(since),
            _ => None,
        }
    }
}

/// A logfiles node's channels with their bucket files and bytes (GetStats does not carry
/// them): GetChannels, then GetChannelSize for each of the first [`MAX_CHANNELS_PER_NODE`],
/// pipelined. The requests sent are counted into `own`.
fn logfiles_channels(
    client: &Client,
    own: &mut BTreeMap<String, u64>,
) -> Result<BTreeMap<String, ChannelFigures>, ClientError> {
    count(own, log_wire::request_name(log_wire::GET_CHANNELS), 1);
    let names = client.channel_names(log_wire::GET_CHANNELS)?;
    let shown = &names[..names.len().min(MAX_CHANNELS_PER_NODE)];
    count(
        own,
        log_wire::request_name(log_wire::GET_CHANNEL_SIZE),
        shown.len() as u64,
    );
    let pending: Vec<_> = shown
        .iter()
        .map(|name| {
            let mut body = Vec::new();
            encode_channel(&mut body, name);
            client.submit(0, log_wire::GET_CHANNEL_SIZE, &body)
        })
        .collect();
    let mut channels = BTreeMap::new();
    for (name, pending) in names.iter().zip(pending) {
        let reply = pending?.wait()?;
        let node = reply.node;
        let body = reply.ok_body()?;
        let size = DiskSize::decode(&body).map_err(|e| ClientError::Protocol {
            node,
            reason: format!("GetChannelSize reply: {e}"),
        })?;
        channels.insert(
            name.clone(),
            ChannelFigures {
                bytes: Some(size.bytes),
                buckets: Some(size.buckets),
                ..ChannelFigures::default()
            },
        );
    }
    // Channels beyond the limit are counted, not shown.
    for name in &names[shown.len()..] {
        channels.insert(name.clone(), ChannelFigures::default());
    }
    Ok(channels)
}

/// The first [`MAX_CHANNELS_PER_NODE`] channels, and how many more there are.
fn first_channels(
    channels: &BTreeMap<String, ChannelFigures>,
) -> (BTreeMap<String, ChannelFigures>, usize) {
    let shown: BTreeMap<String, ChannelFigures> = channels
        .iter()
        .take(MAX_CHANNELS_PER_NODE)
        .map(|(name, figures)| (name.clone(), figures.clone()))
        .collect();
    let left_out = channels.len() - shown.len();
    (shown, left_out)
}

fn count(own: &mut BTreeMap<String, u64>, name: Option<&str>, requests: u64) {
    if let Some(name) = name {
        *own.entry(name.to_string()).or_default() += requests;
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(at: SystemTime) -> Option<u64> {
    let elapsed = at.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(elapsed.as_millis()).ok()
}
