//! `swarmctl health [--json]`: one verdict for the whole topology.
//!
//! Every node is asked on its own connection (see `probe`): whether it can be reached, that it
//! is of the kind its topology section says and runs the expected version, its open
//! connections against its limit, and per kind: a dht node's hash range (the ranges of all dht
//! nodes must tile the hash space) and the age of its last complete dump against its dump
//! period; a queue node's fill per channel; a logfiles node's disk use. Each finding beyond a
//! threshold is a *problem*; no problem is `healthy` (exit 0), any is `degraded` (exit 1). A
//! usage error (bad options, unreadable topology) is 2.
//!
//! dht nodes whose ranges are exactly equal form a replica set (docs/replication.md): each set
//! with fewer live members than it should have (the topology's `[dht] replication_factor`, else
//! its own member count) is a problem, as is a set with fewer members than the factor.
//!
//! Text output: one line per node (`ADDR KIND STATE DETAIL`), a line on the dht ranges, one
//! line per replica set when a set has several members or the topology states a replication
//! factor (`replica set MIN:MAX: LIVE/MEMBERS live (ADDR up, ADDR down)`), then
//! `verdict: healthy` or `verdict: degraded, N problem(s):` and one indented line per problem.
//! `--json`: one JSON object `{"healthy", "verdict", "problems", "nodes": [...], "dht_ranges"}`
//! (`dht_ranges`: `tile`, `problems`, `replication_factor`, and `sets`, each with `range`,
//! `members`, `live`, `short`)
//! whose node objects carry `addr`, `kind`, `state` (`up`, `down`, `error`), `error`, `version`,
//! `connections_open`, `connections_max`, `problems`, and per kind `dht` (`range`,
//! `redistributing`, `records`, `dump_period_s`, `last_dump_age_s`, `catch_up`: `ready`,
//! `catching up` — a problem: it answers no reads yet — or `forced ready`), `queue` (`fill_percent`,
//! the fullest channel's; `channels`: fill per channel), `logfiles` (`bytes`, `disk_size_bytes`,
//! `disk_free_bytes`).

use crate::outcome::ExitWith;
use crate::probe::{probe_all, Probe};
use crate::targets::TargetArgs;
use crate::CmdResult;
use client::dht::{show_range, HashRange, RangeTable};
use client::{Client, ClientError, NodeKind};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    thresholds: Thresholds,
}

/// What counts as a problem: health's options, which the dashboard shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Thresholds {
    /// The software version every node must run (default: this swarmctl's).
    #[arg(long, value_name = "VERSION")]
    expect_version: Option<String>,
    /// A queue channel this full (percent of its ring) or more is a problem.
    #[arg(long, value_name = "PERCENT", default_value_t = 90)]
    max_fill_percent: u64,
    /// A logfiles node whose disk has less free space than this (percent) is a problem.
    #[arg(long, value_name = "PERCENT", default_value_t = 10)]
    min_disk_free_percent: u64,
    /// A node with this share of its connection limit open (percent) or more is a problem.
    #[arg(long, value_name = "PERCENT", default_value_t = 90)]
    max_connections_percent: u64,
    /// A dht node whose last complete dump is older than this many dump periods is a problem.
    #[arg(long, value_name = "PERIODS", default_value_t = 2)]
    max_dump_age_periods: u64,
}

impl Thresholds {
    /// The version every node must run.
    pub fn expected_version(&self) -> String {
        self.expect_version
            .clone()
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string())
    }
}

/// The whole verdict: `swarmctl health --json` prints it, the dashboard serves it.
#[derive(Debug, Serialize)]
pub struct Report {
    pub healthy: bool,
    pub verdict: &'static str,
    pub problems: Vec<String>,
    pub nodes: Vec<NodeReport>,
    pub dht_ranges: Option<RangesReport>,
}

