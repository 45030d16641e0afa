//! Fuzz target `exchange`: an event list replayed against a live candor between a raw client and a raw upstream.
//! The entry and its oracles are in `candor::fuzzing`; `tests/fuzz_corpus.rs` replays this
//! target's corpus through the same entry on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| candor::fuzzing::exchange(data));
