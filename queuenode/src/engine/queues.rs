//! The registry of rings in a data directory: `<data_dir>/<storage name>.ring` per storage.
//!
//! - Open scans the directory and opens every `*.ring` file with a valid storage name. A file
//!   that fails its header checks moves to `<data_dir>/corrupt/<name>.<unix_s>.ring` (ERROR
//!   line) and the storage starts absent; other files are ignored.
//! - A ring is created on first use with the capacity the caller gives (from config). The sum of
//!   all rings' capacities may not exceed `memory_limit_bytes` (0 = no limit): a creation that
//!   would exceed it fails with [`QueueError::MemoryLimit`]. Rings found at open are always
//!   loaded (data is never dropped for a lowered limit); an excess is logged.
//! - Remove deletes the ring file: its space is freed at once.

use crate::engine::names::{split_storage_name, valid_storage_name};
use crate::engine::ring::{Ring, RingError, RingSize, SyncMode};
use crate::engine::rq;
use node_core::protocol::status::StatusError;
use node_core::protocol::Status;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// File-name suffix of ring files.
pub const RING_SUFFIX: &str = ".ring";

#[derive(Debug, Clone)]
pub struct QueuesConfig {
    pub data_dir: PathBuf,
    /// Σ capacity of all rings; 0 = no limit.
    pub memory_limit_bytes: u64,
    pub sync: SyncMode,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("storage name {0:?} is not [subscriber@]channel of A-Z a-z 0-9 _ - (1 to 100 each)")]
    BadName(String),
    #[error(
        "a ring of {need_bytes} bytes would exceed the node's memory limit of {limit_bytes} bytes \
         ({used_bytes} in use)"
    )]
    MemoryLimit {
        need_bytes: u64,
        used_bytes: u64,
        limit_bytes: u64,
    },
    #[error(transparent)]
    Ring(#[from] RingError),
    #[error(
        "channel {channel:?} has subscribers ({subscribers}) and no default subscriber: Pop \
         cannot choose a copy; consume it with a subscriber name"
    )]
    NoDefaultSubscriber {
        channel: String,
        subscribers: String,
    },
    #[error("ConsumeAck of {records} records, but Consume {consume_id} sent {sent}")]
    AckBeyondSent {
        records: u64,
        consume_id: u64,
        sent: u64,
    },
    #[error("acknowledging: {0}")]
    Ack(RingError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Rq {
        path: PathBuf,
        #[source]
        source: rq::RqError,
    },
}

impl QueueError {
    /// The status a request handler answers with.
    pub fn status(&self) -> Status {
        match self {
            QueueError::BadName(_) => Status::BadChannelName,
            QueueError::MemoryLimit { .. } => Status::OutOfMemory,
            QueueError::Ring(RingError::Full { .. }) => Status::ChannelFull,
            QueueError::Ring(RingError::ValueTooBig { .. }) => Status::ValueTooBig,
            QueueError::Ring(RingError::EmptyValue) => Status::EmptyValue,
            QueueError::NoDefaultSubscriber { .. } | QueueError::AckBeyondSent { .. } => {
                Status::BadRequest
            }
            _ => Status::InternalError,
        }
    }
}

impl StatusError for QueueError {
    fn status(&self) -> Status {
        QueueError::status(self)
    }
}

/// What [`Queues::open`] found.
#[derive(Debug, Default)]
pub struct OpenReport {
    pub rings: usize,
    /// Records cut from damaged tails, over all rings.
    pub records_cut: u64,
    /// Files moved to `corrupt/`, with the reason.
    pub corrupt: Vec<(PathBuf, String)>,
}

/// Why the entry `<name>.ring` at `path` is passed over at start, if it is: a name that is no
/// storage's, or something other than a regular file (a symbolic link to one is followed). The
/// words name what the entry is, so an operator knows what to remove or rename.
fn not_a_ring(name: &str, path: &Path) -> Option<String> {
    if !valid_storage_name(name) {
        return Some("an entry with a bad name (a ring is `<channel>.ring` or `<subscriber>@<channel>.ring`)".into());
    }
    let kind = node_core::data_dir::passed_over_entry(path)?;
    Some(format!(
        "{kind} where a ring file belongs (a ring is a regular file)"
    ))
}

