//! Fuzz target `inspect`: collection, decoding and the normaliser on one response, as the normalize layer runs them.
//! The entry and its oracles are in `candor::fuzzing`; `tests/it/fuzz_corpus.rs` replays this
//! target's corpus through the same entry on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| candor::fuzzing::inspect(data));
