//! Hinted handoff: the keys a member of a replica set missed while it was down, so that the
//! client can bring it up to date when it is back.
//!
//! A write acknowledged without a member (the member was down, or was lost while the write
//! was in flight) leaves a *hint* for that member: the channel and key. When the member is up
//! again, the next request of this client that routes anywhere replays its hints first (one
//! thread does it, at most 16 384 keys a turn and a turn at most every 20 ms; the others go
//! on): for each key it reads what a live member of the set holds now and writes exactly that
//! to the returning member (with versions: GetWithVersion, then PutVersion or RemoveVersion of
//! the same version, which a newer write always beats; without them: Get, then Put or Remove).
//! Until its hints are replayed, reads try the member after the others of its set.
//!
//! What this does not do (docs/replication.md): hints live in this client's memory, so a
//! member misses for good the writes of clients that stopped before it came back, and of other
//! clients it may miss some; a member that lost its data directory is not rebuilt by hints.
//! That is catch-up's work (Mirror). Hints are bounded: at most [`MAX_HINTS_PER_MEMBER`] keys
//! per member; past that the member's hints are dropped (it needs a catch-up) and a warning
//! says so.

use super::replicas::Change;
use crate::error::ClientError;
use crate::reply::Reply;
use node_core::protocol::dht::{self as wire, VersionedLookup};
use node_core::protocol::{RequestCode, Status};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Instant;

/// Keys remembered per member: about 40 MiB of memory at most, per member down.
pub const MAX_HINTS_PER_MEMBER: usize = 1 << 20;
/// How often requests look whether a member with hints is back, at most.
const REPLAY_CHECK_MS: u64 = 20;

/// The keys one member missed, by channel.
#[derive(Debug, Default)]
pub(crate) struct Missed {
    pub channels: HashMap<String, HashSet<u64>>,
    count: usize,
    /// More keys were missed than remembered: only a catch-up repairs the member.
    pub overflowed: bool,
}

#[derive(Debug)]
pub(crate) struct Hints {
    /// Whether any member has hints: the request path's one atomic load when none does.
    any: AtomicBool,
    members: Mutex<HashMap<usize, Missed>>,
    replaying: Mutex<()>,
    /// When a replay was last looked for (ms since `started`): at most every
    /// [`REPLAY_CHECK_MS`], so a member down for long costs requests one atomic load.
    checked_ms: AtomicU64,
    started: Instant,
}

impl Default for Hints {
    fn default() -> Hints {
        Hints {
            any: AtomicBool::new(false),
            members: Mutex::new(HashMap::new()),
            replaying: Mutex::new(()),
            checked_ms: AtomicU64::new(0),
            started: Instant::now(),
        }
    }
}

impl Hints {
    /// Remembers that `node` missed the writes of `keys` in `channel`.
    pub(crate) fn record(&self, node: usize, channel: &str, keys: impl IntoIterator<Item = u64>) {
        let mut members = self.lock();
        let missed = members.entry(node).or_default();
        let set = missed.channels.entry(channel.to_string()).or_default();
        for key in keys {
            if missed.count >= MAX_HINTS_PER_MEMBER {
                if !missed.overflowed {
                    tracing::warn!(
                        node,
                        "a replica set member missed more than {MAX_HINTS_PER_MEMBER} writes \
                         while down: this client stops remembering them; the member needs a \
                         catch-up from its set (docs/replication.md)"
                    );
                }
                missed.overflowed = true;
                break;
            }
            if set.insert(key) {
                missed.count += 1;
            }
        }
        self.any.store(true, Ordering::Release);
    }

    /// Whether `node` has hints waiting (one atomic load while no member has any).
    pub(crate) fn has(&self, node: usize) -> bool {
        self.any.load(Ordering::Acquire) && self.lock().contains_key(&node)
    }

    pub(crate) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// The members with hints.
    pub(crate) fn nodes(&self) -> Vec<usize> {
        self.lock().keys().copied().collect()
    }

    /// Takes up to `most` of `node`'s hints to replay them (all of them when there are no
    /// more; the rest stay for a later turn).
    pub(crate) fn take(&self, node: usize, most: usize) -> Option<Missed> {
        let mut members = self.lock();
        let missed = members.get_mut(&node)?;
        let taken = if missed.count <= most {
            members.remove(&node)
        } else {
            Some(missed.split_off(most))
        };
        self.any.store(!members.is_empty(), Ordering::Release);
        taken
    }

