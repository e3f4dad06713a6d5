//! The prefix cache end to end through [`Engine`]: KV reused from the cache
//! gives bit for bit the logits of a cold prefill (prefixes of many lengths,
//! across block boundaries, after edits, on the tiny models of three
//! architectures and once on the default model); forced hash collisions
//! change no output; eviction is least recently used; namespaces are
//! isolated; a warm-up racing an edit never serves stale KV; and a
//! thousand files stay inside the budget.

use std::sync::atomic::{AtomicBool, Ordering};

use graft_engine::decode::{GenerateParams, NoDraft};
use graft_engine::kv::BLOCK_TOKENS;
use graft_engine::{Engine, EngineOptions};
use graft_tests::{default_model, fixtures_dir};

const TINY_MODELS: [&str; 3] = ["tiny-llama", "tiny-qwen2", "tiny-qwen3"];

/// Deterministic pseudo-random numbers (splitmix64).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % n as u64) as usize
    }

    fn tokens(&mut self, len: usize, vocab: usize) -> Vec<u32> {
        (0..len).map(|_| self.below(vocab) as u32).collect()
    }
}

fn tiny(model: &str, options: &EngineOptions) -> Engine {
    Engine::load(&fixtures_dir().join("models").join(model), options).unwrap_or_else(|e| panic!("{model}: {e}"))
}

/// Continuation tokens whose logits every comparison reads.
const PROBE: [u32; 3] = [5, 17, 101];

/// Prefills `prompt` in `namespace`; returns the prompt tokens that came
/// from the cache and the logits of [`PROBE`] fed after the prompt.
fn prefill_logits(engine: &mut Engine, namespace: &str, prompt: &[u32]) -> (usize, Vec<f32>) {
    let prefilled = engine.prefill_in(namespace, prompt).expect("prefill runs");
    let cached = prefilled.cached_prompt_tokens();
    let logits = engine.logits_after(&prefilled, &PROBE).expect("probe runs");
    engine.release_prompt(prefilled);
    (cached, logits.values)
}

/// The same logits from a namespace nothing was cached in before.
fn cold_logits(engine: &mut Engine, prompt: &[u32], tag: &str) -> Vec<f32> {
    let (cached, logits) = prefill_logits(engine, &format!("cold {tag}"), prompt);
    assert_eq!(cached, 0, "a new namespace has nothing cached");
    logits
}

fn assert_bits_equal(cached: &[f32], cold: &[f32], what: &str) {
    assert_eq!(cached.len(), cold.len(), "{what}: logits of different shapes");
    let differing = cached.iter().zip(cold).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert_eq!(differing, 0, "{what}: {differing} of {} logits differ from the cold prefill", cold.len());
}

/// Whole blocks a prefill can take from the cache when the first `valid`
/// tokens of a `len`-token prompt are cached (the last token is always fed).
fn expected_hit(valid: usize, len: usize) -> usize {
    valid.min(len - 1) / BLOCK_TOKENS * BLOCK_TOKENS
}

#[test]
fn cached_kv_gives_the_logits_of_a_cold_prefill_at_every_length() {
    let mut rng = Rng(7);
    for model in TINY_MODELS {
        let mut engine = tiny(model, &EngineOptions::default());
        let vocab = engine.config().vocab_size;
        let text = rng.tokens(200, vocab);
        let warmed = engine.warm("ws", &text, None).expect("warm-up runs");
        assert_eq!((warmed.hit_tokens, warmed.computed_tokens, warmed.cached_tokens), (0, 192, 192));
        let lengths = [1, 2, 15, 16, 17, 31, 32, 33, 47, 48, 49, 64, 65, 100, 127, 128, 129, 191, 192, 193, 200];
        for len in lengths {
            let prompt = &text[..len];
            let (cached, logits) = prefill_logits(&mut engine, "ws", prompt);
            assert_eq!(cached, expected_hit(192, len), "{model}: {len}-token prompt");
            let cold = cold_logits(&mut engine, prompt, &len.to_string());
            assert_bits_equal(&logits, &cold, &format!("{model}, {len}-token prompt"));
        }
    }
}

