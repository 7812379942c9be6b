//! Weights: `Linear` (a matrix of any stored type, plus optional bias), `Embedding`, and the
//! `Loader` that resolves tensor names and checks shapes once at load.

use crate::layers::Compute;
use crate::ModelError;
use nao_gguf::GgufFile;
use nao_kernels::matmul::{matmul, WeightView};
use nao_kernels::DType;
use std::ops::Range;
use std::sync::Arc;

/// Resolves tensors by name from a GGUF file, checking shapes.
pub struct Loader {
    pub file: Arc<GgufFile>,
}

impl Loader {
    pub fn new(file: Arc<GgufFile>) -> Loader {
        Loader { file }
    }

    fn info(&self, name: &str) -> Result<&nao_gguf::TensorInfo, ModelError> {
        self.file
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))
    }

    pub fn has(&self, name: &str) -> bool {
        self.file.tensor(name).is_some()
    }

    fn check_dims(
        &self,
        name: &str,
        expected: &[u64],
    ) -> Result<&nao_gguf::TensorInfo, ModelError> {
        let t = self.info(name)?;
        if t.dims != expected {
            return Err(ModelError::BadShape {
                tensor: name.to_string(),
                expected: expected.to_vec(),
                got: t.dims.clone(),
            });
        }
        Ok(t)
    }

    /// A `[rows, cols]` matrix (GGUF dims `[cols, rows]`), with `{name}.bias` when present.
    pub fn linear(&self, name: &str, cols: usize, rows: usize) -> Result<Linear, ModelError> {
        let wname = format!("{name}.weight");
        let t = self.check_dims(&wname, &[cols as u64, rows as u64])?;
        if matches!(
            t.dtype,
            DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::F64 | DType::Q8K
        ) {
            return Err(ModelError::UnsupportedType {
                tensor: wname,
                dtype: t.dtype,
            });
        }
        let start = t.offset as usize;
        let range = start..start + t.n_bytes as usize;
        let bias_name = format!("{name}.bias");
        let bias = if self.has(&bias_name) {
            Some(self.vector(&bias_name, rows)?)
        } else {
            None
        };
        Ok(Linear {
            file: Arc::clone(&self.file),
            range,
            dtype: t.dtype,
            rows,
            cols,
            bias,
        })
    }

    /// A 1-D tensor of `n` values, dequantized to f32 (norm weights, biases).
    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
        let t = self.check_dims(name, &[n as u64])?;
        let mut out = vec![0.0f32; n];
        nao_kernels::dequant::dequantize(t.dtype, self.file.tensor_data(t), &mut out)?;
        Ok(out)
    }

    /// Like [`Loader::vector`] but `None` when the tensor is absent.
    pub fn vector_opt(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>, ModelError> {
        if self.has(name) {
            self.vector(name, n).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// `y = x Wᵀ + b` for a weight matrix in any stored format.
pub struct Linear {
    file: Arc<GgufFile>,
    range: Range<usize>,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub bias: Option<Vec<f32>>,
}

impl Linear {
    fn view(&self) -> WeightView<'_> {
        WeightView {
            dtype: self.dtype,
            data: &self.file.data()[self.range.clone()],
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// Bytes of weights this layer reads per token.
    pub fn n_bytes(&self) -> usize {
        self.range.len()
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

    /// Allocating variant of [`Linear::forward`].
    pub fn apply(&self, x: &[f32], n: usize, c: &mut Compute) -> Result<Vec<f32>, ModelError> {
        let mut y = vec![0.0f32; n * self.rows];
        self.forward(x, n, &mut y, c)?;
        Ok(y)
    }

    /// Dequantizes row `r` into `out` (len `cols`): embedding lookup for tied weights.
    pub fn row(&self, r: usize, out: &mut [f32]) -> Result<(), ModelError> {
        let rb = self.view().row_bytes()?;
        let data = &self.file.data()[self.range.clone()];
        let bytes = data
            .get(r * rb..(r + 1) * rb)
            .ok_or(ModelError::TokenOutOfRange {
                id: r as u32,
                n_vocab: self.rows,
            })?;
        nao_kernels::dequant::dequantize(self.dtype, bytes, out)?;
        Ok(())
    }
}

/// Token embedding table `[n_vocab, n_embd]`, optionally scaled (Gemma multiplies by √n_embd).
pub struct Embedding {
    pub table: Linear,
    pub scale: f32,
}

impl Embedding {
    /// `[n_tokens, n_embd]` rows for `tokens`.
    pub fn forward(&self, tokens: &[u32]) -> Result<Vec<f32>, ModelError> {
        let d = self.table.cols;
        let mut x = vec![0.0f32; tokens.len() * d];
        for (i, &t) in tokens.iter().enumerate() {
            if t as usize >= self.table.rows {
                return Err(ModelError::TokenOutOfRange {
                    id: t,
                    n_vocab: self.table.rows,
                });
            }
            let row = &mut x[i * d..(i + 1) * d];
            self.table.row(t as usize, row)?;
            if self.scale != 1.0 {
                row.iter_mut().for_each(|v| *v *= self.scale);
            }
        }
        Ok(x)
    }
}

/// Tensor names of block `il` (`blk.{il}.{name}`), resolved once at load.
pub fn blk(il: usize, name: &str) -> String {
    format!("blk.{il}.{name}")
}
