//! The CUDA backend: the llama-family forward pass on one GPU through
//! graft-kernels, behind the same contract as the CPU backend.
//!
//! - Weights are bf16 on the device (GGUF blocks dequantized to f32 at load,
//!   then rounded to bf16); q/k/v and gate/up are fused into one matrix
//!   each. Activations between products are bf16, the residual stream, q
//!   and the products' accumulators f32.
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
//! - Greedy steps return only the argmax ids, computed on the device.
//! - `GRAFT_CUDA_GRAPHS=0` launches every kernel directly instead of
//!   replaying graphs (for profilers that count kernel launches).

use std::sync::Mutex;

use graft_kernels::geometry::{bucket_for, ATTENTION_SPLITS, MAX_STEP_ROWS, WIDTH_BUCKETS};
use graft_kernels::{AttentionShape, Buf, Gpu, Graph, KernelError, STEP_WORDS};
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
    wqkv: Buf<bf16>,                // ((Hq+2Hk)*D, H)
    bqkv: Option<Buf<f32>>,         // ((Hq+2Hk)*D) qwen2
    qk_norm: Option<[Buf<f32>; 2]>, // (D), (D) qwen3
    wo: Buf<bf16>,                  // (H, Hq*D)
    mlp_norm: Buf<f32>,             // (H)
    w_gate_up: Buf<bf16>,           // (2I, H): gate rows then up rows
    w_down: Buf<bf16>,              // (H, I)
    keys: Buf<bf16>,                // (blocks, 16, Hk, D)
    values: Buf<bf16>,              // (blocks, 16, Hk, D)
}

/// Per-step buffers, sized for the widest step.
struct Scratch {
    /// [rows, start, tokens (MAX_STEP_ROWS), block table (max_table)].
    meta: Buf<u32>,
    x: Buf<f32>,       // (T, H) residual stream
    normed: Buf<bf16>, // (T, H)
    qkv: Buf<f32>,     // (T, (Hq+2Hk)*D)
    q: Buf<f32>,       // (T, Hq*D)
    partial: Buf<f32>, // (T, Hq, splits, D+2)
    attn: Buf<bf16>,   // (T, Hq*D)
    gate_up: Buf<f32>, // (T, 2I)
    act: Buf<bf16>,    // (T, I)
    logits: Buf<f32>,  // (T, V)
    ids: Buf<u32>,     // (T)
}

/// What a step leaves on the host's side.
struct State {
    scratch: Scratch,
    /// Captured step per width bucket (index into WIDTH_BUCKETS).
    graphs: Vec<Option<Graph>>,
    host_meta: Vec<u32>,
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

/// Rows of the matrices stacked, dequantized and rounded to bf16.
fn stacked(gpu: &Gpu, matrices: &[&Matrix]) -> Result<Buf<bf16>> {
    let mut values = Vec::new();
    for m in matrices {
        values.extend(m.dequantize_rows(0..m.rows()).iter().map(|&v| bf16::from_f32(v)));
    }
    Ok(gpu.upload(&values)?)
}

/// KV blocks that fit in `budget_bytes` of bf16 K and V.
pub fn kv_blocks_for_budget(config: &ModelConfig, budget_bytes: usize) -> usize {
    let per_block = 2 * config.num_layers * BLOCK_TOKENS * config.num_kv_heads * config.head_dim * 2;
    (budget_bytes / per_block.max(1)).max(1)
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
        if c.head_dim > graft_kernels::geometry::MAX_HEAD_DIM {
            return bad(format!("head_dim = {} (at most {})", c.head_dim, graft_kernels::geometry::MAX_HEAD_DIM));
        }
        Ok(())
    }

