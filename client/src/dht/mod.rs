//! The dht cluster's client: [`DhtClient`].
//!
//! A dht cluster is a set of nodes whose hash ranges tile the 64-bit hash space; nodes never
//! know each other, so this is where the cluster exists. On connecting, the client asks every
//! node its range (GetRedistribution; GetResponsibleRange from nodes that do not know it) and
//! checks that the ranges tile the space: gaps and
//! overlaps are refused with [`ClientError::Topology`], which lists each one with the nodes
//! concerned, unless [`ClientOptions::allow_incomplete_ranges`] says to carry on.
//!
//! - **Keyed requests** (`put`, `get`, `exists`, `remove`, `update`, `put_batch`) go to the node
//!   whose range owns the key ([`RangeTable::owner`], which uses the node's own rule,
//!   `HashRange::is_responsible_for`).
//! - **Replica sets**: nodes whose ranges are exactly equal own the same keys. Writes go to
//!   every live member and are acknowledged by `write_quorum` of them (with versions from the
//!   client's hybrid logical clock, so the members converge); reads go to the first live member
//!   and fail over; a member that missed writes while it was down gets them replayed when it
//!   is back (`replicas`, `hints`, docs/replication.md). GetAll, sizes and Listen take each set
//!   once. [`DhtClient::replica_sets`] shows the sets and their live members.
//! - **Range changes** (a redistribution, `swarmctl dht redistribute`) are learned without a
//!   restart: a node that answers WrongNode has another range than the client thought, so the
//!   client asks every node again (GetRedistribution) and retries, pausing while the cluster is
//!   between ranges, for up to `request_timeout_ms`; after that the WrongNode is
//!   [`ClientError::WrongNode`], naming node and key. [`DhtClient::refresh_ranges`] asks at
//!   any time. While a node moves records away, a read that finds nothing at the owner also
//!   asks the nodes the record may still be on (then the owner once more, in case it arrived
//!   meanwhile), a Remove removes it there too, and `get_all` reads in two phases so that a
//!   record on two nodes comes once (see [`GetAll`]), so readers and writers see no gap. The
//!   client talks to the nodes it was given; nodes added to the cluster reach it through its
//!   topology file ([`DhtClient::open_topology`] follows the file, [`DhtClient::apply_topology`]
//!   takes a new one), or a new `DhtClient` (add them with the empty range first; see
//!   docs/operations.md).
//! - **Nodes that are down** (see the crate documentation): the client starts without them and
//!   routes their keys by their last known range, so those keys fail at once with
//!   [`ClientError::NodeDown`] while the others work; the tiling check is skipped while a down
//!   node's range is unknown. A node that comes back has its range read again before keys are
//!   routed to it.
//! - **Whole-channel requests** fan out to every node (every replica set once) and merge: `get_all` (node after node,
//!   resumable), `get_channels` (union), `get_size` and `get_channel_size` (sums),
//!   `remove_channel` (every node), `listen` (every node's change stream, merged). They fail
//!   when a node cannot answer; their `*_partial` forms answer from the others and name it.
//!
//! Keys are `u64`. [`key_from_bytes`] turns byte strings (names, ids) into keys; [`parse_key`]
//! reads the decimal or `0x`-hex form operators type.
//!
//! ```no_run
//! use client::{ClientOptions, DhtClient};
//! let nodes = ["127.0.0.1:10000".parse().unwrap(), "127.0.0.1:10001".parse().unwrap()];
//! let dht = DhtClient::connect(&nodes, ClientOptions::default())?;
//! let key = client::dht::key_from_bytes(b"user:42");
//! dht.put("profiles", key, b"{\"name\":\"Ada\"}")?;
//! assert!(dht.get("profiles", key)?.is_some());
//! for record in dht.get_all("profiles", Default::default()) {
//!     let (key, value) = record?;
//!     println!("{key:016x} {} bytes", value.len());
//! }
//! # Ok::<(), client::ClientError>(())
//! ```

