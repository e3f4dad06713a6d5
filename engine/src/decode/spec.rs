//! Lossless speculative decoding: a drafter proposes the next tokens, one
//! forward pass over the pending token and the draft gives the greedy target
//! at every position, and the longest prefix where draft and target agree is
//! accepted together with the next target token. The KV entries of rejected
//! positions are released by truncating the block table; accepted positions
//! are never recomputed.
//!
//! Output is token for token that of [`super::generate_greedy`]: every
//! emitted token is a greedy target computed over exactly the tokens greedy
//! decoding would have fed, and stop ids, `max_tokens` and the context
//! window are checked after every emitted token, in greedy's order.

use std::time::{Duration, Instant};

use super::draft::Drafter;
use super::width::AdaptiveWidth;
use super::{check_request, GenerateParams, Generation, GenerationStats, StopReason};
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::kv::{KvCache, SeqKv};

/// Where drafts come from and how wide they may be, for one request.
pub struct Speculation<'d> {
    pub drafter: &'d mut dyn Drafter,
    pub width: AdaptiveWidth,
}

/// A prompt fed to the model: its KV entries stay in the sequence it was
/// prefilled into, and the first output token is chosen but not yet fed.
#[derive(Debug, Clone, Copy)]
pub struct Prefill {
    /// The greedy token after the prompt.
    pub first: u32,
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV came from the prefix cache.
    pub cached_tokens: usize,
    /// Cache lookup and feeding the rest: the time to the first token.
    pub time: Duration,
}

/// Feeds `prompt` into `seq` (which must be empty).
pub fn prefill(backend: &Backend, kv: &mut KvCache, seq: &mut SeqKv, prompt: &[u32]) -> Result<Prefill> {
    check_request(backend, seq, prompt)?;
    let started = Instant::now();
    let first = backend.forward_greedy(kv, seq, prompt, &[prompt.len() - 1])?[0];
    Ok(Prefill { first, prompt_tokens: prompt.len(), cached_tokens: 0, time: started.elapsed() })
}

/// Speculative greedy decoding: prefill `prompt` into `seq` (which must be
/// empty), then per step ask the drafter for up to the width policy's choice
/// of tokens and verify them in one forward pass. `on_token` sees each token
/// as it is accepted.
pub fn generate_speculative(
    backend: &Backend,
    kv: &mut KvCache,
    seq: &mut SeqKv,
    prompt: &[u32],
    params: &GenerateParams,
    speculation: &mut Speculation<'_>,
    on_token: impl FnMut(u32),
) -> Result<Generation> {
    if params.max_tokens == 0 {
        check_request(backend, seq, prompt)?;
        let stats = GenerationStats { prompt_tokens: prompt.len(), ..Default::default() };
        return Ok(Generation { tokens: Vec::new(), stop: StopReason::MaxTokens, stats });
    }
    let prefilled = prefill(backend, kv, seq, prompt)?;
    decode_speculative(backend, kv, seq, &prefilled, params, speculation, on_token)
}

/// The decode half of [`generate_speculative`]: `seq` holds exactly the
/// prompt of `prefilled` (e.g. a fork of the sequence it was prefilled
/// into, so several generations share one prefill).
pub fn decode_speculative(
    backend: &Backend,
    kv: &mut KvCache,
    seq: &mut SeqKv,
    prefilled: &Prefill,
    params: &GenerateParams,
    speculation: &mut Speculation<'_>,
    mut on_token: impl FnMut(u32),
) -> Result<Generation> {
    if seq.len() != prefilled.prompt_tokens {
        return Err(Error::InvalidRequest {
            reason: format!(
                "the sequence holds {} tokens, the prefilled prompt {}",
                seq.len(),
                prefilled.prompt_tokens
            ),
        });
    }
    let Speculation { drafter, width } = speculation;
    let context = backend.config().max_position;
    let vocab = backend.config().vocab_size;
    let mut stats = GenerationStats {
        prompt_tokens: prefilled.prompt_tokens,
        cached_prompt_tokens: prefilled.cached_tokens,
        prefill: prefilled.time,
        ttft: prefilled.time,
        ..Default::default()
    };
    let mut tokens = Vec::new();
    if params.max_tokens == 0 {
        return Ok(Generation { tokens, stop: StopReason::MaxTokens, stats });
    }
    // The token chosen but not yet fed to the model (not in the KV cache).
    let mut pending = prefilled.first;
    // Emits one token; says why generation ends after it, if it does.
    let mut emit = |tokens: &mut Vec<u32>, token: u32| {
        tokens.push(token);
        on_token(token);
        if params.stop_ids.contains(&token) {
            Some(StopReason::Eos)
        } else if tokens.len() >= params.max_tokens {
            Some(StopReason::MaxTokens)
        } else {
            None
        }
    };

    let started = Instant::now();
    let mut block = Vec::new();
    let stop = 'decode: loop {
        if let Some(stop) = emit(&mut tokens, pending) {
            break stop;
        }
        if seq.len() + 1 > context {
            break StopReason::ContextFull;
        }
        if params.cancelled() {
            break StopReason::Cancelled;
        }
        // Room for the pending token and k drafts: every accepted draft is an
        // output token (so at most what max_tokens leaves) and every fed
        // token needs a position inside the context.
        let room = (params.max_tokens - tokens.len()).min(context - seq.len() - 1);
        // The chosen width is filled up to what its step costs anyway (the
        // pending token's row and the drafts' run at the backend's bucket).
        let chosen = width.choose();
        let k = (backend.step_capacity(chosen + 1) - 1).min(width.max_width()).min(room);

        let draft_started = Instant::now();
        let mut draft = if k > 0 { drafter.propose(&tokens, k) } else { Vec::new() };
        stats.draft += draft_started.elapsed();
        draft.truncate(k);
        // A token outside the vocabulary can never equal a target, so
        // cutting the draft there rejects exactly what verification would.
        if let Some(bad) = draft.iter().position(|&t| t as usize >= vocab) {
            draft.truncate(bad);
        }

        block.clear();
        block.push(pending);
        block.extend_from_slice(&draft);
        let rows: Vec<usize> = (0..block.len()).collect();
        let base = seq.len();
        let forward_started = Instant::now();
        // Row i's greedy target follows block[i].
        let targets = backend.forward_greedy(kv, seq, &block, &rows)?;
        let forward_time = forward_started.elapsed();
        stats.forward += forward_time;
        stats.steps += 1;
        stats.drafted += draft.len();

        let mut accepted = 0;
        while accepted < draft.len() && draft[accepted] == targets[accepted] {
            accepted += 1;
            if let Some(stop) = emit(&mut tokens, draft[accepted - 1]) {
                kv.truncate(seq, base + 1 + accepted);
                stats.accepted += accepted;
                stats.record_step(accepted);
                break 'decode stop;
            }
        }
        kv.truncate(seq, base + 1 + accepted);
        stats.accepted += accepted;
        stats.record_step(accepted);
        width.observe(draft.len(), accepted, forward_time);
        pending = targets[accepted];
    };
    stats.decode = started.elapsed();
    stats.output_tokens = tokens.len();
    Ok(Generation { tokens, stop, stats })
}
