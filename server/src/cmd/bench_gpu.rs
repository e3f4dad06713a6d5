//! `graft bench gpu` (feature `cuda`): the CUDA backend's checks and step
//! benchmarks in one run, for the lent H200.
//!
//! 1. Correctness: GPU logits against CPU logits (relative L2 error, bound
//!    [`REL_ERROR_BOUND`], or on a default-model prompt where transformers'
//!    own bf16 inference errs more, that error: `--peer-errors`) on the tiny
//!    fixture models and the default model's reference prompts; greedy tokens of the default model's
//!    prompts identical on both backends up to the end or to a near-tie
//!    ([`NearTie`]: where the CPU's top two logits lie within the GPU's
//!    measured error of each other, bf16 may pick either); speculative output on the GPU
//!    identical to plain greedy on the GPU; the wide product kernel giving
//!    the skinny kernel's bits at every width, and both within
//!    [`PRODUCT_ERROR_BOUND`] of an f64 product on the host; each row's
//!    logits bit for bit the same whatever the width of the step that ran
//!    it ([`check_width_invariance`], on the tiny models, the default model
//!    and the seeded shapes: what lossless speculation rests on). Any
//!    failure ends the run with an error after every check was printed.
//! 2. Step latency against width k for the default model (real weights) and
//!    seeded shapes (weights drawn on the device from a seed), next to
//!    the floors: weight and KV bytes over the measured copy bandwidth, the
//!    products' FLOPs over the bf16 rate, and the measured cost of a
//!    kernel launched from a CUDA graph times the kernels of a step.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Args;
use graft_engine::backend::cuda::DeviceModel;
use graft_engine::backend::{Backend, Device};
use graft_engine::decode::draft::DEFAULT_MIN_NGRAM;
use graft_engine::decode::{GenerateParams, PromptLookup, TextDraft};
use graft_engine::model::config::{Architecture, ModelConfig, RopeScaling};
use graft_engine::{Engine, EngineOptions};
use graft_kernels::geometry::{ATTENTION_CHUNK, ATTENTION_SPLITS, SKINNY_MAX_ROWS, WIDE_SPLITS};
use graft_kernels::{Gpu, ProductInput, ProductKernels, STEP_WORDS};
use serde::Deserialize;

/// Bound on ||gpu - cpu|| / ||cpu|| over a logit row: bf16 weights and
/// activations (8 significant bits, 0.4% relative rounding at each of the
/// dozens of roundings per layer) against the f32 CPU reference. The tiny
/// random fixture models come closest (their logits are small and flat).
pub const REL_ERROR_BOUND: f64 = 5e-2;

/// Bound on the relative L2 error of a product's outputs (bf16 operands,
/// f32 accumulation) against the same product in f64 on the host.
pub const PRODUCT_ERROR_BOUND: f64 = 1e-4;

/// (weight rows n, k) of the product checks: SmolLM2's QKV, O, gate/up,
/// down and head shapes, and the 7B QKV and down shapes (32- and 64-token
/// wide blocks, K that ends inside a 256-value stage).
const PRODUCT_SHAPES: [(usize, usize); 7] =
    [(960, 576), (576, 576), (3072, 576), (576, 1536), (49152, 576), (4608, 3584), (3584, 18944)];

/// Transformers' own bf16-against-f32 logit errors on the default model's
/// reference prompts (bench/hf_bf16_error.py's output).
#[derive(Deserialize)]
struct PeerErrors {
    prompts: std::collections::HashMap<String, PeerError>,
}

#[derive(Deserialize)]
struct PeerError {
    worst: f64,
}

/// Step widths measured.
const WIDTHS: [usize; 10] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

/// Step lengths the width-invariance check feeds a continuation in, after
/// steps of one token: every width bucket, full and partly masked.
const INVARIANCE_STEPS: [usize; 8] = [5, 12, 20, 40, 64, 100, 200, 400];

/// Tokens the width-invariance check feeds after its prompt (fewer when
/// the model's context is shorter).
const INVARIANCE_TOKENS: usize = 400;

