//! `nao list`, `nao rm`, `nao show`, `nao ps`, and resolving `-m NAME` to a file in the
//! store. A path that exists always wins over a store name, so existing scripts that pass
//! files keep working whatever the store holds.

use anyhow::{bail, Context, Result};
use nao_gguf::GgufFile;
use nao_store::{Health, ModelName, Source, Store};
use std::path::{Path, PathBuf};

/// The file to load for `-m ARG`: `ARG` itself when it exists, else the store's file for
/// the model named `ARG` (checked against its digest when it changed since last verified).
pub fn resolve_model(arg: &Path) -> Result<(PathBuf, Option<ModelName>)> {
    if arg.exists() {
        return Ok((arg.to_path_buf(), None));
    }
    let s = arg.to_string_lossy();
    let Ok(name) = ModelName::parse(&s) else {
        bail!("model file not found: {}", arg.display());
    };
    let store = Store::open(Store::default_root()?)?;
    if store.read_manifest(&name)?.is_none() {
        bail!(
            "model file not found: {} (and no model {name} in the store at {}; try `nao pull {s}`)",
            arg.display(),
            store.root().display()
        );
    }
    let (path, _) = store.resolve(&name, &mut crate::progress::TermProgress::new())?;
    Ok((path, Some(name)))
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Re-hash every model's file instead of trusting unchanged files.
    #[arg(long)]
    verify: bool,
}