pub struct Queues {
    config: QueuesConfig,
    rings: BTreeMap<String, Ring>,
    total_capacity_bytes: u64,
    /// The rings handed out for changes since the last [`Queues::commit_headers`]: the first
    /// `listed` names of `listed_names` (a ring's `listed` flag keeps each there once; the
    /// strings are reused, so listing a ring allocates only the first time).
    listed_names: Vec<String>,
    listed: usize,
    /// How many rings are a subscriber's storage (`subscriber@channel`): while none is, no
    /// channel has subscribers, and a Push finds its ring in one lookup
    /// ([`crate::engine::Channels::sole_plain_ring_mut`]).
    subscriber_rings: usize,
}

impl Queues {
    pub fn open(config: QueuesConfig) -> Result<(Queues, OpenReport), QueueError> {
        let dir = config.data_dir.clone();
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| QueueError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut report = OpenReport::default();
        let mut rings = BTreeMap::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(io(&dir))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for path in entries {
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(name) = file_name.strip_suffix(RING_SUFFIX) else {
                continue;
            };
            if let Some(reason) = not_a_ring(name, &path) {
                tracing::warn!(path = %path.display(), "queues: ignoring {reason}");
                continue;
            }
            match Ring::open(&path, config.sync) {
                Ok((ring, cut)) => {
                    report.records_cut += cut;
                    rings.insert(name.to_string(), ring);
                }
                Err(RingError::BadHeader { reason, .. }) => {
                    let moved = move_aside(&dir, "corrupt", name, &path)?;
                    tracing::error!(
                        path = %path.display(),
                        moved_to = %moved.display(),
                        reason,
                        "queues: ring file unusable; moved aside, storage starts empty"
                    );
                    report.corrupt.push((path, reason));
                }
                Err(other) => return Err(other.into()),
            }
        }
        let total_capacity_bytes = rings.values().map(|r| r.capacity_bytes()).sum();
        if config.memory_limit_bytes != 0 && total_capacity_bytes > config.memory_limit_bytes {
            tracing::warn!(
                total_capacity_bytes,
                limit = config.memory_limit_bytes,
                "queues: existing rings exceed the memory limit; no new ring will be created"
            );
        }
        report.rings = rings.len();
        let subscriber_rings = rings.keys().filter(|name| is_subscriber_ring(name)).count();
        Ok((
            Queues {
                config,
                rings,
                total_capacity_bytes,
                listed_names: Vec::new(),
                listed: 0,
                subscriber_rings,
            },
            report,
        ))
    }

    fn ring_path(&self, name: &str) -> PathBuf {
        self.config.data_dir.join(format!("{name}{RING_SUFFIX}"))
    }

    pub fn get(&self, name: &str) -> Option<&Ring> {
        self.rings.get(name)
    }

    /// Whether any ring is a subscriber's storage (some channel has subscribers).
    pub fn has_subscriber_rings(&self) -> bool {
        debug_assert_eq!(
            self.subscriber_rings,
            self.rings
                .keys()
                .filter(|name| is_subscriber_ring(name))
                .count(),
            "subscriber rings counted"
        );
        self.subscriber_rings > 0
    }

    /// The ring `name`, to change: it goes on the list of rings whose headers
    /// [`Queues::commit_headers`] commits.
    pub fn get_mut(&mut self, name: &str) -> Option<&mut Ring> {
        let ring = self.rings.get_mut(name)?;
        if !ring.listed {
            ring.listed = true;
            list_name(&mut self.listed_names, &mut self.listed, name);
        }
        Some(ring)
    }

