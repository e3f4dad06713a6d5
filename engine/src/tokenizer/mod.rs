//! Text <-> token ids for the supported models: [`Tokenizer`] wraps a
//! Hugging Face `tokenizers` pipeline loaded from a model directory's
//! tokenizer.json ([`Tokenizer::from_files`]) or rebuilt from a GGUF file's
//! metadata ([`Tokenizer::from_gguf`], see [`gguf`]), and knows the model's
//! special tokens (BOS, the end-of-generation set) and chat template
//! ([`ChatMessage`], rendered as transformers renders it, see `chat`).
//! [`DecodeStream`] turns generated ids into text incrementally.
//!
//! Properties (golden-tested against transformers in
//! tests/tests/tokenizer_golden.rs):
//! - `encode` gives the ids transformers' `encode(text,
//!   add_special_tokens=False)` gives; special tokens written in the text
//!   (`<|im_start|>`) are parsed as their single id, as in transformers and
//!   llama.cpp. BOS is the only thing ever added, and only on request.
//! - `decode` equals transformers' `decode(ids, skip_special_tokens=False,
//!   clean_up_tokenization_spaces=False)`: special tokens keep their text, and
//!   no "clean-up" pass rewrites spaces, so `decode(encode(t)) == t` for any
//!   text `t` on byte-level vocabularies.

mod chat;
pub mod gguf;

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use tokenizers::{DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper};

pub use self::chat::ChatMessage;
use self::chat::ChatTemplate;
use self::gguf::GgufVocab;
use crate::error::{Error, Result};
use crate::model::gguf::GgufFile;

/// Texts of special tokens that end a generation whatever the configured EOS
/// (llama.cpp marks the same ones end-of-generation by text).
const END_OF_GENERATION_TEXTS: &[&str] = &[
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "<end_of_turn>",
    "<EOT>",
];

/// A model's tokenizer: vocabulary, special tokens and chat template.
#[derive(Debug)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    /// The tokenizer.json or GGUF file it was loaded from, for errors.
    source: PathBuf,
    /// Highest id plus one (model vocabulary and added tokens).
    vocab_size: usize,
    bos: Option<u32>,
    /// Whether the model wants BOS at the start of a sequence.
    add_bos: bool,
    /// End-of-generation ids: the configured EOS first, then the others.
    eos: Vec<u32>,
    chat_template: Option<ChatTemplate>,
}

/// Settings a tokenizer_config.json adds to its tokenizer.json.
#[derive(Debug, Default)]
struct TokenizerConfig {
    bos_token: Option<String>,
    eos_token: Option<String>,
    add_bos_token: Option<bool>,
    chat_template: Option<String>,
}

