//! Rates from two GetStats answers of one node: requests and errors per second (in all and per
//! request type), traffic, how fast each channel grows, and the p99 of the node's request
//! handling time over the interval between them.
//!
//! GetStats counters are cumulative since the node started (docs/operations.md, "What each
//! log holds"), so a rate is a difference over the time between the two answers. A node that
//! restarted in between (its uptime went back, or a counter did) has no rate for that
//! interval: its new counters start a new baseline. The dashboard's own requests (GetVersion,
//! GetStats, a dht node's GetRedistribution, a logfiles node's GetChannels and GetChannelSize)
//! are taken out of the counts, so an idle cluster shows 0 requests per second; they remain in
//! the latency buckets, where they are a few fast requests per second.
//!
//! Latency comes from the named decade buckets every node reports per request type
//! (`handled_10us` ... `handled_over_100ms`); the p99 is interpolated linearly inside its
//! bucket, as Prometheus's `histogram_quantile` does, and is at best as fine as the buckets.

use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// GetStats' latency bucket names, in order (`request/<Name>/handled_<bucket>`).
pub const BUCKET_NAMES: [&str; 6] = ["10us", "100us", "1ms", "10ms", "100ms", "over_100ms"];
/// Upper bounds of those buckets in microseconds (the last bucket has none).
const BUCKET_BOUNDS_US: [f64; 5] = [10.0, 100.0, 1_000.0, 10_000.0, 100_000.0];

/// One channel's figures on one node; `None` where the node's kind does not report it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChannelFigures {
    pub records: Option<u64>,
    pub bytes: Option<u64>,
    /// logfiles: bucket files.
    pub buckets: Option<u64>,
    /// queue: how full its ring is.
    pub fill_percent: Option<u64>,
}

/// The counters of one GetStats answer that rates are made from.
#[derive(Debug, Clone)]
pub struct Counters {
    pub at: Instant,
    pub uptime_s: Option<u64>,
    /// `request/<Name>/handled` per request name.
    pub handled: BTreeMap<String, u64>,
    pub failed: u64,
    /// Requests per latency bucket ([`BUCKET_NAMES`]), summed over request types.
    pub buckets: [u64; 6],
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub channels: BTreeMap<String, ChannelFigures>,
}

impl Counters {
    /// Reads the counters out of a GetStats answer taken at `at`; per-channel figures from its
    /// `channel/<name>/<figure>` pairs (dht and queue nodes; a logfiles node's come separately).
    pub fn from_stats(stats: &BTreeMap<String, u64>, at: Instant) -> Counters {
        let mut counters = Counters {
            at,
            uptime_s: stats.get("uptime_s").copied(),
            handled: BTreeMap::new(),
            failed: 0,
            buckets: [0; 6],
            bytes_in: stats.get("bytes_in").copied().unwrap_or(0),
            bytes_out: stats.get("bytes_out").copied().unwrap_or(0),
            channels: BTreeMap::new(),
        };
        for (name, &value) in stats {
            if let Some(rest) = name.strip_prefix("request/") {
                counters.add_request_pair(rest, value);
            } else if let Some(rest) = name.strip_prefix("channel/") {
                counters.add_channel_pair(rest, value);
            }
        }
        counters
    }

    fn add_request_pair(&mut self, rest: &str, value: u64) {
        let Some((request, figure)) = rest.rsplit_once('/') else {
            return;
        };
        match figure {
            "handled" => {
                self.handled.insert(request.to_string(), value);
            }
            "failed" => self.failed = self.failed.saturating_add(value),
            _ => {
                let bucket = figure.strip_prefix("handled_");
                if let Some(index) = bucket.and_then(|b| BUCKET_NAMES.iter().position(|n| *n == b))
                {
                    self.buckets[index] = self.buckets[index].saturating_add(value);
                }
            }
        }
    }

    fn add_channel_pair(&mut self, rest: &str, value: u64) {
        let Some((channel, figure)) = rest.rsplit_once('/') else {
            return;
        };
        let entry = self.channels.entry(channel.to_string()).or_default();
        match figure {
            "records" => entry.records = Some(value),
            "bytes" => entry.bytes = Some(value),
            "fill_percent" => entry.fill_percent = Some(value),
            _ => {}
        }
    }
}

