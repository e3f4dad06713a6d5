//! The CPU backend: the llama-family forward pass in f32 over the paged KV
//! cache, with rayon for attention and [`qmatmul`] for the products.
//!
//! Weights stay compact where a fused kernel reads them: Q4_0, Q4_1 and
//! Q8_0 blocks on x86-64 with AVX2 (the default model is Q4_1 with a Q8_0
//! embedding and head: 96 MB read per token instead of 538 MB as f32).
//! Other block types (the K-quants), every block type on CPUs without
//! AVX2, and Hugging Face checkpoints (f16/bf16 converted at load) are held
//! as f32, which reads faster than dequantizing blocks on every product.
//!
//! Results stay exact up to summation order: activations and accumulators
//! are f32, and every weight enters a product as exactly the f32 value
//! [`crate::model::dequant`] gives it (bit-exact against gguf-py; a test
//! checks each kernel against it product by product). That keeps the CPU
//! path the reference other backends are checked against, with greedy
//! output matching transformers token for token.

mod qmatmul;

use rayon::prelude::*;

use super::{check_forward, Logits};
use crate::error::Result;
use crate::kv::{BlockId, KvCache, SeqKv, BLOCK_TOKENS};
use crate::model::config::ModelConfig;
use crate::model::weights::{LayerWeights, Matrix, ModelWeights};
use qmatmul::{dot, matmul_into, Batching};

/// Runs a model on the host's cores.
pub struct CpuBackend {
    config: ModelConfig,
    weights: ModelWeights,
    /// (head_dim / 2) inverse frequencies, scaling applied.
    inv_freq: Vec<f32>,
}

