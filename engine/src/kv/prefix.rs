//! The prefix cache: full KV blocks kept after their sequence ends, found
//! again by content, so a prompt that starts like an earlier one prefills
//! only what is new.
//!
//! A full block (all [`BLOCK_TOKENS`] slots written) is addressed by a
//! chained 128-bit hash: `hash(block i) = hasher(hash(block i - 1), tokens
//! of block i)`, so equal hashes mean equal prefixes, not just equal blocks.
//! The hash only narrows the search: a hit also needs the stored tokens to
//! equal the prompt's and the stored parent to be the entry matched one
//! block earlier (every entry gets a serial number that is never reused), so
//! by induction a matched chain holds exactly the prompt's tokens, whatever
//! the hasher does (tests force collisions with a constant one).
//!
//! Cached blocks live in the [`super::BlockPool`]: one referenced by a
//! sequence counts there as usual; one whose last reference went away is
//! *parked* in its namespace's LRU instead of freed, and handed out again
//! only when the pool has no free block left (eviction). Namespaces (one
//! per workspace folder, plus [`HEADLESS_NAMESPACE`]) have separate indexes
//! and budgets: a namespace at its budget evicts its own least recently used
//! block to cache a new one (or caches nothing more when all of its blocks
//! are in use), and the pool, when it needs a block, evicts from the
//! namespace fullest relative to its budget. A busy namespace therefore
//! evicts itself before it can evict another one's hot blocks.

use std::collections::{BTreeMap, HashMap};

use super::{BlockId, BLOCK_TOKENS};

/// The hash of a full block from its parent's hash and its tokens.
pub type BlockHasher = fn(parent: u128, tokens: &[u32]) -> u128;

/// The namespace of requests that come from no workspace (CLI, benchmarks).
pub const HEADLESS_NAMESPACE: &str = "headless";

/// The default block hash: XXH3-128 over the parent hash and the tokens,
/// little-endian.
pub fn xxh3_block_hash(parent: u128, tokens: &[u32]) -> u128 {
    let mut bytes = [0u8; 16 + 4 * BLOCK_TOKENS];
    let len = 16 + 4 * tokens.len().min(BLOCK_TOKENS);
    bytes[..16].copy_from_slice(&parent.to_le_bytes());
    for (chunk, token) in bytes[16..len].chunks_exact_mut(4).zip(tokens) {
        chunk.copy_from_slice(&token.to_le_bytes());
    }
    xxhash_rust::xxh3::xxh3_128(&bytes[..len])
}

/// A namespace of the prefix cache, from [`super::KvCache::namespace`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NamespaceId(u32);

/// Figures of one namespace, for `graft/status` and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceStats {
    pub name: String,
    /// Cached blocks, in use or parked.
    pub blocks: usize,
    /// KV bytes of those blocks.
    pub bytes: usize,
    pub budget_bytes: usize,
    /// Prompts looked up.
    pub lookups: u64,
    /// Their tokens.
    pub lookup_tokens: u64,
    /// Tokens of those prompts that came from the cache.
    pub hit_tokens: u64,
    /// Blocks dropped from the cache to make room.
    pub evictions: u64,
}

impl NamespaceStats {
    /// Fraction of looked-up prompt tokens served from the cache.
    pub fn hit_rate(&self) -> f64 {
        if self.lookup_tokens > 0 {
            self.hit_tokens as f64 / self.lookup_tokens as f64
        } else {
            0.0
        }
    }
}

/// Serial of the (virtual) parent of every first block.
const ROOT: u64 = 0;

/// A cached block.
#[derive(Debug)]
struct Entry {
    namespace: NamespaceId,
    hash: u128,
    /// Unique for the life of the index; children name their parent by it.
    serial: u64,
    parent: u64,
    tokens: [u32; BLOCK_TOKENS],
    /// Key in the namespace's LRU while no sequence references the block.
    parked: Option<u64>,
}

#[derive(Debug)]
struct Namespace {
    name: String,
    budget_blocks: usize,
    by_hash: HashMap<u128, Vec<BlockId>>,
    /// Entries of this namespace, in use or parked.
    blocks: usize,
    /// Parked entries by the tick they were parked at (oldest first).
    lru: BTreeMap<u64, BlockId>,
    lookups: u64,
    lookup_tokens: u64,
    hit_tokens: u64,
    evictions: u64,
}

