//! Serving several models: [`ModelManager`] routes each request to the engine of the model
//! it names, loading models on demand through a [`Loader`] and unloading the least recently
//! used idle one when `max_loaded` would be exceeded; [`SingleModel`] serves one engine.
//! Both are [`ModelProvider`]s, which is all the HTTP server sees.
//!
//! Policy (the pure state machine in [`lru`]): a model is never unloaded under a request —
//! each request holds a lease (the engine handle [`ModelProvider::acquire`] returns) until
//! its response is complete. When every loaded model is busy, the load waits (up to
//! `wait_timeout`) for the least recently used one to finish its requests; that model
//! takes no new requests meanwhile, so it cannot be kept busy forever. Loads run one at a
//! time, on the requesting thread, never under the manager's lock: requests for loaded
//! models are served while another model loads.
//!
//! Unloading drops the manager's engine handle, which ends the engine thread once its
//! channel closes; before the next load the manager joins those threads, so the memory of
//! the unloaded model is free before the memory check of the next one.

pub mod lru;
#[cfg(test)]
mod tests;

use crate::api::{
    AcquireError, EngineHandle, EngineStats, ModelEntry, ModelInfo, ModelProvider, PromptError,
    Request, RequestHandle, SubmitError,
};
use lru::{Lru, Step, Unload};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// `name` with its tag: `model:tag`, where a missing tag means `latest` (Ollama's
/// convention). The tag is looked for after the last `/` only, since a registry host may
/// carry a port (`host:5000/ns/model`).
pub fn with_tag(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    if base.contains(':') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// Whether a requested `name` names the model `id`: equal, or equal once both carry a tag
/// (`gemma3` names `gemma3:latest` and the other way round).
pub fn names_model(name: &str, id: &str) -> bool {
    name == id || with_tag(name) == with_tag(id)
}

/// A model loaded by a [`Loader`].
pub struct Loaded {
    pub engine: Arc<dyn EngineHandle>,
    /// The engine's thread: joined after the model is unloaded (it ends once the last
    /// handle to the engine is gone), so its memory is known to be free.
    pub thread: Option<JoinHandle<()>>,
}

/// Why a [`Loader`] could not load a model.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The memory check refused it; the message says what it needs and what is free.
    #[error("{0}")]
    OutOfMemory(String),
    /// Anything else (a damaged or unsupported file, a vanished model).
    #[error("{0}")]
    Failed(String),
}

/// Where the models of a [`ModelManager`] come from (the binary's model store; a fake in
/// tests).
pub trait Loader: Send + Sync + 'static {
    /// The id used when a request names no model; `None` when a name is required.
    fn default_id(&self) -> Option<String>;
    /// The id of the loadable model `name` refers to, if any. Must not load it.
    fn resolve(&self, name: &str) -> Option<String>;
    /// What is known about the loadable model `id` without loading it.
    fn describe(&self, id: &str) -> Option<ModelInfo>;
    /// Every loadable model, the default one first, then by id.
    fn catalog(&self) -> Vec<ModelInfo>;
    /// Loads `id` (checking first that it fits in memory) and starts its engine. Blocks
    /// for as long as loading takes.
    fn load(&self, id: &str) -> Result<Loaded, LoadError>;
}

/// Limits of a [`ModelManager`].
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    /// Most models loaded at once (at least 1).
    pub max_loaded: usize,
    /// Most requests waiting for a load; more are refused at once (503).
    pub max_waiting: usize,
    /// How long a request waits for a load (its own or one before it) or for a busy model
    /// to finish before it is refused (503).
    pub wait_timeout: Duration,
    /// How long a load waits for the threads of unloaded engines to end.
    pub join_timeout: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            max_loaded: 1,
            max_waiting: 64,
            wait_timeout: Duration::from_secs(300),
            join_timeout: Duration::from_secs(30),
        }
    }
}

type Engine = Arc<dyn EngineHandle>;

