//! The paged KV cache: one pool of fixed-size blocks per model, shared by all sequences.
//!
//! Each layer stores keys and values for `n_blocks * block_size` slots. A sequence owns a
//! block table; its position `p` lives in slot `table[p / block_size] * block_size +
//! p % block_size` (vLLM's PagedAttention, https://arxiv.org/abs/2309.06180). Which blocks
//! a sequence holds is the engine's business; this module only stores and addresses them.
//! Keys and values are f16, as in llama.cpp's default cache.
//!
//! [`KvCache`] wraps a pool whose blocks all belong to one sequence, for the CLI, the
//! benchmark and the tests.

use crate::ModelError;
use half::f16;

/// Keys and values of one layer: `k` is `[n_slots, kv_dim]`, `v` is `[n_slots, kv_dim_v]`.
pub struct LayerCache {
    pub(crate) k: Vec<f16>,
    pub(crate) v: Vec<f16>,
}

/// The blocks of all layers.
pub struct KvPool {
    pub(crate) layers: Vec<LayerCache>,
    block_size: usize,
    n_blocks: usize,
    kv_dim: usize,
    kv_dim_v: usize,
}

impl KvPool {
    /// A pool of `n_blocks` blocks of `block_size` positions (a power of two) for `n_layer`
    /// layers with `kv_dim` key and `kv_dim_v` value values per position.
    pub fn new(
        n_layer: usize,
        n_blocks: usize,
        block_size: usize,
        kv_dim: usize,
        kv_dim_v: usize,
    ) -> Result<KvPool, ModelError> {
        if !block_size.is_power_of_two() {
            return Err(ModelError::BadConfig(format!(
                "KV block size {block_size} is not a power of two"
            )));
        }
        let slots = n_blocks
            .checked_mul(block_size)
            .filter(|s| s.checked_mul(kv_dim.max(kv_dim_v)).is_some())
            .ok_or_else(|| ModelError::BadConfig("KV cache size overflows".into()))?;
        let layers = (0..n_layer)
            .map(|_| LayerCache {
                k: vec![f16::ZERO; slots * kv_dim],
                v: vec![f16::ZERO; slots * kv_dim_v],
            })
            .collect();
        Ok(KvPool {
            layers,
            block_size,
            n_blocks,
            kv_dim,
            kv_dim_v,
        })
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn n_blocks(&self) -> usize {
        self.n_blocks
    }

    /// Bytes held by the cache.
    pub fn n_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.k.len() + l.v.len()) * std::mem::size_of::<f16>())
            .sum()
    }

    /// Bytes one position costs across all layers.
    pub fn bytes_per_position(n_layer: usize, kv_dim: usize, kv_dim_v: usize) -> usize {
        n_layer * (kv_dim + kv_dim_v) * std::mem::size_of::<f16>()
    }

    /// Checks that this pool was made for a model with these dimensions.
    pub(crate) fn check_shape(
        &self,
        n_layer: usize,
        kv_dim: usize,
        kv_dim_v: usize,
    ) -> Result<(), ModelError> {
        if self.layers.len() != n_layer || self.kv_dim != kv_dim || self.kv_dim_v != kv_dim_v {
            return Err(ModelError::BadConfig(
                "KV cache made for another model".into(),
            ));
        }
        Ok(())
    }
}

/// A pool whose blocks all belong to one sequence of up to `n_ctx` positions.
pub struct KvCache {
    pub pool: KvPool,
    pub table: Vec<u32>,
    pub n_ctx: usize,
}

impl KvCache {
    /// Block size of single-sequence caches.
    pub const BLOCK: usize = 32;

    pub fn new(
        n_layer: usize,
        n_ctx: usize,
        kv_dim: usize,
        kv_dim_v: usize,
    ) -> Result<KvCache, ModelError> {
        let n_blocks = n_ctx.div_ceil(Self::BLOCK);
        let pool = KvPool::new(n_layer, n_blocks, Self::BLOCK, kv_dim, kv_dim_v)?;
        let table = (0..n_blocks as u32).collect();
        Ok(KvCache { pool, table, n_ctx })
    }

    /// Bytes held by the cache.
    pub fn n_bytes(&self) -> usize {
        self.pool.n_bytes()
    }
}

/// Which logits a sequence of a batch wants back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    None,
    Last,
    All,
}

/// One sequence's share of a batch: `tokens` at positions `pos..pos + tokens.len()`, with
/// its KV in the blocks of `table`.
#[derive(Debug, Clone, Copy)]
pub struct SeqBatch<'a> {
    pub tokens: &'a [u32],
    pub pos: usize,
    pub table: &'a [u32],
    pub logits: Logits,
}

/// Per row of a batch: its position and where its sequence's KV lives.
pub(crate) struct Rows<'a> {
    /// `(sequence index, position)` per row.
    pub rows: Vec<(usize, usize)>,
    pub tables: Vec<&'a [u32]>,
    shift: u32,
    mask: usize,
}

impl<'a> Rows<'a> {
    /// Lays out `seqs` row by row after checking that every position has a block in its
    /// table and every block is in the pool.
    pub fn new(seqs: &[SeqBatch<'a>], pool: &KvPool) -> Result<Rows<'a>, ModelError> {
        let bs = pool.block_size;
        let mut rows = Vec::new();
        for (s, seq) in seqs.iter().enumerate() {
            let end = seq.pos + seq.tokens.len();
            let cap = seq.table.len() * bs;
            if end > cap {
                return Err(ModelError::ContextFull {
                    needed: end,
                    n_ctx: cap,
                });
            }
            let used = end.div_ceil(bs);
            if let Some(&b) = seq.table[..used]
                .iter()
                .find(|&&b| b as usize >= pool.n_blocks)
            {
                return Err(ModelError::BadConfig(format!(
                    "KV block {b} is outside the pool ({} blocks)",
                    pool.n_blocks
                )));
            }
            rows.extend((seq.pos..end).map(|p| (s, p)));
        }
        Ok(Rows {
            rows,
            tables: seqs.iter().map(|s| s.table).collect(),
            shift: bs.trailing_zeros(),
            mask: bs - 1,
        })
    }

    /// The cache slot of position `p` of sequence `s`.
    #[inline]
    pub fn slot(&self, s: usize, p: usize) -> usize {
        ((self.tables[s][p >> self.shift] as usize) << self.shift) | (p & self.mask)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }
}