/// Seeded shapes the width-invariance check runs on besides the real
/// models: the default model's (its products preload), a Qwen2.5 one with
/// GQA groups of 7, the 7B one (wide grids, unfused RMSNorm) and a
/// synthetic one whose 32-head GQA group spans two attention unit tiles.
const INVARIANCE_SHAPES: [&str; 4] = ["smollm2-135m", "qwen2.5-coder-0.5b", "qwen2.5-coder-7b", "synthetic-gqa32"];

/// Tokens in the KV cache before the seeded shapes' continuation: more than
/// ATTENTION_SPLITS chunks of ATTENTION_CHUNK positions, so every split
/// walks two chunks and the blocks of wide steps several splits each.
const INVARIANCE_SEEDED_CONTEXT: usize = ATTENTION_SPLITS * ATTENTION_CHUNK + 52;

#[derive(Args)]
pub struct BenchGpuArgs {
    /// A GGUF file or a Hugging Face model directory (default: the default model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    ordinal: usize,
    /// The repository's fixtures directory.
    #[arg(long, default_value = "fixtures")]
    fixtures: PathBuf,
    /// Tokens already in the KV cache when a step is timed.
    #[arg(long, default_value_t = 512)]
    context: usize,
    /// Timed replays per width (the median is reported).
    #[arg(long, default_value_t = 50)]
    reps: usize,
    /// The bf16 matrix rate for the FLOP floor, TFLOP/s (measured with
    /// PyTorch on the H200: see ../shared/GPU.md).
    #[arg(long, default_value_t = 790.0)]
    bf16_tflops: f64,
    /// Shapes to time: default (the model's real weights) and any of
    /// smollm2-135m (the default model's shape), qwen2.5-coder-0.5b,
    /// qwen2.5-coder-1.5b, qwen2.5-coder-7b, synthetic-gqa32 (32 query heads
    /// on one KV head).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "default,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b,qwen2.5-coder-7b"
    )]
    shapes: Vec<String>,
    /// Correctness checks to run: all, tiny (the tiny fixture models only)
    /// or none.
    #[arg(long, value_enum, default_value_t = Checks::All)]
    checks: Checks,
    /// bench/hf_bf16_error.py's JSON: on a default-model prompt whose rows
    /// transformers' bf16 inference gets further from f32 than
    /// REL_ERROR_BOUND, graft's rows are held to transformers' worst row.
    #[arg(long, value_name = "FILE")]
    peer_errors: Option<PathBuf>,
}

/// The `--checks` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Checks {
    All,
    Tiny,
    None,
}

#[derive(Deserialize)]
struct TinyReference {
    sequence_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct DefaultReference {
    prompts: Vec<DefaultPrompt>,
}

#[derive(Deserialize)]
struct DefaultPrompt {
    name: String,
    input_ids: Vec<u32>,
    generated_ids: Vec<u32>,
}

/// ||a - b|| / ||b||.
fn relative_error(a: &[f32], b: &[f32]) -> f64 {
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        diff += (x as f64 - y as f64).powi(2);
        norm += (y as f64).powi(2);
    }
    if a.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    (diff / norm.max(1e-30)).sqrt()
}

fn load(path: &Path, device: Device) -> anyhow::Result<Engine> {
    let options = EngineOptions { device, ..EngineOptions::default() };
    Engine::load(path, &options).with_context(|| format!("loading {} on {device}", path.display()))
}

/// Relative errors of the rows of a forward pass of `ids`: (worst, its
/// row, median).
fn compare_logits(cpu: &mut Engine, gpu: &mut Engine, ids: &[u32]) -> anyhow::Result<(f64, usize, f64)> {
    let (c, g) = (cpu.logits(ids)?, gpu.logits(ids)?);
    let vocab = c.vocab;
    let mut errors: Vec<f64> =
        (0..c.rows()).map(|r| relative_error(g.row(r), &c.values[r * vocab..(r + 1) * vocab])).collect();
    let (worst_row, worst) =
        errors.iter().copied().enumerate().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap_or((0, f64::INFINITY));
    Ok((worst, worst_row, median(&mut errors)))
}