struct State {
    lru: Lru<Engine>,
    threads: HashMap<String, JoinHandle<()>>,
    /// Threads of unloaded engines, joined before the next load.
    retiring: Vec<JoinHandle<()>>,
    /// Counters of the engines unloaded since start.
    retired: EngineStats,
}

impl State {
    /// Forgets an unloaded model: keeps its counters, drops the manager's handle (the
    /// engine thread ends when the last one is gone) and keeps its thread to join.
    fn retire(&mut self, id: &str, engine: Engine) {
        add_counters(&mut self.retired, &engine.stats());
        drop(engine);
        if let Some(t) = self.threads.remove(id) {
            self.retiring.push(t);
        }
    }
}

struct Inner<L> {
    loader: L,
    cfg: ManagerConfig,
    state: Mutex<State>,
    /// Signalled whenever a model is released, loaded, unloaded or a wait is cancelled.
    changed: Condvar,
}

impl<L> Inner<L> {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic elsewhere mid-update; every update leaves the
        // state valid between statements that can panic, so keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Several models behind one [`ModelProvider`] (see the module docs).
pub struct ModelManager<L: Loader> {
    inner: Arc<Inner<L>>,
}

impl<L: Loader> ModelManager<L> {
    pub fn new(loader: L, cfg: ManagerConfig) -> Self {
        let lru = Lru::new(cfg.max_loaded, cfg.max_waiting);
        ModelManager {
            inner: Arc::new(Inner {
                loader,
                cfg,
                state: Mutex::new(State {
                    lru,
                    threads: HashMap::new(),
                    retiring: Vec::new(),
                    retired: EngineStats::default(),
                }),
                changed: Condvar::new(),
            }),
        }
    }

    pub fn loader(&self) -> &L {
        &self.inner.loader
    }

    /// The id `name` refers to: a loaded model first, then what the loader knows.
    fn resolve(&self, name: Option<&str>) -> Result<String, AcquireError> {
        let Some(name) = name.filter(|n| !n.is_empty()) else {
            return self
                .inner
                .loader
                .default_id()
                .ok_or(AcquireError::NoDefault);
        };
        if let Some(id) = self.loaded_id(name) {
            return Ok(id);
        }
        self.inner
            .loader
            .resolve(name)
            .ok_or_else(|| AcquireError::NotFound(name.to_string()))
    }

    fn loaded_id(&self, name: &str) -> Option<String> {
        let st = self.inner.lock();
        let loaded = st.lru.loaded_models();
        loaded
            .iter()
            .find(|(id, _)| id == name)
            .or_else(|| loaded.iter().find(|(id, _)| names_model(name, id)))
            .map(|(id, _)| id.clone())
    }

    fn lease(&self, id: String, engine: Engine) -> Engine {
        Arc::new(Lease {
            id,
            engine,
            inner: Arc::clone(&self.inner),
        })
    }

    /// Unloads `evict`, joins the threads of unloaded engines, loads `id`.
    fn load(
        &self,
        mut st: MutexGuard<'_, State>,
        id: &str,
        evict: Vec<(String, Engine)>,
    ) -> Result<Engine, AcquireError> {
        let inner = &self.inner;
        for (eid, e) in evict {
            st.retire(&eid, e);
        }
        let joins = std::mem::take(&mut st.retiring);
        drop(st);
        join_all(joins, inner.cfg.join_timeout);
        // A panicking loader must not leave the state saying "loading" forever.
        let mut guard = LoadGuard {
            inner: &**inner,
            id,
            armed: true,
        };
        let res = inner.loader.load(id);
        guard.armed = false;
        let mut st = inner.lock();
        let out = match res {
            Ok(Loaded { engine, thread }) => {
                if let Some(t) = thread {
                    st.threads.insert(id.to_string(), t);
                }
                Ok(st.lru.loaded(id, engine))
            }
            Err(e) => {
                st.lru.load_failed(id);
                Err(match e {
                    LoadError::OutOfMemory(m) => AcquireError::OutOfMemory(m),
                    LoadError::Failed(reason) => AcquireError::LoadFailed {
                        name: id.to_string(),
                        reason,
                    },
                })
            }
        };
        drop(st);
        inner.changed.notify_all();
        out
    }
}

/// Marks a load failed if the loader panics.
struct LoadGuard<'a, L> {
    inner: &'a Inner<L>,
    id: &'a str,
    armed: bool,
}

