//! Benchmarks; they print figures, they are not tests.
//!
//! - `graft bench generate`: prefill and decode speed of a model on this
//!   machine, next to the memory-bandwidth floor (weight bytes per token
//!   over a measured copy bandwidth).
//! - `graft bench spec`: speculative decoding on apply cases (JSONL in the
//!   format of the shared dev set): steps, tokens per step and decode time
//!   without drafts, with prompt lookup (over original, update and the
//!   output so far) and with the expected output as the text draft, and the
//!   speed-up over no drafts; then
//!   per mode the latency of a whole generation (prefill + decode) at p50
//!   and p90 and the effective output rate. `--dump-cases` writes each
//!   case's prompt and output length so peers run the same work.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use graft_engine::decode::draft::DEFAULT_MIN_NGRAM;
use graft_engine::decode::width::DEFAULT_MAX_WIDTH;
use graft_engine::decode::{Drafter, GenerateParams, Generation, NoDraft, PromptLookup, TextDraft};
use rayon::prelude::*;

use super::device::{load_engine, parse_device, DeviceArg};
use super::quantile;

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
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceArg,
}

/// Text the benchmark prompt is cut from: graft's own description, repeated.
const PROMPT_SEED: &str = "graft merges lazy edit snippets into source files. It keeps every open buffer \
parsed, drafts output tokens from a structural merge of the snippet, and verifies the drafts with a \
language model in wide batched steps. fn apply(original: &str, update: &str) -> String { merge(original, update) }\n";

pub fn generate(args: BenchGenerateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.runs > 0 && args.prompt_tokens > 0 && args.decode_tokens > 1,
        "runs, prompt and decode tokens must be positive (decode > 1)"
    );
    let model_path = crate::resolve_model(args.model)?;
    let mut engine = load_engine(&model_path, args.device)?;
    let mut prompt = Vec::new();
    while prompt.len() < args.prompt_tokens {
        prompt.extend(engine.tokenizer().encode(PROMPT_SEED, false)?);
    }
    prompt.truncate(args.prompt_tokens);
    // No stop ids: every run decodes exactly `decode_tokens`.
    let params = GenerateParams::new(args.decode_tokens, Vec::new());

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
    println!("backend          {} ({threads} threads)", engine.backend().describe());
    println!(
        "weights/token    {:.1} MB read as stored (GGUF blocks where a fused kernel exists, else f32)",
        weight_bytes / 1e6
    );
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

#[derive(Args)]
pub struct BenchSpecArgs {
    /// A GGUF file or a Hugging Face model directory (default: the default model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Cases, one JSON object a line with `original`, `update` and
    /// `expected` (default: $GRAFT_SHARED/data/apply/dev.jsonl, else
    /// ../shared/data/apply/dev.jsonl).
    #[arg(long)]
    cases: Option<PathBuf>,
    /// Cases to run (the first ones whose prompt fits --max-prompt).
    #[arg(long, default_value_t = 20)]
    n: usize,
    /// Cap on output tokens per case (besides the expected length and the
    /// context window).
    #[arg(long, default_value_t = 128)]
    max_output: usize,
    /// Cases with longer prompts are skipped (bounds the prefill time).
    #[arg(long, default_value_t = 2048)]
    max_prompt: usize,
    /// Upper bound on draft tokens per step.
    #[arg(long, default_value_t = DEFAULT_MAX_WIDTH)]
    max_width: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    device: DeviceArg,
    /// Write one JSON line per case run (id, prompt, output tokens) here,
    /// for peer benchmarks on the same work (bench/hf_peer.py).
    #[arg(long)]
    dump_cases: Option<PathBuf>,
    /// On the GPU: time every decode step's device work with events and
    /// report each mode's decode time a step split into device and host
    /// (each step then waits for itself: the decode times grow a little).
    #[arg(long)]
    device_time: bool,
}

/// One case of the JSONL file.
#[derive(serde::Deserialize)]
struct ApplyCase {
    #[serde(default)]
    id: String,
    #[serde(default)]
    instruction: String,
    original: String,
    update: String,
    expected: String,
}

