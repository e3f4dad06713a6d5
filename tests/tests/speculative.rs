//! The invariant of speculative decoding: its output tokens (and stop
//! reason) are those of plain greedy decoding, always. A seeded property
//! loop over the three tiny random models with random prompts, stop ids,
//! token limits, widths and adversarial drafters (all wrong, all right,
//! right then wrong, drafts crossing a stop id, `max_tokens` or the context
//! window, empty, overlong, out-of-vocabulary, random), plus the real
//! drafters; then the default model on apply-shaped prompts from the shared
//! dev set with each drafter.

use graft_engine::decode::{CompositeDraft, Drafter, GenerateParams, Generation, NoDraft, PromptLookup, TextDraft};
use graft_engine::{Engine, EngineOptions};
use graft_tests::{default_model, dev_jsonl, fixtures_dir, graft_bin};

/// xorshift64*: a deterministic stream for the property loop.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// How an adversarial drafter guesses, knowing the true continuation.
#[derive(Debug, Clone, Copy)]
enum Mode {
    AllRight,
    AllWrong,
    /// Right for `n` tokens, then wrong.
    RightThenWrong(usize),
    Empty,
    /// More tokens than asked for.
    Overlong,
    /// Right, then a token id past the vocabulary.
    OutOfVocab,
    Random,
}

const MODES: usize = 7;

/// Proposes from `truth`, an unbounded greedy continuation (past any stop
/// id or token limit of the request), according to `mode`, cut to a random
/// length so widths vary.
struct Adversary {
    truth: Vec<u32>,
    mode: Mode,
    vocab: u32,
    rng: Rng,
}

impl Drafter for Adversary {
    fn propose(&mut self, output: &[u32], max: usize) -> Vec<u32> {
        let at = output.len();
        let right = |i: usize| self.truth.get(at + i).copied().unwrap_or(0);
        let wrong = |i: usize| (right(i) + 1) % self.vocab;
        let len = if self.rng.below(3) == 0 { self.rng.below(max + 1) } else { max };
        match self.mode {
            Mode::AllRight => (0..len).map(right).collect(),
            Mode::AllWrong => (0..len).map(wrong).collect(),
            Mode::RightThenWrong(n) => (0..len).map(|i| if i < n { right(i) } else { wrong(i) }).collect(),
            Mode::Empty => Vec::new(),
            Mode::Overlong => (0..max + 7).map(right).collect(),
            Mode::OutOfVocab => (0..len).map(|i| if i + 1 < len { right(i) } else { self.vocab + 1000 }).collect(),
            Mode::Random => (0..len).map(|_| self.rng.below(self.vocab as usize) as u32).collect(),
        }
    }
}

/// Checks one speculative generation against the greedy one.
fn assert_same(greedy: &Generation, spec: &Generation, streamed: &[u32], what: &str) {
    assert_eq!(spec.tokens, greedy.tokens, "{what}: tokens differ from greedy");
    assert_eq!(spec.stop, greedy.stop, "{what}: stop reason differs from greedy");
    assert_eq!(streamed, spec.tokens.as_slice(), "{what}: streamed tokens differ from the result");
    let s = &spec.stats;
    assert_eq!(s.output_tokens, spec.tokens.len(), "{what}");
    assert!(s.accepted <= s.drafted, "{what}: accepted {} > drafted {}", s.accepted, s.drafted);
    assert_eq!(s.accepted_histogram.iter().sum::<usize>(), s.steps, "{what}: histogram");
    // Each step emits its accepted drafts and the next target, except a
    // step that stops inside its draft.
    let emitted = s.steps + s.accepted;
    assert!(
        spec.tokens.is_empty() || emitted + 1 == spec.tokens.len() || emitted == spec.tokens.len(),
        "{what}: {} steps + {} accepted for {} tokens",
        s.steps,
        s.accepted,
        spec.tokens.len()
    );
}

fn spec_run(
    engine: &mut Engine,
    prompt: &[u32],
    params: &GenerateParams,
    drafter: &mut dyn Drafter,
    width: usize,
) -> (Generation, Vec<u32>) {
    let mut streamed = Vec::new();
    let generation = engine
        .generate_speculative(prompt, params, drafter, width, |t| streamed.push(t))
        .expect("speculative generation runs");
    (generation, streamed)
}

