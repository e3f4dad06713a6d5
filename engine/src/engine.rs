//! [`Engine`]: a loaded model on a backend with its KV cache and tokenizer,
//! the object the CLI and (later) the server hold.

use std::path::Path;
use std::sync::Arc;

use crate::backend::{Backend, CpuBackend, Logits};
use crate::decode::{self, GenerateParams, Generation};
use crate::error::{Error, Result};
use crate::kv::{KvCache, KvShape};
use crate::model::{self, ModelFormat};
use crate::model::config::ModelConfig;
use crate::tokenizer::Tokenizer;

/// Default KV budget on the host: 1 GiB (about 23k tokens of SmolLM2-135M).
pub const DEFAULT_KV_BUDGET_BYTES: usize = 1 << 30;

/// Options for [`Engine::load`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub kv_budget_bytes: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self { kv_budget_bytes: DEFAULT_KV_BUDGET_BYTES }
    }
}

/// A model ready to run.
pub struct Engine {
    backend: Backend,
    /// Shared so callers can detokenize while the engine generates.
    tokenizer: Arc<Tokenizer>,
    kv: KvCache,
    format: ModelFormat,
}

impl Engine {
    /// Loads a GGUF file or a Hugging Face directory onto the CPU backend.
    pub fn load(path: &Path, options: &EngineOptions) -> Result<Self> {
        let loaded = model::load(path)?;
        let c = &loaded.config;
        let shape = KvShape { layers: c.num_layers, kv_heads: c.num_kv_heads, head_dim: c.head_dim };
        let kv = KvCache::with_budget(shape, options.kv_budget_bytes);
        let backend = Backend::Cpu(CpuBackend::new(loaded.config, loaded.weights));
        Ok(Self { backend, tokenizer: Arc::new(loaded.tokenizer), kv, format: loaded.format })
    }

    pub fn config(&self) -> &ModelConfig {
        self.backend.config()
    }

    pub fn tokenizer(&self) -> &Arc<Tokenizer> {
        &self.tokenizer
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    pub fn format(&self) -> ModelFormat {
        self.format
    }

    /// Bytes of weights one single-token step reads.
    pub fn weight_bytes_per_token(&self) -> usize {
        self.backend.weights().bytes_per_token()
    }

    /// Logits for every position of `tokens`, from an empty context.
    pub fn logits(&mut self, tokens: &[u32]) -> Result<Logits> {
        let mut seq = self.kv.new_sequence();
        let rows: Vec<usize> = (0..tokens.len()).collect();
        let result = self.backend.forward(&mut self.kv, &mut seq, tokens, &rows);
        self.kv.release(&mut seq);
        result
    }

    /// Greedy generation from `prompt` token ids.
    pub fn generate(&mut self, prompt: &[u32], params: &GenerateParams, on_token: impl FnMut(u32)) -> Result<Generation> {
        if prompt.len() + params.max_tokens > self.kv.capacity_tokens() {
            return Err(Error::InvalidRequest {
                reason: format!(
                    "{} prompt + {} output tokens exceed the KV cache's {} tokens; raise the KV budget",
                    prompt.len(),
                    params.max_tokens,
                    self.kv.capacity_tokens()
                ),
            });
        }
        let mut seq = self.kv.new_sequence();
        let result = decode::generate_greedy(&self.backend, &mut self.kv, &mut seq, prompt, params, on_token);
        self.kv.release(&mut seq);
        result
    }
}
