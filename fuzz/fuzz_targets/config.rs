//! Fuzz target `config`: bytes as a config file: `config::from_toml` with env overrides, `summary`, `[[tests]]`.
//! The entry and its oracles are in `candor::fuzzing`; `tests/it/fuzz_corpus.rs` replays this
//! target's corpus through the same entry on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| candor::fuzzing::config(data));
