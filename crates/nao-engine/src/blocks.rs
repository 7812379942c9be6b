//! Bookkeeping of the paged KV cache's blocks: which are free, who holds which, and the
//! prefix cache.
//!
//! Prefix caching (vLLM's automatic prefix caching): when a block fills up, it is filed
//! under a hash of its tokens chained with the hash of the block before it, so one hash
//! names a whole prefix. A new request walks its prompt block by block and takes every
//! block already filed under the same chain instead of computing it again. Blocks nobody
//! holds stay filed until they are needed for new work, oldest released first.
//!
//! Hashes are only an index: a hit is confirmed by comparing the stored tokens and parent
//! hash, so a collision can cost a cache miss but never wrong KV.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};

pub type BlockId = u32;

/// The hash of an empty prefix, the parent of every sequence's first block.
pub const ROOT_HASH: u64 = 0x6e61_6f5f_726f_6f74;

/// Chains `parent` with the tokens of one full block.
pub fn block_hash(parent: u64, tokens: &[u32]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    parent.hash(&mut h);
    tokens.hash(&mut h);
    h.finish()
}

/// What a filed block holds.
#[derive(Debug, Clone)]
struct Filed {
    hash: u64,
    parent: u64,
    tokens: Vec<u32>,
}

/// The free list, reference counts and prefix index of every block.
#[derive(Debug)]
pub struct BlockPool {
    block_size: usize,
    refs: Vec<u32>,
    filed: Vec<Option<Filed>>,
    by_hash: HashMap<u64, BlockId>,
    /// Free blocks that hold nothing worth keeping.
    fresh: Vec<BlockId>,
    /// Free blocks still filed in the prefix index, keyed by release order (oldest first).
    evictable: BTreeMap<u64, BlockId>,
    /// The `evictable` key of each free filed block.
    released_at: Vec<u64>,
    tick: u64,
}

impl BlockPool {
    pub fn new(n_blocks: usize, block_size: usize) -> BlockPool {
        BlockPool {
            block_size,
            refs: vec![0; n_blocks],
            filed: vec![None; n_blocks],
            by_hash: HashMap::new(),
            fresh: (0..n_blocks as BlockId).rev().collect(),
            evictable: BTreeMap::new(),
            released_at: vec![0; n_blocks],
            tick: 0,
        }
    }

    pub fn block_size(&self) -> usize {
        self.block_size
    }

    pub fn n_blocks(&self) -> usize {
        self.refs.len()
    }

    /// Blocks that can be handed out now (fresh or evictable).
    pub fn n_free(&self) -> usize {
        self.fresh.len() + self.evictable.len()
    }

    /// Blocks held by at least one sequence.
    pub fn n_used(&self) -> usize {
        self.n_blocks() - self.n_free()
    }

    /// Takes a block for new KV, evicting the least recently released filed block when no
    /// fresh one is left. `None` when every block is held.
    pub fn allocate(&mut self) -> Option<BlockId> {
        let b = match self.fresh.pop() {
            Some(b) => b,
            None => {
                let (_, b) = self.evictable.pop_first()?;
                self.unfile(b);
                b
            }
        };
        self.refs[b as usize] = 1;
        Some(b)
    }

    /// Gives back one reference to `b`.
    pub fn release(&mut self, b: BlockId) {
        let i = b as usize;
        debug_assert!(self.refs[i] > 0, "block {b} released twice");
        self.refs[i] = self.refs[i].saturating_sub(1);
        if self.refs[i] == 0 {
            if self.filed[i].is_some() {
                self.tick += 1;
                self.released_at[i] = self.tick;
                self.evictable.insert(self.tick, b);
            } else {
                self.fresh.push(b);
            }
        }
    }

    /// Files the full block `b`, holding `tokens` after the prefix hashed as `parent`, in
    /// the prefix index; returns its chained hash. A block already filed under the same
    /// prefix stays the one the index points to.
    pub fn file(&mut self, b: BlockId, parent: u64, tokens: &[u32]) -> u64 {
        let hash = block_hash(parent, tokens);
        let i = b as usize;
        if self.filed[i].is_none() && !self.by_hash.contains_key(&hash) {
            self.filed[i] = Some(Filed {
                hash,
                parent,
                tokens: tokens.to_vec(),
            });
            self.by_hash.insert(hash, b);
        }
        hash
    }

    fn unfile(&mut self, b: BlockId) {
        if let Some(f) = self.filed[b as usize].take() {
            if self.by_hash.get(&f.hash) == Some(&b) {
                self.by_hash.remove(&f.hash);
            }
        }
    }

