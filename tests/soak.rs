//! Soak with integrity (catalogue rows L7 and L8: the integrity soak and the faulty soak): the
//! built `candor` binary with the example config in front of a scriptable origin, 64 keep-alive
//! client connections, bodies of every size the soak draws (0 B to 8 MiB) in `Content-Length`,
//! chunked and close-delimited framing, JSON, text, HTML and binary, some of them rewritten by
//! the rules. Every pass-through body is checked against `X-Body-SHA256` and the digest the
//! client expects; every rewrite against the problem document it must be; every exchange has a
//! deadline.
//!
//! The faulty soak adds 2 % resets (before the head, mid-head, mid-body), 1 % stalls (before the
//! head and mid-body) and about 1 % refused connections. Its oracle: every faulty exchange is
//! seen by the client as no answer, a 502/504, or a body cut short on a closed connection, never
//! as a complete answer; a clean exchange may only fail as a 502 for a request that never
//! reached the origin (refused); nothing hangs.
//!
//! Sizes: CI runs 50,000 clean and 50,000 faulty exchanges (an optimised build; `cargo test`'s
//! debug build runs 5,000 and 3,000 as a smoke test). `CANDOR_SOAK=full` runs 200,000 clean and
//! 1,000,000 faulty ones (`CANDOR_SOAK_CLEAN`, `CANDOR_SOAK_FAULTY`
//! set other counts). `CANDOR_SOAK_SEED` picks the seed (printed with every run) and
//! `CANDOR_SOAK_IDS=3,17` replays single exchanges of it, one connection, to reproduce a failure:
//!
//! ```sh
//! cargo test --release --test soak -- --nocapture
//! CANDOR_SOAK=full cargo test --release --test soak -- --nocapture --test-threads 1
//! ```

#[path = "it/harness/mod.rs"]
mod harness;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::load::client::{self, Plan, Verdict};
use harness::load::origin::Origin;
use harness::load::spec::{Exchange, FaultMix, L};
use harness::CandorProcess;

/// One soak at a time: they would share the two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DEFAULT_SEED: u64 = 0x5eed_ca4d;
/// The faulty soaks draw from `CANDOR_SOAK_SEED ^ FAULTY_SEED`.
const FAULTY_SEED: u64 = 0xfa17;

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let value = value.trim();
    match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => value.parse().ok(),
    }
}

fn full() -> bool {
    std::env::var("CANDOR_SOAK").is_ok_and(|v| v == "full")
}

fn seed() -> u64 {
    env_u64("CANDOR_SOAK_SEED").unwrap_or(DEFAULT_SEED)
}

fn replay_ids() -> Option<Vec<u64>> {
    let ids = std::env::var("CANDOR_SOAK_IDS").ok()?;
    Some(
        ids.split(',')
            .map(|id| id.trim().parse().expect("CANDOR_SOAK_IDS is a list of ids"))
            .collect(),
    )
}

