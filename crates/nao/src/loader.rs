//! What `nao serve` can load: the `-m` model and the models of the store (`NAO_HOME`),
//! as a [`Loader`] for [`nao_engine::manager::ModelManager`].
//!
//! Ids are the names clients send: the `-m` model's `--alias`, store name or file stem;
//! a store model's `name:tag`. Listings describe models that are not loaded from their
//! GGUF metadata (read once per file version and cached), so `/api/tags` and `/v1/models`
//! never load weights. `-m PATH` alone does not create a store: the store's models are
//! offered only when `NAO_HOME` (or `~/.nao`) already holds one.

use crate::memplan::NotEnoughMemory;
use crate::serve::LoadOpts;
use crate::source::Source;
use anyhow::Result;
use nao_engine::api::{ModelDetails, ModelInfo};
use nao_engine::manager::{names_model, LoadError, Loaded, Loader};
use nao_store::{Health, ModelName, NoProgress, Store};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, UNIX_EPOCH};

/// The `-m` model.
struct DefaultModel {
    id: String,
    path: PathBuf,
    /// Its store name, when `-m` named one (so that name finds it too).
    name: Option<ModelName>,
}

/// Size and modification time of a file: a cached description is valid while they hold.
type Stamp = (u64, u64);

pub struct StoreLoader {
    opts: LoadOpts,
    default: Option<DefaultModel>,
    store: Option<Store>,
    /// Descriptions of model files by id.
    described: Mutex<HashMap<String, (PathBuf, Stamp, ModelInfo)>>,
}

impl StoreLoader {
    /// `model`: the `-m` argument (a file, or a store name); `alias`: its id.
    pub fn new(opts: LoadOpts, model: Option<&Path>, alias: Option<String>) -> Result<Self> {
        let default = match model {
            Some(arg) => {
                let (path, name) = crate::store_cmd::resolve_model(arg)?;
                let id = alias
                    .or_else(|| name.as_ref().map(ModelName::to_string))
                    .unwrap_or_else(|| {
                        arg.file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_else(|| "model".into())
                    });
                Some(DefaultModel { id, path, name })
            }
            None => None,
        };
        let store = match model {
            None => Some(Store::open(Store::default_root()?)?),
            Some(_) => Store::default_root()
                .ok()
                .filter(|root| root.join("manifests").is_dir())
                .and_then(|root| Store::open(root).ok()),
        };
        Ok(StoreLoader {
            opts,
            default,
            store,
            described: Mutex::new(HashMap::new()),
        })
    }

    pub fn store_root(&self) -> Option<&Path> {
        self.store.as_ref().map(Store::root)
    }

    fn default_for(&self, id: &str) -> Option<&DefaultModel> {
        self.default.as_ref().filter(|d| d.id == id)
    }

    /// The file of the model `id`; `verify`: check it against its digest first when it
    /// changed since it was last verified (before loading, not for listings).
    fn path_of(&self, id: &str, verify: bool) -> Result<PathBuf, String> {
        if let Some(d) = self.default_for(id) {
            return Ok(d.path.clone());
        }
        let store = self.store.as_ref().ok_or("no model store")?;
        let name = ModelName::parse(id).map_err(|e| e.to_string())?;
        if verify {
            return store
                .resolve(&name, &mut NoProgress)
                .map(|(path, _)| path)
                .map_err(|e| e.to_string());
        }
        match store.read_manifest(&name) {
            Ok(Some(m)) => Ok(store.model_path(&m)),
            Ok(None) => Err(format!("no model {name} in the store")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// What the file says about the model, without loading it; `None` when the file
    /// cannot be read as GGUF (or the directory as a Hugging Face decoder).
    fn file_info(&self, id: &str, path: &Path) -> Option<ModelInfo> {
        let meta = std::fs::metadata(path).ok()?;
        let modified = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |t| t.as_secs());
        let stamp = (meta.len(), modified);
        let mut cache = self.described.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, s, info)) = cache.get(id) {
            if p == path && *s == stamp {
                return Some(info.clone());
            }
        }
        let source = crate::source::Source::open_path(path).ok()?;
        let info = describe(id, &source, &self.opts);
        cache.insert(id.to_string(), (path.to_path_buf(), stamp, info.clone()));
        Some(info)
    }
}

