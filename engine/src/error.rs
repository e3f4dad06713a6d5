//! The engine's error type: one enum whose variants name the object (file,
//! tensor, key, sequence) that went wrong, so a message is actionable as is.

use std::path::PathBuf;

/// Everything the engine can fail with. Bad input never panics; it ends here.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// The file is not of the expected format, or is truncated or corrupt.
    /// `what` says where (header, a metadata key, a tensor info) and why.
    #[error("{path}: malformed {format} file: {what}")]
    Format { path: PathBuf, format: &'static str, what: String },

    #[error("{path}: metadata key `{key}` is missing")]
    MissingKey { path: PathBuf, key: String },

    #[error("{path}: metadata key `{key}` has the wrong type or value: expected {expected}")]
    BadKey { path: PathBuf, key: String, expected: String },

    #[error("{path}: tensor `{tensor}` is missing")]
    MissingTensor { path: PathBuf, tensor: String },

    #[error("{path}: tensor `{tensor}` has shape {found:?}, expected {expected:?}")]
    TensorShape { path: PathBuf, tensor: String, expected: Vec<usize>, found: Vec<usize> },

    #[error("{path}: tensor `{tensor}` has unsupported data type {dtype}")]
    TensorDtype { path: PathBuf, tensor: String, dtype: String },

    #[error("{path}: unknown model architecture `{arch}` (supported: llama, qwen2, qwen3)")]
    UnknownArchitecture { path: PathBuf, arch: String },

    #[error("{path}: tokenizer: {reason}")]
    Tokenizer { path: PathBuf, reason: String },

    #[error("{path}: tokenizer does not match the model: {reason}")]
    TokenizerMismatch { path: PathBuf, reason: String },

    #[error("chat template: {reason}")]
    ChatTemplate { reason: String },

    /// A request the engine cannot serve as asked (empty prompt, positions
    /// past the context window, an unknown sequence).
    #[error("invalid request: {reason}")]
    InvalidRequest { reason: String },

    /// The caller cancelled the request (an apply superseded or cancelled
    /// by the editor); nothing was returned.
    #[error("cancelled")]
    Cancelled,

    /// A compute device that cannot be used: missing from this build or
    /// machine, or failing (a CUDA driver or kernel error).
    #[error("device {device}: {reason}")]
    Device { device: String, reason: String },

    #[error("KV cache out of blocks: needed {needed}, {free} free of {total}")]
    KvCacheFull { needed: usize, free: usize, total: usize },
}

/// Shorthand used throughout the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;
