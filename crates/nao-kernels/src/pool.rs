//! A thread pool built for latency: persistent workers that spin briefly, then park.
//!
//! One decode step runs hundreds of small parallel regions (one per matmul), so the cost of
//! waking workers matters more than throughput features. `run` hands the same closure to
//! every thread (the caller is thread 0) and returns when all have finished; each caller
//! splits its own work by thread index.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Iterations a worker spins on the job counter before parking (~0.2-1 ms).
const SPIN_ITERS: u32 = 20_000;

type Job = *const (dyn Fn(usize) + Sync);

struct Shared {
    /// Bumped once per job; workers compare it with the last one they ran.
    generation: AtomicU64,
    /// Workers that have not yet finished the current job.
    pending: AtomicUsize,
    shutdown: AtomicBool,
    /// Written by the caller before `generation` is bumped (Release), read by workers after
    /// they observe the bump (Acquire).
    job: UnsafeCell<Option<Job>>,
    lock: Mutex<()>,
    cv: Condvar,
}

// SAFETY: `job` is only written by the thread calling `run` while no worker reads it (all
// workers finished the previous job: `pending == 0`), and only read by workers after an
// Acquire load of `generation` that synchronises with the Release bump that follows the write.
unsafe impl Sync for Shared {}
// SAFETY: the raw job pointer is only dereferenced under the protocol above.
unsafe impl Send for Shared {}

/// A fixed set of worker threads; `n_threads` counts the caller.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    n_threads: usize,
    /// Serialises concurrent `run` calls from different threads.
    run_lock: Mutex<()>,
}

impl ThreadPool {
    /// Starts `n_threads - 1` workers (the caller of `run` is the last thread).
    pub fn new(n_threads: usize) -> ThreadPool {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            job: UnsafeCell::new(None),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        });
        let workers = (1..n_threads)
            .filter_map(|idx| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("nao-worker-{idx}"))
                    .spawn(move || worker_loop(&s, idx))
                    .ok()
            })
            .collect::<Vec<_>>();
        // If the OS refused some threads, run with the ones we got.
        let n_threads = workers.len() + 1;
        ThreadPool {
            shared,
            workers,
            n_threads,
            run_lock: Mutex::new(()),
        }
    }

    /// Number of threads that run each job, the caller included.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs `f(thread_index)` on every thread (indices `0..n_threads`) and waits for all.
    pub fn run(&self, f: &(dyn Fn(usize) + Sync)) {
        if self.n_threads == 1 {
            f(0);
            return;
        }
        let _guard = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: no worker is reading `job` (the previous `run` waited for pending == 0), and
        // we erase the closure's lifetime only for the duration of this call: we wait below
        // until every worker has finished with it before returning.
        unsafe {
            let job: Job = std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f);
            *s.job.get() = Some(job);
        }
        s.pending.store(self.n_threads - 1, Ordering::Relaxed);
        {
            let _l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.generation.fetch_add(1, Ordering::Release);
        }
        s.cv.notify_all();
        f(0);
        let mut spins = 0u32;
        while s.pending.load(Ordering::Acquire) != 0 {
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Splits `0..n` into `n_threads` contiguous ranges and runs `f(range)` on each.
    pub fn for_ranges(&self, n: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
        let nt = self.n_threads.min(n.max(1));
        if nt <= 1 {
            f(0..n);
            return;
        }
        self.run(&|t| {
            if t < nt {
                f(split_range(n, nt, t));
            }
        });
    }
}

/// The `t`-th of `nt` near-equal contiguous pieces of `0..n`.
pub fn split_range(n: usize, nt: usize, t: usize) -> std::ops::Range<usize> {
    let base = n / nt;
    let rem = n % nt;
    let start = t * base + t.min(rem);
    let len = base + usize::from(t < rem);
    start..start + len
}

fn worker_loop(s: &Shared, idx: usize) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        let mut g = s.generation.load(Ordering::Acquire);
        while g == seen && !s.shutdown.load(Ordering::Relaxed) {
            if spins < SPIN_ITERS {
                std::hint::spin_loop();
                spins += 1;
            } else {
                let mut l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                while s.generation.load(Ordering::Acquire) == seen
                    && !s.shutdown.load(Ordering::Relaxed)
                {
                    l = s.cv.wait(l).unwrap_or_else(|e| e.into_inner());
                }
            }
            g = s.generation.load(Ordering::Acquire);
        }
        if s.shutdown.load(Ordering::Relaxed) {
            return;
        }
        seen = g;
        // SAFETY: we observed the generation bump with Acquire, which happens after the
        // caller wrote `job`; the caller keeps the closure alive until `pending` reaches 0.
        let job = unsafe { *s.job.get() };
        if let Some(job) = job {
            // SAFETY: see above — the pointee is alive until we decrement `pending`.
            unsafe { (*job)(idx) };
        }
        s.pending.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        {
            let _l = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.shutdown.store(true, Ordering::Relaxed);
        }
        self.shared.cv.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// A raw pointer to an output buffer that threads write at disjoint indices.
#[derive(Clone, Copy)]
pub struct SharedMut<T> {
    ptr: *mut T,
    len: usize,
}

// SAFETY: users only write disjoint indices from different threads (documented on `write`).
unsafe impl<T: Send> Sync for SharedMut<T> {}
// SAFETY: see above.
unsafe impl<T: Send> Send for SharedMut<T> {}

impl<T> SharedMut<T> {
    pub fn new(s: &mut [T]) -> SharedMut<T> {
        SharedMut {
            ptr: s.as_mut_ptr(),
            len: s.len(),
        }
    }

    /// Writes `v` at `i`. Panics if `i` is out of bounds (a logic error, not input-dependent).
    ///
    /// Callers must ensure no two threads write the same index during one parallel region
    /// and that the underlying slice outlives the region.
    #[inline]
    pub fn write(&self, i: usize, v: T) {
        assert!(i < self.len, "SharedMut index out of bounds");
        // SAFETY: bounds checked above; exclusive per-index access is the caller's contract
        // (each thread owns a disjoint row range), and the borrow outlives the pool job.
        unsafe { self.ptr.add(i).write(v) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn runs_every_index_once_many_times() {
        let pool = ThreadPool::new(3);
        for _ in 0..2000 {
            let hits: Vec<AtomicUsize> =
                (0..pool.n_threads()).map(|_| AtomicUsize::new(0)).collect();
            pool.run(&|t| {
                hits[t].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn ranges_cover_exactly() {
        for n in 0..50 {
            for nt in 1..5 {
                let mut covered = vec![0; n];
                for t in 0..nt {
                    for i in split_range(n, nt, t) {
                        covered[i] += 1;
                    }
                }
                assert!(covered.iter().all(|&c| c == 1));
            }
        }
    }

    #[test]
    fn parallel_writes_land() {
        let pool = ThreadPool::new(2);
        let mut out = vec![0usize; 1000];
        let w = SharedMut::new(&mut out);
        pool.for_ranges(1000, &|r| {
            for i in r {
                w.write(i, i * 2);
            }
        });
        assert!(out.iter().enumerate().all(|(i, &v)| v == i * 2));
    }

    #[test]
    fn parks_and_wakes() {
        let pool = ThreadPool::new(2);
        let c = AtomicUsize::new(0);
        pool.run(&|_| {
            c.fetch_add(1, Ordering::Relaxed);
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        pool.run(&|_| {
            c.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(c.load(Ordering::Relaxed), 4);
    }
}
