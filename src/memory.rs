//! Handing freed heap back to the operating system.
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
//! Other allocators (mimalloc, jemalloc) were measured for this and did worse at rest and
//! after the burst (issue 6's notes).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::proxy::limits::Gate;

/// How often the open-connection count is looked at.
pub const CHECK_PERIOD: Duration = Duration::from_millis(500);

/// How far the open client connections must fall from their high point to count as the end of
/// a burst worth trimming after (each holds tens of KiB of buffers).
pub const BURST: usize = 32;

/// Trims after each burst of `gate`'s connections ends, until `stop` turns true (or its sender
/// is gone).
pub async fn trim_after_bursts(gate: Arc<Gate>, mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(CHECK_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut high = 0;
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                high = high.max(gate.take_high());
                let open = gate.open();
                if high >= open + BURST {
                    trim();
                    high = open;
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

/// Releases the whole free pages of every malloc arena to the kernel.
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
