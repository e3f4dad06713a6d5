//! The weights of a llama-family decoder, in structs mirroring the checkpoint.
//!
//! [`ModelWeights::load`] maps each logical tensor onto the naming scheme of
//! its format (Hugging Face `model.layers.N.self_attn.q_proj.weight` or GGUF
//! `blk.N.attn_q.weight`), checks its shape against the [`ModelConfig`], and
//! undoes the q/k row permutation that llama.cpp's converter applies to llama
//! checkpoints, so every backend sees one layout: PyTorch's, with RoPE
//! rotating the pairs `(i, i + head_dim / 2)`. Matrices come from
//! [`TensorSource::load_matrix`], so GGUF's quantized blocks stay compact
//! (the permutation moves whole rows of blocks).

use super::config::{Architecture, ModelConfig};
pub use super::matrix::Matrix;
use super::TensorSource;
use crate::error::{Error, Result};

/// One decoder block. H = hidden, D = head_dim, Hq/Hk = query/kv heads,
/// I = intermediate size.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    pub attn_norm: Vec<f32>,      // (H)
    pub wq: Matrix,               // (Hq*D, H)
    pub wk: Matrix,               // (Hk*D, H)
    pub wv: Matrix,               // (Hk*D, H)
    pub wo: Matrix,               // (H, Hq*D)
    pub bq: Option<Vec<f32>>,     // (Hq*D) qwen2
    pub bk: Option<Vec<f32>>,     // (Hk*D) qwen2
    pub bv: Option<Vec<f32>>,     // (Hk*D) qwen2
    pub q_norm: Option<Vec<f32>>, // (D) qwen3
    pub k_norm: Option<Vec<f32>>, // (D) qwen3
    pub mlp_norm: Vec<f32>,       // (H)
    pub w_gate: Matrix,           // (I, H)
    pub w_up: Matrix,             // (I, H)
    pub w_down: Matrix,           // (H, I)
}

/// All weights of a model.
#[derive(Debug, Clone)]
pub struct ModelWeights {
    pub embed: Matrix, // (V, H)
    pub layers: Vec<LayerWeights>,
    pub final_norm: Vec<f32>, // (H)
    /// (V, H); `None` when the head is tied to `embed`.
    pub lm_head: Option<Matrix>,
}

