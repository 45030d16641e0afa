//! The allocator: handing freed heap back to the operating system, and not too soon.
//!
//! glibc's allocator keeps what a thread frees in that thread's arena for reuse and returns
//! pages to the kernel only from the top of a heap. After a burst of connections (each holds
//! hyper's read and write buffers, tens of KiB) the pages in the middle of the worker's arena
//! stay resident although nothing uses them: measured on the load comparison's machine, 1,000
//! keep-alive connections left candor at 45 MiB RSS after they had all closed, against 9 MiB
//! before them. That is what a pod's memory limit and the comparison's peak RSS count, and it
//! never came back down. `malloc_trim(0)` walks the arenas' free lists and releases every whole
//! free page (45 MiB -> 11 MiB in the same measurement).
//!
//! nginx gets the same effect from freeing its per-connection pools back to the system; with
//! hyper's buffers owned by hyper, trimming is the lever we have. It is not free: under load
//! the walk and its `madvise` calls took 0.2-0.8 ms per call (uprobes on `malloc_trim` and its
//! return, 64 busy connections), holding each arena's lock, and the released pages fault back in
//! as soon as requests reuse them. So candor trims after a burst, not on a clock: when the open
//! client connections have fallen by [`BURST`] or more from their high point since the last
//! trim, looked at every [`CHECK_PERIOD`] (the high point itself is kept by the connection gate,
//! so a burst shorter than the period counts too). A steady load never trims.
//!
//! Memory freed without connections closing (a large inspected body on a connection that stays
//! open) waits for the next burst; upstream connections close on the pool's idle timer, after
//! the client burst that opened them, and their buffers wait too.
//! Other allocators (mimalloc, jemalloc) did worse at rest and after the burst.
//!
//! The opposite mistake costs CPU: by default glibc gives back the top of a worker's heap as
//! soon as more than 128 KiB there is free, and under load that top rises and falls by more
//! than that with every few responses. With 64 connections fetching 64 KiB bodies candor made
//! one `madvise` per 116 responses and took 0.63 page faults per response to fault the pages
//! back in (nginx: 0.005). [`tune`] raises that threshold to [`KEEP_TOP`]. Measured with the
//! same load (`perf stat -e page-faults`, thresholds set through `GLIBC_TUNABLES`): 256 KiB
//! 0.87 faults per response, 1 MiB 0.08, 2 MiB 0.03, 4 MiB 0.001. The threshold is also what a
//! worker keeps after a burst, because `malloc_trim` returns the free top of glibc's main
//! arena only, not of a thread's: at 4 MiB per worker the burst test below left 6.3 MiB
//! resident. 1 MiB takes nine tenths of the faults away and keeps at most 1 MiB per worker.

use std::sync::{Arc, Once};
use std::time::Duration;

use tokio::sync::watch;

use crate::proxy::limits::Gate;

/// How often the open-connection count is looked at.
pub const CHECK_PERIOD: Duration = Duration::from_millis(500);

/// How far the open client connections must fall from their high point to count as the end of
/// a burst worth trimming after (each holds tens of KiB of buffers).
pub const BURST: usize = 32;

/// Free memory at the top of a heap that glibc keeps for the next allocations instead of
/// returning it at once (`M_TRIM_THRESHOLD`; glibc's default is 128 KiB).
pub const KEEP_TOP: usize = 1 << 20;

/// Blocks at least this large get a mapping of their own, returned whole when freed
/// (`M_MMAP_THRESHOLD`). Setting the trim threshold fixes this one too, at 128 KiB unless set:
/// hyper's read buffers and inspected bodies can pass that, and should come from the heap.
pub const MAP_ABOVE: usize = 1 << 20;

/// Sets the allocator's thresholds ([`KEEP_TOP`], [`MAP_ABOVE`]) once per process, unless the
/// operator set glibc's malloc tunables (`GLIBC_TUNABLES=glibc.malloc.…`): those win.
pub fn tune() {
    static TUNED: Once = Once::new();
    TUNED.call_once(|| {
        let operator = std::env::var_os("GLIBC_TUNABLES")
            .is_some_and(|tunables| tunables.to_string_lossy().contains("glibc.malloc."));
        if !operator {
            set_thresholds();
        }
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_thresholds() {
    // Both values fit a C int.
    let (keep_top, map_above) = (KEEP_TOP as libc::c_int, MAP_ABOVE as libc::c_int);
    // SAFETY: `mallopt` takes the allocator's lock itself and only changes its parameters.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, keep_top);
        libc::mallopt(libc::M_MMAP_THRESHOLD, map_above);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() {}

/// Trims after each burst of `gate`'s connections ends, until `stop` turns true (or its sender
/// is gone).
pub(crate) async fn trim_after_bursts(gate: Arc<Gate>, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(CHECK_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if gate.high() >= gate.open() + BURST {
                    trim();
                    gate.restart_high();
                }
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
            }
        }
    }
}

/// Releases the whole free pages inside every malloc arena's free chunks to the kernel, and the
/// free top of the main arena (glibc leaves a thread arena's top to [`KEEP_TOP`]).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn trim() {
    // SAFETY: `malloc_trim` has no preconditions: it takes each arena's lock itself and only
    // advises the kernel about pages inside free chunks, which no live allocation can point to.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Other allocators (musl's, the BSDs') return memory on their own terms; nothing to do.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn trim() {}
