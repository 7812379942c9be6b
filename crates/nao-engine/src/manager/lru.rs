//! The loading policy of [`super::ModelManager`] as a pure state machine: which models are
//! loaded, how many requests hold each, which one to unload to make room, and who waits.
//! No threads, clocks or files: the manager calls these methods under its lock and does
//! what the returned [`Step`] says (use, load, wait), so every rule is tested here with
//! plain values.
//!
//! Rules:
//! - A loaded model serves any number of requests; each holds it until it is released.
//! - At most `max_loaded` models are loaded, and one model loads at a time.
//! - To make room, the least recently used *idle* model is unloaded. A model is never
//!   unloaded under its requests: when every loaded model is busy, the least recently used
//!   one is marked *evicting* — it takes no new requests (they queue for a later reload)
//!   and the load waits until the requests it has finish.
//! - Requests that need a load wait in arrival order (tickets) and only the first may
//!   start one, so a later load never overtakes an earlier one and a steady stream of
//!   requests for a loaded model cannot starve a load. Requests for a loaded model that is
//!   not evicting never wait.
//! - "Recently used" is the later of a model's last acquire and last release.

use std::collections::VecDeque;

/// A waiting request's place in the queue.
pub type Ticket = u64;

/// What the caller of [`Lru::acquire`] does next.
#[derive(Debug, PartialEq)]
pub enum Step<E> {
    /// Serve the request with this engine; call [`Lru::release`] when it is done.
    Ready(E),
    /// Unload `evict` (already removed here), load the model, then call [`Lru::loaded`]
    /// (the request then holds it) or [`Lru::load_failed`].
    Load { evict: Vec<(String, E)> },
    /// Wait until something is released, loaded or unloaded, then call [`Lru::acquire`]
    /// again with this ticket (or [`Lru::cancel`] it when giving up).
    Wait(Ticket),
    /// Too many requests wait already; refuse this one.
    QueueFull,
}

/// What [`Lru::unload`] did.
#[derive(Debug, PartialEq)]
pub enum Unload<E> {
    /// The model was idle and is removed: unload this engine.
    Now(E),
    /// The model is busy; it is removed when its last request is released (unless a new
    /// request comes first).
    WhenIdle,
    /// No such model is loaded.
    NotLoaded,
}

#[derive(Debug)]
struct Slot<E> {
    id: String,
    engine: E,
    /// Requests holding the model.
    active: usize,
    last_used: u64,
    /// Chosen to make room for the first waiting load: takes no new requests.
    evicting: bool,
    /// Remove the model once `active` drops to zero.
    unload_when_idle: bool,
}

/// The loaded models and the waiting requests (see the module docs for the rules).
#[derive(Debug)]
pub struct Lru<E> {
    max_loaded: usize,
    max_waiting: usize,
    slots: Vec<Slot<E>>,
    clock: u64,
    /// The model being loaded now.
    loading: Option<String>,
    queue: VecDeque<Ticket>,
    next_ticket: Ticket,
}

