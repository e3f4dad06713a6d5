//! The CPU backend keeps the default model's quantized weights compact: the
//! bytes a decode step reads, as `graft bench generate` reports them, match
//! an independent count from the GGUF tensor table, and a compact forward
//! pass agrees with one over f32 copies of the same weights.

use graft_engine::model::dequant::GgmlType;
use graft_engine::model::gguf::GgufFile;
use graft_engine::model::matrix::Storage;
use graft_engine::model::TensorSource;
use graft_engine::{Engine, EngineOptions};
use graft_tests::default_model;

/// Whether the CPU backend has fused kernels on this machine (x86-64 with
/// AVX2, FMA and F16C); without them it holds every matrix as f32.
fn fused_kernels() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[test]
fn bytes_per_token_of_the_default_model_are_its_compact_tensor_bytes() {
    let path = default_model();
    let file = GgufFile::open(&path).expect("default model opens");
    // Bytes a matrix occupies in the backend: its blocks where a fused
    // kernel reads them, else 4 bytes a value.
    let held = |name: &str| {
        let info = file.tensor_info(name).unwrap_or_else(|| panic!("{name} exists"));
        let kept = fused_kernels() && matches!(info.ggml_type, GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q8_0);
        match kept {
            true => info.ggml_type.bytes_for(info.n_elements()).expect("whole blocks"),
            false => info.n_elements() * 4,
        }
    };
    let layer_matrices: usize = file
        .tensor_infos()
        .iter()
        .filter(|t| t.name.starts_with("blk.") && t.dims.len() == 2)
        .map(|t| held(&t.name))
        .sum();
    assert!(!file.contains("output.weight"), "the default model ties its head to the embedding");
    let embed = file.tensor_info("token_embd.weight").expect("embedding");
    let embed_row = embed.ggml_type.bytes_for(embed.dims[0] as usize).expect("whole blocks");
    let expected = layer_matrices + held("token_embd.weight") + embed_row;

    let engine = Engine::load(&path, &EngineOptions::default()).expect("default model loads");
    assert_eq!(engine.weight_bytes_per_token(), expected);
    if fused_kernels() {
        // 30 layers of Q4_1 projections plus the Q8_0 head: about 96 MB,
        // against 538 MB as f32.
        assert!((90_000_000..100_000_000).contains(&expected), "{expected} bytes");
    }
}

#[test]
fn compact_and_f32_weights_give_the_same_logits_up_to_summation_order() {
    let path = default_model();
    let mut compact = Engine::load(&path, &EngineOptions::default()).expect("default model loads");
    let file = GgufFile::open(&path).expect("default model opens");
    let head = file.load_matrix("token_embd.weight", 49152, 576).expect("embedding loads");
    assert!(matches!(head.storage(), Storage::Blocks { ty: GgmlType::Q8_0, .. }), "GGUF blocks are loaded as blocks");
    let mut dense = head.clone();
    dense.convert_to_f32();
    assert_eq!(dense.dequantize_rows(100..101), head.dequantize_rows(100..101));

    // The f32 reference: every matrix of the default model through f32.
    let tokens: Vec<u32> = compact.tokenizer().encode("fn main() { println!(\"hi\"); }", false).expect("encodes");
    let logits = compact.logits(&tokens).expect("forward pass");
    let f32_logits = f32_forward(&path, &tokens);
    assert_eq!(logits.values.len(), f32_logits.len());
    for (i, (&c, &d)) in logits.values.iter().zip(&f32_logits).enumerate() {
        // Summation order alone moves logits of magnitude ~30 by ~1e-4; the
        // golden test against transformers allows 2e-3 + 1e-4 * |logit|.
        assert!((c - d).abs() <= 1e-3 + 1e-5 * d.abs(), "logit {i}: compact {c}, f32 {d}");
    }
}

/// Logits of `tokens` from a forward pass whose weights were all loaded as
/// f32 (the default `TensorSource::load_matrix`), with the same backend.
fn f32_forward(path: &std::path::Path, tokens: &[u32]) -> Vec<f32> {
    use graft_engine::backend::CpuBackend;
    use graft_engine::kv::{KvCache, KvShape};
    use graft_engine::model::config::ModelConfig;
    use graft_engine::model::weights::{ModelWeights, NameScheme};

    /// The GGUF file, but with every matrix converted to f32 at load.
    struct AsF32(GgufFile);
    impl TensorSource for AsF32 {
        fn path(&self) -> &std::path::Path {
            self.0.path()
        }
        fn contains(&self, name: &str) -> bool {
            self.0.contains(name)
        }
        fn shape(&self, name: &str) -> graft_engine::Result<Vec<usize>> {
            self.0.shape(name)
        }
        fn load_f32(&self, name: &str) -> graft_engine::Result<graft_engine::model::HostTensor> {
            self.0.load_f32(name)
        }
    }
    let source = AsF32(GgufFile::open(path).expect("opens"));
    let config = ModelConfig::from_gguf(&source.0).expect("config");
    let weights = ModelWeights::load(&source, &config, NameScheme::Gguf).expect("weights");
    assert!(weights.layers.iter().all(|l| matches!(l.wq.storage(), Storage::F32(_))));
    let backend = CpuBackend::new(config.clone(), weights);
    let shape = KvShape { layers: config.num_layers, kv_heads: config.num_kv_heads, head_dim: config.head_dim };
    let mut kv = KvCache::with_budget(shape, 64 << 20);
    let mut seq = kv.new_sequence();
    let all: Vec<usize> = (0..tokens.len()).collect();
    backend.forward(&mut kv, &mut seq, tokens, &all).expect("forward").values
}