mod clock;
mod get_all;
mod hints;
mod keyed;
mod listen;
mod mirror;
mod ranges;
pub mod redistribute;
mod replicas;
mod routes;
mod set_streams;

pub use get_all::{GetAll, GetAllOptions, MAX_RESUMES};
pub use hints::MAX_HINTS_PER_MEMBER;
#[cfg(feature = "async")]
pub(crate) use keyed::{found, key_body, QuickRoute};
pub use keyed::{UpdateDecision, UPDATE_TRIES};
pub use listen::{ListenEvent, Listener};
pub use mirror::{decode_item as decode_mirror_item, ChannelMirror, MirrorEvent, MirrorOptions};
pub use node_core::protocol::dht::{HashRange, SizeInfo};
pub use ranges::{show_range, RangeProblem, RangeTable, ReplicaSet};
pub use replicas::SetHealth;
pub use routes::MAX_AGE as ROUTES_MAX_AGE;

use crate::client::Client;
use crate::error::ClientError;
use crate::follow::{self, Follower};
use crate::node_set::NodeChanges;
use crate::options::ClientOptions;
use crate::partial::Partial;
use crate::topology::Topology;
use node_core::protocol::dht::{self as wire, value_hash};
use node_core::protocol::{NodeKind, RequestCode};
use routes::Routes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// A connected dht cluster. `Send + Sync`: share it between threads with `Arc`.
#[derive(Debug)]
pub struct DhtClient {
    client: Client,
    routes: RwLock<Routes>,
    /// Held while refreshing, so that threads meeting the same change refresh once.
    refreshing: Mutex<()>,
    /// The ranges the topology states for its nodes (used for a node that is down).
    stated: RwLock<HashMap<SocketAddr, HashRange>>,
    /// Set when the client follows a topology file (see [`DhtClient::open_topology`]).
    follower: Option<Follower>,
    /// Turns of `read_from = spread`: which member of a set the next read starts at.
    read_turn: AtomicUsize,
    /// The versions of replicated writes.
    clock: clock::Clock,
    /// Writes members missed while down, replayed when they are back.
    hints: hints::Hints,
    /// A node answered a versioned write UnsupportedRequest: replicated writes go unversioned.
    versions_unsupported: AtomicBool,
}

/// One dht node's range as the client knows it: `None` when the node is down and its range
/// was never learnt (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeEntry {
    pub index: usize,
    pub addr: SocketAddr,
    pub range: Option<HashRange>,
    pub redistributing: bool,
}

impl DhtClient {
    /// Connects to every node (each must be a dht node), learns each node's hash range and
    /// checks that the ranges tile the hash space (see the module documentation). Nodes that
    /// are down do not stop it: it starts without them (their keys fail with
    /// [`ClientError::NodeDown`]) and reconnects to them in the background.
    pub fn connect(nodes: &[SocketAddr], options: ClientOptions) -> Result<DhtClient, ClientError> {
        DhtClient::start(nodes, HashMap::new(), options, None)
    }

    /// Connects to the `[dht]` nodes of a topology, with its credentials unless `options`
    /// brings its own, and with the ranges it states for its nodes.
    pub fn from_topology(
        topology: &Topology,
        options: ClientOptions,
    ) -> Result<DhtClient, ClientError> {
        let (nodes, options) = topology.connection(NodeKind::Dht, options)?;
        DhtClient::start(nodes, topology.dht_ranges(), options, None)
    }

    /// Connects to the `[dht]` nodes of the topology file at `path` (as
    /// [`DhtClient::from_topology`]) and follows the file: when it changes, the client connects
    /// to the nodes added and retires those removed, with no restart (see the crate
    /// documentation).
    pub fn open_topology(
        path: &Path,
        options: ClientOptions,
    ) -> Result<Arc<DhtClient>, ClientError> {
        let (topology, nodes, options, follower) = follow::open(path, NodeKind::Dht, options)?;
        let dht = Arc::new(DhtClient::start(
            &nodes,
            topology.dht_ranges(),
            options,
            Some(follower),
        )?);
        follow::spawn(&dht);
        Ok(dht)
    }

