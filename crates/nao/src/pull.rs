//! `nao pull`: the command-line face of [`nao_store::pull`] (sources, resume and
//! verification live in the store crate; this file parses flags and reports).

use anyhow::Result;
use nao_store::{Digest, ModelName, PullOptions, PullSpec, Store};
use std::time::Instant;

#[derive(clap::Args)]
pub struct PullArgs {
    /// A known model name (`qwen2.5-coder:1.5b-q4_k_m`, `gemma3:270m-q4_k_m`), an http(s)
    /// URL of a model file, or a local file.
    source: String,
    /// Store it under this name (default: from the file name, tag `latest`).
    #[arg(long)]
    name: Option<String>,
    /// The sha256 the file must have, as `sha256:<64 hex digits>`.
    #[arg(long)]
    digest: Option<String>,
    /// For a local file: record it in place instead of copying it into the store.
    #[arg(long)]
    link: bool,
}

pub fn pull(a: PullArgs) -> Result<()> {
    let store = Store::open(Store::default_root()?)?;
    let spec = PullSpec::parse(&a.source)?;
    let opts = PullOptions {
        name: a.name.as_deref().map(ModelName::parse).transpose()?,
        digest: a.digest.as_deref().map(Digest::parse).transpose()?,
        link: a.link,
    };
    let t0 = Instant::now();
    let mut progress = crate::progress::TermProgress::new();
    let pulled = nao_store::pull(&store, &spec, &opts, &mut progress)?;
    let m = &pulled.manifest;
    if pulled.already {
        eprintln!("{} is already in the store", pulled.name);
    } else {
        eprintln!(
            "pulled {} in {:.1}s",
            pulled.name,
            t0.elapsed().as_secs_f64()
        );
    }
    outln!(
        "{}\t{}\t{}",
        pulled.name,
        m.digest,
        crate::cli::human_bytes(m.size)
    );
    Ok(())
}
