//! The allocator: handing freed heap back to the operating system, and not too soon.
//!
//! glibc keeps what a thread frees in that thread's arena and returns pages to the kernel only
//! from the top of a heap, so after a burst of connections (each holds hyper's buffers, tens of
//! KiB) the middle of a worker's arena stays resident: 1,000 closed keep-alive connections left
//! 45 MiB. [`trim`] (`malloc_trim(0)`) releases every whole free page (45 → 11 MiB). It holds
//! each arena's lock while it walks (up to 0.8 ms under load) and the pages fault back in when
//! reused, so candor trims after a burst, not on a clock: when the open client connections have
//! fallen by [`BURST`] from their high point since the last trim (the connection gate keeps that
//! high point), looked at every [`CHECK_PERIOD`]. A steady load never trims.
//!
//! The opposite mistake costs CPU: by default glibc gives back a heap's top as soon as 128 KiB
//! there is free, and under load that top rises and falls with every few responses (0.63 page
//! faults per 64 KiB response). [`tune`], which the binary calls, keeps [`KEEP_TOP`] (1 MiB:
//! 0.08 faults per response); it is also what each worker keeps after a burst, since
//! `malloc_trim` returns only the main arena's top.

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
