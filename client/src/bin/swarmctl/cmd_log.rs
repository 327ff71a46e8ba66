//! `swarmctl log VERB ...`: a logfiles cluster's records and channels, through `LogClient`.
//!
//! The nodes are the `--node`s, or the `[logfiles]` section of `--nodes FILE`. Keys (KEY, FROM,
//! TO) are decimal or `0x` hex. Values and `--filter` substrings are taken as raw bytes;
//! `--regex` patterns are Rust `regex` syntax, matched anywhere in the value by the nodes.
//!
//! Output:
//! - `put`: nothing. A put goes to one node, round-robin, skipping nodes that are down.
//! - `getrange CH FROM TO` (keys FROM to TO, both inclusive) and `getall CH`: one line per
//!   record, `<decimal key>\t<value>\n`, in ascending key order over every node (getall: in key
//!   order as long as every record lies in the bucket its key belongs to). Values are written
//!   raw, exactly as stored, so text comes out as text and bytes can be piped on unchanged; a
//!   value holding a newline then spans lines. With `--escape` each value is written with
//!   `\n`, `\t`, `\\`, `\"`, `\'` and `\xNN` escapes for everything that is not printable
//!   ASCII, so every record is exactly one line.
//!   `--filter S`: only values containing the bytes S; `--regex R`: only values matching R;
//!   `--ignore-case` makes either ignore case (a `--filter` is then sent as a case-insensitive
//!   regular expression matching S literally). A regular expression the nodes cannot compile
//!   fails before any record is printed (status 2). An error after some records were printed
//!   still exits 3, with the records so far on stdout.
//! - `channels`: one name per line, sorted, over every node.
//! - `size [CH]`: `buckets N bytes M` (bucket files and their bytes on disk over every node).
//! - `remove-channel CH`: nothing.
//!
//! Reads, `channels` and `size` with a node down (or lost mid-way) print what the other nodes
//! hold, then fail (status 3) naming the missing nodes. `remove-channel` needs every node. Channel
//! names are checked before anything is sent (status 2 if invalid).

use crate::outcome::check_complete;
use crate::print::{self, names, print_partial};
use crate::targets::{channel_arg, value_arg, TargetArgs, CHANNEL_HELP, KEY_HELP, VALUE_HELP};
use crate::CmdResult;
use client::dht::parse_key;
use client::logfiles::{LogClient, LogRecords, ValueFilter};
use client::NodeKind;
use std::ffi::OsString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
enum Verb {
    /// Append a record: VALUE under KEY (VALUE `-`: read it from stdin).
    #[command(
        after_help = "Example: swarmctl --nodes cluster.toml log put access 1462196230 'GET / 200'"
    )]
    Put {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: String,
        #[arg(value_parser = parse_key, help = KEY_HELP)]
        key: u64,
        #[arg(allow_hyphen_values = true, help = VALUE_HELP)]
        value: OsString,
    },
    /// Print the records with keys FROM to TO (inclusive): decimal key, a tab, the value.
    #[command(
        name = "getrange",
        after_help = "Example: swarmctl --nodes cluster.toml log getrange access 1462190000 \
                      1462199999 --regex ' 5[0-9][0-9]$'"
    )]
    GetRange {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: String,
        #[arg(value_parser = parse_key, help = KEY_HELP)]
        from: u64,
        #[arg(value_parser = parse_key, help = KEY_HELP)]
        to: u64,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Print every record of the channel: decimal key, a tab, the value.
    #[command(
        name = "getall",
        after_help = "Example: swarmctl --nodes cluster.toml log getall access --filter GET"
    )]
    GetAll {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: String,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Print every channel's name.
    #[command(after_help = "Example: swarmctl --nodes cluster.toml log channels")]
    Channels,
    /// Print the number of bucket files and their bytes on disk, of one channel or of all.
    #[command(after_help = "Example: swarmctl --nodes cluster.toml log size access")]
    Size {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: Option<String>,
    },
    /// Remove a channel from every node.
    #[command(after_help = "Example: swarmctl --nodes cluster.toml log remove-channel access")]
    RemoveChannel {
        #[arg(value_parser = channel_arg, help = CHANNEL_HELP)]
        channel: String,
    },
}

