//! Decoding over a backend and the paged KV cache: plain greedy decoding
//! ([`generate_greedy`], the reference every other path must match token for
//! token), lossless speculative decoding ([`spec::generate_speculative`])
//! with its drafters ([`draft`]) and adaptive width ([`width`]), and the
//! statistics every generation reports.

pub mod draft;
pub mod spec;
pub mod width;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::kv::{KvCache, SeqKv};

pub use draft::{CompositeDraft, Drafter, NoDraft, PromptLookup, TextDraft};
pub use spec::{decode_speculative, generate_speculative, prefill, Prefill, Speculation};
pub use width::AdaptiveWidth;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateParams {
    /// Upper bound on generated tokens.
    pub max_tokens: usize,
    /// Ids that end generation (emitted, then stop). Empty: never stop early.
    pub stop_ids: Vec<u32>,
    /// When set (by another thread), generation stops before the next
    /// step with [`StopReason::Cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
}

impl GenerateParams {
    /// Up to `max_tokens`, stopping at `stop_ids`, not cancellable.
    pub fn new(max_tokens: usize, stop_ids: Vec<u32>) -> Self {
        Self { max_tokens, stop_ids, cancel: None }
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed))
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A stop id was generated (it is the last output token).
    Eos,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The model's context window is full.
    ContextFull,
    /// [`GenerateParams::cancel`] was set.
    Cancelled,
}

/// Figures of one generation. Plain greedy decoding drafts nothing, so its
/// `drafted`, `accepted` and `draft` are zero and every step accepts 0.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache (not fed).
    pub cached_prompt_tokens: usize,
    pub output_tokens: usize,
    /// Forward passes after the prefill.
    pub steps: usize,
    /// Draft tokens sent to verification.
    pub drafted: usize,
    /// Draft tokens the target model confirmed (emitted without a step of
    /// their own).
    pub accepted: usize,
    /// Steps by accepted draft tokens, in power-of-two buckets: bucket 0
    /// counts steps that accepted nothing, bucket `i > 0` steps that
    /// accepted `2^(i-1) ..= 2^i - 1` tokens.
    pub accepted_histogram: Vec<usize>,
    pub prefill: Duration,
    /// Time to the first output token: cache lookup plus prefill of the
    /// uncached prompt tokens (the first token comes from the prefill's
    /// logits). Callers add their own work before it (tokenizing, merging).
    pub ttft: Duration,
    /// Wall time from the first output token to the end.
    pub decode: Duration,
    /// Part of `decode` spent in the drafter.
    pub draft: Duration,
    /// Part of `decode` spent in forward passes.
    pub forward: Duration,
}

impl GenerationStats {
    /// Output tokens per second of decode time (the first token is produced
    /// by the prefill, so it is not counted).
    pub fn decode_tokens_per_second(&self) -> f64 {
        let secs = self.decode.as_secs_f64();
        if secs > 0.0 {
            self.output_tokens.saturating_sub(1) as f64 / secs
        } else {
            0.0
        }
    }

    pub fn prefill_tokens_per_second(&self) -> f64 {
        let secs = self.prefill.as_secs_f64();
        if secs > 0.0 {
            self.prompt_tokens as f64 / secs
        } else {
            0.0
        }
    }

    /// Mean accepted draft tokens per step.
    pub fn accepted_per_step(&self) -> f64 {
        if self.steps > 0 {
            self.accepted as f64 / self.steps as f64
        } else {
            0.0
        }
    }

    /// Output tokens per forward pass after the prefill (the prefill's token
    /// is not counted): 1.0 for plain greedy decoding.
    pub fn tokens_per_step(&self) -> f64 {
        if self.steps > 0 {
            self.output_tokens.saturating_sub(1) as f64 / self.steps as f64
        } else {
            0.0
        }
    }

    /// Decode time outside drafting and forward passes (acceptance,
    /// callbacks, bookkeeping).
    pub fn rest(&self) -> Duration {
        self.decode.saturating_sub(self.draft + self.forward)
    }

    /// Counts one step that accepted `accepted` draft tokens.
    pub(crate) fn record_step(&mut self, accepted: usize) {
        let bucket = (usize::BITS - accepted.leading_zeros()) as usize;
        if self.accepted_histogram.len() <= bucket {
            self.accepted_histogram.resize(bucket + 1, 0);
        }
        self.accepted_histogram[bucket] += 1;
    }
}

/// The result of a generation.
#[derive(Debug, Clone)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub stop: StopReason,
    pub stats: GenerationStats,
}

/// Checks a request and returns the model's context length.
pub(crate) fn check_request(backend: &Backend, seq: &SeqKv, prompt: &[u32]) -> Result<usize> {
    if prompt.is_empty() {
        return Err(Error::InvalidRequest { reason: "the prompt has no tokens".into() });
    }
    if !seq.is_empty() {
        return Err(Error::InvalidRequest { reason: "generation needs an empty sequence".into() });
    }
    let context = backend.config().max_position;
    if prompt.len() >= context {
        return Err(Error::InvalidRequest {
            reason: format!("the prompt has {} tokens; the model's context is {context}", prompt.len()),
        });
    }
    Ok(context)
}

/// Greedy decoding: prefill `prompt` into `seq` (which must be empty), then
/// one token per forward pass. `on_token` sees each token as it is chosen.
pub fn generate_greedy(
    backend: &Backend,
    kv: &mut KvCache,
    seq: &mut SeqKv,
    prompt: &[u32],
    params: &GenerateParams,
    mut on_token: impl FnMut(u32),
) -> Result<Generation> {
    let context = check_request(backend, seq, prompt)?;
    let mut stats = GenerationStats { prompt_tokens: prompt.len(), ..Default::default() };
    let mut tokens = Vec::new();
    if params.max_tokens == 0 {
        return Ok(Generation { tokens, stop: StopReason::MaxTokens, stats });
    }

    let started = Instant::now();
    let mut next = backend.forward_greedy(kv, seq, prompt, &[prompt.len() - 1])?[0];
    stats.prefill = started.elapsed();
    stats.ttft = stats.prefill;

    let started = Instant::now();
    let stop = loop {
        tokens.push(next);
        on_token(next);
        if params.stop_ids.contains(&next) {
            break StopReason::Eos;
        }
        if tokens.len() >= params.max_tokens {
            break StopReason::MaxTokens;
        }
        if seq.len() + 1 > context {
            break StopReason::ContextFull;
        }
        if params.cancelled() {
            break StopReason::Cancelled;
        }
        let forward_started = Instant::now();
        let greedy = backend.forward_greedy(kv, seq, &[next], &[0])?;
        stats.forward += forward_started.elapsed();
        stats.steps += 1;
        stats.record_step(0);
        next = greedy[0];
    };
    stats.decode = started.elapsed();
    stats.output_tokens = tokens.len();
    Ok(Generation { tokens, stop, stats })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_powers_of_two() {
        let mut stats = GenerationStats::default();
        for accepted in [0, 1, 2, 3, 4, 7, 8, 300] {
            stats.record_step(accepted);
        }
        // 0 | 1 | 2-3 | 4-7 | 8-15 | ... | 256-511
        assert_eq!(stats.accepted_histogram, vec![1, 1, 2, 2, 1, 0, 0, 0, 0, 1]);
    }
}