/// Where greedy decoding on the GPU first picks another token than on the
/// CPU: the CPU's logit margin between its token and the GPU's, and the
/// GPU's error a logit there (the prompt's worst relative logit error times
/// the row's RMS logit). A margin within that error is a near-tie that bf16
/// inference may break either way; past it the two decodings continue from
/// different text and are not compared.
struct NearTie {
    margin: f32,
    noise: f32,
}

fn near_tie(
    cpu: &mut Engine,
    prompt: &[u32],
    agreed: &[u32],
    cpu_token: u32,
    gpu_token: u32,
    relative_error: f64,
) -> anyhow::Result<NearTie> {
    let mut tokens = prompt.to_vec();
    tokens.extend_from_slice(agreed);
    let logits = cpu.logits(&tokens)?;
    let vocab = logits.values.len() / tokens.len();
    let row = &logits.values[(tokens.len() - 1) * vocab..];
    let logit = |token: u32| row.get(token as usize).copied().unwrap_or(f32::NEG_INFINITY);
    let rms = (row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / vocab as f64).sqrt();
    Ok(NearTie { margin: logit(cpu_token) - logit(gpu_token), noise: (relative_error * rms) as f32 })
}

/// Logits of every token of `continuation` after `prompt`, fed in steps of
/// `step` tokens on `model` (a sequence of its own, released after).
fn continuation_logits(
    model: &DeviceModel,
    prompt: &[u32],
    continuation: &[u32],
    step: usize,
) -> anyhow::Result<Vec<f32>> {
    let mut kv = model.kv_cache();
    let mut seq = kv.new_sequence();
    model.forward(&mut kv, &mut seq, prompt, &[prompt.len() - 1])?;
    let mut values = Vec::new();
    for chunk in continuation.chunks(step) {
        let rows: Vec<usize> = (0..chunk.len()).collect();
        values.extend(model.forward(&mut kv, &mut seq, chunk, &rows)?.values);
    }
    kv.release(&mut seq);
    Ok(values)
}

/// KV blocks of a width-invariance model: the prompt, the continuation and
/// two 16-token blocks of slack.
fn invariance_blocks(prompt_len: usize) -> usize {
    (prompt_len + INVARIANCE_TOKENS).div_ceil(16) + 2
}

/// Whether every row's logits are bit for bit the same when its token runs
/// in a step of one token and in steps of each of [`INVARIANCE_STEPS`]
/// tokens: a speculative verify step of k drafts must give what k single
/// steps give. The continuation (up to [`INVARIANCE_TOKENS`] of `ids`)
/// follows `prompt` in the KV cache. Prints the result; returns the
/// failures (0 or 1).
fn check_width_invariance(model: &DeviceModel, name: &str, prompt: &[u32], ids: &[u32]) -> anyhow::Result<usize> {
    let room = model.config().max_position.saturating_sub(prompt.len() + 1);
    let continuation: Vec<u32> = ids.iter().cycle().skip(3).take(INVARIANCE_TOKENS.min(room)).copied().collect();
    anyhow::ensure!(!prompt.is_empty() && !continuation.is_empty(), "{name}: no tokens to check widths on");
    let single = continuation_logits(model, prompt, &continuation, 1)?;
    let vocab = model.config().vocab_size;
    let mut differ = Vec::new();
    for step in INVARIANCE_STEPS.iter().copied().filter(|&s| s <= continuation.len()) {
        let wide = continuation_logits(model, prompt, &continuation, step)?;
        let rows = single.chunks(vocab).zip(wide.chunks(vocab));
        let bad = rows.filter(|(a, b)| a.iter().zip(b.iter()).any(|(x, y)| x.to_bits() != y.to_bits())).count();
        if bad > 0 || wide.len() != single.len() {
            differ.push(format!("{bad} rows at steps of {step}"));
        }
    }
    let ok = differ.is_empty();
    let detail = if ok { String::new() } else { format!(" ({})", differ.join(", ")) };
    println!(
        "widths   {name:<24} {} tokens after {} in steps of 1 and {INVARIANCE_STEPS:?}: same bits{detail}  {}",
        continuation.len(),
        prompt.len(),
        pass(ok)
    );
    Ok(usize::from(!ok))
}

