//! Paged KV cache: one preallocated pool of fixed-size token blocks with
//! refcounts and an O(1) free list, and per-sequence block tables.
//!
//! A [`SeqKv`] is a block table plus a length. Truncating a sequence releases
//! the blocks past its new end (speculative rollback); forking shares every
//! block (refcount + 1) and copies a shared block only when a sequence writes
//! into it (copy-on-write), which is what the prefix cache builds on.
//! [`prefix`] keeps full blocks after their sequence ends, found again by
//! content and shared with later sequences in the same namespace.
//!
//! Storage layout, per layer: `(num_blocks, BLOCK_TOKENS, kv_heads, head_dim)`
//! for K and for V, f32.

pub mod prefix;

use crate::error::{Error, Result};
use prefix::PrefixIndex;
pub use prefix::{BlockHasher, NamespaceId, NamespaceStats, HEADLESS_NAMESPACE};

/// Tokens per block. 16 keeps tail waste small and rollback cheap.
pub const BLOCK_TOKENS: usize = 16;

/// Index of a block in the pool.
pub type BlockId = u32;

/// Refcounts and the free list of a pool of `total` blocks, and the prefix
/// cache's index of the blocks it keeps (a cached block whose refcount drops
/// to zero is parked there instead of freed, and evicted when the free list
/// runs dry).
#[derive(Debug)]
pub struct BlockPool {
    refcounts: Vec<u32>,
    free: Vec<BlockId>,
    prefix: PrefixIndex,
}

impl BlockPool {
    pub fn new(total: usize) -> Self {
        // Pop from the end hands out low ids first.
        Self { refcounts: vec![0; total], free: (0..total as BlockId).rev().collect(), prefix: PrefixIndex::new(total) }
    }

    pub fn total(&self) -> usize {
        self.refcounts.len()
    }

    /// Blocks a sequence can get: free ones and parked cached ones.
    pub fn free_count(&self) -> usize {
        self.free.len() + self.prefix.parked()
    }

    fn allocate(&mut self) -> Option<BlockId> {
        let id = self.free.pop().or_else(|| self.prefix.evict_for_allocation())?;
        self.refcounts[id as usize] = 1;
        Some(id)
    }

    fn retain(&mut self, id: BlockId) {
        if self.refcounts[id as usize] == 0 {
            self.prefix.unpark(id);
        }
        self.refcounts[id as usize] += 1;
    }

    fn release(&mut self, id: BlockId) {
        let count = &mut self.refcounts[id as usize];
        debug_assert!(*count > 0, "block {id} released more often than retained");
        *count -= 1;
        if *count == 0 {
            if self.prefix.is_cached(id) {
                self.prefix.park(id, &mut self.free);
            } else {
                self.free.push(id);
            }
        }
    }

    pub fn refcount(&self, id: BlockId) -> u32 {
        self.refcounts[id as usize]
    }
}

/// The KV entries of one sequence: its block table and its length in tokens.
/// Obtain with [`KvCache::new_sequence`], give back with [`KvCache::release`].
#[derive(Debug, Default)]
pub struct SeqKv {
    blocks: Vec<BlockId>,
    len: usize,
}

impl SeqKv {
    /// Tokens whose K and V are stored.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn blocks(&self) -> &[BlockId] {
        &self.blocks
    }

    /// (block, slot) of a token position; the position must be stored or
    /// reserved.
    #[inline]
    pub fn locate(&self, position: usize) -> (BlockId, usize) {
        (self.blocks[position / BLOCK_TOKENS], position % BLOCK_TOKENS)
    }
}

