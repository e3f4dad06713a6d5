//! The CUDA backend: the llama-family forward pass on one GPU through
//! graft-kernels, behind the same contract as the CPU backend.
//!
//! - Weights are bf16 on the device (GGUF blocks dequantized to f32 at load,
//!   then rounded to bf16); q/k/v and gate/up are fused into one matrix
//!   each, their rows reordered so the product's epilogue finds each RoPE
//!   pair and each (gate, up) pair in one lane (graft_kernels::geometry):
//!   the QKV product adds the bias, rotates and appends K/V to the cache,
//!   the gate/up product applies SwiGLU, the attention kernel merges its
//!   own splits; in steps of up to FUSED_NORM_MAX_ROWS rows of models up
//!   to FUSED_NORM_MAX_HIDDEN wide, the products normalize their input rows
//!   themselves (no rms_norm launch). A layer is then 5 kernels, else 7
//!   (one more with qwen3's q/k norms).
//!   Activations between products are bf16, the residual stream, q and the
//!   products' accumulators f32.
//! - K and V live in a device pool of the engine's 16-token blocks, per
//!   layer (blocks, 16, kv_heads, head_dim) bf16, addressed by the block ids
//!   of the host's [`KvCache`] (which holds only metadata here), so forks,
//!   rollback and copy-on-write work unchanged: a tail block copied on the
//!   host side is copied on the device too.
//! - A step is at most [`MAX_STEP_ROWS`] tokens run at a width bucket; the
//!   kernels read the step (row count, start position, tokens, block table)
//!   from one device buffer, so each bucket's step is captured once as a
//!   CUDA graph and replayed. Longer inputs (prefill) run as several steps.
//! - Every kernel computes a row independently of the other rows of its
//!   step (tensor-core products and attention splits have a fixed order),
//!   so verifying k drafts gives what k single steps give: speculation
//!   stays lossless on the GPU.
//! - Greedy steps return only the argmax ids, computed on the device; a
//!   step none of whose rows needs logits (a prefill chunk) skips the head.
//! - `GRAFT_CUDA_GRAPHS=0` launches every kernel directly instead of
//!   replaying graphs (for profilers that count kernel launches).

use std::sync::Mutex;

use graft_kernels::geometry::{
    attention_kernel, bucket_for, rope_row_order, swiglu_row_order, ATTENTION_HEAD_DIMS, ATTENTION_SPLITS,
    FUSED_NORM_MAX_HIDDEN, FUSED_NORM_MAX_ROWS, MAX_STEP_ROWS, WIDTH_BUCKETS,
};
use graft_kernels::{AttentionShape, Buf, Gpu, Graph, KernelError, ProductInput, STEP_WORDS};
use half::bf16;

use super::{check_forward, Logits};
use crate::error::{Error, Result};
use crate::kv::{KvCache, KvShape, SeqKv, BLOCK_TOKENS};
use crate::model::config::ModelConfig;
use crate::model::weights::{Matrix, ModelWeights};

impl From<KernelError> for Error {
    fn from(err: KernelError) -> Self {
        Error::Device { device: "cuda".into(), reason: err.to_string() }
    }
}

/// One decoder block on the device. H = hidden, D = head_dim, Hq/Hk =
/// query/kv heads, I = intermediate size.
struct DeviceLayer {
    attn_norm: Buf<f32>,            // (H)
    wqkv: Buf<bf16>,                // ((Hq+2Hk)*D, H), rope_row_order when fused
    bqkv: Option<Buf<f32>>,         // ((Hq+2Hk)*D) qwen2
    qk_norm: Option<[Buf<f32>; 2]>, // (D), (D) qwen3
    wo: Buf<bf16>,                  // (H, Hq*D)
    mlp_norm: Buf<f32>,             // (H)
    w_gate_up: Buf<bf16>,           // (2I, H): swiglu_row_order
    w_down: Buf<bf16>,              // (H, I)
    keys: Buf<bf16>,                // (blocks, 16, Hk, D)
    values: Buf<bf16>,              // (blocks, 16, Hk, D)
}

