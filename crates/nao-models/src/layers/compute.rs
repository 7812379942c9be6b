//! Per-model compute state: the thread pool and reusable quantized-activation buffers.

use nao_kernels::dot::QuantizedActs;
use nao_kernels::pool::ThreadPool;

/// What a forward pass needs besides weights and the KV cache.
pub struct Compute {
    pub pool: ThreadPool,
    pub acts: QuantizedActs,
}

impl Compute {
    /// A compute context running on `n_threads` threads (the caller included).
    pub fn new(n_threads: usize) -> Compute {
        Compute {
            pool: ThreadPool::new(n_threads),
            acts: QuantizedActs::new(),
        }
    }

    pub fn n_threads(&self) -> usize {
        self.pool.n_threads()
    }
}
