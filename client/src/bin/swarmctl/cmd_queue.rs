//! `swarmctl queue VERB ...`: a queue cluster's channels, through `QueueClient`.
//!
//! The nodes are the `--node`s, or the `[queue]` section of `--nodes FILE`. Values are taken and
//! written as raw bytes.
//!
//! Output:
//! - `push CH... VALUE`: nothing. With several channels the value is pushed to each channel in
//!   turn (one Push each, each to a node chosen round-robin); a failure stops there, so earlier
//!   channels keep their copy.
//! - `pop CH`: the value, no newline added; an empty channel prints nothing and exits 1 with a
//!   note on stderr.
//! - `channels`: one name per line.
//! - `size [CH]`: `records N bytes M used U capacity C fill P%` (bytes: Σ value lengths; used:
//!   ring bytes in use; capacity: Σ ring capacities).
//! - `remove-channel CH`: nothing.

use crate::targets::TargetArgs;
use crate::CmdResult;
use client::queue::QueueClient;
use client::NodeKind;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;

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
    /// Print every channel's name.
    Channels,
    /// Print records, bytes, used ring bytes, capacity and fill, of one channel or of all.
    Size { channel: Option<String> },
    /// Remove a channel from every node.
    RemoveChannel { channel: String },
}

pub fn run(targets: &TargetArgs, args: &Args) -> CmdResult {
    let (resolved, options) = targets.resolve()?;
    let nodes: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|target| target.kind.is_none() || target.kind == Some(NodeKind::Queue))
        .flat_map(|target| target.nodes)
        .collect();
    if nodes.is_empty() {
        return Err("the topology lists no [queue] nodes".into());
    }
    let queue = QueueClient::connect(&nodes, options)?;
    let mut out = std::io::stdout().lock();
    match &args.verb {
        Verb::Push { channels, value } => {
            let value = if value == "-" {
                let mut bytes = Vec::new();
                std::io::stdin().lock().read_to_end(&mut bytes)?;
                bytes
            } else {
                value.as_bytes().to_vec()
            };
            for channel in channels {
                queue.push(channel, &value)?;
            }
        }
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
