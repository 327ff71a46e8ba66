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
//! Text output: one line per node (`ADDR KIND STATE DETAIL`), a line on the dht ranges, then
//! `verdict: healthy` or `verdict: degraded, N problem(s):` and one indented line per problem.
//! `--json`: one JSON object `{"healthy", "verdict", "problems", "nodes": [...], "dht_ranges"}`
//! whose node objects carry `addr`, `kind`, `state` (`up`, `down`, `error`), `error`, `version`,
//! `connections_open`, `connections_max`, `problems`, and per kind `dht` (`range`,
//! `redistributing`, `records`, `dump_period_s`, `last_dump_age_s`), `queue` (`fill_percent`,
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

#[derive(Debug, Serialize)]
struct Report {
    healthy: bool,
    verdict: &'static str,
    problems: Vec<String>,
    nodes: Vec<NodeReport>,
    dht_ranges: Option<RangesReport>,
}

#[derive(Debug, Default, Serialize)]
struct NodeReport {
    addr: String,
    kind: Option<String>,
    state: &'static str,
    error: Option<String>,
    version: Option<String>,
    connections_open: Option<u64>,
    connections_max: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dht: Option<DhtReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue: Option<QueueReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    logfiles: Option<LogfilesReport>,
    problems: Vec<String>,
}

#[derive(Debug, Serialize)]
struct DhtReport {
    range: String,
    redistributing: bool,
    records: Option<u64>,
    dump_period_s: Option<u64>,
    last_dump_age_s: Option<u64>,
}

#[derive(Debug, Serialize)]
struct QueueReport {
    fill_percent: u64,
    channels: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
struct LogfilesReport {
    bytes: Option<u64>,
    disk_size_bytes: Option<u64>,
    disk_free_bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct RangesReport {
    tile: bool,
    problems: Vec<String>,
}

pub fn run(targets: &TargetArgs, args: &Args) -> CmdResult {
    let probes = probe_all(targets)?;
    let expected = args
        .expect_version
        .clone()
        .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_string());
    let mut nodes = Vec::with_capacity(probes.len());
    let mut ranges = Vec::new();
    let stated = targets
        .topology()
        .map(|topology| topology.dht_ranges())
        .unwrap_or_default();
    for probe in &probes {
        let (report, range) = check_node(probe, &expected, args);
        if report.kind.as_deref() == Some("dht") {
            ranges.push((
                probe.addr,
                range.or_else(|| stated.get(&probe.addr).copied()),
            ));
        }
        nodes.push(report);
    }
    let dht_ranges = (!ranges.is_empty()).then(|| check_ranges(&ranges));
    let mut problems: Vec<String> = nodes.iter().flat_map(|n| n.problems.clone()).collect();
    if let Some(ranges) = &dht_ranges {
        problems.extend(ranges.problems.iter().map(|p| format!("dht ranges: {p}")));
    }
    let healthy = problems.is_empty();
    let report = Report {
        healthy,
        verdict: if healthy { "healthy" } else { "degraded" },
        problems,
        nodes,
        dht_ranges,
    };
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

/// Everything about one node; its hash range too when it is a dht node that answered.
fn check_node(probe: &Probe, expected: &str, args: &Args) -> (NodeReport, Option<HashRange>) {
    let mut report = NodeReport {
        addr: probe.addr.to_string(),
        kind: probe.kind.map(|kind| kind.to_string()),
        ..NodeReport::default()
    };
    let label = |kind: &Option<String>| match kind {
        Some(kind) => format!("node {} ({kind})", probe.addr),
        None => format!("node {}", probe.addr),
    };
    let client = match &probe.client {
        Ok(client) => client,
        Err(error) => {
            fail(&mut report, error);
            let problem = format!("{}: {}", label(&report.kind), Probe::describe(error));
            report.problems.push(problem);
            return (report, None);
        }
    };
    match ask_node(client, &mut report, expected, args) {
        Ok(range) => {
            report.state = "up";
            let who = label(&report.kind);
            for problem in &mut report.problems {
                *problem = format!("{who}: {problem}");
            }
            (report, range)
        }
        Err(error) => {
            fail(&mut report, &error);
            let problem = format!("{}: {}", label(&report.kind), Probe::describe(&error));
            report.problems = vec![problem];
            (report, None)
        }
    }
}

fn fail(report: &mut NodeReport, error: &ClientError) {
    report.state = if error.is_node_down() {
        "down"
    } else {
        "error"
    };
    report.error = Some(error.reason());
}

/// Asks a connected node what health needs; the problems found go into `report` (without the
/// node's name, added by the caller).
fn ask_node(
    client: &Client,
    report: &mut NodeReport,
    expected: &str,
    args: &Args,
) -> Result<Option<HashRange>, ClientError> {
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
    match version.kind {
        NodeKind::Dht => return dht_details(client, &stats, report, args).map(Some),
        NodeKind::Queue => queue_details(&stats, report, args),
        NodeKind::Logfiles => logfiles_details(&stats, report, args),
    }
    Ok(None)
}

fn dht_details(
    client: &Client,
    stats: &BTreeMap<String, u64>,
    report: &mut NodeReport,
    args: &Args,
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
    report.dht = Some(DhtReport {
        range: show_range(&state.range),
        redistributing: state.running,
        records: stats.get("total_records").copied(),
        dump_period_s: period,
        last_dump_age_s: age,
    });
    Ok(state.range)
}

fn queue_details(stats: &BTreeMap<String, u64>, report: &mut NodeReport, args: &Args) {
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

fn logfiles_details(stats: &BTreeMap<String, u64>, report: &mut NodeReport, args: &Args) {
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
/// did not answer) tile the hash space.
fn check_ranges(ranges: &[(SocketAddr, Option<HashRange>)]) -> RangesReport {
    let mut problems: Vec<String> = ranges
        .iter()
        .filter(|(_, range)| range.is_none())
        .map(|(addr, _)| format!("the range of {addr} is unknown"))
        .collect();
    let table = RangeTable::new(
        ranges
            .iter()
            .filter_map(|(addr, range)| range.map(|range| (*addr, range)))
            .collect(),
    );
    problems.extend(table.problems().iter().map(ToString::to_string));
    RangesReport {
        tile: problems.is_empty(),
        problems,
    }
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
