//! The tokenizer a GGUF file describes, rebuilt as a Hugging Face
//! `tokenizers` pipeline: [`GgufVocab`] reads llama.cpp's `tokenizer.*`
//! metadata out as plain data, `build` turns it into a byte-level BPE
//! tokenizer with the pre-tokenizer [`PreTokenizer`] that
//! `tokenizer.ggml.pre` names.
//!
//! Only byte-level BPE vocabularies (`tokenizer.ggml.model = "gpt2"`, the
//! Llama 3 / Qwen / SmolLM family) are supported; anything else, and any
//! pre-tokenizer name not listed in [`PreTokenizer::from_gguf_name`], is a
//! typed error naming the value. There is no fallback: a wrong split changes
//! the token ids the model sees.
//!
//! Token types (`tokenizer.ggml.token_type`, llama.cpp's `llama_token_type`):
//! control tokens (3) become special added tokens and user-defined tokens (4)
//! plain added tokens, so their text in the input encodes to their one id,
//! as llama.cpp and transformers do. Both keep their raw text as vocabulary
//! key; every other token is looked up in the byte-level alphabet and, when it
//! has characters outside it, respelled from its UTF-8 bytes (as transformers'
//! GGUF converter does).

use std::collections::HashSet;
use std::path::PathBuf;

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior};

use crate::error::{Error, Result};
use crate::model::gguf::GgufFile;

/// llama.cpp's `LLAMA_TOKEN_TYPE_CONTROL`.
const TOKEN_TYPE_CONTROL: i32 = 3;
/// llama.cpp's `LLAMA_TOKEN_TYPE_USER_DEFINED`.
const TOKEN_TYPE_USER_DEFINED: i32 = 4;
/// Highest valid token type (`LLAMA_TOKEN_TYPE_BYTE`); 0 is "undefined".
const TOKEN_TYPE_MAX: i32 = 6;

/// Split regex of Qwen2's tokenizer.json (also transformers'
/// `qwen2.tokenization_qwen2.PRETOKENIZE_REGEX`); llama.cpp's
/// `LLAMA_VOCAB_PRE_TYPE_QWEN2` is the same with `(?i:...)` spelled out as
/// `'[sS]|...`. Digits are split one by one (`\p{N}`).
pub const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Split regex of Llama 3's tokenizer.json (tiktoken's cl100k); llama.cpp's
/// `LLAMA_VOCAB_PRE_TYPE_LLAMA3` is the same with `(?i:...)` spelled out.
/// Digits go in runs of up to three (`\p{N}{1,3}`).
pub const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizers (text splitting before BPE) we can build, by the
/// llama.cpp family `tokenizer.ggml.pre` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreTokenizer {
    /// GPT-2's byte-level regex (`'s|'t|...| ?\p{L}+| ?\p{N}+|...`), which HF's
    /// `ByteLevel(use_regex=true)` applies.
    Gpt2,
    /// Every digit on its own, then the GPT-2 regex: SmolLM's tokenizer.json
    /// is `Sequence[Digits(individual_digits=true), ByteLevel(use_regex=true)]`;
    /// llama.cpp's `LLAMA_VOCAB_PRE_TYPE_SMOLLM` splits `\p{N}` then the
    /// GPT-2 regex, which is the same split.
    Smollm,
    /// `Split(QWEN2_SPLIT, isolated)` then `ByteLevel(use_regex=false)`.
    Qwen2,
    /// `Split(LLAMA3_SPLIT, isolated)` then `ByteLevel(use_regex=false)`;
    /// BPE with `ignore_merges` (a whole word in the vocabulary is one token)
    /// and BOS added by default, as llama.cpp and Llama 3's tokenizer.json do.
    Llama3,
}

