//! The continuous-batching scheduler, a pure state machine (no model, no threads).
//!
//! Input: the waiting queue, the running sequences, the block pool and a token budget.
//! Output: a [`Step`], the plain list of token ranges to run through the model next.
//!
//! Each step, running sequences go first, oldest first: a decoding sequence needs one
//! token, a sequence still prefilling gets as much of its prompt as the budget leaves
//! (chunked prefill, so a long prompt never stalls the others' decoding). Then waiting
//! requests are admitted in arrival order while slots, budget and blocks last, each first
//! taking whatever prefix of its prompt the prefix cache already holds.
//!
//! When a running sequence needs a block and none is free, the youngest running sequence
//! is preempted: its blocks go back to the pool (full ones stay in the prefix cache) and it
//! returns to the front of the queue, to be recomputed later. The oldest sequence can
//! always proceed because the pool holds at least one full context, so the system never
//! deadlocks and never fails an allocation.

use crate::blocks::{BlockId, BlockPool, ROOT_HASH};
use std::collections::{HashMap, VecDeque};

pub type SeqId = u64;

/// Limits of the scheduler.
#[derive(Debug, Clone, Copy)]
pub struct SchedConfig {
    /// Most sequences computed together.
    pub max_running: usize,
    /// Most tokens in one step (decode tokens + prefill chunks).
    pub token_budget: usize,
}

/// One sequence's work in a step: compute `tokens[start..start + len]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepItem {
    pub seq: SeqId,
    pub start: usize,
    pub len: usize,
    /// The range ends at the sequence's last known token: sample from its logits.
    pub sample: bool,
}

/// What to run next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    pub items: Vec<StepItem>,
    /// Sequences sent back to the queue in this step to free blocks.
    pub preempted: Vec<SeqId>,
    /// Sequences that started running for the first time in this step.
    pub admitted: Vec<SeqId>,
}

/// A sequence as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct Seq {
    /// Prompt then generated tokens.
    pub tokens: Vec<u32>,
    pub n_prompt: usize,
    /// Tokens whose KV is in `blocks`.
    pub n_computed: usize,
    pub blocks: Vec<BlockId>,
    /// Chained hash of each filed full block, in order.
    hashes: Vec<u64>,
    /// Prompt tokens taken from the prefix cache at first admission.
    pub cached_tokens: usize,
    pub admitted_once: bool,
}

/// The scheduler's whole state.
#[derive(Debug)]
pub struct Scheduler {
    cfg: SchedConfig,
    pool: BlockPool,
    waiting: VecDeque<SeqId>,
    /// Oldest first.
    running: Vec<SeqId>,
    seqs: HashMap<SeqId, Seq>,
}

impl Scheduler {
    pub fn new(cfg: SchedConfig, pool: BlockPool) -> Scheduler {
        Scheduler {
            cfg,
            pool,
            waiting: VecDeque::new(),
            running: Vec::new(),
            seqs: HashMap::new(),
        }
    }

    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    pub fn seq(&self, id: SeqId) -> Option<&Seq> {
        self.seqs.get(&id)
    }

    pub fn n_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub fn n_running(&self) -> usize {
        self.running.len()
    }

    pub fn is_idle(&self) -> bool {
        self.seqs.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = SeqId> + '_ {
        self.seqs.keys().copied()
    }

    /// Queues a new sequence with a non-empty prompt.
    pub fn add(&mut self, id: SeqId, prompt: Vec<u32>) {
        let n_prompt = prompt.len();
        self.seqs.insert(
            id,
            Seq {
                tokens: prompt,
                n_prompt,
                n_computed: 0,
                blocks: Vec::new(),
                hashes: Vec::new(),
                cached_tokens: 0,
                admitted_once: false,
            },
        );
        self.waiting.push_back(id);
    }