/// [`check_width_invariance`] on a fresh device copy of `engine`'s model
/// (so the engine's own KV cache is left as it is).
fn check_engine_widths(engine: &Engine, ordinal: usize, name: &str, ids: &[u32]) -> anyhow::Result<usize> {
    let Backend::Cuda(backend) = engine.backend() else { bail!("the engine is not on the GPU") };
    let gpu = Gpu::new(ordinal, &graft_engine::home::graft_home().join("kernels"))?;
    let prompt = &ids[..ids.len().min(8)];
    let model = DeviceModel::new(gpu, backend.config().clone(), backend.weights(), invariance_blocks(prompt.len()))?;
    check_width_invariance(&model, name, prompt, ids)
}

fn checks(args: &BenchGpuArgs, model_path: &Path) -> anyhow::Result<usize> {
    let device = Device::Cuda(args.ordinal);
    println!("## correctness (bound: relative L2 error of a logit row <= {REL_ERROR_BOUND})");
    let mut failures = check_products(args.ordinal)?;
    for name in ["tiny-llama", "tiny-qwen2", "tiny-qwen3"] {
        let dir = args.fixtures.join("models").join(name);
        let text = std::fs::read_to_string(dir.join("reference.json"))
            .with_context(|| format!("reading {}", dir.join("reference.json").display()))?;
        let reference: TinyReference = serde_json::from_str(&text)?;
        let (mut cpu, mut gpu) = (load(&dir, Device::Cpu)?, load(&dir, device)?);
        let (err, row, typical) = compare_logits(&mut cpu, &mut gpu, &reference.sequence_ids)?;
        let ok = err <= REL_ERROR_BOUND;
        failures += usize::from(!ok);
        let rows = reference.sequence_ids.len();
        println!(
            "logits   {name:<24} rows {rows:>3}  rel err {err:.2e} (row {row}; median {typical:.2e})  {}",
            pass(ok)
        );
        let params = GenerateParams::new(16, Vec::new());
        let prompt = &reference.sequence_ids[..reference.sequence_ids.len().min(8)];
        let greedy = gpu.generate(prompt, &params, |_| {})?.tokens;
        let mut lookup = PromptLookup::new(&[prompt.to_vec()], DEFAULT_MIN_NGRAM);
        let spec = gpu.generate_speculative(prompt, &params, &mut lookup, 16, |_| {})?.tokens;
        let mut text = TextDraft::new(greedy.clone());
        let spec_text = gpu.generate_speculative(prompt, &params, &mut text, 16, |_| {})?.tokens;
        let ok = spec == greedy && spec_text == greedy;
        failures += usize::from(!ok);
        println!("spec     {name:<24} 16 tokens: speculative output = gpu greedy  {}", pass(ok));
        failures += check_engine_widths(&gpu, args.ordinal, name, &reference.sequence_ids)?;
    }
    let cache = graft_engine::home::graft_home().join("kernels");
    for shape in INVARIANCE_SHAPES {
        let config = seeded_shape(shape).with_context(|| format!("unknown shape `{shape}`"))?;
        let ids: Vec<u32> = (0..INVARIANCE_SEEDED_CONTEXT).map(|i| (i * 7919 % config.vocab_size) as u32).collect();
        let model = DeviceModel::random(Gpu::new(args.ordinal, &cache)?, config, 0x5eed, invariance_blocks(ids.len()))?;
        failures += check_width_invariance(&model, &format!("{shape} (seeded)"), &ids, &ids[..64])?;
    }
    if args.checks == Checks::Tiny {
        return Ok(failures);
    }
    let dir = args.fixtures.join("reference/smollm2-135m-instruct-q4_1");
    let reference: DefaultReference = serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json"))?)?;
    let peer = match &args.peer_errors {
        Some(path) => Some(
            serde_json::from_str::<PeerErrors>(
                &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            )
            .with_context(|| format!("parsing {}", path.display()))?,
        ),
        None => None,
    };
    let (mut cpu, mut gpu) = (load(model_path, Device::Cpu)?, load(model_path, device)?);
    println!("gpu      {}", gpu.backend().describe());
    if let Some(prompt) = reference.prompts.first() {
        failures += check_engine_widths(&gpu, args.ordinal, &format!("default/{}", prompt.name), &prompt.input_ids)?;
    }
    for prompt in &reference.prompts {
        let (err, row, typical) = compare_logits(&mut cpu, &mut gpu, &prompt.input_ids)?;
        let peer_worst = peer.as_ref().and_then(|p| p.prompts.get(&prompt.name)).map(|e| e.worst);
        let bound = peer_worst.map_or(REL_ERROR_BOUND, |w| w.max(REL_ERROR_BOUND));
        let ok = err <= bound;
        failures += usize::from(!ok);
        let peer_note = peer_worst.map_or(String::new(), |w| format!("; transformers bf16 {w:.2e}, bound {bound:.2e}"));
        println!(
            "logits   default/{:<16} rows {:>3}  rel err {err:.2e} (row {row}; median {typical:.2e}{peer_note})  {}",
            prompt.name,
            prompt.input_ids.len(),
            pass(ok)
        );
        let params = GenerateParams::new(prompt.generated_ids.len(), Vec::new());
        let on_cpu = cpu.generate(&prompt.input_ids, &params, |_| {})?.tokens;
        let on_gpu = gpu.generate(&prompt.input_ids, &params, |_| {})?.tokens;
        let agree = on_cpu.iter().zip(&on_gpu).take_while(|(a, b)| a == b).count();
        let hf = on_gpu.iter().zip(&prompt.generated_ids).take_while(|(a, b)| a == b).count();
        let tie = match (on_cpu.get(agree), on_gpu.get(agree)) {
            (Some(&cpu_token), Some(&gpu_token)) => {
                Some(near_tie(&mut cpu, &prompt.input_ids, &on_cpu[..agree], cpu_token, gpu_token, err)?)
            }
            _ => None,
        };
        let ok = tie.as_ref().map_or(on_cpu == on_gpu, |t| t.margin <= t.noise);
        failures += usize::from(!ok);
        let tie_note = tie.map_or(String::new(), |t| {
            format!(
                "; then the cpu's margin between the two tokens is {:.4} against a gpu error of {:.3} a logit",
                t.margin, t.noise
            )
        });
        println!(
            "greedy   default/{:<16} {} tokens: gpu = cpu for {agree}, = transformers f32 for {hf}{tie_note}  {}",
            prompt.name,
            on_gpu.len(),
            pass(ok)
        );
        let mut lookup = PromptLookup::new(std::slice::from_ref(&prompt.input_ids), DEFAULT_MIN_NGRAM);
        let spec_lookup = gpu.generate_speculative(&prompt.input_ids, &params, &mut lookup, 32, |_| {})?;
        let mut text = TextDraft::new(on_cpu.clone());
        let spec_text = gpu.generate_speculative(&prompt.input_ids, &params, &mut text, 128, |_| {})?;
        let ok = spec_lookup.tokens == on_gpu && spec_text.tokens == on_gpu;
        failures += usize::from(!ok);
        println!(
            "spec     default/{:<16} lookup {} steps, text {} steps: output = gpu greedy  {}",
            prompt.name,
            spec_lookup.stats.steps,
            spec_text.stats.steps,
            pass(ok)
        );
    }
    Ok(failures)
}