    /// Commits the header of every ring changed since the last call ([`Ring::commit_header`]):
    /// what was pushed is kept and what was acknowledged is gone, across a crash of the
    /// process. The queue node calls it before any reply is written to a socket.
    pub fn commit_headers(&mut self) {
        assert!(self.listed <= self.listed_names.len());
        for name in &self.listed_names[..self.listed] {
            // A ring removed since is gone (its drop committed it); one created again under
            // the name commits early, which is harmless.
            if let Some(ring) = self.rings.get_mut(name) {
                ring.commit_header();
                ring.listed = false;
            }
        }
        self.listed = 0;
    }

    pub fn contains(&self, name: &str) -> bool {
        self.rings.contains_key(name)
    }

    /// Checks that a ring `name` of `capacity_bytes` could be created (or exists), without
    /// creating it: for all-or-nothing requests such as PushMulti.
    pub fn check_create(&self, name: &str, capacity_bytes: u64) -> Result<(), QueueError> {
        if self.rings.contains_key(name) {
            return Ok(());
        }
        if !valid_storage_name(name) {
            return Err(QueueError::BadName(name.to_string()));
        }
        let limit = self.config.memory_limit_bytes;
        if limit != 0 && self.total_capacity_bytes.saturating_add(capacity_bytes) > limit {
            return Err(QueueError::MemoryLimit {
                need_bytes: capacity_bytes,
                used_bytes: self.total_capacity_bytes,
                limit_bytes: limit,
            });
        }
        Ok(())
    }

    /// Checks that every ring of `rings` (name, capacity) could be created together (those that
    /// exist are fine): names valid, and the new capacities together within the memory limit.
    pub fn check_create_all(&self, rings: &[(String, u64)]) -> Result<(), QueueError> {
        let mut need = 0u64;
        for (name, capacity_bytes) in rings {
            if self.rings.contains_key(name) {
                continue;
            }
            if !valid_storage_name(name) {
                return Err(QueueError::BadName(name.clone()));
            }
            need = need.saturating_add(*capacity_bytes);
        }
        let limit = self.config.memory_limit_bytes;
        // Nothing to create, nothing to refuse: rings found at start beyond a lowered limit
        // keep taking pushes (the limit is for new rings only).
        if need > 0 && limit != 0 && self.total_capacity_bytes.saturating_add(need) > limit {
            return Err(QueueError::MemoryLimit {
                need_bytes: need,
                used_bytes: self.total_capacity_bytes,
                limit_bytes: limit,
            });
        }
        Ok(())
    }

    /// Renames ring `from` to `to` (its file too), records and cursors unchanged: how the first
    /// subscriber of a channel takes over the channel's queue. `to` must not exist.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), QueueError> {
        if !valid_storage_name(to) || self.rings.contains_key(to) {
            return Err(QueueError::BadName(to.to_string()));
        }
        let Some(mut ring) = self.rings.remove(from) else {
            return Err(QueueError::BadName(from.to_string()));
        };
        // The list of rings to commit knows it by its old name: commit it now.
        ring.commit_header();
        ring.listed = false;
        let target = self.ring_path(to);
        if let Err(source) = std::fs::rename(ring.path(), &target) {
            let path = ring.path().to_path_buf();
            self.rings.insert(from.to_string(), ring);
            return Err(QueueError::Io { path, source });
        }
        ring.set_path(target);
        self.rings.insert(to.to_string(), ring);
        self.subscriber_rings += usize::from(is_subscriber_ring(to));
        self.subscriber_rings -= usize::from(is_subscriber_ring(from));
        Ok(())
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// The ring `name`, created empty with `capacity_bytes` if it does not exist.
    pub fn get_or_create(
        &mut self,
        name: &str,
        capacity_bytes: u64,
    ) -> Result<&mut Ring, QueueError> {
        if !self.rings.contains_key(name) {
            self.check_create(name, capacity_bytes)?;
            let path = self.ring_path(name);
            if path.exists() {
                // Left behind by a removal that failed half-way; never served.
                move_aside(&self.config.data_dir, "corrupt", name, &path)?;
            }
            let ring = Ring::create(&path, capacity_bytes, self.config.sync)?;
            self.total_capacity_bytes += capacity_bytes;
            self.rings.insert(name.to_string(), ring);
            self.subscriber_rings += usize::from(is_subscriber_ring(name));
        }
        match self.get_mut(name) {
            Some(ring) => Ok(ring),
            None => unreachable!("ring {name} inserted above"),
        }
    }