/// A plain completion prompt: the small default model copies code after
/// `<updated>` far more readily than it answers a chat request.
fn apply_prompt(case: &ApplyCase) -> String {
    format!(
        "Instruction: {}\n<original>\n{}</original>\n<update>\n{}</update>\n<updated>\n",
        case.instruction, case.original, case.update
    )
}

/// Totals of one mode over all cases.
#[derive(Default)]
struct ModeTotals {
    tokens: usize,
    steps: usize,
    decode_secs: f64,
    /// The decode's device time (`--device-time`).
    device_secs: f64,
    /// Output tokens of every case, the prefill's included.
    outputs: usize,
    /// Per case: prefill + decode, in ms.
    latencies: Vec<f64>,
    /// Per case: the prefill alone and the decode alone, in ms.
    prefills: Vec<f64>,
    decodes: Vec<f64>,
}

impl ModeTotals {
    fn add(&mut self, generation: &Generation) {
        self.tokens += generation.tokens.len().saturating_sub(1);
        self.steps += generation.stats.steps;
        self.decode_secs += generation.stats.decode.as_secs_f64();
        self.outputs += generation.tokens.len();
        let (prefill, decode) =
            (generation.stats.prefill.as_secs_f64() * 1e3, generation.stats.decode.as_secs_f64() * 1e3);
        self.latencies.push(prefill + decode);
        self.prefills.push(prefill);
        self.decodes.push(decode);
    }

    /// Output tokens per second of prefill + decode time over all cases.
    fn effective_tokens_per_second(&self) -> f64 {
        let secs: f64 = self.latencies.iter().sum::<f64>() / 1e3;
        if secs > 0.0 {
            self.outputs as f64 / secs
        } else {
            0.0
        }
    }

    fn tokens_per_step(&self) -> f64 {
        if self.steps > 0 {
            self.tokens as f64 / self.steps as f64
        } else {
            0.0
        }
    }
}