/// What happened on one node between two answers, per second.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Rates {
    pub requests_per_s: f64,
    pub errors_per_s: f64,
    pub by_type: BTreeMap<String, f64>,
    pub bytes_in_per_s: f64,
    pub bytes_out_per_s: f64,
    /// p99 of the handling time in µs; `None` when no request was handled.
    pub p99_us: Option<f64>,
    /// Requests per latency bucket over the interval (for a cluster-wide p99).
    #[serde(skip)]
    pub buckets: [u64; 6],
    /// Per channel: records (logfiles: bytes) gained per second; negative when it shrank.
    pub channel_growth_per_s: BTreeMap<String, f64>,
}

/// The rates between `before` and `now`, less `own` (the requests the dashboard itself sent
/// in between, by request name); `None` when no time passed or the node restarted.
pub fn rates(before: &Counters, now: &Counters, own: &BTreeMap<String, u64>) -> Option<Rates> {
    let seconds = now.at.checked_duration_since(before.at)?.as_secs_f64();
    if seconds <= 0.0 || restarted(before, now) {
        return None;
    }
    let per_s = |delta: u64| round(delta as f64 / seconds);
    let mut by_type = BTreeMap::new();
    let mut total = 0u64;
    for (name, &handled) in &now.handled {
        let earlier = before.handled.get(name).copied().unwrap_or(0);
        let ours = own.get(name).copied().unwrap_or(0);
        let delta = handled.saturating_sub(earlier).saturating_sub(ours);
        total += delta;
        if delta > 0 {
            by_type.insert(name.clone(), per_s(delta));
        }
    }
    let mut buckets = [0u64; 6];
    for (slot, (now, before)) in buckets
        .iter_mut()
        .zip(now.buckets.iter().zip(before.buckets))
    {
        *slot = now.saturating_sub(before);
    }
    Some(Rates {
        requests_per_s: per_s(total),
        errors_per_s: per_s(now.failed.saturating_sub(before.failed)),
        by_type,
        bytes_in_per_s: per_s(now.bytes_in.saturating_sub(before.bytes_in)),
        bytes_out_per_s: per_s(now.bytes_out.saturating_sub(before.bytes_out)),
        p99_us: if total > 0 {
            quantile_us(&buckets, 0.99)
        } else {
            None
        },
        buckets,
        channel_growth_per_s: channel_growth(before, now, seconds),
    })
}

/// Whether the node started again between the two answers.
fn restarted(before: &Counters, now: &Counters) -> bool {
    let uptime_back = matches!((before.uptime_s, now.uptime_s), (Some(b), Some(n)) if n < b);
    let counter_back = now.bytes_in < before.bytes_in
        || now.failed < before.failed
        || now
            .handled
            .iter()
            .any(|(name, n)| before.handled.get(name).is_some_and(|b| n < b));
    uptime_back || counter_back
}

fn channel_growth(before: &Counters, now: &Counters, seconds: f64) -> BTreeMap<String, f64> {
    now.channels
        .iter()
        .filter_map(|(name, figures)| {
            let earlier = before.channels.get(name)?;
            // Records where the node counts them; a logfiles node: bytes.
            let (n, b) = match (figures.records, earlier.records) {
                (Some(n), Some(b)) => (n, b),
                _ => (figures.bytes?, earlier.bytes?),
            };
            Some((name.clone(), round((n as f64 - b as f64) / seconds)))
        })
        .collect()
}

/// The `q` quantile (0 < q ≤ 1) of a latency histogram on [`BUCKET_NAMES`], in µs: linear
/// inside the bucket it falls in (from 0 in the first); in the open last bucket, that
/// bucket's lower bound (100 ms: "at least"). `None` for an empty histogram.
pub fn quantile_us(buckets: &[u64; 6], q: f64) -> Option<f64> {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = 0u64;
    for (index, &count) in buckets.iter().enumerate() {
        if count > 0 && (below + count) as f64 >= rank {
            let Some(&upper) = BUCKET_BOUNDS_US.get(index) else {
                return Some(BUCKET_BOUNDS_US[BUCKET_BOUNDS_US.len() - 1]);
            };
            let lower = if index == 0 {
                0.0
            } else {
                BUCKET_BOUNDS_US[index - 1]
            };
            let within = (rank - below as f64) / count as f64;
            return Some(round(lower + (upper - lower) * within));
        }
        below += count;
    }
    Some(BUCKET_BOUNDS_US[BUCKET_BOUNDS_US.len() - 1])
}