impl ModelWeights {
    /// The output projection: the separate head, or the tied embedding.
    pub fn output_head(&self) -> &Matrix {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Every matrix a forward pass multiplies by: the layers' projections
    /// and the output head (the embedding, when tied).
    pub fn product_matrices_mut(&mut self) -> impl Iterator<Item = &mut Matrix> {
        let head = match &mut self.lm_head {
            Some(head) => head,
            None => &mut self.embed,
        };
        self.layers
            .iter_mut()
            .flat_map(|l| [&mut l.wq, &mut l.wk, &mut l.wv, &mut l.wo, &mut l.w_gate, &mut l.w_up, &mut l.w_down])
            .chain(std::iter::once(head))
    }

    /// Bytes of weights a single-token forward pass reads, as stored (compact
    /// blocks count their block bytes): every layer matrix and the head once,
    /// and one row of the embedding. Norm vectors are left out.
    pub fn bytes_per_token(&self) -> usize {
        let layer: usize = self
            .layers
            .iter()
            .map(|l| {
                [&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down]
                    .iter()
                    .map(|m| m.stored_bytes())
                    .sum::<usize>()
            })
            .sum();
        layer + self.output_head().stored_bytes() + self.embed.row_bytes()
    }

    /// Loads and checks every tensor. `scheme` is the checkpoint's naming.
    pub fn load(source: &dyn TensorSource, config: &ModelConfig, scheme: NameScheme) -> Result<Self> {
        let c = config;
        let (h, d, i) = (c.hidden_size, c.head_dim, c.intermediate_size);
        let (q_dim, kv_dim) = (c.num_heads * d, c.num_kv_heads * d);
        let loader = Loader { source, scheme };
        let mut layers = Vec::with_capacity(c.num_layers);
        for n in 0..c.num_layers {
            let t = |name: Tensor| name.in_layer(n);
            let mut wq = loader.matrix(t(Tensor::Wq), q_dim, h)?;
            let mut wk = loader.matrix(t(Tensor::Wk), kv_dim, h)?;
            if scheme == NameScheme::Gguf && c.arch == Architecture::Llama {
                unpermute_rows(&mut wq, c.num_heads);
                unpermute_rows(&mut wk, c.num_kv_heads);
            }
            let qkv_bias = c.arch.has_qkv_bias();
            let qk_norm = c.arch.has_qk_norm();
            layers.push(LayerWeights {
                attn_norm: loader.vector(t(Tensor::AttnNorm), h)?,
                wq,
                wk,
                wv: loader.matrix(t(Tensor::Wv), kv_dim, h)?,
                wo: loader.matrix(t(Tensor::Wo), h, q_dim)?,
                bq: qkv_bias.then(|| loader.vector(t(Tensor::Bq), q_dim)).transpose()?,
                bk: qkv_bias.then(|| loader.vector(t(Tensor::Bk), kv_dim)).transpose()?,
                bv: qkv_bias.then(|| loader.vector(t(Tensor::Bv), kv_dim)).transpose()?,
                q_norm: qk_norm.then(|| loader.vector(t(Tensor::QNorm), d)).transpose()?,
                k_norm: qk_norm.then(|| loader.vector(t(Tensor::KNorm), d)).transpose()?,
                mlp_norm: loader.vector(t(Tensor::MlpNorm), h)?,
                w_gate: loader.matrix(t(Tensor::WGate), i, h)?,
                w_up: loader.matrix(t(Tensor::WUp), i, h)?,
                w_down: loader.matrix(t(Tensor::WDown), h, i)?,
            });
        }
        let embed = loader.matrix(Named::Global(Tensor::Embed), c.vocab_size, h)?;
        let head_name = loader.name(Named::Global(Tensor::LmHead));
        // A checkpoint may carry an explicit head even when the config says
        // tied; the explicit tensor is what the model was trained with.
        let lm_head = if source.contains(&head_name) {
            Some(loader.matrix(Named::Global(Tensor::LmHead), c.vocab_size, h)?)
        } else if c.tie_word_embeddings {
            None
        } else {
            return Err(Error::MissingTensor { path: source.path().to_owned(), tensor: head_name });
        };
        Ok(Self { embed, layers, final_norm: loader.vector(Named::Global(Tensor::FinalNorm), h)?, lm_head })
    }
}

/// The two tensor naming schemes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameScheme {
    HuggingFace,
    Gguf,
}

/// Logical tensors of the llama block.
#[derive(Debug, Clone, Copy)]
enum Tensor {
    Embed,
    FinalNorm,
    LmHead,
    AttnNorm,
    Wq,
    Wk,
    Wv,
    Wo,
    Bq,
    Bk,
    Bv,
    QNorm,
    KNorm,
    MlpNorm,
    WGate,
    WUp,
    WDown,
}

enum Named {
    Global(Tensor),
    Layer(usize, Tensor),
}

impl Tensor {
    fn in_layer(self, layer: usize) -> Named {
        Named::Layer(layer, self)
    }

