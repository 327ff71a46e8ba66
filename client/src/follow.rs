//! Following a topology file: a cluster client opened from a file (`DhtClient::open_topology`,
//! `LogClient::open_topology`, `QueueClient::open_topology`) notices when the file changes and
//! makes its node set match it, with no restart of the service: nodes added to the file are
//! connected to, nodes removed from it are retired (see `node_set`).
//!
//! Owns the watch: one thread per followed client, which looks at the file's size, modification
//! time and inode every `ClientOptions::topology_watch_ms` (default 1 s; an editor that
//! replaces the file by a rename counts as a change) and, after a change, reads it again and
//! hands it to the client. A file that cannot be read or is invalid (a half-written save, a
//! typo) changes nothing: the client keeps its nodes and a warning is logged, once per change
//! of the file. A file whose section lists no node is refused the same way, so emptying a
//! section by mistake cannot disconnect a service from its cluster. Credentials are read at
//! start only. The thread holds the client weakly and ends when the client is dropped.

use crate::client::Client;
use crate::error::ClientError;
use crate::node_set::NodeChanges;
use crate::options::ClientOptions;
use crate::topology::Topology;
use node_core::protocol::NodeKind;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, SystemTime};

/// What tells one version of the file from the next.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

/// The followed file, owned by the client that follows it.
#[derive(Debug)]
pub(crate) struct Follower {
    path: PathBuf,
    /// `None`: no watch thread (`topology_watch_ms = 0`); reloads only on request.
    interval: Option<Duration>,
    stamp: Mutex<Option<FileStamp>>,
    /// Kept by the client; when the client goes, the watch thread wakes and ends.
    _stop: Sender<()>,
    /// Taken by the watch thread when it starts.
    stopped: Mutex<Option<Receiver<()>>>,
}

/// A cluster client that can follow its topology file.
pub(crate) trait Follows: Send + Sync + 'static {
    fn follower(&self) -> Option<&Follower>;
    fn apply(&self, topology: &Topology) -> Result<NodeChanges, ClientError>;
}

impl Follower {
    /// For a client opened from the file at `path` (already read once by the caller).
    pub(crate) fn new(path: &Path, options: &ClientOptions) -> Follower {
        let (stop, stopped) = mpsc::channel();
        Follower {
            path: path.to_path_buf(),
            interval: (options.topology_watch_ms > 0)
                .then(|| Duration::from_millis(options.topology_watch_ms)),
            stamp: Mutex::new(stamp(path)),
            _stop: stop,
            stopped: Mutex::new(Some(stopped)),
        }
    }

    /// Whether the file changed since it was last looked at (and remembers this version).
    fn changed(&self) -> bool {
        let now = stamp(&self.path);
        let mut seen = self.stamp.lock().unwrap_or_else(PoisonError::into_inner);
        if *seen == now {
            return false;
        }
        *seen = now;
        true
    }
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode: meta.ino(),
    })
}

/// What opening a client from the topology file at `path` takes: the nodes of `kind`, the
/// options (with the file's credentials unless they bring their own), and the follower.
pub(crate) fn open(
    path: &Path,
    kind: NodeKind,
    options: ClientOptions,
) -> Result<(Topology, Vec<SocketAddr>, ClientOptions, Follower), ClientError> {
    let topology = Topology::load(path).map_err(|e| ClientError::Setup(e.to_string()))?;
    let (nodes, options) = topology.connection(kind, options)?;
    let nodes = nodes.to_vec();
    let follower = Follower::new(path, &options);
    Ok((topology, nodes, options, follower))
}

/// Makes the nodes of `kind` in `topology` the nodes of `client`; a topology that lists none is
/// refused (the client keeps its nodes).
pub(crate) fn apply(
    client: &Client,
    topology: &Topology,
    kind: NodeKind,
) -> Result<NodeChanges, ClientError> {
    let nodes = topology.nodes(kind);
    if nodes.is_empty() {
        return Err(ClientError::Setup(format!(
            "the topology lists no {kind} nodes; keeping the current ones"
        )));
    }
    client.set_nodes(nodes)
}

/// Reads the followed file again; an error for a client that follows no file.
pub(crate) fn reload(follower: Option<&Follower>) -> Result<Topology, ClientError> {
    let follower = follower.ok_or_else(|| {
        ClientError::Setup("this client was not opened from a topology file".into())
    })?;
    follower.changed();
    Topology::load(&follower.path).map_err(|e| ClientError::Setup(e.to_string()))
}

/// Starts the watch thread of `client`, if it follows a file with a watch interval.
pub(crate) fn spawn<T: Follows>(client: &Arc<T>) {
    let Some(follower) = client.follower() else {
        return;
    };
    let Some(interval) = follower.interval else {
        return;
    };
    let Some(stopped) = follower
        .stopped
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    else {
        return;
    };
    let weak = Arc::downgrade(client);
    let spawned = std::thread::Builder::new()
        .name("swarm-topology-watch".into())
        .spawn(move || watch(weak, stopped, interval));
    if let Err(error) = spawned {
        tracing::warn!(%error, "cannot start the topology watch; reload_topology still works");
    }
}

fn watch<T: Follows>(client: Weak<T>, stopped: Receiver<()>, interval: Duration) {
    loop {
        match stopped.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(client) = client.upgrade() else {
            return;
        };
        let Some(follower) = client.follower() else {
            return;
        };
        if !follower.changed() {
            continue;
        }
        let path = follower.path.display().to_string();
        let outcome = Topology::load(&follower.path)
            .map_err(|e| ClientError::Setup(e.to_string()))
            .and_then(|topology| client.apply(&topology));
        match outcome {
            Ok(changes) if changes.is_empty() => {
                tracing::debug!(path, "topology file changed; same nodes")
            }
            Ok(changes) => tracing::info!(
                path,
                added = ?changes.added,
                removed = ?changes.removed,
                "topology file changed: nodes added and removed"
            ),
            Err(error) => {
                tracing::warn!(path, %error, "topology file changed but cannot be used; keeping the current nodes")
            }
        }
    }
}
