//! `swarmctl dht VERB ...`: the dht cluster's records and channels, through `DhtClient`.
//!
//! The nodes are the `--node`s, or the `[dht]` section of `--nodes FILE` (or all of FILE when it
//! is a plain list of `HOST:PORT` lines); their hash ranges must tile the hash space unless
//! `dht --allow-incomplete-ranges` is given (`dht ranges` always shows them). Nodes that are
//! down do not stop a command: keys they own fail (status 3, `node ADDR: down: <reason>`), and
//! reads over every node print what the others hold, then fail naming the missing nodes
//! (status 3). Channel names are checked before anything is sent (status 2 if invalid). Keys
//! are decimal or `0x` hex. Values and filters are taken as raw bytes.
//!
//! Output (values are written raw, exactly as stored):
//! - `put`: nothing. `get`: the value, no newline added; an absent key prints nothing and exits
//!   1 with a note on stderr. `exists`: `true` (exit 0) or `false` (exit 1). `remove`: `removed`
//!   or `absent`.
//! - `getall`: per record `<16 hex digits key>\t<value>\n` (with `--keys-only`, the key alone).
//! - `listen`: per change `changed <hexkey>\t<value>`, `removed <hexkey>`, or `overflow <n>`
//!   (changes lost), until the channel is removed (exit 0), Ctrl-C, or an error (exit 3). A node
//!   that is down or lost is noted on stderr and listened to again once it is back.
//! - `mirror`: per record of the initial refresh `record <hexkey> <version>\t<value>` or
//!   `tombstone <hexkey> <version>` (a progress bar on a terminal's stderr meanwhile), then per
//!   change `changed <hexkey> <version>\t<value>` or `removed <hexkey> <version>`: see
//!   [`mirror`].
//! - `channels`: one name per line. `size [CH]`: `records N bytes M`. `remove-channel`: nothing.
//! - `ranges`: `HOST:PORT MIN:MAX` per node (hex, `empty` for a node that owns nothing,
//!   `unknown` for a node down whose range was never seen; a node moving records adds
//!   ` redistributing: M of T records moved`, a node down ` down: <reason>`), then `gap
//!   MIN:MAX` and `overlap MIN:MAX HOST:PORT HOST:PORT` lines; then, when some range has
//!   several nodes or the topology states `replication_factor`, one line per replica set
//!   (nodes of exactly equal ranges): `set MIN:MAX members ADDR,ADDR live N/M`, with ` short`
//!   when it has fewer members, or fewer live ones, than it should (the factor, else its
//!   member count); exits 3 if there are gaps or overlaps, a node is down, or a set is short.
//! - `ready NODE`: forces a replica that is catching up ready (SetReady); prints what it was.
//! - `redistribute [--strategy even|split] [--execute]` (`swarmctl --nodes FILE dht
//!   redistribute ...`, FILE listing every node, new empty-range ones included): see
//!   [`redistribute`].

mod mirror;
mod redistribute;