    /// Removes the ring `name` and deletes its file. Returns whether it existed.
    pub fn remove(&mut self, name: &str) -> Result<bool, QueueError> {
        let Some(ring) = self.rings.remove(name) else {
            return Ok(false);
        };
        self.total_capacity_bytes -= ring.capacity_bytes();
        self.subscriber_rings -= usize::from(is_subscriber_ring(name));
        let path = ring.path().to_path_buf();
        drop(ring);
        std::fs::remove_file(&path).map_err(|source| QueueError::Io { path, source })?;
        Ok(true)
    }

    /// Storage names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.rings.keys().map(String::as_str)
    }

    pub fn size(&self, name: &str) -> Option<RingSize> {
        self.rings.get(name).map(Ring::size)
    }

    pub fn total_capacity_bytes(&self) -> u64 {
        self.total_capacity_bytes
    }

    /// Imports a reference `.rq` dump into the ring named by the file (created with
    /// `capacity_bytes` if needed). Returns the number of records pushed. Stops at the first
    /// push that fails (e.g. the ring is full), with the records before it kept.
    pub fn import_rq(&mut self, path: &Path, capacity_bytes: u64) -> Result<u64, QueueError> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".rq"))
            .unwrap_or_default()
            .to_string();
        if !valid_storage_name(&name) {
            return Err(QueueError::BadName(name));
        }
        let bytes = std::fs::read(path).map_err(|source| QueueError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let values = rq::decode(&bytes).map_err(|source| QueueError::Rq {
            path: path.to_path_buf(),
            source,
        })?;
        let ring = self.get_or_create(&name, capacity_bytes)?;
        for value in &values {
            ring.push(value)?;
        }
        Ok(values.len() as u64)
    }

    /// Commits every ring's header and forces its changes to disk (graceful shutdown while the
    /// registry stays usable).
    pub fn sync_all(&mut self) -> Result<(), QueueError> {
        self.commit_headers();
        for ring in self.rings.values_mut() {
            ring.sync_all()?;
        }
        Ok(())
    }

    /// Graceful close: syncs every ring to disk.
    pub fn close(self) -> Result<(), QueueError> {
        for ring in self.rings.into_values() {
            ring.close()?;
        }
        Ok(())
    }
}

/// Whether the storage `name` is a subscriber's (`subscriber@channel`, `@channel` for the
/// default subscriber).
fn is_subscriber_ring(name: &str) -> bool {
    split_storage_name(name).0.is_some()
}

/// Puts `name` on a list of `*count` names kept in `names`, reusing a string left from before.
fn list_name(names: &mut Vec<String>, count: &mut usize, name: &str) {
    match names.get_mut(*count) {
        Some(slot) => {
            slot.clear();
            slot.push_str(name);
        }
        None => names.push(name.to_string()),
    }
    *count += 1;
}

/// Moves `path` to `<dir>/<sub>/<name>.<unix_s>.ring`; returns the new path.
fn move_aside(dir: &Path, sub: &str, name: &str, path: &Path) -> Result<PathBuf, QueueError> {
    let aside = dir.join(sub);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| QueueError::Io { path, source }
    };
    std::fs::create_dir_all(&aside).map_err(io(&aside))?;
    let unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let target = aside.join(format!("{name}.{unix_s}{RING_SUFFIX}"));
    std::fs::rename(path, &target).map_err(io(path))?;
    Ok(target)
}