impl Tokenizer {
    /// A Hugging Face model directory's tokenizer.json, plus its
    /// tokenizer_config.json when given: `chat_template` (a string, or a list
    /// of named templates of which `default` is used; else a
    /// chat_template.jinja next to the config), `bos_token` / `eos_token`
    /// (a string or an AddedToken object) and `add_bos_token`. Without
    /// `add_bos_token`, BOS is wanted when the tokenizer.json post-processor
    /// adds it.
    pub fn from_files(tokenizer_json: &Path, tokenizer_config_json: Option<&Path>) -> Result<Self> {
        let text = read(tokenizer_json)?;
        let mut inner: tokenizers::Tokenizer = text.parse().map_err(|e| Error::Tokenizer {
            path: tokenizer_json.to_owned(),
            reason: format!("not a valid tokenizer.json: {e}"),
        })?;
        // A tokenizer.json may configure padding or truncation for training;
        // encode must return exactly the text's ids.
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| Error::Tokenizer {
            path: tokenizer_json.to_owned(),
            reason: format!("cannot disable truncation: {e}"),
        })?;
        let config = match tokenizer_config_json {
            Some(path) => TokenizerConfig::read(path)?,
            None => TokenizerConfig::default(),
        };
        let id_of = |token: &Option<String>, what: &str| -> Result<Option<u32>> {
            token
                .as_deref()
                .map(|t| {
                    inner.token_to_id(t).ok_or_else(|| Error::Tokenizer {
                        path: tokenizer_json.to_owned(),
                        reason: format!("{what} `{t}` named by the tokenizer config is not in the vocabulary"),
                    })
                })
                .transpose()
        };
        let bos = id_of(&config.bos_token, "bos_token")?;
        let eos = id_of(&config.eos_token, "eos_token")?;
        let add_bos = match config.add_bos_token {
            Some(add) => add,
            None => {
                let with_specials = inner.encode_fast("", true).map_err(|e| Error::Tokenizer {
                    path: tokenizer_json.to_owned(),
                    reason: format!("post-processor failed on empty input: {e}"),
                })?;
                bos.is_some() && with_specials.get_ids().first().copied() == bos
            }
        };
        let chat_template = config
            .chat_template
            .map(|source| ChatTemplate::new(source, config.bos_token.clone(), config.eos_token.clone()))
            .transpose()?;
        Ok(Self::assemble(inner, tokenizer_json.to_owned(), bos, add_bos, &[eos], chat_template))
    }

    /// The tokenizer a GGUF file's `tokenizer.*` metadata describes (see
    /// [`gguf`] for what is supported).
    pub fn from_gguf(gguf: &GgufFile) -> Result<Self> {
        Self::from_gguf_vocab(&GgufVocab::read(gguf)?)
    }

    /// [`Self::from_gguf`] from metadata already read out (possibly edited).
    pub fn from_gguf_vocab(vocab: &GgufVocab) -> Result<Self> {
        let built = gguf::build(vocab)?;
        let text_of = |id: Option<u32>| id.and_then(|id| vocab.tokens.get(id as usize).cloned());
        let chat_template = vocab
            .chat_template
            .clone()
            .map(|source| ChatTemplate::new(source, text_of(vocab.bos_id), text_of(vocab.eos_id)))
            .transpose()?;
        Ok(Self::assemble(
            built.inner,
            vocab.source.clone(),
            vocab.bos_id,
            built.add_bos,
            &[vocab.eos_id, vocab.eot_id, vocab.eom_id],
            chat_template,
        ))
    }

    /// Common tail of the constructors: vocabulary size and the full
    /// end-of-generation set (the given ids, then special tokens whose text
    /// is in [`END_OF_GENERATION_TEXTS`]).
    fn assemble(
        inner: tokenizers::Tokenizer,
        source: PathBuf,
        bos: Option<u32>,
        add_bos: bool,
        eos: &[Option<u32>],
        chat_template: Option<ChatTemplate>,
    ) -> Self {
        let vocab_size = inner.get_vocab(true).values().max().map_or(0, |&max| max as usize + 1);
        let mut eos_ids: Vec<u32> = Vec::new();
        let by_text = END_OF_GENERATION_TEXTS.iter().filter_map(|text| {
            inner.token_to_id(text).filter(|id| inner.get_added_tokens_decoder().get(id).is_some_and(|t| t.special))
        });
        for id in eos.iter().flatten().copied().chain(by_text) {
            if !eos_ids.contains(&id) {
                eos_ids.push(id);
            }
        }
        Self { inner, source, vocab_size, bos, add_bos, eos: eos_ids, chat_template }
    }

    /// The ids of `text`. Special tokens written in the text are parsed as
    /// their ids. With `add_bos`, BOS is prepended if the model defines one
    /// and wants it (`tokenizer.ggml.add_bos_token`, tokenizer_config.json's
    /// `add_bos_token`, or the tokenizer.json post-processor); nothing else
    /// (no EOS) is ever added.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        let encoding = self.inner.encode_fast(text, false).map_err(|e| self.error(format!("encode failed: {e}")))?;
        let bos = self.bos.filter(|_| add_bos && self.add_bos);
        Ok(bos.into_iter().chain(encoding.get_ids().iter().copied()).collect())
    }

    /// The text of `ids`, special tokens included, without transformers'
    /// optional space clean-up (see the module doc). Bytes that do not form
    /// valid UTF-8 become U+FFFD. An id outside the vocabulary is an error.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.check_ids(ids)?;
        self.inner.decode(ids, false).map_err(|e| self.error(format!("decode failed: {e}")))
    }

    /// A decoder for generated ids that yields text as soon as it is
    /// complete UTF-8 (a character split across tokens waits for its last
    /// byte). The concatenated chunks equal [`Self::decode`] of all ids.
    pub fn decode_stream(&self) -> DecodeStream<'_> {
        DecodeStream { tokenizer: self, inner: self.inner.decode_stream(false) }
    }

    /// Highest token id plus one.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// Every id that ends a generation: the configured EOS first, then e.g.
    /// `<|im_end|>`, `<|endoftext|>`, `<|eot_id|>` where the vocabulary has
    /// them as special tokens.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos
    }

    /// The vocabulary entry of `id` as stored (byte-level spelling, e.g.
    /// `Ġthe` for " the"); `None` outside the vocabulary.
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// The prompt text for `messages`, as transformers'
    /// `apply_chat_template(messages, tokenize=False, add_generation_prompt=...)`.
    pub fn apply_chat_template(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let template = self
            .chat_template
            .as_ref()
            .ok_or_else(|| Error::ChatTemplate { reason: format!("{} has no chat template", self.source.display()) })?;
        template.render(messages, add_generation_prompt)
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        match ids.iter().find(|&&id| id as usize >= self.vocab_size) {
            Some(id) => Err(self.error(format!("token id {id} is out of range (vocabulary of {})", self.vocab_size))),
            None => Ok(()),
        }
    }

    fn error(&self, reason: String) -> Error {
        Error::Tokenizer { path: self.source.clone(), reason }
    }
}