#[test]
fn an_edit_reuses_the_blocks_before_it_and_recomputes_the_rest() {
    let mut rng = Rng(11);
    for model in TINY_MODELS {
        let mut engine = tiny(model, &EngineOptions::default());
        let vocab = engine.config().vocab_size;
        let original = rng.tokens(180, vocab);
        // Cached by an earlier request, not a warm-up.
        let (cached, _) = prefill_logits(&mut engine, "ws", &original);
        assert_eq!(cached, 0);
        for at in [0, 15, 16, 40, 95, 96, 170] {
            let mut edited = original.clone();
            edited[at] = (edited[at] + 1) % vocab as u32;
            let (cached, logits) = prefill_logits(&mut engine, "ws", &edited);
            assert_eq!(cached, expected_hit(at, edited.len()), "{model}: edit at {at}");
            let cold = cold_logits(&mut engine, &edited, &format!("edit {at}"));
            assert_bits_equal(&logits, &cold, &format!("{model}, edit at token {at}"));
            // The edited version is cached now too, beside the original.
            let (cached, _) = prefill_logits(&mut engine, "ws", &original);
            assert_eq!(cached, expected_hit(original.len(), original.len()), "{model}: original after edit at {at}");
        }
    }
}

#[test]
fn default_model_generates_the_same_tokens_from_cached_kv() {
    let mut engine = Engine::load(&default_model(), &EngineOptions::default()).expect("default model loads");
    let source = std::fs::read_to_string(fixtures_dir().join("models").join("make_tiny_models.py"))
        .expect("fixture script reads");
    let file: Vec<u32> = engine.tokenizer().encode(&source, false).expect("encodes").into_iter().take(300).collect();
    let header = engine.tokenizer().encode("Rewrite the marked region.\n<file>\n", false).expect("encodes");
    let stable = [header.clone(), file.clone()].concat();
    let warmed = engine.warm("ws", &stable, None).expect("warm-up runs");
    assert_eq!(warmed.cached_tokens, stable.len() / BLOCK_TOKENS * BLOCK_TOKENS);

    // A small edit in the middle of the file, then the request's tail.
    let mut edited = file.clone();
    let middle = edited.len() / 2;
    edited.splice(middle..middle + 3, engine.tokenizer().encode("    return None\n", false).expect("encodes"));
    let tail = engine.tokenizer().encode("</file>\n<update>\nfn main() {}\n</update>\n", false).expect("encodes");
    let prompt = [header.clone(), edited, tail].concat();
    let first_change = stable.iter().zip(&prompt).position(|(a, b)| a != b).unwrap_or(stable.len());
    assert!(first_change >= header.len() + middle, "the edit is in the middle of the file");

    let params = GenerateParams::new(24, Vec::new());
    let mut outputs = Vec::new();
    for namespace in ["ws", "cold"] {
        let prefilled = engine.prefill_in(namespace, &prompt).expect("prefill runs");
        let cached = prefilled.cached_prompt_tokens();
        let logits = engine.logits_after(&prefilled, &PROBE).expect("probe runs").values;
        let generation = engine.generate_from(&prefilled, &params, &mut NoDraft, 1, |_| {}).expect("generates");
        engine.release_prompt(prefilled);
        assert_eq!(generation.stats.cached_prompt_tokens, cached);
        assert!(generation.stats.ttft > std::time::Duration::ZERO);
        outputs.push((cached, logits, generation.tokens));
    }
    let (warm, cold) = (&outputs[0], &outputs[1]);
    assert_eq!(warm.0, expected_hit(first_change, prompt.len()), "blocks before the edit are reused");
    assert_eq!(cold.0, 0);
    assert_bits_equal(&warm.1, &cold.1, "default model after an edit");
    assert_eq!(warm.2, cold.2, "the same greedy tokens");
}

