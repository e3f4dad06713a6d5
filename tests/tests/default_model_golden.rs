//! Golden test of the engine on the default model (SmolLM2-135M-Instruct
//! Q4_1 GGUF) against transformers loading the same file (it dequantizes
//! GGUF itself): `fixtures/reference/smollm2-135m-instruct-q4_1/`, made by
//! `fixtures/reference/make_default_model_reference.py`.
//!
//! Tolerance: logits of the last prompt position within 2e-3 + 1e-4 *
//! |reference| (logits here reach ~30; both sides compute in f32 and differ
//! only in summation order), the reference's top-5 ids of every prompt
//! position likewise, and the 64-token greedy continuation identical.

use graft_engine::decode::GenerateParams;
use graft_engine::{Engine, EngineOptions};
use graft_tests::{default_model, fixtures_dir, read_f32_le};
use serde::Deserialize;

const ABS_TOLERANCE: f32 = 2e-3;
const REL_TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Reference {
    model_sha256: String,
    tokenizer: TokenizerInfo,
    prompts: Vec<Prompt>,
}

#[derive(Deserialize)]
struct TokenizerInfo {
    add_special_tokens: bool,
}

#[derive(Deserialize)]
struct Prompt {
    name: String,
    text: String,
    input_ids: Vec<u32>,
    last_logits_file: String,
    prompt_top5_ids: Vec<Vec<u32>>,
    prompt_top5_logits: Vec<Vec<f32>>,
    generated_ids: Vec<u32>,
    first_eos_index: Option<usize>,
}

fn within_tolerance(engine: f32, reference: f32) -> bool {
    (engine - reference).abs() <= ABS_TOLERANCE + REL_TOLERANCE * reference.abs()
}

#[test]
fn default_model_matches_transformers_on_fixed_prompts() {
    let dir = fixtures_dir().join("reference").join("smollm2-135m-instruct-q4_1");
    let reference: Reference =
        serde_json::from_str(&std::fs::read_to_string(dir.join("reference.json")).expect("reference.json is readable"))
            .expect("reference.json parses");
    assert_eq!(
        reference.model_sha256,
        graft_engine::home::DEFAULT_MODEL_SHA256,
        "the reference is of the default model"
    );
    let mut engine = Engine::load(&default_model(), &EngineOptions::default()).expect("default model loads");

    for prompt in &reference.prompts {
        let name = &prompt.name;
        let ids = engine.tokenizer().encode(&prompt.text, reference.tokenizer.add_special_tokens).expect("encodes");
        assert_eq!(ids, prompt.input_ids, "{name}: prompt token ids");

        let logits = engine.logits(&prompt.input_ids).expect("forward pass");
        let last = logits.row(logits.rows() - 1);
        let expected = read_f32_le(&dir.join(&prompt.last_logits_file));
        assert_eq!(last.len(), expected.len(), "{name}: vocabulary size");
        for (token, (&e, &r)) in last.iter().zip(&expected).enumerate() {
            assert!(within_tolerance(e, r), "{name}: last-position logit of token {token} is {e}, transformers {r}");
        }
        for (position, (top_ids, top_logits)) in
            prompt.prompt_top5_ids.iter().zip(&prompt.prompt_top5_logits).enumerate()
        {
            for (&token, &r) in top_ids.iter().zip(top_logits) {
                let e = logits.row(position)[token as usize];
                assert!(
                    within_tolerance(e, r),
                    "{name}: logit of token {token} at position {position} is {e}, transformers {r}"
                );
            }
        }

        let stop_ids = match prompt.first_eos_index {
            Some(_) => engine.tokenizer().eos_ids().to_vec(),
            None => Vec::new(),
        };
        let expected_tokens = match prompt.first_eos_index {
            Some(index) => &prompt.generated_ids[..=index],
            None => &prompt.generated_ids[..],
        };
        let params = GenerateParams::new(expected_tokens.len(), stop_ids);
        let generation = engine.generate(&prompt.input_ids, &params, |_| {}).expect("generates");
        assert_eq!(generation.tokens, expected_tokens, "{name}: greedy continuation");
    }
}