/// Values in [-1, 1) from a seed (xorshift), as bf16.
fn seeded_bf16(len: usize, mut seed: u64) -> Vec<half::bf16> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            half::bf16::from_f32((seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0)
        })
        .collect()
}

/// Runs one product of the first `rows` of `x` (bucket `bucket`) with the
/// given kernels and reads back `rows` output rows, as bits.
#[allow(clippy::too_many_arguments)]
fn run_product(
    gpu: &mut Gpu,
    kernels: ProductKernels,
    x: &graft_kernels::Buf<half::bf16>,
    w: &graft_kernels::Buf<half::bf16>,
    y: &mut graft_kernels::Buf<f32>,
    step: &mut graft_kernels::Buf<u32>,
    (bucket, rows, n, k): (usize, usize, usize, usize),
) -> anyhow::Result<Vec<u32>> {
    gpu.set_product_kernels(kernels);
    gpu.write(step, 0, &[rows as u32, 0])?;
    // NaN everywhere first: an output the kernel fails to write cannot pass.
    gpu.write(y, 0, &vec![f32::NAN; bucket * n])?;
    let input = ProductInput::Rows(x.range(0, bucket * k).context("x holds MAX_ROWS rows")?);
    let out = y.range(0, bucket * n).context("y holds MAX_ROWS rows")?;
    gpu.matmul(input, w.ptr(), out, step.ptr(), k, false)?;
    Ok(gpu.read(y, 0, rows * n)?.into_iter().map(f32::to_bits).collect())
}

