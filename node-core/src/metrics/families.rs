//! [`Families`]: the metrics of one scrape, gathered by name (counters, gauges and histograms
//! with their labels) and rendered in the Prometheus text exposition format (version 0.0.4) by
//! the `prometheus` crate's encoder. Nodes add their own metrics through
//! [`Service::metrics`](crate::server::Service::metrics); nothing here formats text by hand.

use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};
use prometheus::{Encoder, TextEncoder};

/// The content type of what [`Families::render`] returns.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// A histogram's state: per-bucket counts (not cumulative) for `bounds` and one more bucket for
/// everything above the last bound, and the sum of the observed values. Units are the metric's
/// (seconds for durations).
#[derive(Debug, Clone, Copy)]
pub struct HistogramValue<'a> {
    pub bounds: &'a [f64],
    pub counts: &'a [u64],
    pub sum: f64,
}

/// The metric families of one scrape, in the order they were first added.
#[derive(Debug, Default)]
pub struct Families {
    families: Vec<MetricFamily>,
}

impl Families {
    /// A monotonic counter (its name should end in `_total`).
    pub fn counter(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let mut counter = Counter::default();
        counter.set_value(value);
        let mut metric = metric_with(labels);
        metric.set_counter(counter);
        self.add(name, help, MetricType::COUNTER, metric);
    }

    /// A value that goes up and down.
    pub fn gauge(&mut self, name: &str, help: &str, labels: &[(&str, &str)], value: f64) {
        let mut gauge = Gauge::default();
        gauge.set_value(value);
        let mut metric = metric_with(labels);
        metric.set_gauge(gauge);
        self.add(name, help, MetricType::GAUGE, metric);
    }

    /// Unlabelled counters, each `(name, help, value)`.
    pub fn counters(&mut self, metrics: &[(&str, &str, u64)]) {
        for (name, help, value) in metrics {
            self.counter(name, help, &[], *value as f64);
        }
    }

    /// Unlabelled gauges, each `(name, help, value)`.
    pub fn gauges(&mut self, metrics: &[(&str, &str, u64)]) {
        for (name, help, value) in metrics {
            self.gauge(name, help, &[], *value as f64);
        }
    }

    /// A histogram, written with cumulative `le` buckets, `_sum` and `_count`.
    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[(&str, &str)],
        value: HistogramValue<'_>,
    ) {
        debug_assert_eq!(value.counts.len(), value.bounds.len() + 1);
        let mut cumulative = 0u64;
        let buckets = value
            .bounds
            .iter()
            .zip(value.counts)
            .map(|(bound, count)| {
                cumulative += count;
                let mut bucket = Bucket::default();
                bucket.set_upper_bound(*bound);
                bucket.set_cumulative_count(cumulative);
                bucket
            })
            .collect();
        let mut histogram = Histogram::default();
        histogram.set_bucket(buckets);
        histogram.set_sample_count(value.counts.iter().sum());
        histogram.set_sample_sum(value.sum);
        let mut metric = metric_with(labels);
        metric.set_histogram(histogram);
        self.add(name, help, MetricType::HISTOGRAM, metric);
    }

    /// The family named `name`, created on first use. Adding a sample of another type to an
    /// existing family is a programming error (debug assertion); the sample keeps the family's
    /// first type.
    fn add(&mut self, name: &str, help: &str, kind: MetricType, metric: Metric) {
        if let Some(family) = self.families.iter_mut().find(|f| f.name() == name) {
            debug_assert_eq!(family.get_field_type(), kind, "metric {name}");
            family.mut_metric().push(metric);
            return;
        }
        let mut family = MetricFamily::default();
        family.set_name(name.to_string());
        family.set_help(help.to_string());
        family.set_field_type(kind);
        family.set_metric(vec![metric]);
        self.families.push(family);
    }

    /// Adds every sample of `other`.
    pub fn extend(&mut self, other: &Families) {
        for family in &other.families {
            for metric in family.get_metric() {
                self.add(
                    family.name(),
                    family.help(),
                    family.get_field_type(),
                    metric.clone(),
                );
            }
        }
    }

    /// Whether a family of that name was added.
    pub fn contains(&self, name: &str) -> bool {
        self.families.iter().any(|f| f.name() == name)
    }

    /// The exposition text.
    pub fn render(&self) -> Result<Vec<u8>, String> {
        let mut out = Vec::with_capacity(4096 + 160 * self.families.len());
        TextEncoder::new()
            .encode(&self.families, &mut out)
            .map_err(|err| format!("cannot encode the metrics: {err}"))?;
        Ok(out)
    }
}

fn metric_with(labels: &[(&str, &str)]) -> Metric {
    let pairs = labels
        .iter()
        .map(|(name, value)| {
            let mut pair = LabelPair::default();
            pair.set_name(name.to_string());
            pair.set_value(value.to_string());
            pair
        })
        .collect();
    let mut metric = Metric::default();
    metric.set_label(pairs);
    metric
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_render_as_prometheus_text() {
        let mut families = Families::default();
        families.counter("x_total", "Things.", &[("type", "Put")], 3.0);
        families.gauge("y_bytes", "Size.", &[], 7.0);
        families.counter("x_total", "Things.", &[("type", "Get")], 4.0);
        let value = HistogramValue {
            bounds: &[0.001, 0.01],
            counts: &[2, 1, 1],
            sum: 0.5,
        };
        families.histogram("z_seconds", "Latency.", &[("type", "Put")], value);
        let text = String::from_utf8(families.render().expect("render")).expect("utf-8");
        assert!(
            text.contains(
                "# TYPE x_total counter\nx_total{type=\"Put\"} 3\nx_total{type=\"Get\"} 4\n"
            ),
            "{text}"
        );
        assert!(text.contains("y_bytes 7\n"), "{text}");
        assert!(
            text.contains("z_seconds_bucket{type=\"Put\",le=\"0.001\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("z_seconds_bucket{type=\"Put\",le=\"0.01\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("z_seconds_bucket{type=\"Put\",le=\"+Inf\"} 4\n"),
            "{text}"
        );
        assert!(text.contains("z_seconds_count{type=\"Put\"} 4\n"), "{text}");
        assert!(families.contains("y_bytes") && !families.contains("nope"));
    }

    #[test]
    fn label_values_are_escaped() {
        let mut families = Families::default();
        families.gauge("g", "G.", &[("channel", "a\"b\\c\nd")], 1.0);
        let text = String::from_utf8(families.render().expect("render")).expect("utf-8");
        assert!(text.contains(r#"g{channel="a\"b\\c\nd"} 1"#), "{text}");
    }
}
