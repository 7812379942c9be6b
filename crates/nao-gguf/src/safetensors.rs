//! safetensors model files: a validating, zero-copy reader for single files and sharded
//! models (`model.safetensors.index.json`).
//!
//! Layout: an 8-byte little-endian header length `N`, `N` bytes of UTF-8 JSON mapping tensor
//! names to `{dtype, shape, data_offsets: [begin, end]}` (plus an optional `__metadata__`
//! map of strings), then the data section, to which the offsets are relative. Spec:
//! <https://github.com/huggingface/safetensors#format>.
//!
//! Everything is checked once at open, as the GGUF reader does: the header length against
//! the file and a 100 MB cap, the JSON itself (duplicate names included, which a plain
//! `HashMap` deserialisation would silently drop), each dtype, `shape × dtype size` against
//! the byte range, and that the ranges tile the data section exactly (no overlap, no gap,
//! no trailing bytes, nothing past the end). After that, [`SafetensorsFile::tensor_data`]
//! slices without further checks.
//!
//! Data offsets carry no alignment guarantee (the header length is arbitrary), so callers
//! first try a zero-copy cast ([`SafetensorsFile::cast`]) and copy when it fails; for small
//! tensors [`SafetensorsFile::to_f32`] decodes from bytes directly.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use memmap2::{Mmap, MmapMut};
use nao_kernels::blocks::Block;
use nao_kernels::DType;

/// Largest header accepted (the reference implementation's limit).
pub const MAX_HEADER_BYTES: u64 = 100_000_000;
/// Most dimensions a tensor may have; real checkpoints use at most 5.
pub const MAX_DIMS: usize = 8;

/// Everything that can go wrong reading a safetensors file or a sharded model.
#[derive(Debug, thiserror::Error)]
pub enum SafetensorsError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("file has {len} bytes, too short for the 8-byte header length")]
    TooSmall { len: u64 },
    #[error("header length {len} exceeds the limit of {MAX_HEADER_BYTES} bytes")]
    HeaderTooLarge { len: u64 },
    #[error("header length {len} runs past the end of the file ({file_len} bytes)")]
    HeaderPastEnd { len: u64, file_len: u64 },
    #[error("header is not valid UTF-8")]
    HeaderNotUtf8,
    #[error("header is not a JSON object of tensor entries: {0}")]
    HeaderNotJson(String),
    #[error("tensor {tensor:?}: {reason}")]
    BadEntry { tensor: String, reason: String },
    #[error("tensor {tensor:?} has unknown dtype {dtype:?}")]
    UnknownDtype { tensor: String, dtype: String },
    #[error("tensor {tensor:?} has {n} dimensions (at most {MAX_DIMS} allowed)")]
    TooManyDims { tensor: String, n: usize },
    #[error("tensor {tensor:?}: element count or byte size overflows")]
    SizeOverflow { tensor: String },
    #[error("tensor {tensor:?}: data_offsets [{begin}, {end}] end before they begin")]
    ReversedOffsets {
        tensor: String,
        begin: u64,
        end: u64,
    },
    #[error("tensor {tensor:?}: shape {shape:?} of {dtype} needs {expected} bytes, data_offsets give {got}")]
    ShapeMismatch {
        tensor: String,
        dtype: &'static str,
        shape: Vec<u64>,
        expected: u64,
        got: u64,
    },
    #[error(
        "tensor {tensor:?}: data ends at byte {end}, past the data section ({data_len} bytes)"
    )]
    OutOfBounds {
        tensor: String,
        end: u64,
        data_len: u64,
    },
    #[error("tensors {a:?} and {b:?} overlap")]
    Overlap { a: String, b: String },
    #[error("data bytes {start}..{end} belong to no tensor")]
    Gap { start: u64, end: u64 },
    #[error("{n} trailing bytes after the last tensor")]
    TrailingBytes { n: u64 },
    #[error("tensor name {0:?} appears twice")]
    DuplicateTensor(String),
    #[error("{}: not a safetensors index: {reason}", path.display())]
    BadIndex { path: PathBuf, reason: String },
    #[error("index names shard {0:?}, which is not a plain file name in the model directory")]
    BadShardName(String),
    #[error("index maps tensor {tensor:?} to {shard}, which does not hold it")]
    MissingInShard { tensor: String, shard: String },
    #[error("{}: neither model.safetensors nor model.safetensors.index.json found", .0.display())]
    NoModel(PathBuf),
}