    /// Gives back hints that could not be replayed (merged with any recorded meanwhile).
    pub(crate) fn put_back(&self, node: usize, missed: Missed) {
        let overflowed = missed.overflowed;
        for (channel, keys) in missed.channels {
            self.record(node, &channel, keys);
        }
        if overflowed {
            self.lock().entry(node).or_default().overflowed = true;
            self.any.store(true, Ordering::Release);
        }
    }

    /// Keys waiting to be replayed, over every member.
    pub(crate) fn pending(&self) -> usize {
        self.lock().values().map(Missed::len).sum()
    }

    /// The right to replay, waiting for a replay another thread runs.
    pub(crate) fn replay_now(&self) -> MutexGuard<'_, ()> {
        self.replaying
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The right to replay, if no other thread has it now and none looked in the last
    /// [`REPLAY_CHECK_MS`].
    pub(crate) fn try_replay(&self) -> Option<MutexGuard<'_, ()>> {
        // Offset by one period, so that the first look is never "too soon".
        let now_ms = self.started.elapsed().as_millis() as u64 + REPLAY_CHECK_MS;
        let last = self.checked_ms.load(Ordering::Acquire);
        if now_ms < last + REPLAY_CHECK_MS {
            return None;
        }
        if self
            .checked_ms
            .compare_exchange(last, now_ms, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return None;
        }
        match self.replaying.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<usize, Missed>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Missed {
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    /// Moves `most` keys (fewer than it holds) out into a `Missed` of their own.
    fn split_off(&mut self, most: usize) -> Missed {
        let mut taken = Missed::default();
        for (channel, keys) in &mut self.channels {
            let want = most - taken.count;
            if want == 0 {
                break;
            }
            let moved: Vec<u64> = keys.iter().copied().take(want).collect();
            for key in &moved {
                keys.remove(key);
            }
            taken.count += moved.len();
            taken
                .channels
                .insert(channel.clone(), moved.into_iter().collect());
        }
        self.channels.retain(|_, keys| !keys.is_empty());
        self.count -= taken.count;
        taken
    }
}

/// Keys replayed per round trip (reads from the source pipelined, then the writes).
const REPLAY_PIPELINE: usize = 256;
/// Keys one request replays at most (the rest at the next turn, 20 ms later at the earliest):
/// the request that replays pays for it, so a member that missed many writes is brought up to
/// date in slices of a few hundred milliseconds rather than in one long stall.
const REPLAY_TURN_KEYS: usize = 16_384;

impl super::DhtClient {
    /// Replays the hints of every member that is up again, unless another thread does (see
    /// the module documentation). A member whose hints cannot be replayed now (no other live
    /// member to read from, a failure) keeps them for a later request.
    pub(crate) fn replay_hints(&self) {
        if !self.hints.any() {
            return;
        }
        if let Some(_replaying) = self.hints.try_replay() {
            self.replay_each();
        }
    }

    /// Replays now the writes that members of replica sets missed while they were down and
    /// that this client remembers (see `hints` in the module documentation: requests do it by
    /// themselves, at most every 20 ms); members still down keep theirs. Returns how many keys
    /// are still waiting for a member to come back.
    pub fn replay_missed_writes(&self) -> usize {
        let _replaying = self.hints.replay_now();
        let mut pending = self.hints.pending();
        // Slice after slice, while it gets anywhere.
        while pending > 0 {
            self.replay_each();
            let now = self.hints.pending();
            if now >= pending {
                break;
            }
            pending = now;
        }
        pending
    }

    fn replay_each(&self) {
        for node in self.hints.nodes() {
            let up = self.client.node_status(node).is_some_and(|s| s.is_up());
            let source = self
                .read_routes(|routes| routes.members_of(node))
                .into_iter()
                .find(|&member| member != node && self.client.check_node(member).is_ok());
            let (true, Some(source)) = (up, source) else {
                continue;
            };
            let Some(missed) = self.hints.take(node, REPLAY_TURN_KEYS) else {
                continue;
            };
            let addr = self.client.node_addr(node);
            match self.replay_to(node, source, &missed) {
                Ok(()) => tracing::info!(
                    node = ?addr,
                    keys = missed.len(),
                    overflowed = missed.overflowed,
                    "replayed the writes a replica set member missed while it was down"
                ),
                Err(error) => {
                    tracing::warn!(node = ?addr, %error, "replaying missed writes failed; later");
                    self.hints.put_back(node, missed);
                }
            }
        }
    }

