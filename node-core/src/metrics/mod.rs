//! Prometheus metrics: an optional HTTP listener per process (`[metrics] listen`) that serves
//! `GET /metrics` in the Prometheus text exposition format. Every metric is documented in
//! docs/operations.md, "Metrics".
//!
//! Owns: the `[metrics]` config section ([`MetricsSection`], with the same bind rule as the
//! protocol port), the hand-over between the event loop and the HTTP thread ([`MetricsHub`]),
//! what every process exposes (build info, readiness, uptime, RSS, descriptors: [`process`]),
//! the core's request and connection metrics ([`core`]), the builder nodes add their own metrics
//! to ([`Families`]) and the listener thread ([`http`]).
//!
//! # Why scrapes never touch the event loop
//!
//! The loop counts requests in plain integers it alone owns ([`crate::stats::ServerStats`]): no
//! atomics, no locks on the hot path. A scrape does not read them. Instead, the HTTP thread
//! raises a flag ([`MetricsHub`]) and waits; the loop looks at that flag once per tick
//! (`server.tick_interval_ms`, 100 ms by default), and only when it is raised copies its
//! cumulative counters and asks the node for its own figures (channels, dumps...), a few
//! microseconds of work, and hands the copy over with a `try_lock` — if the HTTP thread happens
//! to hold the lock, the loop does not wait but retries at the next tick. The HTTP thread then
//! encodes the copy on its own time. So the loop's cost is one atomic load per tick when nobody
//! scrapes and one copy per scrape otherwise; a scrape's data is at most one tick old. A loop
//! that does not answer within [`FRESH_SNAPSHOT_WAIT`] (a node still loading its data, or one
//! hung) still gets a scrape: the process metrics, `swarm_ready`, and the last copy if any, with
//! its age in `swarm_metrics_snapshot_age_seconds`.
//!
//! Processes without an event loop (dhtdump) implement [`MetricsSource`] directly.

pub mod core;
mod families;
pub mod http;
pub mod process;

pub use families::{Families, HistogramValue, CONTENT_TYPE};
pub use http::MetricsServer;

use crate::config::ConfigError;
use crate::stats::CoreSnapshot;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// How long a scrape waits for the event loop's fresh copy before it serves what it has.
pub const FRESH_SNAPSHOT_WAIT: Duration = Duration::from_secs(2);

/// Largest bearer token file accepted, in bytes.
pub const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// `[metrics]`: the optional Prometheus listener.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// `HOST:PORT` of the HTTP listener serving `/metrics` (an IP literal; port 0 lets the OS
    /// choose). Unset: no listener.
    pub listen: Option<String>,
    /// Allow a non-loopback `listen` without a bearer token.
    pub insecure: bool,
    /// A file holding one token; when set, scrapes must send `Authorization: Bearer <token>`
    /// (Prometheus: `authorization: {credentials_file: ...}`).
    pub bearer_token_file: Option<PathBuf>,
}

impl MetricsSection {
    /// The listen address, if any; refuses what does not parse and a non-loopback address that
    /// neither a token nor `insecure` covers (the protocol port's rule, `config::check_bind_security`).
    pub fn listen_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        let Some(listen) = &self.listen else {
            return Ok(None);
        };
        let addr: SocketAddr = listen.parse().map_err(|_| ConfigError::Invalid {
            key: "metrics.listen",
            problem: format!("{listen:?} is not an IP address and port (e.g. \"127.0.0.1:9100\")"),
        })?;
        let loopback = addr.ip().to_canonical().is_loopback();
        if !loopback && !self.insecure && self.bearer_token_file.is_none() {
            return Err(ConfigError::Invalid {
                key: "metrics.listen",
                problem: format!(
                    "refusing to serve metrics on {addr} without a token: it is reachable from \
                     other machines. Set metrics.bearer_token_file, or metrics.insecure = true \
                     to serve them to anyone deliberately"
                ),
            });
        }
        Ok(Some(addr))
    }

    /// Checks the address and reads the token file (the error names the key).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen_addr()?;
        self.token()?;
        Ok(())
    }

    /// The bearer token, read from its file (surrounding whitespace dropped).
    pub fn token(&self) -> Result<Option<String>, ConfigError> {
        let Some(path) = &self.bearer_token_file else {
            return Ok(None);
        };
        let invalid = |problem: String| ConfigError::Invalid {
            key: "metrics.bearer_token_file",
            problem,
        };
        let size = std::fs::metadata(path)
            .map_err(|err| invalid(format!("cannot read {}: {err}", path.display())))?
            .len();
        if size > MAX_TOKEN_FILE_BYTES {
            return Err(invalid(format!(
                "{} is larger than {MAX_TOKEN_FILE_BYTES} bytes",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|err| invalid(format!("cannot read {}: {err}", path.display())))?;
        let token = text.trim();
        if token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(format!(
                "{} must hold one token of at least 16 printable ASCII characters",
                path.display()
            )));
        }
        Ok(Some(token.to_string()))
    }
}

