//! Scalar dequantization of every supported format to f32 (owned by the dequant work).
