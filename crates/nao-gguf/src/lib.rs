//! Model files: a validating, zero-copy GGUF reader and small writer, and a safetensors reader.
//!
//! - [`reader`] — [`GgufFile`] maps a file (or copies bytes into an aligned buffer), checks
//!   every count, length, shape and offset up front, and hands out metadata and borrowed
//!   tensor bytes. Malformed input is always a [`GgufError`], never a panic, a huge
//!   allocation or a hang. The parser proper is the private `parse` module.
//! - [`value`] — [`Value`], the metadata value enum, and the GGUF type ids.
//! - [`writer`] — [`writer::GgufWriter`] builds files in memory, well-formed or deliberately
//!   broken, for tests and tiny random-weight models.
//! - [`error`] — [`GgufError`], one structured variant per way a file can be malformed.
//! - [`safetensors`] — [`Safetensors`] (one file or a sharded index) and
//!   [`SafetensorsFile`]: the same validate-everything-at-open, zero-copy approach for
//!   Hugging Face checkpoints, with [`SafetensorsError`] for each malformed case.
//!
//! Format: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md> (versions 2 and 3).

pub mod error;
mod parse;
pub mod reader;
pub mod safetensors;
mod safetensors_json;
pub mod value;
pub mod writer;

pub use error::GgufError;
pub use reader::{GgufFile, TensorInfo};
pub use safetensors::{Safetensors, SafetensorsError, SafetensorsFile, StDtype, StTensor};
pub use value::{Array, Strings, Value};
