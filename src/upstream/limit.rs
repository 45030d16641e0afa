//! The upstream concurrency limit: at most `upstream.max_connections` exchanges in flight
//! across all workers, the rest waiting in one FIFO queue (`upstream.max_queue` long, at most
//! `upstream.queue_timeout`), and what cannot wait shed with [`Shed`] (503 from the failure
//! table, never sent upstream). The protection HAProxy gives a server with `maxconn` and
//! `timeout queue`, and Envoy with its circuit breakers.
//!
//! [`Limiter`] is one per process, shared by every worker's upstream client, which takes a place
//! before it sends anything (`client.rs`). The places are one atomic count: while nobody waits,
//! taking one is a compare-and-swap and giving it back a subtraction, so a limit far away costs
//! the fast path a few instructions (a semaphore's release took a lock on every request). Those
//! who find no place wait on a tokio `Semaphore`, which is FIFO and whose acquire future, dropped
//! when the client goes away, leaves the queue at once; while anyone waits, an exchange that ends
//! hands its place over through the semaphore instead of giving it back, so a newcomer cannot
//! overtake the queue. A [`Permit`] lives as long as the exchange: the response body holds it
//! until its last byte (or until it is dropped), an upgraded connection until it closes.
//!
//! The limit changes at runtime (a reload, or the adaptive limit of `gradient.rs`) without
//! cutting anything: raising it hands the new places to waiters; lowering it only stops new
//! exchanges until enough have ended (an exchange ending above the limit gives its place back
//! instead of handing it over).
//!
//! A place handed over just as its waiter found one on its own stays in the semaphore, still
//! counted: the next request to queue takes it at once. So a place is never lost, and the count
//! never passes the limit.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
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
    /// Places handed over to waiters (and the rare stranded one); never closed.
    handoff: Semaphore,
    /// The limit now.
    limit: AtomicUsize,
    state: Mutex<State>,
    /// Whether exchanges are timed for the adaptive limit.
    adaptive: AtomicBool,
    /// `upstream.max_queue` now.
    max_queue: AtomicUsize,
    /// `upstream.queue_timeout` now, in nanoseconds.
    queue_timeout: AtomicU64,
    /// `candor_upstream_in_flight`: the places taken (handed-over ones included). Its atomic
    /// is the count itself.
    in_flight: Gauge,
    /// `candor_upstream_queue_depth`: requests waiting. Its atomic is the count itself.
    queue_depth: Gauge,
    limit_gauge: Gauge,
    metrics: Metrics,
}

#[derive(Debug)]
struct State {
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
            handoff: Semaphore::new(0),
            limit: AtomicUsize::new(0),
            state: Mutex::new(State {
                settings: None,
                gradient: None,
            }),
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
        self.resize(target);
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Acquire)
    }

    fn taken(&self) -> &AtomicI64 {
        self.in_flight.inner()
    }

    fn waiting(&self) -> &AtomicI64 {
        self.queue_depth.inner()
    }

    /// Sets the limit to `target` (under the state lock): places it adds go to waiters first.
    fn resize(&self, target: usize) {
        let target = target.clamp(1, Semaphore::MAX_PERMITS);
        let before = self.limit.swap(target, Ordering::SeqCst);
        self.limit_gauge
            .set(i64::try_from(target).unwrap_or(i64::MAX));
        for _ in before..target {
            if self.waiting().load(Ordering::SeqCst) <= 0 || !self.take() {
                break;
            }
            self.handoff.add_permits(1);
        }
    }

    /// Takes a place if one is free under the limit.
    fn take(&self) -> bool {
        let limit = i64::try_from(self.limit.load(Ordering::SeqCst)).unwrap_or(i64::MAX);
        self.taken()
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |taken| {
                (taken < limit).then_some(taken + 1)
            })
            .is_ok()
    }

    /// A place at once, if one is free and nobody is queued before this request.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<Permit> {
        if self.waiting().load(Ordering::SeqCst) > 0 || !self.take() {
            return None;
        }
        Some(Permit {
            limiter: self.clone(),
        })
    }

    /// Gives a place back: to the first waiter if there is one and the limit allows, else to
    /// the count.
    fn release(&self) {
        let limit = i64::try_from(self.limit.load(Ordering::SeqCst)).unwrap_or(i64::MAX);
        if self.waiting().load(Ordering::SeqCst) > 0 && self.taken().load(Ordering::SeqCst) <= limit
        {
            self.handoff.add_permits(1);
            // Its waiter may have gone meanwhile.
            if self.waiting().load(Ordering::SeqCst) <= 0 {
                self.reclaim();
            }
            return;
        }
        self.taken().fetch_sub(1, Ordering::SeqCst);
        // A request may have started to queue between the two looks: if it still waits, it is
        // given a place now, or it could wait for one that is free.
        self.feed();
    }

    /// Hands free places to waiters that no handed-over place covers yet.
    fn feed(&self) {
        while self.waiting().load(Ordering::SeqCst)
            > i64::try_from(self.handoff.available_permits()).unwrap_or(i64::MAX)
            && self.take()
        {
            self.handoff.add_permits(1);
        }
    }

    /// With nobody waiting, places left in the semaphore (handed over to a waiter that found
    /// one on its own, timed out or went away) go back to the count, so the fast path can take
    /// them and `candor_upstream_in_flight` counts only real exchanges; then anyone who started
    /// to wait meanwhile is fed.
    fn reclaim(&self) {
        while self.waiting().load(Ordering::SeqCst) <= 0 {
            match self.handoff.try_acquire() {
                Ok(handed) => {
                    handed.forget();
                    self.taken().fetch_sub(1, Ordering::SeqCst);
                }
                Err(_) => break,
            }
        }
        self.feed();
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
        let waiting = self.waiting().fetch_add(1, Ordering::SeqCst);
        let place = QueuePlace(&self);
        if usize::try_from(waiting).unwrap_or(0) >= max_queue {
            return Err(Shed::QueueFull);
        }
        // A place may have come free since the fast path looked (and nobody was handed it).
        if self.handoff.available_permits() == 0 && self.take() {
            drop(place);
            return Ok(Permit {
                limiter: self.clone(),
            });
        }
        let start = Instant::now();
        let acquired = tokio::time::timeout(timeout, self.handoff.acquire()).await;
        drop(place);
        self.metrics.upstream_queue_wait(start.elapsed());
        match acquired {
            Ok(Ok(handed)) => {
                // The place it stands for is already counted.
                handed.forget();
                Ok(Permit {
                    limiter: self.clone(),
                })
            }
            // The semaphore is never closed; a timeout is the only way not to get a place.
            Ok(Err(_)) | Err(_) => Err(Shed::QueueTimeout),
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
        if let Some(next) = next.filter(|next| *next != self.limit()) {
            self.resize(next);
        }
    }
}

/// A place in the queue; dropped (the request got a place, gave up or went away), it frees it,
/// and the last to leave takes back any place still waiting in the semaphore.
struct QueuePlace<'a>(&'a Limiter);

impl Drop for QueuePlace<'_> {
    fn drop(&mut self) {
        if self.0.waiting().fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.reclaim();
        }
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
        self.limiter.release();
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
        assert!(limiter.try_acquire().is_none(), "still over the new limit");
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
    fn lowering_then_raising_settles_at_the_last_limit() {
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