/// A tensor element type as safetensors names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StDtype {
    Bool,
    U8,
    I8,
    F8E4M3,
    F8E5M2,
    I16,
    U16,
    F16,
    BF16,
    I32,
    U32,
    F32,
    I64,
    U64,
    F64,
}

impl StDtype {
    const ALL: [(StDtype, &'static str, u64); 15] = [
        (StDtype::Bool, "BOOL", 1),
        (StDtype::U8, "U8", 1),
        (StDtype::I8, "I8", 1),
        (StDtype::F8E4M3, "F8_E4M3", 1),
        (StDtype::F8E5M2, "F8_E5M2", 1),
        (StDtype::I16, "I16", 2),
        (StDtype::U16, "U16", 2),
        (StDtype::F16, "F16", 2),
        (StDtype::BF16, "BF16", 2),
        (StDtype::I32, "I32", 4),
        (StDtype::U32, "U32", 4),
        (StDtype::F32, "F32", 4),
        (StDtype::I64, "I64", 8),
        (StDtype::U64, "U64", 8),
        (StDtype::F64, "F64", 8),
    ];

    pub fn parse(s: &str) -> Option<StDtype> {
        Self::ALL.iter().find(|e| e.1 == s).map(|e| e.0)
    }

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|e| e.0 == self).map_or("?", |e| e.1)
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        Self::ALL.iter().find(|e| e.0 == self).map_or(1, |e| e.2)
    }

    /// The kernel type with the same element layout, for the types nao computes with.
    pub fn to_dtype(self) -> Option<DType> {
        Some(match self {
            StDtype::F32 => DType::F32,
            StDtype::F16 => DType::F16,
            StDtype::BF16 => DType::BF16,
            StDtype::I8 => DType::I8,
            StDtype::I16 => DType::I16,
            StDtype::I32 => DType::I32,
            StDtype::I64 => DType::I64,
            StDtype::F64 => DType::F64,
            _ => return None,
        })
    }
}

/// One tensor's header entry, with its range resolved to absolute file offsets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StTensor {
    pub name: String,
    pub dtype: StDtype,
    /// Outermost first (row-major, PyTorch order): a Linear weight is `[out, in]`.
    pub shape: Vec<u64>,
    /// Absolute offset of the first byte in the file.
    pub offset: u64,
    pub n_bytes: u64,
}

/// An open, fully validated safetensors file.
pub struct SafetensorsFile {
    map: Mmap,
    tensors: Vec<StTensor>,
    index: HashMap<String, usize>,
    metadata: Vec<(String, String)>,
}

