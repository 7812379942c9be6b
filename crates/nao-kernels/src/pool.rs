//! A thread pool built for latency: persistent workers that spin briefly, then park.
//!
//! One decode step runs hundreds of small parallel regions (one per matmul), so the cost of
//! waking workers matters more than throughput features. Work is split into chunks that
//! threads claim from a shared counter, and the caller works too: when another process holds
//! a core and a worker is descheduled, the threads that are running take its chunks instead
//! of waiting for it. A worker that wakes after the caller has finished the job does not join
//! it at all, so the caller never waits on a thread that is not running.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Spin iterations (with `pause`) before a waiting thread starts yielding its core.
const SPIN_PAUSE: u32 = 2_000;
/// Further `yield_now` rounds before a worker parks on the condition variable.
const SPIN_YIELD: u32 = 200;

type Job = *const (dyn Fn(usize) + Sync);

/// `state` packs the job generation (high 32 bits), a closed flag and the number of workers
/// that joined the job (low 31 bits).
const CLOSED: u64 = 1 << 31;
const ACTIVE_MASK: u64 = CLOSED - 1;

fn pack(generation: u64) -> u64 {
    (generation & 0xFFFF_FFFF) << 32
}

struct Shared {
    /// Bumped once per job; idle workers watch it.
    generation: AtomicU64,
    /// Generation of the current job, closed flag, and count of workers inside it.
    state: AtomicU64,
    /// Next chunk to claim, and how many chunks the current job has.
    next_chunk: AtomicUsize,
    n_chunks: AtomicUsize,
    shutdown: AtomicBool,
    /// Workers parked on `cv` (so the caller only signals when someone sleeps).
    sleepers: AtomicUsize,
    /// Written by the caller before it publishes `state` (Release); read by workers only
    /// after they joined through a successful compare-exchange on `state` (Acquire).
    job: UnsafeCell<Option<Job>>,
    lock: Mutex<()>,
    cv: Condvar,
}

// SAFETY: `job` is written only by the caller of `for_chunks` while no worker is inside a job
// (the previous call waited until the active count was 0 after closing it), and read only by
// workers that joined the current job, which the caller waits for before returning.
unsafe impl Sync for Shared {}
// SAFETY: the raw job pointer is only dereferenced under the protocol above.
unsafe impl Send for Shared {}

/// A fixed set of worker threads; `n_threads` counts the caller.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    n_threads: usize,
    /// Serialises concurrent calls from different threads.
    run_lock: Mutex<()>,
}

impl ThreadPool {
    /// Starts `n_threads - 1` workers (the caller is the last thread).
    pub fn new(n_threads: usize) -> ThreadPool {
        let n_threads = n_threads.max(1);
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            state: AtomicU64::new(CLOSED),
            next_chunk: AtomicUsize::new(0),
            n_chunks: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            job: UnsafeCell::new(None),
            lock: Mutex::new(()),
            cv: Condvar::new(),
        });
        let workers = (1..n_threads)
            .filter_map(|idx| {
                let s = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("nao-worker-{idx}"))
                    .spawn(move || worker_loop(&s))
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

    /// Number of threads that may run each job, the caller included.
    pub fn n_threads(&self) -> usize {
        self.n_threads
    }

    /// Runs `f(chunk)` once for every chunk in `0..n_chunks`, on whichever threads are
    /// running, and returns when all chunks are done.
    pub fn for_chunks(&self, n_chunks: usize, f: &(dyn Fn(usize) + Sync)) {
        if self.n_threads == 1 || n_chunks <= 1 {
            (0..n_chunks).for_each(f);
            return;
        }
        let _guard = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        let s = &*self.shared;
        // SAFETY: no worker is inside a job (the previous call closed its job and waited for
        // the active count to reach 0), so nobody reads `job` now; the closure's lifetime is
        // erased only until this call returns, and we wait below for every worker that
        // joined before returning.
        unsafe {
            let job: Job = std::mem::transmute::<&(dyn Fn(usize) + Sync), Job>(f);
            *s.job.get() = Some(job);
        }
        s.n_chunks.store(n_chunks, Ordering::Relaxed);
        s.next_chunk.store(0, Ordering::Relaxed);
        let generation = s.generation.load(Ordering::Relaxed).wrapping_add(1);
        s.state.store(pack(generation), Ordering::Release);
        s.generation.store(generation, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.cv.notify_all();
        }
        run_chunks(s, f);
        // Close the job: workers that have not joined yet will not; wait for those inside.
        let mut st = s.state.fetch_or(CLOSED, Ordering::AcqRel) | CLOSED;
        let mut spins = 0u32;
        while st & ACTIVE_MASK != 0 {
            backoff(&mut spins);
            st = s.state.load(Ordering::Acquire);
        }
    }

    /// Splits `0..n` into contiguous ranges (a few per thread) and runs `f(range)` on each.
    pub fn for_ranges(&self, n: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
        let n_chunks = (self.n_threads * 4).min(n);
        if self.n_threads <= 1 || n_chunks <= 1 {
            f(0..n);
            return;
        }
        self.for_chunks(n_chunks, &|c| f(split_range(n, n_chunks, c)));
    }
}

