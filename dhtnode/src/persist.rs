//! The engine as the persistence crate ([`dht_persist`]) sees it: a channel is a
//! [`ShardSource`] the dump writer reads shard by shard, the engine a [`DumpSource`] for the
//! [`DumpScheduler`](dht_persist::DumpScheduler), and start-up loading fills the engine
//! through a [`LoadTarget`] that reports each channel loaded to systemd (`STATUS=`, and more
//! time to start: see [`node_core::systemd::progress`]).

use crate::engine::{Channel, Engine, SHARD_COUNT};
use dht_persist::loader::{load_data_dir, LoadError, LoadOptions, LoadReport, LoadTarget};
use dht_persist::{DumpSource, ShardSource};
use std::sync::Arc;

impl ShardSource for Channel {
    fn shard_count(&self) -> usize {
        SHARD_COUNT
    }

    fn for_each_in_shard(&self, index: usize, each: &mut dyn FnMut(u64, &[u8])) {
        for (key, value) in self.shard(index).iter() {
            each(*key, value);
        }
    }
}

impl DumpSource for Engine {
    fn for_each_channel(&self, each: &mut dyn FnMut(&str, Arc<dyn ShardSource>)) {
        for (name, channel) in self.channels() {
            each(name, channel.clone());
        }
    }

    fn channel(&self, name: &str) -> Option<Arc<dyn ShardSource>> {
        let channel: Arc<Channel> = Engine::channel(self, name)?.clone();
        Some(channel)
    }

    fn channel_count(&self) -> usize {
        self.channel_names().len()
    }
}

/// Builds each channel apart and hands it to the engine only once its file loaded completely.
struct EngineTarget<'a> {
    engine: &'a mut Engine,
    channels_loaded: usize,
}

impl LoadTarget for EngineTarget<'_> {
    type Channel = Channel;

    fn new_channel(&mut self, _name: &str) -> Channel {
        Channel::new()
    }

    fn insert(&mut self, channel: &mut Channel, key: u64, value: &[u8]) {
        channel.put(key, value);
    }

    fn commit(&mut self, name: &str, channel: Channel) {
        self.engine.insert_channel(name, channel);
        self.channels_loaded += 1;
        let size = self.engine.size();
        node_core::systemd::progress(&format!(
            "loading dumps: {} channels loaded ({} records, {} bytes), last {name}",
            self.channels_loaded, size.records, size.bytes
        ));
    }
}

/// Loads every channel of `data_dir` into `engine` (see [`dht_persist::loader`] for which file
/// wins and what is skipped).
pub fn load(
    data_dir: &std::path::Path,
    options: &LoadOptions,
    engine: &mut Engine,
) -> Result<LoadReport, LoadError> {
    let mut target = EngineTarget {
        engine,
        channels_loaded: 0,
    };
    load_data_dir(data_dir, options, &mut target)
}