use crate::outcome::{check_complete, Absent, Usage, FAILURE};
use crate::print::{self, names, print_partial};
use crate::probe::Probe;
use crate::targets::{channel_arg, value_arg, TargetArgs, CHANNEL_HELP, KEY_HELP, VALUE_HELP};
use crate::CmdResult;
use client::dht::{parse_key, show_range, GetAllOptions, ListenEvent, RangeProblem};
use client::{ClientOptions, DhtClient, NodeKind, NodeState};
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Work even if the nodes' hash ranges leave gaps or overlap (a key no node owns then
    /// fails on its own).
    #[arg(long)]
    allow_incomplete_ranges: bool,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Store VALUE under KEY (VALUE `-`: read it from stdin).
    #[command(after_help = "Example: swarmctl --nodes cluster.toml dht put users 42 alice")]
    Put {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: String,
        #[arg(value_parser = key_arg, help = KEY_HELP)]
        key: u64,
        #[arg(allow_hyphen_values = true, help = VALUE_HELP)]
        value: OsString,
    },
    /// Print the value under KEY (raw); exit 1 if there is none.
    #[command(after_help = "Example: swarmctl --nodes cluster.toml dht get users 42")]
    Get {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: String,
        #[arg(value_parser = key_arg, help = KEY_HELP)]
        key: u64,
    },
    /// Print true (exit 0) or false (exit 1).
    #[command(after_help = "Example: swarmctl --nodes cluster.toml dht exists users 0x2a")]
    Exists {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: String,
        #[arg(value_parser = key_arg, help = KEY_HELP)]
        key: u64,
    },
    /// Remove the record under KEY; prints removed or absent.
    #[command(after_help = "Example: swarmctl --nodes cluster.toml dht remove users 42")]
    Remove {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: String,
        #[arg(value_parser = key_arg, help = KEY_HELP)]
        key: u64,
    },
    /// Print every record: hex key, a tab, the value. With nodes down, prints what the others
    /// hold and exits 3 naming the missing nodes.
    #[command(
        name = "getall",
        after_help = "Example: swarmctl --nodes cluster.toml dht getall users --filter alice"
    )]
    GetAll {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: String,
        /// Keys only.
        #[arg(long)]
        keys_only: bool,
        /// Only records whose value contains these bytes.
        #[arg(long, value_name = "S", allow_hyphen_values = true)]
        filter: Option<OsString>,
    },
    /// Print the channel's changes as they happen, until it is removed. A node that is down is
    /// listened to once it is back (noted on stderr).
    #[command(after_help = "Example: swarmctl --nodes cluster.toml dht listen users")]
    Listen {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: String,
    },
    /// Print the channel's records with their versions and its tombstones (a refresh, with a
    /// progress bar), then its changes as they happen, until it is removed (the Mirror request).
    /// Every node must be up; a node's stream that fails ends the command (exit 3).
    #[command(after_help = "Example: swarmctl --nodes cluster.toml dht mirror users")]
    Mirror {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: String,
        /// Only the changes from now on, without the refresh.
        #[arg(long, conflicts_with = "refresh_only")]
        no_refresh: bool,
        /// Refresh again every S seconds (at most 604800).
        #[arg(long, value_name = "S", default_value_t = 0,
              value_parser = clap::value_parser!(u32).range(0..=604_800))]
        period: u32,
        /// End after the initial refresh (a snapshot with versions and tombstones).
        #[arg(long)]
        refresh_only: bool,
    },
    /// Force NODE (HOST:PORT), a replica catching up with its set, to answer reads now from
    /// what it has: only when every other member of its set is gone for good, since it may
    /// miss writes they took while it was down (admin).
    #[command(after_help = "Example: swarmctl --nodes cluster.toml dht ready 10.0.0.7:10000")]
    Ready {
        #[arg(value_name = "NODE")]
        node: String,
    },
    /// Print every channel's name (with nodes down: of the others, exit 3).
    #[command(after_help = "Example: swarmctl --nodes cluster.toml dht channels")]
    Channels,
    /// Print the number of records and bytes, of one channel or of all (with nodes down: of
    /// the others, exit 3).
    #[command(after_help = "Example: swarmctl --nodes cluster.toml dht size users")]
    Size {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: Option<String>,
    },
    /// Remove a channel from every node.
    #[command(after_help = "Example: swarmctl --nodes cluster.toml dht remove-channel users")]
    RemoveChannel {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: String,
    },
    /// Print each node's hash range (and a running redistribution's progress, or why it is
    /// down), and any gaps and overlaps (exit 3 if any, or if a node is down).
    #[command(after_help = "Example: swarmctl --nodes cluster.toml dht ranges")]
    Ranges,
    /// Compute new hash ranges for the nodes and print what would move; with --execute, move
    /// the data (every node whose range changes gets a Redistribute, in parallel) and check
    /// that the new ranges tile the hash space.
    #[command(
        after_help = "Example: swarmctl --nodes cluster.toml dht redistribute --strategy even"
    )]
    Redistribute {
        /// even: the whole space split evenly over all nodes; split: each node's range split
        /// with the empty nodes on its host.
        #[arg(long, default_value = "even", value_parser = strategy_arg)]
        strategy: client::dht::redistribute::Strategy,
        /// Do it (without it: a dry run that changes nothing).
        #[arg(long)]
        execute: bool,
    },
}

fn strategy_arg(text: &str) -> Result<client::dht::redistribute::Strategy, String> {
    text.parse()
}

fn key_arg(text: &str) -> Result<u64, String> {
    parse_key(text)
}