impl CpuBackend {
    pub fn new(config: ModelConfig, mut weights: ModelWeights) -> Self {
        for matrix in weights.product_matrices_mut() {
            qmatmul::prepare(matrix);
        }
        let inv_freq = config.rope_inv_freq();
        Self { config, weights, inv_freq }
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn weights(&self) -> &ModelWeights {
        &self.weights
    }

    /// Appends `tokens` to `seq` at positions `seq.len()..` and returns the
    /// logits of the new rows listed in `logits_for` (indices into `tokens`).
    pub fn forward(&self, kv: &mut KvCache, seq: &mut SeqKv, tokens: &[u32], logits_for: &[usize]) -> Result<Logits> {
        let c = &self.config;
        let t_len = tokens.len();
        let start = seq.len();
        check_forward(c, seq, tokens, logits_for)?;
        kv.reserve(seq, t_len)?;
        // A step that wants every row's logits (decode, verification) is
        // computed row-invariantly, so verifying k drafted tokens in one pass
        // gives bit for bit what k single-token steps give; a prefill (only
        // the last row's logits) takes the fastest products.
        let batching = if logits_for.len() == t_len { Batching::RowInvariant } else { Batching::Fastest };

        let h = c.hidden_size;
        let mut x = vec![0.0f32; t_len * h]; // (T, H)
        for (row, &token) in x.chunks_exact_mut(h).zip(tokens) {
            let token = token as usize;
            row.copy_from_slice(&self.weights.embed.dequantize_rows(token..token + 1));
        }
        let (cos, sin) = self.rope_tables(start, t_len);
        let mut normed = vec![0.0f32; t_len * h];
        for (layer_index, layer) in self.weights.layers.iter().enumerate() {
            rms_norm(&x, &layer.attn_norm, c.rms_norm_eps, &mut normed);
            let attn = self.attention(kv, seq, layer_index, layer, &normed, start, (&cos, &sin), batching);
            add_matmul(&attn, &layer.wo, &mut x, batching);
            rms_norm(&x, &layer.mlp_norm, c.rms_norm_eps, &mut normed);
            let mut gate = matmul(&normed, &layer.w_gate, batching);
            let up = matmul(&normed, &layer.w_up, batching);
            // Split only prefill-sized work: waking threads costs more than
            // a decode step's 1536 activations.
            gate.par_iter_mut().zip(up.par_iter()).with_min_len(1 << 14).for_each(|(g, &u)| *g = silu(*g) * u);
            add_matmul(&gate, &layer.w_down, &mut x, batching);
        }
        kv.commit(seq, t_len);

        let mut picked = Vec::with_capacity(logits_for.len() * h);
        for &i in logits_for {
            picked.extend_from_slice(&x[i * h..(i + 1) * h]);
        }
        let mut final_normed = vec![0.0f32; picked.len()];
        rms_norm(&picked, &self.weights.final_norm, c.rms_norm_eps, &mut final_normed);
        let values = matmul(&final_normed, self.weights.output_head(), batching);
        Ok(Logits { vocab: c.vocab_size, values })
    }

    /// cos and sin of every (position, pair), each (T, head_dim / 2), computed
    /// as transformers does: angle = position * inv_freq in f32.
    fn rope_tables(&self, start: usize, t_len: usize) -> (Vec<f32>, Vec<f32>) {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(t_len * half);
        let mut sin = Vec::with_capacity(t_len * half);
        for p in start..start + t_len {
            for &f in &self.inv_freq {
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        (cos, sin)
    }

    /// Self-attention of one layer for the new rows; writes their K and V
    /// into the cache and returns the (T, Hq*D) attention output.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        kv: &mut KvCache,
        seq: &SeqKv,
        layer_index: usize,
        layer: &LayerWeights,
        normed: &[f32],
        start: usize,
        (cos, sin): (&[f32], &[f32]),
        batching: Batching,
    ) -> Vec<f32> {
        let c = &self.config;
        let d = c.head_dim;
        let (hq, hk) = (c.num_heads, c.num_kv_heads);
        let t_len = normed.len() / c.hidden_size;
        let mut q = matmul(normed, &layer.wq, batching); // (T, Hq*D)
        let mut k = matmul(normed, &layer.wk, batching); // (T, Hk*D)
        let mut v = matmul(normed, &layer.wv, batching); // (T, Hk*D)
        for (m, bias) in [(&mut q, &layer.bq), (&mut k, &layer.bk), (&mut v, &layer.bv)] {
            if let Some(bias) = bias {
                for row in m.chunks_exact_mut(bias.len()) {
                    row.iter_mut().zip(bias).for_each(|(a, b)| *a += b);
                }
            }
        }
        for (m, norm) in [(&mut q, &layer.q_norm), (&mut k, &layer.k_norm)] {
            if let Some(norm) = norm {
                let heads = m.clone();
                rms_norm(&heads, norm, c.rms_norm_eps, m);
            }
        }
        let half = d / 2;
        for (m, heads) in [(&mut q, hq), (&mut k, hk)] {
            for (t, row) in m.chunks_exact_mut(heads * d).enumerate() {
                let (cos, sin) = (&cos[t * half..(t + 1) * half], &sin[t * half..(t + 1) * half]);
                for head in row.chunks_exact_mut(d) {
                    let (lo, hi) = head.split_at_mut(half);
                    for i in 0..half {
                        let (a, b) = (lo[i], hi[i]);
                        lo[i] = a * cos[i] - b * sin[i];
                        hi[i] = b * cos[i] + a * sin[i];
                    }
                }
            }
        }

        let width = hk * d;
        {
            let (keys, values) = kv.layer_mut(layer_index);
            for t in 0..t_len {
                let (block, slot) = seq.locate(start + t);
                let offset = (block as usize * BLOCK_TOKENS + slot) * width;
                keys[offset..offset + width].copy_from_slice(&k[t * width..(t + 1) * width]);
                values[offset..offset + width].copy_from_slice(&v[t * width..(t + 1) * width]);
            }
        }

        let (keys, values) = kv.layer(layer_index);
        let blocks = seq.blocks();
        let group = hq / hk;
        let scale = 1.0 / (d as f32).sqrt();
        // (T, Hq*D); the `group` query heads sharing a kv head are adjacent,
        // so one task per (token, kv head) reads each K and V entry once for
        // the whole group.
        let mut out = vec![0.0f32; t_len * hq * d];
        let task =
            GroupAttention { q: &q, keys, values, blocks, start, width, head_dim: d, group, kv_heads: hk, scale };
        let use_avx2 = avx2_available();
        out.par_chunks_mut(group * d).enumerate().for_each(|(index, out_group)| {
            #[cfg(target_arch = "x86_64")]
            if use_avx2 {
                // SAFETY: the CPU supports AVX2 and FMA (checked above).
                unsafe { task.run_avx2(index, out_group) };
                return;
            }
            task.run(index, out_group);
        });
        out
    }
}

#[inline]
fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Attention of the `group` query heads that share one kv head, for one
/// new token: one task of the parallel loop in `attention`.
struct GroupAttention<'a> {
    q: &'a [f32],          // (T, Hq*D)
    keys: &'a [f32],       // one layer's K storage
    values: &'a [f32],     // one layer's V storage
    blocks: &'a [BlockId], // the sequence's block table
    start: usize,
    width: usize, // Hk*D
    head_dim: usize,
    group: usize,
    kv_heads: usize,
    scale: f32,
}

impl GroupAttention<'_> {
    /// Task `index` = t * Hk + kv_head writes `out_group` (group, D).
    #[inline(always)]
    fn run(&self, index: usize, out_group: &mut [f32]) {
        let (d, group) = (self.head_dim, self.group);
        let (t, kv_head) = (index / self.kv_heads, index % self.kv_heads);
        let queries = &self.q[index * group * d..(index + 1) * group * d];
        let visible = self.start + t + 1; // causal: positions 0..=start+t
                                          // (group, visible) scores, then probabilities.
        let mut scores = vec![0.0f32; group * visible];
        // Plain loops, not closures: closures are separate functions and
        // would not inherit `run_avx2`'s target features.
        for (position, offset) in entries(self.blocks, visible, self.width, kv_head * d) {
            let key = &self.keys[offset..offset + d];
            for (g, query) in queries.chunks_exact(d).enumerate() {
                scores[g * visible + position] = dot(query, key) * self.scale;
            }
        }
        for row in scores.chunks_exact_mut(visible) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            for s in row.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            for s in row.iter_mut() {
                *s /= sum;
            }
        }
        for (position, offset) in entries(self.blocks, visible, self.width, kv_head * d) {
            let value = &self.values[offset..offset + d];
            for (g, out_head) in out_group.chunks_exact_mut(d).enumerate() {
                let p = scores[g * visible + position];
                for (o, &v) in out_head.iter_mut().zip(value) {
                    *o += p * v;
                }
            }
        }
    }

    /// [`Self::run`] compiled for AVX2 (the same code, wider vectors).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(&self, index: usize, out_group: &mut [f32]) {
        self.run(index, out_group);
    }
}