    fn allocate(
        gpu: Gpu,
        config: ModelConfig,
        kv_blocks: usize,
        layers: Vec<DeviceLayer>,
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
            attn: gpu.zeros(t * hq * d)?,
            gate_up: gpu.zeros(t * 2 * i)?,
            act: gpu.zeros(t * i)?,
            logits: gpu.zeros(t * c.vocab_size)?,
            ids: gpu.zeros(t)?,
        };
        let state =
            State { scratch, graphs: WIDTH_BUCKETS.iter().map(|_| None).collect(), host_meta: vec![0; meta_len] };
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
                wqkv: stacked(&gpu, &[&l.wq, &l.wk, &l.wv])?,
                bqkv,
                qk_norm,
                wo: stacked(&gpu, &[&l.wo])?,
                mlp_norm: gpu.upload(&l.mlp_norm)?,
                w_gate_up: stacked(&gpu, &[&l.w_gate, &l.w_up])?,
                w_down: stacked(&gpu, &[&l.w_down])?,
                keys: gpu.zeros(kv_len)?,
                values: gpu.zeros(kv_len)?,
            });
        }
        let globals = Globals {
            embed: stacked(&gpu, &[&weights.embed])?,
            head: weights.lm_head.as_ref().map(|m| stacked(&gpu, &[m])).transpose()?,
            final_norm: gpu.upload(&weights.final_norm)?,
        };
        Self::allocate(gpu, config, kv_blocks, layers, globals)
    }

    /// A model of `config`'s shape with weights drawn on the device from
    /// `seed` (uniform, scaled by 1/sqrt(fan-in)), norms of ones and no
    /// biases: for speed measurements of shapes whose checkpoints are not
    /// at hand. Its outputs mean nothing.
    pub fn random(gpu: Gpu, config: ModelConfig, seed: u64, kv_blocks: usize) -> Result<Self> {
        Self::check_shapes(&config)?;
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
        Self::allocate(gpu, config, kv_blocks, layers, globals)
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

    /// A host-side [`KvCache`] (block metadata only) matching the device pool.
    pub fn kv_cache(&self) -> KvCache {
        let c = &self.config;
        KvCache::metadata_only(
            KvShape { layers: c.num_layers, kv_heads: c.num_kv_heads, head_dim: c.head_dim },
            self.kv_blocks,
        )
    }

    /// Launches one step at width `bucket` (reads the step from `meta`).
    fn record_step(&self, s: &Scratch, bucket: usize) -> Result<(), KernelError> {
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
        let qkv = rows(&s.qkv, b * (hq + 2 * hk) * d);
        let q = rows(&s.q, b * hq * d);
        let partial = rows(&s.partial, b * hq * ATTENTION_SPLITS * (d + 2));
        let attn = rows(&s.attn, b * hq * d);
        let gate_up = rows(&s.gate_up, b * 2 * i);
        let act = rows(&s.act, b * i);
        gpu.embed(self.embed.ptr(), step, tokens, x, h)?;
        for l in &self.layers {
            let cache = (l.keys.ptr(), l.values.ptr());
            gpu.rms_norm(x, l.attn_norm.ptr(), normed, eps)?;
            gpu.matmul(normed, l.wqkv.ptr(), qkv, step, h, false)?;
            let bias = l.bqkv.as_ref().map(|b| b.ptr());
            let qk_norm = l.qk_norm.as_ref().map(|[qn, kn]| (qn.ptr(), kn.ptr()));
            gpu.qkv_rope_append(qkv, bias, qk_norm, self.inv_freq.ptr(), step, table, q, cache, shape, eps)?;
            gpu.attention(q, cache, step, table, partial, attn, shape)?;
            gpu.matmul(attn, l.wo.ptr(), x, step, hq * d, true)?;
            gpu.rms_norm(x, l.mlp_norm.ptr(), normed, eps)?;
            gpu.matmul(normed, l.w_gate_up.ptr(), gate_up, step, h, false)?;
            gpu.swiglu(gate_up, act, i)?;
            gpu.matmul(act, l.w_down.ptr(), x, step, i, true)?;
        }
        gpu.rms_norm(x, self.final_norm.ptr(), normed, eps)?;
        let head = self.head.as_ref().unwrap_or(&self.embed);
        gpu.matmul(normed, head.ptr(), rows(&s.logits, b * c.vocab_size), step, h, false)?;
        gpu.argmax(rows(&s.logits, b * c.vocab_size), step, rows(&s.ids, b))
    }

    /// Runs `tokens` (at most [`MAX_STEP_ROWS`]) at positions `start..` of
    /// a sequence whose block table is `blocks` (covering those positions).
    fn run_step(&self, state: &mut State, tokens: &[u32], start: usize, blocks: &[u32]) -> Result<()> {
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
            return Ok(self.record_step(&state.scratch, bucket)?);
        }
        let index = WIDTH_BUCKETS.iter().position(|&b| b == bucket).expect("bucket_for returns a bucket");
        if state.graphs[index].is_none() {
            let scratch = &state.scratch;
            state.graphs[index] = Some(self.gpu.capture(|_| self.record_step(scratch, bucket))?);
        }
        let graph = state.graphs[index].as_ref().expect("captured above");
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
    /// with the step's offset and length to read results out.
    fn forward_steps(
        &self,
        kv: &mut KvCache,
        seq: &mut SeqKv,
        tokens: &[u32],
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
            self.run_step(&mut state, chunk, start + offset, blocks)?;
            rows(self, &mut state, offset, chunk.len())?;
        }
        kv.commit(seq, tokens.len());
        Ok(())
    }

    /// [`super::Backend::forward`] on the device.
    pub fn forward(&self, kv: &mut KvCache, seq: &mut SeqKv, tokens: &[u32], logits_for: &[usize]) -> Result<Logits> {
        check_forward(&self.config, seq, tokens, logits_for)?;
        let vocab = self.config.vocab_size;
        let mut values = vec![0.0f32; logits_for.len() * vocab];
        self.forward_steps(kv, seq, tokens, |model, state, offset, len| {
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
        self.forward_steps(kv, seq, tokens, |model, state, offset, len| {
            if logits_for.iter().any(|row| (offset..offset + len).contains(row)) {
                let step_ids = model.gpu.read(&state.scratch.ids, 0, len)?;
                for (out, &row) in logits_for.iter().enumerate() {
                    if (offset..offset + len).contains(&row) {
                        ids[out] = step_ids[row - offset];
                    }
                }
            }
            Ok(())
        })?;
        Ok(ids)
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
        self.run_step(&mut state, tokens, start, blocks)?;
        self.gpu.synchronize()?;
        let mut times = Vec::with_capacity(reps);
        for _ in 0..reps {
            let state = &mut *state;
            times.push(self.gpu.time_ms(|_| self.run_step(state, tokens, start, blocks))?);
        }
        Ok(times)
    }
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
