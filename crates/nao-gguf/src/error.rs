//! The one error type of this crate.
//!
//! Every malformed input maps to a structured variant naming what was wrong and where, so
//! callers (the loader, the CLI, the fuzz target) can report it without guessing. The reader
//! never panics on input: each check below exists because some real or fuzzed file failed it.

use std::path::PathBuf;

/// Everything that can go wrong reading or querying a GGUF file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a GGUF file: the first four bytes are not \"GGUF\"")]
    NotGguf,
    #[error("unsupported GGUF version {0} (nao reads versions 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("file is truncated: it ends inside {what} at byte {offset}")]
    Truncated { what: &'static str, offset: u64 },
    #[error("{what} count {count} is larger than the rest of the file (or nao's limit) allows")]
    CountTooLarge { what: &'static str, count: u64 },
    #[error("{what} at byte {offset} claims length {len}, but only {remaining} bytes remain")]
    StringTooLong {
        what: &'static str,
        offset: u64,
        len: u64,
        remaining: u64,
    },
    #[error("{what} is not valid UTF-8")]
    InvalidUtf8 { what: String },
    #[error("metadata key {key:?} has unknown value type id {type_id}")]
    BadValueType { key: String, type_id: u32 },
    #[error("metadata key {key:?} holds bool byte {byte}, which is neither 0 nor 1")]
    BadBool { key: String, byte: u8 },
    #[error("metadata key {key:?} nests arrays deeper than {limit} levels")]
    ArrayTooDeep { key: String, limit: usize },
    #[error("tensor {tensor:?} has {n} dimensions (at most 4 allowed)")]
    TooManyDims { tensor: String, n: u32 },
    #[error("tensor {tensor:?} has no dimensions")]
    NoDims { tensor: String },
    #[error("tensor {tensor:?} has a dimension of size 0")]
    ZeroDim { tensor: String },
    #[error("tensor {tensor:?} has a negative dimension ({dim} as unsigned)")]
    NegativeDim { tensor: String, dim: u64 },
    #[error("tensor {tensor:?}: element count or byte size overflows")]
    ElementCountOverflow { tensor: String },
    #[error("tensor {tensor:?} has unknown tensor type id {type_id}")]
    UnknownTensorType { tensor: String, type_id: u32 },
    #[error("tensor {tensor:?}: row length {dim0} is not a multiple of {dtype}'s block size {block_size}")]
    NotWholeBlocks {
        tensor: String,
        dtype: &'static str,
        dim0: u64,
        block_size: u64,
    },
    #[error("tensor {tensor:?}: data at relative offset {offset} + {n_bytes} bytes lies past the end of the file ({file_len} bytes)")]
    TensorOutOfBounds {
        tensor: String,
        offset: u64,
        n_bytes: u64,
        file_len: u64,
    },
    #[error("tensor {tensor:?}: offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },
    #[error("tensors {a:?} and {b:?} overlap")]
    OverlappingTensors { a: String, b: String },
    #[error("general.alignment {0} is not a power of two between 1 and 2^31")]
    BadAlignment(u64),
    #[error("metadata key {key:?} has type {found}, expected {expected}")]
    WrongType {
        key: String,
        expected: &'static str,
        found: String,
    },
    #[error("metadata key {key:?} holds a value that does not fit in {expected}")]
    OutOfRange { key: String, expected: &'static str },
    #[error("metadata key {0:?} appears twice")]
    DuplicateKey(String),
    #[error("tensor name {0:?} appears twice")]
    DuplicateTensor(String),
    #[error("required metadata key {0:?} is missing")]
    MissingKey(String),
}
