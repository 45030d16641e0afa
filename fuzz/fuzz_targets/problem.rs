//! Fuzz target `problem`: problem documents, `sanitize_detail` and header hygiene in both directions.
//! The entry and its oracles are in `candor::fuzzing`; `tests/it/fuzz_corpus.rs` replays this
//! target's corpus through the same entry on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| candor::fuzzing::problem(data));
