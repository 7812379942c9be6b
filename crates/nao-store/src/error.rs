//! The store's error type: one variant per thing a caller may want to tell apart
//! (a bad name is the user's mistake, a digest mismatch is the source's, I/O is the disk's).

use crate::name::Digest;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid model name {name:?}: {reason}")]
    InvalidName { name: String, reason: &'static str },
    #[error("invalid digest {digest:?}: expected sha256:<64 lowercase hex digits>")]
    InvalidDigest { digest: String },
    #[error("model {0} is not in the store (see `nao list`, or `nao pull {0}`)")]
    NotFound(String),
    #[error("unknown model {name}: not in the store and not a known download (known: {known})")]
    UnknownModel { name: String, known: String },
    #[error("no such file: {}", .0.display())]
    NoSuchFile(PathBuf),
    #[error("sha256 mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("size mismatch for {what}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("model {name} is damaged: {reason}; pull it again (`nao rm {name}` then `nao pull`)")]
    Corrupt { name: String, reason: String },
    #[error("malformed manifest {}: {reason}", path.display())]
    BadManifest { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("download of {url} failed: {reason}")]
    Http { url: String, reason: String },
    #[error("package index: {0}")]
    Index(String),
    #[error("bad wheel {what}: {reason}")]
    Zip { what: String, reason: String },
    #[error("another pull of {0} is in progress")]
    Busy(String),
}

impl StoreError {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