impl PreTokenizer {
    /// The names llama.cpp writes to `tokenizer.ggml.pre` for each family we
    /// support (from `llama_vocab::impl::load` in src/llama-vocab.cpp).
    pub const GGUF_NAMES: &'static [(&'static str, PreTokenizer)] = &[
        ("gpt-2", PreTokenizer::Gpt2),
        ("smollm", PreTokenizer::Smollm),
        ("qwen2", PreTokenizer::Qwen2),
        ("deepseek-r1-qwen", PreTokenizer::Qwen2),
        ("llama-bpe", PreTokenizer::Llama3),
        ("llama3", PreTokenizer::Llama3),
        ("llama-v3", PreTokenizer::Llama3),
    ];

    pub fn from_gguf_name(name: &str) -> Option<Self> {
        Self::GGUF_NAMES.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
    }

    fn build(self) -> tokenizers::Result<PreTokenizerWrapper> {
        let split = |regex: &str| -> tokenizers::Result<PreTokenizerWrapper> {
            let split = Split::new(SplitPattern::Regex(regex.to_owned()), SplitDelimiterBehavior::Isolated, false)?;
            Ok(Sequence::new(vec![split.into(), ByteLevel::new(false, false, false).into()]).into())
        };
        Ok(match self {
            PreTokenizer::Gpt2 => ByteLevel::new(false, true, true).into(),
            PreTokenizer::Smollm => {
                Sequence::new(vec![Digits::new(true).into(), ByteLevel::new(false, true, true).into()]).into()
            }
            PreTokenizer::Qwen2 => split(QWEN2_SPLIT)?,
            PreTokenizer::Llama3 => split(LLAMA3_SPLIT)?,
        })
    }

    /// llama.cpp's `ignore_merges` for this family.
    fn ignore_merges(self) -> bool {
        self == PreTokenizer::Llama3
    }

    /// Whether BOS is added when the file has no `tokenizer.ggml.add_bos_token`
    /// (llama.cpp's per-family default).
    fn default_add_bos(self) -> bool {
        self == PreTokenizer::Llama3
    }
}