#[test]
fn speculative_output_equals_greedy_on_tiny_models_with_adversarial_drafts() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for model in ["tiny-llama", "tiny-qwen2", "tiny-qwen3"] {
        let mut engine = Engine::load(&fixtures_dir().join("models").join(model), &EngineOptions::default())
            .unwrap_or_else(|e| panic!("{model}: {e}"));
        let vocab = engine.config().vocab_size;
        let context = engine.config().max_position;
        for case in 0..60 {
            // Some prompts end close to the context window so drafts cross it.
            let prompt_len = if case % 5 == 4 { context - 1 - rng.below(40) } else { 1 + rng.below(48) };
            let prompt: Vec<u32> = (0..prompt_len).map(|_| rng.below(vocab) as u32).collect();
            let max_tokens = rng.below(90);
            // The unbounded continuation, then a stop id taken from it so
            // generation ends on a stop id in about half of the cases.
            let unbounded = GenerateParams::new(max_tokens + 40, Vec::new());
            let truth = engine.generate(&prompt, &unbounded, |_| {}).expect("greedy runs").tokens;
            let stop_ids = match (truth.is_empty(), rng.below(2)) {
                (false, 0) => vec![truth[rng.below(truth.len())]],
                _ => Vec::new(),
            };
            let params = GenerateParams::new(max_tokens, stop_ids);
            let greedy = engine.generate(&prompt, &params, |_| {}).expect("greedy runs");

            let width = 1 + rng.below(300);
            let mode = match rng.below(MODES) {
                0 => Mode::AllRight,
                1 => Mode::AllWrong,
                2 => Mode::RightThenWrong(rng.below(12)),
                3 => Mode::Empty,
                4 => Mode::Overlong,
                5 => Mode::OutOfVocab,
                _ => Mode::Random,
            };
            let mut adversary = Adversary { truth: truth.clone(), mode, vocab: vocab as u32, rng: Rng(rng.next() | 1) };
            let what = format!("{model} case {case} ({mode:?}, width {width}, {params:?}, prompt {prompt_len})");
            let (spec, streamed) = spec_run(&mut engine, &prompt, &params, &mut adversary, width);
            assert_same(&greedy, &spec, &streamed, &what);

            // The real drafters over the same request: lookup in the prompt,
            // text from the truth with a random token dropped.
            let mut reference = truth.clone();
            if !reference.is_empty() {
                reference.remove(rng.below(reference.len()));
            }
            let drafters: [(&str, Box<dyn Drafter>); 4] = [
                ("none", Box::new(NoDraft)),
                ("lookup", Box::new(PromptLookup::new(&[prompt.clone(), truth.clone()], 1))),
                ("text", Box::new(TextDraft::new(reference.clone()))),
                (
                    "composite",
                    Box::new(CompositeDraft::new(
                        TextDraft::new(reference),
                        PromptLookup::new(std::slice::from_ref(&prompt), 2),
                    )),
                ),
            ];
            for (name, mut drafter) in drafters {
                let (spec, streamed) = spec_run(&mut engine, &prompt, &params, drafter.as_mut(), width);
                assert_same(&greedy, &spec, &streamed, &format!("{what} drafter {name}"));
            }
        }
    }
}

#[test]
fn all_right_drafts_take_few_steps() {
    let mut engine =
        Engine::load(&fixtures_dir().join("models").join("tiny-llama"), &EngineOptions::default()).expect("loads");
    let prompt = [5, 17, 200, 33];
    let params = GenerateParams::new(200, Vec::new());
    let greedy = engine.generate(&prompt, &params, |_| {}).expect("greedy runs");
    let mut text = TextDraft::new(greedy.tokens.clone());
    let (spec, streamed) = spec_run(&mut engine, &prompt, &params, &mut text, 512);
    assert_same(&greedy, &spec, &streamed, "text = truth");
    assert_eq!(spec.stats.accepted, spec.stats.drafted, "nothing is rejected");
    // How wide each step is depends on measured step times (the width
    // policy's unit tests pin that down with synthetic times); what holds
    // whatever the timing is that every step, all of whose drafts are
    // right, yields at least two tokens.
    assert!(spec.stats.steps * 2 <= spec.tokens.len() + 1, "{} steps for 200 tokens", spec.stats.steps);
}