#[derive(Debug, clap::Args)]
struct ReadArgs {
    #[command(flatten)]
    pattern: PatternArgs,
    /// Make --filter or --regex ignore case.
    #[arg(long, requires = "pattern")]
    ignore_case: bool,
    /// Write values with escapes for non-printable bytes, one line per record.
    #[arg(long)]
    escape: bool,
}

/// At most one of the two ways to select by value.
#[derive(Debug, clap::Args)]
#[group(id = "pattern", multiple = false)]
struct PatternArgs {
    /// Only records whose value contains these bytes.
    #[arg(long, value_name = "S", allow_hyphen_values = true)]
    filter: Option<OsString>,
    /// Only records whose value matches this regular expression (Rust regex syntax).
    #[arg(long, value_name = "R", allow_hyphen_values = true)]
    regex: Option<String>,
}

impl ReadArgs {
    fn value_filter(&self) -> ValueFilter {
        match (&self.pattern.filter, &self.pattern.regex, self.ignore_case) {
            (Some(bytes), _, false) => ValueFilter::Substring(bytes.as_bytes().to_vec()),
            (Some(bytes), _, true) => ValueFilter::substring_ignore_case(bytes.as_bytes()),
            (None, Some(pattern), false) => ValueFilter::Regex(pattern.clone()),
            (None, Some(pattern), true) => ValueFilter::RegexIgnoreCase(pattern.clone()),
            (None, None, _) => ValueFilter::All,
        }
    }
}

pub fn run(targets: &TargetArgs, args: &Args) -> CmdResult {
    let (nodes, options) = targets.resolve_kind(NodeKind::Logfiles)?;
    // The value first: a bad one is refused before any connection.
    let value = match &args.verb {
        Verb::Put { channel, value, .. } => {
            Some(value_arg(value, options.max_value_bytes(channel))?)
        }
        _ => None,
    };
    let logs = LogClient::connect(&nodes, options)?;
    let mut out = std::io::stdout().lock();
    match &args.verb {
        Verb::Put { channel, key, .. } => {
            logs.put(channel, *key, value.as_deref().unwrap_or_default())?;
        }
        Verb::GetRange {
            channel,
            from,
            to,
            read,
        } => {
            let records = logs.get_range_partial(channel, *from, *to, &read.value_filter())?;
            print_records(records, read.escape, &mut out)?;
        }
        Verb::GetAll { channel, read } => {
            let records = logs.get_all_partial(channel, &read.value_filter())?;
            print_records(records, read.escape, &mut out)?;
        }
        Verb::Channels => print_partial(logs.channels_partial()?, &mut out, names)?,
        Verb::Size { channel } => {
            let size = logs.size_partial(channel.as_deref())?;
            print_partial(size, &mut out, |size, out| {
                writeln!(out, "buckets {} bytes {}", size.buckets, size.bytes)
            })?;
        }
        Verb::RemoveChannel { channel } => logs.remove_channel(channel)?,
    }
    out.flush()?;
    Ok(())
}

/// Writes `<decimal key>\t<value>\n` per record; on an error, writes out what came before it
/// and then returns the error; at the end, fails naming the nodes that could not be read.
fn print_records(mut records: LogRecords, escape: bool, out: &mut impl Write) -> CmdResult {
    print::records(records.by_ref(), out, |out, key, value| {
        write!(out, "{key}\t")?;
        if escape {
            write!(out, "{}", value.escape_ascii())?;
        } else {
            out.write_all(value)?;
        }
        out.write_all(b"\n")
    })?;
    check_complete(records.missing())
}