/// Incremental detokenizer from [`Tokenizer::decode_stream`].
pub struct DecodeStream<'a> {
    tokenizer: &'a Tokenizer,
    inner: tokenizers::DecodeStream<
        'a,
        ModelWrapper,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >,
}

impl DecodeStream<'_> {
    /// Feeds one id; returns the text it completes, if any.
    pub fn step(&mut self, id: u32) -> Result<Option<String>> {
        self.tokenizer.check_ids(&[id])?;
        self.inner.step(id).map_err(|e| self.tokenizer.error(format!("streaming decode failed: {e}")))
    }
}

impl TokenizerConfig {
    fn read(path: &Path) -> Result<Self> {
        let err = |reason: String| Error::Tokenizer { path: path.to_owned(), reason };
        let json: Json = serde_json::from_str(&read(path)?).map_err(|e| err(format!("not valid JSON: {e}")))?;
        let token = |key: &str| -> Result<Option<String>> {
            match json.get(key) {
                None | Some(Json::Null) => Ok(None),
                Some(Json::String(s)) => Ok(Some(s.clone())),
                Some(obj @ Json::Object(_)) => match obj.get("content") {
                    Some(Json::String(s)) => Ok(Some(s.clone())),
                    _ => Err(err(format!("`{key}` is an object without a string `content`"))),
                },
                Some(_) => Err(err(format!("`{key}` is neither a string nor an AddedToken object"))),
            }
        };
        let add_bos_token = match json.get("add_bos_token") {
            None | Some(Json::Null) => None,
            Some(Json::Bool(b)) => Some(*b),
            Some(_) => return Err(err("`add_bos_token` is not a bool".into())),
        };
        let chat_template = match json.get("chat_template") {
            None | Some(Json::Null) => {
                let jinja = path.with_file_name("chat_template.jinja");
                if jinja.is_file() {
                    Some(read(&jinja)?)
                } else {
                    None
                }
            }
            Some(Json::String(s)) => Some(s.clone()),
            Some(Json::Array(named)) => Some(default_template(named).map_err(err)?),
            Some(_) => return Err(err("`chat_template` is neither a string nor a list of named templates".into())),
        };
        Ok(Self { bos_token: token("bos_token")?, eos_token: token("eos_token")?, add_bos_token, chat_template })
    }
}