/// Claims and runs chunks until none are left.
fn run_chunks(s: &Shared, f: &(dyn Fn(usize) + Sync)) {
    let n = s.n_chunks.load(Ordering::Relaxed);
    loop {
        let c = s.next_chunk.fetch_add(1, Ordering::Relaxed);
        if c >= n {
            return;
        }
        f(c);
    }
}

/// Spin with `pause` first, then give the core away with `yield_now`.
fn backoff(spins: &mut u32) {
    if *spins < SPIN_PAUSE {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
    *spins = spins.saturating_add(1);
}

/// The `t`-th of `nt` near-equal contiguous pieces of `0..n`.
pub fn split_range(n: usize, nt: usize, t: usize) -> std::ops::Range<usize> {
    let base = n / nt;
    let rem = n % nt;
    let start = t * base + t.min(rem);
    let len = base + usize::from(t < rem);
    start..start + len
}

fn worker_loop(s: &Shared) {
    let mut seen = 0u64;
    loop {
        let mut spins = 0u32;
        let mut g = s.generation.load(Ordering::Acquire);
        while g == seen && !s.shutdown.load(Ordering::Relaxed) {
            if spins < SPIN_PAUSE + SPIN_YIELD {
                backoff(&mut spins);
            } else {
                let mut l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
                s.sleepers.fetch_add(1, Ordering::SeqCst);
                while s.generation.load(Ordering::SeqCst) == seen
                    && !s.shutdown.load(Ordering::SeqCst)
                {
                    l = s.cv.wait(l).unwrap_or_else(|e| e.into_inner());
                }
                s.sleepers.fetch_sub(1, Ordering::SeqCst);
                spins = 0;
            }
            g = s.generation.load(Ordering::Acquire);
        }
        if s.shutdown.load(Ordering::Relaxed) {
            return;
        }
        seen = g;
        // Join the job unless it has moved on or been closed.
        let mut st = s.state.load(Ordering::Acquire);
        let joined = loop {
            if st >> 32 != g & 0xFFFF_FFFF || st & CLOSED != 0 {
                break false;
            }
            match s
                .state
                .compare_exchange_weak(st, st + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break true,
                Err(now) => st = now,
            }
        };
        if !joined {
            continue;
        }
        // SAFETY: we joined the open job through the compare-exchange (Acquire), which
        // follows the caller's write of `job`; the caller waits for our decrement below.
        let job = unsafe { *s.job.get() };
        if let Some(job) = job {
            // SAFETY: see above — the closure outlives our membership in the job.
            run_chunks(s, unsafe { &*job });
        }
        s.state.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        {
            let _l = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.shutdown.store(true, Ordering::SeqCst);
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

    /// The elements `range` as a mutable slice. Panics if `range` is out of bounds.
    ///
    /// # Safety
    /// During the parallel region no other thread may read or write any index of `range`
    /// (each thread takes a disjoint range), and the underlying slice must outlive the
    /// returned borrow.
    #[inline]
    #[allow(clippy::mut_from_ref)] // the disjointness contract above is what makes it sound
    pub unsafe fn slice_mut(&self, range: std::ops::Range<usize>) -> &mut [T] {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "SharedMut range out of bounds"
        );
        // SAFETY: in bounds (checked above); exclusive access to `range` and the lifetime of
        // the underlying slice are the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(range.start), range.len()) }
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
    fn runs_every_chunk_once_many_times() {
        let pool = ThreadPool::new(3);
        for round in 0..2000 {
            let n = 1 + round % 17;
            let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
            pool.for_chunks(n, &|c| {
                hits[c].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn finishes_when_more_threads_than_cores_are_busy() {
        // 8 workers on a 2-core machine: most are descheduled at any moment; the caller
        // and whoever runs must still finish every job.
        let pool = ThreadPool::new(8);
        let total = AtomicUsize::new(0);
        for _ in 0..500 {
            pool.for_chunks(32, &|_| {
                total.fetch_add(1, Ordering::Relaxed);
            });
        }
        assert_eq!(total.load(Ordering::Relaxed), 500 * 32);
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
        pool.for_chunks(2, &|_| {
            c.fetch_add(1, Ordering::Relaxed);
        });
        // Long enough for the worker to park; the next job must wake it or run without it.
        std::thread::sleep(std::time::Duration::from_millis(50));
        pool.for_chunks(2, &|_| {
            c.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(c.load(Ordering::Relaxed), 4);
    }
}
