//! nao-kernels: tensor formats and CPU compute.
//!
//! - [`amx`]: the AMX tile GEMM for K-quant prefill (x86-64 with AMX-INT8).
//! - [`attn`]: attention inner loops over an f16 KV cache (ggml flash-attention numerics).
//! - [`dtype`]: the element/block types GGUF files use, with their byte sizes.
//! - [`blocks`]: `#[repr(C)]` quantization blocks, byte-identical to ggml's layouts.
//! - [`cast`]: the one place byte slices become block slices (alignment and length checked).
//! - [`dequant`]: scalar dequantization of every format to f32.
//! - [`quantize`]: on-the-fly 8-bit quantization of activations (Q8_0, Q8_K).
//! - [`dot`]: quantized dot products (scalar twins + AVX2), picked once at start-up.
//! - [`ops`]: norms, RoPE, softmax, activations.
//! - [`pool`]: the spin-then-park thread pool.
//! - [`matmul`]: weight × activation products over the pool.
//! - [`gemm_f32`]: the cache-blocked, register-tiled f32 GEMM for float weights in prefill.
//! - [`packed`]: Q4_0/Q5_0/Q8_0 weights interleaved 16 rows at a time at load, and their matmul.
//! - [`probe`]: the memory-bandwidth probe behind roofline figures.

#[cfg(target_arch = "x86_64")]
pub mod amx;
pub mod attn;
pub mod blocks;
pub mod cast;
pub mod dequant;
pub mod dot;
pub mod dtype;
pub mod gemm_f32;
pub mod matmul;
pub mod ops;
pub mod packed;
pub mod pool;
pub mod probe;
pub mod quantize;

pub use dtype::DType;

/// Errors from kernel-level operations on raw tensor bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    #[error("unsupported tensor type {0}")]
    Unsupported(DType),
    #[error("{dtype}: {len} bytes is not a whole number of {block_bytes}-byte blocks")]
    BadLength {
        dtype: DType,
        len: usize,
        block_bytes: usize,
    },
    #[error("{dtype}: {n} elements is not a multiple of the block size {block}")]
    BadElementCount {
        dtype: DType,
        n: usize,
        block: usize,
    },
    #[error("tensor data is not aligned to {align} bytes for {dtype}")]
    Misaligned { dtype: DType, align: usize },
    #[error("buffer size mismatch: expected {expected}, got {got}")]
    SizeMismatch { expected: usize, got: usize },
}
