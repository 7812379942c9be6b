//! Loads a GGUF model and prints the top-5 next tokens for the given prompt ids.
//! Usage: cargo run --release -p nao-models --example smoke -- MODEL.gguf ID ID ...
use nao_models::{load_model, Compute};
use std::sync::Arc;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).ok_or("usage: smoke MODEL ID...")?;
    let ids: Vec<u32> = args[2..]
        .iter()
        .map(|s| s.parse())
        .collect::<Result<_, _>>()?;
    let t0 = std::time::Instant::now();
    let file = Arc::new(nao_gguf::GgufFile::open(path)?);
    let model = load_model(file)?;
    eprintln!("loaded in {:?}", t0.elapsed());
    let mut c = Compute::new(
        std::env::var("NT")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2),
    );
    let mut cache = model.new_cache(256);
    let t0 = std::time::Instant::now();
    let logits = if std::env::var("ONEBYONE").is_ok() {
        let mut l = Vec::new();
        for (i, &t) in ids.iter().enumerate() {
            l = model.forward(&[t], i, &mut cache, &mut c, false)?;
        }
        l
    } else {
        model.forward(&ids, 0, &mut cache, &mut c, false)?
    };
    eprintln!("prefill {} tokens in {:?}", ids.len(), t0.elapsed());
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let lse = max
        + logits
            .iter()
            .map(|&l| ((l - max) as f64).exp())
            .sum::<f64>()
            .ln() as f32;
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    for &i in &idx[..5] {
        println!("{i} {:.4}", logits[i] - lse);
    }
    let mut tok = idx[0] as u32;
    let t0 = std::time::Instant::now();
    let n = 16;
    let mut out = vec![];
    for pos in ids.len()..ids.len() + n {
        out.push(tok);
        let l = model.forward(&[tok], pos, &mut cache, &mut c, false)?;
        tok = l
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i as u32)
            .unwrap_or(0);
    }
    let dt = t0.elapsed();
    println!("{out:?}");
    eprintln!(
        "decode {n} tokens: {:.2} tok/s",
        n as f64 / dt.as_secs_f64()
    );
    Ok(())
}