/// Per-step buffers, sized for the widest step.
struct Scratch {
    /// [rows, start, tokens (MAX_STEP_ROWS), block table (max_table)].
    meta: Buf<u32>,
    x: Buf<f32>,        // (T, H) residual stream
    normed: Buf<bf16>,  // (T, H)
    qkv: Buf<f32>,      // (T, (Hq+2Hk)*D), the unfused QKV path only
    q: Buf<f32>,        // (T, Hq*D)
    partial: Buf<f32>,  // (T, Hq, splits, D+2)
    counters: Buf<u32>, // (T, Hq): attention splits finished per (unit tile, KV head), zero between steps
    attn: Buf<bf16>,    // (T, Hq*D)
    act: Buf<bf16>,     // (T, I)
    logits: Buf<f32>,   // (T, V)
    ids: Buf<u32>,      // (T)
}

/// What a step leaves on the host's side.
struct State {
    scratch: Scratch,
    /// Captured steps per width bucket (index into WIDTH_BUCKETS): without
    /// and with the head.
    graphs: Vec<[Option<Graph>; 2]>,
    host_meta: Vec<u32>,
    /// While step timing is on, the device ms of the steps run since the
    /// last [`DeviceModel::take_step_time`].
    step_ms: Option<f64>,
}

/// A model on the GPU with its KV pool: the part of the backend that needs
/// no host copy of the weights (the benchmarks build one from a seed).
pub struct DeviceModel {
    gpu: Gpu,
    config: ModelConfig,
    embed: Buf<bf16>,        // (V, H)
    head: Option<Buf<bf16>>, // (V, H); None: tied to embed
    final_norm: Buf<f32>,    // (H)
    inv_freq: Buf<f32>,      // (D/2)
    layers: Vec<DeviceLayer>,
    /// Bias, RoPE and the KV append run in the QKV product's epilogue (no
    /// q/k norms, head_dim a multiple of 16); else in their own kernel.
    rope_fused: bool,
    kv_blocks: usize,
    /// Longest block table a step can carry.
    max_table: usize,
    use_graphs: bool,
    state: Mutex<State>,
}

/// The first `len` values of a scratch buffer (sized for MAX_STEP_ROWS rows,
/// so any bucket's rows fit).
fn rows<T>(buf: &Buf<T>, len: usize) -> graft_kernels::Ptr<'_, T> {
    buf.range(0, len).expect("scratch buffers hold MAX_STEP_ROWS rows")
}

/// Rows of the matrices stacked, dequantized and rounded to bf16, in
/// `order` (device row r is stacked row `order[r]`) when given.
fn stacked(gpu: &Gpu, matrices: &[&Matrix], order: Option<&[usize]>) -> Result<Buf<bf16>> {
    let mut values = Vec::new();
    for m in matrices {
        values.extend(m.dequantize_rows(0..m.rows()).iter().map(|&v| bf16::from_f32(v)));
    }
    let Some(order) = order else { return Ok(gpu.upload(&values)?) };
    let width = matrices.first().map_or(0, |m| m.cols());
    if order.len() * width != values.len() {
        return Err(Error::Device {
            device: "cuda".into(),
            reason: format!("a row order of {} rows for {} values of width {width}", order.len(), values.len()),
        });
    }
    let reordered: Vec<bf16> = order.iter().flat_map(|&r| values[r * width..(r + 1) * width].iter().copied()).collect();
    Ok(gpu.upload(&reordered)?)
}

/// The device row orders of the fused QKV weight (when RoPE is fused) and
/// the fused gate/up weight.
fn row_orders(config: &ModelConfig, rope_fused: bool) -> Result<(Option<Vec<usize>>, Vec<usize>)> {
    let c = config;
    let qkv = if rope_fused { rope_row_order(c.num_heads + 2 * c.num_kv_heads, c.head_dim) } else { None };
    let gate_up = swiglu_row_order(c.intermediate_size).ok_or_else(|| Error::Device {
        device: "cuda".into(),
        reason: format!("intermediate_size = {} is not a multiple of 8", c.intermediate_size),
    })?;
    Ok((qkv, gate_up))
}

/// KV blocks that fit in `budget_bytes` of bf16 K and V.
pub fn kv_blocks_for_budget(config: &ModelConfig, budget_bytes: usize) -> usize {
    let per_block = kv_shape(config).bytes_per_token(std::mem::size_of::<bf16>()) * BLOCK_TOKENS;
    (budget_bytes / per_block.max(1)).max(1)
}

fn kv_shape(config: &ModelConfig) -> KvShape {
    KvShape { layers: config.num_layers, kv_heads: config.num_kv_heads, head_dim: config.head_dim }
}