    fn start(
        nodes: &[SocketAddr],
        stated: HashMap<SocketAddr, HashRange>,
        options: ClientOptions,
        follower: Option<Follower>,
    ) -> Result<DhtClient, ClientError> {
        let allow_incomplete = options.allow_incomplete_ranges;
        let options = ClientOptions {
            allow_down_nodes: true,
            ..options
        };
        let client = Client::connect(nodes, Some(NodeKind::Dht), options)?;
        let (routes, _) = routes::fetch(&client, None, &stated)?;
        if routes.has_unknown() {
            tracing::warn!(
                "dht nodes down whose range is unknown (not in the topology, never seen): the \
                 hash space is not checked for gaps until they are back"
            );
        } else if !allow_incomplete {
            routes.table.check()?;
        }
        Ok(DhtClient {
            client,
            routes: RwLock::new(routes),
            refreshing: Mutex::new(()),
            stated: RwLock::new(stated),
            follower,
            read_turn: AtomicUsize::new(0),
            clock: clock::Clock::default(),
            hints: hints::Hints::default(),
            versions_unsupported: AtomicBool::new(false),
        })
    }

    /// The transport underneath, for requests this type does not wrap.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The routing table as last learned (at connect, or at the last refresh).
    pub fn range_table(&self) -> RangeTable {
        self.read_routes(|routes| routes.table.clone())
    }

    /// Each node's address and hash range, in node order, as last learned (the empty range for
    /// a retired node, and for a node that is down and whose range was never learnt).
    pub fn ranges(&self) -> Vec<(SocketAddr, HashRange)> {
        self.read_routes(|routes| routes.table.entries().to_vec())
    }

    /// Each active node's range as last learned, `None` where it is unknown.
    pub fn range_entries(&self) -> Vec<RangeEntry> {
        let active = self.client.active_nodes();
        self.read_routes(|routes| {
            active
                .iter()
                .filter_map(|&index| {
                    let (addr, range) = *routes.table.entries().get(index)?;
                    Some(RangeEntry {
                        index,
                        addr,
                        range: routes.known[index].then_some(range),
                        redistributing: routes.redistributing[index],
                    })
                })
                .collect()
        })
    }

    /// Whether, as last learned, records may be on other nodes than their owner: some node is
    /// redistributing, or two nodes claim the same positions.
    pub fn is_moving(&self) -> bool {
        self.read_routes(Routes::moving)
    }

    /// The index of the node that owns `key` (the index `client()` uses).
    pub fn node_for(&self, key: u64) -> Result<usize, ClientError> {
        self.read_routes(|routes| routes.route(key))
    }

