//! Start-up: fills the engine from the data directory's dump files (see [`crate::dump::loader`]
//! for which file wins and what is skipped), reporting each channel loaded to systemd
//! (`STATUS=`, and more time to start: see [`node_core::systemd::progress`]).

use crate::dump::loader::{load_data_dir, LoadError, LoadOptions, LoadReport, LoadTarget};
use crate::engine::{Channel, Engine};

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

/// Loads every channel of `data_dir` into `engine`.
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