/// The `default` entry of a list of `{"name": .., "template": ..}`, which is
/// the one transformers uses when no template name is asked for.
fn default_template(named: &[Json]) -> std::result::Result<String, String> {
    for entry in named {
        match (entry.get("name"), entry.get("template")) {
            (Some(Json::String(name)), Some(Json::String(template))) if name == "default" => {
                return Ok(template.clone());
            }
            (Some(Json::String(_)), Some(Json::String(_))) => {}
            _ => return Err("`chat_template` list entries need string `name` and `template`".into()),
        }
    }
    Err("`chat_template` lists named templates but none is named `default`".into())
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny byte-level vocabulary: ChatML control tokens, the 256 byte
    /// characters, three merges and a user-defined `<think>`.
    fn tiny_vocab(pre: &str) -> GgufVocab {
        let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into(), "<|im_end|>".into()];
        let mut token_types = vec![3, 3, 3];
        for c in gguf::byte_chars() {
            tokens.push(c.to_string());
            token_types.push(1);
        }
        for merged in ["he", "ll", "Ġw"] {
            tokens.push(merged.into());
            token_types.push(1);
        }
        tokens.push("<think>".into());
        token_types.push(4);
        GgufVocab {
            source: PathBuf::from("tiny.gguf"),
            model: "gpt2".into(),
            pre: pre.into(),
            tokens,
            token_types,
            merges: vec!["h e".into(), "l l".into(), "Ġ w".into()],
            bos_id: Some(1),
            eos_id: Some(2),
            eot_id: None,
            eom_id: None,
            add_bos: None,
            chat_template: Some("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}".into()),
        }
    }

    #[test]
    fn specials_in_text_encode_to_one_id_and_decode_back() {
        let tok = Tokenizer::from_gguf_vocab(&tiny_vocab("smollm")).unwrap();
        let ids = tok.encode("<|im_start|>hello world<think><|im_end|>", true).unwrap();
        assert_eq!(ids.first(), Some(&1));
        assert_eq!(ids.last(), Some(&2));
        assert!(ids.contains(&(tok.vocab_size() as u32 - 1)), "user-defined token kept whole: {ids:?}");
        assert_eq!(tok.decode(&ids).unwrap(), "<|im_start|>hello world<think><|im_end|>");
        assert_eq!(tok.eos_ids(), &[2, 0]);
    }

    #[test]
    fn bos_only_when_the_model_wants_it() {
        let tok = Tokenizer::from_gguf_vocab(&tiny_vocab("smollm")).unwrap();
        assert_eq!(tok.encode("he", true).unwrap(), tok.encode("he", false).unwrap());
        let llama3 = Tokenizer::from_gguf_vocab(&tiny_vocab("llama-bpe")).unwrap();
        assert_eq!(llama3.encode("he", true).unwrap()[0], 1);
        let mut no_bos = tiny_vocab("llama-bpe");
        no_bos.add_bos = Some(false);
        let no_bos = Tokenizer::from_gguf_vocab(&no_bos).unwrap();
        assert_eq!(no_bos.encode("he", true).unwrap(), no_bos.encode("he", false).unwrap());
    }

    #[test]
    fn unknown_pre_tokenizer_is_an_error_naming_it() {
        let err = Tokenizer::from_gguf_vocab(&tiny_vocab("falcon")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`falcon`") && msg.contains("tiny.gguf"), "{msg}");
        let mut spm = tiny_vocab("smollm");
        spm.model = "llama".into();
        assert!(Tokenizer::from_gguf_vocab(&spm).unwrap_err().to_string().contains("`llama`"));
    }

    #[test]
    fn bad_metadata_is_an_error_not_a_panic() {
        let mut v = tiny_vocab("qwen2");
        v.merges.push("nospace".into());
        assert!(matches!(Tokenizer::from_gguf_vocab(&v), Err(Error::Tokenizer { .. })));
        let mut v = tiny_vocab("qwen2");
        v.bos_id = Some(100_000);
        assert!(matches!(Tokenizer::from_gguf_vocab(&v), Err(Error::Tokenizer { .. })));
        let mut v = tiny_vocab("qwen2");
        v.token_types.pop();
        assert!(matches!(Tokenizer::from_gguf_vocab(&v), Err(Error::Tokenizer { .. })));
        let mut v = tiny_vocab("qwen2");
        v.tokens[10] = v.tokens[11].clone();
        assert!(matches!(Tokenizer::from_gguf_vocab(&v), Err(Error::Tokenizer { .. })));
        let tok = Tokenizer::from_gguf_vocab(&tiny_vocab("qwen2")).unwrap();
        assert!(tok.decode(&[tok.vocab_size() as u32]).is_err());
    }

    #[test]
    fn decode_stream_waits_for_whole_characters() {
        let tok = Tokenizer::from_gguf_vocab(&tiny_vocab("gpt-2")).unwrap();
        let text = "hé 🦀 world";
        let ids = tok.encode(text, false).unwrap();
        let mut stream = tok.decode_stream();
        let mut out = String::new();
        for &id in &ids {
            if let Some(chunk) = stream.step(id).unwrap() {
                assert!(!chunk.contains('\u{FFFD}'), "partial character emitted: {chunk:?}");
                out.push_str(&chunk);
            }
        }
        assert_eq!(out, text);
    }

    #[test]
    fn gguf_chat_template_gets_special_tokens() {
        let tok = Tokenizer::from_gguf_vocab(&tiny_vocab("smollm")).unwrap();
        let out = tok.apply_chat_template(&[ChatMessage::new("user", "hi")], true).unwrap();
        assert_eq!(out, "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    }

    #[test]
    fn config_accepts_added_token_objects_and_named_templates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer_config.json");
        std::fs::write(
            &path,
            r#"{"bos_token": {"content": "<s>", "special": true}, "eos_token": "</s>", "add_bos_token": true,
                "chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#,
        )
        .unwrap();
        let config = TokenizerConfig::read(&path).unwrap();
        assert_eq!(config.bos_token.as_deref(), Some("<s>"));
        assert_eq!(config.eos_token.as_deref(), Some("</s>"));
        assert_eq!(config.add_bos_token, Some(true));
        assert_eq!(config.chat_template.as_deref(), Some("D"));

        std::fs::write(&path, r#"{"chat_template": [{"name": "tool_use", "template": "T"}]}"#).unwrap();
        assert!(matches!(TokenizerConfig::read(&path), Err(Error::Tokenizer { .. })));
        std::fs::write(&path, r#"{"bos_token": 3}"#).unwrap();
        assert!(matches!(TokenizerConfig::read(&path), Err(Error::Tokenizer { .. })));
    }
}
