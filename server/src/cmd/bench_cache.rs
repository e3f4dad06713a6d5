//! `graft bench cache`: time to first token through the prefix cache on
//! apply cases (JSONL in the format of the shared dev set). Figures, not
//! tests.
//!
//! Each case's prompt has the apply prompt's shape: a stable prefix (fixed
//! header, then the original file) tokenized apart from the rest (a region
//! of the file, the update snippet, the instruction), as the model apply
//! renders it. Per case, TTFT (cache lookup + prefill of the uncached
//! tokens; the first token comes from the prefill) is measured
//!
//! - **plain**: [`Engine::prefill`], one forward pass over the prompt, no
//!   cache: the engine's fastest cold prefill;
//! - **cold**: [`Engine::prefill_in`] in a namespace with nothing cached
//!   (block-aligned chunks, what a cache miss costs);
//! - **warm**: after [`Engine::warm`] of the stable prefix, as the server
//!   does for an open buffer;
//! - **edit**: the same request after one line in the middle of the file
//!   changed, with the cache as the warm request left it.
//!
//! The warm and cold requests must choose the same first token (the cache
//! is lossless); the bench stops if not.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use graft_engine::decode::{GenerateParams, NoDraft};
use graft_engine::kv::NamespaceStats;
use graft_engine::Engine;

use super::device::{load_engine, parse_device, DeviceArg};

#[derive(Args)]
pub struct BenchCacheArgs {
    /// Apply cases (JSONL with `original`, `update` and optionally `id`,
    /// `instruction`); default: the shared dev set.
    #[arg(long)]
    cases: Option<PathBuf>,
    /// Cases to run (the first ones whose prompt fits `--max-prompt`).
    #[arg(long, default_value_t = 20)]
    n: usize,
    /// Skip cases whose prompt has more tokens than this.
    #[arg(long, default_value_t = 1200)]
    max_prompt: usize,
    /// A GGUF file or a Hugging Face model directory (default: the default model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceArg,
}

#[derive(serde::Deserialize)]
struct ApplyCase {
    #[serde(default)]
    id: String,
    #[serde(default)]
    instruction: String,
    original: String,
    update: String,
}

/// The fixed header of the prompt (stands in for the system message and
/// the apply instructions).
const HEADER: &str = "You are graft, a precise code-editing tool. You apply an edit snippet to one region of a \
file and output the region's new text exactly, keeping every line the edit does not change.\nThe file:\n";

/// Lines of the original given as the region to rewrite.
const REGION_LINES: usize = 16;

/// The stable prefix of a case's prompt.
fn stable_text(original: &str) -> String {
    format!("{HEADER}<file>\n{original}</file>\n")
}

/// The rest of the prompt: the region around the middle of the file, the
/// snippet and the instruction.
fn rest_text(case: &ApplyCase) -> String {
    let lines: Vec<&str> = case.original.split_inclusive('\n').collect();
    let start = (lines.len() / 2).saturating_sub(REGION_LINES / 2);
    let region: String = lines.iter().skip(start).take(REGION_LINES).copied().collect();
    format!(
        "Rewrite this region:\n<region>\n{region}</region>\nThe edit:\n<edit>\n{}</edit>\nInstruction: {}\n<region>\n",
        case.update, case.instruction
    )
}

/// The original with its middle line changed (a small edit by the user).
fn edited(original: &str) -> String {
    let lines: Vec<&str> = original.split_inclusive('\n').collect();
    let middle = lines.len() / 2;
    lines
        .iter()
        .enumerate()
        .map(|(i, line)| {
            if i == middle {
                let body = line.trim_end_matches(['\r', '\n']);
                format!("{body} 1{}", &line[body.len()..])
            } else {
                (*line).to_owned()
            }
        })
        .collect()
}

/// One timed request.
#[derive(Clone, Copy, Default)]
struct Request {
    ttft: Duration,
    cached: usize,
    first: u32,
}