    /// Asks every node its range and redistribution state now. A node that cannot be reached
    /// keeps what was known of it, and its error is returned (after the others were applied).
    pub fn refresh_ranges(&self) -> Result<(), ClientError> {
        let _refreshing = self
            .refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.read_routes(Clone::clone);
        let (routes, error) = self.fetch(&current)?;
        *self.routes.write().unwrap_or_else(PoisonError::into_inner) = routes;
        match error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    fn fetch(&self, current: &Routes) -> Result<(Routes, Option<ClientError>), ClientError> {
        let stated = self.stated.read().unwrap_or_else(PoisonError::into_inner);
        routes::fetch(&self.client, Some(current), &stated)
    }

    fn read_routes<R>(&self, f: impl FnOnce(&Routes) -> R) -> R {
        f(&self.routes.read().unwrap_or_else(PoisonError::into_inner))
    }

    /// Refreshes unless another thread did since `version` (what the caller routed with).
    /// Unreachable nodes keep their known ranges; their errors surface on the requests to them.
    pub(crate) fn refresh_after(&self, version: u64) -> Result<(), ClientError> {
        let _refreshing = self
            .refreshing
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.read_routes(Clone::clone);
        if current.version != version {
            return Ok(());
        }
        let (routes, _) = self.fetch(&current)?;
        *self.routes.write().unwrap_or_else(PoisonError::into_inner) = routes;
        Ok(())
    }

    /// While records may be elsewhere than their owner ([`Routes::moving`]), the nodes other
    /// than `owner` that may hold `key` ([`Routes::other_holders`]); `None` when nothing moves.
    /// Asks by the routes refreshed first when older than [`ROUTES_MAX_AGE`], without copying
    /// them.
    pub(crate) fn holders_while_moving(
        &self,
        key: u64,
        owner: usize,
    ) -> Result<Option<Vec<usize>>, ClientError> {
        let (version, fetched) = self.read_routes(|routes| (routes.version, routes.fetched));
        if fetched.elapsed() > routes::MAX_AGE {
            self.refresh_after(version)?;
        }
        Ok(self.read_routes(|routes| {
            routes
                .moving()
                .then(|| routes.other_holders(key, Some(owner)))
        }))
    }

    /// Node indices handed out so far (see [`Client::node_count`]).
    pub fn node_count(&self) -> usize {
        self.client.node_count()
    }

    /// Re-reads the topology file this client follows (see [`DhtClient::open_topology`]) and
    /// applies it now, without waiting for the file watch.
    pub fn reload_topology(&self) -> Result<NodeChanges, ClientError> {
        let topology = follow::reload(self.follower.as_ref())?;
        self.apply_topology(&topology)
    }

    /// Makes the `[dht]` nodes of `topology` this client's nodes: connects to the added ones,
    /// retires the removed ones, takes the ranges it states, and reads the ranges again.
    pub fn apply_topology(&self, topology: &Topology) -> Result<NodeChanges, ClientError> {
        let changes = follow::apply(&self.client, topology, NodeKind::Dht)?;
        *self.stated.write().unwrap_or_else(PoisonError::into_inner) = topology.dht_ranges();
        // Errors of nodes that are down are theirs; the others are routed by what was read.
        if let Err(error) = self.refresh_ranges() {
            tracing::debug!(%error, "range refresh after a topology change");
        }
        Ok(changes)
    }

    /// The names of every channel on any node: sorted, each once. Fails when a node cannot
    /// answer.
    pub fn get_channels(&self) -> Result<Vec<String>, ClientError> {
        self.get_channels_partial()?.complete()
    }

    /// [`DhtClient::get_channels`] over the nodes that answer, with those that could not.
    pub fn get_channels_partial(&self) -> Result<Partial<Vec<String>>, ClientError> {
        let lists = self.client.fan_out_decoded(
            wire::GET_CHANNELS,
            &[],
            "GetChannels",
            node_core::protocol::channels::decode_channel_names,
        )?;
        // A member that is down is missing only when no member of its set answered.
        Ok(self.covered_by_sets(lists).map(|lists| {
            let names: std::collections::BTreeSet<String> =
                lists.into_iter().flat_map(|(_, names)| names).collect();
            names.into_iter().collect()
        }))
    }

    /// Records and bytes (keys at 8 bytes each plus values) over every channel of every node.
    pub fn get_size(&self) -> Result<SizeInfo, ClientError> {
        self.get_size_partial()?.complete()
    }

    /// [`DhtClient::get_size`] summed over the nodes that answer, with those that could not.
    pub fn get_size_partial(&self) -> Result<Partial<SizeInfo>, ClientError> {
        self.sum_sizes(wire::GET_SIZE, &[], "GetSize")
    }

    /// Records and bytes of one channel over every node (zeros for a channel that does not
    /// exist).
    pub fn get_channel_size(&self, channel: &str) -> Result<SizeInfo, ClientError> {
        self.get_channel_size_partial(channel)?.complete()
    }

    /// [`DhtClient::get_channel_size`] over the nodes that answer, with those that could not.
    pub fn get_channel_size_partial(
        &self,
        channel: &str,
    ) -> Result<Partial<SizeInfo>, ClientError> {
        let mut body = Vec::new();
        wire::encode_channel(&mut body, channel);
        self.sum_sizes(wire::GET_CHANNEL_SIZE, &body, "GetChannelSize")
    }

    /// Removes a channel from every node (each moves its dump aside). A channel that does not
    /// exist is not an error. Needs admin rights on nodes with authentication. A member of a
    /// replica set that is down is not waited for when `write_quorum` members of its set
    /// removed it (it keeps the channel until it is removed there too: run it again once the
    /// member is back); a node with no live member of its set fails the call.
    pub fn remove_channel(&self, channel: &str) -> Result<(), ClientError> {
        let mut body = Vec::new();
        wire::encode_channel(&mut body, channel);
        let replies = self.client.fan_out_partial(wire::REMOVE_CHANNEL, &body)?;
        for (_, reply) in &replies.value {
            reply.clone().into_result()?;
        }
        self.check_set_quorums(&replies)?;
        self.one_per_set(replies).complete().map(drop)
    }

    /// Every record of a channel over every node; see [`GetAll`]. A node that cannot be read
    /// fails the iteration (after the retries described there).
    pub fn get_all(&self, channel: &str, options: GetAllOptions) -> GetAll<'_> {
        GetAll::new(self, channel, options, false)
    }

