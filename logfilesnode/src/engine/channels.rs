//! The channels a data directory holds: found at start by listing it, with their size on disk
//! (bucket files and bytes), kept up to date as the node writes.

use crate::storage::layout::parse_slot_name;
use crate::storage::BucketId;
use node_core::protocol::logfiles::DiskSize;
use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// One channel the node knows.
#[derive(Debug, Clone)]
pub struct ChannelInfo {
    pub dir: PathBuf,
    pub size: DiskSize,
    /// Changes when the channel is removed and created again, so a read that started before can
    /// tell its channel is gone.
    pub generation: u64,
}

/// Lists the channel directories of `data_dir` and measures each. Entries that are not channel
/// directories (other names, files) are skipped; those that look like a mistake are logged.
pub fn discover(data_dir: &Path) -> io::Result<BTreeMap<String, ChannelInfo>> {
    let mut channels = BTreeMap::new();
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            tracing::warn!(
                "{}: name is not UTF-8, not a channel; ignored",
                entry.path().display()
            );
            continue;
        };
        if name.starts_with('.') || !entry.file_type()?.is_dir() {
            continue;
        }
        if !crate::valid_channel_name(name) {
            tracing::warn!(
                "{}: not a valid channel name (1 to 100 of [A-Za-z0-9_-]); ignored",
                entry.path().display()
            );
            continue;
        }
        let dir = entry.path();
        let size = measure(&dir)?;
        channels.insert(
            name.to_string(),
            ChannelInfo {
                dir,
                size,
                generation: 0,
            },
        );
    }
    Ok(channels)
}

/// The bucket files of one channel directory and their total length.
pub fn measure(channel_dir: &Path) -> io::Result<DiskSize> {
    let mut size = DiskSize::default();
    for slot in fs::read_dir(channel_dir)? {
        let slot = slot?;
        let slot_name = slot.file_name();
        if slot_name.to_str().and_then(parse_slot_name).is_none() || !slot.file_type()?.is_dir() {
            continue;
        }
        for bucket in fs::read_dir(slot.path())? {
            let bucket = bucket?;
            let parsed = match (slot_name.to_str(), bucket.file_name().to_str()) {
                (Some(slot), Some(file)) => BucketId::parse(slot, file),
                _ => None,
            };
            let metadata = bucket.metadata()?;
            if parsed.is_some() && metadata.is_file() {
                size.buckets += 1;
                size.bytes += metadata.len();
            }
        }
    }
    Ok(size)
}
