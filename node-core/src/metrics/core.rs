//! The metrics every node exposes from its event loop's counters ([`CoreSnapshot`]): requests by
//! type and status, errors by type, request latency histograms by type, bytes in and out,
//! connections open, accepted and refused, handshake and protocol errors, open streams.

use super::{Families, HistogramValue};
use crate::stats::{CoreSnapshot, LatencyHistogram, LATENCY_BOUNDS_NS};
use std::sync::OnceLock;

/// [`LATENCY_BOUNDS_NS`] in seconds, the unit of the latency histograms.
pub fn latency_bounds_s() -> &'static [f64] {
    static BOUNDS: OnceLock<Vec<f64>> = OnceLock::new();
    BOUNDS.get_or_init(|| {
        LATENCY_BOUNDS_NS
            .iter()
            .map(|ns| *ns as f64 / 1e9)
            .collect()
    })
}

/// A status's label value: its name in docs/protocol.md's table, in snake case.
pub fn status_label(status: crate::protocol::Status) -> String {
    format!("{status:?}")
        .chars()
        .enumerate()
        .flat_map(|(index, c)| {
            let underscore = (index > 0 && c.is_ascii_uppercase()).then_some('_');
            underscore
                .into_iter()
                .chain(std::iter::once(c.to_ascii_lowercase()))
        })
        .collect()
}

/// Adds a histogram of timings in seconds.
pub fn add_latency(
    out: &mut Families,
    name: &str,
    help: &str,
    labels: &[(&str, &str)],
    histogram: &LatencyHistogram,
) {
    let value = HistogramValue {
        bounds: latency_bounds_s(),
        counts: &histogram.buckets,
        sum: histogram.total_ns as f64 / 1e9,
    };
    out.histogram(name, help, labels, value);
}

/// Adds the core's metrics from `snapshot`.
pub fn add_core(snapshot: &CoreSnapshot, out: &mut Families) {
    out.counters(&[
        (
            "swarm_connections_accepted_total",
            "Connections accepted since start.",
            snapshot.connections_accepted,
        ),
        (
            "swarm_connections_refused_total",
            "Connections refused since start (connection limit, shutting down).",
            snapshot.connections_refused,
        ),
        (
            "swarm_handshakes_failed_total",
            "Connections whose handshake failed (bad hello, wrong kind or version, authentication).",
            snapshot.handshakes_failed,
        ),
        (
            "swarm_tls_handshakes_deferred_total",
            "TLS handshakes that waited for a later event-loop pass (server.tls_handshakes_per_pass).",
            snapshot.tls_handshakes_deferred,
        ),
        (
            "swarm_protocol_errors_total",
            "Connections closed for a malformed frame.",
            snapshot.protocol_errors,
        ),
        (
            "swarm_received_bytes_total",
            "Bytes read from client connections.",
            snapshot.bytes_in,
        ),
        (
            "swarm_sent_bytes_total",
            "Bytes written to client connections.",
            snapshot.bytes_out,
        ),
    ]);
    out.gauge(
        "swarm_connections_open",
        "Client connections open now.",
        &[],
        snapshot.connections_open as f64,
    );
    out.gauge(
        "swarm_streams_open",
        "Streams (GetAll, Listen, Consume, ...) running now.",
        &[],
        snapshot.streams_open as f64,
    );
    out.gauge(
        "swarm_stream_memory_bytes",
        "Memory the running streams hold between their items (server.max_stream_memory_bytes \
         bounds it).",
        &[],
        snapshot.stream_memory_bytes as f64,
    );
    for request in &snapshot.requests {
        add_request(request, out);
    }
}

fn add_request(request: &crate::stats::RequestSnapshot, out: &mut Families) {
    let labels = [("type", request.name)];
    for (status, count) in &request.statuses {
        let status = status_label(*status);
        out.counter(
            "swarm_requests_total",
            "Requests answered, by request type and reply status (a stream counts when it starts).",
            &[("type", request.name), ("status", &status)],
            *count as f64,
        );
    }
    out.counter(
        "swarm_request_errors_total",
        "Requests answered with a failure status (not ok, not not_found), by request type.",
        &labels,
        request.counters.failed as f64,
    );
    let value = HistogramValue {
        bounds: latency_bounds_s(),
        counts: &request.counters.buckets,
        sum: request.counters.total_ns as f64 / 1e9,
    };
    out.histogram(
        "swarm_request_duration_seconds",
        "Time the event loop spent handling a request, by request type.",
        &labels,
        value,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Status;

    #[test]
    fn status_labels_are_snake_case() {
        assert_eq!(status_label(Status::Ok), "ok");
        assert_eq!(status_label(Status::NotFound), "not_found");
        assert_eq!(status_label(Status::TooManyRequests), "too_many_requests");
    }
}
