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

use super::Logits;
use crate::error::{Error, Result};
use crate::kv::{KvCache, SeqKv};
use crate::model::config::ModelConfig;
use crate::model::weights::{LayerWeights, Matrix, ModelWeights};
use qmatmul::matmul_into;

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
        if t_len == 0 {
            return Err(Error::InvalidRequest { reason: "forward pass over zero tokens".into() });
        }
        if start + t_len > c.max_position {
            return Err(Error::InvalidRequest {
                reason: format!("positions up to {} exceed the model's context of {} tokens", start + t_len, c.max_position),
            });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(Error::InvalidRequest { reason: format!("token id {bad} is outside the vocabulary ({})", c.vocab_size) });
        }
        if let Some(&bad) = logits_for.iter().find(|&&i| i >= t_len) {
            return Err(Error::InvalidRequest { reason: format!("logits asked for row {bad} of a {t_len}-token batch") });
        }
        kv.reserve(seq, t_len)?;

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
            let attn = self.attention(kv, seq, layer_index, layer, &normed, start, &cos, &sin);
            add_matmul(&attn, &layer.wo, &mut x);
            rms_norm(&x, &layer.mlp_norm, c.rms_norm_eps, &mut normed);
            let mut gate = matmul(&normed, &layer.w_gate);
            let up = matmul(&normed, &layer.w_up);
            // Split only prefill-sized work: waking threads costs more than
            // a decode step's 1536 activations.
            gate.par_iter_mut().zip(up.par_iter()).with_min_len(1 << 14).for_each(|(g, &u)| *g = silu(*g) * u);
            add_matmul(&gate, &layer.w_down, &mut x);
        }
        kv.commit(seq, t_len);

        let mut picked = Vec::with_capacity(logits_for.len() * h);
        for &i in logits_for {
            picked.extend_from_slice(&x[i * h..(i + 1) * h]);
        }
        let mut final_normed = vec![0.0f32; picked.len()];
        rms_norm(&picked, &self.weights.final_norm, c.rms_norm_eps, &mut final_normed);
        let values = matmul(&final_normed, self.weights.output_head());
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
        cos: &[f32],
        sin: &[f32],
    ) -> Vec<f32> {
        let c = &self.config;
        let d = c.head_dim;
        let (hq, hk) = (c.num_heads, c.num_kv_heads);
        let t_len = normed.len() / c.hidden_size;
        let mut q = matmul(normed, &layer.wq); // (T, Hq*D)
        let mut k = matmul(normed, &layer.wk); // (T, Hk*D)
        let mut v = matmul(normed, &layer.wv); // (T, Hk*D)
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
                let offset = (block as usize * crate::kv::BLOCK_TOKENS + slot) * width;
                keys[offset..offset + width].copy_from_slice(&k[t * width..(t + 1) * width]);
                values[offset..offset + width].copy_from_slice(&v[t * width..(t + 1) * width]);
            }
        }

        let (keys, values) = kv.layer(layer_index);
        let group = hq / hk;
        let scale = 1.0 / (d as f32).sqrt();
        let mut out = vec![0.0f32; t_len * hq * d];
        out.par_chunks_mut(d).enumerate().for_each(|(index, out_head)| {
            let (t, head) = (index / hq, index % hq);
            let kv_head = head / group;
            let query = &q[(t * hq + head) * d..(t * hq + head + 1) * d];
            let visible = start + t + 1; // causal: positions 0..=start+t
            let mut scores = Vec::with_capacity(visible);
            let mut max = f32::NEG_INFINITY;
            for position in 0..visible {
                let (block, slot) = seq.locate(position);
                let offset = (block as usize * crate::kv::BLOCK_TOKENS + slot) * width + kv_head * d;
                let score = dot(query, &keys[offset..offset + d]) * scale;
                max = max.max(score);
                scores.push(score);
            }
            let mut sum = 0.0f32;
            for s in &mut scores {
                *s = (*s - max).exp();
                sum += *s;
            }
            for (position, &weight) in scores.iter().enumerate() {
                let (block, slot) = seq.locate(position);
                let offset = (block as usize * crate::kv::BLOCK_TOKENS + slot) * width + kv_head * d;
                let p = weight / sum;
                out_head.iter_mut().zip(&values[offset..offset + d]).for_each(|(o, &v)| *o += p * v);
            }
        });
        out
    }
}

#[inline]
fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent accumulators let the compiler vectorise the loop.
    let mut acc = [0.0f32; 8];
    let chunks = a.len() / 8;
    for i in 0..chunks {
        for lane in 0..8 {
            acc[lane] += a[i * 8 + lane] * b[i * 8 + lane];
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        sum += a[i] * b[i];
    }
    sum
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
fn matmul(x: &[f32], w: &Matrix) -> Vec<f32> {
    let m = x.len() / w.cols();
    let mut out = vec![0.0f32; m * w.rows()];
    matmul_into(x, w, &mut out, false);
    out
}

/// `out += x @ w^T` (the residual add fused into the product).
fn add_matmul(x: &[f32], w: &Matrix, out: &mut [f32]) {
    matmul_into(x, w, out, true);
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