impl DeviceModel {
    fn check_shapes(config: &ModelConfig) -> Result<()> {
        let c = config;
        let bad = |what: String| Err(Error::Device { device: "cuda".into(), reason: what });
        let sizes = [
            ("hidden_size", c.hidden_size),
            ("heads * head_dim", c.num_heads * c.head_dim),
            ("intermediate_size", c.intermediate_size),
            ("head_dim", c.head_dim),
        ];
        for (name, k) in sizes {
            if !k.is_multiple_of(8) {
                return bad(format!("{name} = {k} is not a multiple of 8 (the kernels' 16-byte loads)"));
            }
        }
        if attention_kernel(c.head_dim).is_none() {
            return bad(format!("head_dim = {} (the attention kernel takes {:?})", c.head_dim, ATTENTION_HEAD_DIMS));
        }
        Ok(())
    }

    fn allocate(
        gpu: Gpu,
        config: ModelConfig,
        kv_blocks: usize,
        layers: Vec<DeviceLayer>,
        rope_fused: bool,
        globals: Globals,
    ) -> Result<Self> {
        let c = &config;
        let t = MAX_STEP_ROWS;
        let (h, d, hq, hk, i) = (c.hidden_size, c.head_dim, c.num_heads, c.num_kv_heads, c.intermediate_size);
        let max_table = c.max_position.div_ceil(BLOCK_TOKENS).min(kv_blocks) + 1;
        let meta_len = STEP_WORDS + t + max_table;
        let scratch = Scratch {
            meta: gpu.zeros(meta_len)?,
            x: gpu.zeros(t * h)?,
            normed: gpu.zeros(t * h)?,
            qkv: gpu.zeros(t * (hq + 2 * hk) * d)?,
            q: gpu.zeros(t * hq * d)?,
            partial: gpu.zeros(t * hq * ATTENTION_SPLITS * (d + 2))?,
            counters: gpu.zeros(t * hq)?,
            attn: gpu.zeros(t * hq * d)?,
            act: gpu.zeros(t * i)?,
            logits: gpu.zeros(t * c.vocab_size)?,
            ids: gpu.zeros(t)?,
        };
        let state = State {
            scratch,
            graphs: WIDTH_BUCKETS.iter().map(|_| [None, None]).collect(),
            host_meta: vec![0; meta_len],
            step_ms: None,
        };
        let Globals { embed, head, final_norm } = globals;
        let inv_freq = gpu.upload(&c.rope_inv_freq())?;
        let use_graphs = std::env::var_os("GRAFT_CUDA_GRAPHS").is_none_or(|v| v != "0");
        Ok(Self {
            gpu,
            config,
            embed,
            head,
            final_norm,
            inv_freq,
            layers,
            rope_fused,
            kv_blocks,
            max_table,
            use_graphs,
            state: Mutex::new(state),
        })
    }

    /// Uploads `weights` (bf16) and allocates a KV pool of `kv_blocks`.
    pub fn new(gpu: Gpu, config: ModelConfig, weights: &ModelWeights, kv_blocks: usize) -> Result<Self> {
        Self::check_shapes(&config)?;
        let c = &config;
        let kv_len = kv_blocks * BLOCK_TOKENS * c.num_kv_heads * c.head_dim;
        let has_qk_norm = weights.layers.iter().any(|l| l.q_norm.is_some() || l.k_norm.is_some());
        let rope_fused = !has_qk_norm && c.head_dim.is_multiple_of(16);
        let (qkv_order, gate_up_order) = row_orders(c, rope_fused)?;
        let mut layers = Vec::with_capacity(weights.layers.len());
        for l in &weights.layers {
            let bqkv = match (&l.bq, &l.bk, &l.bv) {
                (Some(q), Some(k), Some(v)) => Some(gpu.upload(&[q.as_slice(), k, v].concat())?),
                _ => None,
            };
            let qk_norm = match (&l.q_norm, &l.k_norm) {
                (Some(q), Some(k)) => Some([gpu.upload(q)?, gpu.upload(k)?]),
                _ => None,
            };
            layers.push(DeviceLayer {
                attn_norm: gpu.upload(&l.attn_norm)?,
                wqkv: stacked(&gpu, &[&l.wq, &l.wk, &l.wv], qkv_order.as_deref())?,
                bqkv,
                qk_norm,
                wo: stacked(&gpu, &[&l.wo], None)?,
                mlp_norm: gpu.upload(&l.mlp_norm)?,
                w_gate_up: stacked(&gpu, &[&l.w_gate, &l.w_up], Some(&gate_up_order))?,
                w_down: stacked(&gpu, &[&l.w_down], None)?,
                keys: gpu.zeros(kv_len)?,
                values: gpu.zeros(kv_len)?,
            });
        }
        let globals = Globals {
            embed: stacked(&gpu, &[&weights.embed], None)?,
            head: weights.lm_head.as_ref().map(|m| stacked(&gpu, &[m], None)).transpose()?,
            final_norm: gpu.upload(&weights.final_norm)?,
        };
        Self::allocate(gpu, config, kv_blocks, layers, rope_fused, globals)
    }

