//! `swarmctl dht mirror CHANNEL`: the channel's records with their versions, then its changes,
//! from every node (the Mirror request, docs/protocol.md §6.12), with a progress bar on stderr
//! while the initial refresh runs (a terminal only).
//!
//! Output, one line each, values raw:
//! - `record <hexkey> <version>\t<value>` and `tombstone <hexkey> <version>`: what a refresh
//!   found;
//! - `changed <hexkey> <version>\t<value>` and `removed <hexkey> <version>`: changes;
//! - `overflow <n>`: a node dropped `n` changes (the copy is not faithful any more: exit 3
//!   after the line, start again to resync).
//!
//! It ends when the channel is removed (exit 0), after the initial refresh with
//! `--refresh-only` (exit 0), on Ctrl-C, or when a node's stream fails (exit 3).

use super::Verb;
use crate::CmdResult;
use client::dht::{MirrorEvent, MirrorOptions};
use client::DhtClient;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::Write;
use std::time::Duration;

/// How `dht mirror` runs, from its command line.
struct MirrorArgs<'a> {
    channel: &'a str,
    options: MirrorOptions,
    refresh_only: bool,
}

/// Runs `verb`, a [`Verb::Mirror`].
pub fn run(dht: &DhtClient, verb: &Verb, out: &mut impl Write) -> CmdResult {
    let Verb::Mirror {
        channel,
        no_refresh,
        period,
        refresh_only,
    } = verb
    else {
        return Err("not a mirror command".into());
    };
    let args = MirrorArgs {
        channel,
        options: MirrorOptions {
            initial_refresh: !no_refresh,
            periodic_refresh_s: *period,
        },
        refresh_only: *refresh_only,
    };
    follow(dht, &args, out)
}

fn follow(dht: &DhtClient, args: &MirrorArgs<'_>, out: &mut impl Write) -> CmdResult {
    let mut mirror = dht.mirror(args.channel, args.options)?;
    let nodes = mirror.nodes().len();
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("refresh [{bar:30}] {pos}/{len} records and tombstones")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut refreshed_nodes = 0;
    // Until every node's initial refresh is done (none is asked for: done at once).
    let mut refreshing = args.options.initial_refresh;
    loop {
        let Some(event) = mirror.next(Duration::from_secs(3600))? else {
            continue;
        };
        match event {
            MirrorEvent::RefreshStarted {
                records,
                tombstones,
                ..
            } => bar.inc_length(records + tombstones),
            MirrorEvent::Record {
                key,
                version,
                value,
            } => {
                bar.inc(1);
                write!(out, "record {key:016x} {version}\t")?;
                out.write_all(&value)?;
                out.write_all(b"\n")?;
            }
            MirrorEvent::Tombstone { key, version } => {
                bar.inc(1);
                writeln!(out, "tombstone {key:016x} {version}")?;
            }
            MirrorEvent::RefreshDone { .. } => {
                refreshed_nodes += 1;
                if refreshing && refreshed_nodes == nodes {
                    refreshing = false;
                    bar.finish_and_clear();
                    if args.refresh_only {
                        out.flush()?;
                        return Ok(());
                    }
                }
            }
            MirrorEvent::Changed {
                key,
                version,
                value,
            } => {
                write!(out, "changed {key:016x} {version}\t")?;
                out.write_all(&value)?;
                out.write_all(b"\n")?;
            }
            MirrorEvent::Removed { key, version } => writeln!(out, "removed {key:016x} {version}")?,
            MirrorEvent::Overflow { node, lost } => {
                writeln!(out, "overflow {lost}")?;
                out.flush()?;
                return Err(format!("node {node} dropped {lost} changes: mirror again").into());
            }
            MirrorEvent::ChannelRemoved => return Ok(()),
        }
        // Changes as they happen, also into a pipe (a refresh's records go out in bulk).
        if !refreshing {
            out.flush()?;
        }
    }
}