/// Who is being scraped: the `swarm_info` labels.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `dht`, `logfiles`, `queue` or `dhtdump`.
    pub kind: String,
    pub version: String,
}

/// Adds a process's own metrics to a scrape; called on the HTTP thread.
pub trait MetricsSource: Send + Sync + 'static {
    fn collect(&self, out: &mut Families);

    /// Whether the process serves yet (`swarm_ready`).
    fn ready(&self) -> bool {
        true
    }
}

/// What the event loop hands over: its counters and the node's own metrics.
#[derive(Debug)]
pub struct Snapshot {
    pub core: CoreSnapshot,
    pub node: Families,
    pub taken: Instant,
}

#[derive(Default)]
struct Published {
    latest: Option<Arc<Snapshot>>,
    generation: u64,
}

/// The meeting point of the HTTP thread and the event loop (see the module doc), and the
/// readiness flag the daemon sets once the node serves.
#[derive(Default)]
pub struct MetricsHub {
    wanted: AtomicBool,
    ready: AtomicBool,
    published: Mutex<Published>,
    fresh: Condvar,
}

impl MetricsHub {
    fn lock(&self) -> MutexGuard<'_, Published> {
        // A panic while holding the lock leaves at worst an old snapshot: keep serving.
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// For the event loop, once per tick: whether a scrape is waiting for a copy (the flag is
    /// cleared).
    pub fn take_request(&self) -> bool {
        self.wanted.load(Ordering::Relaxed) && self.wanted.swap(false, Ordering::AcqRel)
    }

    /// For the event loop: hands a copy over without ever waiting. Returns false (and asks
    /// again at the next tick) when the HTTP thread holds the lock.
    pub fn publish(&self, snapshot: Snapshot) -> bool {
        let Ok(mut published) = self.published.try_lock() else {
            self.wanted.store(true, Ordering::Release);
            return false;
        };
        published.latest = Some(Arc::new(snapshot));
        published.generation += 1;
        drop(published);
        self.fresh.notify_all();
        true
    }

    /// The node serves requests (set by the daemon with READY=1).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// For the HTTP thread: asks the loop for a copy and waits up to `wait` for it; returns the
    /// newest copy there is (fresh, or older when the loop did not answer in time).
    pub fn request_snapshot(&self, wait: Duration) -> Option<Arc<Snapshot>> {
        let published = self.lock();
        let before = published.generation;
        self.wanted.store(true, Ordering::Release);
        let (published, _) = self
            .fresh
            .wait_timeout_while(published, wait, |p| p.generation == before)
            .unwrap_or_else(PoisonError::into_inner);
        published.latest.clone()
    }
}

impl MetricsSource for MetricsHub {
    fn collect(&self, out: &mut Families) {
        let wait = if self.is_ready() {
            FRESH_SNAPSHOT_WAIT
        } else {
            // Loading: the loop is not running yet; serve at once what there is.
            Duration::ZERO
        };
        let Some(snapshot) = self.request_snapshot(wait) else {
            return;
        };
        out.gauge(
            "swarm_metrics_snapshot_age_seconds",
            "Age of the event loop's counters in this scrape (at most a tick when the loop is responsive).",
            &[],
            snapshot.taken.elapsed().as_secs_f64(),
        );
        core::add_core(&snapshot.core, out);
        out.extend(&snapshot.node);
    }

