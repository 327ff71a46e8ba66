//! Start-up: fills the engine from the data directory's dump files (see [`crate::dump::loader`]
//! for which file wins and what is skipped).

use crate::dump::loader::{load_data_dir, LoadError, LoadOptions, LoadReport, LoadTarget};
use crate::engine::{Channel, Engine};

/// Builds each channel apart and hands it to the engine only once its file loaded completely.
struct EngineTarget<'a> {
    engine: &'a mut Engine,
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
    }
}

/// Loads every channel of `data_dir` into `engine`.
pub fn load(
    data_dir: &std::path::Path,
    options: &LoadOptions,
    engine: &mut Engine,
) -> Result<LoadReport, LoadError> {
    load_data_dir(data_dir, options, &mut EngineTarget { engine })
}