fn avx2_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `(position, offset)` for positions `0..visible` of a block table, where
/// `offset` is the entry's start in a layer's K or V storage (rows of
/// `width` values) plus `head_offset`.
#[inline(always)]
fn entries(
    blocks: &[BlockId],
    visible: usize,
    width: usize,
    head_offset: usize,
) -> impl Iterator<Item = (usize, usize)> + '_ {
    (0..visible).map(move |position| {
        let base = blocks[position / BLOCK_TOKENS] as usize * BLOCK_TOKENS * width + head_offset;
        (position, base + (position % BLOCK_TOKENS) * width)
    })
}

/// Row-wise RMSNorm of `x` (rows of `weight.len()`) into `out`.
fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let n = weight.len();
    for (row, out_row) in x.chunks_exact(n).zip(out.chunks_exact_mut(n)) {
        let mean_square = row.iter().map(|v| v * v).sum::<f32>() / n as f32;
        let inv = 1.0 / (mean_square + eps).sqrt();
        for ((o, &v), &w) in out_row.iter_mut().zip(row).zip(weight) {
            *o = w * (v * inv);
        }
    }
}

/// `x (m, k) @ w^T` for `w` of shape (n, k): a new (m, n) matrix.
fn matmul(x: &[f32], w: &Matrix, batching: Batching) -> Vec<f32> {
    let m = x.len() / w.cols();
    let mut out = vec![0.0f32; m * w.rows()];
    matmul_into(x, w, &mut out, false, batching);
    out
}

/// `out += x @ w^T` (the residual add fused into the product).
fn add_matmul(x: &[f32], w: &Matrix, out: &mut [f32], batching: Batching) {
    matmul_into(x, w, out, true, batching);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rms_norm_scales_rows_to_unit_rms() {
        let mut out = vec![0.0; 4];
        rms_norm(&[3.0, 4.0, 0.0, 2.0], &[1.0, 2.0], 0.0, &mut out);
        let inv = 1.0 / (12.5f32).sqrt();
        assert_eq!(out[..2], [3.0 * inv, 2.0 * 4.0 * inv]);
        assert_eq!(out[2..], [0.0, 2.0 * (2.0 / 2.0f32.sqrt())]);
    }
}
