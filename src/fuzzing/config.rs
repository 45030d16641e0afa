//! The `config` fuzz target: arbitrary bytes as a config file, through all three loading phases.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::from_toml;
use crate::inspect::{simulate, Normalizer};

/// Most environment overrides read from one input.
const MAX_ENV: usize = 8;

/// Loads `data` as TOML with [`from_toml`]; must never panic.
///
/// Input: the config text; after the first NUL byte, optional `CANDOR__KEY=value` lines that
/// become environment overrides (TOML text cannot contain a NUL, so the split is unambiguous).
/// Oracles: a valid config has a `summary()` naming its origin and runs its own `[[tests]]`
/// through the normaliser; a rejected one explains itself with one line per issue.
pub fn config(data: &[u8]) {
    let (text, env) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let env: HashMap<String, String> = env
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let line = String::from_utf8_lossy(line);
            let (key, value) = line.split_once('=')?;
            Some((key.to_owned(), value.to_owned()))
        })
        .take(MAX_ENV)
        .collect();
    match from_toml(&text, "fuzz.toml", env) {
        Ok(config) => {
            let summary = config.summary();
            assert!(
                summary.starts_with("fuzz.toml: ok: upstream http://"),
                "summary does not name the config: {summary}"
            );
            let _ = config.rules.unreachable();
            let normalizer = Arc::new(Normalizer::new(Arc::new(config)));
            for test in normalizer.config().tests.iter().take(16) {
                let _ = simulate::run_test(&normalizer, test);
                let _ = simulate::traces(&normalizer, &test.exchange);
            }
        }
        Err(error) => {
            let shown = error.to_string();
            assert!(!shown.is_empty(), "a config error with no message");
            assert_eq!(
                shown.lines().count(),
                error.issues().len().max(1),
                "a config error is not one line per issue: {shown}"
            );
        }
    }
}