impl Namespace {
    /// `self.blocks / self.budget_blocks > other.blocks / other.budget_blocks`.
    fn fuller_than(&self, other: &Namespace) -> bool {
        (self.blocks as u128) * (other.budget_blocks.max(1) as u128)
            > (other.blocks as u128) * (self.budget_blocks.max(1) as u128)
    }

    fn oldest_tick(&self) -> u64 {
        self.lru.keys().next().copied().unwrap_or(u64::MAX)
    }
}

/// The index of cached blocks over a pool; see the module documentation.
/// Block ids index `entries`, so it is sized with the pool.
#[derive(Debug)]
pub struct PrefixIndex {
    hasher: BlockHasher,
    entries: Vec<Option<Entry>>,
    namespaces: Vec<Namespace>,
    default_budget_blocks: usize,
    next_serial: u64,
    tick: u64,
    parked: usize,
}

impl PrefixIndex {
    /// An empty index over a pool of `total` blocks; namespaces get half of
    /// the pool each until [`Self::set_default_budget`] says otherwise.
    pub(super) fn new(total: usize) -> Self {
        Self {
            hasher: xxh3_block_hash,
            entries: (0..total).map(|_| None).collect(),
            namespaces: Vec::new(),
            default_budget_blocks: total.div_ceil(2),
            next_serial: ROOT + 1,
            tick: 0,
            parked: 0,
        }
    }

    /// Parked blocks: cached, referenced by no sequence, evictable.
    pub(super) fn parked(&self) -> usize {
        self.parked
    }

    pub(super) fn is_cached(&self, id: BlockId) -> bool {
        self.entries[id as usize].is_some()
    }

    /// The namespace called `name`, created with the default budget if new.
    pub(super) fn namespace(&mut self, name: &str) -> NamespaceId {
        if let Some(index) = self.namespaces.iter().position(|ns| ns.name == name) {
            return NamespaceId(index as u32);
        }
        self.namespaces.push(Namespace {
            name: name.to_owned(),
            budget_blocks: self.default_budget_blocks,
            by_hash: HashMap::new(),
            blocks: 0,
            lru: BTreeMap::new(),
            lookups: 0,
            lookup_tokens: 0,
            hit_tokens: 0,
            evictions: 0,
        });
        NamespaceId((self.namespaces.len() - 1) as u32)
    }

    /// Budget of namespaces created from now on.
    pub(super) fn set_default_budget(&mut self, blocks: usize) {
        self.default_budget_blocks = blocks;
    }

    /// Sets a namespace's budget; parked blocks over it are evicted into
    /// `free`.
    pub(super) fn set_budget(&mut self, ns: NamespaceId, blocks: usize, free: &mut Vec<BlockId>) {
        self.namespaces[ns.0 as usize].budget_blocks = blocks;
        while self.namespaces[ns.0 as usize].blocks > blocks {
            match self.evict_from(ns) {
                Some(id) => free.push(id),
                None => break,
            }
        }
    }

    /// Replaces the hasher. Every entry is forgotten (their hashes would no
    /// longer match); parked blocks go to `free`, blocks in use stay with
    /// their sequences as ordinary blocks.
    pub(super) fn set_hasher(&mut self, hasher: BlockHasher, free: &mut Vec<BlockId>) {
        self.hasher = hasher;
        for (id, entry) in self.entries.iter_mut().enumerate() {
            if let Some(entry) = entry.take() {
                if entry.parked.is_some() {
                    free.push(id as BlockId);
                }
            }
        }
        for ns in &mut self.namespaces {
            ns.by_hash.clear();
            ns.lru.clear();
            ns.blocks = 0;
        }
        self.parked = 0;
    }

    /// The last reference to cached block `id` went away: it joins its
    /// namespace's LRU as the most recently used. A namespace over its
    /// budget (lowered while its blocks were in use) evicts into `free`
    /// down to it.
    pub(super) fn park(&mut self, id: BlockId, free: &mut Vec<BlockId>) {
        let Some(entry) = self.entries[id as usize].as_mut() else { return };
        let ns = entry.namespace;
        self.tick += 1;
        entry.parked = Some(self.tick);
        self.namespaces[ns.0 as usize].lru.insert(self.tick, id);
        self.parked += 1;
        while self.namespaces[ns.0 as usize].blocks > self.namespaces[ns.0 as usize].budget_blocks {
            match self.evict_from(ns) {
                Some(evicted) => free.push(evicted),
                None => break,
            }
        }
    }