    /// [`DhtClient::get_all`] over the nodes that can be read: a node that is down is skipped
    /// at once, one lost in the middle after the retries; [`GetAll::missing`] lists them once
    /// the iteration is over.
    pub fn get_all_partial(&self, channel: &str, options: GetAllOptions) -> GetAll<'_> {
        GetAll::new(self, channel, options, true)
    }

    /// Starts listening to a channel's changes on every node; see [`Listener`]. Fails when a
    /// node cannot be listened to now.
    pub fn listen(&self, channel: &str) -> Result<Listener, ClientError> {
        Listener::open(&self.client, channel, false, self.listen_slots())
    }

    /// [`DhtClient::listen`] that starts without the nodes that are down; it listens to them
    /// once they are back ([`Listener::missing`] lists the nodes not listened to).
    pub fn listen_partial(&self, channel: &str) -> Result<Listener, ClientError> {
        Listener::open(&self.client, channel, true, self.listen_slots())
    }

    /// The active nodes grouped by replica set (in node order): what a listener listens to
    /// and a mirror mirrors, once per set.
    fn listen_slots(&self) -> Vec<Vec<usize>> {
        let active = self.client.active_nodes();
        self.read_routes(|routes| {
            let mut slots: Vec<(routes::SetId, Vec<usize>)> = Vec::new();
            for node in active {
                let set = routes.set_of(node);
                match slots.iter_mut().find(|(id, _)| *id == set) {
                    Some((_, members)) => members.push(node),
                    None => slots.push((set, vec![node])),
                }
            }
            slots.into_iter().map(|(_, members)| members).collect()
        })
    }

    /// Starts a Mirror of a channel on every replica set, once each, on its first live
    /// member (docs/protocol.md §6.12): its records with their versions and its tombstones (a
    /// refresh, if `options` asks), then its changes; a set's stream fails over to another
    /// member as a Listen's does. See [`ChannelMirror`]. Fails when a set cannot be mirrored
    /// now.
    pub fn mirror(
        &self,
        channel: &str,
        options: MirrorOptions,
    ) -> Result<ChannelMirror, ClientError> {
        ChannelMirror::open(&self.client, channel, options, self.listen_slots())
    }

    /// [`DhtClient::listen`] (`partial`: `listen_partial`) whose streams a tokio task polls
    /// (the async client's listener) instead of a thread waiting on them.
    #[cfg(feature = "async")]
    pub(crate) fn listen_for_task(
        &self,
        channel: &str,
        partial: bool,
    ) -> Result<Listener, ClientError> {
        let set = self.client.stream_set_async();
        Listener::open_in(set, &self.client, channel, partial, self.listen_slots())
    }

    fn sum_sizes(
        &self,
        code: RequestCode,
        body: &[u8],
        request: &str,
    ) -> Result<Partial<SizeInfo>, ClientError> {
        let sizes = self
            .client
            .fan_out_decoded(code, body, request, SizeInfo::decode)?;
        // A replicated record counts once: one member per set.
        let sizes = self.one_per_set(sizes);
        Ok(sizes.map(|sizes| {
            let mut total = SizeInfo::default();
            for (_, size) in sizes {
                total.records += size.records;
                total.bytes += size.bytes;
            }
            total
        }))
    }
}

