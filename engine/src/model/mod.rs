//! Model loading: file formats (GGUF, Hugging Face directories), the model
//! configuration, and the weights of the supported architectures.
//!
//! Formats expose their tensors through [`TensorSource`], which hands out
//! dense f32 tensors in row-major (PyTorch) layout whatever the storage type,
//! and weight matrices as [`matrix::Matrix`] (GGUF's quantized blocks kept
//! compact, everything else f32); [`weights`] maps the architecture's logical tensors onto each format's
//! names and checks every shape against the [`config::ModelConfig`].

pub mod config;
pub mod dequant;
pub mod gguf;
pub mod hf;
pub mod matrix;
pub mod weights;

use std::path::Path;

use crate::error::Result;

/// A dense f32 tensor in row-major order. For a linear layer the shape is
/// `[out_features, in_features]`, as in PyTorch checkpoints.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Read access to the named tensors of one model file or directory.
pub trait TensorSource {
    /// The file or directory, for error messages.
    fn path(&self) -> &Path;
    /// Whether a tensor of this name exists.
    fn contains(&self, name: &str) -> bool;
    /// Row-major shape of the named tensor (reversed from GGUF's `ne` order).
    fn shape(&self, name: &str) -> Result<Vec<usize>>;
    /// The named tensor converted (dequantized) to f32.
    fn load_f32(&self, name: &str) -> Result<HostTensor>;
    /// The named 2-D tensor, whose shape the caller has checked is
    /// `[rows, cols]`, as a weight matrix. By default converted to f32;
    /// formats with quantized blocks keep them.
    fn load_matrix(&self, name: &str, rows: usize, cols: usize) -> Result<matrix::Matrix> {
        matrix::load_f32_matrix(self, name, rows, cols)
    }
}

/// Where a model came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    Gguf,
    HuggingFace,
}

/// A model read from disk: configuration, weights and tokenizer, checked
/// against each other.
pub struct LoadedModel {
    pub path: std::path::PathBuf,
    pub format: ModelFormat,
    pub config: config::ModelConfig,
    pub weights: weights::ModelWeights,
    pub tokenizer: crate::tokenizer::Tokenizer,
}

/// Loads a GGUF file or a Hugging Face model directory.
pub fn load(path: &Path) -> Result<LoadedModel> {
    use crate::error::Error;
    let metadata = std::fs::metadata(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    let (format, config, weights, tokenizer) = if metadata.is_dir() {
        let dir = hf::HfDir::open(path)?;
        let config_path = path.join("config.json");
        let config = config::ModelConfig::from_hf_json(&dir.config_json()?, &config_path)?;
        let tokenizer_json = dir.tokenizer_json_path().ok_or_else(|| Error::Tokenizer {
            path: path.to_owned(),
            reason: "no tokenizer.json in the model directory".into(),
        })?;
        let tokenizer =
            crate::tokenizer::Tokenizer::from_files(&tokenizer_json, dir.tokenizer_config_path().as_deref())?;
        let weights = weights::ModelWeights::load(&dir, &config, weights::NameScheme::HuggingFace)?;
        (ModelFormat::HuggingFace, config, weights, tokenizer)
    } else {
        let file = gguf::GgufFile::open(path)?;
        let config = config::ModelConfig::from_gguf(&file)?;
        let tokenizer = crate::tokenizer::Tokenizer::from_gguf(&file)?;
        let weights = weights::ModelWeights::load(&file, &config, weights::NameScheme::Gguf)?;
        (ModelFormat::Gguf, config, weights, tokenizer)
    };
    check_tokenizer_fits(path, &config, &tokenizer)?;
    Ok(LoadedModel { path: path.to_owned(), format, config, weights, tokenizer })
}

/// A tokenizer whose ids the model cannot embed belongs to another model.
/// (Models may pad their embedding past the tokenizer's vocabulary.)
fn check_tokenizer_fits(
    path: &Path,
    config: &config::ModelConfig,
    tokenizer: &crate::tokenizer::Tokenizer,
) -> Result<()> {
    use crate::error::Error;
    let vocab = config.vocab_size;
    if tokenizer.vocab_size() > vocab {
        return Err(Error::TokenizerMismatch {
            path: path.to_owned(),
            reason: format!("the tokenizer has {} tokens but the model embeds {vocab}", tokenizer.vocab_size()),
        });
    }
    let specials = tokenizer.bos_id().into_iter().chain(tokenizer.eos_ids().iter().copied());
    if let Some(id) = specials.into_iter().find(|&id| id as usize >= vocab) {
        return Err(Error::TokenizerMismatch {
            path: path.to_owned(),
            reason: format!("special token id {id} is outside the model's vocabulary of {vocab}"),
        });
    }
    Ok(())
}