/// The product checks: for each of [`PRODUCT_SHAPES`] and every width
/// bucket (one row short of it, so masking is exercised), the wide kernel's
/// output at every K split the GPU runs equals the skinny kernel's bit for
/// bit (up to the skinny kernel's widest bucket), every row equals the same
/// row of the widest step, and
/// the outputs are within
/// [`PRODUCT_ERROR_BOUND`] of f64 on a sample of entries.
fn check_products(ordinal: usize) -> anyhow::Result<usize> {
    let cache = graft_engine::home::graft_home().join("kernels");
    let mut gpu = Gpu::new(ordinal, &cache)?;
    let mut failures = 0;
    // K split among a cluster's blocks where the GPU has clusters.
    let splits: Vec<usize> = WIDE_SPLITS.into_iter().filter(|&split| split == 1 || gpu.has_clusters()).collect();
    for (index, (n, k)) in PRODUCT_SHAPES.into_iter().enumerate() {
        let x_host = seeded_bf16(MAX_ROWS * k, 0x9e37 + index as u64);
        let w_host = seeded_bf16(n * k, 0x7f4a + index as u64);
        let (x, w) = (gpu.upload(&x_host)?, gpu.upload(&w_host)?);
        let mut y = gpu.zeros::<f32>(MAX_ROWS * n)?;
        let mut step = gpu.zeros::<u32>(STEP_WORDS)?;
        let full =
            run_product(&mut gpu, ProductKernels::WideSplit(1), &x, &w, &mut y, &mut step, (MAX_ROWS, MAX_ROWS, n, k))?;
        let (mut same, mut independent) = (true, true);
        for bucket in graft_kernels::geometry::WIDTH_BUCKETS {
            let shape = (bucket, bucket - 1, n, k);
            let skinny = match bucket <= SKINNY_MAX_ROWS {
                true => Some(run_product(&mut gpu, ProductKernels::Skinny, &x, &w, &mut y, &mut step, shape)?),
                false => None,
            };
            for &split in &splits {
                let wide = run_product(&mut gpu, ProductKernels::WideSplit(split), &x, &w, &mut y, &mut step, shape)?;
                same &= skinny.as_ref().is_none_or(|skinny| *skinny == wide);
                independent &= wide[..] == full[..wide.len()];
            }
        }
        // The f64 product on a sample of (row, output) entries of the full step.
        let (mut err, mut norm) = (0.0f64, 0.0f64);
        for sample in 0..4096usize {
            let (row, col) = (sample * 7 % MAX_ROWS, sample * 7919 % n);
            let exact: f64 = (0..k).map(|i| f64::from(x_host[row * k + i]) * f64::from(w_host[col * k + i])).sum();
            let got = f64::from(f32::from_bits(full[row * n + col]));
            err += (got - exact).powi(2);
            norm += exact.powi(2);
        }
        let rel = (err / norm.max(f64::MIN_POSITIVE)).sqrt();
        let ok = same && independent && rel <= PRODUCT_ERROR_BOUND;
        failures += usize::from(!ok);
        println!(
            "product  {n:>5} x {k:<5} widths 8..{SKINNY_MAX_ROWS}: wide (K split {splits:?}) = skinny bits {same}, \
             rows = {MAX_ROWS}-row step {independent}, rel err {rel:.1e}  {}",
            pass(ok)
        );
    }
    gpu.set_product_kernels(ProductKernels::Auto);
    Ok(failures)
}