/// The tokenizer metadata of a GGUF file, read out as plain data. Fields may
/// be changed before [`super::Tokenizer::from_gguf_vocab`] (tests build other
/// pre-tokenizers over one vocabulary that way).
#[derive(Debug, Clone)]
pub struct GgufVocab {
    /// The file it came from, for error messages.
    pub source: PathBuf,
    /// `tokenizer.ggml.model` (`gpt2` for byte-level BPE).
    pub model: String,
    /// `tokenizer.ggml.pre`.
    pub pre: String,
    /// `tokenizer.ggml.tokens`; the index is the id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`, one per token; empty when absent.
    pub token_types: Vec<i32>,
    /// `tokenizer.ggml.merges`, "left right" in priority order.
    pub merges: Vec<String>,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// End of turn / end of message (`tokenizer.ggml.eot_token_id`,
    /// `tokenizer.ggml.eom_token_id`): also end generation.
    pub eot_id: Option<u32>,
    pub eom_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`; `None` means the family default.
    pub add_bos: Option<bool>,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
}

impl GgufVocab {
    pub fn read(gguf: &GgufFile) -> Result<Self> {
        let owned = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect::<Vec<_>>();
        Ok(Self {
            source: gguf.path().to_owned(),
            model: gguf.get_str("tokenizer.ggml.model")?.to_owned(),
            pre: gguf.get_str("tokenizer.ggml.pre")?.to_owned(),
            tokens: owned(gguf.get_str_array("tokenizer.ggml.tokens")?),
            token_types: match gguf.get("tokenizer.ggml.token_type") {
                Some(_) => gguf.get_i32_array("tokenizer.ggml.token_type")?,
                None => Vec::new(),
            },
            merges: owned(gguf.get_str_array("tokenizer.ggml.merges")?),
            bos_id: gguf.get_u32_opt("tokenizer.ggml.bos_token_id")?,
            eos_id: gguf.get_u32_opt("tokenizer.ggml.eos_token_id")?,
            eot_id: gguf.get_u32_opt("tokenizer.ggml.eot_token_id")?,
            eom_id: gguf.get_u32_opt("tokenizer.ggml.eom_token_id")?,
            add_bos: gguf.get_bool_opt("tokenizer.ggml.add_bos_token")?,
            chat_template: gguf.get_str_opt("tokenizer.chat_template")?.map(str::to_owned),
        })
    }
}

/// What [`build`] hands back to [`super::Tokenizer`].
pub(crate) struct Built {
    pub(crate) inner: tokenizers::Tokenizer,
    /// Whether BOS is wanted at the start of a sequence.
    pub(crate) add_bos: bool,
}

/// Builds the byte-level BPE tokenizer `vocab` describes.
pub(crate) fn build(vocab: &GgufVocab) -> Result<Built> {
    let err = |reason: String| Error::Tokenizer { path: vocab.source.clone(), reason };
    if vocab.model != "gpt2" {
        return Err(err(format!(
            "unsupported tokenizer model `tokenizer.ggml.model` = `{}` (supported: `gpt2`, byte-level BPE)",
            vocab.model
        )));
    }
    let pre = PreTokenizer::from_gguf_name(&vocab.pre).ok_or_else(|| {
        let names: Vec<&str> = PreTokenizer::GGUF_NAMES.iter().map(|(n, _)| *n).collect();
        err(format!(
            "unsupported pre-tokenizer `tokenizer.ggml.pre` = `{}` (supported: {})",
            vocab.pre,
            names.join(", ")
        ))
    })?;
    if !vocab.token_types.is_empty() && vocab.token_types.len() != vocab.tokens.len() {
        return Err(err(format!("{} token types for {} tokens", vocab.token_types.len(), vocab.tokens.len())));
    }
    let n_tokens = u32::try_from(vocab.tokens.len()).map_err(|_| err("more than 2^32 tokens".into()))?;
    for (name, id) in [("bos", vocab.bos_id), ("eos", vocab.eos_id), ("eot", vocab.eot_id), ("eom", vocab.eom_id)] {
        if let Some(id) = id.filter(|&id| id >= n_tokens) {
            return Err(err(format!("{name} token id {id} is out of range ({n_tokens} tokens)")));
        }
    }

    let byte_chars = byte_chars();
    let alphabet: HashSet<char> = byte_chars.iter().copied().collect();
    let mut keys: Vocab = Vocab::default();
    let mut added: Vec<(AddedToken, u32)> = Vec::new();
    for (id, token) in (0..n_tokens).zip(&vocab.tokens) {
        let token_type = vocab.token_types.get(id as usize).copied().unwrap_or(1);
        if !(0..=TOKEN_TYPE_MAX).contains(&token_type) {
            return Err(err(format!("token {id} `{token}` has unknown token type {token_type}")));
        }
        let key = match token_type {
            TOKEN_TYPE_CONTROL => {
                added.push((AddedToken::from(token.clone(), true).normalized(false), id));
                token.clone()
            }
            TOKEN_TYPE_USER_DEFINED => {
                added.push((AddedToken::from(token.clone(), false).normalized(false), id));
                token.clone()
            }
            _ if token.chars().all(|c| alphabet.contains(&c)) => token.clone(),
            _ => respell(token, &byte_chars),
        };
        if let Some(previous) = keys.insert(key, id) {
            return Err(err(format!("tokens {previous} and {id} have the same text `{token}`")));
        }
    }

    let merges = vocab
        .merges
        .iter()
        .enumerate()
        .map(|(i, merge)| match merge.split_once(' ') {
            Some((left, right)) if !left.is_empty() && !right.is_empty() && !right.contains(' ') => {
                Ok((left.to_owned(), right.to_owned()))
            }
            _ => Err(err(format!("merge {i} `{merge}` is not two tokens separated by one space"))),
        })
        .collect::<Result<Vec<_>>>()?;

    let bpe = BPE::builder()
        .vocab_and_merges(keys, merges)
        .ignore_merges(pre.ignore_merges())
        .build()
        .map_err(|e| err(format!("invalid BPE vocabulary or merges: {e}")))?;
    let mut inner = tokenizers::Tokenizer::new(bpe);
    inner.with_pre_tokenizer(Some(pre.build().map_err(|e| err(format!("pre-tokenizer `{}`: {e}", vocab.pre)))?));
    inner.with_decoder(Some(ByteLevelDecoder::default()));
    let (special, plain): (Vec<_>, Vec<_>) = added.iter().partition(|(t, _)| t.special);
    inner.add_special_tokens(&special.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>());
    inner.add_tokens(&plain.iter().map(|(t, _)| t.clone()).collect::<Vec<_>>());
    for (token, id) in &added {
        if inner.token_to_id(&token.content) != Some(*id) {
            return Err(err(format!("added token `{}` did not keep its id {id}", token.content)));
        }
    }
    Ok(Built { inner, add_bos: vocab.add_bos.unwrap_or(pre.default_add_bos()) })
}

/// A token with characters outside the byte-level alphabet, spelled in it:
/// each UTF-8 byte becomes its alphabet character (transformers does the same).
fn respell(token: &str, byte_chars: &[char; 256]) -> String {
    token.bytes().map(|b| byte_chars[usize::from(b)]).collect()
}

/// GPT-2's byte-level alphabet (`bytes_to_unicode`): printable Latin-1 bytes
/// stand for themselves, the other 68 bytes for U+0100.. in byte order.
pub(crate) fn byte_chars() -> [char; 256] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = ['\0'; 256];
    let mut next = 0x100u32;
    for b in 0..=255u8 {
        table[usize::from(b)] = if printable(b) {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(next - 1).unwrap_or(char::REPLACEMENT_CHARACTER)
        };
    }
    table
}
