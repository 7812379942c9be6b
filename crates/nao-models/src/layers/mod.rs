//! Shared layers. Model files compose these; they never touch kernels or formats directly.

mod attention;
mod compute;
mod decoder;
pub mod encoder;
pub mod kv;
mod linear;
mod mlp;
pub mod standard;

pub use attention::{Attention, AttnShape};
pub use compute::Compute;
pub use decoder::{Block, Decoder};
pub use kv::{KvCache, KvPool, LayerCache, Logits, SeqBatch};
pub use linear::{blk, Embedding, Linear, Loader, Naming};
pub use mlp::{Activation, Mlp};
