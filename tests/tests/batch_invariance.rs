//! Row invariance of the CPU backend, which lossless speculative decoding
//! rests on: the logits of a k-token step (every row asked for, as in
//! verification) equal, bit for bit, those of k single-token steps.
//!
//! Regression: wide steps on the compact (quantized) weights once took a
//! different product path than single-token steps (fused kernels up to 24
//! rows, expanded tiles + gemm beyond), so the last bits differed and a
//! near-tie could flip a token in speculative decoding.

use graft_engine::backend::{Backend, CpuBackend};
use graft_engine::kv::{KvCache, KvShape};
use graft_engine::model;
use graft_tests::{default_model, fixtures_dir};

fn check(path: &std::path::Path, step: usize) {
    let loaded = model::load(path).expect("model loads");
    let c = loaded.config.clone();
    let mut kv = KvCache::with_budget(
        KvShape { layers: c.num_layers, kv_heads: c.num_kv_heads, head_dim: c.head_dim },
        256 << 20,
    );
    let tokenizer = loaded.tokenizer;
    let prompt =
        tokenizer.encode("fn insertion_sort(xs: &mut [i32]) {\n    for i in 1..xs.len() {\n", false).expect("encodes");
    let continuation: Vec<u32> = tokenizer
        .encode(
            "        let mut j = i;\n        while j > 0 && xs[j - 1] > xs[j] {\n            xs.swap(j - 1, j);\n",
            false,
        )
        .expect("encodes")
        .into_iter()
        .take(step)
        .collect();
    assert_eq!(continuation.len(), step, "the continuation text is long enough");
    let backend = Backend::Cpu(CpuBackend::new(loaded.config, loaded.weights));

    let mut wide = kv.new_sequence();
    backend.forward(&mut kv, &mut wide, &prompt, &[prompt.len() - 1]).expect("prefill");
    let mut narrow = kv.fork(&wide);
    let rows: Vec<usize> = (0..step).collect();
    let batch = backend.forward(&mut kv, &mut wide, &continuation, &rows).expect("wide step");
    for (i, &token) in continuation.iter().enumerate() {
        let single = backend.forward(&mut kv, &mut narrow, &[token], &[0]).expect("single step");
        assert!(
            batch.row(i) == single.row(0),
            "{}: row {i} of a {step}-token step differs from the single-token step",
            path.display()
        );
    }
}

#[test]
fn default_model_wide_steps_equal_single_steps() {
    check(&default_model(), 40);
}

#[test]
fn f32_model_wide_steps_equal_single_steps() {
    check(&fixtures_dir().join("models").join("tiny-qwen2"), 30);
}
