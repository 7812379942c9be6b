//! Weights: `Linear` (a matrix of any stored type, plus optional bias), `Embedding`, and the
//! `Loader` that resolves tensor names and checks shapes once at load.
//!
//! A `Loader` reads from a GGUF file or a Hugging Face safetensors checkpoint (one file or
//! several shards). Model files ask for llama.cpp's tensor names (`blk.N.attn_q`,
//! `token_embd`, …) whatever the source; a decoder checkpoint is read through
//! [`Naming::HfDecoder`], which maps each name to its transformers spelling
//! ([`crate::hf::tensor_name`]). Encoders that ask for transformers names directly (BERT)
//! use [`Naming::AsStored`].
//!
//! A weight's bytes are borrowed from the source's mapping when they are aligned for their
//! element type: always for GGUF (the format aligns tensor data), and for safetensors in the
//! common case (writers pad the header to 8 bytes). safetensors offsets carry no alignment
//! guarantee, so a misaligned tensor is copied once at load into an owned, aligned buffer.

use crate::layers::Compute;
use crate::ModelError;
use half::{bf16, f16};
use nao_gguf::{GgufFile, Safetensors, StDtype, StTensor, TensorInfo};
use nao_kernels::cast::{as_bytes, cast_slice};
use nao_kernels::matmul::{matmul, WeightView};
use nao_kernels::ops::RopeStyle;
use nao_kernels::packed::{matmul_packed, PackedWeight};
use nao_kernels::DType;
use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;

/// Where a model's tensors are stored.
#[derive(Debug, Clone)]
enum TensorSource {
    Gguf(Arc<GgufFile>),
    Safetensors(Arc<Safetensors>),
}

/// How the names model code asks for become names in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// Looked up as given.
    AsStored,
    /// llama.cpp decoder names mapped to Hugging Face ones
    /// (`blk.0.attn_q.weight` → `model.layers.0.self_attn.q_proj.weight`); with `tied`,
    /// `output.weight` is absent so the head reuses the embedding table.
    HfDecoder { tied: bool },
}

/// Resolves tensors by name from a [`TensorSource`], checking shapes.
pub struct Loader {
    src: TensorSource,
    naming: Naming,
}

/// A tensor as found in the source.
enum Found<'a> {
    Gguf(&'a TensorInfo),
    St { shard: usize, t: &'a StTensor },
}

impl Found<'_> {
    /// Dims in the source's own order (GGUF: innermost first; safetensors: outermost first).
    fn dims(&self) -> &[u64] {
        match self {
            Found::Gguf(t) => &t.dims,
            Found::St { t, .. } => &t.shape,
        }
    }
}

impl Loader {
    /// Tensors of a GGUF file, by their GGUF names.
    pub fn new(file: Arc<GgufFile>) -> Loader {
        Loader {
            src: TensorSource::Gguf(file),
            naming: Naming::AsStored,
        }
    }

    /// Tensors of a safetensors checkpoint, named as `naming` says.
    pub fn safetensors(st: Arc<Safetensors>, naming: Naming) -> Loader {
        Loader {
            src: TensorSource::Safetensors(st),
            naming,
        }
    }