    /// Writes to `node` what `source` holds now of every key `node` missed.
    fn replay_to(&self, node: usize, source: usize, missed: &Missed) -> Result<(), ClientError> {
        let versioned = self.uses_versions();
        let read_code = match versioned {
            true => wire::GET_WITH_VERSION,
            false => wire::GET,
        };
        for (channel, keys) in &missed.channels {
            let keys: Vec<u64> = keys.iter().copied().collect();
            for chunk in keys.chunks(REPLAY_PIPELINE) {
                let mut reads = Vec::with_capacity(chunk.len());
                for &key in chunk {
                    let body = super::key_body(channel, key);
                    reads.push((key, self.client.submit_owned(source, read_code, body)?));
                }
                let mut writes = Vec::with_capacity(chunk.len());
                for (key, pending) in reads {
                    let (code, body) = self.repair(channel, key, pending.wait()?, versioned)?;
                    writes.push(self.client.submit_owned(node, code, body)?);
                }
                for pending in writes {
                    pending.wait()?.into_result()?;
                }
            }
        }
        Ok(())
    }

    /// The write that gives a member what `read` (the source's answer) says the key holds.
    fn repair(
        &self,
        channel: &str,
        key: u64,
        read: Reply,
        versioned: bool,
    ) -> Result<(RequestCode, Vec<u8>), ClientError> {
        if read.status == Status::UnsupportedRequest {
            self.versions_unsupported.store(true, Ordering::Release);
        }
        let read = read.into_result()?;
        let found = read.status == Status::Ok;
        let remove = Change::Remove { channel, key };
        if !versioned {
            return Ok(match found {
                true => Change::Put {
                    channel,
                    key,
                    value: &read.body,
                }
                .plain(),
                false => remove.plain(),
            });
        }
        let lookup = wire::decode_versioned_lookup(found, &read.body)
            .map_err(|e| super::body_error(read.node, "GetWithVersion", e))?;
        Ok(match lookup {
            VersionedLookup::Found { version, value } => {
                self.clock.observe(version);
                Change::Put {
                    channel,
                    key,
                    value,
                }
                .versioned(version)
            }
            VersionedLookup::Tombstone { version } => remove.versioned(version),
            VersionedLookup::Absent => remove.plain(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_are_kept_per_member_taken_and_given_back() {
        let hints = Hints::default();
        assert!(!hints.any() && !hints.has(3));
        hints.record(3, "users", [1, 2, 2]);
        hints.record(3, "orders", [7]);
        hints.record(5, "users", [9]);
        assert!(hints.has(3) && hints.has(5) && !hints.has(4));
        let missed = hints.take(3, usize::MAX).expect("hints of 3");
        assert_eq!(missed.len(), 3);
        assert_eq!(missed.channels["users"], HashSet::from([1, 2]));
        assert!(hints.any(), "5 still has some");
        hints.put_back(3, missed);
        // Taken in slices.
        let slice = hints.take(3, 2).expect("a slice");
        assert_eq!(slice.len(), 2);
        assert!(hints.has(3));
        let rest = hints.take(3, 2).expect("the rest");
        assert_eq!(rest.len(), 1);
        let mut keys: Vec<(String, u64)> = [slice, rest]
            .iter()
            .flat_map(|m| {
                m.channels
                    .iter()
                    .flat_map(|(c, keys)| keys.iter().map(move |k| (c.clone(), *k)))
            })
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                ("orders".to_string(), 7),
                ("users".into(), 1),
                ("users".into(), 2)
            ]
        );
        assert!(!hints.has(3));
        assert!(hints.take(5, usize::MAX).is_some());
        assert!(!hints.any());
    }

    #[test]
    fn hints_are_bounded() {
        let hints = Hints::default();
        hints.record(1, "c", 0..(MAX_HINTS_PER_MEMBER as u64 + 10));
        let missed = hints.take(1, usize::MAX).expect("hints");
        assert_eq!(missed.len(), MAX_HINTS_PER_MEMBER);
        assert!(missed.overflowed);
    }
}
