//! Quantized dot products: scalar twins and SIMD paths chosen by runtime detection.
