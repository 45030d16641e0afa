//! The upstream concurrency limit: at most `upstream.max_connections` exchanges in flight
//! across all workers, the rest waiting in one FIFO queue (`upstream.max_queue` long, at most
//! `upstream.queue_timeout`), and what cannot wait shed with [`Shed`] (503 from the failure
//! table, never sent upstream). The protection HAProxy gives a server with `maxconn` and
//! `timeout queue`, and Envoy with its circuit breakers.
//!
//! [`Limiter`] is one per process, shared by every worker's upstream client, which takes a place
//! before it sends anything (`client.rs`). Its places are the permits of
//! a tokio `Semaphore`: taking one is a compare-and-swap when one is free, waiting is FIFO, and a
//! waiter whose client goes away drops its acquire future, which leaves the queue at once. A
//! [`Permit`] lives as long as the exchange: the response body holds it until its last byte (or
//! until it is dropped), an upgraded connection until it closes.
//!
//! The limit changes at runtime (a reload, or the adaptive limit of `gradient.rs`) without
//! cutting anything: raising it adds permits; lowering it forgets free permits, and any it could
//! not forget because they were in use become debt, paid by forgetting permits as their
//! exchanges end.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Semaphore;

use super::gradient::Gradient;
use crate::config;
use crate::metrics::Metrics;

/// Why a request was shed at the limit: it was not sent upstream. `failure::classify` reads it
/// as `Failure::Shed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Shed {
    /// `upstream.max_queue` requests were already waiting.
    #[error("the upstream queue is full")]
    QueueFull,
    /// The request waited `upstream.queue_timeout` without getting a place.
    #[error("the request waited in the upstream queue too long")]
    QueueTimeout,
}

/// The process's upstream concurrency limit. See the module docs.
#[derive(Debug)]
pub struct Limiter {
    semaphore: Semaphore,
    state: Mutex<State>,
    /// `State::debt`, readable without the lock: a permit returned while it is 0 (always, unless
    /// the limit was just lowered) goes straight back to the semaphore.
    debt: AtomicUsize,
    /// Whether permits time their exchange for the adaptive limit.
    adaptive: AtomicBool,
    /// `upstream.max_queue` now.
    max_queue: AtomicUsize,
    /// `upstream.queue_timeout` now, in nanoseconds.
    queue_timeout: AtomicU64,
    in_flight: Gauge,
    queue_depth: Gauge,
    limit_gauge: Gauge,
    metrics: Metrics,
}

#[derive(Debug)]
struct State {
    /// Permits the semaphore stands for: in flight + free − debt.
    limit: usize,
    /// Permits in flight that are forgotten instead of returned when their exchange ends.
    debt: usize,
    /// The settings last applied; `None` before the first.
    settings: Option<config::Limit>,
    /// The adaptive limit, when `upstream.adaptive` is on.
    gradient: Option<Gradient>,
}

impl Limiter {
    /// A limiter configured by `cfg`, reporting into `metrics`' `candor_upstream_in_flight`,
    /// `candor_upstream_queue_depth`, `candor_upstream_limit` and
    /// `candor_upstream_queue_seconds`.
    pub fn new(cfg: &config::Limit, metrics: &Metrics) -> Arc<Self> {
        let (in_flight, queue_depth, limit_gauge) = metrics.upstream_limit_gauges();
        let limiter = Arc::new(Limiter {
            semaphore: Semaphore::new(0),
            state: Mutex::new(State {
                limit: 0,
                debt: 0,
                settings: None,
                gradient: None,
            }),
            debt: AtomicUsize::new(0),
            adaptive: AtomicBool::new(false),
            max_queue: AtomicUsize::new(0),
            queue_timeout: AtomicU64::new(0),
            in_flight,
            queue_depth,
            limit_gauge,
            metrics: metrics.clone(),
        });
        limiter.configure(cfg);
        limiter
    }