/// Rows of the largest step.
const MAX_ROWS: usize = graft_kernels::geometry::MAX_STEP_ROWS;

fn pass(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

/// A seeded model shape: the default model's (SmolLM2-135M: for runs
/// without the staged model) or a Qwen2.5-Coder one (the bias on q/k/v is
/// left out: it does not change the time of a step measurably).
fn seeded_shape(name: &str) -> Option<ModelConfig> {
    let (hidden, inter, layers, heads, kv_heads, head_dim, vocab, tied) = match name {
        "smollm2-135m" => (576, 1536, 30, 9, 3, 64, 49152, true),
        "qwen2.5-coder-0.5b" => (896, 4864, 24, 14, 2, 64, 151936, true),
        "qwen2.5-coder-1.5b" => (1536, 8960, 28, 12, 2, 128, 151936, true),
        "qwen2.5-coder-7b" => (3584, 18944, 28, 28, 4, 128, 152064, false),
        // Not a released model: 32 query heads on one KV head, the widest
        // GQA group the attention kernels take.
        "synthetic-gqa32" => (2048, 5632, 4, 32, 1, 64, 32000, true),
        _ => return None,
    };
    Some(ModelConfig {
        arch: Architecture::Llama,
        vocab_size: vocab,
        hidden_size: hidden,
        intermediate_size: inter,
        num_layers: layers,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        rms_norm_eps: 1e-6,
        rope_theta: 1e6,
        rope_scaling: RopeScaling::None,
        max_position: 32768,
        tie_word_embeddings: tied,
    })
}

/// Device-to-device copy bandwidth (bytes read + written per second) over
/// a 4 GiB buffer, the best of 10.
fn copy_bandwidth(gpu: &Gpu) -> anyhow::Result<f64> {
    const HALF: usize = 2 << 30;
    let buf = gpu.zeros::<u8>(2 * HALF)?;
    let mut best = f64::MAX;
    for _ in 0..10 {
        let ms = gpu.time_ms(|g| g.copy_within(&buf, 0, HALF, HALF))?;
        best = best.min(ms as f64);
    }
    Ok(2.0 * HALF as f64 / (best * 1e-3))
}

/// Device time of one kernel launched from a CUDA graph (1000 tiny
/// launches captured, the median of 20 replays, divided by 1000).
fn graph_launch_cost(gpu: &Gpu) -> anyhow::Result<f64> {
    let buf = gpu.zeros::<half::bf16>(32)?;
    let graph = gpu.capture(|g| (0..1000).try_for_each(|_| g.fill_uniform(buf.ptr(), 1, 1.0)))?;
    let mut times = Vec::new();
    for _ in 0..21 {
        times.push(gpu.time_ms(|_| graph.launch())? as f64);
    }
    Ok(median(&mut times[1..]) * 1e-3 / 1000.0)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Times steps of every width at `context` tokens of context.
fn time_widths(model: &DeviceModel, label: &str, args: &BenchGpuArgs, bw: f64, launch: f64) -> anyhow::Result<()> {
    let c = model.config().clone();
    let mut kv = model.kv_cache();
    let mut seq = kv.new_sequence();
    let context: Vec<u32> = (0..args.context).map(|i| (i * 7919 % c.vocab_size) as u32).collect();
    model.forward_greedy(&mut kv, &mut seq, &context, &[context.len() - 1])?;
    kv.reserve(&mut seq, WIDTHS[WIDTHS.len() - 1])?;
    let weight_bytes = model.weight_bytes_per_step() as f64;
    for k in WIDTHS {
        let tokens: Vec<u32> = (0..k).map(|i| (i * 31 % c.vocab_size) as u32).collect();
        let mut times: Vec<f64> =
            model.time_step(&seq, &tokens, args.context, args.reps)?.into_iter().map(f64::from).collect();
        let ms = median(&mut times);
        let kv_bytes = (2 * c.num_layers * (args.context + k) * c.num_kv_heads * c.head_dim * 2) as f64;
        let mem_ms = (weight_bytes + kv_bytes) / bw * 1e3;
        let flop_ms = model.product_flops(k) / (args.bf16_tflops * 1e12) * 1e3;
        let floor = mem_ms.max(flop_ms);
        let launch_ms = model.kernels_per_step(k, true) as f64 * launch * 1e3;
        println!(
            "{label:<20} {k:>4} {ms:>9.4} {mem_ms:>9.4} {flop_ms:>9.4} {launch_ms:>9.4} {:>7.2} {:>9.2} {:>12.0}",
            ms / floor,
            ms / (floor + launch_ms),
            k as f64 / (ms * 1e-3)
        );
    }
    kv.release(&mut seq);
    Ok(())
}

pub fn run(args: BenchGpuArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.reps > 0 && args.context > 0, "--reps and --context must be positive");
    let model_path = crate::resolve_model(args.model.clone())?;
    let failures = if args.checks == Checks::None { 0 } else { checks(&args, &model_path)? };

    let cache = graft_engine::home::graft_home().join("kernels");
    let gpu = Gpu::new(args.ordinal, &cache)?;
    let bw = copy_bandwidth(&gpu)?;
    let launch = graph_launch_cost(&gpu)?;
    println!();
    println!(
        "## step latency ({}, context {} tokens, median of {} graph replays)",
        gpu.name(),
        args.context,
        args.reps
    );
    println!("copy bandwidth  {:.0} GB/s (device to device, read + written)", bw / 1e9);
    println!("graph launch    {:.3} us a kernel (1000 launches in one graph)", launch * 1e6);
    println!("bf16 rate       {:.0} TFLOP/s (given)", args.bf16_tflops);
    println!(
        "{:<20} {:>4} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9} {:>12}",
        "shape", "k", "ms", "mem_ms", "flop_ms", "launch_ms", "x_floor", "x_fl+lau", "tok/s"
    );
    drop(gpu);
    for shape in &args.shapes {
        if shape == "default" {
            let engine = load(&model_path, Device::Cuda(args.ordinal))?;
            let Backend::Cuda(backend) = engine.backend() else { bail!("the engine is not on the GPU") };
            time_widths(backend.model(), "default (real)", &args, bw, launch)?;
            continue;
        }
        let config = seeded_shape(shape).with_context(|| format!("unknown shape `{shape}`"))?;
        let gpu = Gpu::new(args.ordinal, &cache)?;
        let blocks = (args.context + WIDTHS[WIDTHS.len() - 1]).div_ceil(16) + 4;
        let model = DeviceModel::random(gpu, config, 0x5eed, blocks)?;
        time_widths(&model, &format!("{shape} (seeded)"), &args, bw, launch)?;
    }
    println!("(mem_ms: bf16 weights + KV read / copy bandwidth; flop_ms: 2 x weights x k / bf16 rate;");
    println!(" launch_ms: kernels a step x graph launch cost; x_floor: ms / max(mem, flop); x_fl+lau: ms / (floor + launch))");
    if failures > 0 {
        bail!("{failures} correctness check(s) failed");
    }
    Ok(())
}
