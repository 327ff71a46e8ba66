//! The dump files of removed channels, moved aside only once the RemoveChannel is durable in
//! the change log. Moved at once, a crash that lost the log's RemoveChannel entry (under
//! `interval`, or before its group's fsync under `always`) would bring the channel back from
//! the log alone, without the records only its dump held: a state the node never had. Kept
//! until the entry is durable, a restart either replays the removal over the old dump or (the
//! entry lost, the removal never acknowledged) keeps the channel whole.
//!
//! A channel created again before its old files are moved keeps them: its next dump replaces
//! them, and until then a restart loads the old dump and replays the removal and the new
//! writes after it.

use crate::engine::Engine;
use dht_persist::DumpScheduler;
use std::collections::VecDeque;

/// Removed channels whose dump files wait for their RemoveChannel entry to be fsynced.
#[derive(Debug, Default)]
pub struct RemovedDumps {
    /// (channel, the log position of its RemoveChannel entry), in log order.
    waiting: VecDeque<(String, u64)>,
}

impl RemovedDumps {
    /// `channel` was removed by the log entry at `position`.
    pub fn removed(&mut self, channel: &str, position: u64) {
        debug_assert!(self
            .waiting
            .back()
            .is_none_or(|(_, last)| *last <= position));
        self.waiting.push_back((channel.to_owned(), position));
    }

    /// Moves aside the files of every channel whose removal the log has fsynced (up to
    /// `synced`), unless the channel exists again.
    pub fn move_durable(&mut self, synced: u64, engine: &Engine, dumper: &mut DumpScheduler) {
        while self
            .waiting
            .front()
            .is_some_and(|(_, position)| *position <= synced)
        {
            let Some((channel, _)) = self.waiting.pop_front() else {
                break;
            };
            if engine.channel(&channel).is_none() {
                dumper.move_aside(&channel);
            }
        }
    }
}
