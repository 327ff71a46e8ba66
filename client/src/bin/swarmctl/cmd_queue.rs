//! `swarmctl queue VERB ...`: a queue cluster's channels, through `QueueClient`.
//!
//! The nodes are the `--node`s, or the `[queue]` section of `--nodes FILE`. Values are taken and
//! written as raw bytes.
//!
//! Output:
//! - `push CH... VALUE`: nothing. With several channels it is one PushMulti: one node (chosen
//!   round-robin, skipping full and unreachable ones) stores the value in every channel, or none
//!   does.
//! - `pop CH`: the value, no newline added; an empty channel prints nothing and exits 1 with a
//!   note on stderr.
//! - `consume CH [--subscriber S] [--count N]`: one value per line (raw bytes, then `\n`), from
//!   every node, as subscriber S (default: the default subscriber, which `pop` shares). Stops
//!   after N values, or when the channel is removed on every node; what was printed is
//!   acknowledged, so it is not delivered again (interrupted, e.g. with Ctrl-C, the values printed
//!   since the last acknowledgement, at most a batch per node, are delivered again later).
//! - `subscribe CH --subscriber S`: nothing; every node keeps a copy of every later push for S.
//! - `channels`: one name per line.
//! - `size [CH]`: `records N bytes M used U capacity C fill P%` (bytes: Σ value lengths; used:
//!   ring bytes in use; capacity: Σ ring capacities).
//! - `remove-channel CH`: nothing.

use crate::targets::{value_arg, TargetArgs};
use crate::CmdResult;
use client::queue::QueueClient;
use client::NodeKind;
use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Push VALUE to each CHANNEL (VALUE `-`: read it from stdin).
    Push {
        #[arg(required = true, num_args = 1..)]
        channels: Vec<String>,
        #[arg(allow_hyphen_values = true)]
        value: OsString,
    },
    /// Pop one value (printed raw); exit 1 if the channel is empty on every node.
    Pop { channel: String },
    /// Print values as they come, one per line, from every node (until --count or removal).
    Consume {
        channel: String,
        /// Consume as this subscriber (default: the default subscriber "").
        #[arg(long, default_value = "")]
        subscriber: String,
        /// Stop after this many values.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Subscribe S to the channel on every node: from now on it gets a copy of every push.
    Subscribe {
        channel: String,
        #[arg(long)]
        subscriber: String,
    },
    /// Print every channel's name.
    Channels,
    /// Print records, bytes, used ring bytes, capacity and fill, of one channel or of all.
    Size { channel: Option<String> },
    /// Remove a channel from every node.
    RemoveChannel { channel: String },
}

pub fn run(targets: &TargetArgs, args: &Args) -> CmdResult {
    let (nodes, options) = targets.resolve_kind(NodeKind::Queue)?;
    let queue = QueueClient::connect(&nodes, options)?;
    let mut out = std::io::stdout().lock();
    match &args.verb {
        Verb::Push { channels, value } => {
            let value = value_arg(value)?;
            match channels.as_slice() {
                [channel] => queue.push(channel, &value).map(drop)?,
                _ => {
                    let channels: Vec<&str> = channels.iter().map(String::as_str).collect();
                    queue.push_multi(&channels, &value).map(drop)?
                }
            }
        }
        Verb::Consume {
            channel,
            subscriber,
            count,
        } => {
            // Ask no node for more than is wanted, so few records travel back unused.
            let max_batch = count.map_or(0, |n| n.clamp(1, u64::from(u32::MAX)) as u32);
            let mut consumer = queue.consume(channel, subscriber, max_batch)?;
            let mut printed = 0u64;
            while count.is_none_or(|count| printed < count) {
                match consumer.next(Duration::from_secs(1)) {
                    Ok(Some(value)) => {
                        out.write_all(&value)?;
                        out.write_all(b"\n")?;
                        printed += 1;
                    }
                    Ok(None) if consumer.is_finished() => break,
                    Ok(None) => out.flush()?,
                    Err(error) => eprintln!("swarmctl: {error}"),
                }
            }
            out.flush()?;
            consumer.stop()?;
        }
        Verb::Subscribe {
            channel,
            subscriber,
        } => queue.subscribe(channel, subscriber)?,
        Verb::Pop { channel } => match queue.pop(channel)? {
            Some(value) => out.write_all(&value)?,
            None => return Err(format!("channel '{channel}' is empty").into()),
        },
        Verb::Channels => {
            for name in queue.get_channels()? {
                writeln!(out, "{name}")?;
            }
        }
        Verb::Size { channel } => {
            let size = match channel {
                Some(channel) => queue.get_channel_size(channel)?,
                None => queue.get_size()?,
            };
            writeln!(
                out,
                "records {} bytes {} used {} capacity {} fill {}%",
                size.records,
                size.value_bytes,
                size.used_bytes,
                size.capacity_bytes,
                size.fill_percent()
            )?;
        }
        Verb::RemoveChannel { channel } => queue.remove_channel(channel)?,
    }
    out.flush()?;
    Ok(())
}