/// Shape of the per-token KV entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvShape {
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl KvShape {
    /// f32 values of K (or V) per token per layer.
    pub fn token_width(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// Bytes of K and V for one token over all layers, stored as values of
    /// `value_bytes` each (f32 on the host, bf16 on a GPU).
    pub fn bytes_per_token(&self, value_bytes: usize) -> usize {
        2 * self.layers * self.token_width() * value_bytes
    }
}

/// The pool with its storage (host memory; the CPU backend reads it directly).
pub struct KvCache {
    shape: KvShape,
    pool: BlockPool,
    /// Per layer: (num_blocks, BLOCK_TOKENS, kv_heads, head_dim).
    keys: Vec<Vec<f32>>,
    /// Per layer: same shape as `keys`.
    values: Vec<Vec<f32>>,
    /// Bytes of one stored K or V value where the blocks live (f32 here, a
    /// device's own type for a metadata-only pool): the byte figures of
    /// budgets and stats.
    value_bytes: usize,
}

impl KvCache {
    /// A pool holding as many blocks as fit in `budget_bytes` (at least one).
    pub fn with_budget(shape: KvShape, budget_bytes: usize) -> Self {
        let per_block = shape.bytes_per_token(std::mem::size_of::<f32>()) * BLOCK_TOKENS;
        Self::with_blocks(shape, (budget_bytes / per_block.max(1)).max(1))
    }

    pub fn with_blocks(shape: KvShape, blocks: usize) -> Self {
        let layer_len = blocks * BLOCK_TOKENS * shape.token_width();
        Self {
            shape,
            pool: BlockPool::new(blocks),
            keys: (0..shape.layers).map(|_| vec![0.0; layer_len]).collect(),
            values: (0..shape.layers).map(|_| vec![0.0; layer_len]).collect(),
            value_bytes: std::mem::size_of::<f32>(),
        }
    }

    pub fn shape(&self) -> KvShape {
        self.shape
    }

    pub fn pool(&self) -> &BlockPool {
        &self.pool
    }

    /// Tokens the whole pool can hold.
    pub fn capacity_tokens(&self) -> usize {
        self.pool.total() * BLOCK_TOKENS
    }

    pub fn new_sequence(&self) -> SeqKv {
        SeqKv::default()
    }

    /// Returns every block of `seq` to the pool. The last block goes first,
    /// so cached blocks are parked children before parents: the LRU then
    /// evicts a prefix from its end.
    pub fn release(&mut self, seq: &mut SeqKv) {
        for &id in seq.blocks.iter().rev() {
            self.pool.release(id);
        }
        seq.blocks.clear();
        seq.len = 0;
    }

    /// A second sequence sharing all of `seq`'s blocks.
    pub fn fork(&mut self, seq: &SeqKv) -> SeqKv {
        for &id in &seq.blocks {
            self.pool.retain(id);
        }
        SeqKv { blocks: seq.blocks.clone(), len: seq.len }
    }

    /// Shortens `seq` to `len` tokens, releasing blocks no longer needed.
    pub fn truncate(&mut self, seq: &mut SeqKv, len: usize) {
        if len >= seq.len {
            return;
        }
        let keep = len.div_ceil(BLOCK_TOKENS);
        for id in seq.blocks.drain(keep..).rev() {
            self.pool.release(id);
        }
        seq.len = len;
    }

    /// Makes room for `extra` more tokens after `seq.len()`: allocates blocks
    /// and gives `seq` a private copy of a shared or cached tail block it
    /// will write into (a cached block is never written: other sequences may
    /// find it by its content). Either all blocks are reserved or none (on
    /// error).
    pub fn reserve(&mut self, seq: &mut SeqKv, extra: usize) -> Result<()> {
        let needed_blocks = (seq.len + extra).div_ceil(BLOCK_TOKENS);
        let new_blocks = needed_blocks.saturating_sub(seq.blocks.len());
        let tail_shared = extra > 0
            && !seq.len.is_multiple_of(BLOCK_TOKENS)
            && seq.blocks.last().is_some_and(|&id| self.pool.refcount(id) > 1 || self.pool.prefix.is_cached(id));
        let needed = new_blocks + usize::from(tail_shared);
        if needed > self.pool.free_count() {
            return Err(Error::KvCacheFull { needed, free: self.pool.free_count(), total: self.pool.total() });
        }
        if tail_shared {
            let last = seq.blocks.len() - 1;
            let old = seq.blocks[last];
            let copy =
                self.pool.allocate().ok_or(Error::KvCacheFull { needed: 1, free: 0, total: self.pool.total() })?;
            self.copy_block(old, copy);
            self.pool.release(old);
            seq.blocks[last] = copy;
        }
        for _ in 0..new_blocks {
            let id = self.pool.allocate().ok_or(Error::KvCacheFull { needed, free: 0, total: self.pool.total() })?;
            seq.blocks.push(id);
        }
        Ok(())
    }

    /// Records that `count` reserved positions after `seq.len()` now hold
    /// K and V.
    pub fn commit(&mut self, seq: &mut SeqKv, count: usize) {
        debug_assert!((seq.len + count).div_ceil(BLOCK_TOKENS) <= seq.blocks.len(), "commit past reserved blocks");
        seq.len += count;
    }

    fn copy_block(&mut self, from: BlockId, to: BlockId) {
        let width = BLOCK_TOKENS * self.shape.token_width();
        let (from, to) = (from as usize * width, to as usize * width);
        for layer in self.keys.iter_mut().chain(self.values.iter_mut()) {
            layer.copy_within(from..from + width, to);
        }
    }

    /// Offset of a (block, slot) entry inside one layer's storage.
    #[inline]
    pub fn entry_offset(&self, block: BlockId, slot: usize) -> usize {
        (block as usize * BLOCK_TOKENS + slot) * self.shape.token_width()
    }

    /// K and V storage of one layer, for reading and writing together.
    pub fn layer_mut(&mut self, layer: usize) -> (&mut [f32], &mut [f32]) {
        (&mut self.keys[layer], &mut self.values[layer])
    }

    pub fn layer(&self, layer: usize) -> (&[f32], &[f32]) {
        (&self.keys[layer], &self.values[layer])
    }

    /// A pool of `blocks` blocks with no host storage, for a backend that
    /// keeps K and V on its device (as values of `value_bytes` each)
    /// addressed by the same block ids and slots (it must not call
    /// [`KvCache::layer`] or [`KvCache::layer_mut`]).
    pub fn metadata_only(shape: KvShape, blocks: usize, value_bytes: usize) -> Self {
        Self { shape, pool: BlockPool::new(blocks), keys: Vec::new(), values: Vec::new(), value_bytes }
    }
}

/// The prefix cache over the pool (see [`prefix`]).
impl KvCache {
    /// KV bytes of one block where the blocks live.
    pub fn bytes_per_block(&self) -> usize {
        self.shape.bytes_per_token(self.value_bytes) * BLOCK_TOKENS
    }

    /// The namespace called `name`, created with the default budget if new.
    pub fn namespace(&mut self, name: &str) -> NamespaceId {
        self.pool.prefix.namespace(name)
    }

    /// Budget in bytes of namespaces created from now on (at most the pool).
    pub fn set_default_namespace_budget(&mut self, bytes: usize) {
        let blocks = self.budget_blocks(bytes);
        self.pool.prefix.set_default_budget(blocks);
    }

    /// Sets the budget of `ns` in bytes (at most the pool), evicting its
    /// parked blocks over it.
    pub fn set_namespace_budget(&mut self, ns: NamespaceId, bytes: usize) {
        let blocks = self.budget_blocks(bytes);
        self.pool.prefix.set_budget(ns, blocks, &mut self.pool.free);
    }

    fn budget_blocks(&self, bytes: usize) -> usize {
        (bytes / self.bytes_per_block().max(1)).min(self.pool.total())
    }

    /// Replaces the block hasher and forgets every cached block. A test hook:
    /// a constant hasher makes every block collide, which must change
    /// nothing but speed.
    pub fn set_block_hasher(&mut self, hasher: BlockHasher) {
        self.pool.prefix.set_hasher(hasher, &mut self.pool.free);
    }

    /// A new sequence holding the longest cached prefix of `tokens` in `ns`
    /// that is at most `max_tokens` long (whole blocks), sharing the cached
    /// blocks.
    pub fn lookup_prefix(&mut self, ns: NamespaceId, tokens: &[u32], max_tokens: usize) -> SeqKv {
        let blocks = self.pool.prefix.lookup(ns, tokens, max_tokens / BLOCK_TOKENS);
        for &id in &blocks {
            self.pool.retain(id);
        }
        let len = blocks.len() * BLOCK_TOKENS;
        SeqKv { blocks, len }
    }

    /// Counts a prompt of `prompt_tokens` of which `hit_tokens` came from
    /// the cache in the statistics of `ns`.
    pub fn record_lookup(&mut self, ns: NamespaceId, prompt_tokens: usize, hit_tokens: usize) {
        self.pool.prefix.record_lookup(ns, prompt_tokens, hit_tokens);
    }

    /// Caches the full blocks of `seq`, which holds `tokens` (its first
    /// `seq.len()` tokens are those of `tokens`; the caller guarantees it),
    /// in `ns`, as far as the namespace's budget allows. Returns the length
    /// of the prefix of `tokens` a lookup now finds (at most `seq.len()`).
    pub fn cache_prefix(&mut self, ns: NamespaceId, seq: &SeqKv, tokens: &[u32]) -> usize {
        let full = seq.len.min(tokens.len()) / BLOCK_TOKENS;
        let blocks = &seq.blocks[..full];
        BLOCK_TOKENS * self.pool.prefix.insert(ns, blocks, &tokens[..full * BLOCK_TOKENS], &mut self.pool.free)
    }

    /// Figures of every namespace, in creation order.
    pub fn cache_stats(&self) -> Vec<NamespaceStats> {
        self.pool.prefix.stats(self.bytes_per_block())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(blocks: usize) -> KvCache {
        KvCache::with_blocks(KvShape { layers: 2, kv_heads: 1, head_dim: 2 }, blocks)
    }

    #[test]
    fn byte_figures_count_the_values_where_the_blocks_live() {
        let shape = KvShape { layers: 2, kv_heads: 1, head_dim: 2 };
        let host = KvCache::with_blocks(shape, 8);
        let device = KvCache::metadata_only(shape, 8, 2);
        // 2 (K, V) x 2 layers x 2 values x 16 tokens, in f32 and in bf16.
        assert_eq!(host.bytes_per_block(), 2 * 2 * 2 * BLOCK_TOKENS * 4);
        assert_eq!(device.bytes_per_block(), host.bytes_per_block() / 2);
        // A byte budget buys twice the bf16 blocks.
        let mut device = device;
        let ns = device.namespace("ws");
        device.set_namespace_budget(ns, 2 * host.bytes_per_block());
        let stats = device.cache_stats();
        let ws = stats.iter().find(|s| s.name == "ws").expect("namespace listed");
        assert_eq!(ws.budget_bytes, 4 * device.bytes_per_block());
    }

    #[test]
    fn reserve_commit_truncate_release_balance_the_pool() {
        let mut kv = cache(4);
        let mut seq = kv.new_sequence();
        kv.reserve(&mut seq, 40).expect("fits");
        kv.commit(&mut seq, 40);
        assert_eq!(seq.blocks().len(), 3);
        assert_eq!(kv.pool().free_count(), 1);
        kv.truncate(&mut seq, 17);
        assert_eq!(seq.blocks().len(), 2, "17 tokens need two blocks");
        assert_eq!(kv.pool().free_count(), 2);
        kv.truncate(&mut seq, 16);
        assert_eq!(seq.blocks().len(), 1);
        kv.release(&mut seq);
        assert_eq!(kv.pool().free_count(), 4);
    }

    #[test]
    fn out_of_blocks_is_an_error_and_reserves_nothing() {
        let mut kv = cache(2);
        let mut seq = kv.new_sequence();
        let err = kv.reserve(&mut seq, 33).unwrap_err();
        assert!(matches!(err, Error::KvCacheFull { needed: 3, free: 2, total: 2 }), "{err}");
        assert_eq!(kv.pool().free_count(), 2);
        assert!(seq.blocks().is_empty());
    }

    #[test]
    fn writing_into_a_shared_tail_copies_it_first() {
        let mut kv = cache(4);
        let mut a = kv.new_sequence();
        kv.reserve(&mut a, 5).expect("fits");
        let (block, slot) = a.locate(4);
        let offset = kv.entry_offset(block, slot);
        kv.layer_mut(1).0[offset] = 7.0;
        kv.commit(&mut a, 5);
        let mut b = kv.fork(&a);
        assert_eq!(kv.pool().refcount(block), 2);
        kv.reserve(&mut b, 1).expect("fits");
        let (b_block, _) = b.locate(4);
        assert_ne!(b_block, block, "b got its own copy of the shared tail");
        assert_eq!(kv.layer(1).0[kv.entry_offset(b_block, slot)], 7.0, "the copy carries the old entries");
        assert_eq!(kv.pool().refcount(block), 1);
        kv.release(&mut a);
        kv.release(&mut b);
        assert_eq!(kv.pool().free_count(), 4);
    }

    #[test]
    fn full_shared_blocks_are_not_copied() {
        let mut kv = cache(4);
        let mut a = kv.new_sequence();
        kv.reserve(&mut a, BLOCK_TOKENS).expect("fits");
        kv.commit(&mut a, BLOCK_TOKENS);
        let mut b = kv.fork(&a);
        kv.reserve(&mut b, 1).expect("fits");
        assert_eq!(b.blocks()[0], a.blocks()[0]);
        assert_eq!(kv.pool().free_count(), 2);
    }
}