pub fn list(a: ListArgs) -> Result<()> {
    let store = Store::open(Store::default_root()?)?;
    let mut progress = crate::progress::TermProgress::new();
    let models = store.list(a.verify, &mut progress)?;
    outln!(
        "{:<36} {:<14} {:>10}  {:<8} STATUS",
        "NAME",
        "ID",
        "SIZE",
        "SOURCE"
    );
    for l in models {
        let (id, size, source) = match &l.manifest {
            Some(m) => (
                m.digest.hex()[..12].to_string(),
                crate::cli::human_bytes(m.size),
                match m.source {
                    Source::File { .. } => "file",
                    Source::Link { .. } => "link",
                    Source::Url { .. } => "url",
                    Source::Pypi { .. } => "pypi",
                },
            ),
            None => ("?".into(), "?".into(), "?"),
        };
        let status = match &l.health {
            Health::Ok => "ok".to_string(),
            Health::Missing => "MISSING (file gone)".to_string(),
            Health::Damaged(why) => format!("DAMAGED ({why})"),
        };
        outln!(
            "{:<36} {id:<14} {size:>10}  {source:<8} {status}",
            l.name.to_string()
        );
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct RmArgs {
    /// Model names to remove.
    #[arg(required = true)]
    names: Vec<String>,
}

pub fn rm(a: RmArgs) -> Result<()> {
    let store = Store::open(Store::default_root()?)?;
    for n in &a.names {
        let name = ModelName::parse(n)?;
        let freed = store.remove(&name)?;
        outln!(
            "deleted {name}{}",
            if freed {
                ""
            } else {
                " (file kept: linked or shared)"
            }
        );
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct ShowArgs {
    /// A model name in the store, or a GGUF file.
    model: PathBuf,
    /// Print the whole chat template (default: its first lines).
    #[arg(long)]
    template: bool,
    /// Context size for the memory estimate (default: the training context, at most 4096).
    #[arg(short, long)]
    ctx: Option<usize>,
}

pub fn show(a: ShowArgs) -> Result<()> {
    let (path, name) = resolve_model(&a.model)?;
    let file = crate::cli::open(&path)?;
    let manifest = match &name {
        Some(n) => Store::open(Store::default_root()?)?.read_manifest(n)?,
        None => None,
    };
    if a.template {
        outln!("{}", crate::cli::chat_template_source(&file)?);
        return Ok(());
    }
    let arch = file.architecture()?;
    outln!(
        "  model:          {}",
        name.as_ref()
            .map_or_else(|| path.display().to_string(), |n| n.to_string())
    );
    outln!("  file:           {}", path.display());
    if let Some(m) = &manifest {
        outln!("  digest:         {}", m.digest);
        outln!("  source:         {}", describe_source(&m.source));
    }
    outln!("  architecture:   {arch}");
    let n_params: u64 = file.tensors().iter().map(|t| t.n_elements()).sum();
    outln!(
        "  parameters:     {n_params} ({:.2} B)",
        n_params as f64 / 1e9
    );
    outln!(
        "  quantization:   {}",
        crate::serve::quantization_name(&file)
    );
    let cfg = nao_models::ModelConfig::from_gguf(&file).ok();
    if let Some(c) = &cfg {
        outln!("  context length: {}", c.n_ctx_train);
    }
    outln!("  license:        {}", license(&file, manifest.as_ref()));
    let template = crate::cli::chat_template_source(&file)?;
    let lines: Vec<&str> = template.lines().collect();
    outln!(
        "  chat template:  ({} lines{})",
        lines.len(),
        if lines.len() > 8 {
            ", --template prints it all"
        } else {
            ""
        }
    );
    for l in lines.iter().take(8) {
        outln!("    {l}");
    }
    if let Some(c) = &cfg {
        let ctx = a.ctx.unwrap_or(c.n_ctx_train.min(4096));
        let plan = crate::memplan::estimate(&file, c, ctx);
        outln!("  memory at --ctx {ctx}: {}", plan.describe());
        if let Some(avail) = crate::memplan::available() {
            outln!(
                "  available now:  {} ({})",
                crate::cli::human_bytes(avail.bytes),
                avail.source
            );
        }
    }
    Ok(())
}

fn describe_source(s: &Source) -> String {
    match s {
        Source::File { path } => format!("copied from {}", path.display()),
        Source::Link { path } => format!("linked in place: {}", path.display()),
        Source::Url { url } => url.clone(),
        Source::Pypi { index, packages } => format!(
            "{} packages on {index} ({} …)",
            packages.len(),
            packages.first().map_or("", String::as_str)
        ),
    }
}

/// `general.license` from the file, else the catalog's note for this digest.
fn license(file: &GgufFile, m: Option<&nao_store::Manifest>) -> String {
    if let Ok(Some(l)) = file.get_str("general.license") {
        return l.to_string();
    }
    m.and_then(|m| {
        nao_store::pypi::catalog()
            .ok()?
            .into_iter()
            .find(|e| e.digest == m.digest && !e.license.is_empty())
            .map(|e| e.license)
    })
    .unwrap_or_else(|| "unknown (not in the file's metadata)".into())
}

#[derive(clap::Args)]
pub struct PsArgs {
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Bearer token, when the server runs with --api-key.
    #[arg(long, env = "NAO_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

pub fn ps(a: PsArgs) -> Result<()> {
    let url = format!("http://{}:{}/api/ps", a.host, a.port);
    let http = nao_store::http::Http::new();
    let bearer = a.api_key.map(|k| format!("Bearer {k}"));
    let headers: Vec<(&str, &str)> = bearer
        .iter()
        .map(|b| ("Authorization", b.as_str()))
        .collect();
    let (_, v) = http
        .get_json_with(&url, "application/json", &headers)
        .with_context(|| format!("is `nao serve` running on {}:{}?", a.host, a.port))?;
    outln!(
        "{:<36} {:>10} {:>8}  {:<12} EXPIRES",
        "NAME",
        "SIZE",
        "CONTEXT",
        "QUANT"
    );
    for m in v["models"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        outln!(
            "{:<36} {:>10} {:>8}  {:<12} {}",
            m["name"].as_str().unwrap_or("?"),
            crate::cli::human_bytes(m["size"].as_u64().unwrap_or(0)),
            m["context_length"].as_u64().unwrap_or(0),
            m["details"]["quantization_level"].as_str().unwrap_or(""),
            m["expires_at"].as_str().unwrap_or("")
        );
    }
    Ok(())
}