impl<E: Clone> Lru<E> {
    /// At most `max_loaded` (at least 1) models loaded and `max_waiting` requests queued.
    pub fn new(max_loaded: usize, max_waiting: usize) -> Self {
        Lru {
            max_loaded: max_loaded.max(1),
            max_waiting,
            slots: Vec::new(),
            clock: 0,
            loading: None,
            queue: VecDeque::new(),
            next_ticket: 0,
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn take(&mut self, i: usize) -> E {
        let now = self.tick();
        let s = &mut self.slots[i];
        s.active += 1;
        s.last_used = now;
        s.evicting = false;
        // A new request keeps the model (Ollama: the last request's keep_alive wins).
        s.unload_when_idle = false;
        s.engine.clone()
    }

    /// A request for the model `id`; `ticket` is the one a previous [`Step::Wait`] gave.
    pub fn acquire(&mut self, id: &str, ticket: Option<Ticket>) -> Step<E> {
        if let Some(i) = self.slots.iter().position(|s| s.id == id && !s.evicting) {
            if let Some(t) = ticket {
                self.queue.retain(|&q| q != t);
            }
            return Step::Ready(self.take(i));
        }
        let ticket = match ticket {
            Some(t) => t,
            None => {
                if self.queue.len() >= self.max_waiting {
                    return Step::QueueFull;
                }
                let t = self.next_ticket;
                self.next_ticket += 1;
                self.queue.push_back(t);
                t
            }
        };
        if self.queue.front() != Some(&ticket) {
            return Step::Wait(ticket);
        }
        // First in line. Its own model marked for eviction (by an earlier first in line
        // that gave up) is simply kept.
        if let Some(i) = self.slots.iter().position(|s| s.id == id) {
            self.queue.pop_front();
            self.clear_evicting();
            return Step::Ready(self.take(i));
        }
        if self.loading.is_some() {
            return Step::Wait(ticket);
        }
        let mut evict = Vec::new();
        if self.slots.len() >= self.max_loaded {
            let idle = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.active == 0)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(i, _)| i);
            match idle {
                Some(i) => {
                    let s = self.slots.remove(i);
                    evict.push((s.id, s.engine));
                }
                None => {
                    if !self.slots.iter().any(|s| s.evicting) {
                        if let Some(s) = self.slots.iter_mut().min_by_key(|s| s.last_used) {
                            s.evicting = true;
                        }
                    }
                    return Step::Wait(ticket);
                }
            }
        }
        self.clear_evicting();
        self.queue.pop_front();
        self.loading = Some(id.to_string());
        Step::Load { evict }
    }

    fn clear_evicting(&mut self) {
        for s in &mut self.slots {
            s.evicting = false;
        }
    }

    /// The load [`Step::Load`] asked for succeeded: the model is loaded and held by the
    /// request that loaded it. Returns the engine for that request.
    pub fn loaded(&mut self, id: &str, engine: E) -> E {
        self.loading = None;
        let now = self.tick();
        self.slots.push(Slot {
            id: id.to_string(),
            engine: engine.clone(),
            active: 1,
            last_used: now,
            evicting: false,
            unload_when_idle: false,
        });
        engine
    }

    /// The load [`Step::Load`] asked for failed: nothing is loading any more (models
    /// unloaded to make room stay unloaded).
    pub fn load_failed(&mut self, _id: &str) {
        self.loading = None;
    }

    /// A request holding `id` is done. Returns the model when it was to be unloaded once
    /// idle and now is: the caller unloads it.
    pub fn release(&mut self, id: &str) -> Option<(String, E)> {
        let now = self.tick();
        let i = self.slots.iter().position(|s| s.id == id)?;
        let s = &mut self.slots[i];
        s.active = s.active.saturating_sub(1);
        s.last_used = now;
        if s.active == 0 && s.unload_when_idle {
            let s = self.slots.remove(i);
            return Some((s.id, s.engine));
        }
        None
    }

    /// Unloads `id` now when idle, else once its requests are done.
    pub fn unload(&mut self, id: &str) -> Unload<E> {
        let Some(i) = self.slots.iter().position(|s| s.id == id) else {
            return Unload::NotLoaded;
        };
        if self.slots[i].active == 0 {
            let s = self.slots.remove(i);
            return Unload::Now(s.engine);
        }
        self.slots[i].unload_when_idle = true;
        Unload::WhenIdle
    }

    /// A waiting request gives up. When it was first in line, the model it had marked
    /// for eviction takes requests again.
    pub fn cancel(&mut self, ticket: Ticket) {
        if self.queue.front() == Some(&ticket) {
            self.clear_evicting();
        }
        self.queue.retain(|&q| q != ticket);
    }

