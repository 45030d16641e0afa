//! Files the tests write: a fresh directory per test, and saving a config as editors and
//! Kubernetes do (write beside it, rename over it), which is what the reloader must follow.

use std::path::{Path, PathBuf};

/// A fresh directory `NAME-PID` under cargo's test temp dir (emptied if a previous run left it);
/// name it after the test module and the test, so that parallel tests never share one.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to a temporary file beside `path` and renames it over `path`, as editors save;
/// the reloader watches the directory.
pub fn save_by_rename(path: &Path, text: &str) {
    let tmp = path.with_extension("toml.swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}