    /// A sequence references parked block `id` again.
    pub(super) fn unpark(&mut self, id: BlockId) {
        let Some(entry) = self.entries[id as usize].as_mut() else { return };
        if let Some(tick) = entry.parked.take() {
            self.namespaces[entry.namespace.0 as usize].lru.remove(&tick);
            self.parked -= 1;
        }
    }

    /// Evicts a parked block for the pool, which has no free block left:
    /// from the namespace fullest relative to its budget (the least
    /// recently used one first among equals), its least recently used block.
    pub(super) fn evict_for_allocation(&mut self) -> Option<BlockId> {
        let victim = self
            .namespaces
            .iter()
            .enumerate()
            .filter(|(_, ns)| !ns.lru.is_empty())
            .reduce(|best, candidate| {
                let (b, c) = (best.1, candidate.1);
                if c.fuller_than(b) || (!b.fuller_than(c) && c.oldest_tick() < b.oldest_tick()) {
                    candidate
                } else {
                    best
                }
            })
            .map(|(index, _)| NamespaceId(index as u32))?;
        self.evict_from(victim)
    }

    /// Drops the least recently used parked block of `ns` from the index
    /// and returns it (its refcount is zero; the caller reuses or frees it).
    fn evict_from(&mut self, ns: NamespaceId) -> Option<BlockId> {
        let namespace = &mut self.namespaces[ns.0 as usize];
        let (_, id) = namespace.lru.pop_first()?;
        let entry = self.entries[id as usize].take()?;
        if let Some(ids) = namespace.by_hash.get_mut(&entry.hash) {
            ids.retain(|&other| other != id);
            if ids.is_empty() {
                namespace.by_hash.remove(&entry.hash);
            }
        }
        namespace.blocks -= 1;
        namespace.evictions += 1;
        self.parked -= 1;
        Some(id)
    }

    /// The entry of `ns` holding `tokens` after the entry with serial
    /// `parent`, if cached.
    fn find(&self, ns: NamespaceId, hash: u128, parent: u64, tokens: &[u32]) -> Option<(BlockId, &Entry)> {
        let ids = self.namespaces[ns.0 as usize].by_hash.get(&hash)?;
        ids.iter().find_map(|&id| {
            let entry = self.entries[id as usize].as_ref()?;
            (entry.parent == parent && entry.tokens[..] == *tokens).then_some((id, entry))
        })
    }

    /// The cached blocks holding the longest prefix of `tokens` made of at
    /// most `max_blocks` full blocks, in order. References are the
    /// caller's to take.
    pub(super) fn lookup(&self, ns: NamespaceId, tokens: &[u32], max_blocks: usize) -> Vec<BlockId> {
        let mut found = Vec::new();
        let (mut parent, mut parent_hash) = (ROOT, 0u128);
        for block in tokens.chunks_exact(BLOCK_TOKENS).take(max_blocks) {
            let hash = (self.hasher)(parent_hash, block);
            let Some((id, entry)) = self.find(ns, hash, parent, block) else { break };
            found.push(id);
            (parent, parent_hash) = (entry.serial, hash);
        }
        found
    }

    /// Counts one prompt lookup of `ns` for its statistics.
    pub(super) fn record_lookup(&mut self, ns: NamespaceId, prompt_tokens: usize, hit_tokens: usize) {
        let namespace = &mut self.namespaces[ns.0 as usize];
        namespace.lookups += 1;
        namespace.lookup_tokens += prompt_tokens as u64;
        namespace.hit_tokens += hit_tokens as u64;
    }

