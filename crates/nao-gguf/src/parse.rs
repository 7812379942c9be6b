//! Parsing and validation of the GGUF layout, kept apart from the [`GgufFile`] accessors.
//!
//! Every count read from the file is compared with the bytes that remain *before* anything
//! is allocated for it (an array of N elements needs at least N times its element type's
//! smallest encoding), so a forged count of 2^63 fails fast instead of exhausting memory;
//! every loop consumes file bytes, so nothing can hang.
//!
//! [`GgufFile`]: crate::GgufFile

use std::collections::HashMap;

use nao_kernels::DType;

use crate::error::GgufError;
use crate::reader::{
    wrong_type, TensorInfo, DEFAULT_ALIGNMENT, MAX_ARRAY_DEPTH, MAX_DIMS, MAX_METADATA_VALUES,
    MAX_TENSORS,
};
use crate::value::{min_encoded_size, type_id, Array, Strings, Value};

/// Smallest possible key/value pair: key length, value type, a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest possible tensor info: name length, n_dims, one dim, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 8 + 4 + 8;

/// Everything parsed from a file, before it is attached to its storage.
pub(crate) struct Parsed {
    pub(crate) version: u32,
    pub(crate) alignment: u64,
    pub(crate) data_offset: u64,
    pub(crate) metadata: Vec<(String, Value)>,
    pub(crate) key_index: HashMap<String, usize>,
    pub(crate) tensors: Vec<TensorInfo>,
    pub(crate) tensor_index: HashMap<String, usize>,
}

/// A bounds-checked little-endian reader over the file bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], GgufError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(GgufError::Truncated {
                what,
                offset: self.buf.len() as u64,
            })?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, GgufError> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, GgufError> {
        self.array(what).map(u16::from_le_bytes)
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A GGUF string (u64 length + bytes), as raw bytes; the length is checked against the
    /// remaining file before anything is sliced.
    fn string_bytes(&mut self, what: &'static str) -> Result<&'a [u8], GgufError> {
        let offset = self.pos as u64;
        let len = self.u64(what)?;
        let remaining = self.remaining();
        if len > remaining {
            return Err(GgufError::StringTooLong {
                what,
                offset,
                len,
                remaining,
            });
        }
        // len <= remaining <= usize::MAX, so the cast is lossless.
        self.take(len as usize, what)
    }

    /// Reads a count and rejects it unless `count * min_size` bytes could still follow.
    fn count(&mut self, what: &'static str, min_size: u64, limit: u64) -> Result<u64, GgufError> {
        let count = self.u64(what)?;
        let fits = count
            .checked_mul(min_size)
            .is_some_and(|need| need <= self.remaining());
        if !fits || count > limit {
            return Err(GgufError::CountTooLarge { what, count });
        }
        Ok(count)
    }
}

fn utf8(bytes: &[u8], what: impl FnOnce() -> String) -> Result<String, GgufError> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s.to_owned()),
        Err(_) => Err(GgufError::InvalidUtf8 { what: what() }),
    }
}