    /// The longest run of filed blocks that holds `tokens` from the start, at most
    /// `max_blocks` of them; each returned block gains a reference. Also returns the chained
    /// hash of each block, for filing the blocks that follow.
    pub fn lookup(&mut self, tokens: &[u32], max_blocks: usize) -> (Vec<BlockId>, Vec<u64>) {
        let mut blocks = Vec::new();
        let mut hashes = Vec::new();
        let mut parent = ROOT_HASH;
        for chunk in tokens.chunks_exact(self.block_size).take(max_blocks) {
            let hash = block_hash(parent, chunk);
            let Some(&b) = self.by_hash.get(&hash) else {
                break;
            };
            let ok = matches!(&self.filed[b as usize],
                Some(f) if f.parent == parent && f.tokens == chunk);
            if !ok {
                break;
            }
            let i = b as usize;
            if self.refs[i] == 0 {
                self.evictable.remove(&self.released_at[i]);
            }
            self.refs[i] += 1;
            blocks.push(b);
            hashes.push(hash);
            parent = hash;
        }
        (blocks, hashes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocate_until_empty_then_release() {
        let mut p = BlockPool::new(3, 4);
        let a: Vec<_> = (0..3).map(|_| p.allocate().unwrap()).collect();
        assert_eq!(p.allocate(), None);
        assert_eq!(p.n_used(), 3);
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, vec![0, 1, 2]);
        p.release(a[1]);
        assert_eq!(p.n_free(), 1);
        assert_eq!(p.allocate(), Some(a[1]));
    }

    #[test]
    fn filed_prefix_is_found_and_shared() {
        let mut p = BlockPool::new(8, 2);
        let prompt = [1, 2, 3, 4, 5];
        let b0 = p.allocate().unwrap();
        let b1 = p.allocate().unwrap();
        let h0 = p.file(b0, ROOT_HASH, &prompt[0..2]);
        let h1 = p.file(b1, h0, &prompt[2..4]);
        // Another request with the same first four tokens and a different tail.
        let (blocks, hashes) = p.lookup(&[1, 2, 3, 4, 9, 9], 3);
        assert_eq!(blocks, vec![b0, b1]);
        assert_eq!(hashes, vec![h0, h1]);
        // Shared: the first holder's release leaves them held.
        p.release(b0);
        p.release(b1);
        assert_eq!(p.n_used(), 2);
        // A prompt differing in the first block hits nothing, even with the same second.
        assert_eq!(p.lookup(&[7, 2, 3, 4], 2).0, Vec::<BlockId>::new());
        // max_blocks caps the match.
        let (one, _) = p.lookup(&prompt, 1);
        assert_eq!(one, vec![b0]);
    }

    #[test]
    fn released_filed_blocks_survive_until_evicted_oldest_first() {
        let mut p = BlockPool::new(3, 2);
        let a = p.allocate().unwrap();
        let b = p.allocate().unwrap();
        let ha = p.file(a, ROOT_HASH, &[1, 1]);
        p.file(b, ROOT_HASH, &[2, 2]);
        p.release(a); // released first: evicted first
        p.release(b);
        assert_eq!(p.n_free(), 3);
        // Both are still found.
        let (hit, _) = p.lookup(&[2, 2], 1);
        assert_eq!(hit, vec![b]);
        p.release(b);
        // Three allocations: the fresh block, then a (oldest), then b.
        let c = p.allocate().unwrap();
        assert!(c != a && c != b);
        assert_eq!(p.allocate(), Some(a));
        assert_eq!(
            p.lookup(&[1, 1], 1).0,
            Vec::<BlockId>::new(),
            "evicted block is unfiled"
        );
        assert_eq!(p.allocate(), Some(b));
        assert_eq!(p.allocate(), None);
        let _ = ha;
    }

    #[test]
    fn hash_collisions_are_checked_against_tokens() {
        let mut p = BlockPool::new(2, 2);
        let a = p.allocate().unwrap();
        let h = p.file(a, ROOT_HASH, &[1, 2]);
        // Forge an index entry pointing at `a` for other tokens' hash.
        let forged = block_hash(ROOT_HASH, &[3, 4]);
        p.by_hash.insert(forged, a);
        assert_eq!(p.lookup(&[3, 4], 1).0, Vec::<BlockId>::new());
        assert_ne!(h, forged);
    }
}
