//! Dev check: batched matmul equals one-row-at-a-time matmul on real tensors.
use nao_kernels::dot::QuantizedActs;
use nao_kernels::matmul::{matmul, WeightView};
use nao_kernels::pool::ThreadPool;
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).ok_or("usage")?;
    let f = nao_gguf::GgufFile::open(path)?;
    let pool = ThreadPool::new(2);
    let mut acts = QuantizedActs::new();
    let mut seen = std::collections::HashSet::new();
    for t in f.tensors() {
        if t.dims.len() != 2 || !seen.insert(t.dtype) { continue; }
        let (cols, rows) = (t.dims[0] as usize, (t.dims[1] as usize).min(512));
        let rb = t.dtype.bytes_for(cols as u64).ok_or("x")? as usize;
        let w = WeightView { dtype: t.dtype, data: &f.tensor_data(t)[..rows * rb], rows, cols };
        let n = 3;
        let x: Vec<f32> = (0..n * cols).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0)).collect();
        let mut y = vec![0f32; n * rows];
        matmul(&w, &x, n, &mut y, &mut acts, &pool)?;
        let mut worst = 0f32;
        for i in 0..n {
            let mut y1 = vec![0f32; rows];
            matmul(&w, &x[i * cols..(i + 1) * cols], 1, &mut y1, &mut acts, &pool)?;
            for r in 0..rows { worst = worst.max((y1[r] - y[i * rows + r]).abs()); }
        }
        println!("{} {}: max diff {worst}", t.name, t.dtype);
    }
    Ok(())
}
