//! Helpers shared by the integration tests.
#![allow(dead_code)]
use std::path::PathBuf;

/// The shared data/fixtures directory (`../shared` next to the repository, or `$MIXPROBE_SHARED`).
/// Returns None, printing a visible SKIP line, when it is absent (a user's clone). `.ci/run`
/// sets `MIXPROBE_REQUIRE_SHARED=1`, which turns absence into a failure so CI never skips.
pub fn shared() -> Option<PathBuf> {
    let dir = std::env::var_os("MIXPROBE_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared"));
    if dir.join("data").is_dir() {
        return Some(dir);
    }
    if std::env::var_os("MIXPROBE_REQUIRE_SHARED").is_some() {
        panic!(
            "MIXPROBE_REQUIRE_SHARED is set but {} has no data/",
            dir.display()
        );
    }
    eprintln!(
        "SKIP: {} not found; tests that need ../shared are skipped",
        dir.display()
    );
    None
}

/// `shared()` or return early from the test.
#[macro_export]
macro_rules! require_shared {
    () => {
        match common::shared() {
            Some(d) => d,
            None => return,
        }
    };
}

/// The compiled binary.
pub fn bin() -> assert_cmd::Command {
    assert_cmd::Command::cargo_bin("mixprobe").expect("binary built")
}
