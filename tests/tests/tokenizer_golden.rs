//! Golden tests of graft's tokenizer against Hugging Face transformers and
//! tokenizers. The references are made by
//! fixtures/tokenizer/make_tokenizer_fixtures.py and committed in
//! fixtures/tokenizer/golden.json (see the script for how each is built and
//! why the SmolLM2 one is not transformers' GGUF loader as is).
//!
//! Inputs outside the repository, which these tests fail (not skip) without:
//! - the default model, SmolLM2-135M-Instruct Q4_1 GGUF, in
//!   `$GRAFT_HOME/models` (`graft models fetch`; CI fetches it first);
//! - the code corpus `<repo>/../shared/data/apply/dev.jsonl` (or
//!   `$GRAFT_SHARED/data/apply/dev.jsonl`), read in place: the fixture holds
//!   only per-field hashes of its texts and of their ids.
//!
//! Tokenizers under test: the GGUF's own (`smollm` pre-tokenizer), the same
//! via tokenizer.json (`Tokenizer::from_files` on fixtures/tokenizer/smollm2),
//! and the GGUF vocabulary with the `gpt-2`, `qwen2` and `llama-bpe` splits.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use graft_engine::model::gguf::GgufFile;
use graft_engine::tokenizer::gguf::GgufVocab;
use graft_engine::tokenizer::{ChatMessage, Tokenizer};
use serde::Deserialize;

#[derive(Deserialize)]
struct Golden {
    special: Special,
    evidence: Evidence,
    adversarial: Vec<AdversarialCase>,
    decode: Vec<DecodeCase>,
    chat: Vec<ChatCase>,
    corpus: Vec<CorpusCase>,
}

#[derive(Deserialize)]
struct Special {
    vocab_size: usize,
    bos_id: u32,
    eos_id: u32,
}

/// Where transformers' GGUF loader and the real SmolLM2 split disagree.
#[derive(Deserialize)]
struct Evidence {
    fields_differing: usize,
    example: String,
    transformers_gguf_ids: Vec<u32>,
    smollm_ids: Vec<u32>,
}

/// A string written for the tests, with its full ids per pre-tokenizer.
#[derive(Deserialize)]
struct AdversarialCase {
    text: String,
    #[serde(flatten)]
    ids: BTreeMap<String, Vec<u32>>,
}

#[derive(Deserialize)]
struct DecodeCase {
    ids: Vec<u32>,
    text: String,
}

#[derive(Deserialize)]
struct ChatCase {
    messages: Vec<Message>,
    add_generation_prompt: bool,
    text: String,
    ids: Vec<u32>,
}

#[derive(Deserialize)]
struct Message {
    role: String,
    content: String,
}

/// One field of one dev.jsonl case: its text's hash and, per pre-tokenizer,
/// the number of ids and the sha256 of the ids as u32 little-endian.
#[derive(Deserialize)]
struct CorpusCase {
    id: String,
    field: String,
    text_sha256: String,
    #[serde(flatten)]
    ids: BTreeMap<String, IdsDigest>,
}

#[derive(Deserialize)]
struct IdsDigest {
    n: usize,
    sha256: String,
}

/// The fields of a dev.jsonl line these tests read.
#[derive(Deserialize)]
struct CorpusRow {
    id: String,
    original: String,
    update: String,
    expected: String,
}

impl CorpusRow {
    fn field(&self, name: &str) -> &str {
        match name {
            "original" => &self.original,
            "update" => &self.update,
            "expected" => &self.expected,
            other => panic!("golden.json names unknown corpus field `{other}`"),
        }
    }
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent")
}

fn fixture_dir() -> PathBuf {
    repo_root().join("fixtures").join("tokenizer")
}

fn golden() -> &'static Golden {
    static GOLDEN: OnceLock<Golden> = OnceLock::new();
    GOLDEN.get_or_init(|| {
        let path = fixture_dir().join("golden.json");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

/// dev.jsonl by case id. Missing is a failure: CI provides it.
fn corpus() -> &'static HashMap<String, CorpusRow> {
    static CORPUS: OnceLock<HashMap<String, CorpusRow>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let shared = std::env::var_os("GRAFT_SHARED")
            .filter(|v| !v.is_empty())
            .map_or_else(|| repo_root().join("..").join("shared"), PathBuf::from);
        let path = shared.join("data").join("apply").join("dev.jsonl");
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "code corpus {} is missing ({e}); it lives in the shared data checkout next to the \
                 repository (set GRAFT_SHARED to its directory)",
                path.display()
            )
        });
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let row: CorpusRow =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: bad line: {e}", path.display()));
                (row.id.clone(), row)
            })
            .collect()
    })
}

