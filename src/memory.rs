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
//! hyper's buffers owned by hyper, trimming periodically is the lever we have. The walk costs
//! microseconds on a heap of a few MiB and is done off the workers (on the admin runtime), so a
//! fixed short period keeps the lag after a burst small without a signal from the workers.
//! Other allocators (mimalloc, jemalloc) were measured for this and did worse at rest and
//! after the burst (shared notes of issue 6).

use std::time::Duration;

use tokio::sync::watch;

/// How often freed memory is handed back.
pub const TRIM_PERIOD: Duration = Duration::from_secs(2);

/// Trims every [`TRIM_PERIOD`] until `stop` turns true (or its sender is gone).
pub async fn trim_periodically(mut stop: watch::Receiver<bool>) {
    let mut ticks = tokio::time::interval(TRIM_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => trim(),
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
