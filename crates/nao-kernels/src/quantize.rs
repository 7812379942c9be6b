//! On-the-fly 8-bit quantization of activation rows (Q8_0, Q8_K).