/// TTFT of `prompt` through the cache of `namespace`.
fn cached_request(engine: &mut Engine, namespace: &str, prompt: &[u32]) -> anyhow::Result<Request> {
    let started = Instant::now();
    let prefilled = engine.prefill_in(namespace, prompt)?;
    let ttft = started.elapsed();
    let generation = engine.generate_from(&prefilled, &GenerateParams::new(1, Vec::new()), &mut NoDraft, 1, |_| {});
    engine.release_prompt(prefilled);
    let generation = generation?;
    let first = generation.tokens.first().copied().context("a one-token generation gave no token")?;
    Ok(Request { ttft, cached: generation.stats.cached_prompt_tokens, first })
}

/// TTFT of `prompt` through [`Engine::prefill`] (no cache).
fn plain_request(engine: &mut Engine, prompt: &[u32]) -> anyhow::Result<Request> {
    let started = Instant::now();
    let prefilled = engine.prefill(prompt)?;
    let ttft = started.elapsed();
    let generation = engine.generate_from(&prefilled, &GenerateParams::new(1, Vec::new()), &mut NoDraft, 1, |_| {});
    engine.release_prompt(prefilled);
    let first = generation?.tokens.first().copied().context("a one-token generation gave no token")?;
    Ok(Request { ttft, cached: 0, first })
}

/// Per-condition figures over all cases.
#[derive(Default)]
struct Column {
    ttft_ms: Vec<f64>,
    fed: usize,
    cached: usize,
}

impl Column {
    fn add(&mut self, request: &Request, prompt_tokens: usize) {
        self.ttft_ms.push(request.ttft.as_secs_f64() * 1e3);
        self.cached += request.cached;
        self.fed += prompt_tokens - request.cached;
    }

    fn mean(&self) -> f64 {
        self.ttft_ms.iter().sum::<f64>() / self.ttft_ms.len().max(1) as f64
    }

    fn median(&self) -> f64 {
        let mut sorted = self.ttft_ms.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => 0.0,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }
}

