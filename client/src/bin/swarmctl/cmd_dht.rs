//! `swarmctl dht VERB ...`: the dht cluster's records and channels, through `DhtClient`.
//!
//! The nodes are the `--node`s, or the `[dht]` section of `--nodes FILE` (or all of FILE when it
//! is a plain list of `HOST:PORT` lines); their hash ranges must
//! tile the hash space unless `dht --allow-incomplete-ranges` is given (`dht ranges` always
//! shows them). Keys are decimal or `0x` hex. Values and filters are taken as raw bytes.
//!
//! Output (values are written raw, exactly as stored):
//! - `put`: nothing. `get`: the value, no newline added; an absent key prints nothing and exits
//!   1 with a note on stderr. `exists`: `true` (exit 0) or `false` (exit 1). `remove`: `removed`
//!   or `absent`.
//! - `getall`: per record `<16 hex digits key>\t<value>\n` (with `--keys-only`, the key alone).
//! - `listen`: per change `changed <hexkey>\t<value>`, `removed <hexkey>`, or `overflow <n>`
//!   (changes lost), until the channel is removed (exit 0), Ctrl-C, or an error (exit 1).
//! - `channels`: one name per line. `size [CH]`: `records N bytes M`. `remove-channel`: nothing.
//! - `ranges`: `HOST:PORT MIN:MAX` per node (hex, `empty` for a node that owns nothing; a node
//!   moving records adds ` redistributing: M of T records moved`), then `gap MIN:MAX` and
//!   `overlap MIN:MAX HOST:PORT HOST:PORT` lines; exits 1 if there are any.
//! - `redistribute [--strategy even|split] [--execute]` (`swarmctl --nodes FILE dht
//!   redistribute ...`, FILE listing every node, new empty-range ones included): see
//!   [`redistribute`].

mod redistribute;

use crate::targets::{value_arg, TargetArgs};
use crate::{CmdResult, SilentFailure};
use client::dht::{parse_key, show_range, GetAllOptions, ListenEvent, RangeProblem};
use client::{DhtClient, NodeKind};
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
    Put {
        channel: String,
        #[arg(value_parser = key_arg)]
        key: u64,
        #[arg(allow_hyphen_values = true)]
        value: OsString,
    },
    /// Print the value under KEY (raw); exit 1 if there is none.
    Get {
        channel: String,
        #[arg(value_parser = key_arg)]
        key: u64,
    },
    /// Print true (exit 0) or false (exit 1).
    Exists {
        channel: String,
        #[arg(value_parser = key_arg)]
        key: u64,
    },
    /// Remove the record under KEY; prints removed or absent.
    Remove {
        channel: String,
        #[arg(value_parser = key_arg)]
        key: u64,
    },
    /// Print every record: hex key, a tab, the value.
    #[command(name = "getall")]
    GetAll {
        channel: String,
        /// Keys only.
        #[arg(long)]
        keys_only: bool,
        /// Only records whose value contains these bytes.
        #[arg(long, value_name = "S", allow_hyphen_values = true)]
        filter: Option<OsString>,
    },
    /// Print the channel's changes as they happen, until it is removed.
    Listen { channel: String },
    /// Print every channel's name.
    Channels,
    /// Print the number of records and bytes, of one channel or of all.
    Size { channel: Option<String> },
    /// Remove a channel from every node.
    RemoveChannel { channel: String },
    /// Print each node's hash range (and a running redistribution's progress), and any gaps
    /// and overlaps (exit 1 if any).
    Ranges,
    /// Compute new hash ranges for the nodes and print what would move; with --execute, move
    /// the data (every node whose range changes gets a Redistribute, in parallel) and check
    /// that the new ranges tile the hash space.
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
    let dht = DhtClient::connect(&nodes, options)?;
    let mut out = std::io::stdout().lock();
    match &args.verb {
        Verb::Put {
            channel,
            key,
            value,
        } => {
            dht.put(channel, *key, &value_arg(value)?)?;
        }
        Verb::Get { channel, key } => match dht.get(channel, *key)? {
            Some(value) => out.write_all(&value)?,
            None => return Err(format!("channel '{channel}' has no key 0x{key:016x}").into()),
        },
        Verb::Exists { channel, key } => {
            let exists = dht.exists(channel, *key)?;
            writeln!(out, "{exists}")?;
            if !exists {
                out.flush()?;
                return Err(SilentFailure.into());
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
        } => {
            let options = GetAllOptions {
                keys_only: *keys_only,
                filter: filter.as_ref().map(|f| f.as_bytes().to_vec()),
            };
            let mut out = std::io::BufWriter::new(&mut out);
            for record in dht.get_all(channel, options) {
                let (key, value) = record?;
                if *keys_only {
                    writeln!(out, "{key:016x}")?;
                } else {
                    write!(out, "{key:016x}\t")?;
                    out.write_all(&value)?;
                    out.write_all(b"\n")?;
                }
            }
            out.flush()?;
        }
        Verb::Listen { channel } => listen(&dht, channel, &mut out)?,
        Verb::Channels => {
            for name in dht.get_channels()? {
                writeln!(out, "{name}")?;
            }
        }
        Verb::Size { channel } => {
            let size = match channel {
                Some(channel) => dht.get_channel_size(channel)?,
                None => dht.get_size()?,
            };
            writeln!(out, "records {} bytes {}", size.records, size.bytes)?;
        }
        Verb::RemoveChannel { channel } => dht.remove_channel(channel)?,
        Verb::Ranges => ranges(&dht, &mut out)?,
        Verb::Redistribute { strategy, execute } => {
            redistribute::run(&dht, *strategy, *execute, &mut out)?
        }
    }
    out.flush()?;
    Ok(())
}

fn listen(dht: &DhtClient, channel: &str, out: &mut impl Write) -> CmdResult {
    let mut listener = dht.listen(channel)?;
    loop {
        let Some(event) = listener.next(Duration::from_secs(3600))? else {
            continue;
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

fn ranges(dht: &DhtClient, out: &mut impl Write) -> CmdResult {
    for (node, (addr, range)) in dht.ranges().into_iter().enumerate() {
        write!(out, "{addr} {}", show_range(&range))?;
        // Nodes from before redistributions do not know GetRedistribution: no progress then.
        if let Ok(state) = client::dht::redistribute::state(dht.client(), node) {
            if state.running {
                write!(
                    out,
                    " redistributing: {} of {} records moved",
                    state.progress.moved, state.progress.total
                )?;
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
    if problems.is_empty() {
        Ok(())
    } else {
        out.flush()?;
        Err("the nodes' hash ranges do not tile the hash space".into())
    }
}