#[derive(Debug, Default, Serialize)]
pub struct NodeReport {
    pub addr: String,
    pub kind: Option<String>,
    pub state: &'static str,
    pub error: Option<String>,
    pub version: Option<String>,
    pub connections_open: Option<u64>,
    pub connections_max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dht: Option<DhtReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logfiles: Option<LogfilesReport>,
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DhtReport {
    pub range: String,
    pub redistributing: bool,
    pub records: Option<u64>,
    pub dump_period_s: Option<u64>,
    pub last_dump_age_s: Option<u64>,
    /// `ready`, `catching up` (with its replica set: reads answered NotReady) or `forced ready`
    /// (GetStats `catch_up_state`; `ready` for a node without it).
    pub catch_up: &'static str,
}

#[derive(Debug, Serialize)]
pub struct QueueReport {
    pub fill_percent: u64,
    pub channels: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub struct LogfilesReport {
    pub bytes: Option<u64>,
    pub disk_size_bytes: Option<u64>,
    pub disk_free_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct RangesReport {
    pub tile: bool,
    pub problems: Vec<String>,
    /// The topology's `[dht] replication_factor`, if it states one.
    pub replication_factor: Option<u32>,
    /// The replica sets (nodes of equal ranges), in hash-space order.
    pub sets: Vec<SetReport>,
}

/// One replica set: the nodes that own exactly `range`.
#[derive(Debug, Serialize)]
pub struct SetReport {
    pub range: String,
    pub members: Vec<String>,
    /// The members that answered.
    pub live: Vec<String>,
    /// Fewer members, or fewer live ones, than the set should have: the topology's
    /// replication factor, else its own member count.
    pub short: bool,
}

/// One node as health found it: the report, its hash range (a dht node that answered) and
/// the counters it answered GetStats with (empty when it could not be asked).
pub struct NodeCheck {
    pub report: NodeReport,
    pub range: Option<HashRange>,
    pub stats: BTreeMap<String, u64>,
}

pub fn run(targets: &TargetArgs, args: &Args) -> CmdResult {
    let probes = probe_all(targets)?;
    let expected = args.thresholds.expected_version();
    let stated = targets
        .topology()
        .map(|topology| topology.dht_ranges())
        .unwrap_or_default();
    let checks = probes
        .iter()
        .map(|probe| {
            let check = check_node(probe, &expected, &args.thresholds);
            let known = check.range.or_else(|| stated.get(&probe.addr).copied());
            (probe.addr, check.report, known)
        })
        .collect();
    let report = assess(checks, replication_factor(targets));
    let healthy = report.healthy;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_text(&report, &mut out)?;
    }
    out.flush()?;
    if healthy {
        Ok(())
    } else {
        Err(ExitWith(1).into())
    }
}

/// The topology's `[dht] replication_factor`, if it has one.
pub fn replication_factor(targets: &TargetArgs) -> Option<u32> {
    targets
        .topology()
        .and_then(|topology| topology.replication().replication_factor)
}

/// The verdict over every node's report, each with its hash range when it is a dht node whose
/// range is known (answered now or earlier, or stated by the topology); `replication_factor`
/// is the members each replica set should have.
pub fn assess(
    checks: Vec<(SocketAddr, NodeReport, Option<HashRange>)>,
    replication_factor: Option<u32>,
) -> Report {
    let mut nodes = Vec::with_capacity(checks.len());
    let mut ranges = Vec::new();
    for (addr, report, range) in checks {
        if report.kind.as_deref() == Some("dht") {
            ranges.push((addr, range, report.state == "up"));
        }
        nodes.push(report);
    }
    let dht_ranges = (!ranges.is_empty()).then(|| check_ranges(&ranges, replication_factor));
    let mut problems: Vec<String> = nodes.iter().flat_map(|n| n.problems.clone()).collect();
    if let Some(ranges) = &dht_ranges {
        problems.extend(ranges.problems.iter().map(|p| format!("dht ranges: {p}")));
    }
    let healthy = problems.is_empty();
    Report {
        healthy,
        verdict: if healthy { "healthy" } else { "degraded" },
        problems,
        nodes,
        dht_ranges,
    }
}

/// Everything about one node; its hash range and counters too when it answered.
pub fn check_node(probe: &Probe, expected: &str, thresholds: &Thresholds) -> NodeCheck {
    let mut report = NodeReport {
        addr: probe.addr.to_string(),
        kind: probe.kind.map(|kind| kind.to_string()),
        ..NodeReport::default()
    };
    let label = |kind: &Option<String>| match kind {
        Some(kind) => format!("node {} ({kind})", probe.addr),
        None => format!("node {}", probe.addr),
    };
    let failed = |mut report: NodeReport, error: &ClientError| {
        fail(&mut report, error);
        let problem = format!("{}: {}", label(&report.kind), Probe::describe(error));
        report.problems = vec![problem];
        NodeCheck {
            report,
            range: None,
            stats: BTreeMap::new(),
        }
    };
    let client = match &probe.client {
        Ok(client) => client,
        Err(error) => return failed(report, error),
    };
    match ask_node(client, &mut report, expected, thresholds) {
        Ok((range, stats)) => {
            report.state = "up";
            let who = label(&report.kind);
            for problem in &mut report.problems {
                *problem = format!("{who}: {problem}");
            }
            NodeCheck {
                report,
                range,
                stats,
            }
        }
        Err(error) => failed(report, &error),
    }
}

fn fail(report: &mut NodeReport, error: &ClientError) {
    report.state = if error.is_node_down() {
        "down"
    } else {
        "error"
    };
    report.error = Some(Probe::why(error));
}

/// Asks a connected node what health needs; the problems found go into `report` (without the
/// node's name, added by the caller).
fn ask_node(
    client: &Client,
    report: &mut NodeReport,
    expected: &str,
    args: &Thresholds,
) -> Result<(Option<HashRange>, BTreeMap<String, u64>), ClientError> {
    let version = client.get_version(0)?;
    report.kind = Some(version.kind.to_string());
    if version.software_version != expected {
        report.problems.push(format!(
            "runs version {}, expected {expected}",
            version.software_version
        ));
    }
    report.version = Some(version.software_version);
    let stats: BTreeMap<String, u64> = client.get_stats(0)?.into_iter().collect();
    report.connections_open = stats.get("connections_open").copied();
    report.connections_max = stats.get("connections_max").copied();
    if let (Some(open), Some(max)) = (report.connections_open, report.connections_max) {
        if max > 0 && open * 100 >= max * args.max_connections_percent {
            report
                .problems
                .push(format!("{open} of its {max} connections are open"));
        }
    }
    let range = match version.kind {
        NodeKind::Dht => Some(dht_details(client, &stats, report, args)?),
        NodeKind::Queue => {
            queue_details(&stats, report, args);
            None
        }
        NodeKind::Logfiles => {
            logfiles_details(&stats, report, args);
            None
        }
    };
    Ok((range, stats))
}

fn dht_details(
    client: &Client,
    stats: &BTreeMap<String, u64>,
    report: &mut NodeReport,
    args: &Thresholds,
) -> Result<HashRange, ClientError> {
    let state = client::dht::redistribute::state(client, 0)?;
    let period = stats.get("dump_period_s").copied();
    let age = stats.get("last_dump_age_s").copied();
    if let (Some(period), Some(age)) = (period, age) {
        if period > 0 && age > period.saturating_mul(args.max_dump_age_periods) {
            report.problems.push(format!(
                "its last complete dump is {age} s old (dump period {period} s)"
            ));
        }
    }
    let catch_up = match stats.get("catch_up_state").copied().unwrap_or(0) {
        0 => "ready",
        1 => "catching up",
        _ => "forced ready",
    };
    if catch_up == "catching up" {
        report.problems.push(
            "catching up with its replica set: it answers no reads until it holds what the \
             other members hold"
                .into(),
        );
    }
    report.dht = Some(DhtReport {
        catch_up,
        range: show_range(&state.range),
        redistributing: state.running,
        records: stats.get("total_records").copied(),
        dump_period_s: period,
        last_dump_age_s: age,
    });
    Ok(state.range)
}

fn queue_details(stats: &BTreeMap<String, u64>, report: &mut NodeReport, args: &Thresholds) {
    let channels: BTreeMap<String, u64> = stats
        .iter()
        .filter_map(|(name, fill)| {
            let channel = name
                .strip_prefix("channel/")?
                .strip_suffix("/fill_percent")?;
            Some((channel.to_string(), *fill))
        })
        .collect();
    for (channel, fill) in &channels {
        if *fill >= args.max_fill_percent {
            report
                .problems
                .push(format!("channel {channel} is {fill}% full"));
        }
    }
    report.queue = Some(QueueReport {
        fill_percent: channels.values().copied().max().unwrap_or(0),
        channels,
    });
}

fn logfiles_details(stats: &BTreeMap<String, u64>, report: &mut NodeReport, args: &Thresholds) {
    let size = stats.get("disk_size_bytes").copied();
    let free = stats.get("disk_free_bytes").copied();
    if let (Some(size), Some(free)) = (size, free) {
        if let Some(free_percent) = percent(free, size) {
            if free.saturating_mul(100) < size.saturating_mul(args.min_disk_free_percent) {
                report.problems.push(format!(
                    "its disk has {free} of {size} bytes free ({free_percent}%)"
                ));
            }
        }
    }
    report.logfiles = Some(LogfilesReport {
        bytes: stats.get("total_bytes").copied(),
        disk_size_bytes: size,
        disk_free_bytes: free,
    });
}

/// Whether the dht nodes' ranges (as answered, or as the topology states them for nodes that
/// did not answer; with whether the node is up) tile the hash space, and how each replica set
/// is doing.
fn check_ranges(
    ranges: &[(SocketAddr, Option<HashRange>, bool)],
    replication_factor: Option<u32>,
) -> RangesReport {
    let mut problems: Vec<String> = ranges
        .iter()
        .filter(|(_, range, _)| range.is_none())
        .map(|(addr, _, _)| format!("the range of {addr} is unknown"))
        .collect();
    let known: Vec<(SocketAddr, HashRange, bool)> = ranges
        .iter()
        .filter_map(|(addr, range, up)| range.map(|range| (*addr, range, *up)))
        .collect();
    let table = RangeTable::new(
        known
            .iter()
            .map(|(addr, range, _)| (*addr, *range))
            .collect(),
    );
    problems.extend(table.problems().iter().map(ToString::to_string));
    let tile = problems.is_empty();
    let sets: Vec<SetReport> = table
        .replica_sets()
        .iter()
        .map(|set| set_report(set, &known, replication_factor))
        .collect();
    for set in sets.iter().filter(|set| set.short) {
        problems.push(set_problem(set, replication_factor));
    }
    RangesReport {
        tile,
        problems,
        replication_factor,
        sets,
    }
}

fn set_report(
    set: &client::dht::ReplicaSet,
    nodes: &[(SocketAddr, HashRange, bool)],
    replication_factor: Option<u32>,
) -> SetReport {
    let members: Vec<&(SocketAddr, HashRange, bool)> = set
        .members
        .iter()
        .filter_map(|&index| nodes.get(index))
        .collect();
    let live: Vec<String> = members
        .iter()
        .filter(|(_, _, up)| *up)
        .map(|(addr, _, _)| addr.to_string())
        .collect();
    let expected = replication_factor.map_or(members.len(), |factor| factor as usize);
    SetReport {
        range: show_range(&set.range),
        short: members.len() < expected || live.len() < expected,
        members: members
            .iter()
            .map(|(addr, _, _)| addr.to_string())
            .collect(),
        live,
    }
}

/// What is wrong with a short set, for the problems list.
fn set_problem(set: &SetReport, replication_factor: Option<u32>) -> String {
    let mut text = format!(
        "replica set {}: {} of {} member(s) live",
        set.range,
        set.live.len(),
        set.members.len()
    );
    let down: Vec<&str> = set
        .members
        .iter()
        .filter(|member| !set.live.contains(member))
        .map(String::as_str)
        .collect();
    if !down.is_empty() {
        text.push_str(&format!(" (not answering: {})", down.join(", ")));
    }
    if let Some(factor) = replication_factor {
        if set.members.len() < factor as usize {
            text.push_str(&format!(
                "; the topology's replication_factor is {factor}, the set has {} member(s)",
                set.members.len()
            ));
        }
    }
    text
}

fn print_text(report: &Report, out: &mut impl Write) -> std::io::Result<()> {
    for node in &report.nodes {
        let kind = node.kind.as_deref().unwrap_or("?");
        writeln!(
            out,
            "{:<22} {:<9} {:<5} {}",
            node.addr,
            kind,
            node.state,
            detail(node)
        )?;
    }
    if let Some(ranges) = &report.dht_ranges {
        if ranges.tile {
            writeln!(out, "dht ranges: tile the hash space")?;
        } else {
            writeln!(out, "dht ranges: do NOT tile the hash space")?;
        }
        let replicated = ranges.replication_factor.is_some()
            || ranges.sets.iter().any(|set| set.members.len() > 1);
        for set in ranges.sets.iter().filter(|_| replicated) {
            let members: Vec<String> = set
                .members
                .iter()
                .map(|member| match set.live.contains(member) {
                    true => format!("{member} up"),
                    false => format!("{member} down"),
                })
                .collect();
            writeln!(
                out,
                "replica set {}: {}/{} live ({}){}",
                set.range,
                set.live.len(),
                set.members.len(),
                members.join(", "),
                if set.short { " SHORT" } else { "" }
            )?;
        }
    }
    if report.healthy {
        writeln!(out, "verdict: healthy")
    } else {
        writeln!(
            out,
            "verdict: degraded, {} problem(s):",
            report.problems.len()
        )?;
        for problem in &report.problems {
            writeln!(out, "  {problem}")?;
        }
        Ok(())
    }
}

/// The node's line after its state: what it runs and holds, or why it could not be asked.
fn detail(node: &NodeReport) -> String {
    if let Some(error) = &node.error {
        return error.clone();
    }
    let mut parts = vec![format!(
        "version {}",
        node.version.as_deref().unwrap_or("?")
    )];
    if let (Some(open), Some(max)) = (node.connections_open, node.connections_max) {
        parts.push(format!("connections {open}/{max}"));
    }
    if let Some(dht) = &node.dht {
        parts.push(format!("range {}", dht.range));
        if dht.catch_up != "ready" {
            parts.push(dht.catch_up.to_string());
        }
        if let Some(records) = dht.records {
            parts.push(format!("{records} records"));
        }
        match (dht.dump_period_s, dht.last_dump_age_s) {
            (Some(period), Some(age)) if period > 0 => {
                parts.push(format!("dump {age} s old (period {period} s)"))
            }
            _ => parts.push("no periodic dumps (dhtdump's are not seen here)".into()),
        }
    }
    if let Some(queue) = &node.queue {
        parts.push(format!("fullest channel {}%", queue.fill_percent));
    }
    if let Some(logs) = &node.logfiles {
        if let Some(bytes) = logs.bytes {
            parts.push(format!("{bytes} bytes of buckets"));
        }
        if let Some(free) = logs
            .disk_free_bytes
            .zip(logs.disk_size_bytes)
            .and_then(|(free, size)| percent(free, size))
        {
            parts.push(format!("disk {free}% free"));
        }
    }
    parts.join(", ")
}

/// `part` as a whole percentage of `whole`; `None` when `whole` is 0.
fn percent(part: u64, whole: u64) -> Option<u64> {
    part.saturating_mul(100).checked_div(whole)
}
