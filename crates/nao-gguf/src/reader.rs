//! The GGUF reader: parse and validate everything up front, then hand out zero-copy views.
//!
//! All checks happen in [`GgufFile::open`] / [`GgufFile::from_bytes`], so once a file is
//! open every [`TensorInfo`] it returns is known to lie inside the file, aligned, and
//! disjoint from the others, and `tensor_data` can slice without further checks. The
//! parsing itself lives in the private `parse` module.
//!
//! Format reference: <https://github.com/ggml-org/ggml/blob/master/docs/gguf.md>.

use std::collections::HashMap;
use std::path::Path;

use memmap2::{Mmap, MmapMut};
use nao_kernels::DType;

use crate::error::GgufError;
use crate::parse::{parse, Parsed};
use crate::value::{Array, Strings, Value};

/// Alignment of the data section when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: u32 = 4;
/// Deepest array nesting accepted. Real files never nest; the limit bounds recursion.
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Most metadata values (array elements included) per file. Each costs 32 bytes in memory
/// against as little as 1 byte in the file; the largest real vocabularies (~262k tokens with
/// scores, types and merges) use about a million, so this bounds memory at ~128 MiB.
pub const MAX_METADATA_VALUES: u64 = 1 << 22;
/// Most tensors per file; real models have a few thousand at most.
pub const MAX_TENSORS: u64 = 1 << 20;

/// One tensor's header: name, shape, type and where its bytes lie.
#[derive(Debug, Clone)]
pub struct TensorInfo {
    pub name: String,
    /// As in the file: `dims[0]` is the innermost (row) length, ggml's `ne0`.
    pub dims: Vec<u64>,
    pub dtype: DType,
    /// Absolute offset of the first byte in the file.
    pub offset: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Product of the dims (validated not to overflow for infos read from a file).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |a, &d| a.saturating_mul(d))
    }
}

/// An open, fully validated GGUF file.
pub struct GgufFile {
    /// The whole file: a read-only file mapping, or for [`GgufFile::from_bytes`] an
    /// anonymous mapping (page-aligned, so tensor data keeps the alignment it has in the
    /// file and block casts work without `unsafe` on our side).
    map: Mmap,
    /// Whether `map` maps a file (pages can be dropped and read back) or anonymous memory.
    file_backed: bool,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("len", &self.map.len())
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

impl GgufFile {
    /// Maps `path` read-only and validates it.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the mapping is read-only and lives as long as `GgufFile`. Like every
        // mmap-based model loader (llama.cpp included) we rely on nobody truncating or
        // rewriting the file while it is open; that would be outside this process's control
        // and is documented in the crate README.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let parsed = parse(&map)?;
        let mut f = GgufFile::from_parsed(parsed, map);
        f.file_backed = true;
        Ok(f)
    }

    /// Validates an in-memory file (tests, fuzzing). The bytes are copied into a page-aligned
    /// buffer so that tensor data has the same alignment it would have when mapped.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, GgufError> {
        // Parse first: rejected inputs (most fuzz inputs) never pay for the copy.
        let parsed = parse(&bytes)?;
        let io = |source| GgufError::Io {
            path: "<memory>".into(),
            source,
        };
        let mut map = MmapMut::map_anon(bytes.len()).map_err(io)?;
        map.copy_from_slice(&bytes);
        let map = map.make_read_only().map_err(io)?;
        Ok(GgufFile::from_parsed(parsed, map))
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of tensor data (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// All key/value pairs, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// `general.architecture`, which every model file must have.
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.get_str("general.architecture")?
            .ok_or_else(|| GgufError::MissingKey("general.architecture".into()))
    }