pub fn run(args: BenchCacheArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.n > 0, "--n must be positive");
    let cases_path = match args.cases {
        Some(path) => path,
        None => std::env::var_os("GRAFT_SHARED")
            .map_or_else(|| PathBuf::from("../shared"), PathBuf::from)
            .join("data/apply/dev.jsonl"),
    };
    let text = std::fs::read_to_string(&cases_path).with_context(|| format!("reading {}", cases_path.display()))?;
    let model_path = crate::resolve_model(args.model)?;
    let mut engine = load_engine(&model_path, args.device)?;
    let context = engine.config().max_position;

    println!("model     {} on {}", model_path.display(), engine.backend().describe());
    println!(
        "cases     {} (first {} with prompts of at most {} tokens)",
        cases_path.display(),
        args.n,
        args.max_prompt
    );
    println!("prompt    [header + file] (stable, warmed) + [region + snippet + instruction]");
    println!("ttft      ms to the first token: plain = Engine::prefill (no cache), cold = prefill_in with an empty");
    println!("          namespace, warm = after warm(header + file), edit = after one middle line changed");
    println!();
    println!(
        "{:<40} {:>6} {:>6} | {:>8} {:>8} {:>8} | {:>8} {:>6} | {:>8} {:>6}",
        "case", "prompt", "stable", "plain", "cold", "warm-up", "warm", "cached", "edit", "cached"
    );
    let mut columns: [Column; 4] = Default::default();
    let mut warm_up_ms = Vec::new();
    let (mut ran, mut skipped, mut plain_mismatches) = (0, 0, 0);
    let mut prompt_tokens = 0;
    for (line_no, line) in text.lines().enumerate() {
        if ran == args.n {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let case: ApplyCase = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not an apply case", cases_path.display(), line_no + 1))?;
        let tokenizer = engine.tokenizer().clone();
        let stable = tokenizer.encode(&stable_text(&case.original), true)?;
        let rest = tokenizer.encode(&rest_text(&case), false)?;
        let prompt = [stable.clone(), rest.clone()].concat();
        let edited_prompt = [tokenizer.encode(&stable_text(&edited(&case.original)), true)?, rest].concat();
        if prompt.len().max(edited_prompt.len()) > args.max_prompt.min(context - 1) {
            skipped += 1;
            continue;
        }

        let plain = plain_request(&mut engine, &prompt)?;
        let cold = cached_request(&mut engine, &format!("cold {ran}"), &prompt)?;
        let started = Instant::now();
        engine.warm("bench", &stable, None)?;
        let warm_up = started.elapsed().as_secs_f64() * 1e3;
        let warm = cached_request(&mut engine, "bench", &prompt)?;
        let edit = cached_request(&mut engine, "bench", &edited_prompt)?;
        anyhow::ensure!(
            warm.first == cold.first,
            "case {}: the first token from cached KV ({}) differs from a cold prefill's ({})",
            case.id,
            warm.first,
            cold.first
        );
        plain_mismatches += usize::from(plain.first != cold.first);

        let name: String = case.id.chars().take(40).collect();
        let ms = |r: &Request| r.ttft.as_secs_f64() * 1e3;
        println!(
            "{:<40} {:>6} {:>6} | {:>8.0} {:>8.0} {:>8.0} | {:>8.0} {:>6} | {:>8.0} {:>6}",
            name,
            prompt.len(),
            stable.len(),
            ms(&plain),
            ms(&cold),
            warm_up,
            ms(&warm),
            warm.cached,
            ms(&edit),
            edit.cached
        );
        for (column, (request, tokens)) in columns.iter_mut().zip([
            (&plain, prompt.len()),
            (&cold, prompt.len()),
            (&warm, prompt.len()),
            (&edit, edited_prompt.len()),
        ]) {
            column.add(request, tokens);
        }
        warm_up_ms.push(warm_up);
        prompt_tokens += prompt.len();
        ran += 1;
    }
    anyhow::ensure!(ran > 0, "no case fits --max-prompt {}", args.max_prompt);

    let [plain, cold, warm, edit] = &columns;
    println!();
    println!("{ran} cases ({skipped} skipped as too long), {prompt_tokens} prompt tokens");
    println!("first token: warm = cold in every case; plain differs from cold in {plain_mismatches} (summation order)");
    println!(
        "warm-up: {:.0} ms mean per file (in the background, cancellable per block)",
        warm_up_ms.iter().sum::<f64>() / ran as f64
    );
    println!();
    println!("| TTFT | mean ms | median ms | tokens fed | from cache | reduction vs cold | vs plain |");
    println!("|---|---|---|---|---|---|---|");
    let reduction = |column: &Column, base: &Column| 100.0 * (1.0 - column.mean() / base.mean().max(1e-9));
    for (name, column) in [("plain", plain), ("cold", cold), ("warm", warm), ("after edit", edit)] {
        let total = column.fed + column.cached;
        println!(
            "| {name} | {:.0} | {:.0} | {} | {:.1}% | {:.1}% | {:.1}% |",
            column.mean(),
            column.median(),
            column.fed,
            100.0 * column.cached as f64 / total.max(1) as f64,
            reduction(column, cold),
            reduction(column, plain)
        );
    }
    let stats = engine.cache_stats();
    if let Some(bench) = stats.iter().find(|s| s.name == "bench") {
        print_namespace(bench);
    }
    Ok(())
}

fn print_namespace(stats: &NamespaceStats) {
    println!();
    println!(
        "namespace `{}`: hit rate {:.1}% ({} of {} looked-up prompt tokens), {} blocks, {:.1} MiB of {:.0} MiB, {} evictions",
        stats.name,
        100.0 * stats.hit_rate(),
        stats.hit_tokens,
        stats.lookup_tokens,
        stats.blocks,
        stats.bytes as f64 / (1 << 20) as f64,
        stats.budget_bytes as f64 / (1 << 20) as f64,
        stats.evictions
    );
}
