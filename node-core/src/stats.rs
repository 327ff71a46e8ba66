//! A node's live counters: connections, traffic, and per request type the number handled, the
//! number that failed, their statuses and their latency. Kept twice: cumulative since start
//! (GetStats, `/metrics`) and for the current interval (one `stats.log` line every
//! `stats_interval_s`, then reset), the way the reference system's stats.log works.
//!
//! Latency is the time the event loop spent handling a request (decode, engine call, reply
//! written to the connection's buffer), in nanoseconds, counted into one histogram whose bounds
//! ([`LATENCY_BOUNDS_NS`]) serve both the Prometheus histogram (cumulative buckets) and the
//! decade buckets of stats.log ([`LATENCY_BUCKET_NAMES`]). Recording a request is a few
//! additions and, for a fast request, one comparison: this is the hot path.

use crate::protocol::Status;
use std::fmt::Write as _;
use std::time::Duration;

/// Upper bounds (inclusive) of the latency histogram in nanoseconds: a 1-2.5-5 series from 1 µs
/// to 10 s. Requests slower than the last bound land in one more bucket (`+Inf`).
pub const LATENCY_BOUNDS_NS: [u64; 22] = [
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];
/// Buckets of the histogram: one per bound, and the one above the last bound.
pub const LATENCY_BUCKETS: usize = LATENCY_BOUNDS_NS.len() + 1;

/// The stats.log / GetStats latency buckets: ≤10 µs, ≤100 µs, ≤1 ms, ≤10 ms, ≤100 ms, and above.
pub const LATENCY_BUCKET_NAMES: [&str; 6] = ["10us", "100us", "1ms", "10ms", "100ms", "over_100ms"];
/// The upper bounds of the named buckets above (the last one has none).
const NAMED_BUCKET_BOUNDS_NS: [u64; 5] = [10_000, 100_000, 1_000_000, 10_000_000, 100_000_000];

/// Status slots per request type: every [`Status`] code is below this.
pub const STATUS_SLOTS: usize = 32;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestCounters {
    pub handled: u64,
    pub failed: u64,
    pub total_ns: u64,
    pub max_ns: u64,
    /// Requests per histogram bucket (not cumulative), by [`LATENCY_BOUNDS_NS`].
    pub buckets: [u64; LATENCY_BUCKETS],
}

impl RequestCounters {
    /// One request of `elapsed_ns`, in `bucket` (its [`latency_bucket`]).
    fn record(&mut self, failed: bool, elapsed_ns: u64, bucket: usize) {
        debug_assert_eq!(bucket, latency_bucket(elapsed_ns));
        self.handled += 1;
        self.failed += u64::from(failed);
        self.total_ns = self.total_ns.saturating_add(elapsed_ns);
        self.max_ns = self.max_ns.max(elapsed_ns);
        self.buckets[bucket] += 1;
    }

    pub fn mean_us(&self) -> u64 {
        self.total_ns.checked_div(self.handled).unwrap_or(0) / 1000
    }

    pub fn max_us(&self) -> u64 {
        self.max_ns / 1000
    }

    /// Requests per named bucket ([`LATENCY_BUCKET_NAMES`]), summed from the fine buckets.
    pub fn named_buckets(&self) -> [u64; 6] {
        let mut named = [0u64; 6];
        for (bound, count) in LATENCY_BOUNDS_NS.iter().zip(self.buckets) {
            let index = NAMED_BUCKET_BOUNDS_NS
                .iter()
                .position(|named_bound| bound <= named_bound)
                .unwrap_or(NAMED_BUCKET_BOUNDS_NS.len());
            named[index] += count;
        }
        named[NAMED_BUCKET_BOUNDS_NS.len()] += self.buckets[LATENCY_BUCKETS - 1];
        named
    }
}

/// A latency histogram on [`LATENCY_BOUNDS_NS`], for timings other than requests (fsyncs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Timings per bucket (not cumulative).
    pub buckets: [u64; LATENCY_BUCKETS],
    pub total_ns: u64,
}

impl LatencyHistogram {
    pub fn record(&mut self, elapsed: Duration) {
        let elapsed_ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[latency_bucket(elapsed_ns)] += 1;
        self.total_ns = self.total_ns.saturating_add(elapsed_ns);
    }
}

/// The histogram bucket of a latency: the first bound at or above it. Linear from the fastest,
/// because nearly every request is fast (one or two comparisons).
pub fn latency_bucket(elapsed_ns: u64) -> usize {
    LATENCY_BOUNDS_NS
        .iter()
        .position(|bound| elapsed_ns <= *bound)
        .unwrap_or(LATENCY_BOUNDS_NS.len())
}