pub fn spec(args: BenchSpecArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.n > 0 && args.max_output > 0, "--n and --max-output must be positive");
    let cases_path = match args.cases {
        Some(path) => path,
        None => std::env::var_os("GRAFT_SHARED")
            .map_or_else(|| PathBuf::from("../shared"), PathBuf::from)
            .join("data/apply/dev.jsonl"),
    };
    let text = std::fs::read_to_string(&cases_path).with_context(|| format!("reading {}", cases_path.display()))?;
    let model_path = crate::resolve_model(args.model)?;
    let mut engine = load_engine(&model_path, args.device)?;
    if args.device_time {
        start_step_timing(&engine)?;
    }
    let context = engine.config().max_position;
    let mut dump = match &args.dump_cases {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let eos = engine.tokenizer().eos_ids().to_vec();

    println!("model     {}", model_path.display());
    println!(
        "cases     {} (first {} with prompts of at most {} tokens)",
        cases_path.display(),
        args.n,
        args.max_prompt
    );
    println!(
        "output    min(expected tokens, --max-output {}, context {context} - prompt - 1), stopping at EOS; max width {}",
        args.max_output, args.max_width
    );
    println!(
        "modes     none: no draft | lookup: n-grams of original+update | text: expected as the draft (upper bound)"
    );
    println!(
        "times     decode wall time in ms, each drafter's setup included where the prefill does not hide it (the \
         prefill is shared by the three modes and not included)"
    );
    println!();
    println!(
        "{:<48} {:>6} {:>4} {:>4} | {:>5} {:>8} | {:>5} {:>6} {:>8} {:>5} | {:>5} {:>6} {:>8} {:>5}",
        "case", "prompt", "cap", "out", "steps", "ms", "steps", "tok/st", "ms", "x", "steps", "tok/st", "ms", "x"
    );
    let mut totals: [ModeTotals; 3] = Default::default();
    let mut lookup_setups = Vec::new();
    let (mut ran, mut skipped) = (0, 0);
    for (line_no, line) in text.lines().enumerate() {
        if ran == args.n {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        let case: ApplyCase = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: not an apply case", cases_path.display(), line_no + 1))?;
        let tokenizer = engine.tokenizer();
        let prompt = tokenizer.encode(&apply_prompt(&case), true)?;
        if prompt.len() > args.max_prompt || prompt.len() + 1 >= context {
            skipped += 1;
            continue;
        }
        let expected = tokenizer.encode(&case.expected, false)?;
        let sources = [tokenizer.encode(&case.original, false)?, tokenizer.encode(&case.update, false)?];
        let cap = expected.len().min(args.max_output).min(context - prompt.len() - 1).max(1);
        let params = GenerateParams::new(cap, eos.clone());

        // The lookup's index of the prompt's sequences is built on a host
        // thread while the prefill runs, as the apply pipeline does; what
        // that costs the host outside the prefill (starting the thread,
        // waiting for it past the prefill's end) counts in lookup's decode.
        let (prefilled, (lookup, build), waited) = std::thread::scope(|scope| {
            let spawn_started = Instant::now();
            let index = scope.spawn(|| {
                let started = Instant::now();
                (PromptLookup::new(&sources, DEFAULT_MIN_NGRAM), started.elapsed())
            });
            let spawning = spawn_started.elapsed();
            let prefilled = engine.prefill(&prompt);
            let prefill_end = Instant::now();
            let built = index.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (prefilled, built, spawning + prefill_end.elapsed())
        });
        let prefilled = prefilled?;
        // The prefill's device time is not the decode's.
        take_step_ms(&engine);
        let started = Instant::now();
        let text_draft = TextDraft::new(expected);
        let setups = [Duration::ZERO, waited, started.elapsed()];
        lookup_setups.push((build.as_secs_f64() * 1e3, waited.as_secs_f64() * 1e3));
        let mut drafters: [Box<dyn Drafter>; 3] = [Box::new(NoDraft), Box::new(lookup), Box::new(text_draft)];
        let mut generations = Vec::with_capacity(3);
        let mut device_secs = [0.0f64; 3];
        for ((drafter, device), setup) in drafters.iter_mut().zip(&mut device_secs).zip(setups) {
            match engine.generate_from(&prefilled, &params, drafter.as_mut(), args.max_width, |_| {}) {
                Ok(mut generation) => {
                    generation.stats.decode += setup;
                    generation.stats.draft += setup;
                    generations.push(generation);
                    *device = take_step_ms(&engine) / 1e3;
                }
                Err(err) => {
                    engine.release_prompt(prefilled);
                    return Err(err.into());
                }
            }
        }
        engine.release_prompt(prefilled);
        let (none, lookup, text) = (&generations[0], &generations[1], &generations[2]);
        anyhow::ensure!(
            lookup.tokens == none.tokens && text.tokens == none.tokens,
            "case {}: speculative output differs from greedy",
            case.id
        );
        let ms = |g: &Generation| g.stats.decode.as_secs_f64() * 1e3;
        let speedup = |g: &Generation| ms(none) / ms(g).max(1e-9);
        let name: String = case.id.chars().take(48).collect();
        println!(
            "{:<48} {:>6} {:>4} {:>4} | {:>5} {:>8.0} | {:>5} {:>6.2} {:>8.0} {:>5.2} | {:>5} {:>6.2} {:>8.0} {:>5.2}",
            name,
            prompt.len(),
            cap,
            none.tokens.len(),
            none.stats.steps,
            ms(none),
            lookup.stats.steps,
            lookup.stats.tokens_per_step(),
            ms(lookup),
            speedup(lookup),
            text.stats.steps,
            text.stats.tokens_per_step(),
            ms(text),
            speedup(text)
        );
        for ((total, generation), device) in totals.iter_mut().zip(&generations).zip(device_secs) {
            total.add(generation);
            total.device_secs += device;
        }
        if let Some(out) = dump.as_mut() {
            use std::io::Write;
            let line = serde_json::json!({
                "id": case.id,
                "prompt": apply_prompt(&case),
                "prompt_tokens": prompt.len(),
                "output_tokens": none.tokens.len(),
                "latency_ms": generations.iter().map(|g| (g.stats.prefill + g.stats.decode).as_secs_f64() * 1e3)
                    .collect::<Vec<_>>(),
            });
            writeln!(out, "{line}")?;
        }
        ran += 1;
    }
    let [none, lookup, text] = &totals;
    let speedup = |t: &ModeTotals| none.decode_secs / t.decode_secs.max(1e-9);
    println!(
        "{:<48} {:>6} {:>4} {:>4} | {:>5} {:>8.0} | {:>5} {:>6.2} {:>8.0} {:>5.2} | {:>5} {:>6.2} {:>8.0} {:>5.2}",
        format!("all {ran} cases ({skipped} skipped)"),
        "",
        "",
        none.tokens + ran,
        none.steps,
        none.decode_secs * 1e3,
        lookup.steps,
        lookup.tokens_per_step(),
        lookup.decode_secs * 1e3,
        speedup(lookup),
        text.steps,
        text.tokens_per_step(),
        text.decode_secs * 1e3,
        speedup(text)
    );
    println!("(tok/st: output tokens per forward step after the prefill; x: decode speed-up over no draft)");
    println!();
    println!("backend   {}", engine.backend().describe());
    println!(
        "{:<8} {:>12} {:>12} {:>10} {:>16} | {:>11} {:>11} {:>10} {:>10}",
        "mode",
        "p50 ms",
        "p90 ms",
        "tok/step",
        "output tok/s",
        "prefill p50",
        "prefill p90",
        "decode p50",
        "decode p90"
    );
    for (name, total) in ["none", "lookup", "text"].iter().zip(&totals) {
        println!(
            "{name:<8} {:>12.2} {:>12.2} {:>10.2} {:>16.0} | {:>11.2} {:>11.2} {:>10.2} {:>10.2}",
            quantile(&total.latencies, 0.5),
            quantile(&total.latencies, 0.9),
            total.tokens_per_step(),
            total.effective_tokens_per_second(),
            quantile(&total.prefills, 0.5),
            quantile(&total.prefills, 0.9),
            quantile(&total.decodes, 0.5),
            quantile(&total.decodes, 0.9)
        );
    }
    println!("(latency: prefill + decode of one case, in ms, and each alone (the modes share one prefill a case);");
    println!(" output tok/s: all output tokens over all prefill + decode time)");
    let (builds, waits): (Vec<f64>, Vec<f64>) = lookup_setups.into_iter().unzip();
    println!(
        "lookup's index of original + update: built in p50 {:.2} ms, p90 {:.2} ms beside the prefill; \
         waited for after it (in lookup's decode) p50 {:.3} ms, p90 {:.3} ms",
        quantile(&builds, 0.5),
        quantile(&builds, 0.9),
        quantile(&waits, 0.5),
        quantile(&waits, 0.9)
    );
    if args.device_time {
        println!();
        println!("{:<8} {:>14} {:>14} {:>14}", "mode", "decode ms/step", "device ms", "host ms");
        for (name, total) in ["none", "lookup", "text"].iter().zip(&totals) {
            let per_step = |secs: f64| secs * 1e3 / total.steps.max(1) as f64;
            println!(
                "{name:<8} {:>14.3} {:>14.3} {:>14.3}",
                per_step(total.decode_secs),
                per_step(total.device_secs),
                per_step(total.decode_secs - total.device_secs)
            );
        }
        println!("(a decode step's wall time, its device time between events, and the rest, spent on the host)");
    }
    Ok(())
}

/// Turns on the GPU's step timing (`--device-time`); `Err` off the GPU.
fn start_step_timing(engine: &graft_engine::Engine) -> anyhow::Result<()> {
    match engine.backend() {
        #[cfg(feature = "cuda")]
        graft_engine::backend::Backend::Cuda(backend) => {
            backend.model().set_step_timing(true);
            Ok(())
        }
        _ => anyhow::bail!("--device-time needs the GPU backend (--device cuda)"),
    }
}

/// Device ms of the GPU steps since the last call while step timing is on;
/// 0 otherwise.
fn take_step_ms(engine: &graft_engine::Engine) -> f64 {
    match engine.backend() {
        #[cfg(feature = "cuda")]
        graft_engine::backend::Backend::Cuda(backend) => backend.model().take_step_time().unwrap_or(0.0),
        _ => 0.0,
    }
}