pub fn run(targets: &TargetArgs, args: &Args) -> CmdResult {
    let (nodes, mut options) = targets.resolve_kind(NodeKind::Dht)?;
    options.allow_incomplete_ranges = args.allow_incomplete_ranges
        || matches!(args.verb, Verb::Ranges | Verb::Redistribute { .. });
    // A node that is down fails a redistribution when its state is read, naming it (and a
    // replica set's member that is down is refused by name, before anything is planned).
    options.allow_down_nodes |= matches!(args.verb, Verb::Redistribute { .. });
    // --timeout-ms bounds a verb of one request whole: its request gets what the range lookup
    // at connect left of MS (a stalled node: nothing, and it is not sent).
    let long = matches!(
        args.verb,
        Verb::GetAll { .. } | Verb::Listen { .. } | Verb::Mirror { .. } | Verb::Redistribute { .. }
    );
    if targets.timeout_given() && !long {
        options.total_timeout_ms = options.request_timeout_ms;
    }
    // The value first: a bad one is refused before any connection.
    let value = match &args.verb {
        Verb::Put { channel, value, .. } => {
            Some(value_arg(value, options.max_value_bytes(channel))?)
        }
        _ => None,
    };
    let mut out = std::io::stdout().lock();
    if let Verb::Ready { node } = &args.verb {
        return ready(node, options, &mut out);
    }
    let dht = connect(targets, &nodes, options)?;
    match &args.verb {
        Verb::Put { channel, key, .. } => {
            dht.put(channel, *key, value.as_deref().unwrap_or_default())?;
        }
        Verb::Get { channel, key } => match dht.get(channel, *key)? {
            Some(value) => out.write_all(&value)?,
            None => {
                return Err(Absent(format!("channel '{channel}' has no key 0x{key:016x}")).into())
            }
        },
        Verb::Exists { channel, key } => {
            let exists = dht.exists(channel, *key)?;
            writeln!(out, "{exists}")?;
            if !exists {
                out.flush()?;
                return Err(Absent(String::new()).into());
            }
        }
        Verb::Remove { channel, key } => {
            let removed = dht.remove(channel, *key)?;
            writeln!(out, "{}", if removed { "removed" } else { "absent" })?;
        }
        Verb::GetAll {
            channel,
            keys_only,
            filter,
        } => get_all(&dht, channel, *keys_only, filter.as_ref(), &mut out)?,
        Verb::Listen { channel } => listen(&dht, channel, &mut out)?,
        Verb::Mirror { .. } => mirror::run(&dht, &args.verb, &mut out)?,
        // Answered above, without the other nodes.
        Verb::Ready { .. } => {}
        Verb::Channels => print_partial(dht.get_channels_partial()?, &mut out, names)?,
        Verb::Size { channel } => {
            let size = match channel {
                Some(channel) => dht.get_channel_size_partial(channel)?,
                None => dht.get_size_partial()?,
            };
            print_partial(size, &mut out, |size, out| {
                writeln!(out, "records {} bytes {}", size.records, size.bytes)
            })?;
        }
        Verb::RemoveChannel { channel } => dht.remove_channel(channel)?,
        Verb::Ranges => ranges(&dht, replication_factor(targets), &mut out)?,
        Verb::Redistribute { strategy, execute } => {
            redistribute::run(&dht, *strategy, *execute, &mut out)?
        }
    }
    out.flush()?;
    Ok(())
}

/// The dht client of the command line: with a topology file, knowing the ranges it states.
fn connect(
    targets: &TargetArgs,
    nodes: &[std::net::SocketAddr],
    options: ClientOptions,
) -> Result<DhtClient, client::ClientError> {
    match targets.topology() {
        Some(topology) => DhtClient::from_topology(&topology, options),
        None => DhtClient::connect(nodes, options),
    }
}

fn get_all(
    dht: &DhtClient,
    channel: &str,
    keys_only: bool,
    filter: Option<&OsString>,
    out: &mut impl Write,
) -> CmdResult {
    let options = GetAllOptions {
        keys_only,
        filter: filter.map(|f| f.as_bytes().to_vec()),
    };
    let mut records = dht.get_all_partial(channel, options);
    print::records(records.by_ref(), out, |out, key, value| {
        if keys_only {
            writeln!(out, "{key:016x}")
        } else {
            write!(out, "{key:016x}\t")?;
            out.write_all(value)?;
            out.write_all(b"\n")
        }
    })?;
    check_complete(records.missing())
}

fn listen(dht: &DhtClient, channel: &str, out: &mut impl Write) -> CmdResult {
    let mut listener = dht.listen_partial(channel)?;
    for (addr, error) in listener.missing() {
        note(&format!(
            "listening without node {addr} until it is back: {}",
            error.reason()
        ));
    }
    loop {
        let event = match listener.next(Duration::from_secs(3600)) {
            Ok(Some(event)) => event,
            Ok(None) => continue,
            Err(error) => {
                note(&format!(
                    "{error} (its changes are not delivered until it is back)"
                ));
                continue;
            }
        };
        match event {
            ListenEvent::Changed { key, value } => {
                write!(out, "changed {key:016x}\t")?;
                out.write_all(&value)?;
                out.write_all(b"\n")?;
            }
            ListenEvent::Removed { key } => writeln!(out, "removed {key:016x}")?,
            ListenEvent::Overflow { lost } => writeln!(out, "overflow {lost}")?,
            ListenEvent::ChannelRemoved => return Ok(()),
        }
        // One line per change as it happens, also into a pipe.
        out.flush()?;
    }
}