    /// A model of `config`'s shape with weights drawn on the device from
    /// `seed` (uniform, scaled by 1/sqrt(fan-in)), norms of ones and no
    /// biases: for speed measurements of shapes whose checkpoints are not
    /// at hand. Its outputs mean nothing; its steps run the same kernels as a
    /// real model of that shape.
    pub fn random(gpu: Gpu, config: ModelConfig, seed: u64, kv_blocks: usize) -> Result<Self> {
        Self::check_shapes(&config)?;
        let rope_fused = config.head_dim.is_multiple_of(16);
        let c = &config;
        let (h, d, hq, hk, i) = (c.hidden_size, c.head_dim, c.num_heads, c.num_kv_heads, c.intermediate_size);
        let mut next_seed = seed;
        let mut random = |len: usize, fan_in: usize| -> Result<Buf<bf16>> {
            let buf = gpu.zeros(len)?;
            next_seed = next_seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
            gpu.fill_uniform(buf.ptr(), next_seed, 1.0 / (fan_in as f32).sqrt())?;
            Ok(buf)
        };
        let kv_len = kv_blocks * BLOCK_TOKENS * hk * d;
        let mut layers = Vec::with_capacity(c.num_layers);
        for _ in 0..c.num_layers {
            layers.push(DeviceLayer {
                attn_norm: gpu.upload(&vec![1.0f32; h])?,
                wqkv: random((hq + 2 * hk) * d * h, h)?,
                bqkv: None,
                qk_norm: None,
                wo: random(h * hq * d, hq * d)?,
                mlp_norm: gpu.upload(&vec![1.0f32; h])?,
                w_gate_up: random(2 * i * h, h)?,
                w_down: random(h * i, i)?,
                keys: gpu.zeros(kv_len)?,
                values: gpu.zeros(kv_len)?,
            });
        }
        let embed = random(c.vocab_size * h, 1)?;
        let head = if c.tie_word_embeddings { None } else { Some(random(c.vocab_size * h, h)?) };
        let globals = Globals { embed, head, final_norm: gpu.upload(&vec![1.0f32; h])? };
        Self::allocate(gpu, config, kv_blocks, layers, rope_fused, globals)
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn kv_blocks(&self) -> usize {
        self.kv_blocks
    }

    /// Bytes of weights one step reads (every product matrix once and the
    /// head; the embedding rows are negligible), in bf16.
    pub fn weight_bytes_per_step(&self) -> usize {
        let layer = |l: &DeviceLayer| l.wqkv.len() + l.wo.len() + l.w_gate_up.len() + l.w_down.len();
        let head = self.head.as_ref().unwrap_or(&self.embed).len();
        2 * (self.layers.iter().map(layer).sum::<usize>() + head)
    }

    /// FLOPs of the products of one step of `rows` tokens (2 per weight per
    /// token; attention is left out).
    pub fn product_flops(&self, rows: usize) -> f64 {
        (self.weight_bytes_per_step() / 2) as f64 * 2.0 * rows as f64
    }

    /// Kernels one step of `rows` tokens launches, with or without the
    /// head (final norm unless fused, head product, argmax).
    pub fn kernels_per_step(&self, rows: usize, logits: bool) -> usize {
        let norms = usize::from(!self.fuses_norm(rows));
        let per_layer = 5 + 2 * norms + usize::from(!self.rope_fused);
        1 + per_layer * self.layers.len() + if logits { 2 + norms } else { 0 }
    }

    /// Whether a step of `rows` rows (any bucket up to it) normalizes in its
    /// products instead of launching rms_norm.
    fn fuses_norm(&self, rows: usize) -> bool {
        rows <= FUSED_NORM_MAX_ROWS && self.config.hidden_size <= FUSED_NORM_MAX_HIDDEN
    }

    /// A host-side [`KvCache`] (block metadata only) matching the device
    /// pool, whose budgets and stats count bf16 bytes.
    pub fn kv_cache(&self) -> KvCache {
        KvCache::metadata_only(kv_shape(&self.config), self.kv_blocks, std::mem::size_of::<bf16>())
    }

    /// Launches one step at width `bucket` (reads the step from `meta`),
    /// with the head when `logits`.
    fn record_step(&self, s: &Scratch, bucket: usize, logits: bool) -> Result<(), KernelError> {
        let gpu = &self.gpu;
        let c = &self.config;
        let (h, d, hq, hk, i) = (c.hidden_size, c.head_dim, c.num_heads, c.num_kv_heads, c.intermediate_size);
        let shape = AttentionShape { q_heads: hq, kv_heads: hk, head_dim: d };
        let eps = c.rms_norm_eps;
        let b = bucket;
        let step = s.meta.range(0, STEP_WORDS).expect("meta holds the step");
        let tokens = s.meta.range(STEP_WORDS, b).expect("meta holds MAX_STEP_ROWS tokens");
        let table = s.meta.range(STEP_WORDS + MAX_STEP_ROWS, self.max_table).expect("meta holds the table");
        let x = rows(&s.x, b * h);
        let normed = rows(&s.normed, b * h);
        let q = rows(&s.q, b * hq * d);
        let partial = rows(&s.partial, b * hq * ATTENTION_SPLITS * (d + 2));
        let counters = rows(&s.counters, b * hq);
        let attn = rows(&s.attn, b * hq * d);
        let act = rows(&s.act, b * i);
        let fuse_norm = self.fuses_norm(b);
        let normalized = |weight| normalized_input(gpu, fuse_norm, x, weight, normed, eps);
        gpu.embed(self.embed.ptr(), step, tokens, x, h)?;
        for l in &self.layers {
            let cache = (l.keys.ptr(), l.values.ptr());
            let input = normalized(&l.attn_norm)?;
            let bias = l.bqkv.as_ref().map(|b| b.ptr());
            if self.rope_fused {
                gpu.matmul_qkv_rope(input, l.wqkv.ptr(), step, table, h, bias, self.inv_freq.ptr(), q, cache, shape)?;
            } else {
                let qkv = rows(&s.qkv, b * (hq + 2 * hk) * d);
                gpu.matmul(input, l.wqkv.ptr(), qkv, step, h, false)?;
                let qk_norm = l.qk_norm.as_ref().map(|[qn, kn]| (qn.ptr(), kn.ptr()));
                gpu.qkv_rope_append(qkv, bias, qk_norm, self.inv_freq.ptr(), step, table, q, cache, shape, eps)?;
            }
            gpu.attention(q, cache, step, table, partial, counters, attn, shape)?;
            gpu.matmul(ProductInput::Rows(attn), l.wo.ptr(), x, step, hq * d, true)?;
            gpu.matmul_swiglu(normalized(&l.mlp_norm)?, l.w_gate_up.ptr(), act, step, h)?;
            gpu.matmul(ProductInput::Rows(act), l.w_down.ptr(), x, step, i, true)?;
        }
        if !logits {
            return Ok(());
        }
        let head = self.head.as_ref().unwrap_or(&self.embed);
        let input = normalized(&self.final_norm)?;
        gpu.matmul(input, head.ptr(), rows(&s.logits, b * c.vocab_size), step, h, false)?;
        gpu.argmax(rows(&s.logits, b * c.vocab_size), step, rows(&s.ids, b))
    }

    /// Runs `tokens` (at most [`MAX_STEP_ROWS`]) at positions `start..` of
    /// a sequence whose block table is `blocks` (covering those positions);
    /// the logits and argmax ids are computed only when `logits`.
    fn run_step(&self, state: &mut State, tokens: &[u32], start: usize, blocks: &[u32], logits: bool) -> Result<()> {
        let bucket = bucket_for(tokens.len()).ok_or_else(|| Error::InvalidRequest {
            reason: format!("a device step of {} tokens (1..={MAX_STEP_ROWS})", tokens.len()),
        })?;
        if blocks.len() > self.max_table {
            return Err(Error::InvalidRequest {
                reason: format!("a block table of {} blocks (the device holds {})", blocks.len(), self.max_table),
            });
        }
        let meta = &mut state.host_meta;
        meta[0] = tokens.len() as u32;
        meta[1] = start as u32;
        meta[STEP_WORDS..STEP_WORDS + tokens.len()].copy_from_slice(tokens);
        let table_at = STEP_WORDS + MAX_STEP_ROWS;
        meta[table_at..table_at + blocks.len()].copy_from_slice(blocks);
        let used = table_at + blocks.len();
        self.gpu.write(&mut state.scratch.meta, 0, &state.host_meta[..used])?;
        if !self.use_graphs {
            return Ok(self.record_step(&state.scratch, bucket, logits)?);
        }
        let index = WIDTH_BUCKETS.iter().position(|&b| b == bucket).expect("bucket_for returns a bucket");
        let slot = &mut state.graphs[index][usize::from(logits)];
        if slot.is_none() {
            let scratch = &state.scratch;
            *slot = Some(self.gpu.capture(|_| self.record_step(scratch, bucket, logits))?);
        }
        let graph = slot.as_ref().expect("captured above");
        Ok(graph.launch()?)
    }

    /// Copies block `from` to block `to` in every layer's K and V.
    fn copy_block(&self, from: u32, to: u32) -> Result<()> {
        let c = &self.config;
        let width = BLOCK_TOKENS * c.num_kv_heads * c.head_dim;
        let (from, to) = (from as usize * width, to as usize * width);
        for layer in &self.layers {
            for buf in [&layer.keys, &layer.values] {
                self.gpu.copy_within(buf, from, to, width)?;
            }
        }
        Ok(())
    }

    /// The shared body of `forward` and `forward_greedy`: appends `tokens`
    /// in steps of at most MAX_STEP_ROWS, calling `rows` after each step
    /// that holds one of `logits_for` with the step's offset and length to
    /// read results out (the other steps skip the head).
    fn forward_steps(
        &self,
        kv: &mut KvCache,
        seq: &mut SeqKv,
        tokens: &[u32],
        logits_for: &[usize],
        mut rows: impl FnMut(&Self, &mut State, usize, usize) -> Result<()>,
    ) -> Result<()> {
        let tail = seq.blocks().last().copied().filter(|_| !seq.len().is_multiple_of(BLOCK_TOKENS));
        let tail_index = seq.blocks().len().checked_sub(1);
        kv.reserve(seq, tokens.len())?;
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // KvCache::reserve gave the sequence a private copy of a shared tail
        // block on the host side; mirror the copy on the device.
        if let (Some(old), Some(index)) = (tail, tail_index) {
            let new = seq.blocks()[index];
            if new != old {
                self.copy_block(old, new)?;
            }
        }
        let start = seq.len();
        for (chunk_index, chunk) in tokens.chunks(MAX_STEP_ROWS).enumerate() {
            let offset = chunk_index * MAX_STEP_ROWS;
            let end = start + offset + chunk.len();
            let blocks = &seq.blocks()[..end.div_ceil(BLOCK_TOKENS)];
            let logits = logits_for.iter().any(|row| (offset..offset + chunk.len()).contains(row));
            match state.step_ms {
                Some(total) => {
                    let ms = self.gpu.time_ms(|_| self.run_step(&mut state, chunk, start + offset, blocks, logits))?;
                    state.step_ms = Some(total + f64::from(ms));
                }
                None => self.run_step(&mut state, chunk, start + offset, blocks, logits)?,
            }
            if logits {
                rows(self, &mut state, offset, chunk.len())?;
            }
        }
        kv.commit(seq, tokens.len());
        Ok(())
    }

    /// [`super::Backend::forward`] on the device.
    pub fn forward(&self, kv: &mut KvCache, seq: &mut SeqKv, tokens: &[u32], logits_for: &[usize]) -> Result<Logits> {
        check_forward(&self.config, seq, tokens, logits_for)?;
        let vocab = self.config.vocab_size;
        let mut values = vec![0.0f32; logits_for.len() * vocab];
        self.forward_steps(kv, seq, tokens, logits_for, |model, state, offset, len| {
            for (out, &row) in logits_for.iter().enumerate() {
                if (offset..offset + len).contains(&row) {
                    let logits = model.gpu.read(&state.scratch.logits, (row - offset) * vocab, vocab)?;
                    values[out * vocab..(out + 1) * vocab].copy_from_slice(&logits);
                }
            }
            Ok(())
        })?;
        Ok(Logits { vocab, values })
    }

    /// [`super::Backend::forward_greedy`] on the device: only the argmax
    /// ids come back.
    pub fn forward_greedy(
        &self,
        kv: &mut KvCache,
        seq: &mut SeqKv,
        tokens: &[u32],
        logits_for: &[usize],
    ) -> Result<Vec<u32>> {
        check_forward(&self.config, seq, tokens, logits_for)?;
        let mut ids = vec![0u32; logits_for.len()];
        self.forward_steps(kv, seq, tokens, logits_for, |model, state, offset, len| {
            let step_ids = model.gpu.read(&state.scratch.ids, 0, len)?;
            for (out, &row) in logits_for.iter().enumerate() {
                if (offset..offset + len).contains(&row) {
                    ids[out] = step_ids[row - offset];
                }
            }
            Ok(())
        })?;
        Ok(ids)
    }

    /// Turns step timing on or off: while on, each step's device time (its
    /// metadata copy and kernels, between two events) is added up for
    /// [`Self::take_step_time`], and each step waits for itself, which costs
    /// the host a synchronization a step. For benchmarks that split a
    /// step's wall time into device and host time.
    pub fn set_step_timing(&self, on: bool) {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        state.step_ms = on.then_some(0.0);
    }

    /// Device ms of the steps run since step timing was turned on or last
    /// taken (`None` while it is off); starts the count again.
    pub fn take_step_time(&self) -> Option<f64> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let taken = state.step_ms;
        state.step_ms = taken.map(|_| 0.0);
        taken
    }