impl<L> Drop for LoadGuard<'_, L> {
    fn drop(&mut self) {
        if self.armed {
            self.inner.lock().lru.load_failed(self.id);
            self.inner.changed.notify_all();
        }
    }
}

/// Waits up to `timeout` for every thread to end; threads still running then are left
/// to end on their own.
fn join_all(threads: Vec<JoinHandle<()>>, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    for t in threads {
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        if t.is_finished() {
            // A panic on the engine thread was already reported to its requests.
            let _ = t.join();
        }
    }
}

fn add_counters(total: &mut EngineStats, s: &EngineStats) {
    total.prefix_cache_hit_tokens += s.prefix_cache_hit_tokens;
    total.prompt_tokens += s.prompt_tokens;
    total.generated_tokens += s.generated_tokens;
    total.preemptions += s.preemptions;
}

impl<L: Loader> ModelProvider for ModelManager<L> {
    fn acquire(&self, name: Option<&str>) -> Result<Engine, AcquireError> {
        let id = self.resolve(name)?;
        let inner = &self.inner;
        let deadline = Instant::now() + inner.cfg.wait_timeout;
        let mut st = inner.lock();
        let mut ticket = None;
        loop {
            match st.lru.acquire(&id, ticket) {
                Step::Ready(engine) => return Ok(self.lease(id, engine)),
                Step::Load { evict } => {
                    let engine = self.load(st, &id, evict)?;
                    return Ok(self.lease(id, engine));
                }
                Step::QueueFull => {
                    return Err(AcquireError::Busy(format!(
                        "{} requests are already waiting for a model to load",
                        st.lru.waiting()
                    )))
                }
                Step::Wait(t) => {
                    ticket = Some(t);
                    let now = Instant::now();
                    if now >= deadline {
                        st.lru.cancel(t);
                        drop(st);
                        inner.changed.notify_all();
                        return Err(AcquireError::Busy(format!(
                            "waited {}s for `{id}` to load while the loaded models stayed busy",
                            inner.cfg.wait_timeout.as_secs()
                        )));
                    }
                    st = match inner.changed.wait_timeout(st, deadline - now) {
                        Ok((g, _)) => g,
                        Err(p) => p.into_inner().0,
                    };
                }
            }
        }
    }

    fn describe(&self, name: Option<&str>) -> Result<ModelEntry, AcquireError> {
        let id = self.resolve(name)?;
        let loaded = self
            .inner
            .lock()
            .lru
            .loaded_models()
            .into_iter()
            .find(|(i, _)| *i == id);
        if let Some((_, engine)) = loaded {
            return Ok(ModelEntry {
                info: engine.model_info(),
                loaded: true,
            });
        }
        match self.inner.loader.describe(&id) {
            Some(info) => Ok(ModelEntry {
                info,
                loaded: false,
            }),
            None => Err(AcquireError::NotFound(name.unwrap_or(&id).to_string())),
        }
    }

    fn list(&self) -> Vec<ModelEntry> {
        let catalog = self.inner.loader.catalog();
        let loaded = self.inner.lock().lru.loaded_models();
        let mut out: Vec<ModelEntry> = catalog
            .into_iter()
            .map(|info| match loaded.iter().find(|(id, _)| *id == info.id) {
                Some((_, e)) => ModelEntry {
                    info: e.model_info(),
                    loaded: true,
                },
                None => ModelEntry {
                    info,
                    loaded: false,
                },
            })
            .collect();
        // Loaded models the loader no longer lists (removed from the store meanwhile).
        for (id, e) in &loaded {
            if !out.iter().any(|m| m.info.id == *id) {
                out.push(ModelEntry {
                    info: e.model_info(),
                    loaded: true,
                });
            }
        }
        out
    }