    /// Caches the full blocks of a sequence whose block table is `blocks`
    /// and which holds `tokens` from position 0 (every block of `blocks`
    /// covered by `tokens` is full and in use). Blocks already cached are
    /// kept; a block whose content another entry already holds stays
    /// private. Stops at the first block that cannot be cached (namespace at
    /// its budget with nothing parked to evict), since later blocks could
    /// not be found without it. Evicted blocks go to `free`. Returns how
    /// many leading blocks a lookup of `tokens` now finds.
    pub(super) fn insert(
        &mut self,
        ns: NamespaceId,
        blocks: &[BlockId],
        tokens: &[u32],
        free: &mut Vec<BlockId>,
    ) -> usize {
        let (mut parent, mut parent_hash) = (ROOT, 0u128);
        for (index, (&id, block)) in blocks.iter().zip(tokens.chunks_exact(BLOCK_TOKENS)).enumerate() {
            let hash = (self.hasher)(parent_hash, block);
            if let Some(entry) = &self.entries[id as usize] {
                // Cached already (found by a lookup or inserted before); a
                // cached block is never written, so it still holds `block`.
                if entry.namespace != ns || entry.parent != parent || entry.tokens[..] != *block {
                    return index;
                }
                (parent, parent_hash) = (entry.serial, hash);
                continue;
            }
            if let Some((_, entry)) = self.find(ns, hash, parent, block) {
                (parent, parent_hash) = (entry.serial, hash);
                continue;
            }
            let namespace = &self.namespaces[ns.0 as usize];
            if namespace.blocks >= namespace.budget_blocks {
                match self.evict_from(ns) {
                    Some(evicted) => free.push(evicted),
                    None => return index,
                }
            }
            let serial = self.next_serial;
            self.next_serial += 1;
            let mut stored = [0u32; BLOCK_TOKENS];
            stored.copy_from_slice(block);
            self.entries[id as usize] =
                Some(Entry { namespace: ns, hash, serial, parent, tokens: stored, parked: None });
            let namespace = &mut self.namespaces[ns.0 as usize];
            namespace.by_hash.entry(hash).or_default().push(id);
            namespace.blocks += 1;
            (parent, parent_hash) = (serial, hash);
        }
        blocks.len().min(tokens.len() / BLOCK_TOKENS)
    }