    /// The name `name` has in the source (`None`: the source has no such tensor by design).
    fn source_name<'n>(&self, name: &'n str) -> Option<Cow<'n, str>> {
        match self.naming {
            Naming::AsStored => Some(Cow::Borrowed(name)),
            Naming::HfDecoder { tied } => crate::hf::tensor_name(name, tied).map(Cow::Owned),
        }
    }

    /// The tensor model code calls `name`, and its name in the source (for errors).
    fn find(&self, name: &str) -> Result<(String, Found<'_>), ModelError> {
        let src_name = self.source_name(name);
        let lookup = |n: &str| match &self.src {
            TensorSource::Gguf(f) => f.tensor(n).map(Found::Gguf),
            TensorSource::Safetensors(st) => st.locate(n).map(|(shard, t)| Found::St { shard, t }),
        };
        let found = src_name.as_deref().and_then(|n| {
            lookup(n).or_else(|| match self.naming {
                // Checkpoints saved from the bare transformer (`Qwen3Model`, as
                // Qwen3-Embedding's are) name its tensors without the `model.` prefix.
                Naming::HfDecoder { .. } => n.strip_prefix("model.").and_then(lookup),
                Naming::AsStored => None,
            })
        });
        let src_name = src_name.map_or_else(|| name.to_string(), Cow::into_owned);
        match found {
            Some(f) => Ok((src_name, f)),
            None => Err(ModelError::MissingTensor(src_name)),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.find(name).is_ok()
    }

    /// Finds `name` and checks its shape, given row-major (outermost first, PyTorch's
    /// order); errors report shapes in the source's own order.
    fn check(&self, name: &str, shape: &[u64]) -> Result<(String, Found<'_>), ModelError> {
        let (src_name, f) = self.find(name)?;
        let expected: Vec<u64> = match f {
            Found::Gguf(_) => shape.iter().rev().copied().collect(),
            Found::St { .. } => shape.to_vec(),
        };
        if f.dims() != expected {
            return Err(ModelError::BadShape {
                tensor: src_name,
                expected,
                got: f.dims().to_vec(),
            });
        }
        Ok((src_name, f))
    }

    /// A `[rows, cols]` matrix `{name}.weight` (GGUF dims `[cols, rows]`), with
    /// `{name}.bias` when present.
    ///
    /// Q4_0/Q5_0/Q8_0/Q4_K weights of the repeating blocks (`blk.*`) are repacked into the
    /// 16-row interleaved layout of [`nao_kernels::packed`] where the CPU has its kernel
    /// (same size, several times faster per token), and the file's pages for them are
    /// released. Other matrices (the embedding table) stay mapped; see
    /// [`Loader::output_head`] for the output projection.
    pub fn linear(&self, name: &str, cols: usize, rows: usize) -> Result<Linear, ModelError> {
        self.load_linear(name, cols, rows, name.starts_with("blk."))
    }

    /// The output projection: [`Loader::linear`], repacked like the blocks' weights. When it
    /// is tied to the embedding table, the table reads its rows from the same repacked copy
    /// ([`Linear::shared`]), so resident memory holds the matrix once.
    pub fn output_head(&self, name: &str, cols: usize, rows: usize) -> Result<Linear, ModelError> {
        self.load_linear(name, cols, rows, true)
    }

    fn load_linear(
        &self,
        name: &str,
        cols: usize,
        rows: usize,
        repack: bool,
    ) -> Result<Linear, ModelError> {
        let (src_name, f) = self.check(&format!("{name}.weight"), &[rows as u64, cols as u64])?;
        let unsupported = |dtype: &str| ModelError::UnsupportedType {
            tensor: src_name.clone(),
            dtype: dtype.to_string(),
        };
        let (dtype, bytes) = match (&self.src, f) {
            (TensorSource::Gguf(file), Found::Gguf(t)) => {
                if matches!(
                    t.dtype,
                    DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::F64 | DType::Q8K
                ) {
                    return Err(unsupported(t.dtype.name()));
                }
                let start = t.offset as usize;
                let range = start..start + t.n_bytes as usize;
                let bytes = WeightBytes::Gguf {
                    file: Arc::clone(file),
                    range,
                };
                (t.dtype, bytes)
            }
            (TensorSource::Safetensors(st), Found::St { shard, t }) => {
                let raw = st.shards().get(shard).map_or(&[][..], |s| s.tensor_data(t));
                let owned = match t.dtype {
                    StDtype::F32 => cast_slice::<f32>(raw)
                        .is_none()
                        .then(|| Owned::F32(le_values(raw, f32::from_le_bytes))),
                    StDtype::F16 => cast_slice::<f16>(raw)
                        .is_none()
                        .then(|| Owned::F16(le_values(raw, f16::from_le_bytes))),
                    StDtype::BF16 => cast_slice::<bf16>(raw)
                        .is_none()
                        .then(|| Owned::BF16(le_values(raw, bf16::from_le_bytes))),
                    other => return Err(unsupported(other.name())),
                };
                let dtype = t
                    .dtype
                    .to_dtype()
                    .ok_or_else(|| unsupported(t.dtype.name()))?;
                let bytes = match owned {
                    Some(o) => WeightBytes::Owned(o),
                    None => WeightBytes::St {
                        st: Arc::clone(st),
                        shard,
                        tensor: t.clone(),
                    },
                };
                (dtype, bytes)
            }
            // `find` only returns tensors of the loader's own source.
            _ => return Err(ModelError::MissingTensor(src_name)),
        };
        let bias_name = format!("{name}.bias");
        let bias = if self.has(&bias_name) {
            Some(self.vector(&bias_name, rows)?)
        } else {
            None
        };
        let mut lin = Linear {
            bytes,
            dtype,
            rows,
            cols,
            bias,
            packed: None,
        };
        if repack && nao_kernels::packed::available() {
            // The file's pages are dropped as rows are repacked (a tied output head is the
            // largest tensor, and resident memory should never hold two copies of it).
            let packed = match &lin.bytes {
                WeightBytes::Gguf { file, range } => PackedWeight::new_with(&lin.view(), |done| {
                    file.release(range.start + done.start..range.start + done.end)
                })?,
                _ => PackedWeight::new(&lin.view())?,
            };
            lin.packed = packed.map(Arc::new);
        }
        Ok(lin)
    }

    /// A 1-D tensor of `n` values, dequantized to f32 (norm weights, biases).
    pub fn vector(&self, name: &str, n: usize) -> Result<Vec<f32>, ModelError> {
        let (_, f) = self.check(name, &[n as u64])?;
        match (&self.src, f) {
            (TensorSource::Gguf(file), Found::Gguf(t)) => {
                let mut out = vec![0.0f32; n];
                nao_kernels::dequant::dequantize(t.dtype, file.tensor_data(t), &mut out)?;
                Ok(out)
            }
            (TensorSource::Safetensors(st), Found::St { shard, t }) => {
                let file = st
                    .shards()
                    .get(shard)
                    .ok_or_else(|| ModelError::MissingTensor(t.name.clone()))?;
                Ok(file.to_f32(t)?)
            }
            _ => Err(ModelError::MissingTensor(name.to_string())),
        }
    }

    /// Like [`Loader::vector`] but `None` when the tensor is absent.
    pub fn vector_opt(&self, name: &str, n: usize) -> Result<Option<Vec<f32>>, ModelError> {
        if self.has(name) {
            self.vector(name, n).map(Some)
        } else {
            Ok(None)
        }
    }

    /// How the rows of a Llama-family q/k projection pair up for RoPE. Hugging Face
    /// checkpoints rotate each head's halves (i, i + d/2) ("rotate_half"); llama.cpp's
    /// converter permutes those rows so that pairs are adjacent (2i, 2i+1)
    /// (`LlamaModel.permute` in `convert_hf_to_gguf.py`) and llama.cpp rotates adjacent
    /// pairs. Rotating the halves of unpermuted rows computes the same attention scores
    /// without copying the weights.
    pub fn llama_rope_style(&self) -> RopeStyle {
        match (&self.src, self.naming) {
            (TensorSource::Safetensors(_), Naming::HfDecoder { .. }) => RopeStyle::Neox,
            _ => RopeStyle::Normal,
        }
    }
}