/// A model's [`ModelInfo`] from its file, as the engine and `WithFileFacts` would report
/// it once loaded (the context is the one it would be served with).
fn describe(id: &str, source: &Source, o: &LoadOpts) -> ModelInfo {
    let cfg = source.config().ok();
    let facts = source.facts();
    let c = |f: fn(&nao_models::ModelConfig) -> usize| cfg.as_ref().map_or(0, f);
    let n_ctx_train = c(|c| c.n_ctx_train);
    ModelInfo {
        id: id.to_string(),
        n_ctx: if n_ctx_train > 0 {
            o.ctx.min(n_ctx_train.max(2))
        } else {
            o.ctx
        },
        n_vocab: c(|c| c.n_vocab),
        created: facts.file_modified,
        details: ModelDetails {
            architecture: source.architecture(),
            parameter_count: facts.parameter_count,
            quantization: facts.quantization,
            file_size: facts.file_size,
            file_modified: facts.file_modified,
            n_ctx_train,
            n_embd: c(|c| c.n_embd),
            n_layer: c(|c| c.n_layer),
            n_head: c(|c| c.n_head),
            n_head_kv: c(|c| c.n_head_kv),
            chat_template: source.chat_template().ok(),
        },
    }
}

impl Loader for StoreLoader {
    fn default_id(&self) -> Option<String> {
        self.default.as_ref().map(|d| d.id.clone())
    }

    fn resolve(&self, name: &str) -> Option<String> {
        let parsed = ModelName::parse(name).ok();
        if let Some(d) = &self.default {
            if names_model(name, &d.id) || (d.name.is_some() && d.name == parsed) {
                return Some(d.id.clone());
            }
        }
        let (store, name) = (self.store.as_ref()?, parsed?);
        let m = store.read_manifest(&name).ok()??;
        (m.format == "gguf").then(|| name.to_string())
    }

    fn describe(&self, id: &str) -> Option<ModelInfo> {
        let path = self.path_of(id, false).ok()?;
        self.file_info(id, &path)
    }

    fn catalog(&self) -> Vec<ModelInfo> {
        let mut out = Vec::new();
        if let Some(d) = &self.default {
            out.extend(self.file_info(&d.id, &d.path));
        }
        let Some(store) = &self.store else {
            return out;
        };
        // Damaged or vanished files are not offered (`nao list` shows why).
        let Ok(list) = store.list(false, &mut NoProgress) else {
            return out;
        };
        for l in list {
            let Some(m) = l.manifest.as_ref().filter(|m| m.format == "gguf") else {
                continue;
            };
            let is_default = self
                .default
                .as_ref()
                .is_some_and(|d| d.name.as_ref() == Some(&l.name));
            if l.health != Health::Ok || is_default {
                continue;
            }
            out.extend(self.file_info(&l.name.to_string(), &store.model_path(m)));
        }
        out
    }

    fn load(&self, id: &str) -> Result<Loaded, LoadError> {
        let path = self.path_of(id, true).map_err(LoadError::Failed)?;
        let t0 = Instant::now();
        eprintln!("nao: loading {id} from {}", path.display());
        match crate::serve::load_chat(&self.opts, &path, id) {
            Ok((engine, thread)) => {
                eprintln!("nao: loaded {id} in {:.1}s", t0.elapsed().as_secs_f64());
                Ok(Loaded {
                    engine,
                    thread: Some(thread),
                })
            }
            Err(e) => {
                eprintln!("nao: cannot load {id}: {e:#}");
                Err(match e.downcast_ref::<NotEnoughMemory>() {
                    Some(m) => LoadError::OutOfMemory(m.0.clone()),
                    None => LoadError::Failed(format!("{e:#}")),
                })
            }
        }
    }
}