    fn hf_name(self) -> &'static str {
        match self {
            Tensor::Embed => "model.embed_tokens.weight",
            Tensor::FinalNorm => "model.norm.weight",
            Tensor::LmHead => "lm_head.weight",
            Tensor::AttnNorm => "input_layernorm.weight",
            Tensor::Wq => "self_attn.q_proj.weight",
            Tensor::Wk => "self_attn.k_proj.weight",
            Tensor::Wv => "self_attn.v_proj.weight",
            Tensor::Wo => "self_attn.o_proj.weight",
            Tensor::Bq => "self_attn.q_proj.bias",
            Tensor::Bk => "self_attn.k_proj.bias",
            Tensor::Bv => "self_attn.v_proj.bias",
            Tensor::QNorm => "self_attn.q_norm.weight",
            Tensor::KNorm => "self_attn.k_norm.weight",
            Tensor::MlpNorm => "post_attention_layernorm.weight",
            Tensor::WGate => "mlp.gate_proj.weight",
            Tensor::WUp => "mlp.up_proj.weight",
            Tensor::WDown => "mlp.down_proj.weight",
        }
    }

    fn gguf_name(self) -> &'static str {
        match self {
            Tensor::Embed => "token_embd.weight",
            Tensor::FinalNorm => "output_norm.weight",
            Tensor::LmHead => "output.weight",
            Tensor::AttnNorm => "attn_norm.weight",
            Tensor::Wq => "attn_q.weight",
            Tensor::Wk => "attn_k.weight",
            Tensor::Wv => "attn_v.weight",
            Tensor::Wo => "attn_output.weight",
            Tensor::Bq => "attn_q.bias",
            Tensor::Bk => "attn_k.bias",
            Tensor::Bv => "attn_v.bias",
            Tensor::QNorm => "attn_q_norm.weight",
            Tensor::KNorm => "attn_k_norm.weight",
            Tensor::MlpNorm => "ffn_norm.weight",
            Tensor::WGate => "ffn_gate.weight",
            Tensor::WUp => "ffn_up.weight",
            Tensor::WDown => "ffn_down.weight",
        }
    }
}

struct Loader<'a> {
    source: &'a dyn TensorSource,
    scheme: NameScheme,
}

impl Loader<'_> {
    fn name(&self, named: Named) -> String {
        match (self.scheme, named) {
            (NameScheme::HuggingFace, Named::Global(t)) => t.hf_name().to_owned(),
            (NameScheme::HuggingFace, Named::Layer(n, t)) => format!("model.layers.{n}.{}", t.hf_name()),
            (NameScheme::Gguf, Named::Global(t)) => t.gguf_name().to_owned(),
            (NameScheme::Gguf, Named::Layer(n, t)) => format!("blk.{n}.{}", t.gguf_name()),
        }
    }

    /// The tensor's name, once it is known to exist with shape `expected`.
    fn checked_name(&self, named: Named, expected: &[usize]) -> Result<String> {
        let name = self.name(named);
        let path = self.source.path();
        if !self.source.contains(&name) {
            return Err(Error::MissingTensor { path: path.to_owned(), tensor: name });
        }
        let shape = self.source.shape(&name)?;
        if shape != expected {
            return Err(Error::TensorShape {
                path: path.to_owned(),
                tensor: name,
                expected: expected.to_vec(),
                found: shape,
            });
        }
        Ok(name)
    }

    fn matrix(&self, named: Named, rows: usize, cols: usize) -> Result<Matrix> {
        let name = self.checked_name(named, &[rows, cols])?;
        self.source.load_matrix(&name, rows, cols)
    }

    fn vector(&self, named: Named, len: usize) -> Result<Vec<f32>> {
        let name = self.checked_name(named, &[len])?;
        let tensor = self.source.load_f32(&name)?;
        if tensor.data.len() != len {
            return Err(Error::TensorShape {
                path: self.source.path().to_owned(),
                tensor: name,
                expected: vec![len],
                found: tensor.shape,
            });
        }
        Ok(tensor.data)
    }
}

