//! [`Engine`]'s prefix-cached prefill: a prompt in a namespace reuses the
//! longest cached prefix of full blocks and feeds only the rest; warm-ups
//! fill the cache ahead of time, in cancellable steps.
//!
//! Reused KV must be bit for bit what a fresh prefill would compute, or a
//! cache hit could change the output. The CPU backend computes a token's K
//! and V row by row except in its products, whose fastest path at prefill
//! widths (expanded tiles + `gemm`) sums in an order that depends on the
//! batch. So every prefill here is fed in block-aligned chunks of
//! [`BLOCK_TOKENS`] tokens: a full block is always computed by one forward
//! pass over exactly its own tokens after exactly its prefix, whether the
//! cache was cold or warm, and cached blocks equal recomputed ones exactly
//! (`tests/prefix_cache.rs` checks logits bit for bit). At 16 rows the
//! compact kernels take their fused path, which is row-invariant anyway,
//! and costs less than wide tiled products computed row-invariantly.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::{Engine, PrefilledPrompt};
use crate::backend::{Backend, Logits};
use crate::decode::{check_request, Prefill};
use crate::error::{Error, Result};
use crate::kv::{BlockHasher, KvCache, NamespaceStats, SeqKv, BLOCK_TOKENS};

/// What a warm-up did ([`Engine::warm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Warmed {
    /// Tokens found in the cache when it started.
    pub hit_tokens: usize,
    /// Tokens it fed to the model.
    pub computed_tokens: usize,
    /// Length of the prefix of the warmed tokens now cached (whole blocks;
    /// less than all full blocks when cancelled or at the namespace budget).
    pub cached_tokens: usize,
    pub cancelled: bool,
}

impl Engine {
    /// [`Engine::prefill`] through the prefix cache of `namespace` (created
    /// on first use; [`crate::kv::HEADLESS_NAMESPACE`] for requests from no
    /// workspace): the longest cached prefix of `prompt` is reused (always
    /// leaving at least the last token to feed, whose logits choose the
    /// first output token), the rest is fed, and the prompt's full blocks
    /// are cached for later requests. The result reports how many prompt
    /// tokens came from the cache; generation from it is identical to
    /// generation from a cold prefill in this namespace.
    pub fn prefill_in(&mut self, namespace: &str, prompt: &[u32]) -> Result<PrefilledPrompt> {
        let started = Instant::now();
        check_request(&self.backend, &self.kv.new_sequence(), prompt)?;
        let ns = self.kv.namespace(namespace);
        let mut seq = self.kv.lookup_prefix(ns, prompt, prompt.len() - 1);
        let cached_tokens = seq.len();
        self.kv.record_lookup(ns, prompt.len(), cached_tokens);
        let fed = feed_blocks(&self.backend, &mut self.kv, &mut seq, prompt);
        self.kv.cache_prefix(ns, &seq, prompt);
        match fed {
            Ok(first) => {
                let prefill = Prefill { first, prompt_tokens: prompt.len(), cached_tokens, time: started.elapsed() };
                Ok(PrefilledPrompt { seq, prefill })
            }
            Err(err) => {
                self.kv.release(&mut seq);
                Err(err)
            }
        }
    }

    /// Puts the full blocks of `tokens` into the prefix cache of `namespace`
    /// and lets go of them, so that a later [`Engine::prefill_in`] of a
    /// prompt starting with `tokens` feeds only what follows. Fed one block
    /// at a time; `cancel`, checked before each block, stops it early
    /// (blocks fed so far stay cached), so a warm-up holds the engine for
    /// one block's forward pass at most after a cancellation.
    pub fn warm(&mut self, namespace: &str, tokens: &[u32], cancel: Option<&AtomicBool>) -> Result<Warmed> {
        let full = tokens.len() / BLOCK_TOKENS * BLOCK_TOKENS;
        let context = self.backend.config().max_position;
        if full > context {
            return Err(Error::InvalidRequest {
                reason: format!("warm-up of {full} tokens; the model's context is {context}"),
            });
        }
        let tokens = &tokens[..full];
        let ns = self.kv.namespace(namespace);
        let mut seq = self.kv.lookup_prefix(ns, tokens, full);
        let hit_tokens = seq.len();
        let mut warmed = Warmed { hit_tokens, computed_tokens: 0, cached_tokens: hit_tokens, cancelled: false };
        let result = loop {
            if seq.len() == full {
                break Ok(());
            }
            if cancel.is_some_and(|flag| flag.load(Ordering::Relaxed)) {
                warmed.cancelled = true;
                break Ok(());
            }
            let block = &tokens[seq.len()..seq.len() + BLOCK_TOKENS];
            if let Err(err) = self.backend.forward_greedy(&mut self.kv, &mut seq, block, &[]) {
                break Err(err);
            }
            warmed.computed_tokens += BLOCK_TOKENS;
            warmed.cached_tokens = self.kv.cache_prefix(ns, &seq, tokens);
            if warmed.cached_tokens < seq.len() {
                // The namespace is at its budget with every block in use.
                break Ok(());
            }
        };
        self.kv.release(&mut seq);
        result.map(|()| warmed)
    }

    /// Logits of every row of `next` fed after a prefilled prompt (on a
    /// copy-on-write fork; the prompt stays as it is), computed
    /// row-invariantly: scores of a continuation, and the check that KV
    /// from the cache equals KV computed afresh.
    pub fn logits_after(&mut self, prompt: &PrefilledPrompt, next: &[u32]) -> Result<Logits> {
        let mut seq = self.kv.fork(&prompt.seq);
        let rows: Vec<usize> = (0..next.len()).collect();
        let result = self.backend.forward(&mut self.kv, &mut seq, next, &rows);
        self.kv.release(&mut seq);
        result
    }

    /// Figures of every prefix-cache namespace (blocks, bytes, budget, hit
    /// rate, evictions), in creation order.
    pub fn cache_stats(&self) -> Vec<NamespaceStats> {
        self.kv.cache_stats()
    }

    /// Sets the KV budget of `namespace` (created if new) in bytes; its
    /// parked blocks over the budget are evicted.
    pub fn set_namespace_budget(&mut self, namespace: &str, bytes: usize) {
        let ns = self.kv.namespace(namespace);
        self.kv.set_namespace_budget(ns, bytes);
    }

    /// Replaces the prefix cache's block hasher, forgetting every cached
    /// block. A test hook: a constant hasher makes all blocks collide, which
    /// must not change any output.
    pub fn set_block_hasher(&mut self, hasher: BlockHasher) {
        self.kv.set_block_hasher(hasher);
    }
}

/// Feeds `tokens[seq.len()..]` (at least one token) into `seq` in chunks
/// that end on block boundaries (see the module documentation) and returns
/// the greedy token after the last one.
fn feed_blocks(backend: &Backend, kv: &mut KvCache, seq: &mut SeqKv, tokens: &[u32]) -> Result<u32> {
    loop {
        let start = seq.len();
        let end = ((start / BLOCK_TOKENS + 1) * BLOCK_TOKENS).min(tokens.len());
        let chunk = &tokens[start..end];
        if end == tokens.len() {
            let greedy = backend.forward_greedy(kv, seq, chunk, &[chunk.len() - 1])?;
            return greedy.first().copied().ok_or_else(|| Error::InvalidRequest {
                reason: format!("the backend returned no token for row {} of the prompt", end - 1),
            });
        }
        backend.forward_greedy(kv, seq, chunk, &[])?;
    }
}
