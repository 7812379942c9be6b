//! Weights from Hugging Face safetensors checkpoints: [`StLoader`] resolves names and checks
//! shapes once at load, [`Dense`] is `y = x Wᵀ + b` over the same matmul kernels as
//! [`crate::layers::Linear`].
//!
//! Why a second weight type: `Linear` is tied to a GGUF file's mapping. A checkpoint's
//! tensors live in (possibly several) safetensors shards whose data offsets carry no
//! alignment guarantee, so a weight here is either borrowed from the mapping (aligned: zero
//! copy, the common case, since writers pad the header to 8 bytes) or copied once at load
//! into an owned, aligned buffer. Folding both into one `Linear` over a "tensor source" is
//! the natural next step once the GGUF side allows it.

use crate::layers::Compute;
use crate::ModelError;
use half::{bf16, f16};
use nao_gguf::{Safetensors, StDtype};
use nao_kernels::cast::{as_bytes, cast_slice};
use nao_kernels::matmul::{matmul, WeightView};
use nao_kernels::DType;
use std::sync::Arc;

/// Resolves tensors by name from a safetensors checkpoint, checking shapes.
pub struct StLoader {
    pub st: Arc<Safetensors>,
}

/// Where a weight's bytes are: borrowed from the mapping, or an aligned copy.
enum Bytes {
    Mapped(String),
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

/// A `[rows, cols]` weight matrix (F32, F16 or BF16) with an optional bias.
pub struct Dense {
    st: Arc<Safetensors>,
    bytes: Bytes,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub bias: Option<Vec<f32>>,
}

impl StLoader {
    pub fn new(st: Arc<Safetensors>) -> StLoader {
        StLoader { st }
    }

    pub fn has(&self, name: &str) -> bool {
        self.st.get(name).is_some()
    }

    fn check(&self, name: &str, shape: &[u64]) -> Result<StDtype, ModelError> {
        let (_, t) = self
            .st
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        if t.shape != shape {
            return Err(ModelError::BadShape {
                tensor: name.to_string(),
                expected: shape.to_vec(),
                got: t.shape.clone(),
            });
        }
        Ok(t.dtype)
    }

    /// `{name}.weight` as a `[rows, cols]` matrix, with `{name}.bias` when present.
    pub fn dense(&self, name: &str, rows: usize, cols: usize) -> Result<Dense, ModelError> {
        let wname = format!("{name}.weight");
        let mut d = self.matrix(&wname, rows, cols)?;
        let bname = format!("{name}.bias");
        if self.has(&bname) {
            d.bias = Some(self.vector(&bname, rows)?);
        }
        Ok(d)
    }

    /// The tensor `name` as a `[rows, cols]` matrix without bias (embedding tables).
    pub fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<Dense, ModelError> {
        let st_dtype = self.check(name, &[rows as u64, cols as u64])?;
        let unsupported = || ModelError::UnsupportedType {
            tensor: name.to_string(),
            dtype: st_dtype.to_dtype().unwrap_or(DType::I8),
        };
        let (file, t) = self
            .st
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        let raw = file.tensor_data(t);
        // Zero-copy when aligned for the element type, else one aligned copy.
        let (dtype, bytes) = match st_dtype {
            StDtype::F32 => match cast_slice::<f32>(raw) {
                Some(_) => (DType::F32, Bytes::Mapped(name.to_string())),
                None => (DType::F32, Bytes::F32(file.to_f32(t)?)),
            },
            StDtype::F16 => match cast_slice::<f16>(raw) {
                Some(_) => (DType::F16, Bytes::Mapped(name.to_string())),
                None => (DType::F16, Bytes::F16(le_u16(raw, f16::from_bits))),
            },
            StDtype::BF16 => match cast_slice::<bf16>(raw) {
                Some(_) => (DType::BF16, Bytes::Mapped(name.to_string())),
                None => (DType::BF16, Bytes::BF16(le_u16(raw, bf16::from_bits))),
            },
            _ => return Err(unsupported()),
        };
        Ok(Dense {
            st: Arc::clone(&self.st),
            bytes,
            dtype,
            rows,
            cols,
            bias: None,
        })
    }

    /// A 1-D tensor of `n` values as f32 (norm weights, biases).
    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
        self.check(name, &[n as u64])?;
        let (file, t) = self
            .st
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))?;
        Ok(file.to_f32(t)?)
    }
}

fn le_u16<T>(raw: &[u8], from_bits: fn(u16) -> T) -> Vec<T> {
    raw.chunks_exact(2)
        .map(|c| from_bits(u16::from_le_bytes([c[0], c[1]])))
        .collect()
}

impl Dense {
    /// The weight bytes, row-major `[rows, cols]`, aligned for the element type.
    fn data(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped(name) => self.st.get(name).map_or(&[][..], |(f, t)| f.tensor_data(t)),
            Bytes::F32(v) => as_bytes(v),
            Bytes::F16(v) => as_bytes(v),
            Bytes::BF16(v) => as_bytes(v),
        }
    }

    fn view(&self) -> WeightView<'_> {
        WeightView {
            dtype: self.dtype,
            data: self.data(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// `x`: `[n, cols]` → `y`: `[n, rows]`.
    pub fn forward(
        &self,
        x: &[f32],
        n: usize,
        y: &mut [f32],
        c: &mut Compute,
    ) -> Result<(), ModelError> {
        matmul(&self.view(), x, n, y, &mut c.acts, &c.pool)?;
        if let Some(b) = &self.bias {
            for row in y.chunks_exact_mut(self.rows) {
                nao_kernels::ops::add_assign(row, b);
            }
        }
        Ok(())
    }

    /// Allocating variant of [`Dense::forward`]: `[n, cols]` → `[n, rows]`.
    pub fn apply(&self, x: &[f32], n: usize, c: &mut Compute) -> Result<Vec<f32>, ModelError> {
        let mut y = vec![0.0f32; n * self.rows];
        self.forward(x, n, &mut y, c)?;
        Ok(y)
    }

    /// Row `r` as f32 into `out` (len `cols`): embedding lookup.
    pub fn row(&self, r: usize, out: &mut [f32]) -> Result<(), ModelError> {
        let rb = self.cols * self.dtype.block_bytes();
        let bytes = self
            .data()
            .get(r * rb..(r + 1) * rb)
            .ok_or(ModelError::TokenOutOfRange {
                id: r as u32,
                n_vocab: self.rows,
            })?;
        nao_kernels::dequant::dequantize(self.dtype, bytes, out)?;
        Ok(())
    }
}