/// Parses and validates a whole file.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, GgufError> {
    let mut cur = Cursor { buf, pos: 0 };
    if cur.take(4, "magic").map_err(|_| GgufError::NotGguf)? != b"GGUF" {
        return Err(GgufError::NotGguf);
    }
    let version = cur.u32("version")?;
    // v1 used u32 counts and lengths; nothing current writes it.
    if version != 2 && version != 3 {
        return Err(GgufError::UnsupportedVersion(version));
    }
    let n_tensors = cur.u64("tensor count")?;
    let n_kv = cur.count("metadata key/value", MIN_KV_BYTES, MAX_METADATA_VALUES)?;
    // The tensor count is checked against what remains after the header; the metadata in
    // between only makes the real check (below) stricter.
    if n_tensors
        .checked_mul(MIN_TENSOR_INFO_BYTES)
        .is_none_or(|need| need > cur.remaining())
        || n_tensors > MAX_TENSORS
    {
        return Err(GgufError::CountTooLarge {
            what: "tensor",
            count: n_tensors,
        });
    }

    // Metadata.
    let mut budget = MAX_METADATA_VALUES;
    // Capacities are capped: a count that passed the size check can still be millions in
    // a large file, and the vectors grow as real entries are parsed anyway.
    let mut metadata = Vec::with_capacity(n_kv.min(4096) as usize);
    let mut key_index = HashMap::with_capacity(n_kv.min(4096) as usize);
    for _ in 0..n_kv {
        let key_pos = cur.pos;
        let key = utf8(cur.string_bytes("metadata key")?, || {
            format!("metadata key at byte {key_pos}")
        })?;
        let ty = cur.u32("metadata value type")?;
        // Arrays before this pair may have used up the budget.
        budget = budget.checked_sub(1).ok_or(GgufError::CountTooLarge {
            what: "metadata value",
            count: MAX_METADATA_VALUES + 1,
        })?;
        let value = read_value(&mut cur, ty, &key, 0, &mut budget)?;
        check_known_key(&key, &value)?;
        if key_index.insert(key.clone(), metadata.len()).is_some() {
            return Err(GgufError::DuplicateKey(key));
        }
        metadata.push((key, value));
    }

    let alignment = match key_index.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(&i) => {
            // check_known_key guaranteed an integer
            let a = metadata[i].1.as_u64().unwrap_or(0);
            if !a.is_power_of_two() || a > 1 << 31 {
                return Err(GgufError::BadAlignment(a));
            }
            a
        }
    };

    // Tensor infos; offsets are relative to the data section until its start is known.
    if n_tensors
        .checked_mul(MIN_TENSOR_INFO_BYTES)
        .is_none_or(|need| need > cur.remaining())
    {
        return Err(GgufError::CountTooLarge {
            what: "tensor",
            count: n_tensors,
        });
    }
    let mut tensors = Vec::with_capacity(n_tensors.min(4096) as usize);
    let mut tensor_index = HashMap::with_capacity(n_tensors.min(4096) as usize);
    for _ in 0..n_tensors {
        let t = read_tensor_info(&mut cur)?;
        if tensor_index.insert(t.name.clone(), tensors.len()).is_some() {
            return Err(GgufError::DuplicateTensor(t.name));
        }
        tensors.push(t);
    }

    // cur.pos <= usize::MAX and alignment <= 2^31, so this cannot overflow u64.
    let data_offset = (cur.pos as u64).next_multiple_of(alignment);
    let file_len = buf.len() as u64;
    for t in &mut tensors {
        let rel = t.offset;
        if rel % alignment != 0 {
            return Err(GgufError::MisalignedTensor {
                tensor: t.name.clone(),
                offset: rel,
                alignment,
            });
        }
        let end = data_offset
            .checked_add(rel)
            .and_then(|s| s.checked_add(t.n_bytes));
        if end.is_none_or(|e| e > file_len) {
            return Err(GgufError::TensorOutOfBounds {
                tensor: t.name.clone(),
                offset: rel,
                n_bytes: t.n_bytes,
                file_len,
            });
        }
        t.offset = data_offset + rel;
    }

    // Overlap: sorted by start, each tensor must begin at or after the previous one's end.
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_unstable_by_key(|t| t.offset);
    for w in order.windows(2) {
        if w[1].offset < w[0].offset + w[0].n_bytes {
            return Err(GgufError::OverlappingTensors {
                a: w[0].name.clone(),
                b: w[1].name.clone(),
            });
        }
    }

    Ok(Parsed {
        version,
        alignment,
        data_offset,
        metadata,
        key_index,
        tensors,
        tensor_index,
    })
}

/// Keys whose type nao depends on; a wrong type here is a broken file, not a missing value.
fn check_known_key(key: &str, value: &Value) -> Result<(), GgufError> {
    let (ok, expected) = match key {
        "general.alignment" => (value.is_integer(), "integer"),
        "general.architecture" => (value.as_str().is_some(), "string"),
        _ => return Ok(()),
    };
    if ok {
        Ok(())
    } else {
        Err(wrong_type(key, expected, value))
    }
}

fn read_value(
    cur: &mut Cursor<'_>,
    ty: u32,
    key: &str,
    depth: usize,
    budget: &mut u64,
) -> Result<Value, GgufError> {
    const W: &str = "metadata value";
    Ok(match ty {
        type_id::U8 => Value::U8(cur.u8(W)?),
        type_id::I8 => Value::I8(cur.u8(W)? as i8),
        type_id::U16 => Value::U16(cur.u16(W)?),
        type_id::I16 => Value::I16(cur.u16(W)? as i16),
        type_id::U32 => Value::U32(cur.u32(W)?),
        type_id::I32 => Value::I32(cur.u32(W)? as i32),
        type_id::U64 => Value::U64(cur.u64(W)?),
        type_id::I64 => Value::I64(cur.u64(W)? as i64),
        type_id::F32 => Value::F32(f32::from_bits(cur.u32(W)?)),
        type_id::F64 => Value::F64(f64::from_bits(cur.u64(W)?)),
        type_id::BOOL => match cur.u8(W)? {
            0 => Value::Bool(false),
            1 => Value::Bool(true),
            byte => {
                return Err(GgufError::BadBool {
                    key: key.to_owned(),
                    byte,
                })
            }
        },
        type_id::STRING => {
            let bytes = cur.string_bytes("metadata string")?;
            Value::String(utf8(bytes, || format!("value of metadata key {key:?}"))?)
        }
        type_id::ARRAY => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(GgufError::ArrayTooDeep {
                    key: key.to_owned(),
                    limit: MAX_ARRAY_DEPTH,
                });
            }
            let elem_ty = cur.u32("array element type")?;
            let min = min_encoded_size(elem_ty).ok_or_else(|| GgufError::BadValueType {
                key: key.to_owned(),
                type_id: elem_ty,
            })?;
            let n = cur.count("array element", min, *budget)?;
            *budget -= n;
            // n * min <= remaining bytes, so every allocation is bounded by the file size.
            Value::Array(read_array(cur, elem_ty, n as usize, key, depth, budget)?)
        }
        _ => {
            return Err(GgufError::BadValueType {
                key: key.to_owned(),
                type_id: ty,
            })
        }
    })
}