impl std::fmt::Debug for SafetensorsFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("len", &self.map.len())
            .field("n_tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

impl SafetensorsFile {
    /// Maps `path` read-only and validates it.
    pub fn open(path: impl AsRef<Path>) -> Result<SafetensorsFile, SafetensorsError> {
        let path = path.as_ref();
        let io = |source| SafetensorsError::Io {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: read-only mapping owned by the returned value; as for GGUF (see
        // `GgufFile::open`) we rely on nobody truncating the file while it is open.
        let map = unsafe { Mmap::map(&file) }.map_err(io)?;
        let (tensors, metadata) = parse(&map)?;
        Ok(SafetensorsFile::new(map, tensors, metadata))
    }

    /// Validates an in-memory file (tests, fuzzing), copied into a page-aligned buffer so
    /// tensor data has the alignment it would have when mapped.
    pub fn from_bytes(bytes: &[u8]) -> Result<SafetensorsFile, SafetensorsError> {
        let (tensors, metadata) = parse(bytes)?;
        let io = |source| SafetensorsError::Io {
            path: "<memory>".into(),
            source,
        };
        // An anonymous map of length 0 is an error on some systems: map at least a byte.
        let mut map = MmapMut::map_anon(bytes.len().max(1)).map_err(io)?;
        map[..bytes.len()].copy_from_slice(bytes);
        let map = map.make_read_only().map_err(io)?;
        Ok(SafetensorsFile::new(map, tensors, metadata))
    }

    fn new(map: Mmap, tensors: Vec<StTensor>, metadata: Vec<(String, String)>) -> Self {
        let index = tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        SafetensorsFile {
            map,
            tensors,
            index,
            metadata,
        }
    }

    /// Tensors in data order.
    pub fn tensors(&self) -> &[StTensor] {
        &self.tensors
    }

    pub fn tensor(&self, name: &str) -> Option<&StTensor> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The `__metadata__` entries, in file order.
    pub fn metadata(&self) -> &[(String, String)] {
        &self.metadata
    }

    /// The bytes of `t`, borrowed from the mapping (validated at open; a foreign `StTensor`
    /// that does not fit gives an empty slice rather than a panic).
    pub fn tensor_data(&self, t: &StTensor) -> &[u8] {
        let range = usize::try_from(t.offset).ok().and_then(|start| {
            let end = start.checked_add(usize::try_from(t.n_bytes).ok()?)?;
            self.map.get(start..end)
        });
        range.unwrap_or(&[])
    }

    /// Zero-copy typed view of `t`'s data, or `None` when it is not aligned for `T` (or
    /// not a whole number of `T`): the caller then copies, e.g. with [`Self::to_f32`].
    pub fn cast<T: Block>(&self, t: &StTensor) -> Option<&[T]> {
        nao_kernels::cast::cast_slice(self.tensor_data(t))
    }

    /// `t`'s values as f32 (F32, F16 or BF16), decoded from the bytes (no alignment needed).
    pub fn to_f32(&self, t: &StTensor) -> Result<Vec<f32>, SafetensorsError> {
        let b = self.tensor_data(t);
        let le2 = |c: &[u8]| u16::from_le_bytes([c[0], c[1]]);
        Ok(match t.dtype {
            StDtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            StDtype::F16 => b
                .chunks_exact(2)
                .map(|c| half::f16::from_bits(le2(c)).to_f32())
                .collect(),
            StDtype::BF16 => b
                .chunks_exact(2)
                .map(|c| half::bf16::from_bits(le2(c)).to_f32())
                .collect(),
            other => {
                return Err(SafetensorsError::BadEntry {
                    tensor: t.name.clone(),
                    reason: format!("dtype {} cannot be read as f32", other.name()),
                })
            }
        })
    }
}

type Parsed = (Vec<StTensor>, Vec<(String, String)>);

/// Parses and validates a whole file image.
fn parse(bytes: &[u8]) -> Result<Parsed, SafetensorsError> {
    let file_len = bytes.len() as u64;
    let Some(len_bytes) = bytes.get(..8) else {
        return Err(SafetensorsError::TooSmall { len: file_len });
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(len_bytes);
    let header_len = u64::from_le_bytes(n);
    if header_len > MAX_HEADER_BYTES {
        return Err(SafetensorsError::HeaderTooLarge { len: header_len });
    }
    if header_len > file_len - 8 {
        return Err(SafetensorsError::HeaderPastEnd {
            len: header_len,
            file_len,
        });
    }
    let data_start = 8 + header_len;
    let header = std::str::from_utf8(&bytes[8..data_start as usize])
        .map_err(|_| SafetensorsError::HeaderNotUtf8)?;
    let entries = crate::safetensors_json::entries(header)?;
    let mut tensors = Vec::with_capacity(entries.len());
    let mut metadata = Vec::new();
    let mut seen = HashSet::new();
    for (name, value) in entries {
        if !seen.insert(name.clone()) {
            return Err(SafetensorsError::DuplicateTensor(name));
        }
        if name == "__metadata__" {
            metadata = crate::safetensors_json::metadata(value)?;
            continue;
        }
        let e = crate::safetensors_json::entry(&name, value)?;
        let dtype = StDtype::parse(&e.dtype).ok_or_else(|| SafetensorsError::UnknownDtype {
            tensor: name.clone(),
            dtype: e.dtype.clone(),
        })?;
        if e.shape.len() > MAX_DIMS {
            return Err(SafetensorsError::TooManyDims {
                tensor: name,
                n: e.shape.len(),
            });
        }
        let expected = e
            .shape
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
            .ok_or_else(|| SafetensorsError::SizeOverflow {
                tensor: name.clone(),
            })?;
        let [begin, end] = e.offsets;
        if end < begin {
            return Err(SafetensorsError::ReversedOffsets {
                tensor: name,
                begin,
                end,
            });
        }
        if end - begin != expected {
            return Err(SafetensorsError::ShapeMismatch {
                tensor: name,
                dtype: dtype.name(),
                shape: e.shape,
                expected,
                got: end - begin,
            });
        }
        let data_len = file_len - data_start;
        if end > data_len {
            return Err(SafetensorsError::OutOfBounds {
                tensor: name,
                end,
                data_len,
            });
        }
        tensors.push(StTensor {
            name,
            dtype,
            shape: e.shape,
            offset: data_start + begin,
            n_bytes: expected,
        });
    }
    check_tiling(&mut tensors, data_start, file_len)?;
    Ok((tensors, metadata))
}

/// Sorts `tensors` by offset and checks that their ranges tile the data section exactly:
/// no overlap, no gap, no trailing bytes. Empty tensors occupy no bytes.
fn check_tiling(
    tensors: &mut [StTensor],
    data_start: u64,
    file_len: u64,
) -> Result<(), SafetensorsError> {
    tensors.sort_by_key(|t| t.offset);
    let mut end = data_start;
    let mut prev = "";
    for t in tensors.iter().filter(|t| t.n_bytes > 0) {
        if t.offset < end {
            return Err(SafetensorsError::Overlap {
                a: prev.to_owned(),
                b: t.name.clone(),
            });
        }
        if t.offset > end {
            return Err(SafetensorsError::Gap {
                start: end - data_start,
                end: t.offset - data_start,
            });
        }
        end = t.offset + t.n_bytes;
        prev = &t.name;
    }
    if end < file_len {
        return Err(SafetensorsError::TrailingBytes { n: file_len - end });
    }
    Ok(())
}

/// A model's tensors across one or more safetensors files.
#[derive(Debug)]
pub struct Safetensors {
    shards: Vec<SafetensorsFile>,
    /// Tensor name → (shard, index in that shard's `tensors()`).
    index: HashMap<String, usize>,
}

impl Safetensors {
    /// Opens `path`: a `.safetensors` file, a `model.safetensors.index.json`, or a directory
    /// holding either (the single file is preferred).
    pub fn open(path: impl AsRef<Path>) -> Result<Safetensors, SafetensorsError> {
        let path = path.as_ref();
        if path.is_dir() {
            let single = path.join("model.safetensors");
            let index = path.join("model.safetensors.index.json");
            return if single.is_file() {
                Self::from_files(vec![SafetensorsFile::open(single)?])
            } else if index.is_file() {
                Self::open_index(&index)
            } else {
                Err(SafetensorsError::NoModel(path.to_owned()))
            };
        }
        if path.extension().is_some_and(|e| e == "json") {
            return Self::open_index(path);
        }
        Self::from_files(vec![SafetensorsFile::open(path)?])
    }

    /// Opens the shards an index names (each once, in name order) and checks that every
    /// tensor sits in the shard the index says.
    pub fn open_index(path: &Path) -> Result<Safetensors, SafetensorsError> {
        let text = std::fs::read_to_string(path).map_err(|source| SafetensorsError::Io {
            path: path.to_owned(),
            source,
        })?;
        let map = crate::safetensors_json::weight_map(&text).map_err(|reason| {
            SafetensorsError::BadIndex {
                path: path.to_owned(),
                reason,
            }
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut names: Vec<&str> = map.iter().map(|(_, s)| s.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let mut shards = Vec::with_capacity(names.len());
        for name in &names {
            // Only plain names: an index must not reach outside its directory.
            let plain = Path::new(name).file_name().is_some_and(|f| f == *name);
            if !plain || *name == ".." || name.contains(['/', '\\']) {
                return Err(SafetensorsError::BadShardName((*name).to_owned()));
            }
            shards.push(SafetensorsFile::open(dir.join(name))?);
        }
        for (tensor, shard) in &map {
            let i = names.binary_search(&shard.as_str()).unwrap_or(0);
            if shards.get(i).and_then(|s| s.tensor(tensor)).is_none() {
                return Err(SafetensorsError::MissingInShard {
                    tensor: tensor.clone(),
                    shard: shard.clone(),
                });
            }
        }
        Self::from_files(shards)
    }

    /// Joins already-open files; a name present in two of them is an error.
    pub fn from_files(shards: Vec<SafetensorsFile>) -> Result<Safetensors, SafetensorsError> {
        let mut index = HashMap::new();
        for (i, s) in shards.iter().enumerate() {
            for t in s.tensors() {
                if index.insert(t.name.clone(), i).is_some() {
                    return Err(SafetensorsError::DuplicateTensor(t.name.clone()));
                }
            }
        }
        Ok(Safetensors { shards, index })
    }

    /// The tensor called `name` and the file holding it.
    pub fn get(&self, name: &str) -> Option<(&SafetensorsFile, &StTensor)> {
        let shard = self.shards.get(*self.index.get(name)?)?;
        Some((shard, shard.tensor(name)?))
    }

    /// Like [`Self::get`], with the index in [`Self::shards`] of the file holding it (for
    /// callers that keep a reference to the tensor without borrowing `self`).
    pub fn locate(&self, name: &str) -> Option<(usize, &StTensor)> {
        let i = *self.index.get(name)?;
        Some((i, self.shards.get(i)?.tensor(name)?))
    }

    /// All tensor names (unordered).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    pub fn shards(&self) -> &[SafetensorsFile] {
        &self.shards
    }
}
