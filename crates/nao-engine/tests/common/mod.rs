//! Shared by the model-level test files: where the repository's files are, and finding a
//! fetched model (skipping when it is absent, unless `NAO_REQUIRE_MODELS` is set, as CI does).
#![allow(dead_code)]

use std::path::PathBuf;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `models/FILE` when it exists; `None` (with a note) when it does not and
/// `NAO_REQUIRE_MODELS` is unset; a failure when it is set.
pub fn model_path(file: &str) -> Option<PathBuf> {
    let p = root().join("models").join(file);
    if p.exists() {
        return Some(p);
    }
    assert!(
        std::env::var_os("NAO_REQUIRE_MODELS").is_none(),
        "{} is missing and NAO_REQUIRE_MODELS is set: run scripts/fetch_models.py",
        p.display()
    );
    eprintln!(
        "skipping: {} not found (run scripts/fetch_models.py)",
        p.display()
    );
    None
}