    /// Applies `cfg` (at start and on every reload; the same settings again change nothing, so
    /// every worker may call it). A lower limit takes effect as exchanges end; switching to
    /// adaptive starts at `min_connections`; new bounds keep a learnt limit, clamped.
    pub fn configure(&self, cfg: &config::Limit) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.settings.as_ref() == Some(cfg) {
            return;
        }
        state.settings = Some(cfg.clone());
        let target = if cfg.adaptive {
            let gradient = state
                .gradient
                .get_or_insert_with(|| Gradient::new(cfg.min_connections, cfg.max_connections));
            gradient.bound(cfg.min_connections, cfg.max_connections);
            gradient.limit()
        } else {
            state.gradient = None;
            cfg.max_connections
        };
        self.adaptive.store(cfg.adaptive, Ordering::Release);
        self.max_queue.store(cfg.max_queue, Ordering::Release);
        let nanos = u64::try_from(cfg.queue_timeout.as_nanos()).unwrap_or(u64::MAX);
        self.queue_timeout.store(nanos, Ordering::Release);
        self.resize(&mut state, target);
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .limit
    }

    /// Sets the limit to `target` permits (under the state lock).
    fn resize(&self, state: &mut State, target: usize) {
        let target = target.clamp(1, Semaphore::MAX_PERMITS);
        if target > state.limit {
            let mut more = target - state.limit;
            let paid = more.min(state.debt);
            state.debt -= paid;
            more -= paid;
            self.semaphore.add_permits(more);
        } else {
            let fewer = state.limit - target;
            let forgotten = self.semaphore.forget_permits(fewer);
            state.debt += fewer - forgotten;
        }
        state.limit = target;
        self.debt.store(state.debt, Ordering::Release);
        self.limit_gauge
            .set(i64::try_from(target).unwrap_or(i64::MAX));
    }

    /// A place at once, if one is free and nobody is queued before this request.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        let permit = self.semaphore.try_acquire().ok()?;
        permit.forget();
        Some(self.permit())
    }

    /// A place after waiting in the queue as `upstream.max_queue` and `upstream.queue_timeout`
    /// say now.
    pub(crate) async fn queue(self: Arc<Self>) -> Result<Permit, Shed> {
        let max_queue = self.max_queue.load(Ordering::Acquire);
        let timeout = Duration::from_nanos(self.queue_timeout.load(Ordering::Acquire));
        self.acquire(max_queue, timeout).await
    }

    /// A place after waiting in the queue: [`Shed::QueueFull`] when `max_queue` already wait,
    /// [`Shed::QueueTimeout`] after `timeout`. Dropping the future leaves the queue.
    async fn acquire(self: Arc<Self>, max_queue: usize, timeout: Duration) -> Result<Permit, Shed> {
        let waiting = self.queue_depth.inc();
        let place = QueuePlace(&self.queue_depth);
        if usize::try_from(waiting).unwrap_or(0) >= max_queue {
            return Err(Shed::QueueFull);
        }
        let start = Instant::now();
        let acquired = tokio::time::timeout(timeout, self.semaphore.acquire()).await;
        drop(place);
        self.metrics.upstream_queue_wait(start.elapsed());
        match acquired {
            Ok(Ok(permit)) => {
                permit.forget();
                Ok(self.permit())
            }
            // The semaphore is never closed; a timeout is the only way not to get a place.
            Ok(Err(_)) | Err(_) => Err(Shed::QueueTimeout),
        }
    }

    fn permit(self: &Arc<Self>) -> Permit {
        self.in_flight.inc();
        Permit {
            limiter: self.clone(),
        }
    }

    /// When an exchange getting its place now starts, if the adaptive limit wants its latency.
    pub(crate) fn clock(&self) -> Option<Instant> {
        self.adaptive.load(Ordering::Relaxed).then(Instant::now)
    }

    /// One exchange of the adaptive limit took `rtt` to its head.
    fn sample(&self, rtt: Duration) {
        let in_flight = usize::try_from(self.in_flight.get()).unwrap_or(0);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let next = match state.gradient.as_mut() {
            Some(gradient) => gradient.sample(rtt, in_flight, Instant::now()),
            None => None,
        };
        if let Some(next) = next.filter(|next| *next != state.limit) {
            self.resize(&mut state, next);
        }
    }

    /// A returned permit pays debt if there is any; `false`: there is none, free it.
    fn pay_debt(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.debt == 0 {
            return false;
        }
        state.debt -= 1;
        self.debt.store(state.debt, Ordering::Release);
        true
    }
}

/// A place in the queue; dropped (the request got a place, gave up or went away), it frees it.
struct QueuePlace<'a>(&'a Gauge);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One exchange's place among `upstream.max_connections`, given back when dropped. One pointer:
/// the response body carries it, and every byte added to a body is copied on each of its moves.
#[derive(Debug)]
pub struct Permit {
    limiter: Arc<Limiter>,
}

