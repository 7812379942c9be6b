//! Element and block types, numbered as GGUF/ggml number them.
//!
//! The numbering and sizes come from ggml's `ggml_type` and `type_traits` table; the block
//! layouts themselves are in [`crate::blocks`].

use std::fmt;

/// A tensor element type as stored in a GGUF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    I8,
    I16,
    I32,
    I64,
    F64,
}

impl DType {
    /// The ggml type id, as written in GGUF tensor infos.
    pub fn ggml_id(self) -> u32 {
        match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q4_0 => 2,
            DType::Q4_1 => 3,
            DType::Q5_0 => 6,
            DType::Q5_1 => 7,
            DType::Q8_0 => 8,
            DType::Q8_1 => 9,
            DType::Q2K => 10,
            DType::Q3K => 11,
            DType::Q4K => 12,
            DType::Q5K => 13,
            DType::Q6K => 14,
            DType::Q8K => 15,
            DType::I8 => 24,
            DType::I16 => 25,
            DType::I32 => 26,
            DType::I64 => 27,
            DType::F64 => 28,
            DType::BF16 => 30,
        }
    }

    /// Maps a ggml type id to a known type; `None` for ids nao does not know (i-quants, etc.).
    pub fn from_ggml_id(id: u32) -> Option<DType> {
        Some(match id {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::Q4_0,
            3 => DType::Q4_1,
            6 => DType::Q5_0,
            7 => DType::Q5_1,
            8 => DType::Q8_0,
            9 => DType::Q8_1,
            10 => DType::Q2K,
            11 => DType::Q3K,
            12 => DType::Q4K,
            13 => DType::Q5K,
            14 => DType::Q6K,
            15 => DType::Q8K,
            24 => DType::I8,
            25 => DType::I16,
            26 => DType::I32,
            27 => DType::I64,
            28 => DType::F64,
            30 => DType::BF16,
            _ => return None,
        })
    }

    /// Number of elements in one block (1 for plain element types).
    pub fn block_size(self) -> usize {
        match self {
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 | DType::Q8_1 => 32,
            DType::Q2K | DType::Q3K | DType::Q4K | DType::Q5K | DType::Q6K | DType::Q8K => 256,
            _ => 1,
        }
    }

    /// Bytes in one block.
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 | DType::I16 => 2,
            DType::I8 => 1,
            DType::I64 | DType::F64 => 8,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q5_0 => 22,
            DType::Q5_1 => 24,
            DType::Q8_0 => 34,
            DType::Q8_1 => 36,
            DType::Q2K => 84,
            DType::Q3K => 110,
            DType::Q4K => 144,
            DType::Q5K => 176,
            DType::Q6K => 210,
            DType::Q8K => 292,
        }
    }

    /// Bytes needed for `n` elements, or `None` when `n` is not a whole number of blocks
    /// or the size overflows.
    pub fn bytes_for(self, n: u64) -> Option<u64> {
        let bs = self.block_size() as u64;
        if !n.is_multiple_of(bs) {
            return None;
        }
        (n / bs).checked_mul(self.block_bytes() as u64)
    }

    /// The ggml name (`q4_K`, `f16`, ...), as tools print it.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::Q4_0 => "q4_0",
            DType::Q4_1 => "q4_1",
            DType::Q5_0 => "q5_0",
            DType::Q5_1 => "q5_1",
            DType::Q8_0 => "q8_0",
            DType::Q8_1 => "q8_1",
            DType::Q2K => "q2_K",
            DType::Q3K => "q3_K",
            DType::Q4K => "q4_K",
            DType::Q5K => "q5_K",
            DType::Q6K => "q6_K",
            DType::Q8K => "q8_K",
            DType::I8 => "i8",
            DType::I16 => "i16",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::F64 => "f64",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for id in 0..64 {
            if let Some(t) = DType::from_ggml_id(id) {
                assert_eq!(t.ggml_id(), id);
            }
        }
        assert_eq!(DType::from_ggml_id(16), None);
    }

    #[test]
    fn sizes_match_blocks() {
        use crate::blocks::*;
        use std::mem::size_of;
        assert_eq!(DType::Q4_0.block_bytes(), size_of::<BlockQ4_0>());
        assert_eq!(DType::Q4_1.block_bytes(), size_of::<BlockQ4_1>());
        assert_eq!(DType::Q5_0.block_bytes(), size_of::<BlockQ5_0>());
        assert_eq!(DType::Q5_1.block_bytes(), size_of::<BlockQ5_1>());
        assert_eq!(DType::Q8_0.block_bytes(), size_of::<BlockQ8_0>());
        assert_eq!(DType::Q8_1.block_bytes(), size_of::<BlockQ8_1>());
        assert_eq!(DType::Q2K.block_bytes(), size_of::<BlockQ2K>());
        assert_eq!(DType::Q3K.block_bytes(), size_of::<BlockQ3K>());
        assert_eq!(DType::Q4K.block_bytes(), size_of::<BlockQ4K>());
        assert_eq!(DType::Q5K.block_bytes(), size_of::<BlockQ5K>());
        assert_eq!(DType::Q6K.block_bytes(), size_of::<BlockQ6K>());
        assert_eq!(DType::Q8K.block_bytes(), size_of::<BlockQ8K>());
        assert_eq!(DType::Q4K.bytes_for(512), Some(288));
        assert_eq!(DType::Q4K.bytes_for(100), None);
    }
}