/// Little-endian values of `raw` (whose length the reader checked against the shape).
fn le_values<T, const N: usize>(raw: &[u8], from_le: fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            from_le(b)
        })
        .collect()
}

/// An aligned copy of a weight whose mapped bytes were not aligned for its type.
enum Owned {
    F32(Vec<f32>),
    F16(Vec<f16>),
    BF16(Vec<bf16>),
}

/// Where a weight's bytes are.
enum WeightBytes {
    Gguf {
        file: Arc<GgufFile>,
        range: Range<usize>,
    },
    St {
        st: Arc<Safetensors>,
        shard: usize,
        tensor: StTensor,
    },
    Owned(Owned),
}

impl WeightBytes {
    fn get(&self) -> &[u8] {
        match self {
            WeightBytes::Gguf { file, range } => file.data().get(range.clone()).unwrap_or(&[]),
            WeightBytes::St { st, shard, tensor } => st
                .shards()
                .get(*shard)
                .map_or(&[][..], |f| f.tensor_data(tensor)),
            WeightBytes::Owned(Owned::F32(v)) => as_bytes(v),
            WeightBytes::Owned(Owned::F16(v)) => as_bytes(v),
            WeightBytes::Owned(Owned::BF16(v)) => as_bytes(v),
        }
    }
}

/// `y = x Wᵀ + b` for a weight matrix in any stored format.
pub struct Linear {
    bytes: WeightBytes,
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub bias: Option<Vec<f32>>,
    /// The weights in the interleaved layout, when repacked at load (shared with the
    /// embedding table when the output head is tied to it).
    packed: Option<Arc<PackedWeight>>,
}