impl follow::Follows for DhtClient {
    fn follower(&self) -> Option<&Follower> {
        self.follower.as_ref()
    }

    fn apply(&self, topology: &Topology) -> Result<NodeChanges, ClientError> {
        self.apply_topology(topology)
    }
}

pub(crate) fn body_error(
    node: SocketAddr,
    request: &str,
    error: node_core::protocol::wire::WireError,
) -> ClientError {
    ClientError::protocol(node, format!("{request} reply: {error}"))
}

/// Hashes a byte string (a user name, a URL, an id that is not a number) to a dht key.
///
/// The hash is 64-bit FNV-1a (offset basis 0xcbf29ce484222325, prime 0x100000001b3), the same
/// function Update uses for values, computed over exactly the given bytes (no terminator, no
/// normalisation). **It is stable forever**: stored records are found again by the keys this
/// function produced when they were written, so changing it would orphan every one of them.
/// Other languages reproduce it from the two constants above.
pub fn key_from_bytes(bytes: &[u8]) -> u64 {
    value_hash(bytes)
}

/// Reads a key as operators type it: decimal (`1234`) or hex with `0x` (`0x4d2`), surrounding
/// spaces ignored, `_` allowed between digits.
pub fn parse_key(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits: String = trimmed.chars().filter(|c| *c != '_').collect();
    let (digits, radix) = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => (hex.to_string(), 16),
        None => (digits, 10),
    };
    let valid_digits = !digits.is_empty() && digits.chars().all(|c| c.is_digit(radix));
    let value = if valid_digits {
        u64::from_str_radix(&digits, radix).ok()
    } else {
        None
    };
    value.ok_or_else(|| {
        format!("key {text:?} is not a number from 0 to 2^64-1 (decimal, or hex with 0x)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_in_decimal_and_hex() {
        assert_eq!(parse_key("0"), Ok(0));
        assert_eq!(parse_key("1234"), Ok(1234));
        assert_eq!(parse_key(" 0x4d2 "), Ok(1234));
        assert_eq!(parse_key("0XFFFFFFFFFFFFFFFF"), Ok(u64::MAX));
        assert_eq!(parse_key("18446744073709551615"), Ok(u64::MAX));
        assert_eq!(parse_key("1_000_000"), Ok(1_000_000));
        for bad in [
            "",
            "0x",
            "-1",
            "+1",
            "12a",
            "0x1g",
            "18446744073709551616",
            "0x1ffffffffffffffff",
            "abc",
        ] {
            let error = parse_key(bad).expect_err(bad);
            assert!(error.contains("is not a number"), "{error}");
        }
    }

    #[test]
    fn byte_string_keys_are_fnv1a_and_never_change() {
        // Fixed forever: stored data depends on these.
        assert_eq!(key_from_bytes(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(key_from_bytes(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(key_from_bytes(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn byte_string_keys_spread_over_a_cluster() {
        let table = RangeTable::new(
            node_core::protocol::dht::split_evenly(3)
                .into_iter()
                .enumerate()
                .map(|(i, range)| (SocketAddr::from(([127, 0, 0, 1], 10000 + i as u16)), range))
                .collect(),
        );
        let mut counts = [0usize; 3];
        for id in 0..30_000 {
            let key = key_from_bytes(format!("user-{id}").as_bytes());
            counts[table.owner(key).expect("tiled")] += 1;
        }
        for count in counts {
            assert!((8_000..=12_000).contains(&count), "{counts:?}");
        }
    }
}