/// `dht ready NODE`: SetReady on that node alone; prints the state it was in.
fn ready(node: &str, options: ClientOptions, out: &mut impl Write) -> CmdResult {
    use std::net::ToSocketAddrs;
    let addr = node
        .to_socket_addrs()
        .map_err(|error| Usage(format!("NODE {node:?}: {error} (expected HOST:PORT)")))?
        .next()
        .ok_or_else(|| Usage(format!("NODE {node:?} resolves to no address")))?;
    let client = client::Client::connect(&[addr], Some(NodeKind::Dht), options)?;
    let body = client
        .request(0, node_core::protocol::dht::SET_READY, &[])?
        .ok_body()?;
    let said = match body.as_slice() {
        [0] => "was ready already; nothing changed",
        [1] => "was catching up; now forced ready: it answers reads from what it has",
        [2] => "was forced ready earlier",
        _ => return Err(format!("node {addr}: SetReady answered {body:?}").into()),
    };
    writeln!(out, "{addr} {said}")?;
    Ok(())
}

/// The `set` lines of `dht ranges` (only for a replicated cluster); returns how many sets are
/// short.
fn replica_set_lines(
    dht: &DhtClient,
    factor: Option<u32>,
    out: &mut impl Write,
) -> std::io::Result<usize> {
    let sets = dht.replica_sets();
    if factor.is_none() && sets.iter().all(|set| set.set.members.len() < 2) {
        return Ok(0);
    }
    let mut short = 0;
    for set in &sets {
        let expected = factor.map_or(set.set.members.len(), |factor| factor as usize);
        let members: Vec<String> = set.addrs.iter().map(ToString::to_string).collect();
        write!(
            out,
            "set {} members {} live {}/{}",
            show_range(&set.set.range),
            members.join(","),
            set.live.len(),
            set.set.members.len()
        )?;
        if set.set.members.len() < expected || set.live.len() < expected {
            short += 1;
            write!(out, " short")?;
        }
        writeln!(out)?;
    }
    Ok(short)
}

/// A line on stderr that does not end the command.
pub fn note(message: &str) {
    let _ = writeln!(std::io::stderr(), "swarmctl: {message}");
}

fn replication_factor(targets: &TargetArgs) -> Option<u32> {
    crate::cmd_health::replication_factor(targets)
}

fn ranges(dht: &DhtClient, factor: Option<u32>, out: &mut impl Write) -> CmdResult {
    let statuses = dht.client().node_statuses();
    let mut down = 0;
    for entry in dht.range_entries() {
        let shown = entry
            .range
            .as_ref()
            .map_or_else(|| "unknown".to_string(), show_range);
        write!(out, "{} {shown}", entry.addr)?;
        match statuses.get(entry.index).map(|status| &status.state) {
            Some(NodeState::Down { error, .. }) => {
                down += 1;
                write!(out, " {}", Probe::describe(error))?;
            }
            // Nodes from before redistributions do not know GetRedistribution: no progress.
            _ => {
                if let Ok(state) = client::dht::redistribute::state(dht.client(), entry.index) {
                    if state.running {
                        write!(
                            out,
                            " redistributing: {} of {} records moved",
                            state.progress.moved, state.progress.total
                        )?;
                    }
                }
            }
        }
        writeln!(out)?;
    }
    let problems = dht.range_table().problems();
    for problem in &problems {
        match problem {
            RangeProblem::Gap { from, to } => writeln!(out, "gap 0x{from:016x}:0x{to:016x}")?,
            RangeProblem::Overlap {
                first,
                second,
                from,
                to,
            } => writeln!(out, "overlap 0x{from:016x}:0x{to:016x} {first} {second}")?,
        }
    }
    let short = replica_set_lines(dht, factor, out)?;
    out.flush()?;
    if !problems.is_empty() {
        return Err("the nodes' hash ranges do not tile the hash space".into());
    }
    if short > 0 {
        note(&format!("{short} replica set(s) short of members"));
        return Err(crate::outcome::ExitWith(FAILURE).into());
    }
    if down > 0 {
        note(&format!("{down} node(s) down"));
        return Err(crate::outcome::ExitWith(FAILURE).into());
    }
    Ok(())
}
