//! Dev check: compare quantized dot kernels with dequantize+f32 dot on real tensors.
use nao_kernels::dot::{vec_dot, vec_dot_scalar, QuantizedActs};
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage")?;
    let f = nao_gguf::GgufFile::open(path)?;
    let mut seen = std::collections::HashSet::new();
    for t in f.tensors() {
        if t.dims.len() != 2 { continue; } let _ = seen.insert(t.dtype);
        let cols = t.dims[0] as usize;
        let rb = t.dtype.bytes_for(cols as u64).ok_or("x")? as usize;
        let rows = (t.dims[1] as usize).min(64);
        let mut worst = 0f64;
        for r in 0..rows {
        let row = &f.tensor_data(t)[r*rb..(r+1)*rb];
        let x: Vec<f32> = (0..cols).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0)).collect();
        let mut w = vec![0f32; cols];
        nao_kernels::dequant::dequantize(t.dtype, row, &mut w)?;
        let reff: f64 = w.iter().zip(&x).map(|(a, b)| *a as f64 * *b as f64).sum();
        let mut acts = QuantizedActs::new();
        acts.quantize(t.dtype, &x, 1, cols)?;
        let fast = vec_dot(t.dtype, cols, row, acts.row(0))?;
        let slow = vec_dot_scalar(t.dtype, cols, row, acts.row(0))?;
        let scale: f64 = w.iter().zip(&x).map(|(a, b)| (*a as f64 * *b as f64).abs()).sum();
        let e = ((fast as f64 - reff).abs() / scale).max((slow as f64 - reff).abs() / scale);
        if e > worst { worst = e; }
        }
        println!("{} {}: worst rel err {worst:.2e}", t.name, t.dtype);
    }
    Ok(())
}
