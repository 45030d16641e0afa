//! The adaptive concurrency limit (`upstream.adaptive = true`): a gradient limiter in the manner
//! of Netflix's concurrency-limits (Gradient2) and Envoy's adaptive concurrency filter, plus a
//! Little's-law ceiling.
//!
//! The limiter sees one thing of the upstream: how long each exchange takes from the moment it
//! gets its place to its response head (the RTT). Samples are gathered in windows of at least
//! [`WINDOW_SAMPLES`] (and at least the current limit) exchanges; when a window closes:
//!
//! ```text
//! rtt       = mean RTT of the window
//! min_rtt   = least window RTT of the last MIN_RTT_WINDOWS windows
//! ratio     = TOLERANCE × min_rtt / rtt
//! gradient  = clamp(ratio, MIN_GRADIENT, 1)
//! grown     = limit × gradient + √limit            (√limit: the queue allowance, the probe)
//! next      = grown                      if grown ≥ limit
//!           = limit + SMOOTHING × (grown − limit)   otherwise
//! if ratio < 1 (congested):  next = min(next, ⌈throughput × min_rtt⌉ + 1)
//! if the window's busiest in-flight count < limit / 2:  next = min(next, limit)
//! limit     = clamp(next, min_connections, max_connections); the permits are ⌊limit⌋
//! ```
//!
//! While the latency stays within [`TOLERANCE`] of its minimum the limit grows by √limit a
//! window; once it rises the gradient shrinks it. The gradient alone settles where √limit
//! equals the shrink, well above an app's real capacity: an upstream that queues internally
//! keeps its latency proportional to the excess, so the gradient never reaches 1/2. Little's
//! law gives the ceiling: an upstream that serves `throughput` exchanges a second in `min_rtt`
//! each is busy with `throughput × min_rtt` of them, so while the latency is
//! up, more than that plus one only wait inside the upstream. For 4 workers of 20 ms (200
//! requests a second) it settles at 5 in the simulation; against real apps, where each
//! exchange also opens a connection, at 7 (README, "Protecting the legacy app"). It cannot
//! settle at exactly 4 without knowing the app:
//! finding the capacity takes probing one past it.
//!
//! The limiter starts at `min_connections` and grows from there, so a fragile app is never hit
//! with a burst while its latency is still unknown. A window in which fewer than half the
//! permits were used is no evidence that more would be served as fast: it may shrink the limit,
//! never grow it. Pure: time comes in as arguments, so it is tested with synthetic samples.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Fewest samples in a window: a mean of fewer is too noisy to steer by.
pub(crate) const WINDOW_SAMPLES: usize = 20;
/// Windows over which the minimum RTT is remembered: at 20 samples a window and 200 exchanges a
/// second, 10 s, so a permanently slower upstream is relearnt within seconds.
pub(crate) const MIN_RTT_WINDOWS: usize = 100;
/// Latency up to this multiple of the minimum counts as uncongested (10 %: window means jitter
/// by a few percent on an idle upstream).
pub(crate) const TOLERANCE: f64 = 1.1;
/// The least gradient: one window at most halves the limit.
pub(crate) const MIN_GRADIENT: f64 = 0.5;
/// The share of a gradient decrease applied per window, so one slow window does not collapse
/// the limit.
pub(crate) const SMOOTHING: f64 = 0.2;

/// The state of the adaptive limit.
#[derive(Debug, Clone)]
pub(crate) struct Gradient {
    limit: f64,
    min: f64,
    max: f64,
    window_start: Option<Instant>,
    samples: usize,
    rtt_sum: Duration,
    busiest: usize,
    /// Mean RTT of the last windows, oldest first.
    recent: VecDeque<Duration>,
}

impl Gradient {
    /// A limiter between `min` and `max` permits, starting at `min`.
    pub(crate) fn new(min: usize, max: usize) -> Self {
        let (min, max) = (min.max(1) as f64, max.max(1) as f64);
        Gradient {
            limit: min,
            min,
            max: max.max(min),
            window_start: None,
            samples: 0,
            rtt_sum: Duration::ZERO,
            busiest: 0,
            recent: VecDeque::with_capacity(MIN_RTT_WINDOWS),
        }
    }

    /// The current limit, in permits.
    pub(crate) fn limit(&self) -> usize {
        self.limit.floor() as usize
    }

    /// New bounds (a reload): the learnt limit is kept, clamped into them.
    pub(crate) fn bound(&mut self, min: usize, max: usize) {
        self.min = min.max(1) as f64;
        self.max = (max.max(1) as f64).max(self.min);
        self.limit = self.limit.clamp(self.min, self.max);
    }