#[test]
fn a_forced_hash_collision_changes_no_output() {
    let mut rng = Rng(13);
    for model in TINY_MODELS {
        let mut engine = tiny(model, &EngineOptions::default());
        engine.set_block_hasher(|_, _| 0x5eed);
        let vocab = engine.config().vocab_size;
        // Files sharing their first block, differing after it, and a block
        // that reappears after a different parent.
        let shared = rng.tokens(BLOCK_TOKENS, vocab);
        let repeated = rng.tokens(BLOCK_TOKENS, vocab);
        let files: Vec<Vec<u32>> = (0..4)
            .map(|i| {
                let own = rng.tokens(BLOCK_TOKENS, vocab);
                if i % 2 == 0 {
                    [shared.clone(), own, repeated.clone(), rng.tokens(20, vocab)].concat()
                } else {
                    [own, repeated.clone(), shared.clone(), rng.tokens(20, vocab)].concat()
                }
            })
            .collect();
        for file in &files {
            engine.warm("ws", file, None).expect("warm-up runs");
        }
        for (i, file) in files.iter().enumerate() {
            let (cached, logits) = prefill_logits(&mut engine, "ws", file);
            assert_eq!(cached, 64, "{model}: file {i} finds exactly its own four blocks");
            let cold = cold_logits(&mut engine, file, &i.to_string());
            assert_bits_equal(&logits, &cold, &format!("{model}, colliding file {i}"));
        }
        let stranger = [rng.tokens(BLOCK_TOKENS, vocab), repeated.clone(), shared.clone()].concat();
        let (cached, _) = prefill_logits(&mut engine, "ws", &stranger);
        assert_eq!(cached, 0, "{model}: colliding hashes with other tokens are no hit");
    }
}

#[test]
fn the_least_recently_used_file_is_evicted_first() {
    let mut engine = tiny("tiny-llama", &EngineOptions::default());
    let block_bytes = engine.cache_stats().first().map_or(0, |s| s.bytes);
    assert_eq!(block_bytes, 0, "nothing cached before the first request");
    let mut rng = Rng(17);
    let vocab = engine.config().vocab_size;
    let files: Vec<Vec<u32>> = (0..3).map(|_| rng.tokens(2 * BLOCK_TOKENS + 1, vocab)).collect();
    engine.warm("ws", &files[0], None).expect("warm-up runs");
    let per_block = engine.cache_stats()[0].bytes / 2;
    engine.set_namespace_budget("ws", 4 * per_block);
    engine.warm("ws", &files[1], None).expect("warm-up runs");
    // Use file 0 again: file 1 is now the least recently used.
    let (cached, _) = prefill_logits(&mut engine, "ws", &files[0]);
    assert_eq!(cached, 32);
    engine.warm("ws", &files[2], None).expect("warm-up runs");
    let stats = engine.cache_stats()[0].clone();
    assert_eq!(stats.evictions, 2, "file 1's two blocks made room: {stats:?}");
    assert!(stats.bytes <= stats.budget_bytes);
    assert_eq!(prefill_logits(&mut engine, "ws", &files[2]).0, 32, "just warmed: kept");
    assert_eq!(prefill_logits(&mut engine, "ws", &files[0]).0, 32, "recently used: kept");
    assert_eq!(prefill_logits(&mut engine, "ws", &files[1]).0, 0, "least recently used: evicted");
}

#[test]
fn a_busy_namespace_does_not_evict_another_ones_blocks() {
    let mut engine = tiny("tiny-qwen2", &EngineOptions::default());
    let mut rng = Rng(19);
    let vocab = engine.config().vocab_size;
    let hot = rng.tokens(100, vocab);
    engine.warm("quiet", &hot, None).expect("warm-up runs");
    let per_block = engine.cache_stats()[0].bytes / (96 / BLOCK_TOKENS);
    engine.set_namespace_budget("busy", 8 * per_block);
    for _ in 0..50 {
        let file = rng.tokens(70, vocab);
        let (_, _) = prefill_logits(&mut engine, "busy", &file);
    }
    let stats = engine.cache_stats();
    let (quiet, busy) = (&stats[0], &stats[1]);
    assert_eq!((quiet.name.as_str(), busy.name.as_str()), ("quiet", "busy"));
    assert!(busy.evictions > 0 && busy.bytes <= busy.budget_bytes, "{busy:?}");
    assert_eq!(quiet.evictions, 0, "{quiet:?}");
    let (cached, _) = prefill_logits(&mut engine, "quiet", &hot);
    assert_eq!(cached, 96, "the quiet namespace's file is still cached whole");
    let (cached, _) = prefill_logits(&mut engine, "busy", &hot);
    assert_eq!(cached, 0, "namespaces do not share blocks");
}

