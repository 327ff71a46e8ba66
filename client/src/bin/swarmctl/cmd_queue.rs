//! `swarmctl queue VERB ...`: a queue cluster's channels, through `QueueClient`.
//!
//! The nodes are the `--node`s, or the `[queue]` section of `--nodes FILE`. Values are taken and
//! written as raw bytes.
//!
//! Output:
//! - `push CH... VALUE`: nothing. With several channels it is one PushMulti: one node (chosen
//!   round-robin, skipping full and unreachable ones) stores the value in every channel, or none
//!   does.
//! - `pop CH`: the value, no newline added; a channel empty on every node prints nothing and
//!   exits 1 with a note on stderr; empty on the nodes that answered while another could not be
//!   asked: exit 3 naming it.
//! - `consume CH [--subscriber S] [--count N]`: one value per line (raw bytes, then `\n`), from
//!   every node, as subscriber S (default: the default subscriber, which `pop` shares). Stops
//!   after N values, or when the channel is removed on every node; what was printed is
//!   acknowledged, so it is not delivered again (interrupted, e.g. with Ctrl-C, the values printed
//!   since the last acknowledgement, at most a batch per node, are delivered again later; a value
//!   that could not be written, the reader gone, is not acknowledged). A node that is down is
//!   noted on stderr and consumed from once it is back.
//! - Channel names are checked before anything is sent (status 2 if invalid); `channels` and
//!   `size` with a node down print the other nodes' answer and exit 3 naming it.
//! - `subscribe CH --subscriber S`: nothing; every node keeps a copy of every later push for S.
//! - `channels`: one name per line.
//! - `size [CH]`: `records N bytes M used U capacity C fill P%` (bytes: Σ value lengths; used:
//!   ring bytes in use; capacity: Σ ring capacities).
//! - `remove-channel CH`: nothing.

use crate::cmd_dht::note;
use crate::outcome::{Absent, PartialResult};
use crate::print::{names, print_partial};
use crate::targets::{channel_arg, value_arg, TargetArgs, CHANNEL_HELP, VALUE_HELP};
use crate::CmdResult;
use client::queue::{Consumer, QueueClient};
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
    #[command(
        after_help = "Example: swarmctl --nodes cluster.toml queue push jobs 'resize 42.jpg'"
    )]
    Push {
        #[arg(required = true, num_args = 1.., value_parser = channel_arg, help = CHANNEL_HELP)]
        channels: Vec<String>,
        #[arg(allow_hyphen_values = true, help = VALUE_HELP)]
        value: OsString,
    },
    /// Pop one value (printed raw); exit 1 if the channel is empty on every node (3 if a node
    /// could not be asked).
    #[command(after_help = "Example: swarmctl --nodes cluster.toml queue pop jobs")]
    Pop {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: String,
    },
    /// Print values as they come, one per line, from every node (until --count or removal).
    #[command(
        after_help = "Example: swarmctl --nodes cluster.toml queue consume jobs --subscriber \
                      workers --count 10"
    )]
    Consume {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: String,
        /// Consume as this subscriber (default: the default subscriber "").
        #[arg(long, default_value = "")]
        subscriber: String,
        /// Stop after this many values.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Subscribe S to the channel on every node: from now on it gets a copy of every push.
    #[command(
        after_help = "Example: swarmctl --nodes cluster.toml queue subscribe jobs --subscriber audit"
    )]
    Subscribe {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: String,
        #[arg(long)]
        subscriber: String,
    },
    /// Print every channel's name.
    #[command(after_help = "Example: swarmctl --nodes cluster.toml queue channels")]
    Channels,
    /// Print records, bytes, used ring bytes, capacity and fill, of one channel or of all.
    #[command(after_help = "Example: swarmctl --nodes cluster.toml queue size jobs")]
    Size {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: Option<String>,
    },
    /// Remove a channel from every node.
    #[command(after_help = "Example: swarmctl --nodes cluster.toml queue remove-channel jobs")]
    RemoveChannel {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: String,
    },
}

pub fn run(targets: &TargetArgs, args: &Args) -> CmdResult {
    let (nodes, options) = targets.resolve_kind(NodeKind::Queue)?;
    // The value first: a bad one is refused before any connection.
    let value = match &args.verb {
        Verb::Push { channels, value } => Some(value_arg(
            value,
            options.max_value_bytes(&channels.join(" ")),
        )?),
        _ => None,
    };
    let queue = QueueClient::connect(&nodes, options)?;
    let mut out = std::io::stdout().lock();
    match &args.verb {
        Verb::Push { channels, .. } => {
            let value = value.unwrap_or_default();
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
            let consumer = queue.consume_partial(channel, subscriber, max_batch)?;
            consume(consumer, *count, &mut out)?;
        }
        Verb::Subscribe {
            channel,
            subscriber,
        } => queue.subscribe(channel, subscriber)?,
        Verb::Pop { channel } => pop(&queue, channel, &mut out)?,
        Verb::Channels => print_partial(queue.get_channels_partial()?, &mut out, names)?,
        Verb::Size { channel } => {
            let size = match channel {
                Some(channel) => queue.get_channel_size_partial(channel)?,
                None => queue.get_size_partial()?,
            };
            print_partial(size, &mut out, |total, out| {
                writeln!(
                    out,
                    "records {} bytes {} used {} capacity {} fill {}%",
                    total.records,
                    total.value_bytes,
                    total.used_bytes,
                    total.capacity_bytes,
                    total.fill_percent()
                )
            })?;
        }
        Verb::RemoveChannel { channel } => queue.remove_channel(channel)?,
    }
    out.flush()?;
    Ok(())
}

/// Prints one value: absent (status 1) only when every node said the channel is empty.
fn pop(queue: &QueueClient, channel: &str, out: &mut impl Write) -> CmdResult {
    let popped = queue.pop_partial(channel)?;
    match popped.value {
        Some(value) => Ok(out.write_all(&value)?),
        None if popped.missing.is_empty() => {
            Err(Absent(format!("channel '{channel}' is empty")).into())
        }
        None => Err(PartialResult {
            missing: popped.missing,
        }
        .into()),
    }
}

/// Prints values until `count` (or the channel's removal); a value that cannot be written (the
/// reader went away) is given back, not acknowledged.
fn consume(mut consumer: Consumer<'_>, count: Option<u64>, out: &mut impl Write) -> CmdResult {
    for (addr, error) in consumer.missing() {
        note(&format!(
            "consuming without node {addr} until it is back: {}",
            error.reason()
        ));
    }
    let mut printed = 0u64;
    while count.is_none_or(|count| printed < count) {
        match consumer.next(Duration::from_secs(1)) {
            Ok(Some(value)) => {
                let written = out
                    .write_all(&value)
                    .and_then(|()| out.write_all(b"\n"))
                    .and_then(|()| out.flush());
                if let Err(error) = written {
                    consumer.give_back();
                    consumer.stop()?;
                    return Err(error.into());
                }
                printed += 1;
            }
            Ok(None) if consumer.is_finished() => break,
            Ok(None) => out.flush()?,
            Err(error) => note(&error.to_string()),
        }
    }
    out.flush()?;
    consumer.stop()?;
    Ok(())
}