/// The `n` elements of an array whose element type `elem_ty` is known to be valid.
fn read_array(
    cur: &mut Cursor<'_>,
    elem_ty: u32,
    n: usize,
    key: &str,
    depth: usize,
    budget: &mut u64,
) -> Result<Array, GgufError> {
    const W: &str = "array element";
    fn many<T>(
        n: usize,
        mut one: impl FnMut() -> Result<T, GgufError>,
    ) -> Result<Vec<T>, GgufError> {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(one()?);
        }
        Ok(v)
    }
    Ok(match elem_ty {
        type_id::U8 => Array::U8(many(n, || cur.u8(W))?),
        type_id::I8 => Array::I8(many(n, || Ok(cur.u8(W)? as i8))?),
        type_id::U16 => Array::U16(many(n, || cur.u16(W))?),
        type_id::I16 => Array::I16(many(n, || Ok(cur.u16(W)? as i16))?),
        type_id::U32 => Array::U32(many(n, || cur.u32(W))?),
        type_id::I32 => Array::I32(many(n, || Ok(cur.u32(W)? as i32))?),
        type_id::U64 => Array::U64(many(n, || cur.u64(W))?),
        type_id::I64 => Array::I64(many(n, || Ok(cur.u64(W)? as i64))?),
        type_id::F32 => Array::F32(many(n, || Ok(f32::from_bits(cur.u32(W)?)))?),
        type_id::F64 => Array::F64(many(n, || Ok(f64::from_bits(cur.u64(W)?)))?),
        type_id::BOOL => Array::Bool(many(n, || match cur.u8(W)? {
            0 => Ok(false),
            1 => Ok(true),
            byte => Err(GgufError::BadBool {
                key: key.to_owned(),
                byte,
            }),
        })?),
        type_id::STRING => {
            let mut out = Strings::with_capacity(n);
            for _ in 0..n {
                let bytes = cur.string_bytes("metadata string")?;
                let s = std::str::from_utf8(bytes).map_err(|_| GgufError::InvalidUtf8 {
                    what: format!("value of metadata key {key:?}"),
                })?;
                out.push(s);
            }
            Array::String(out)
        }
        type_id::ARRAY => Array::Array(many(n, || {
            match read_value(cur, elem_ty, key, depth + 1, budget)? {
                Value::Array(a) => Ok(a),
                // read_value of type `array` returns an array.
                other => Err(GgufError::BadValueType {
                    key: key.to_owned(),
                    type_id: other.type_id(),
                }),
            }
        })?),
        _ => {
            return Err(GgufError::BadValueType {
                key: key.to_owned(),
                type_id: elem_ty,
            })
        }
    })
}

fn read_tensor_info(cur: &mut Cursor<'_>) -> Result<TensorInfo, GgufError> {
    let name_pos = cur.pos;
    let name = utf8(cur.string_bytes("tensor name")?, || {
        format!("tensor name at byte {name_pos}")
    })?;
    let n_dims = cur.u32("tensor dimension count")?;
    if n_dims > MAX_DIMS {
        return Err(GgufError::TooManyDims {
            tensor: name,
            n: n_dims,
        });
    }
    if n_dims == 0 {
        return Err(GgufError::NoDims { tensor: name });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for _ in 0..n_dims {
        dims.push(cur.u64("tensor dimensions")?);
    }
    let type_id = cur.u32("tensor type")?;
    let offset = cur.u64("tensor offset")?;

    let mut n_elements: u64 = 1;
    for &d in &dims {
        if d == 0 {
            return Err(GgufError::ZeroDim { tensor: name });
        }
        // ggml stores dims as int64_t: a "huge" u64 is a negative dim written by a broken tool.
        if d > i64::MAX as u64 {
            return Err(GgufError::NegativeDim {
                tensor: name,
                dim: d,
            });
        }
        n_elements = match n_elements.checked_mul(d) {
            Some(n) if n <= i64::MAX as u64 => n,
            _ => return Err(GgufError::ElementCountOverflow { tensor: name }),
        };
    }
    let Some(dtype) = DType::from_ggml_id(type_id) else {
        return Err(GgufError::UnknownTensorType {
            tensor: name,
            type_id,
        });
    };
    let block_size = dtype.block_size() as u64;
    if dims[0] % block_size != 0 {
        return Err(GgufError::NotWholeBlocks {
            tensor: name,
            dtype: dtype.name(),
            dim0: dims[0],
            block_size,
        });
    }
    let Some(n_bytes) = dtype.bytes_for(n_elements) else {
        return Err(GgufError::ElementCountOverflow { tensor: name });
    };
    Ok(TensorInfo {
        name,
        dims,
        dtype,
        offset,
        n_bytes,
    })
}
