//! `graft bench generate`: prefill and decode speed of a model on this
//! machine, next to the memory-bandwidth floor (weight bytes per token over
//! a measured copy bandwidth). A benchmark, not a test: it prints figures.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use graft_engine::decode::GenerateParams;
use graft_engine::{Engine, EngineOptions};
use rayon::prelude::*;

#[derive(Args)]
pub struct BenchGenerateArgs {
    /// A GGUF file or a Hugging Face model directory (default: the default model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Prompt length in tokens for the prefill measurement.
    #[arg(long, default_value_t = 512)]
    prompt_tokens: usize,
    /// Tokens to decode per run.
    #[arg(long, default_value_t = 128)]
    decode_tokens: usize,
    /// Timed runs (the median is reported); one warm-up run precedes them.
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

/// Text the benchmark prompt is cut from: graft's own description, repeated.
const PROMPT_SEED: &str = "graft merges lazy edit snippets into source files. It keeps every open buffer \
parsed, drafts output tokens from a structural merge of the snippet, and verifies the drafts with a \
language model in wide batched steps. fn apply(original: &str, update: &str) -> String { merge(original, update) }\n";

pub fn generate(args: BenchGenerateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.runs > 0 && args.prompt_tokens > 0 && args.decode_tokens > 1, "runs, prompt and decode tokens must be positive (decode > 1)");
    let model_path = crate::resolve_model(args.model)?;
    let mut engine = Engine::load(&model_path, &EngineOptions::default())
        .with_context(|| format!("loading {}", model_path.display()))?;
    let mut prompt = Vec::new();
    while prompt.len() < args.prompt_tokens {
        prompt.extend(engine.tokenizer().encode(PROMPT_SEED, false)?);
    }
    prompt.truncate(args.prompt_tokens);
    // No stop ids: every run decodes exactly `decode_tokens`.
    let params = GenerateParams { max_tokens: args.decode_tokens, stop_ids: Vec::new() };

    let bandwidth = measure_copy_bandwidth();
    let weight_bytes = engine.weight_bytes_per_token() as f64;
    let floor_tok_s = bandwidth / weight_bytes;

    let mut prefill = Vec::new();
    let mut decode = Vec::new();
    for run in 0..=args.runs {
        let generation = engine.generate(&prompt, &params, |_| {})?;
        if run > 0 {
            prefill.push(generation.stats.prefill_tokens_per_second());
            decode.push(generation.stats.decode_tokens_per_second());
        }
    }
    let (prefill, decode) = (median(&mut prefill), median(&mut decode));
    let threads = rayon::current_num_threads();
    println!("model            {}", model_path.display());
    println!("backend          {} ({threads} threads), f32 weights", engine.backend().name());
    println!("weights/token    {:.1} MB", weight_bytes / 1e6);
    println!("copy bandwidth   {:.1} GB/s (bytes read + written, {threads} threads)", bandwidth / 1e9);
    println!("decode floor     {floor_tok_s:.1} tok/s (weights/token over copy bandwidth)");
    println!("prefill          {prefill:.1} tok/s ({} prompt tokens, median of {})", args.prompt_tokens, args.runs);
    println!("decode           {decode:.1} tok/s ({} tokens, median of {})", args.decode_tokens, args.runs);
    println!("decode / floor   {:.2}", decode / floor_tok_s);
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Multi-threaded memcpy of a 256 MiB buffer; bytes read plus written per
/// second, the best of five.
fn measure_copy_bandwidth() -> f64 {
    const BYTES: usize = 256 << 20;
    let src = vec![1u8; BYTES];
    let mut dst = vec![0u8; BYTES];
    let chunk = BYTES / rayon::current_num_threads().max(1);
    let mut best = 0.0f64;
    for _ in 0..5 {
        let started = Instant::now();
        dst.par_chunks_mut(chunk).zip(src.par_chunks(chunk)).for_each(|(d, s)| d.copy_from_slice(s));
        let secs = started.elapsed().as_secs_f64();
        best = best.max(2.0 * BYTES as f64 / secs);
    }
    std::hint::black_box(&dst);
    best
}