impl Permit {
    /// Reports to the adaptive limit an exchange that started at `started` (from
    /// [`Limiter::clock`]) and got its answer now.
    pub(crate) fn sample(&self, started: Option<Instant>) {
        if let Some(started) = started {
            self.limiter.sample(started.elapsed());
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.in_flight.dec();
        if self.limiter.debt.load(Ordering::Acquire) > 0 && self.limiter.pay_debt() {
            return;
        }
        self.limiter.semaphore.add_permits(1);
    }
}

/// The permit of a switched-protocol exchange, in the 101 response's extensions: the proxy front
/// keeps it for as long as the upgraded connection is open.
#[derive(Debug, Clone)]
pub struct UpgradePermit(Arc<Permit>);

impl UpgradePermit {
    /// Wraps `permit` for the response's extensions (which need `Clone`).
    pub(crate) fn new(permit: Permit) -> Self {
        UpgradePermit(Arc::new(permit))
    }

    /// Exchanges the upgraded connection still holds a place for (this one among them).
    pub fn holders(&self) -> usize {
        Arc::strong_count(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    fn settings(max: usize) -> config::Limit {
        config::Limit {
            max_connections: max,
            max_queue: 8,
            queue_timeout: Duration::from_secs(5),
            adaptive: false,
            min_connections: 1,
        }
    }

    fn limiter(max: usize) -> Arc<Limiter> {
        Limiter::new(&settings(max), &Metrics::register(&mut Registry::default()))
    }

    #[test]
    fn places_run_out_at_the_limit_and_come_back() {
        let limiter = limiter(2);
        let a = limiter.try_acquire().expect("first place");
        let _b = limiter.try_acquire().expect("second place");
        assert!(limiter.try_acquire().is_none());
        assert_eq!(limiter.in_flight.get(), 2);
        drop(a);
        assert!(limiter.try_acquire().is_some());
    }

    #[test]
    fn a_lower_limit_applies_as_exchanges_end() {
        let limiter = limiter(3);
        let held: Vec<Permit> = (0..3).filter_map(|_| limiter.try_acquire()).collect();
        assert_eq!(held.len(), 3);
        limiter.configure(&settings(1));
        assert_eq!(limiter.limit(), 1);
        let mut held = held.into_iter();
        drop(held.next());
        assert!(limiter.try_acquire().is_none(), "debt paid first");
        drop(held.next());
        assert!(limiter.try_acquire().is_none(), "still one in flight");
        drop(held.next());
        let only = limiter.try_acquire().expect("the one place");
        assert!(limiter.try_acquire().is_none());
        drop(only);
        limiter.configure(&settings(4));
        let again: Vec<Permit> = (0..5).filter_map(|_| limiter.try_acquire()).collect();
        assert_eq!(again.len(), 4);
    }

    #[test]
    fn raising_the_limit_pays_debt_before_adding_places() {
        let limiter = limiter(4);
        let held: Vec<Permit> = (0..4).filter_map(|_| limiter.try_acquire()).collect();
        limiter.configure(&settings(1));
        limiter.configure(&settings(2));
        drop(held);
        let now: Vec<Permit> = (0..4).filter_map(|_| limiter.try_acquire()).collect();
        assert_eq!(now.len(), 2);
    }

    #[tokio::test]
    async fn a_full_queue_sheds_at_once() {
        let mut cfg = settings(1);
        cfg.max_queue = 1;
        let limiter = Limiter::new(&cfg, &Metrics::register(&mut Registry::default()));
        let _held = limiter.try_acquire().expect("the place");
        let waiting = tokio::spawn(limiter.clone().acquire(1, Duration::from_secs(60)));
        while limiter.queue_depth.get() == 0 {
            tokio::task::yield_now().await;
        }
        let shed = limiter.clone().acquire(1, Duration::from_secs(60)).await;
        assert_eq!(shed.err(), Some(Shed::QueueFull));
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(
            limiter.queue_depth.get(),
            0,
            "the aborted waiter left the queue"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_waits_at_most_the_queue_timeout() {
        let limiter = limiter(1);
        let _held = limiter.try_acquire().expect("the place");
        let shed = limiter.clone().acquire(8, Duration::from_secs(5)).await;
        assert_eq!(shed.err(), Some(Shed::QueueTimeout));
        assert_eq!(limiter.queue_depth.get(), 0);
    }
}