/// Counters over some span of time.
#[derive(Debug, Clone)]
pub struct Counters {
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub handshakes_failed: u64,
    /// TLS handshakes that waited for a later event-loop pass (`tls_handshakes_per_pass`).
    pub tls_handshakes_deferred: u64,
    pub protocol_errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Indexed by request code.
    pub requests: Box<[RequestCounters; 256]>,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            connections_accepted: 0,
            connections_refused: 0,
            handshakes_failed: 0,
            tls_handshakes_deferred: 0,
            protocol_errors: 0,
            bytes_in: 0,
            bytes_out: 0,
            requests: Box::new([RequestCounters::default(); 256]),
        }
    }
}

impl Counters {
    /// Appends `name value` pairs; `name_of` names request codes (unknown codes are skipped).
    fn write_pairs(
        &self,
        name_of: &dyn Fn(u8) -> Option<&'static str>,
        out: &mut Vec<(String, u64)>,
    ) {
        out.push(("connections_accepted".into(), self.connections_accepted));
        out.push(("connections_refused".into(), self.connections_refused));
        out.push(("handshakes_failed".into(), self.handshakes_failed));
        out.push((
            "tls_handshakes_deferred".into(),
            self.tls_handshakes_deferred,
        ));
        out.push(("protocol_errors".into(), self.protocol_errors));
        out.push(("bytes_in".into(), self.bytes_in));
        out.push(("bytes_out".into(), self.bytes_out));
        for (code, counters) in self.requests.iter().enumerate() {
            let Some(name) = name_of(code as u8) else {
                continue;
            };
            if counters.handled == 0 {
                continue;
            }
            let prefix = format!("request/{name}/");
            out.push((format!("{prefix}handled"), counters.handled));
            out.push((format!("{prefix}failed"), counters.failed));
            out.push((format!("{prefix}mean_us"), counters.mean_us()));
            out.push((format!("{prefix}max_us"), counters.max_us()));
            for (bucket, count) in LATENCY_BUCKET_NAMES.iter().zip(counters.named_buckets()) {
                out.push((format!("{prefix}handled_{bucket}"), count));
            }
        }
    }
}

/// The core's statistics: cumulative and current-interval counters, plus gauges.
#[derive(Debug)]
pub struct ServerStats {
    pub total: Counters,
    pub interval: Counters,
    /// Cumulative replies per request code and status code (`/metrics`).
    pub statuses: Box<[[u64; STATUS_SLOTS]; 256]>,
    pub connections_open: u64,
    pub streams_open: u64,
    /// Memory held by all streams between their turns (the event loop sets it before use).
    pub stream_memory_bytes: u64,
}

impl Default for ServerStats {
    fn default() -> ServerStats {
        ServerStats {
            total: Counters::default(),
            interval: Counters::default(),
            statuses: Box::new([[0; STATUS_SLOTS]; 256]),
            connections_open: 0,
            streams_open: 0,
            stream_memory_bytes: 0,
        }
    }
}

/// What `/metrics` shows of the core's counters: a copy taken on the event loop's thread (see
/// [`crate::metrics`]), holding only the request types seen so far.
#[derive(Debug, Clone, Default)]
pub struct CoreSnapshot {
    pub connections_open: u64,
    pub streams_open: u64,
    pub stream_memory_bytes: u64,
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub handshakes_failed: u64,
    pub tls_handshakes_deferred: u64,
    pub protocol_errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub requests: Vec<RequestSnapshot>,
}

/// One request type's cumulative counters and its replies by status.
#[derive(Debug, Clone)]
pub struct RequestSnapshot {
    pub name: &'static str,
    pub counters: RequestCounters,
    pub statuses: Vec<(Status, u64)>,
}

impl ServerStats {
    pub fn record_request(&mut self, code: u8, status: Status, elapsed: Duration) {
        let elapsed_ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.record_request_ns(code, status, elapsed_ns);
    }

    /// [`record_request`](Self::record_request) with the handling time in ns (the event loop's
    /// clock, once per request).
    pub fn record_request_ns(&mut self, code: u8, status: Status, elapsed_ns: u64) {
        let failed = !status.is_success();
        // One bucket search for both spans.
        let bucket = latency_bucket(elapsed_ns);
        self.total.requests[code as usize].record(failed, elapsed_ns, bucket);
        self.interval.requests[code as usize].record(failed, elapsed_ns, bucket);
        if let Some(count) = self.statuses[code as usize].get_mut(status as usize) {
            *count += 1;
        }
    }

    /// The cumulative counters for `/metrics`; `name_of` names request codes (unknown codes,
    /// which are refused before counting anyway, are left out).
    pub fn metrics_snapshot(&self, name_of: &dyn Fn(u8) -> Option<&'static str>) -> CoreSnapshot {
        let total = &self.total;
        let requests = total
            .requests
            .iter()
            .enumerate()
            .filter(|(_, counters)| counters.handled > 0)
            .filter_map(|(code, counters)| {
                let name = name_of(code as u8)?;
                let statuses = Status::ALL
                    .iter()
                    .filter_map(|status| {
                        let count = *self.statuses[code].get(*status as usize)?;
                        (count > 0).then_some((*status, count))
                    })
                    .collect();
                Some(RequestSnapshot {
                    name,
                    counters: *counters,
                    statuses,
                })
            })
            .collect();
        CoreSnapshot {
            connections_open: self.connections_open,
            streams_open: self.streams_open,
            stream_memory_bytes: self.stream_memory_bytes,
            connections_accepted: total.connections_accepted,
            connections_refused: total.connections_refused,
            handshakes_failed: total.handshakes_failed,
            tls_handshakes_deferred: total.tls_handshakes_deferred,
            protocol_errors: total.protocol_errors,
            bytes_in: total.bytes_in,
            bytes_out: total.bytes_out,
            requests,
        }
    }