    fn ready(&self) -> bool {
        self.is_ready()
    }
}

/// Starts the metrics listener of a node when `[metrics] listen` is set: returns the hub the
/// event loop feeds, and the server (keep it alive for the process's life).
pub fn start_for_node(
    section: &MetricsSection,
    identity: Identity,
) -> Result<Option<(Arc<MetricsHub>, MetricsServer)>, String> {
    let hub = Arc::new(MetricsHub::default());
    let source: Arc<dyn MetricsSource> = hub.clone();
    Ok(MetricsServer::start(section, identity, source)?.map(|server| (hub, server)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn section(listen: &str) -> MetricsSection {
        MetricsSection {
            listen: Some(listen.into()),
            ..MetricsSection::default()
        }
    }

    #[test]
    fn non_loopback_needs_a_token_or_insecure() {
        assert_eq!(MetricsSection::default().listen_addr().unwrap(), None);
        assert!(section("127.0.0.1:0").listen_addr().unwrap().is_some());
        assert!(section("[::1]:9100").listen_addr().unwrap().is_some());
        let message = section("0.0.0.0:9100").validate().unwrap_err().to_string();
        assert!(message.contains("metrics.listen"), "{message}");
        assert!(message.contains("metrics.bearer_token_file"), "{message}");
        let insecure = MetricsSection {
            insecure: true,
            ..section("0.0.0.0:9100")
        };
        insecure.validate().expect("insecure allows it");
        let message = section("localhost:9100")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(message.contains("metrics.listen"), "{message}");
    }

    #[test]
    fn token_files_are_checked() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let with_token = |path: &std::path::Path| MetricsSection {
            bearer_token_file: Some(path.to_path_buf()),
            ..section("0.0.0.0:9100")
        };
        file.write_all(b"short\n").unwrap();
        let message = with_token(file.path()).validate().unwrap_err().to_string();
        assert!(message.contains("metrics.bearer_token_file"), "{message}");
        let mut good = tempfile::NamedTempFile::new().unwrap();
        good.write_all(b"  0123456789abcdef0123\n").unwrap();
        assert_eq!(
            with_token(good.path()).token().unwrap().as_deref(),
            Some("0123456789abcdef0123")
        );
        let missing = with_token(std::path::Path::new("/nonexistent/token"));
        let message = missing.validate().unwrap_err().to_string();
        assert!(message.contains("/nonexistent/token"), "{message}");
    }

    #[test]
    fn the_loop_never_waits_for_the_http_thread() {
        let hub = MetricsHub::default();
        assert!(!hub.take_request());
        let held = hub.lock();
        hub.wanted.store(true, Ordering::Release);
        assert!(hub.take_request());
        let snapshot = Snapshot {
            core: CoreSnapshot::default(),
            node: Families::default(),
            taken: Instant::now(),
        };
        assert!(
            !hub.publish(snapshot),
            "the lock is held: no wait, no publish"
        );
        assert!(hub.take_request(), "asked again for the next tick");
        drop(held);
    }

    #[test]
    fn a_scrape_gets_the_copy_the_loop_publishes() {
        let hub = Arc::new(MetricsHub::default());
        let loop_side = Arc::clone(&hub);
        let publisher = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !loop_side.take_request() {
                assert!(Instant::now() < deadline, "no request");
                std::thread::sleep(Duration::from_millis(1));
            }
            let snapshot = || Snapshot {
                core: CoreSnapshot {
                    connections_open: 7,
                    ..CoreSnapshot::default()
                },
                node: Families::default(),
                taken: Instant::now(),
            };
            while !loop_side.publish(snapshot()) {
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let snapshot = hub
            .request_snapshot(Duration::from_secs(10))
            .expect("published");
        assert_eq!(snapshot.core.connections_open, 7);
        publisher.join().unwrap();
    }
}