/// The default model's tokenizer metadata. Missing is a failure.
fn gguf_vocab() -> &'static GgufVocab {
    static VOCAB: OnceLock<GgufVocab> = OnceLock::new();
    VOCAB.get_or_init(|| {
        let path = graft_engine::home::default_model_path();
        assert!(
            path.is_file(),
            "default model {} is missing: run `graft models fetch` (or set GRAFT_HOME)",
            path.display()
        );
        let gguf = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
        GgufVocab::read(&gguf).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// The GGUF vocabulary with pre-tokenizer `pre` (the file's own is `smollm`).
fn gguf_tokenizer(pre: &str) -> Tokenizer {
    let mut vocab = gguf_vocab().clone();
    assert_eq!(vocab.pre, "smollm", "the default model's tokenizer.ggml.pre changed");
    vocab.pre = pre.to_owned();
    Tokenizer::from_gguf_vocab(&vocab).unwrap_or_else(|e| panic!("{e}"))
}

fn files_tokenizer() -> Tokenizer {
    let dir = fixture_dir().join("smollm2");
    Tokenizer::from_files(&dir.join("tokenizer.json"), Some(&dir.join("tokenizer_config.json")))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Encodes every corpus field in golden.json with `tok` and compares with the
/// reference of pre-tokenizer `name`; also checks decode(encode(t)) == t.
fn check_corpus(tok: &Tokenizer, name: &str) {
    let corpus = corpus();
    let mut failures = Vec::new();
    let cases = &golden().corpus;
    assert!(cases.len() >= 300, "golden.json has only {} corpus fields", cases.len());
    for case in cases {
        let row = corpus.get(&case.id).unwrap_or_else(|| {
            panic!("dev.jsonl has no case `{}`; it changed since golden.json was made: rerun the script", case.id)
        });
        let text = row.field(&case.field);
        assert_eq!(
            sha256_hex(text.as_bytes()),
            case.text_sha256,
            "dev.jsonl case `{}` field `{}` changed since golden.json was made: rerun the script",
            case.id,
            case.field
        );
        let expected = case.ids.get(name).unwrap_or_else(|| panic!("golden.json has no `{name}` ids"));
        let ids = tok.encode(text, false).unwrap_or_else(|e| panic!("{e}"));
        let le: Vec<u8> = ids.iter().flat_map(|id| id.to_le_bytes()).collect();
        if ids.len() != expected.n || sha256_hex(&le) != expected.sha256 {
            failures.push(format!("{} [{}]: {} ids, reference {}", case.id, case.field, ids.len(), expected.n));
        }
        let decoded = tok.decode(&ids).unwrap_or_else(|e| panic!("{e}"));
        if decoded != text {
            failures.push(format!("{} [{}]: decode(encode(text)) != text", case.id, case.field));
        }
    }
    assert!(
        failures.is_empty(),
        "`{name}`: {} of {} corpus fields differ from the reference; first ones:\n{}",
        failures.len(),
        cases.len(),
        failures.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}

fn check_adversarial(tok: &Tokenizer, name: &str) {
    for case in &golden().adversarial {
        let expected = case.ids.get(name).unwrap_or_else(|| panic!("golden.json has no `{name}` ids"));
        let ids = tok.encode(&case.text, false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&ids, expected, "`{name}` on {:?}", case.text);
        assert_eq!(tok.decode(&ids).unwrap(), case.text, "`{name}` round trip of {:?}", case.text);
    }
}

#[test]
fn smollm_gguf_encodes_code_corpus_like_reference() {
    check_corpus(&gguf_tokenizer("smollm"), "smollm");
}

#[test]
fn smollm_tokenizer_json_encodes_code_corpus_like_reference() {
    check_corpus(&files_tokenizer(), "smollm");
}

#[test]
fn gpt2_split_encodes_code_corpus_like_transformers_gguf_loader() {
    check_corpus(&gguf_tokenizer("gpt-2"), "gpt-2");
}

#[test]
fn qwen2_split_encodes_code_corpus_like_reference() {
    check_corpus(&gguf_tokenizer("qwen2"), "qwen2");
}

#[test]
fn llama3_split_encodes_code_corpus_like_reference() {
    check_corpus(&gguf_tokenizer("llama-bpe"), "llama-bpe");
}

#[test]
fn adversarial_strings_encode_like_reference() {
    check_adversarial(&gguf_tokenizer("smollm"), "smollm");
    check_adversarial(&files_tokenizer(), "smollm");
    check_adversarial(&gguf_tokenizer("gpt-2"), "gpt-2");
    check_adversarial(&gguf_tokenizer("qwen2"), "qwen2");
    check_adversarial(&gguf_tokenizer("llama-bpe"), "llama-bpe");
}

/// transformers' GGUF loader ignores `tokenizer.ggml.pre = smollm`; we must
/// not: whitespace before a digit merges differently with the Digits split.
#[test]
fn smollm_split_isolates_digits_unlike_transformers_gguf_loader() {
    let evidence = &golden().evidence;
    assert!(evidence.fields_differing > 0);
    assert_ne!(evidence.smollm_ids, evidence.transformers_gguf_ids);
    assert_eq!(gguf_tokenizer("smollm").encode(&evidence.example, false).unwrap(), evidence.smollm_ids);
    assert_eq!(gguf_tokenizer("gpt-2").encode(&evidence.example, false).unwrap(), evidence.transformers_gguf_ids);
}

#[test]
fn decode_matches_transformers() {
    for tok in [gguf_tokenizer("smollm"), files_tokenizer()] {
        for case in &golden().decode {
            assert_eq!(tok.decode(&case.ids).unwrap(), case.text, "decode {:?}", case.ids);
        }
    }
}

#[test]
fn decode_stream_concatenates_to_decode() {
    let tok = gguf_tokenizer("smollm");
    let corpus = corpus();
    for case in golden().corpus.iter().filter(|c| c.field == "update").take(30) {
        let text = corpus[&case.id].field(&case.field);
        let ids = tok.encode(text, false).unwrap();
        let mut stream = tok.decode_stream();
        let mut out = String::new();
        for &id in &ids {
            if let Some(chunk) = stream.step(id).unwrap() {
                out.push_str(&chunk);
            }
        }
        assert!(out == text, "streamed decode of {} differs", case.id);
    }
}

#[test]
fn chat_template_matches_transformers() {
    for tok in [gguf_tokenizer("smollm"), files_tokenizer()] {
        assert!(tok.has_chat_template());
        for case in &golden().chat {
            let messages: Vec<ChatMessage> =
                case.messages.iter().map(|m| ChatMessage::new(m.role.as_str(), m.content.as_str())).collect();
            let text = tok.apply_chat_template(&messages, case.add_generation_prompt).unwrap();
            assert_eq!(text, case.text);
            assert_eq!(tok.encode(&text, false).unwrap(), case.ids, "ids of the prompt {text:?}");
        }
    }
}

#[test]
fn special_tokens_match_transformers() {
    let special = &golden().special;
    for tok in [gguf_tokenizer("smollm"), files_tokenizer()] {
        assert_eq!(tok.vocab_size(), special.vocab_size);
        assert_eq!(tok.bos_id(), Some(special.bos_id));
        assert_eq!(tok.eos_ids().first(), Some(&special.eos_id));
        let endoftext = tok.encode("<|endoftext|>", false).unwrap();
        assert!(tok.eos_ids().contains(&endoftext[0]), "<|endoftext|> ends generation too");
        // SmolLM2 does not want BOS (tokenizer.ggml.add_bos_token = false).
        assert_eq!(tok.encode("hi", true).unwrap(), tok.encode("hi", false).unwrap());
        assert_eq!(tok.token_text(special.bos_id).as_deref(), Some("<|im_start|>"));
    }
}

/// SHA-256 (FIPS 180-4), lowercase hex; small enough to keep here rather
/// than add a dependency to the test crate.
fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
        0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
        0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
        0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
        0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
        0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
        0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] =
        [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&(data.len() as u64 * 8).to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16].wrapping_add(s0).wrapping_add(w[i - 7]).wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh.wrapping_add(s1).wrapping_add(ch).wrapping_add(K[i]).wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            (hh, g, f, e, d, c, b, a) = (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

#[test]
fn sha256_matches_known_vectors() {
    assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    let long = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    assert_eq!(sha256_hex(long), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}