    /// Figures of every namespace, in creation order.
    pub(super) fn stats(&self, bytes_per_block: usize) -> Vec<NamespaceStats> {
        self.namespaces
            .iter()
            .map(|ns| NamespaceStats {
                name: ns.name.clone(),
                blocks: ns.blocks,
                bytes: ns.blocks * bytes_per_block,
                budget_bytes: ns.budget_blocks * bytes_per_block,
                lookups: ns.lookups,
                lookup_tokens: ns.lookup_tokens,
                hit_tokens: ns.hit_tokens,
                evictions: ns.evictions,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{KvCache, KvShape, SeqKv};
    use super::*;

    fn cache(blocks: usize) -> KvCache {
        KvCache::with_blocks(KvShape { layers: 1, kv_heads: 1, head_dim: 2 }, blocks)
    }

    /// `blocks` full blocks of tokens derived from `seed`.
    fn tokens(seed: u32, blocks: usize) -> Vec<u32> {
        (0..(blocks * BLOCK_TOKENS) as u32).map(|i| seed * 1000 + i).collect()
    }

    /// A sequence holding `tokens` (its KV left as it is), cached in `ns`.
    fn fill(kv: &mut KvCache, ns: NamespaceId, tokens: &[u32]) -> SeqKv {
        let mut seq = kv.lookup_prefix(ns, tokens, tokens.len());
        let rest = tokens.len() - seq.len();
        kv.reserve(&mut seq, rest).expect("fits");
        kv.commit(&mut seq, rest);
        kv.cache_prefix(ns, &seq, tokens);
        seq
    }

    /// Caches `tokens` in `ns` and lets go of them.
    fn warm(kv: &mut KvCache, ns: NamespaceId, tokens: &[u32]) {
        let mut seq = fill(kv, ns, tokens);
        kv.release(&mut seq);
    }

    /// Tokens of the cached prefix of `tokens` in `ns` (references dropped).
    fn hit(kv: &mut KvCache, ns: NamespaceId, tokens: &[u32]) -> usize {
        let mut seq = kv.lookup_prefix(ns, tokens, tokens.len());
        let len = seq.len();
        kv.release(&mut seq);
        len
    }

    #[test]
    fn lookup_finds_the_longest_cached_prefix_of_whole_blocks() {
        let mut kv = cache(8);
        let ns = kv.namespace("a");
        let mut prompt = tokens(1, 3);
        prompt.extend([7, 8, 9]);
        let mut seq = fill(&mut kv, ns, &prompt);
        assert_eq!(kv.cache_prefix(ns, &seq, &prompt), 48, "the partial fourth block is not cached");
        let held = seq.blocks().to_vec();
        kv.release(&mut seq);
        assert_eq!(kv.pool().free_count(), 8, "parked blocks still count as available");

        let found = kv.lookup_prefix(ns, &prompt, prompt.len());
        assert_eq!(found.len(), 48);
        assert_eq!(found.blocks(), &held[..3], "the very blocks that were cached");
        let mut found = found;
        kv.release(&mut found);
        assert_eq!(hit(&mut kv, ns, &prompt[..47]), 32, "only whole blocks");
        let mut seq = kv.lookup_prefix(ns, &prompt, 47);
        assert_eq!(seq.len(), 32, "at most max_tokens");
        kv.release(&mut seq);

        let mut edited = prompt.clone();
        edited[20] = 1;
        assert_eq!(hit(&mut kv, ns, &edited), 16, "blocks before the first changed token");
        edited[0] = 1;
        assert_eq!(hit(&mut kv, ns, &edited), 0);
    }

    #[test]
    fn forced_collisions_are_told_apart_by_tokens_and_parents() {
        let mut kv = cache(16);
        kv.set_block_hasher(|_, _| 42);
        let ns = kv.namespace("a");
        let (x, y, z) = (tokens(1, 1), tokens(2, 1), tokens(3, 1));
        let xy = [x.clone(), y.clone()].concat();
        let zy = [z.clone(), y.clone()].concat();
        let mut a = fill(&mut kv, ns, &xy);
        let mut b = fill(&mut kv, ns, &zy);
        assert_ne!(a.blocks()[1], b.blocks()[1], "y after x and y after z are different blocks");
        let (a_blocks, b_blocks) = (a.blocks().to_vec(), b.blocks().to_vec());
        kv.release(&mut a);
        kv.release(&mut b);

        let mut found = kv.lookup_prefix(ns, &xy, 32);
        assert_eq!(found.blocks(), &a_blocks[..]);
        kv.release(&mut found);
        let mut found = kv.lookup_prefix(ns, &zy, 32);
        assert_eq!(found.blocks(), &b_blocks[..]);
        kv.release(&mut found);
        assert_eq!(hit(&mut kv, ns, &[tokens(4, 1), y].concat()), 0, "y without its parent is no hit");
        assert_eq!(hit(&mut kv, ns, &[x, z].concat()), 16);
    }

    #[test]
    fn parked_blocks_are_evicted_least_recently_used_first() {
        let mut kv = cache(4);
        let ns = kv.namespace("a");
        kv.set_namespace_budget(ns, 4 * kv.bytes_per_block());
        let prompts: Vec<Vec<u32>> = (1..=4).map(|seed| tokens(seed, 1)).collect();
        for prompt in &prompts {
            warm(&mut kv, ns, prompt);
        }
        // Use the first again: the LRU order is now 2, 3, 4, 1.
        assert_eq!(hit(&mut kv, ns, &prompts[0]), 16);
        let mut other = kv.new_sequence();
        kv.reserve(&mut other, 2 * BLOCK_TOKENS).expect("two parked blocks are evicted");
        let hits: Vec<usize> = prompts.iter().map(|p| hit(&mut kv, ns, p)).collect();
        assert_eq!(hits, [16, 0, 0, 16]);
        assert_eq!(kv.cache_stats()[0].evictions, 2);
        kv.release(&mut other);
    }

    #[test]
    fn a_cached_prefix_is_evicted_from_its_end() {
        let mut kv = cache(3);
        let ns = kv.namespace("a");
        kv.set_namespace_budget(ns, 3 * kv.bytes_per_block());
        let prompt = tokens(1, 3);
        warm(&mut kv, ns, &prompt);
        let mut other = kv.new_sequence();
        kv.reserve(&mut other, 1).expect("one parked block is evicted");
        assert_eq!(hit(&mut kv, ns, &prompt), 32, "the last block went first");
        kv.release(&mut other);
    }

    #[test]
    fn a_namespace_at_its_budget_evicts_only_its_own_blocks() {
        let mut kv = cache(16);
        let (a, b) = (kv.namespace("a"), kv.namespace("b"));
        let per_block = kv.bytes_per_block();
        kv.set_namespace_budget(a, 2 * per_block);
        kv.set_namespace_budget(b, 2 * per_block);
        let hot = tokens(100, 2);
        warm(&mut kv, b, &hot);
        for seed in 1..=10 {
            warm(&mut kv, a, &tokens(seed, 1));
        }
        let stats = kv.cache_stats();
        assert_eq!((stats[0].blocks, stats[0].evictions), (2, 8));
        assert_eq!((stats[1].blocks, stats[1].evictions), (2, 0));
        assert_eq!(hit(&mut kv, b, &hot), 32);
        assert_eq!(hit(&mut kv, a, &tokens(10, 1)), 16);
        assert_eq!(hit(&mut kv, a, &hot), 0, "namespaces do not see each other's blocks");
    }

    #[test]
    fn a_full_pool_evicts_from_the_namespace_fullest_for_its_budget() {
        let mut kv = cache(5);
        let (a, b) = (kv.namespace("a"), kv.namespace("b"));
        let per_block = kv.bytes_per_block();
        kv.set_namespace_budget(a, 4 * per_block);
        kv.set_namespace_budget(b, 4 * per_block);
        warm(&mut kv, b, &tokens(1, 1));
        warm(&mut kv, a, &tokens(2, 4));
        let mut other = kv.new_sequence();
        kv.reserve(&mut other, 2 * BLOCK_TOKENS).expect("two parked blocks are evicted");
        assert_eq!(hit(&mut kv, a, &tokens(2, 4)), 32);
        assert_eq!(hit(&mut kv, b, &tokens(1, 1)), 16, "b (1 of 4 blocks) keeps its block; a had 4 of 4");
        kv.release(&mut other);
    }

    #[test]
    fn blocks_in_use_are_neither_evicted_nor_cached_past_the_budget() {
        let mut kv = cache(4);
        let ns = kv.namespace("a");
        kv.set_namespace_budget(ns, 2 * kv.bytes_per_block());
        let prompt = tokens(1, 3);
        let mut seq = fill(&mut kv, ns, &prompt);
        assert_eq!(kv.cache_prefix(ns, &seq, &prompt), 32, "the budget holds two blocks");
        let mut other = kv.new_sequence();
        let err = kv.reserve(&mut other, 2 * BLOCK_TOKENS).unwrap_err();
        assert!(matches!(err, crate::error::Error::KvCacheFull { needed: 2, free: 1, total: 4 }), "{err}");
        kv.release(&mut seq);
        assert_eq!(kv.pool().free_count(), 4);
        assert_eq!(kv.cache_stats()[0].blocks, 2);
    }

    #[test]
    fn a_cached_block_is_copied_before_it_is_written() {
        let mut kv = cache(4);
        let ns = kv.namespace("a");
        let prompt = tokens(1, 1);
        let mut seq = fill(&mut kv, ns, &prompt);
        let cached = seq.blocks()[0];
        kv.truncate(&mut seq, 8);
        kv.reserve(&mut seq, 1).expect("fits");
        assert_ne!(seq.blocks()[0], cached, "the sequence writes into a copy");
        kv.release(&mut seq);
        let mut found = kv.lookup_prefix(ns, &prompt, 16);
        assert_eq!(found.blocks(), &[cached]);
        kv.release(&mut found);
    }

    #[test]
    fn a_budget_lowered_while_blocks_are_in_use_holds_once_they_are_released() {
        let mut kv = cache(8);
        let ns = kv.namespace("a");
        let mut seq = fill(&mut kv, ns, &tokens(1, 4));
        kv.set_namespace_budget(ns, kv.bytes_per_block());
        assert_eq!(kv.cache_stats()[0].blocks, 4, "blocks in use are not evicted");
        kv.release(&mut seq);
        let stats = &kv.cache_stats()[0];
        assert_eq!((stats.blocks, stats.evictions), (1, 3));
        assert_eq!(hit(&mut kv, ns, &tokens(1, 4)), 16, "the first block stays: the prefix is evicted from its end");
        assert_eq!(kv.pool().free_count(), 8);
    }

    #[test]
    fn shrinking_a_budget_evicts_parked_blocks() {
        let mut kv = cache(8);
        let ns = kv.namespace("a");
        warm(&mut kv, ns, &tokens(1, 4));
        kv.set_namespace_budget(ns, kv.bytes_per_block());
        let stats = &kv.cache_stats()[0];
        assert_eq!((stats.blocks, stats.bytes, stats.evictions), (1, kv.bytes_per_block(), 3));
        assert_eq!(hit(&mut kv, ns, &tokens(1, 4)), 16);
    }

    #[test]
    fn hit_rate_counts_looked_up_prompt_tokens() {
        let mut kv = cache(4);
        let ns = kv.namespace(HEADLESS_NAMESPACE);
        kv.record_lookup(ns, 100, 0);
        kv.record_lookup(ns, 100, 50);
        let stats = &kv.cache_stats()[0];
        assert_eq!((stats.name.as_str(), stats.lookups), (HEADLESS_NAMESPACE, 2));
        assert_eq!(stats.hit_rate(), 0.25);
    }

    #[test]
    fn the_block_hash_chains_its_parent() {
        let block = tokens(1, 1);
        assert_ne!(xxh3_block_hash(0, &block), xxh3_block_hash(1, &block));
        assert_ne!(xxh3_block_hash(0, &block), xxh3_block_hash(0, &tokens(2, 1)));
        assert_eq!(xxh3_block_hash(5, &block), xxh3_block_hash(5, &block));
    }
}
