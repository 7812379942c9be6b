//! [`ModelManager`] with a fake loader and fake engines, on real threads: routing by name,
//! least-recently-used eviction, a busy model kept while a load waits, failed loads,
//! one load for concurrent requests, `keep_alive: 0` unloading, and counters that
//! survive unloading. The pure policy has its own tests in `lru.rs`.

use super::*;
use crate::api::{Event, ModelDetails};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::mpsc;

/// An engine that only knows its id; counts how many are alive.
struct FakeEngine {
    id: String,
    alive: Arc<AtomicUsize>,
}

impl Drop for FakeEngine {
    fn drop(&mut self) {
        self.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

fn info(id: &str) -> ModelInfo {
    ModelInfo {
        id: id.to_string(),
        n_ctx: 64,
        n_vocab: 10,
        created: 0,
        details: ModelDetails::default(),
    }
}

impl EngineHandle for FakeEngine {
    fn model_info(&self) -> ModelInfo {
        info(&self.id)
    }
    fn render_chat(&self, _: &Json, _: Option<&Json>) -> Result<String, PromptError> {
        Ok(String::new())
    }
    fn tokenize(&self, _: &str, _: bool) -> Vec<u32> {
        Vec::new()
    }
    fn submit(&self, _: Request) -> Result<RequestHandle, SubmitError> {
        let (tx, events) = mpsc::unbounded_channel();
        let _ = tx.send(Event::Error(self.id.clone()));
        Ok(RequestHandle { events })
    }
    fn stats(&self) -> EngineStats {
        EngineStats {
            running: 1,
            generated_tokens: 10,
            ..EngineStats::default()
        }
    }
}

struct FakeLoader {
    ids: Vec<&'static str>,
    default: Option<&'static str>,
    /// Ids loaded, in order.
    loads: Mutex<Vec<String>>,
    fail: HashSet<&'static str>,
    too_big: HashSet<&'static str>,
    delay: Duration,
    alive: Arc<AtomicUsize>,
}

impl FakeLoader {
    fn new(ids: &[&'static str]) -> Self {
        FakeLoader {
            ids: ids.to_vec(),
            default: None,
            loads: Mutex::new(Vec::new()),
            fail: HashSet::new(),
            too_big: HashSet::new(),
            delay: Duration::ZERO,
            alive: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn loads(&self) -> Vec<String> {
        self.loads.lock().unwrap().clone()
    }
}

impl Loader for FakeLoader {
    fn default_id(&self) -> Option<String> {
        self.default.map(str::to_string)
    }
    fn resolve(&self, name: &str) -> Option<String> {
        self.ids
            .iter()
            .find(|id| names_model(name, id))
            .map(|id| id.to_string())
    }
    fn describe(&self, id: &str) -> Option<ModelInfo> {
        self.ids.contains(&id).then(|| info(id))
    }
    fn catalog(&self) -> Vec<ModelInfo> {
        self.ids.iter().map(|id| info(id)).collect()
    }
    fn load(&self, id: &str) -> Result<Loaded, LoadError> {
        std::thread::sleep(self.delay);
        if self.fail.contains(id) {
            return Err(LoadError::Failed("bad magic".into()));
        }
        if self.too_big.contains(id) {
            return Err(LoadError::OutOfMemory("needs 9 GiB, 1 GiB free".into()));
        }
        self.loads.lock().unwrap().push(id.to_string());
        self.alive.fetch_add(1, Ordering::SeqCst);
        Ok(Loaded {
            engine: Arc::new(FakeEngine {
                id: id.to_string(),
                alive: Arc::clone(&self.alive),
            }),
            thread: None,
        })
    }
}

fn manager(loader: FakeLoader, max_loaded: usize) -> Arc<ModelManager<FakeLoader>> {
    Arc::new(ModelManager::new(
        loader,
        ManagerConfig {
            max_loaded,
            max_waiting: 8,
            wait_timeout: Duration::from_secs(10),
            join_timeout: Duration::from_secs(1),
        },
    ))
}

fn loaded_ids(m: &ModelManager<FakeLoader>) -> Vec<String> {
    m.loaded().into_iter().map(|i| i.id).collect()
}

fn id_of(e: &Engine) -> String {
    e.model_info().id
}

#[test]
fn routes_by_name_and_loads_on_demand() {
    let mut l = FakeLoader::new(&["a", "b:7b"]);
    l.default = Some("a");
    let m = manager(l, 1);
    assert_eq!(id_of(&m.acquire(None).unwrap()), "a");
    assert_eq!(id_of(&m.acquire(Some("")).unwrap()), "a");
    assert_eq!(id_of(&m.acquire(Some("a:latest")).unwrap()), "a");
    assert_eq!(m.loader().loads(), ["a"]);
    assert_eq!(id_of(&m.acquire(Some("b:7b")).unwrap()), "b:7b");
    assert_eq!(loaded_ids(&m), ["b:7b"]);
    assert_eq!(m.loader().alive.load(Ordering::SeqCst), 1, "a was dropped");
    assert_eq!(
        m.acquire(Some("b")).err(),
        Some(AcquireError::NotFound("b".into())),
        "b names b:latest, not b:7b"
    );
    assert_eq!(
        m.describe(Some("nope")).err(),
        Some(AcquireError::NotFound("nope".into()))
    );
    let no_default = manager(FakeLoader::new(&["a"]), 1);
    assert_eq!(
        no_default.acquire(None).err(),
        Some(AcquireError::NoDefault)
    );
}

#[test]
fn unloads_the_least_recently_used_model() {
    let m = manager(FakeLoader::new(&["a", "b", "c"]), 2);
    drop(m.acquire(Some("a")).unwrap());
    drop(m.acquire(Some("b")).unwrap());
    drop(m.acquire(Some("a")).unwrap());
    drop(m.acquire(Some("c")).unwrap());
    assert_eq!(loaded_ids(&m), ["c", "a"]);
    drop(m.acquire(Some("b")).unwrap());
    assert_eq!(loaded_ids(&m), ["b", "c"]);
    assert_eq!(m.loader().loads(), ["a", "b", "c", "b"]);
    assert_eq!(m.loader().alive.load(Ordering::SeqCst), 2);
    let list = m.list();
    let flags: Vec<(&str, bool)> = list
        .iter()
        .map(|e| (e.info.id.as_str(), e.loaded))
        .collect();
    assert_eq!(flags, [("a", false), ("b", true), ("c", true)]);
    assert!(m.describe(Some("b")).unwrap().loaded);
    assert!(!m.describe(Some("a")).unwrap().loaded);
}

#[test]
fn a_busy_model_stays_loaded_until_its_request_ends() {
    let m = manager(FakeLoader::new(&["a", "b"]), 1);
    let held = m.acquire(Some("a")).unwrap();
    let m2 = Arc::clone(&m);
    let waiter = std::thread::spawn(move || id_of(&m2.acquire(Some("b")).unwrap()));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(loaded_ids(&m), ["a"], "a is busy: b must wait");
    assert!(!waiter.is_finished());
    // The request on `a` still works while `b` waits.
    assert!(held.submit(request()).is_ok());
    drop(held);
    assert_eq!(waiter.join().unwrap(), "b");
    assert_eq!(loaded_ids(&m), ["b"]);
    assert_eq!(m.loader().alive.load(Ordering::SeqCst), 1);
}

#[test]
fn a_load_that_waits_too_long_is_refused_and_the_busy_model_serves_on() {
    let m = Arc::new(ModelManager::new(
        FakeLoader::new(&["a", "b"]),
        ManagerConfig {
            max_loaded: 1,
            max_waiting: 8,
            wait_timeout: Duration::from_millis(50),
            join_timeout: Duration::from_secs(1),
        },
    ));
    let held = m.acquire(Some("a")).unwrap();
    assert!(matches!(m.acquire(Some("b")), Err(AcquireError::Busy(_))));
    // The gave-up load no longer blocks new requests for `a`.
    assert_eq!(id_of(&m.acquire(Some("a")).unwrap()), "a");
    drop(held);
    assert_eq!(id_of(&m.acquire(Some("b")).unwrap()), "b");
}

#[test]
fn failed_loads_leave_the_manager_consistent() {
    let mut l = FakeLoader::new(&["a", "bad", "huge"]);
    l.fail.insert("bad");
    l.too_big.insert("huge");
    let m = manager(l, 1);
    drop(m.acquire(Some("a")).unwrap());
    match m.acquire(Some("bad")) {
        Err(AcquireError::LoadFailed { name, reason }) => {
            assert_eq!((name.as_str(), reason.as_str()), ("bad", "bad magic"))
        }
        other => panic!("{:?}", other.map(|e| id_of(&e))),
    }
    assert!(loaded_ids(&m).is_empty(), "a made room, bad never loaded");
    assert!(matches!(
        m.acquire(Some("huge")),
        Err(AcquireError::OutOfMemory(_))
    ));
    assert_eq!(id_of(&m.acquire(Some("a")).unwrap()), "a");
    assert_eq!(loaded_ids(&m), ["a"]);
    assert_eq!(m.loader().loads(), ["a", "a"]);
}

#[test]
fn concurrent_requests_for_one_model_load_it_once() {
    let mut l = FakeLoader::new(&["a", "b"]);
    l.delay = Duration::from_millis(50);
    let m = manager(l, 2);
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let m = Arc::clone(&m);
            std::thread::spawn(move || {
                let name = if i % 2 == 0 { "a" } else { "b" };
                id_of(&m.acquire(Some(name)).unwrap()) == name
            })
        })
        .collect();
    for t in threads {
        assert!(t.join().unwrap());
    }
    let mut loads = m.loader().loads();
    loads.sort();
    assert_eq!(loads, ["a", "b"]);
}

#[test]
fn keep_alive_zero_unloads_after_the_request_and_counters_survive() {
    let m = manager(FakeLoader::new(&["a"]), 1);
    let held = m.acquire(Some("a")).unwrap();
    assert_eq!(m.stats().generated_tokens, 10);
    assert_eq!(m.stats().running, 1);
    assert!(m.unload("a:latest"));
    assert_eq!(
        loaded_ids(&m),
        ["a"],
        "busy: unloaded when the request ends"
    );
    drop(held);
    assert!(loaded_ids(&m).is_empty());
    assert_eq!(m.loader().alive.load(Ordering::SeqCst), 0);
    assert!(!m.unload("a"));
    let s = m.stats();
    assert_eq!((s.generated_tokens, s.running), (10, 0));
    drop(m.acquire(Some("a")).unwrap());
    assert!(m.unload("a"), "idle: unloaded at once");
    assert!(loaded_ids(&m).is_empty());
    assert_eq!(m.stats().generated_tokens, 20);
}

fn request() -> Request {
    Request {
        prompt: vec![1],
        max_tokens: 1,
        sampler: Default::default(),
        logit_bias: Vec::new(),
        logprobs: None,
        stop: Vec::new(),
        stop_at_eog: true,
        constraint: None,
    }
}