    /// Device time in ms of one captured step of `tokens.len()` tokens at
    /// positions `start..` of `seq` (reserved beforehand), replayed `reps`
    /// times; the step's result is discarded (K/V of those positions are
    /// rewritten each time). Returns every replay's time.
    pub fn time_step(&self, seq: &SeqKv, tokens: &[u32], start: usize, reps: usize) -> Result<Vec<f32>> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let end = start + tokens.len();
        if end.div_ceil(BLOCK_TOKENS) > seq.blocks().len() {
            return Err(Error::InvalidRequest { reason: format!("positions up to {end} are not reserved") });
        }
        let blocks = &seq.blocks()[..end.div_ceil(BLOCK_TOKENS)];
        self.run_step(&mut state, tokens, start, blocks, true)?;
        self.gpu.synchronize()?;
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps {
            let state = &mut *state;
            times.push(self.gpu.time_ms(|_| self.run_step(state, tokens, start, blocks, true))?);
        }
        Ok(times)
    }
}

/// The input of a product that follows an RMSNorm with `weight`:
/// normalized by the product itself when `fuse` (steps of up to
/// FUSED_NORM_MAX_ROWS rows), else by rms_norm into `normed`.
fn normalized_input<'a>(
    gpu: &Gpu,
    fuse: bool,
    x: graft_kernels::Ptr<'a, f32>,
    weight: &'a Buf<f32>,
    normed: graft_kernels::Ptr<'a, bf16>,
    eps: f32,
) -> Result<ProductInput<'a>, KernelError> {
    if fuse {
        return Ok(ProductInput::Normed { x, weight: weight.ptr(), eps });
    }
    gpu.rms_norm(x, weight.ptr(), normed, eps)?;
    Ok(ProductInput::Rows(normed))
}

/// The model-wide tensors.
struct Globals {
    embed: Buf<bf16>,
    head: Option<Buf<bf16>>,
    final_norm: Buf<f32>,
}

/// Runs a model on one GPU; keeps the host weights for the figures the
/// engine reports.
pub struct CudaBackend {
    model: DeviceModel,
    weights: ModelWeights,
}

impl CudaBackend {
    /// Opens GPU `ordinal` (kernels cached under `$GRAFT_HOME/kernels`) and
    /// uploads the weights with a KV pool of `kv_budget_bytes`.
    pub fn new(ordinal: usize, config: ModelConfig, weights: ModelWeights, kv_budget_bytes: usize) -> Result<Self> {
        let gpu = Gpu::new(ordinal, &crate::home::graft_home().join("kernels"))?;
        let blocks = kv_blocks_for_budget(&config, kv_budget_bytes);
        let model = DeviceModel::new(gpu, config, &weights, blocks)?;
        Ok(Self { model, weights })
    }

    pub fn model(&self) -> &DeviceModel {
        &self.model
    }

    pub fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    pub fn weights(&self) -> &ModelWeights {
        &self.weights
    }
}