/// Runs one soak against a fresh origin and candor and checks everything but the verdicts'
/// meaning, which the caller asserts.
async fn soak(
    name: &str,
    mut plan: Plan,
    upstream_timeout: &str,
    extra_env: &[(&str, &str)],
) -> Arc<client::Tally> {
    let _serial = SERIAL.lock().await;
    let ids = replay_ids();
    if let Some(ids) = &ids {
        plan.connections = 1;
        plan.refusals = 0;
        plan.ids = Some(ids.clone());
    }
    let capacity = ids
        .as_ref()
        .and_then(|ids| ids.iter().max().map(|m| m + 1))
        .unwrap_or(plan.requests);
    let origin = Arc::new(Origin::start(capacity, 100).await);
    let mut env = vec![
        ("CANDOR__SERVER__LISTEN", "127.0.0.1:0".to_string()),
        ("CANDOR__SERVER__ADMIN_LISTEN", "127.0.0.1:0".to_string()),
        ("CANDOR__UPSTREAM__URL", origin.url()),
        ("CANDOR__UPSTREAM__TIMEOUT", upstream_timeout.to_string()),
        ("CANDOR__UPSTREAM__POOL_IDLE_TIMEOUT", "1s".to_string()),
    ];
    env.extend(extra_env.iter().map(|(k, v)| (*k, v.to_string())));
    let mut candor = CandorProcess::start(&format!("soak-{name}"), "config/candor.toml", &env);
    let fds_before = candor.open_fds();
    let rss_before = candor.rss_kib();
    eprintln!(
        "{name} soak: CANDOR_SOAK_SEED={:#x}, {} exchanges over {} connections, L = {L}, candor pid {}, log {}",
        seed(),
        plan.ids.as_ref().map_or(plan.requests, |ids| ids.len() as u64),
        plan.connections,
        candor.pid(),
        candor.log.display()
    );

    // RSS every second: a leak shows as growth from one third of the run to the next.
    let pid = candor.pid();
    let samples = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = samples.clone();
    let sampler = tokio::spawn(async move {
        loop {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            {
                sink.lock().unwrap().push(kib);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });

    let started = Instant::now();
    let tally = client::run(candor.addr, origin.clone(), plan.clone()).await;
    let elapsed = started.elapsed();
    sampler.abort();
    // Median and highest RSS of each third of the run: the median shows a trend, the highest
    // depends on how many large bodies happened to be in flight at once.
    let thirds = {
        let samples = samples.lock().unwrap();
        let third = samples.len().div_ceil(3).max(1);
        samples
            .chunks(third)
            .map(|c| {
                let mut c = c.to_vec();
                c.sort_unstable();
                format!("{}/{}", c[c.len() / 2], c[c.len() - 1])
            })
            .collect::<Vec<_>>()
            .join(", ")
    };

    // Every connection the soak opened must close again: the client's are gone, the pool's
    // idle ones are reaped after `pool_idle_timeout`, the stalled ones were given up.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut fds_after = candor.open_fds();
    while fds_after > fds_before + 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        fds_after = candor.open_fds();
    }

    let stats = origin.stats();
    let completed = tally.completed.load(Ordering::Relaxed);
    let bytes = tally.body_bytes.load(Ordering::Relaxed);
    let (p50, p99, max) = tally.latency_ms();
    let faulty = tally.faulty("reset") + tally.faulty("stall-head") + tally.faulty("stall-body");
    eprintln!(
        "{name} soak: {completed} exchanges in {:.1} s ({:.0}/s), {:.0} MiB of bodies received \
         ({:.0} MiB/s); latency p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.0} ms\n\
         faulty exchanges drawn: {faulty} (resets {}, stalls before the head {}, stalls mid-body \
         {}); the origin reset {} and stalled {}, closed its listener {} times, closed {} \
         connections at its keep-alive limit; {} connections, {} requests, {} duplicates\n\
         candor's own answers (status, Proxy-Status): {}\n\
         verdicts:\n{}\
         candor: RSS {} KiB at start, median/highest per third of the run {} KiB, {} KiB at the end, \
         peak {} KiB; descriptors {} before, {} after",
        elapsed.as_secs_f64(),
        completed as f64 / elapsed.as_secs_f64(),
        bytes as f64 / 1048576.0,
        bytes as f64 / 1048576.0 / elapsed.as_secs_f64(),
        tally.faulty("reset"),
        tally.faulty("stall-head"),
        tally.faulty("stall-body"),
        stats.resets.load(Ordering::Relaxed),
        stats.stalls.load(Ordering::Relaxed),
        stats.refusal_windows.load(Ordering::Relaxed),
        stats.keepalive_limits.load(Ordering::Relaxed),
        stats.connections.load(Ordering::Relaxed),
        stats.requests.load(Ordering::Relaxed),
        stats.duplicates.load(Ordering::Relaxed),
        tally.proxy_statuses(),
        tally.summary(),
        rss_before,
        thirds,
        candor.rss_kib(),
        candor.peak_rss_kib(),
        fds_before,
        fds_after,
    );
    let failures = tally.first_failures();
    assert!(
        failures.is_empty(),
        "{} failing exchanges (CANDOR_SOAK_SEED={:#x}); the first ones:\n{}\n\
         candor's last log lines:\n{}\n\
         replay one with: CANDOR_SOAK_SEED={:#x} CANDOR_SOAK_IDS=<id> cargo test --test soak \
         {name} -- --include-ignored --nocapture",
        tally.failures(),
        seed(),
        failures.join("\n"),
        candor.log_tail(),
        seed(),
    );
    assert!(candor.running(), "candor exited during the soak");
    assert_eq!(
        stats.duplicates.load(Ordering::Relaxed),
        0,
        "an exchange reached the origin twice"
    );
    assert!(
        fds_after <= fds_before + 2,
        "candor holds {fds_after} descriptors after the soak, {fds_before} before"
    );
    tally
}

/// candor's setting that ends a response body stalled mid-way: with it half the faulty soak's
/// stalls come mid-body, and `mid_body_stalls_end_visibly` runs.
const BODY_IDLE_TIMEOUT: Option<(&str, &str)> = Some(("CANDOR__UPSTREAM__BODY_IDLE_TIMEOUT", "2s"));

/// Counts, timeouts and deadlines for this build: debug builds run a smoke test with hyper's
/// debug assertions on (they catch misuse of its API that an optimised build lets through);
/// release builds run the CI sizes.
struct Sizes {
    clean: u64,
    faulty: u64,
    upstream_timeout: &'static str,
    deadline: Duration,
}

fn sizes() -> Sizes {
    let (clean, faulty) = match (full(), cfg!(debug_assertions)) {
        (true, _) => (200_000, 1_000_000),
        (false, false) => (50_000, 50_000),
        (false, true) => (5_000, 3_000),
    };
    Sizes {
        clean: env_u64("CANDOR_SOAK_CLEAN").unwrap_or(clean),
        faulty: env_u64("CANDOR_SOAK_FAULTY").unwrap_or(faulty),
        // Well above the slowest clean exchange's head on two busy cores (debug p99 of a whole
        // exchange: ~2.6 s), so that only a stalled upstream reaches it.
        upstream_timeout: if cfg!(debug_assertions) { "5s" } else { "2s" },
        deadline: Duration::from_secs(if cfg!(debug_assertions) { 30 } else { 10 }),
    }
}

fn faulty_mix(body_stalls: bool) -> FaultMix {
    if body_stalls {
        FaultMix {
            resets: 200,
            stalls_head: 50,
            stalls_body: 50,
        }
    } else {
        FaultMix {
            resets: 200,
            stalls_head: 100,
            stalls_body: 0,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_soak_delivers_every_body_intact() {
    let sizes = sizes();
    let plan = Plan {
        seed: seed(),
        requests: sizes.clean,
        connections: 64,
        faults: FaultMix::NONE,
        refusals: 0,
        deadline: sizes.deadline,
        ids: None,
        reconnect_every: env_u64("CANDOR_SOAK_RECONNECT_EVERY"),
    };
    // Nothing stalls here: a generous timeout, so that a slow debug build cannot turn a late
    // head into a 504.
    let tally = soak("clean", plan, "30s", &[]).await;
    let ok = tally.count(Verdict::Ok);
    assert_eq!(ok, tally.completed.load(Ordering::Relaxed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faulty_soak_never_passes_a_failure_off_as_a_success() {
    let sizes = sizes();
    let plan = Plan {
        seed: seed() ^ FAULTY_SEED,
        requests: sizes.faulty,
        connections: 64,
        faults: faulty_mix(BODY_IDLE_TIMEOUT.is_some()),
        refusals: 100,
        deadline: sizes.deadline,
        ids: None,
        reconnect_every: env_u64("CANDOR_SOAK_RECONNECT_EVERY"),
    };
    let extra: Vec<_> = BODY_IDLE_TIMEOUT.into_iter().collect();
    let tally = soak("faulty", plan, sizes.upstream_timeout, &extra).await;
    if replay_ids().is_none() {
        // The faults really happened.
        let families: &[&str] = if BODY_IDLE_TIMEOUT.is_some() {
            &["reset", "stall-head", "stall-body"]
        } else {
            &["reset", "stall-head"]
        };
        for family in families {
            assert!(tally.faulty(family) > 0, "no {family} fault was drawn");
        }
        assert!(
            tally.count(Verdict::Refused) > 0,
            "no connection was refused"
        );
    }
}

/// A stall mid-body must end visibly too: a 502/504 when candor was reading the body for the
/// rules, a body cut short on a closed connection when it was streaming it
/// (`upstream.body_idle_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mid_body_stalls_end_visibly() {
    let sizes = sizes();
    let plan = Plan {
        seed: seed() ^ FAULTY_SEED,
        requests: 2_000,
        connections: 64,
        faults: FaultMix {
            resets: 0,
            stalls_head: 0,
            stalls_body: 500,
        },
        refusals: 0,
        deadline: sizes.deadline,
        ids: None,
        reconnect_every: env_u64("CANDOR_SOAK_RECONNECT_EVERY"),
    };
    let extra: Vec<_> = BODY_IDLE_TIMEOUT.into_iter().collect();
    let tally = soak("stalls", plan, sizes.upstream_timeout, &extra).await;
    assert!(tally.faulty("stall-body") > 0);
}

/// The draw itself: paths round-trip, and bodies at or above L stay at most 1 % of exchanges.
#[test]
fn exchanges_round_trip_and_large_bodies_stay_rare() {
    let mix = FaultMix {
        resets: 200,
        stalls_head: 50,
        stalls_body: 50,
    };
    let mut large = 0;
    for id in 0..100_000 {
        let exchange = Exchange::draw(DEFAULT_SEED, id, mix);
        assert_eq!(Exchange::parse(&exchange.path()), Some(exchange));
        large += usize::from(exchange.size >= L);
    }
    assert!(large <= 1_000, "{large} of 100,000 exchanges at or above L");
}
