//! A node's live counters: connections, traffic, and per request type the number handled, the
//! number that failed and their latency. Kept twice: cumulative since start (GetStats) and for the
//! current interval (one `stats.log` line every `stats_interval_s`, then reset), the way the
//! reference system's stats.log works.

use crate::protocol::Status;
use std::fmt::Write as _;
use std::time::Duration;

/// Upper bounds of the latency buckets: ≤10 µs, ≤100 µs, ≤1 ms, ≤10 ms, ≤100 ms, and above.
pub const LATENCY_BUCKET_BOUNDS_US: [u64; 5] = [10, 100, 1_000, 10_000, 100_000];
pub const LATENCY_BUCKET_NAMES: [&str; 6] = ["10us", "100us", "1ms", "10ms", "100ms", "over_100ms"];

#[derive(Debug, Clone, Copy, Default)]
pub struct RequestCounters {
    pub handled: u64,
    pub failed: u64,
    pub total_us: u64,
    pub max_us: u64,
    pub buckets: [u64; 6],
}

impl RequestCounters {
    fn record(&mut self, failed: bool, elapsed_us: u64) {
        self.handled += 1;
        self.failed += u64::from(failed);
        self.total_us = self.total_us.saturating_add(elapsed_us);
        self.max_us = self.max_us.max(elapsed_us);
        let bucket = LATENCY_BUCKET_BOUNDS_US
            .iter()
            .position(|bound| elapsed_us <= *bound)
            .unwrap_or(LATENCY_BUCKET_BOUNDS_US.len());
        self.buckets[bucket] += 1;
    }

    pub fn mean_us(&self) -> u64 {
        self.total_us.checked_div(self.handled).unwrap_or(0)
    }
}

/// Counters over some span of time.
#[derive(Debug, Clone)]
pub struct Counters {
    pub connections_accepted: u64,
    pub connections_refused: u64,
    pub handshakes_failed: u64,
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
            out.push((format!("{prefix}max_us"), counters.max_us));
            for (bucket, count) in LATENCY_BUCKET_NAMES.iter().zip(counters.buckets) {
                out.push((format!("{prefix}handled_{bucket}"), count));
            }
        }
    }
}

/// The core's statistics: cumulative and current-interval counters, plus gauges.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub total: Counters,
    pub interval: Counters,
    pub connections_open: u64,
    pub streams_open: u64,
}

impl ServerStats {
    pub fn record_request(&mut self, code: u8, status: Status, elapsed: Duration) {
        let elapsed_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let failed = !status.is_success();
        self.total.requests[code as usize].record(failed, elapsed_us);
        self.interval.requests[code as usize].record(failed, elapsed_us);
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
    }
}