/// Undoes llama.cpp's q/k permutation. Its converter reorders each head's
/// rows from `[pairs.., pairs..]` (halves) to interleaved pairs so ggml's
/// "normal" RoPE rotates adjacent elements; row `h*D + 2j + s` of the GGUF
/// tensor is row `h*D + s*D/2 + j` of the original.
fn unpermute_rows(matrix: &mut Matrix, heads: usize) {
    let head_dim = matrix.rows() / heads;
    let half = head_dim / 2;
    matrix.reorder_rows(|to| {
        let (h, r) = (to / head_dim, to % head_dim);
        let (s, j) = (r / half, r % half);
        h * head_dim + 2 * j + s
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dequant::GgmlType;
    use crate::model::matrix::Storage;

    /// The permutation llama.cpp's converter applies (HF -> GGUF), written
    /// from its description: reshape (heads, 2, D/2, cols), swap axes 1 and 2.
    /// Row `h*D + 2j + s` of the result is row `h*D + s*D/2 + j` of the input.
    fn permute_rows(matrix: &Matrix, heads: usize) -> Matrix {
        let head_dim = matrix.rows() / heads;
        let half = head_dim / 2;
        let mut out = matrix.clone();
        out.reorder_rows(|to| {
            let (h, r) = (to / head_dim, to % head_dim);
            let (j, s) = (r / 2, r % 2);
            h * head_dim + s * half + j
        });
        out
    }

    #[test]
    fn unpermute_inverts_the_converter_permutation() {
        let original = Matrix::from_f32(16, 3, (0..48).map(|v| v as f32).collect()).expect("valid");
        let mut round_trip = permute_rows(&original, 2);
        assert_ne!(round_trip, original);
        // Spot-check the direction: GGUF row 1 (head 0, pair 0, second half)
        // is original row D/2 = 4.
        assert_eq!(round_trip.dequantize_rows(1..2)[..], original.dequantize_rows(4..5)[..]);
        unpermute_rows(&mut round_trip, 2);
        assert_eq!(round_trip, original);
    }

    /// A (rows, 64) Q4_1 matrix whose blocks differ row by row.
    fn q4_1_matrix(rows: usize) -> Matrix {
        let mut bytes = Vec::new();
        for block in 0..rows * 2 {
            bytes.extend_from_slice(&half::f16::from_f32(0.25 + block as f32).to_le_bytes());
            bytes.extend_from_slice(&half::f16::from_f32(-(block as f32) / 3.0).to_le_bytes());
            bytes.extend((0..16).map(|i| ((block * 7 + i * 13) % 256) as u8));
        }
        Matrix::from_blocks(rows, 64, GgmlType::Q4_1, bytes).expect("valid blocks")
    }

    #[test]
    fn unpermute_on_quantized_rows_equals_unpermute_on_dequantized_rows() {
        let (rows, heads) = (16, 2);
        let mut quantized = q4_1_matrix(rows);
        let mut dense = Matrix::from_f32(rows, 64, quantized.dequantize_rows(0..rows).into_owned()).expect("valid");
        unpermute_rows(&mut quantized, heads);
        unpermute_rows(&mut dense, heads);
        assert!(matches!(quantized.storage(), Storage::Blocks { ty: GgmlType::Q4_1, .. }));
        assert_ne!(quantized.dequantize_rows(0..rows), q4_1_matrix(rows).dequantize_rows(0..rows));
        assert_eq!(quantized.dequantize_rows(0..rows), dense.dequantize_rows(0..rows));
    }

    #[test]
    fn bytes_per_token_counts_stored_bytes() {
        // H = 64, one layer, tied head: Q4_1 projections (20 bytes per 32
        // values), a Q8_0 embedding (34 bytes per 32 values), f32 norms.
        let (h, vocab) = (64, 5);
        let q = || q4_1_matrix(h);
        let layer = LayerWeights {
            attn_norm: vec![1.0; h],
            wq: q(),
            wk: q(),
            wv: q(),
            wo: q(),
            bq: None,
            bk: None,
            bv: None,
            q_norm: None,
            k_norm: None,
            mlp_norm: vec![1.0; h],
            w_gate: q(),
            w_up: q(),
            w_down: q(),
        };
        let embed_bytes = vec![0u8; vocab * 2 * 34];
        let embed = Matrix::from_blocks(vocab, h, GgmlType::Q8_0, embed_bytes).expect("valid");
        let weights = ModelWeights { embed, layers: vec![layer], final_norm: vec![1.0; h], lm_head: None };
        let projection = h * 2 * 20;
        assert_eq!(weights.bytes_per_token(), 7 * projection + vocab * 2 * 34 + 2 * 34);
    }
}