    /// Removes a sequence (finished or cancelled) and releases its blocks.
    pub fn remove(&mut self, id: SeqId) {
        if let Some(s) = self.seqs.remove(&id) {
            // Tail first: the pool evicts the earliest released first, so a prefix
            // outlives its extensions.
            for &b in s.blocks.iter().rev() {
                self.pool.release(b);
            }
        }
        self.waiting.retain(|&w| w != id);
        self.running.retain(|&r| r != id);
    }

    /// Appends a sampled token to a sequence.
    pub fn push_token(&mut self, id: SeqId, token: u32) {
        if let Some(s) = self.seqs.get_mut(&id) {
            s.tokens.push(token);
        }
    }

    /// Records that `step` ran: advances each sequence and files its newly full blocks in
    /// the prefix cache.
    pub fn commit(&mut self, step: &Step) {
        let bs = self.pool.block_size();
        for it in &step.items {
            let Some(s) = self.seqs.get_mut(&it.seq) else {
                continue;
            };
            s.n_computed = (it.start + it.len).min(s.tokens.len());
            while (s.hashes.len() + 1) * bs <= s.n_computed {
                let i = s.hashes.len();
                let parent = s.hashes.last().copied().unwrap_or(ROOT_HASH);
                let h = self
                    .pool
                    .file(s.blocks[i], parent, &s.tokens[i * bs..(i + 1) * bs]);
                s.hashes.push(h);
            }
        }
    }

    /// Sends the sequence back to the front of the queue, freeing its blocks.
    fn preempt(&mut self, id: SeqId) {
        if let Some(s) = self.seqs.get_mut(&id) {
            for b in s.blocks.drain(..).rev() {
                self.pool.release(b);
            }
            s.hashes.clear();
            s.n_computed = 0;
        }
        self.running.retain(|&r| r != id);
        self.waiting.push_front(id);
    }

    /// Gives sequence `id` blocks for its first `n` positions; false if the pool is empty.
    fn grow(&mut self, id: SeqId, n: usize) -> bool {
        let bs = self.pool.block_size();
        let Some(s) = self.seqs.get_mut(&id) else {
            return false;
        };
        while s.blocks.len() * bs < n {
            match self.pool.allocate() {
                Some(b) => s.blocks.push(b),
                None => return false,
            }
        }
        true
    }

