//! Building GGUF files in memory: well-formed ones for tests and tiny random-weight models,
//! and deliberately broken ones for the malformed-input tests.
//!
//! The happy path is a chain:
//! ```
//! use nao_gguf::{writer::GgufWriter, GgufFile};
//! use nao_kernels::DType;
//! let bytes = GgufWriter::new(3)
//!     .kv("general.architecture", "qwen2")
//!     .kv("qwen2.block_count", 2u32)
//!     .tensor_f32("x", &[4, 2], &[0.0; 8])
//!     .tensor("y", DType::F16, &[2], vec![0u8; 4])
//!     .to_bytes();
//! let f = GgufFile::from_bytes(bytes).unwrap();
//! assert_eq!(f.tensor("x").unwrap().n_bytes, 32);
//! ```
//! Breaking a file: [`GgufWriter::raw_kv`] writes any key bytes, type id and payload;
//! [`RawTensor`] writes any name, dim count, dims, type id and offset; the header counts,
//! magic and version can be overridden; and the `put_*` helpers build raw payloads. The
//! writer never validates: whatever it is told is what lands in the file.

use nao_kernels::DType;

use crate::reader::DEFAULT_ALIGNMENT;
use crate::value::{Array, Value};

/// Appends a little-endian u32.
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a little-endian u64.
pub fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a GGUF string: u64 length, then the bytes (which need not be UTF-8).
pub fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// Appends the payload of `v` (without its type id).
pub fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.push(*x as u8),
        Value::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => put_u32(out, *x),
        Value::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::U64(x) => put_u64(out, *x),
        Value::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => out.push(u8::from(*x)),
        Value::String(s) => put_string(out, s.as_bytes()),
        Value::Array(a) => put_array(out, a),
    }
}

/// Appends an array payload: element type, count, elements.
pub fn put_array(out: &mut Vec<u8>, a: &Array) {
    fn all<T: Copy>(out: &mut Vec<u8>, v: &[T], f: impl Fn(&mut Vec<u8>, T)) {
        put_u64(out, v.len() as u64);
        for &x in v {
            f(out, x);
        }
    }
    put_u32(out, a.elem_type_id());
    match a {
        Array::U8(v) => all(out, v, |o, x| o.push(x)),
        Array::I8(v) => all(out, v, |o, x| o.push(x as u8)),
        Array::U16(v) => all(out, v, |o, x| o.extend_from_slice(&x.to_le_bytes())),
        Array::I16(v) => all(out, v, |o, x| o.extend_from_slice(&x.to_le_bytes())),
        Array::U32(v) => all(out, v, put_u32),
        Array::I32(v) => all(out, v, |o, x| o.extend_from_slice(&x.to_le_bytes())),
        Array::U64(v) => all(out, v, put_u64),
        Array::I64(v) => all(out, v, |o, x| o.extend_from_slice(&x.to_le_bytes())),
        Array::F32(v) => all(out, v, |o, x| o.extend_from_slice(&x.to_le_bytes())),
        Array::F64(v) => all(out, v, |o, x| o.extend_from_slice(&x.to_le_bytes())),
        Array::Bool(v) => all(out, v, |o, x| o.push(u8::from(x))),
        Array::String(v) => {
            put_u64(out, v.len() as u64);
            for s in v.iter() {
                put_string(out, s.as_bytes());
            }
        }
        Array::Array(v) => {
            put_u64(out, v.len() as u64);
            for a in v {
                put_array(out, a);
            }
        }
    }
}

/// A tensor info written exactly as given, plus the data placed for it.
#[derive(Debug, Clone)]
pub struct RawTensor {
    /// Name bytes (need not be UTF-8).
    pub name: Vec<u8>,
    /// The dimension count written; normally `dims.len()`.
    pub n_dims: u32,
    pub dims: Vec<u64>,
    pub type_id: u32,
    /// Offset written into the info, relative to the data section. `None`: the offset at
    /// which the writer actually places `data`. Data is always laid out sequentially, so an
    /// override only changes what the header claims.
    pub offset: Option<u64>,
    pub data: Vec<u8>,
}

impl RawTensor {
    /// A well-formed tensor, to be edited field by field.
    pub fn new(name: &str, dtype: DType, dims: &[u64], data: impl Into<Vec<u8>>) -> RawTensor {
        RawTensor {
            name: name.as_bytes().to_vec(),
            n_dims: dims.len() as u32,
            dims: dims.to_vec(),
            type_id: dtype.ggml_id(),
            offset: None,
            data: data.into(),
        }
    }
}

/// Builds a GGUF file in memory. See the module docs.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    magic: [u8; 4],
    version: u32,
    alignment: u64,
    tensor_count: Option<u64>,
    kv_count: Option<u64>,
    /// Each pair pre-encoded: key string, type id, payload.
    kvs: Vec<Vec<u8>>,
    tensors: Vec<RawTensor>,
}