    /// Records one exchange that took `rtt` to its response head, completed at `now` with
    /// `in_flight` exchanges holding permits. Returns the new limit when a window closes.
    pub(crate) fn sample(
        &mut self,
        rtt: Duration,
        in_flight: usize,
        now: Instant,
    ) -> Option<usize> {
        let start = *self.window_start.get_or_insert(now);
        self.samples += 1;
        self.rtt_sum += rtt;
        self.busiest = self.busiest.max(in_flight);
        if self.samples < WINDOW_SAMPLES.max(self.limit()) {
            return None;
        }
        let samples = self.samples;
        let mean = self.rtt_sum / u32::try_from(samples).unwrap_or(u32::MAX);
        let elapsed = now.saturating_duration_since(start).as_secs_f64();
        let busiest = self.busiest;
        self.window_start = Some(now);
        self.samples = 0;
        self.rtt_sum = Duration::ZERO;
        self.busiest = 0;

        if self.recent.len() == MIN_RTT_WINDOWS {
            self.recent.pop_front();
        }
        self.recent.push_back(mean);
        let min_rtt = self.recent.iter().min().copied().unwrap_or(mean);

        let (min_secs, rtt_secs) = (min_rtt.as_secs_f64(), mean.as_secs_f64().max(1e-9));
        let ratio = TOLERANCE * min_secs / rtt_secs;
        let gradient = ratio.clamp(MIN_GRADIENT, 1.0);
        let grown = self.limit * gradient + self.limit.sqrt();
        let mut next = if grown >= self.limit {
            grown
        } else {
            self.limit + SMOOTHING * (grown - self.limit)
        };
        if ratio < 1.0 && elapsed > 0.0 {
            // Little's law: what the upstream is really busy with, plus the one being probed.
            let throughput = samples as f64 / elapsed;
            next = next.min((throughput * min_secs).ceil() + 1.0);
        }
        if (busiest as f64) < self.limit / 2.0 {
            next = next.min(self.limit);
        }
        self.limit = next.clamp(self.min, self.max);
        Some(self.limit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A simulated upstream with `workers` that each take `service` per exchange, queueing the
    /// rest: an exchange among `limit` in flight takes `service × ⌈limit / workers⌉` on average,
    /// and the upstream completes `workers / service` a second.
    fn settle(
        workers: usize,
        service: Duration,
        min: usize,
        max: usize,
        windows: usize,
    ) -> Vec<usize> {
        let mut gradient = Gradient::new(min, max);
        let mut now = Instant::now();
        let mut limits = Vec::new();
        let mut served = 0usize;
        while limits.len() < windows {
            let limit = gradient.limit();
            let in_flight = limit;
            // Mean latency of `in_flight` exchanges over `workers`: the k-th round waits k
            // services.
            let total: usize = (0..in_flight).map(|i| i / workers + 1).sum();
            let rtt =
                service * u32::try_from(total).unwrap_or(1) / u32::try_from(in_flight).unwrap_or(1);
            // Completions arrive at the upstream's rate once it is saturated.
            let rate = (in_flight.min(workers) as f64) / service.as_secs_f64();
            now += Duration::from_secs_f64(1.0 / rate);
            served += 1;
            if let Some(next) = gradient.sample(rtt, in_flight, now) {
                limits.push(next);
            }
        }
        assert!(served > 0);
        limits
    }

    #[test]
    fn four_workers_settle_one_past_their_capacity() {
        let limits = settle(4, Duration::from_millis(20), 1, 1024, 60);
        let tail = &limits[20..];
        assert!(
            tail.iter().all(|&l| l == 5),
            "settled at {tail:?} (all {limits:?})"
        );
    }

    #[test]
    fn a_wide_upstream_lets_the_limit_grow_to_its_capacity() {
        let limits = settle(64, Duration::from_millis(10), 1, 1024, 200);
        let last = *limits.last().expect("windows closed");
        assert!((64..=80).contains(&last), "settled at {last} ({limits:?})");
    }

    #[test]
    fn the_limit_stays_within_its_bounds() {
        let limits = settle(4, Duration::from_millis(20), 8, 12, 40);
        assert!(limits.iter().all(|l| (8..=12).contains(l)), "{limits:?}");
        let limits = settle(64, Duration::from_millis(10), 1, 3, 40);
        assert!(limits.iter().all(|l| (1..=3).contains(l)), "{limits:?}");
    }

    #[test]
    fn an_idle_window_does_not_grow_the_limit() {
        let mut gradient = Gradient::new(10, 100);
        let mut now = Instant::now();
        let mut last = None;
        for _ in 0..WINDOW_SAMPLES * 5 {
            now += Duration::from_millis(10);
            // One exchange at a time: no evidence that ten would be served as fast.
            last = gradient.sample(Duration::from_millis(5), 1, now).or(last);
        }
        assert_eq!(last, Some(10));
    }

    #[test]
    fn rebounding_keeps_the_learnt_limit_inside_the_new_bounds() {
        let mut gradient = Gradient::new(1, 1024);
        gradient.limit = 50.0;
        gradient.bound(1, 20);
        assert_eq!(gradient.limit(), 20);
        gradient.bound(30, 40);
        assert_eq!(gradient.limit(), 30);
    }
}