    /// Plans the next step.
    pub fn schedule(&mut self) -> Step {
        let mut step = Step::default();
        let mut budget = self.cfg.token_budget;

        // 1. Running sequences, oldest first.
        let mut i = 0;
        while i < self.running.len() && budget > 0 {
            let id = self.running[i];
            let (start, need) = match self.seqs.get(&id) {
                Some(s) => (s.n_computed, s.tokens.len() - s.n_computed),
                None => (0, 0),
            };
            if need == 0 {
                i += 1;
                continue;
            }
            let len = need.min(budget);
            // Preempt the youngest others until this one fits (or it is the youngest).
            let mut fits = self.grow(id, start + len);
            while !fits {
                let Some(&youngest) = self.running.last() else {
                    break;
                };
                self.preempt(youngest);
                step.preempted.push(youngest);
                step.items.retain(|it| it.seq != youngest);
                if youngest == id {
                    break;
                }
                fits = self.grow(id, start + len);
            }
            if !fits {
                continue; // `id` itself was preempted; running[i] is now the next one
            }
            step.items.push(StepItem {
                seq: id,
                start,
                len,
                sample: start + len == start + need,
            });
            budget -= len;
            i += 1;
        }

        // 2. Admit waiting sequences while slots, budget and free blocks last (not in a
        // step that had to preempt: the queue's front would only take the blocks back).
        if !step.preempted.is_empty() {
            return step;
        }
        while budget > 0 && self.running.len() < self.cfg.max_running {
            let Some(&id) = self.waiting.front() else {
                break;
            };
            let bs = self.pool.block_size();
            let Some(s) = self.seqs.get(&id) else {
                self.waiting.pop_front();
                continue;
            };
            // Reuse cached full blocks, always leaving the last token to compute (its
            // logits are needed).
            let n_tokens = s.tokens.len();
            let (blocks, hashes) = self.pool.lookup(&s.tokens, (n_tokens - 1) / bs);
            let start = blocks.len() * bs;
            let len = (n_tokens - start).min(budget);
            let blocks_needed = (start + len).div_ceil(bs) - blocks.len();
            if self.pool.n_free() < blocks_needed {
                for b in blocks {
                    self.pool.release(b);
                }
                break;
            }
            let Some(s) = self.seqs.get_mut(&id) else {
                break;
            };
            s.blocks = blocks;
            s.hashes = hashes;
            s.n_computed = start;
            if !s.admitted_once {
                s.admitted_once = true;
                s.cached_tokens = start.min(s.n_prompt);
                step.admitted.push(id);
            }
            if !self.grow(id, start + len) {
                // Cannot happen after the free-block check; undo rather than trust it.
                self.preempt(id);
                break;
            }
            self.waiting.pop_front();
            self.running.push(id);
            step.items.push(StepItem {
                seq: id,
                start,
                len,
                sample: start + len == n_tokens,
            });
            budget -= len;
        }
        step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(n_blocks: usize, bs: usize, max_running: usize, budget: usize) -> Scheduler {
        Scheduler::new(
            SchedConfig {
                max_running,
                token_budget: budget,
            },
            BlockPool::new(n_blocks, bs),
        )
    }

    /// Runs a step and "samples" token 7 for every item that asks.
    fn run(s: &mut Scheduler) -> Step {
        let step = s.schedule();
        s.commit(&step);
        for it in &step.items {
            if it.sample {
                s.push_token(it.seq, 7);
            }
        }
        step
    }

    fn item(seq: SeqId, start: usize, len: usize, sample: bool) -> StepItem {
        StepItem {
            seq,
            start,
            len,
            sample,
        }
    }

    #[test]
    fn prefill_is_chunked_under_the_budget_and_decode_goes_first() {
        let mut s = sched(16, 4, 4, 8);
        s.add(1, vec![1; 5]);
        s.add(2, vec![2; 12]);
        // Step 1: seq 1's whole prompt (5) and 3 tokens of seq 2.
        let st = run(&mut s);
        assert_eq!(st.items, vec![item(1, 0, 5, true), item(2, 0, 3, false)]);
        assert_eq!(st.admitted, vec![1, 2]);
        // Step 2: seq 1 decodes one token, seq 2 gets the other 7 of the budget.
        let st = run(&mut s);
        assert_eq!(st.items, vec![item(1, 5, 1, true), item(2, 3, 7, false)]);
        // Step 3: seq 2 finishes its prompt (2 left) and samples.
        let st = run(&mut s);
        assert_eq!(st.items, vec![item(1, 6, 1, true), item(2, 10, 2, true)]);
        assert_eq!(s.seq(2).unwrap().tokens.len(), 13);
    }

    #[test]
    fn max_running_limits_admission() {
        let mut s = sched(16, 4, 1, 64);
        s.add(1, vec![1; 3]);
        s.add(2, vec![2; 3]);
        let st = run(&mut s);
        assert_eq!(st.items, vec![item(1, 0, 3, true)]);
        assert_eq!(s.n_waiting(), 1);
        s.remove(1);
        let st = run(&mut s);
        assert_eq!(st.items, vec![item(2, 0, 3, true)]);
    }

    #[test]
    fn shared_prefix_is_reused_and_reported() {
        let mut s = sched(16, 4, 4, 64);
        s.add(1, (0..10).collect());
        run(&mut s);
        // Same first 8 tokens (two full blocks), different tail.
        let mut p2: Vec<u32> = (0..8).collect();
        p2.extend([50, 51, 52]);
        s.add(2, p2);
        let st = run(&mut s);
        assert_eq!(st.items[1], item(2, 8, 3, true));
        assert_eq!(s.seq(2).unwrap().cached_tokens, 8);
        // Both hold the same two first blocks.
        assert_eq!(s.seq(1).unwrap().blocks[..2], s.seq(2).unwrap().blocks[..2]);
        // An identical prompt still computes its last token (to get logits).
        s.add(3, (0..8).collect());
        let st = run(&mut s);
        assert_eq!(st.items[2], item(3, 4, 4, true));
        assert_eq!(s.seq(3).unwrap().cached_tokens, 4);
    }

    #[test]
    fn cache_survives_the_sequence_that_made_it() {
        let mut s = sched(8, 4, 4, 64);
        s.add(1, (0..9).collect());
        run(&mut s);
        s.remove(1);
        assert_eq!(s.pool().n_used(), 0);
        s.add(2, (0..9).collect());
        let st = run(&mut s);
        assert_eq!(st.items, vec![item(2, 8, 1, true)]);
    }

    #[test]
    fn youngest_is_preempted_when_blocks_run_out_and_recomputed_later() {
        // 4 blocks of 2 positions = 8 positions in all.
        let mut s = sched(4, 2, 4, 64);
        s.add(1, vec![1, 1, 1]); // 2 blocks
        s.add(2, vec![2, 2, 2]); // 2 blocks
        let st = run(&mut s);
        assert_eq!(st.items.len(), 2);
        assert_eq!(s.pool().n_free(), 0);
        // Seq 1 now has 4 tokens and needs no new block to compute position 3.
        let st = run(&mut s);
        assert_eq!(st.items, vec![item(1, 3, 1, true), item(2, 3, 1, true)]);
        // Position 4 of seq 1 needs a third block: seq 2 (youngest) is preempted.
        let st = run(&mut s);
        assert_eq!(st.preempted, vec![2]);
        assert_eq!(st.items, vec![item(1, 4, 1, true)]);
        assert_eq!(s.n_waiting(), 1);
        // Seq 2 keeps its generated tokens and is recomputed once seq 1 is gone; seq 1 took
        // the block released last (seq 2's tail), so its first block is still cached.
        assert_eq!(s.seq(2).unwrap().tokens.len(), 5);
        s.remove(1);
        let st = run(&mut s);
        assert_eq!(st.items, vec![item(2, 2, 3, true)]);
        assert!(
            st.admitted.is_empty(),
            "a preempted sequence is not re-admitted as new"
        );
        assert_eq!(s.seq(2).unwrap().cached_tokens, 0);
    }

    #[test]
    fn a_lone_sequence_preempts_itself_never_fails() {
        // Budget larger than the pool; a sequence that outgrows the pool alone gets
        // preempted (the engine stops sequences at the context size before this).
        let mut s = sched(2, 2, 4, 64);
        s.add(1, vec![1, 1, 1, 1]);
        run(&mut s);
        let st = s.schedule();
        assert_eq!(st.preempted, vec![1]);
        assert!(st.items.is_empty());
    }

    #[test]
    fn waiting_sequence_is_not_admitted_without_blocks() {
        let mut s = sched(2, 2, 4, 64);
        s.add(1, vec![1, 1, 1]);
        s.add(2, vec![2, 2]);
        let st = run(&mut s);
        assert_eq!(st.items, vec![item(1, 0, 3, true)]);
        assert_eq!(s.n_waiting(), 1);
        s.remove(1);
        let st = run(&mut s);
        assert_eq!(st.items, vec![item(2, 0, 2, true)]);
    }

    #[test]
    fn remove_frees_every_block() {
        let mut s = sched(8, 2, 4, 3);
        s.add(1, vec![1; 7]);
        s.add(2, vec![2; 3]);
        run(&mut s);
        run(&mut s);
        s.remove(1);
        s.remove(2);
        assert_eq!(s.pool().n_used(), 0);
        assert!(s.is_idle());
    }
}