#[test]
fn a_warm_up_racing_an_edit_never_serves_stale_kv() {
    let mut rng = Rng(23);
    let mut engine = tiny("tiny-qwen3", &EngineOptions::default());
    let vocab = engine.config().vocab_size;
    let version1 = rng.tokens(220, vocab);
    let mut version2 = version1.clone();
    let edit_at = 90;
    version2[edit_at] = (version2[edit_at] + 7) % vocab as u32;

    // Cancelled before it starts: nothing is fed.
    let cancel = AtomicBool::new(true);
    let warmed = engine.warm("ws", &version1, Some(&cancel)).expect("warm-up runs");
    assert!(warmed.cancelled && warmed.computed_tokens == 0, "{warmed:?}");

    // The edit lands while version 1 is being warmed: the flag is set by
    // another thread at whatever point the warm-up has reached.
    for round in 0..5 {
        // A namespace per round: version 2 is cached by each round's request.
        let namespace = format!("ws {round}");
        let cancel = AtomicBool::new(false);
        let warmed = std::thread::scope(|scope| {
            scope.spawn(|| {
                for _ in 0..round * 50 {
                    std::thread::yield_now();
                }
                cancel.store(true, Ordering::Relaxed);
            });
            engine.warm(&namespace, &version1, Some(&cancel)).expect("warm-up runs")
        });
        assert!(warmed.cached_tokens <= 208 && warmed.cached_tokens % BLOCK_TOKENS == 0, "{warmed:?}");
        let (cached, logits) = prefill_logits(&mut engine, &namespace, &version2);
        assert!(cached <= edit_at / BLOCK_TOKENS * BLOCK_TOKENS, "round {round}: {cached} tokens reused past the edit");
        let cold = cold_logits(&mut engine, &version2, &round.to_string());
        assert_bits_equal(&logits, &cold, &format!("round {round}: version 2 after a cancelled warm-up"));
    }

    // Both versions warmed in full: each still gets exactly its own KV.
    engine.warm("ws", &version1, None).expect("warm-up runs");
    engine.warm("ws", &version2, None).expect("warm-up runs");
    for (i, version) in [&version1, &version2].into_iter().enumerate() {
        let (cached, logits) = prefill_logits(&mut engine, "ws", version);
        assert_eq!(cached, 208);
        let cold = cold_logits(&mut engine, version, &format!("version {i}"));
        assert_bits_equal(&logits, &cold, &format!("version {} after both were warmed", i + 1));
    }
}

#[test]
fn a_thousand_files_stay_inside_the_budget() {
    let mut rng = Rng(29);
    // A small pool (256 KiB: 32 blocks of tiny-llama) so the budget binds.
    let options = EngineOptions { kv_budget_bytes: 256 << 10, namespace_budget_bytes: 96 << 10, ..Default::default() };
    let mut engine = tiny("tiny-llama", &options);
    let vocab = engine.config().vocab_size;
    let mut last = (Vec::new(), "");
    for i in 0..1000 {
        let namespace = if i % 3 == 0 { "headless" } else { "ws" };
        let len = 40 + rng.below(60);
        let file = rng.tokens(len, vocab);
        if i % 2 == 0 {
            engine.warm(namespace, &file, None).expect("warm-up runs");
        } else {
            let (_, _) = prefill_logits(&mut engine, namespace, &file);
        }
        let stats = engine.cache_stats();
        let total: usize = stats.iter().map(|s| s.bytes).sum();
        assert!(total <= options.kv_budget_bytes, "file {i}: {total} cached bytes");
        for s in &stats {
            assert!(s.bytes <= s.budget_bytes, "file {i}: {s:?}");
        }
        last = (file, namespace);
    }
    let (file, namespace) = last;
    let (cached, _) = prefill_logits(&mut engine, namespace, &file);
    assert_eq!(cached, expected_hit(file.len(), file.len()), "the latest file is cached");
    let stats = engine.cache_stats();
    assert!(stats.iter().all(|s| s.evictions > 0 && s.lookups > 0), "{stats:?}");
}