impl GgufWriter {
    /// An empty file of the given version (2 and 3 are valid; any other is written as asked).
    pub fn new(version: u32) -> GgufWriter {
        GgufWriter {
            magic: *b"GGUF",
            version,
            alignment: DEFAULT_ALIGNMENT,
            tensor_count: None,
            kv_count: None,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// Adds a key/value pair. A `general.alignment` that is a power of two also sets the
    /// layout alignment, so the file stays consistent with what it declares.
    pub fn kv(mut self, key: &str, value: impl Into<Value>) -> GgufWriter {
        self.push_kv(key, value);
        self
    }

    /// [`GgufWriter::kv`] through a mutable reference, for loops.
    pub fn push_kv(&mut self, key: &str, value: impl Into<Value>) -> &mut GgufWriter {
        let value = value.into();
        if key == "general.alignment" {
            if let Some(a) = value.as_u64().filter(|a| a.is_power_of_two()) {
                self.alignment = a;
            }
        }
        let mut payload = Vec::new();
        put_value(&mut payload, &value);
        self.push_raw_kv(key.as_bytes(), value.type_id(), &payload)
    }

    /// Sets the layout alignment and writes it as `general.alignment` (u32).
    pub fn alignment(self, alignment: u32) -> GgufWriter {
        self.kv("general.alignment", alignment)
    }

    /// Sets only the alignment used to lay out data, without writing any key (for files
    /// whose declared alignment is broken or deliberately absent).
    pub fn layout_alignment(mut self, alignment: u64) -> GgufWriter {
        self.alignment = alignment.max(1);
        self
    }

    /// Writes key bytes, a type id and a payload verbatim.
    pub fn raw_kv(mut self, key: &[u8], type_id: u32, payload: &[u8]) -> GgufWriter {
        self.push_raw_kv(key, type_id, payload);
        self
    }

    pub fn push_raw_kv(&mut self, key: &[u8], type_id: u32, payload: &[u8]) -> &mut GgufWriter {
        let mut kv = Vec::with_capacity(key.len() + 12 + payload.len());
        put_string(&mut kv, key);
        put_u32(&mut kv, type_id);
        kv.extend_from_slice(payload);
        self.kvs.push(kv);
        self
    }

    /// Appends `bytes` verbatim as one key/value entry (e.g. a key whose length field lies).
    pub fn raw_kv_bytes(mut self, bytes: &[u8]) -> GgufWriter {
        self.kvs.push(bytes.to_vec());
        self
    }

    /// Adds a tensor; `data` is written as given (its length is not checked against dims).
    pub fn tensor(
        mut self,
        name: &str,
        dtype: DType,
        dims: &[u64],
        data: impl Into<Vec<u8>>,
    ) -> GgufWriter {
        self.push_tensor(name, dtype, dims, data);
        self
    }

    pub fn push_tensor(
        &mut self,
        name: &str,
        dtype: DType,
        dims: &[u64],
        data: impl Into<Vec<u8>>,
    ) -> &mut GgufWriter {
        self.tensors.push(RawTensor::new(name, dtype, dims, data));
        self
    }

    /// Adds an F32 tensor from values.
    pub fn tensor_f32(self, name: &str, dims: &[u64], values: &[f32]) -> GgufWriter {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.tensor(name, DType::F32, dims, bytes)
    }

    /// Adds a tensor info written exactly as given.
    pub fn raw_tensor(mut self, t: RawTensor) -> GgufWriter {
        self.tensors.push(t);
        self
    }

    pub fn magic(mut self, magic: [u8; 4]) -> GgufWriter {
        self.magic = magic;
        self
    }

    /// Writes `n` as the tensor count instead of the real one.
    pub fn tensor_count(mut self, n: u64) -> GgufWriter {
        self.tensor_count = Some(n);
        self
    }

    /// Writes `n` as the key/value count instead of the real one.
    pub fn kv_count(mut self, n: u64) -> GgufWriter {
        self.kv_count = Some(n);
        self
    }

    /// The file bytes: header, key/values, tensor infos, padding to the alignment, then each
    /// tensor's data at the next aligned offset (no padding after the last one).
    pub fn to_bytes(&self) -> Vec<u8> {
        let align = |x: u64| x.next_multiple_of(self.alignment) as usize;
        // Where each tensor's data goes, relative to the data section.
        let mut offsets = Vec::with_capacity(self.tensors.len());
        let mut data_len = 0usize;
        for t in &self.tensors {
            let at = align(data_len as u64);
            offsets.push(at);
            data_len = at + t.data.len();
        }

        let mut out = Vec::new();
        out.extend_from_slice(&self.magic);
        put_u32(&mut out, self.version);
        put_u64(
            &mut out,
            self.tensor_count.unwrap_or(self.tensors.len() as u64),
        );
        put_u64(&mut out, self.kv_count.unwrap_or(self.kvs.len() as u64));
        for kv in &self.kvs {
            out.extend_from_slice(kv);
        }
        for (t, &at) in self.tensors.iter().zip(&offsets) {
            put_string(&mut out, &t.name);
            put_u32(&mut out, t.n_dims);
            for &d in &t.dims {
                put_u64(&mut out, d);
            }
            put_u32(&mut out, t.type_id);
            put_u64(&mut out, t.offset.unwrap_or(at as u64));
        }
        if !self.tensors.is_empty() {
            let data_start = align(out.len() as u64);
            out.resize(data_start + data_len, 0);
            for (t, &at) in self.tensors.iter().zip(&offsets) {
                out[data_start + at..][..t.data.len()].copy_from_slice(&t.data);
            }
        }
        out
    }

    /// Writes [`GgufWriter::to_bytes`] to `path`.
    pub fn write_to(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        std::fs::write(path, self.to_bytes())
    }
}
