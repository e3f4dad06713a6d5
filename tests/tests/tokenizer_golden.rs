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
//! and the GGUF vocabulary with the `gpt-2`, `qwen2` and `llama-bpe` splits
//! (the last two with [`EXTRA_TOKENS`], which tell them apart).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
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

fn fixture_dir() -> PathBuf {
    graft_tests::fixtures_dir().join("tokenizer")
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
        let path = graft_tests::dev_jsonl();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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
        let path = graft_tests::default_model();
        let gguf = GgufFile::open(&path).unwrap_or_else(|e| panic!("{e}"));
        GgufVocab::read(&gguf).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// Tokens and merges added to the vocabulary for the `qwen2` and `llama-bpe`
/// splits, which give the same ids over SmolLM2's vocabulary alone (it has no
/// multi-digit tokens); same as EXTRA_TOKENS / EXTRA_MERGES in the script.
const EXTRA_TOKENS: [&str; 3] = ["12", "123", "Ġxyzzy"];
const EXTRA_MERGES: [&str; 2] = ["1 2", "12 3"];

/// The GGUF vocabulary with pre-tokenizer `pre` (the file's own is `smollm`).
fn gguf_tokenizer(pre: &str) -> Tokenizer {
    let mut vocab = gguf_vocab().clone();
    assert_eq!(vocab.pre, "smollm", "the default model's tokenizer.ggml.pre changed");
    vocab.pre = pre.to_owned();
    if matches!(pre, "qwen2" | "llama-bpe") {
        vocab.tokens.extend(EXTRA_TOKENS.map(String::from));
        vocab.token_types.extend([1; EXTRA_TOKENS.len()]);
        vocab.merges.extend(EXTRA_MERGES.map(String::from));
    }
    Tokenizer::from_gguf_vocab(&vocab).unwrap_or_else(|e| panic!("{e}"))
}

fn files_tokenizer() -> Tokenizer {
    let dir = fixture_dir().join("smollm2");
    Tokenizer::from_files(&dir.join("tokenizer.json"), Some(&dir.join("tokenizer_config.json")))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Which corpus fields a check encodes.
#[derive(Clone, Copy, PartialEq)]
enum Cases {
    /// Every field golden.json has references of the tokenizer for (all 300
    /// cases for `smollm`, every third case for the other splits).
    All,
    /// Only the every-third-case subset (keeps test time modest).
    Strided,
}

/// Encodes the selected corpus fields with `tok`, compares with the
/// reference ids of pre-tokenizer `name`, and checks decode(encode(t)) == t.
fn check_corpus(tok: &Tokenizer, name: &str, selection: Cases) {
    let corpus = corpus();
    let mut failures = Vec::new();
    let cases: Vec<&CorpusCase> = golden()
        .corpus
        .iter()
        .filter(|c| c.ids.contains_key(name) && (selection == Cases::All || c.ids.contains_key("qwen2")))
        .collect();
    assert!(cases.len() >= 300, "golden.json has only {} corpus fields for `{name}`", cases.len());
    for case in &cases {
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
        let expected = &case.ids[name];
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
    check_corpus(&gguf_tokenizer("smollm"), "smollm", Cases::All);
}

#[test]
fn smollm_tokenizer_json_encodes_code_corpus_like_reference() {
    check_corpus(&files_tokenizer(), "smollm", Cases::Strided);
}

#[test]
fn gpt2_split_encodes_code_corpus_like_transformers_gguf_loader() {
    check_corpus(&gguf_tokenizer("gpt-2"), "gpt-2", Cases::All);
}

#[test]
fn qwen2_split_encodes_code_corpus_like_reference() {
    check_corpus(&gguf_tokenizer("qwen2"), "qwen2", Cases::All);
}

#[test]
fn llama3_split_encodes_code_corpus_like_reference() {
    check_corpus(&gguf_tokenizer("llama-bpe"), "llama-bpe", Cases::All);
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

/// SHA-256, lowercase hex.
fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}