    pub fn add_bytes_in(&mut self, bytes: usize) {
        self.total.bytes_in += bytes as u64;
        self.interval.bytes_in += bytes as u64;
    }

    pub fn add_bytes_out(&mut self, bytes: usize) {
        self.total.bytes_out += bytes as u64;
        self.interval.bytes_out += bytes as u64;
    }

    /// Applies `update` to both the cumulative and the interval counters.
    pub fn count(&mut self, update: impl Fn(&mut Counters)) {
        update(&mut self.total);
        update(&mut self.interval);
    }

    /// Cumulative counters and gauges, for GetStats.
    pub fn snapshot(&self, name_of: &dyn Fn(u8) -> Option<&'static str>) -> Vec<(String, u64)> {
        let mut pairs = vec![
            ("connections_open".to_string(), self.connections_open),
            ("streams_open".to_string(), self.streams_open),
            ("stream_memory_bytes".to_string(), self.stream_memory_bytes),
        ];
        self.total.write_pairs(name_of, &mut pairs);
        pairs
    }

    /// One stats.log line for the interval just ended (gauges, interval counters, then the
    /// node's own pairs), and a fresh interval.
    pub fn take_interval_line(
        &mut self,
        name_of: &dyn Fn(u8) -> Option<&'static str>,
        node_pairs: &[(String, u64)],
    ) -> String {
        let mut pairs = vec![
            ("connections_open".to_string(), self.connections_open),
            ("streams_open".to_string(), self.streams_open),
            ("stream_memory_bytes".to_string(), self.stream_memory_bytes),
        ];
        self.interval.write_pairs(name_of, &mut pairs);
        self.interval = Counters::default();
        let mut line = String::with_capacity(64 * pairs.len());
        for (name, value) in pairs.iter().chain(node_pairs) {
            if !line.is_empty() {
                line.push(' ');
            }
            let _ = write!(line, "{name}:{value}");
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(code: u8) -> Option<&'static str> {
        (code == 1).then_some("GetVersion")
    }

    #[test]
    fn requests_land_in_their_latency_bucket_and_interval_resets() {
        let mut stats = ServerStats::default();
        stats.record_request(1, Status::Ok, Duration::from_micros(5));
        stats.record_request(1, Status::BadRequest, Duration::from_micros(500));
        stats.record_request(1, Status::Ok, Duration::from_millis(200));
        let line = stats.take_interval_line(&names, &[("channel/a/records".into(), 7)]);
        assert!(line.contains("request/GetVersion/handled:3"), "{line}");
        assert!(line.contains("request/GetVersion/failed:1"), "{line}");
        assert!(line.contains("request/GetVersion/handled_10us:1"), "{line}");
        assert!(line.contains("request/GetVersion/handled_1ms:1"), "{line}");
        assert!(
            line.contains("request/GetVersion/handled_over_100ms:1"),
            "{line}"
        );
        assert!(line.ends_with("channel/a/records:7"), "{line}");
        let next = stats.take_interval_line(&names, &[]);
        assert!(
            !next.contains("request/GetVersion"),
            "interval counters reset: {next}"
        );
        let total = stats.snapshot(&names);
        assert!(total.contains(&("request/GetVersion/handled".to_string(), 3)));
        let snapshot = stats.metrics_snapshot(&names);
        assert_eq!(snapshot.requests.len(), 1);
        let request = &snapshot.requests[0];
        assert_eq!(request.name, "GetVersion");
        assert_eq!(request.statuses, [(Status::Ok, 2), (Status::BadRequest, 1)]);
        assert_eq!(request.counters.buckets.iter().sum::<u64>(), 3);
        assert_eq!(request.counters.buckets[latency_bucket(5_000)], 1);
        assert_eq!(request.counters.total_ns, 200_505_000);
    }

    #[test]
    fn latency_buckets_take_the_first_bound_at_or_above() {
        assert_eq!(latency_bucket(0), 0);
        assert_eq!(latency_bucket(1_000), 0);
        assert_eq!(latency_bucket(1_001), 1);
        assert_eq!(latency_bucket(10_000_000_000), LATENCY_BOUNDS_NS.len() - 1);
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BOUNDS_NS.len());
        assert!(LATENCY_BOUNDS_NS.windows(2).all(|pair| pair[0] < pair[1]));
        for status in Status::ALL {
            assert!((status as usize) < STATUS_SLOTS, "{status:?}");
        }
    }
}
