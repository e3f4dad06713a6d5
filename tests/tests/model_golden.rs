//! Golden tests of the engine against Hugging Face transformers: the tiny
//! random llama / qwen2 / qwen3 models in `fixtures/models/` (made by
//! `fixtures/models/make_tiny_models.py`) with their reference logits,
//! greedy continuations and chat renderings.
//!
//! Tolerance: every logit within 1e-4 + 1e-4 * |reference| of transformers'
//! float32 result (both compute in f32; only summation order differs), and
//! greedy tokens identical.

use graft_engine::decode::GenerateParams;
use graft_engine::tokenizer::ChatMessage;
use graft_engine::{Engine, EngineOptions};
use graft_tests::{fixtures_dir, read_f32_le};
use serde::Deserialize;

const ABS_TOLERANCE: f32 = 1e-4;
const REL_TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Reference {
    prompt: String,
    add_special_tokens: bool,
    input_ids: Vec<u32>,
    generated_ids: Vec<u32>,
    sequence_ids: Vec<u32>,
    logits_file: String,
    logits_shape: [usize; 2],
    chat: ChatReference,
}

#[derive(Deserialize)]
struct ChatReference {
    messages: Vec<Message>,
    add_generation_prompt: bool,
    rendered: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: String,
}

/// Largest |engine - reference| relative to the tolerance (<= 1 passes).
fn worst_logit_error(engine: &[f32], reference: &[f32]) -> (f32, usize) {
    assert_eq!(engine.len(), reference.len(), "logit counts differ");
    let mut worst = (0.0f32, 0usize);
    for (i, (&e, &r)) in engine.iter().zip(reference).enumerate() {
        let ratio = (e - r).abs() / (ABS_TOLERANCE + REL_TOLERANCE * r.abs());
        if ratio > worst.0 || ratio.is_nan() {
            worst = (ratio, i);
        }
    }
    worst
}

fn check_model(name: &str) {
    let dir = fixtures_dir().join("models").join(name);
    let reference: Reference =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).expect("reference.json is readable"))
            .expect("reference.json parses");
    let mut engine = Engine::load(&dir, &EngineOptions::default()).unwrap_or_else(|e| panic!("{name} loads: {e}"));

    let ids = engine.tokenizer().encode(&reference.prompt, reference.add_special_tokens).expect("prompt encodes");
    assert_eq!(ids, reference.input_ids, "{name}: prompt token ids");

    let expected = read_f32_le(&dir.join(&reference.logits_file));
    assert_eq!(reference.logits_shape, [reference.sequence_ids.len(), engine.config().vocab_size]);
    let logits = engine.logits(&reference.sequence_ids).expect("forward pass");
    let (ratio, index) = worst_logit_error(&logits.values, &expected);
    let vocab = engine.config().vocab_size;
    assert!(
        ratio <= 1.0,
        "{name}: logit at position {} token {} is {} vs transformers' {} (error {ratio:.2}x the tolerance)",
        index / vocab,
        index % vocab,
        logits.values[index],
        expected[index]
    );

    let params = GenerateParams::new(reference.generated_ids.len(), Vec::new());
    let generation = engine.generate(&reference.input_ids, &params, |_| {}).expect("generates");
    assert_eq!(generation.tokens, reference.generated_ids, "{name}: greedy continuation");

    let messages: Vec<ChatMessage> = reference
        .chat
        .messages
        .iter()
        .map(|m| ChatMessage { role: m.role.clone(), content: m.content.clone() })
        .collect();
    let rendered =
        engine.tokenizer().apply_chat_template(&messages, reference.chat.add_generation_prompt).expect("renders");
    assert_eq!(rendered, reference.chat.rendered, "{name}: chat template");
    assert_eq!(engine.tokenizer().encode(&rendered, false).expect("encodes"), reference.chat.ids, "{name}: chat ids");
}

#[test]
fn tiny_llama_matches_transformers() {
    check_model("tiny-llama");
}

#[test]
fn tiny_qwen2_matches_transformers() {
    check_model("tiny-qwen2");
}

#[test]
fn tiny_qwen3_matches_transformers() {
    check_model("tiny-qwen3");
}