    /// The loaded models as `(id, engine)`, most recently used first.
    pub fn loaded_models(&self) -> Vec<(String, E)> {
        let mut v: Vec<&Slot<E>> = self.slots.iter().collect();
        v.sort_by_key(|s| std::cmp::Reverse(s.last_used));
        v.into_iter()
            .map(|s| (s.id.clone(), s.engine.clone()))
            .collect()
    }

    /// Requests holding `id` (0 when it is not loaded).
    pub fn active(&self, id: &str) -> usize {
        self.slots
            .iter()
            .find(|s| s.id == id)
            .map_or(0, |s| s.active)
    }

    /// Requests waiting for a load.
    pub fn waiting(&self) -> usize {
        self.queue.len()
    }

    /// The model being loaded, if any.
    pub fn loading(&self) -> Option<&str> {
        self.loading.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Engines are the model's name: `Step`s compare by value.
    type L = Lru<&'static str>;

    fn load(l: &mut L, id: &'static str) -> Vec<String> {
        match l.acquire(id, None) {
            Step::Load { evict } => {
                assert_eq!(l.loading(), Some(id));
                assert_eq!(l.loaded(id, id), id);
                evict.into_iter().map(|(i, _)| i).collect()
            }
            other => panic!("{id}: expected a load, got {other:?}"),
        }
    }

    fn ids(l: &L) -> Vec<String> {
        l.loaded_models().into_iter().map(|(i, _)| i).collect()
    }

    #[test]
    fn loads_until_full_then_unloads_the_least_recently_used() {
        let mut l = L::new(2, 8);
        assert!(load(&mut l, "a").is_empty());
        l.release("a");
        assert!(load(&mut l, "b").is_empty());
        l.release("b");
        // `a` is used again, so `b` becomes the least recently used.
        assert_eq!(l.acquire("a", None), Step::Ready("a"));
        l.release("a");
        assert_eq!(ids(&l), ["a", "b"]);
        assert_eq!(load(&mut l, "c"), ["b"]);
        l.release("c");
        assert_eq!(ids(&l), ["c", "a"]);
        // Loaded models are served without a load, however often.
        for _ in 0..3 {
            assert_eq!(l.acquire("c", None), Step::Ready("c"));
            l.release("c");
        }
        assert_eq!(load(&mut l, "b"), ["a"]);
        assert_eq!(l.waiting(), 0);
    }

    #[test]
    fn a_busy_model_is_not_unloaded_and_the_load_waits() {
        let mut l = L::new(1, 8);
        load(&mut l, "a"); // held by request 1
        let Step::Wait(tb) = l.acquire("b", None) else {
            panic!("b must wait while a is busy")
        };
        assert_eq!(ids(&l), ["a"]);
        // `a` is now marked for eviction: a new request for it queues behind `b`
        // rather than keeping `a` busy forever.
        let Step::Wait(ta) = l.acquire("a", None) else {
            panic!("a new request for the evicting model waits")
        };
        assert_eq!(l.acquire("b", Some(tb)), Step::Wait(tb));
        assert_eq!(l.release("a"), None);
        assert_eq!(
            l.acquire("a", Some(ta)),
            Step::Wait(ta),
            "b is first in line"
        );
        assert_eq!(
            l.acquire("b", Some(tb)),
            Step::Load {
                evict: vec![("a".into(), "a")]
            }
        );
        l.loaded("b", "b");
        // Now `b` is busy and the request for `a` is first in line.
        assert_eq!(l.acquire("a", Some(ta)), Step::Wait(ta));
        l.release("b");
        assert_eq!(
            l.acquire("a", Some(ta)),
            Step::Load {
                evict: vec![("b".into(), "b")]
            }
        );
        l.loaded("a", "a");
        assert_eq!(l.waiting(), 0);
        assert_eq!(l.active("a"), 1);
    }

    #[test]
    fn an_idle_model_goes_before_a_busy_one_even_if_used_later() {
        let mut l = L::new(2, 8);
        load(&mut l, "a"); // stays busy
        load(&mut l, "b");
        l.release("b"); // idle, though used after `a`
        assert_eq!(load(&mut l, "c"), ["b"]);
        assert_eq!(l.active("a"), 1);
    }

    #[test]
    fn loads_are_one_at_a_time_in_arrival_order() {
        let mut l = L::new(3, 8);
        assert_eq!(l.acquire("a", None), Step::Load { evict: vec![] });
        let Step::Wait(tb) = l.acquire("b", None) else {
            panic!()
        };
        let Step::Wait(tc) = l.acquire("c", None) else {
            panic!()
        };
        // The same model requested while it loads waits for that load, not a second one.
        let Step::Wait(ta) = l.acquire("a", None) else {
            panic!()
        };
        l.loaded("a", "a");
        assert_eq!(l.acquire("c", Some(tc)), Step::Wait(tc), "b came first");
        assert_eq!(l.acquire("a", Some(ta)), Step::Ready("a"));
        assert_eq!(l.active("a"), 2);
        assert_eq!(l.acquire("b", Some(tb)), Step::Load { evict: vec![] });
        assert_eq!(l.acquire("c", Some(tc)), Step::Wait(tc), "b is loading");
        l.loaded("b", "b");
        assert_eq!(l.acquire("c", Some(tc)), Step::Load { evict: vec![] });
        assert_eq!(l.waiting(), 0);
    }

    #[test]
    fn a_failed_load_leaves_a_consistent_state() {
        let mut l = L::new(1, 8);
        load(&mut l, "a");
        l.release("a");
        let Step::Load { evict } = l.acquire("bad", None) else {
            panic!()
        };
        assert_eq!(evict, [("a".to_string(), "a")]);
        let Step::Wait(t) = l.acquire("bad", None) else {
            panic!("a second request for the loading model waits")
        };
        l.load_failed("bad");
        assert_eq!(l.loading(), None);
        assert!(ids(&l).is_empty(), "a stays unloaded, bad never was");
        // The waiting request tries the load itself; then `a` loads without evicting.
        assert_eq!(l.acquire("bad", Some(t)), Step::Load { evict: vec![] });
        l.load_failed("bad");
        assert!(load(&mut l, "a").is_empty());
        assert_eq!(l.waiting(), 0);
    }

    #[test]
    fn unload_now_or_when_idle_and_a_new_request_keeps_the_model() {
        let mut l = L::new(2, 8);
        load(&mut l, "a");
        assert_eq!(l.unload("a"), Unload::WhenIdle);
        assert_eq!(l.release("a"), Some(("a".into(), "a")));
        assert!(ids(&l).is_empty());
        assert_eq!(l.unload("a"), Unload::NotLoaded);

        load(&mut l, "b");
        assert_eq!(l.unload("b"), Unload::WhenIdle);
        assert_eq!(l.acquire("b", None), Step::Ready("b"));
        assert_eq!(l.release("b"), None);
        assert_eq!(
            l.release("b"),
            None,
            "the later request cancelled the unload"
        );
        assert_eq!(l.unload("b"), Unload::Now("b"));
        assert!(ids(&l).is_empty());
    }

    #[test]
    fn the_queue_is_bounded_and_a_cancelled_wait_frees_the_victim() {
        let mut l = L::new(1, 2);
        load(&mut l, "a");
        let Step::Wait(t1) = l.acquire("b", None) else {
            panic!()
        };
        let Step::Wait(_t2) = l.acquire("c", None) else {
            panic!()
        };
        assert_eq!(l.acquire("d", None), Step::QueueFull);
        // Requests for `a` queue too (it is evicting for `b`) and the queue is full.
        assert_eq!(l.acquire("a", None), Step::QueueFull);
        l.cancel(t1);
        // `b` gave up: `a` serves again, and `c` (now first) marks it once it retries.
        assert_eq!(l.acquire("a", None), Step::Ready("a"));
        assert_eq!(l.active("a"), 2);
        assert_eq!(l.waiting(), 1);
    }
}
