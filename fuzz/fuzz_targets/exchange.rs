//! Fuzz target `exchange`: an event list replayed against a live candor between a raw client and a raw upstream.
//! The entry and its oracles are in `candor::fuzzing`; `tests/it/fuzz_corpus.rs` replays this
//! target's corpus through the same entry on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        // libFuzzer's `main` is not Rust's, which ignores SIGPIPE: without this, candor writing
        // to a client the fuzzer already closed (hyper's vectored writes have no MSG_NOSIGNAL)
        // kills the process.
        // SAFETY: called once, before any thread of the target exists.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    },
    |data: &[u8]| candor::fuzzing::exchange(data)
);