/// Two decimals are plenty for a page, and keep the JSON short.
pub fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn stats(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(n, v)| (n.to_string(), *v)).collect()
    }

    #[test]
    fn counters_are_read_from_a_get_stats_answer() {
        let counters = Counters::from_stats(
            &stats(&[
                ("uptime_s", 7),
                ("bytes_in", 100),
                ("request/Put/handled", 5),
                ("request/Put/failed", 1),
                ("request/Put/handled_10us", 3),
                ("request/Put/handled_1ms", 2),
                ("request/Get/handled", 4),
                ("request/Get/handled_10us", 4),
                ("channel/users/records", 9),
                ("channel/users/bytes", 90),
                ("channel/jobs/fill_percent", 12),
            ]),
            Instant::now(),
        );
        assert_eq!(counters.uptime_s, Some(7));
        assert_eq!(counters.handled["Put"], 5);
        assert_eq!(counters.handled["Get"], 4);
        assert_eq!(counters.failed, 1);
        assert_eq!(counters.buckets, [7, 0, 2, 0, 0, 0]);
        assert_eq!(counters.channels["users"].records, Some(9));
        assert_eq!(counters.channels["users"].bytes, Some(90));
        assert_eq!(counters.channels["jobs"].fill_percent, Some(12));
    }

    #[test]
    fn rates_are_differences_per_second_without_the_dashboards_own_requests() {
        let start = Instant::now();
        let before = Counters::from_stats(
            &stats(&[
                ("uptime_s", 10),
                ("request/Put/handled", 100),
                ("request/GetRedistribution/handled", 10),
                ("request/Put/handled_10us", 100),
                ("bytes_in", 1000),
                ("channel/users/records", 50),
            ]),
            start,
        );
        let now = Counters::from_stats(
            &stats(&[
                ("uptime_s", 12),
                ("request/Put/handled", 300),
                ("request/Put/failed", 4),
                ("request/GetRedistribution/handled", 12),
                ("request/Put/handled_10us", 100),
                ("request/Put/handled_100us", 198),
                ("request/Put/handled_1ms", 2),
                ("bytes_in", 5000),
                ("channel/users/records", 250),
            ]),
            start + Duration::from_secs(2),
        );
        let own = BTreeMap::from([("GetRedistribution".to_string(), 2)]);
        let rates = rates(&before, &now, &own).expect("a rate");
        assert_eq!(rates.requests_per_s, 100.0);
        assert_eq!(rates.by_type, BTreeMap::from([("Put".to_string(), 100.0)]));
        assert_eq!(rates.errors_per_s, 2.0);
        assert_eq!(rates.bytes_in_per_s, 2000.0);
        assert_eq!(rates.channel_growth_per_s["users"], 100.0);
        // 200 requests: 198 in (10, 100] µs, 2 in (100, 1000]: the 198th is the p99.
        assert_eq!(rates.p99_us, Some(100.0));
    }

    #[test]
    fn a_restart_or_no_traffic_gives_no_latency_and_a_restart_no_rate() {
        let start = Instant::now();
        let before = Counters::from_stats(
            &stats(&[("uptime_s", 100), ("request/Put/handled", 50)]),
            start,
        );
        let after_restart = Counters::from_stats(
            &stats(&[("uptime_s", 1), ("request/Put/handled", 60)]),
            start + Duration::from_secs(1),
        );
        assert_eq!(rates(&before, &after_restart, &BTreeMap::new()), None);
        let idle = Counters::from_stats(
            &stats(&[("uptime_s", 101), ("request/Put/handled", 50)]),
            start + Duration::from_secs(1),
        );
        let rates = rates(&before, &idle, &BTreeMap::new()).expect("a rate");
        assert_eq!(rates.requests_per_s, 0.0);
        assert_eq!(rates.p99_us, None);
    }

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        assert_eq!(quantile_us(&[0; 6], 0.99), None);
        assert_eq!(quantile_us(&[100, 0, 0, 0, 0, 0], 0.99), Some(9.9));
        assert_eq!(quantile_us(&[0, 0, 100, 0, 0, 0], 0.5), Some(550.0));
        assert_eq!(quantile_us(&[90, 0, 0, 10, 0, 0], 0.99), Some(9_100.0));
        // The open last bucket: "at least 100 ms".
        assert_eq!(quantile_us(&[0, 0, 0, 0, 0, 5], 0.99), Some(100_000.0));
    }
}
