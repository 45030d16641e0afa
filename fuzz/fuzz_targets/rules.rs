//! Fuzz target `rules`: a rule set (compiled from TOML) against one response: `evaluate` agrees with `explain`.
//! The entry and its oracles are in `candor::fuzzing`; `tests/it/fuzz_corpus.rs` replays this
//! target's corpus through the same entry on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| candor::fuzzing::rules(data));