    /// Any integer type whose value fits in u32.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        self.get_int(key, "u32", |v| {
            v.as_u64().and_then(|x| u32::try_from(x).ok())
        })
    }

    /// Any integer type whose value is non-negative.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        self.get_int(key, "u64", Value::as_u64)
    }

    /// Any integer type whose value fits in i64.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>, GgufError> {
        self.get_int(key, "i64", Value::as_i64)
    }

    /// `f32`, or `f64` rounded to f32.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        self.get_as(key, "f32", Value::as_f32)
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        self.get_as(key, "bool", Value::as_bool)
    }

    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        self.get_as(key, "string", Value::as_str)
    }

    pub fn get_array(&self, key: &str) -> Result<Option<&Array>, GgufError> {
        self.get_as(key, "array", Value::as_array)
    }

    /// An array whose elements are all strings.
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>, GgufError> {
        Ok(self.get_strings(key)?.map(|s| s.iter().collect()))
    }

    /// An array whose elements are all strings, as stored (no per-element copy).
    pub fn get_strings(&self, key: &str) -> Result<Option<&Strings>, GgufError> {
        static EMPTY: Strings = Strings::new();
        self.get_typed_array(key, "array of string", |a| {
            a.as_strings().or(a.is_empty().then_some(&EMPTY)).map(Ok)
        })
    }

    /// An array whose elements are all f32 or f64.
    pub fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>, GgufError> {
        self.get_typed_array(key, "array of f32", |a| {
            a.to_f32s().or(a.is_empty().then(Vec::new)).map(Ok)
        })
    }

    /// An array whose elements are integers that fit in i32.
    pub fn get_i32_array(&self, key: &str) -> Result<Option<Vec<i32>>, GgufError> {
        let expected = "array of i32";
        self.get_typed_array(key, expected, |a| {
            let fits = |v: Vec<i64>| v.into_iter().map(|x| i32::try_from(x).ok()).collect();
            let ints = a.to_i64s().or(a.is_empty().then_some(Ok(Vec::new())))?;
            Some(
                ints.ok()
                    .and_then(fits)
                    .ok_or_else(|| GgufError::OutOfRange {
                        key: key.to_owned(),
                        expected,
                    }),
            )
        })
    }

    /// Tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of `t`, borrowed from the mapping. Bounds were validated at open, so for a
    /// `TensorInfo` from this file this is always the full tensor; for a foreign or edited
    /// one that does not fit it returns an empty slice rather than panicking.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let range = usize::try_from(t.offset).ok().and_then(|start| {
            let end = start.checked_add(usize::try_from(t.n_bytes).ok()?)?;
            self.map.get(start..end)
        });
        range.unwrap_or(&[])
    }

    /// The whole file.
    pub fn data(&self) -> &[u8] {
        &self.map
    }

    /// Tells the kernel this process no longer needs the pages of `range` (whole 4 KiB
    /// pages inside it), so they leave its resident set; a later read faults them back in
    /// from the file. For a tensor the model has copied into another layout. A hint only:
    /// errors are ignored, and in-memory files ([`GgufFile::from_bytes`]) are left alone.
    pub fn release(&self, range: std::ops::Range<usize>) {
        const PAGE: usize = 4096;
        let start = range.start.div_ceil(PAGE) * PAGE;
        let end = range.end.min(self.map.len()) / PAGE * PAGE;
        if !self.file_backed || start >= end {
            return;
        }
        // SAFETY: MADV_DONTNEED on a private, read-only *file* mapping only drops this
        // process's copies of the pages: the next access reads the same bytes back from the
        // file (which, as for the mapping itself, nobody may rewrite while it is open), so
        // no reference into the mapping ever observes different contents. Anonymous maps
        // (where the pages would read back as zeros) are excluded above.
        #[cfg(unix)]
        let _ = unsafe {
            self.map
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        };
    }

    fn get_as<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        conv: impl FnOnce(&'a Value) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        conv(v)
            .map(Some)
            .ok_or_else(|| wrong_type(key, expected, v))
    }

    /// Like `get_as`, but an integer of the wrong range is `OutOfRange`, not `WrongType`.
    fn get_int<T>(
        &self,
        key: &str,
        expected: &'static str,
        conv: impl FnOnce(&Value) -> Option<T>,
    ) -> Result<Option<T>, GgufError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        if !v.is_integer() {
            return Err(wrong_type(key, expected, v));
        }
        conv(v).map(Some).ok_or_else(|| GgufError::OutOfRange {
            key: key.to_owned(),
            expected,
        })
    }

    /// An array converted as a whole; `conv` returns `None` for a wrong element type (an
    /// empty array converts to any element type).
    fn get_typed_array<'a, T>(
        &'a self,
        key: &str,
        expected: &'static str,
        conv: impl FnOnce(&'a Array) -> Option<Result<T, GgufError>>,
    ) -> Result<Option<T>, GgufError> {
        let Some(arr) = self.get_as(key, expected, Value::as_array)? else {
            return Ok(None);
        };
        match conv(arr) {
            Some(r) => r.map(Some),
            None => Err(GgufError::WrongType {
                key: key.to_owned(),
                expected,
                found: format!("array of {}", arr.elem_type_name()),
            }),
        }
    }
}

pub(crate) fn wrong_type(key: &str, expected: &'static str, v: &Value) -> GgufError {
    let found = match v.as_array() {
        Some(a) => format!("array of {}", a.elem_type_name()),
        None => v.type_name().to_owned(),
    };
    GgufError::WrongType {
        key: key.to_owned(),
        expected,
        found,
    }
}

impl GgufFile {
    /// Attaches parsed (already validated) headers to the bytes they were parsed from.
    fn from_parsed(p: Parsed, map: Mmap) -> GgufFile {
        GgufFile {
            map,
            file_backed: false,
            version: p.version,
            alignment: p.alignment,
            data_offset: p.data_offset,
            metadata: p.metadata,
            key_index: p.key_index,
            tensors: p.tensors,
            tensor_index: p.tensor_index,
        }
    }
}