    fn loaded(&self) -> Vec<ModelInfo> {
        let loaded = self.inner.lock().lru.loaded_models();
        loaded.into_iter().map(|(_, e)| e.model_info()).collect()
    }

    fn unload(&self, name: &str) -> bool {
        let Some(id) = self.loaded_id(name) else {
            return false;
        };
        let mut st = self.inner.lock();
        let out = match st.lru.unload(&id) {
            Unload::Now(engine) => {
                st.retire(&id, engine);
                true
            }
            Unload::WhenIdle => true,
            Unload::NotLoaded => false,
        };
        drop(st);
        self.inner.changed.notify_all();
        out
    }

    fn stats(&self) -> EngineStats {
        let (mut total, loaded) = {
            let st = self.inner.lock();
            (st.retired, st.lru.loaded_models())
        };
        for (_, e) in loaded {
            let s = e.stats();
            add_counters(&mut total, &s);
            total.waiting += s.waiting;
            total.running += s.running;
            total.kv_blocks_total += s.kv_blocks_total;
            total.kv_blocks_used += s.kv_blocks_used;
        }
        total
    }
}

/// One request's hold on a loaded model: the engine, and a release when dropped.
struct Lease<L: Loader> {
    id: String,
    engine: Engine,
    inner: Arc<Inner<L>>,
}

impl<L: Loader> EngineHandle for Lease<L> {
    fn model_info(&self) -> ModelInfo {
        self.engine.model_info()
    }

    fn render_chat(&self, messages: &Json, tools: Option<&Json>) -> Result<String, PromptError> {
        self.engine.render_chat(messages, tools)
    }

    fn tokenize(&self, text: &str, add_special: bool) -> Vec<u32> {
        self.engine.tokenize(text, add_special)
    }

    fn submit(&self, req: Request) -> Result<RequestHandle, SubmitError> {
        self.engine.submit(req)
    }

    fn stats(&self) -> EngineStats {
        self.engine.stats()
    }
}

impl<L: Loader> Drop for Lease<L> {
    fn drop(&mut self) {
        // Runs on whatever thread drops the response (an async one): only bookkeeping
        // here; joining threads is left to the next load.
        let mut st = self.inner.lock();
        if let Some((id, engine)) = st.lru.release(&self.id) {
            st.retire(&id, engine);
        }
        drop(st);
        self.inner.changed.notify_all();
    }
}

/// One engine as a [`ModelProvider`]: requests without a model or naming it go to it,
/// others are not found; it is never unloaded.
pub struct SingleModel {
    engine: Engine,
}

impl SingleModel {
    pub fn new(engine: Engine) -> Self {
        SingleModel { engine }
    }

    fn check(&self, name: Option<&str>) -> Result<(), AcquireError> {
        match name.filter(|n| !n.is_empty()) {
            None => Ok(()),
            Some(n) if names_model(n, &self.engine.model_info().id) => Ok(()),
            Some(n) => Err(AcquireError::NotFound(n.to_string())),
        }
    }
}

impl ModelProvider for SingleModel {
    fn acquire(&self, name: Option<&str>) -> Result<Engine, AcquireError> {
        self.check(name)?;
        Ok(Arc::clone(&self.engine))
    }

    fn describe(&self, name: Option<&str>) -> Result<ModelEntry, AcquireError> {
        self.check(name)?;
        Ok(ModelEntry {
            info: self.engine.model_info(),
            loaded: true,
        })
    }

    fn list(&self) -> Vec<ModelEntry> {
        vec![ModelEntry {
            info: self.engine.model_info(),
            loaded: true,
        }]
    }

    fn loaded(&self) -> Vec<ModelInfo> {
        vec![self.engine.model_info()]
    }

    fn unload(&self, _name: &str) -> bool {
        false
    }

    fn stats(&self) -> EngineStats {
        self.engine.stats()
    }
}
