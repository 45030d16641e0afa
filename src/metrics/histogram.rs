//! `candor_request_duration_seconds` without a lock: prometheus-client's `Histogram` takes a
//! mutex on every observation, and every request observes one. Fixed buckets of atomic counters
//! and a sum in whole nanoseconds make an observation two relaxed atomic adds.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

/// A histogram of durations with fixed upper bounds (seconds). Cheap to clone; clones observe
/// into the same buckets.
#[derive(Debug, Clone)]
pub(crate) struct DurationHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Finite upper bounds, ascending.
    bounds: Box<[f64]>,
    /// One count per bound, then the `+Inf` bucket; not cumulative.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    /// A histogram with the finite, ascending upper `bounds` (seconds) and `+Inf`.
    pub(crate) fn new(bounds: &[f64]) -> Self {
        let bounds: Box<[f64]> = bounds.iter().copied().filter(|b| b.is_finite()).collect();
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        DurationHistogram {
            inner: Arc::new(Inner {
                bounds,
                counts,
                sum_nanos: AtomicU64::new(0),
            }),
        }
    }

    /// Counts one duration.
    pub(crate) fn observe(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        // Prometheus buckets are inclusive (`le`): the first bound not below the value.
        let index = self.inner.bounds.partition_point(|bound| *bound < secs);
        if let Some(count) = self.inner.counts.get(index) {
            count.fetch_add(1, Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.inner.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// Per-bucket counts (upper bound, count), the `+Inf` bucket last; count and sum are read
    /// after the buckets, so a scrape never shows fewer observations than its buckets hold.
    fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let buckets: Vec<(f64, u64)> = self
            .inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.inner.counts.iter())
            .map(|(bound, count)| (bound, count.load(Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = self.inner.sum_nanos.load(Relaxed) as f64 / 1e9;
        (buckets, count, sum)
    }
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (buckets, count, sum) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::histogram::Histogram;
    use prometheus_client::registry::Registry;

    fn text(metric: impl EncodeMetric + Send + Sync + std::fmt::Debug + 'static) -> String {
        let mut registry = Registry::default();
        registry.register("d", "durations", metric);
        let mut out = String::new();
        encode(&mut out, &registry).unwrap();
        out
    }

    /// The same observations give the same exposition as prometheus-client's own histogram,
    /// boundary values included (a value equal to a bound falls in that bucket).
    #[test]
    fn encodes_like_prometheus_client() {
        let bounds = [0.001, 0.01, 0.1, 1.0];
        let ours = DurationHistogram::new(&bounds);
        let theirs = Histogram::new(bounds);
        for ms in [0u64, 1, 5, 10, 10, 99, 100, 1000, 2500, 60_000] {
            let d = Duration::from_millis(ms);
            ours.observe(d);
            theirs.observe(d.as_secs_f64());
        }
        assert_eq!(text(ours), text(theirs));
    }
}
