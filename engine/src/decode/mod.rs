//! Greedy decoding over a backend and the paged KV cache, with the
//! statistics every generation reports.

use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::kv::{KvCache, SeqKv};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateParams {
    /// Upper bound on generated tokens.
    pub max_tokens: usize,
    /// Ids that end generation (emitted, then stop). Empty: never stop early.
    pub stop_ids: Vec<u32>,
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
}

/// Figures of one generation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    pub output_tokens: usize,
    /// Forward passes after the prefill.
    pub steps: usize,
    pub prefill: Duration,
    pub decode: Duration,
}

impl GenerationStats {
    /// Output tokens per second of decode time (the first token is produced
    /// by the prefill, so it is not counted).
    pub fn decode_tokens_per_second(&self) -> f64 {
        let secs = self.decode.as_secs_f64();
        if secs > 0.0 { self.output_tokens.saturating_sub(1) as f64 / secs } else { 0.0 }
    }

    pub fn prefill_tokens_per_second(&self) -> f64 {
        let secs = self.prefill.as_secs_f64();
        if secs > 0.0 { self.prompt_tokens as f64 / secs } else { 0.0 }
    }
}

/// The result of a generation.
#[derive(Debug, Clone)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub stop: StopReason,
    pub stats: GenerationStats,
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
    let mut stats = GenerationStats { prompt_tokens: prompt.len(), ..Default::default() };
    let mut tokens = Vec::new();
    if params.max_tokens == 0 {
        return Ok(Generation { tokens, stop: StopReason::MaxTokens, stats });
    }

    let started = Instant::now();
    let logits = backend.forward(kv, seq, prompt, &[prompt.len() - 1])?;
    let mut next = logits.argmax(0);
    stats.prefill = started.elapsed();

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
        let logits = backend.forward(kv, seq, &[next], &[0])?;
        stats.steps += 1;
        next = logits.argmax(0);
    };
    stats.decode = started.elapsed();
    stats.output_tokens = tokens.len();
    Ok(Generation { tokens, stop, stats })
}