/// Apply-shaped completion prompt: instruction, original and update, then
/// the tag after which the model writes the updated file (the small default
/// model copies code there, so drafts are often accepted).
fn apply_prompt(engine: &Engine, case: &serde_json::Value) -> Vec<u32> {
    let field = |key: &str| case[key].as_str().unwrap_or_else(|| panic!("dev case without `{key}`")).to_string();
    let text = format!(
        "Instruction: {}\n<original>\n{}</original>\n<update>\n{}</update>\n<updated>\n",
        field("instruction"),
        field("original"),
        field("update")
    );
    let mut tokens = engine.tokenizer().encode(&text, true).expect("encodes");
    // Keep the prompt short enough for a quick test (and the context).
    tokens.truncate(PROMPT_LIMIT);
    tokens
}

const PROMPT_LIMIT: usize = 768;
const OUTPUT_TOKENS: usize = 96;

#[test]
fn speculative_output_equals_greedy_on_the_default_model_for_apply_prompts() {
    let mut engine = Engine::load(&default_model(), &EngineOptions::default()).expect("default model loads");
    let data = std::fs::read_to_string(dev_jsonl()).expect("dev set reads");
    let mut cases: Vec<serde_json::Value> =
        data.lines().map(|line| serde_json::from_str(line).expect("dev case parses")).collect();
    // The three smallest cases keep the prefill cheap.
    let size =
        |c: &serde_json::Value| c["original"].as_str().map_or(0, str::len) + c["update"].as_str().map_or(0, str::len);
    cases.sort_by_key(size);
    let eos = engine.tokenizer().eos_ids().to_vec();
    let mut accepted = 0;
    for case in cases.iter().take(3) {
        let id = case["id"].as_str().unwrap_or("?").to_string();
        let prompt = apply_prompt(&engine, case);
        let tokens = |text: &str| engine.tokenizer().encode(text, false).expect("encodes");
        let field = |key: &str| case[key].as_str().unwrap_or_default();
        let (original, update, expected) =
            (tokens(field("original")), tokens(field("update")), tokens(field("expected")));
        let params = GenerateParams::new(OUTPUT_TOKENS, eos.clone());
        let greedy = engine.generate(&prompt, &params, |_| {}).expect("greedy runs");
        let lookup = || PromptLookup::new(&[original.clone(), update.clone()], 2);

        // The composite goes through the whole request path; the others
        // share one prefill.
        let mut composite = CompositeDraft::new(TextDraft::new(expected.clone()), lookup());
        let (spec, streamed) = spec_run(&mut engine, &prompt, &params, &mut composite, 512);
        assert_same(&greedy, &spec, &streamed, &format!("{id} drafter composite"));
        accepted += spec.stats.accepted;

        let prefilled = engine.prefill(&prompt).expect("prefills");
        let drafters: [(&str, Box<dyn Drafter>); 3] =
            [("none", Box::new(NoDraft)), ("lookup", Box::new(lookup())), ("text", Box::new(TextDraft::new(expected)))];
        for (name, mut drafter) in drafters {
            let mut streamed = Vec::new();
            let spec = engine
                .generate_from(&prefilled, &params, drafter.as_mut(), 512, |t| streamed.push(t))
                .expect("speculative generation runs");
            assert_same(&greedy, &spec, &streamed, &format!("{id} drafter {name}"));
            accepted += spec.stats.accepted;
        }
        engine.release_prompt(prefilled);
    }
    assert!(accepted > 0, "no draft was ever accepted: the test would not exercise verification");
}

#[test]
fn generate_cli_prints_the_same_text_with_drafts_and_stats_as_json() {
    let prompt = "fn main() {\n    let xs = vec![1, 2, 3];\n    for x in &xs {\n        println!(\"{}\", x);\n    }\n";
    let run = |draft: &str| {
        let output = std::process::Command::new(graft_bin())
            .args(["generate", "--prompt", prompt, "--max-tokens", "24", "--stats-json", "--draft", draft])
            .output()
            .expect("graft runs");
        let stderr = String::from_utf8_lossy(&output.stderr).to_string();
        assert!(output.status.success(), "{stderr}");
        let stats: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("stats line is not JSON ({e}): {stderr}"));
        (String::from_utf8_lossy(&output.stdout).to_string(), stats)
    };
    let (plain, plain_stats) = run("none");
    let (drafted, stats) = run("lookup");
    assert_eq!(drafted, plain, "drafts changed the output");
    for key in ["prompt_tokens", "output_tokens", "steps", "drafted", "accepted", "prefill_ms", "decode_ms"] {
        assert!(stats[key].is_number() && plain_stats[key].is_number(), "{key} missing: {stats}");
    }
    assert_eq!(stats["output_tokens"], plain_stats["output_tokens"]);
    assert_eq!(plain_stats["drafted"], 0);
}