impl Linear {
    fn view(&self) -> WeightView<'_> {
        WeightView {
            dtype: self.dtype,
            data: self.bytes.get(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// Bytes of weights this layer reads per token.
    pub fn n_bytes(&self) -> usize {
        self.bytes.get().len()
    }

    /// The same matrix as another `Linear` sharing this one's repacked copy (`None` when it
    /// was not repacked): a tied embedding table then looks rows up in the copy instead of
    /// faulting the file's released pages back in.
    pub fn shared(&self) -> Option<Linear> {
        let packed = self.packed.as_ref()?;
        let WeightBytes::Gguf { file, range } = &self.bytes else {
            return None;
        };
        Some(Linear {
            bytes: WeightBytes::Gguf {
                file: Arc::clone(file),
                range: range.clone(),
            },
            dtype: self.dtype,
            rows: self.rows,
            cols: self.cols,
            bias: self.bias.clone(),
            packed: Some(Arc::clone(packed)),
        })
    }

    /// Whether the weights are read in place from the source's mapping (no copy).
    pub fn is_mapped(&self) -> bool {
        self.packed.is_none() && !matches!(self.bytes, WeightBytes::Owned(_))
    }

    /// `x`: `[n, cols]` → `y`: `[n, rows]`.
    pub fn forward(
        &self,
        x: &[f32],
        n: usize,
        y: &mut [f32],
        c: &mut Compute,
    ) -> Result<(), ModelError> {
        match &self.packed {
            Some(p) => matmul_packed(p, x, n, y, &mut c.acts, &c.pool)?,
            None => matmul(&self.view(), x, n, y, &mut c.acts, &c.pool)?,
        }
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

    /// Dequantizes row `r` into `out` (len `cols`): embedding lookup.
    pub fn row(&self, r: usize, out: &mut [f32]) -> Result<(), ModelError> {
        if r >= self.rows {
            return Err(ModelError::TokenOutOfRange {
                id: r as u32,
                n_vocab: self.rows,
            });
        }
        if let Some(p) = &self.packed {
            p.dequantize_row(r, out)?;
            return Ok(());
        }
        let rb = self.view().row_bytes()?;
        let bytes =
            self.bytes
                .get()
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

#[cfg(test)]
mod tests {
    use super::*;
    use nao_gguf::SafetensorsFile;

    /// A safetensors file with one F16 `[2, 3]` tensor `w.weight`, its header padded to `header_len`
    /// bytes (the data section starts at `8 + header_len`).
    fn st_bytes(header_len: usize, values: &[f32]) -> Vec<u8> {
        let data: Vec<u8> = values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect();
        let mut header = format!(
            r#"{{"w.weight":{{"dtype":"F16","shape":[2,3],"data_offsets":[0,{}]}}}}"#,
            data.len()
        );
        assert!(header.len() <= header_len);
        header.push_str(&" ".repeat(header_len - header.len()));
        let mut out = (header_len as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(&data);
        out
    }

    fn loader(header_len: usize, values: &[f32]) -> Loader {
        let file = SafetensorsFile::from_bytes(&st_bytes(header_len, values)).unwrap();
        let st = Safetensors::from_files(vec![file]).unwrap();
        Loader::safetensors(Arc::new(st), Naming::AsStored)
    }

    #[test]
    fn aligned_weights_are_mapped_and_misaligned_ones_copied_with_the_same_values() {
        let w = [1.0, -2.0, 0.5, 3.0, 0.25, -1.0];
        let x = [1.0, 2.0, 3.0];
        let want = [1.0 - 4.0 + 1.5, 3.0 + 0.5 - 3.0];
        // 64 keeps the data 8-byte aligned; 65 puts it at an odd address.
        for (header_len, mapped) in [(64, true), (65, false)] {
            let l = loader(header_len, &w);
            let lin = l.linear("w", 3, 2).unwrap();
            assert_eq!(lin.is_mapped(), mapped, "header {header_len}");
            let mut c = Compute::new(1);
            assert_eq!(lin.apply(&x, 1, &mut c).unwrap(), want);
            let mut row = [0.0; 3];
            lin.row(1, &mut row).unwrap();
            assert_eq!(row, [3.0, 0.25, -1.0]);
        }
    }

    #[test]
    fn shapes_are_checked_and_reported_in_the_sources_order() {
        let l = loader(64, &[0.0; 6]);
        match l.linear("w", 2, 3).map(|_| ()) {
            Err(ModelError::BadShape {
                tensor,
                expected,
                got,
            }) => {
                assert_eq!(tensor, "w.weight");
                assert_eq!((expected, got), (vec![3, 2], vec![2, 3]));
            }
            other => panic!("expected BadShape, got {other:?}"),
        }
        assert!(matches!(
            l.linear("v", 3, 2).map(|_| ()),
            Err(ModelError::MissingTensor(n)) if n == "v.weight"
        ));
    }
}
